//! Sinks: `sinks:` entries become `Sink`s (store, HTTP, Make.com,
//! PostgreSQL), each type's keys checked, with its retry, batch and
//! concurrency settings and an outgoing signer.

use super::*;

/// The keys each sink type reads besides `type`: the one table that both
/// checks a sink and tells the operator what it may hold.
pub(super) const SINK_KEYS: &[(&str, &[&str])] = &[
    // The embedded store: a tree of records, keyed, written in a mode.
    ("store", &["tree", "key", "mode", "retry"]),
    ("http", HTTP_KEYS),
    ("make", HTTP_KEYS),
    // The app's own table: a row per conflict key, version-guarded.
    (
        "postgres",
        &[
            "url",
            "table",
            "conflict",
            "mode",
            "version",
            "extra",
            "columns",
            "timeout",
            "concurrency",
            "batch",
            "retry",
        ],
    ),
];

/// `make` is `http` with the Make.com envelope, so both read the same keys.
const HTTP_KEYS: &[&str] =
    &["url", "fallback_url", "method", "headers", "timeout", "concurrency", "sign", "batch", "retry"];

impl FileContext<'_> {
    /// One `sinks:` entry. Its keys are checked against its type's row of
    /// /// `SINK_KEYS` first, so a key meant for another type is named even when
    /// /// the sink's own settings are also wrong.
    pub(super) fn sink(&mut self, name: &Spanned<String>, s: &Spanned<RawSink>) -> Option<Sink> {
        let raw = &s.value;
        // Every type retries: `retry:` is read whatever the type.
        let retry = raw.retry.as_ref().map_or(Some(RetryPolicy::default()), |r| self.retry(r));
        let type_name = raw.kind.value.as_str();
        // An unknown type has no row to check against: its own error says
        // which types exist, and the keys are not second-guessed.
        let keys_ok = !SINK_TYPES.contains(&type_name) || self.sink_keys(raw, type_name);
        let kind = match type_name {
            // `make` is an http sink with the Make.com envelope around the document.
            "http" | "make" => SinkKind::Http(Box::new(self.http_sink(raw, type_name == "make")?)),
            "postgres" => SinkKind::Postgres(Box::new(self.postgres_sink(raw)?)),
            "store" => {
                // The tree defaults to the sink's name: `members: {type: store}` is
                // all a page needs to read `members` records back.
                let tree = raw.tree.as_ref().map_or(Some(name.value.clone()), |t| self.interp(t));
                let key = raw.key.as_ref().map(|k| self.expr(k, false));
                let mode = self.write_mode(raw);
                SinkKind::Store(StoreSink { tree: tree?, key: key.flatten(), mode: mode? })
            }
            other => {
                let d = self.error(Pos::of(&raw.kind), format!("unknown sink type `{other}`"));
                match nearest(other, SINK_TYPES.iter().copied()) {
                    Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                    None => d.with_hint(format!("supported sink types: {}", SINK_TYPES.join(", "))),
                }
                return None;
            }
        };
        // The sink compiled, but a stray key means the operator expected it
        // to do something it will not: that is an error, not a warning.
        keys_ok.then_some(())?;
        Some(Sink { name: name.value.clone(), kind, retry: retry? })
    }

    /// Reports every sink key its type does not read.
    pub(super) fn sink_keys(&mut self, raw: &RawSink, type_name: &str) -> bool {
        let allowed = keys_of(SINK_KEYS, type_name, &[]);
        let hint = format!("`{type_name}` sinks read: {}", allowed.join(", "));
        self.unread_keys(&raw.written(), allowed, &format!("sink type `{type_name}`"), &hint)
    }

    /// An `http` sink, or a `make` one (envelope on). Every field is checked,
    /// so all of a sink's problems are reported at once.
    pub(super) fn http_sink(&mut self, raw: &RawSink, make: bool) -> Option<HttpSink> {
        // Each setting is compiled before any `?`: one `check` run lists
        // every mistake of the sink.
        let url = self.target_url(raw);
        // Optional, and may be left empty by an unset `${VAR:-}`.
        let fallback_url = raw.fallback_url.as_ref().map_or(Some(None), |f| self.url(f));
        let method = self.http_method(raw);
        let headers = self.http_headers(raw);
        // The timeout bounds a whole request (connect, send, answer): a
        // receiver that accepts and never answers holds a slot no longer.
        let timeout = raw.timeout.as_ref().map_or(Some(http_sink::DEFAULT_TIMEOUT), |t| self.duration(t));
        // Per sink: a slow receiver fills its own slots, not its neighbours'.
        let concurrency = self.concurrency(raw, http_sink::DEFAULT_CONCURRENCY);
        let signer = raw.sign.as_ref().map_or(Some(None), |s| self.outgoing_signer(s).map(Some));
        let batch = raw.batch.as_ref().map_or(Some(None), |b| self.batch(b).map(Some));
        Some(HttpSink {
            url: url?,
            fallback_url: fallback_url?,
            method: method?,
            headers: headers?,
            timeout: timeout?,
            concurrency: concurrency?,
            envelope: make,
            signer: signer?,
            batch: batch?,
        })
    }

    /// A `postgres` sink. The URL is checked for form only: `router check
    /// --connect` is what opens it and compares the table.
    pub(super) fn postgres_sink(&mut self, raw: &RawSink) -> Option<PostgresSink> {
        let url = match &raw.url {
            None => {
                self.error(Pos::of(&raw.kind), "sink type `postgres` needs `url`").with_hint("url: ${DATABASE_URL}");
                None
            }
            // The URL keeps its position: the driver's parse error (below) is
            // placed on it, and never shows the URL (it carries a password).
            Some(u) => match self.interp(u) {
                Some(v) if v.is_empty() => {
                    self.error(Pos::of(u), "url is empty").with_hint("set the environment variable it names");
                    None
                }
                other => other.map(|v| (v, Pos::of(u))),
            },
        };
        let table = match &raw.table {
            None => {
                self.error(Pos::of(&raw.kind), "sink type `postgres` needs `table`")
                    .with_hint("table: member_activity (or schema.table)");
                None
            }
            // The name is quoted as an identifier when the statement is built;
            // here only its shape is checked: one or two non-empty parts.
            Some(t)
                if t.value.is_empty() || t.value.split('.').count() > 2 || t.value.split('.').any(str::is_empty) =>
            {
                self.error(Pos::of(t), format!("`{}` is not a table name", t.value))
                    .with_hint("write `table` or `schema.table`");
                None
            }
            Some(t) => Some(t.value.clone()),
        };
        let mode = self.write_mode(raw);
        // An upsert needs a unique index to target (ON CONFLICT): the sink
        // cannot guess which one, so the file names its columns.
        let conflict = match &raw.conflict {
            None => {
                self.error(Pos::of(&raw.kind), "sink type `postgres` needs `conflict`")
                    .with_hint("conflict: [user_id]   # the columns of a unique index: the row an event writes");
                None
            }
            Some(c) if c.value.0.is_empty() || c.value.0.iter().any(String::is_empty) => {
                self.error(Pos::of(c), "conflict names no column").with_hint("conflict: [user_id]");
                None
            }
            Some(c) => Some(c.value.0.clone()),
        };
        let version = raw.version.as_ref().map(|v| v.value.clone());
        // A key column as the version would compare a row with itself: every
        // event would look stale, or none would.
        if let (Some(v), Some(keys)) = (&raw.version, &conflict) {
            if keys.contains(&v.value) {
                self.error(Pos::of(v), format!("`{}` is part of the key; it cannot also be the version", v.value))
                    .with_hint("version: a column such as updated_at, that grows with each change");
            }
        }
        let timeout = raw.timeout.as_ref().map_or(Some(postgres_sink::DEFAULT_TIMEOUT), |t| self.duration(t));
        let concurrency = self.concurrency(raw, postgres_sink::DEFAULT_CONCURRENCY);
        let batch = raw.batch.as_ref().map_or(Some(None), |b| self.batch(b).map(Some));
        // `columns:` narrows the document to what this table takes; `extra:`
        // collects the rest into one jsonb column.
        let columns = raw.columns.as_ref().map(|c| c.value.clone());
        let plan = Plan {
            mode: mode?,
            conflict: conflict?,
            version,
            extra: raw.extra.as_ref().map(|e| e.value.clone()),
            columns,
        };
        let (url, at) = url?;
        // `new` parses the URL (no connection is opened at compile time).
        let mut sink = PostgresSink::new(&url, table?, plan, concurrency?, timeout?)
            .map_err(|e| {
                self.error(at, e.to_string())
                    .with_hint("write postgres://user:password@host:5432/database, e.g. url: ${DATABASE_URL}");
            })
            .ok()?;
        // Batching turns a round's deliveries into one multi-row statement.
        sink.batch = batch?;
        Some(sink)
    }

    /// `mode:` of a store or postgres sink (upsert unless it says).
    pub(super) fn write_mode(&mut self, raw: &RawSink) -> Option<StoreMode> {
        let Some(m) = &raw.mode else { return Some(StoreMode::Upsert) };
        StoreMode::parse(&m.value).or_else(|| {
            self.error(Pos::of(m), format!("unknown {} mode `{}`", raw.kind.value, m.value))
                .with_hint(format!("write one of: {}", StoreMode::NAMES.join(", ")));
            None
        })
    }

    /// `concurrency:`, at least 1.
    pub(super) fn concurrency(&mut self, raw: &RawSink, default: usize) -> Option<usize> {
        match &raw.concurrency {
            None => Some(default),
            Some(c) if c.value == 0 => {
                self.error(Pos::of(c), "concurrency must be at least 1");
                None
            }
            Some(c) => Some(c.value),
        }
    }

    /// The `url:` a sink must have; an empty one (an unset variable with a
    /// /// `:-` default) is an error here, unlike `fallback_url`.
    pub(super) fn target_url(&mut self, raw: &RawSink) -> Option<String> {
        let Some(url_raw) = &raw.url else {
            self.error(Pos::of(&raw.kind), format!("sink type `{}` needs `url`", raw.kind.value))
                .with_hint("url: ${RECEIVER_URL}");
            return None;
        };
        match self.url(url_raw)? {
            Some(u) => Some(u),
            None => {
                self.error(Pos::of(url_raw), "url is empty").with_hint("set the environment variable it names");
                None
            }
        }
    }

    pub(super) fn http_method(&mut self, raw: &RawSink) -> Option<reqwest::Method> {
        let Some(m) = &raw.method else { return Some(reqwest::Method::POST) };
        // Case is forgiven (`post`); GET and DELETE are not, as they carry no
        // body and the document would be lost.
        let upper = m.value.to_ascii_uppercase();
        if crate::sink::http::METHODS.contains(&upper.as_str()) {
            return reqwest::Method::from_bytes(upper.as_bytes()).ok();
        }
        self.error(Pos::of(m), format!("method `{upper}` cannot carry a document"))
            .with_hint("write POST, PUT or PATCH");
        None
    }

    /// Extra request headers, interpolated (tokens come from the
    /// /// environment) and checked as hyper would, so no delivery fails on them.
    pub(super) fn http_headers(&mut self, raw: &RawSink) -> Option<Vec<(String, String)>> {
        let mut headers = Vec::new();
        let mut ok = true;
        for (k, v) in raw.headers.iter().flat_map(|h| h.0.iter()) {
            let Some(value) = self.interp(v) else {
                ok = false;
                continue;
            };
            if http::HeaderName::try_from(k.value.as_str()).is_err() || http::HeaderValue::from_str(&value).is_err() {
                // Placed at the name: the value may be a secret and is not shown.
                self.error(Pos::of(k), format!("`{}` is not a valid header", k.value));
                ok = false;
                continue;
            }
            headers.push((k.value.clone(), value));
        }
        ok.then_some(headers)
    }

    /// `sign:` on a sink: Standard Webhooks, so receivers can verify us.
    pub(super) fn outgoing_signer(&mut self, sign: &Spanned<raw::RawSign>) -> Option<hmac::HmacScheme> {
        let scheme = &sign.value.scheme;
        // One outgoing scheme: Standard Webhooks is what receivers' SDKs
        // (svix, standardwebhooks) verify; the preset is the same data the
        // incoming verifier uses, so both sides sign the same bytes.
        let Some(preset) =
            (scheme.value == "standard-webhooks").then(|| presets::preset_for("standard-webhooks", false)).flatten()
        else {
            self.error(
                Pos::of(scheme),
                format!("outgoing signing supports `standard-webhooks`, not `{}`", scheme.value),
            );
            return None;
        };
        let secret = Secret::new(self.interp(&sign.value.secret)?);
        // The preset's first spec is the current header format.
        let spec = preset.specs.into_iter().next().expect("standard-webhooks has a spec");
        hmac::HmacScheme::new(spec, &[secret])
            .map_err(|e| {
                self.error(Pos::of(&sign.value.secret), format!("cannot sign with this secret: {e}"))
                    .with_hint("use a whsec_<base64> secret: `router secret new --scheme standard-webhooks`");
            })
            .ok()
    }

    /// `batch:` of an http, make or postgres sink.
    pub(super) fn batch(&mut self, b: &Spanned<raw::RawBatch>) -> Option<Batch> {
        // Both fields are checked before returning, so both can be reported.
        let max_wait = self.duration(&b.value.max_wait);
        if b.value.max_events.value == 0 {
            self.error(Pos::of(&b.value.max_events), "max_events must be at least 1");
            return None;
        }
        Some(Batch { max_events: b.value.max_events.value, max_wait: max_wait? })
    }

    /// An interpolated http(s) URL; `None` when it interpolates to nothing (`${VAR:-}` unset).
    pub(super) fn url(&mut self, s: &Spanned<String>) -> Option<Option<String>> {
        let url = self.interp(s)?;
        if url.is_empty() {
            return Some(None);
        }
        // Only http(s): a `file:` or `ftp:` URL would fail at every delivery.
        match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(Some(url)),
            _ => {
                // Never echo the URL: it may carry a token.
                self.error(Pos::of(s), "not an http(s) URL").with_hint("write e.g. https://hook.eu1.make.com/abc123");
                None
            }
        }
    }

    /// `retry:`: the defaults (`RetryPolicy::default`) for what it leaves out.
    pub(super) fn retry(&mut self, r: &Spanned<raw::RawRetry>) -> Option<RetryPolicy> {
        let mut p = RetryPolicy::default();
        if let Some(a) = &r.value.attempts {
            if a.value == 0 {
                self.error(Pos::of(a), "attempts must be at least 1").with_hint("1 means no retry");
                return None;
            }
            p.attempts = a.value;
        }
        if let Some(b) = &r.value.backoff {
            p.backoff = self.duration(b)?;
        }
        // A deadline bounds the whole run of retries, whatever `attempts` says.
        if let Some(d) = &r.value.deadline {
            p.deadline = Some(self.duration(d)?);
        }
        if let Some(m) = &r.value.max_delay {
            p.max_delay = self.duration(m)?;
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile_text, problems};

    const ROUTE: &str = "route: r\npath: /r\nverify: { scheme: none }\n";

    #[test]
    fn the_keys_table_has_every_sink_type_and_only_real_keys() {
        let types: Vec<&str> = super::SINK_KEYS.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, crate::sink::SINK_TYPES);
        for (t, keys) in super::SINK_KEYS {
            for key in *keys {
                assert!(crate::config::raw::RawSink::FIELDS.contains(key), "`{t}` reads `{key}`, not a sink key");
            }
        }
    }

    #[test]
    fn a_key_its_type_does_not_read_is_named_with_what_it_reads() {
        let got = problems(&format!("{ROUTE}sinks:\n  s: {{ type: store, url: http://x }}\n"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0], "5:26: `url` is not used by sink type `store`");
    }

    #[test]
    fn an_http_sink_keeps_its_retry_and_batch() {
        let config = compile_text(&format!(
            "{ROUTE}sinks:\n  h: {{ type: http, url: https://example.com/in, batch: {{ max_events: 5, max_wait: 1s }}, \
             retry: {{ attempts: 4, backoff: 2s }} }}\n"
        ))
        .unwrap();
        let h = &config.sinks["h"];
        assert_eq!((h.retry.attempts, h.batch().map(|b| b.max_events)), (4, Some(5)));
    }

    #[test]
    fn every_problem_of_a_sink_is_reported_at_once() {
        let got =
            problems(&format!("{ROUTE}sinks:\n  h: {{ type: http, url: not-a-url, method: FETCH, timeout: soon }}\n"));
        assert_eq!(got.len(), 3, "url, method and timeout: {got:?}");
    }
}
