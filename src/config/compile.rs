//! Raw YAML → compiled `Config`, collecting every problem with its position.
//!
//! Order: parse each file, gather sinks (names are global), then compile
//! routes and views against them. A problem in one place never hides the
//! others: each step records diagnostics and carries on.

use super::diagnostic::{nearest, Diagnostic, Diagnostics, Pos};
use super::env::{interpolate, EnvSource};
use super::raw::{self, MapNode, RawFile, RawSink, RawVerify, Spanned};
use super::{Config, Loaded, View};
use crate::mapping::{Expr, ExprError, Mapping};
use crate::route::filter::EventFilter;
use crate::route::table::{template_params, Endpoint, RouteTable};
use crate::route::{EventSpec, Requirement, Respond, RespondBody, Route, Rule, Target, ValueKind, DEFAULT_BODY_LIMIT};
use crate::script::{self, Engines, Sandbox};
use crate::sink::http::{self as http_sink, HttpSink};
use crate::sink::postgres::{self as postgres_sink, statement::Plan, PostgresSink};
use crate::sink::{Batch, RetryPolicy, Sink, SinkKind, StoreMode, StoreSink, SINK_TYPES};
use crate::verify::presets::{self, SCHEMES};
use crate::verify::{hmac, BasicAuth, BearerToken, Secret, SignatureScheme, Verifier};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a scheme brings when the route does not say: event expressions
/// (GitHub's `X-GitHub-Event`...) and the provider's own body cap.
#[derive(Debug, Default, Clone, Copy)]
struct Defaults {
    kind: Option<&'static str>,
    id: Option<&'static str>,
    body_limit: Option<usize>,
}

pub(super) fn compile(
    sources: &[(PathBuf, String)],
    env: &dyn EnvSource,
    mut diags: Diagnostics,
) -> Result<Loaded, Diagnostics> {
    let mut files = Vec::new();
    for (path, text) in sources {
        match raw::parse(text) {
            Ok(Some(raw)) => files.push((path.as_path(), text.as_str(), raw)),
            Ok(None) => {} // an empty file declares nothing
            Err(e) => diags.push(yaml_error(path, text, &e)),
        }
    }

    let mut engines = Engines::default();
    let mut trial_secrets = Vec::new();
    // Directory-wide script limits: `script_limits:` in a file without a route.
    let mut default_limits = Sandbox::default();
    let mut limits_origin: Option<(PathBuf, Pos)> = None;
    for (path, text, raw) in &files {
        let (Some(l), None) = (&raw.script_limits, &raw.route) else { continue };
        let mut cx = FileContext {
            file: path,
            text,
            env,
            diags: &mut diags,
            engines: &mut engines,
            limits: Sandbox::default(),
            trial_secrets: &mut trial_secrets,
        };
        if let Some((f, p)) = &limits_origin {
            cx.error(Pos::of(l), "directory-wide `script_limits` are set twice").with_hint(format!(
                "the first is at {}:{}:{}; keep one, or move this one into a route file to apply to that route only",
                f.display(),
                p.line,
                p.column
            ));
        } else if let Some(limits) = cx.script_limits(l) {
            default_limits = limits;
            limits_origin = Some((path.to_path_buf(), Pos::of(l)));
        }
    }

    // Sinks first: routes in any file may name them.
    let mut sinks: BTreeMap<String, Arc<Sink>> = BTreeMap::new();
    let mut sink_origin: HashMap<String, (PathBuf, Pos)> = HashMap::new();
    for (path, text, raw) in &files {
        let mut cx = FileContext {
            file: path,
            text,
            env,
            diags: &mut diags,
            engines: &mut engines,
            limits: default_limits,
            trial_secrets: &mut trial_secrets,
        };
        for (name, sink) in raw.sinks.iter().flat_map(|m| m.0.iter()) {
            if let Some((first_file, first_pos)) = sink_origin.get(&name.value) {
                cx.error(Pos::of(name), format!("sink `{}` is declared twice", name.value)).with_hint(format!(
                    "the first is at {}:{}:{}; sink names are global to the directory",
                    first_file.display(),
                    first_pos.line,
                    first_pos.column
                ));
                continue;
            }
            sink_origin.insert(name.value.clone(), (path.to_path_buf(), Pos::of(name)));
            if let Some(s) = cx.sink(name, sink) {
                sinks.insert(name.value.clone(), Arc::new(s));
            }
        }
    }

    let mut table = RouteTable::default();
    let mut routes = Vec::new();
    let mut views = Vec::new();
    let mut route_origin: HashMap<String, (PathBuf, Pos)> = HashMap::new();
    let mut path_origin: HashMap<String, String> = HashMap::new();
    for (path, text, raw) in &files {
        let mut cx = FileContext {
            file: path,
            text,
            env,
            diags: &mut diags,
            engines: &mut engines,
            limits: default_limits,
            trial_secrets: &mut trial_secrets,
        };
        if let (Some(l), Some(_)) = (&raw.script_limits, &raw.route) {
            cx.limits = cx.script_limits(l).unwrap_or(default_limits);
        }
        if let Some(route) = cx.route(raw, &sinks, &sink_origin) {
            let name_pos = raw.route.as_ref().map(Pos::of).unwrap_or_default();
            let path_pos = raw.path.as_ref().map(Pos::of).unwrap_or_default();
            if let Some((f, p)) = route_origin.get(&route.name) {
                cx.error(name_pos, format!("route `{}` is declared twice", route.name)).with_hint(format!(
                    "the first is at {}:{}:{}; give each route its own name",
                    f.display(),
                    p.line,
                    p.column
                ));
            } else {
                route_origin.insert(route.name.clone(), (path.to_path_buf(), name_pos));
                match table.insert(&route.path, Endpoint::Route(routes.len())) {
                    Ok(()) => {
                        path_origin.insert(route.path.clone(), format!("route `{}`", route.name));
                        routes.push(Arc::new(route));
                    }
                    Err(msg) => cx.path_conflict(path_pos, msg, &path_origin),
                }
            }
        }
        for view in raw.views.iter().flatten() {
            if let Some(v) = cx.view(view) {
                match table.insert(&v.path, Endpoint::View(views.len())) {
                    Ok(()) => {
                        path_origin.insert(v.path.clone(), format!("a view in {}", path.display()));
                        views.push(Arc::new(v));
                    }
                    Err(msg) => cx.path_conflict(Pos::of(&view.value.path), msg, &path_origin),
                }
            }
        }
    }

    // Sinks no rule sends to: declared for nothing, or the rule naming them was lost.
    let used: std::collections::HashSet<&str> = files
        .iter()
        .flat_map(|(_, _, raw)| raw.rules.iter().flatten())
        .flat_map(|r| r.value.to.iter().map(|t| t.value.sink.value.as_str()))
        .collect();
    for (name, (file, at)) in &sink_origin {
        if !used.contains(name.as_str()) {
            let mut d = Diagnostic::warning(file, *at, format!("sink `{name}` is not used by any rule"));
            d.hint = Some(format!("send to it with `to: [{{ sink: {name} }}]` in a rule, or remove it"));
            diags.push(d);
        }
    }

    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    let files = sources.iter().map(|(p, _)| p.clone()).collect();
    Ok(Loaded { config: Config { routes, views, sinks, table, files, trial_secrets }, warnings: diags })
}

/// Turns a YAML/serde error into a diagnostic, with "did you mean" for unknown keys.
fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let pos = e.location().map(|l| Pos::from_location(&l)).unwrap_or_default();
    let full = e.without_snippet().to_string();
    // The rendered message may carry its own position; ours is the one printed.
    let message = match full.split_once(": ") {
        Some((head, rest)) if head.contains("line") && head.contains("column") => rest.to_string(),
        _ => full,
    };
    let mut message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    if let Some(at) = message.rfind(" at line ") {
        if message[at..].contains(", column ") {
            message.truncate(at);
        }
    }
    let message = plain_yaml_message(message);
    let d = Diagnostic::error(path, pos, message.clone());
    match yaml_hint(&message, source_line(text, pos)) {
        Some(h) => d.with_hint(h),
        None => d,
    }
}

/// The YAML library's message in an operator's words: no API names or
/// debug output, and never the offending value itself (it may be a secret
/// written as a number: `token: 998877665544`).
fn plain_yaml_message(message: String) -> String {
    if message.starts_with("multiple YAML documents") {
        return "a route file holds one YAML document; a second one starts here (split the file in two)".into();
    }
    if let Some(budget) = message.strip_prefix("budget breached: ") {
        return match budget.strip_prefix("Depth { depth: ").and_then(|d| d.strip_suffix(" }")) {
            Some(depth) => format!("nested more than {} levels deep", depth.parse::<u32>().map_or(64, |d| d - 1)),
            None => "the file is too large or too deeply nested to load".into(),
        };
    }
    for kind in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(kind) {
            // `integer `998877665544`, expected a string` → `integer, expected a string`
            if let (Some(open), Some(close)) = (rest.find(" `"), rest.find("`,")) {
                if open < close {
                    return format!("{kind}{}{}", &rest[..open], &rest[close + 1..]);
                }
            }
        }
    }
    message
}

fn source_line(text: &str, at: Pos) -> &str {
    text.lines().nth(at.line.saturating_sub(1) as usize).unwrap_or("")
}

/// What to write instead, for the YAML and shape errors operators hit most.
fn yaml_hint(message: &str, line: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`')?;
        let list = expected.split_once("expected one of ").map_or("", |(_, l)| l);
        let candidates: Vec<&str> =
            list.split(',').map(|c| c.trim().trim_matches('`')).filter(|c| !c.is_empty()).collect();
        return Some(match nearest(field, candidates.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("valid keys here: {}", candidates.join(", ")),
        });
    }
    if line.contains("${") && line.contains('{') && line.matches('{').count() > line.matches("${").count() {
        return Some("inside a { ... } mapping, quote values that use variables: token: \"${MY_TOKEN}\"".into());
    }
    if message.contains("expected sequence") {
        return Some("this value must be a list: [a, b], or one `- item` per line".into());
    }
    if message.contains("expected mapping") || message.contains("expected struct") {
        return Some("this value must be a mapping of `key: value` lines".into());
    }
    None
}

/// What to write instead, for the Rhai compile errors operators hit most.
fn rhai_hint(message: &str, kind: script::Kind) -> Option<String> {
    if let Some(name) = message.strip_prefix("Undefined variable: ") {
        let inputs = script::INPUTS.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ");
        return Some(match nearest(name, script::INPUTS.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? scripts see {inputs}"),
            None => format!("scripts see {inputs}; declare other names with `let`"),
        });
    }
    (kind == script::Kind::Condition).then(|| {
        "`when:` is one Rhai expression over `payload`, `event` and `doc`, e.g. `payload.data.severity == \"HIGH\"`"
            .to_string()
    })
}

/// Per-file compile context.
struct FileContext<'a> {
    file: &'a Path,
    text: &'a str,
    env: &'a dyn EnvSource,
    diags: &'a mut Diagnostics,
    /// Script engines, shared by every script with the same limits.
    engines: &'a mut Engines,
    /// The sandbox limits of this file's scripts.
    limits: Sandbox,
    /// Variables whose default (written in the file) became a verify secret.
    trial_secrets: &'a mut Vec<super::TrialSecret>,
}

/// A diagnostic just pushed, so a hint can be added fluently.
struct Reported<'a>(&'a mut Diagnostic);

impl Reported<'_> {
    fn with_hint(self, hint: impl Into<String>) {
        self.0.hint = Some(hint.into());
    }
}

impl<'a> FileContext<'a> {
    fn error(&mut self, at: Pos, message: impl Into<String>) -> Reported<'_> {
        self.diags.push(Diagnostic::error(self.file, at, message));
        Reported(self.diags.0.last_mut().expect("just pushed"))
    }

    fn warning(&mut self, at: Pos, message: impl Into<String>) -> Reported<'_> {
        self.diags.push(Diagnostic::warning(self.file, at, message));
        Reported(self.diags.0.last_mut().expect("just pushed"))
    }

    /// Position of character `offset` inside a string scalar (skipping an opening quote).
    fn pos_in(&self, s: &Spanned<String>, offset: usize) -> Pos {
        let at = Pos::of(s);
        let line = self.text.lines().nth(at.line.saturating_sub(1) as usize).unwrap_or("");
        let first = line.chars().nth(at.column.saturating_sub(1) as usize);
        let quote = usize::from(matches!(first, Some('"') | Some('\'')));
        Pos { line: at.line, column: at.column + (quote + offset) as u64 }
    }

    fn expr_error(&mut self, s: &Spanned<String>, e: ExprError) {
        let at = self.pos_in(s, e.offset);
        let d = self.error(at, e.message);
        if let Some(h) = e.hint {
            d.with_hint(h);
        }
    }

    fn expr(&mut self, s: &Spanned<String>, allow_literal: bool) -> Option<Expr> {
        Expr::parse(&s.value, allow_literal).map_err(|e| self.expr_error(s, e)).ok()
    }

    /// `${VAR}` interpolation of a value; unset required variables are errors.
    fn interp(&mut self, s: &Spanned<String>) -> Option<String> {
        interpolate(&s.value, self.env)
            .map_err(|e| {
                let hint = e.hint();
                let d = self.error(Pos::of(s), e.to_string());
                if let Some(h) = hint {
                    d.with_hint(h);
                }
            })
            .ok()
    }

    /// A secret or a rotation list of them; empty entries (unset `${VAR:-}`) are dropped.
    fn secrets(&mut self, s: &Spanned<raw::OneOrMany<String>>) -> Option<Vec<Secret>> {
        let mut out = Vec::new();
        for item in &s.value.0 {
            let spanned = Spanned::new(item.clone(), s.referenced, s.defined);
            let v = self.interp(&spanned)?;
            if !v.is_empty() {
                out.push(Secret::new(v));
            }
        }
        Some(out)
    }

    fn duration(&mut self, s: &Spanned<String>) -> Option<std::time::Duration> {
        humantime::parse_duration(s.value.trim())
            .map_err(|e| {
                self.error(Pos::of(s), format!("`{}` is not a duration: {e}", s.value))
                    .with_hint("write e.g. 500ms, 30s, 5m or 1h")
            })
            .ok()
    }

    fn sink(&mut self, name: &Spanned<String>, s: &Spanned<RawSink>) -> Option<Sink> {
        let raw = &s.value;
        let retry = raw.retry.as_ref().map_or(Some(RetryPolicy::default()), |r| self.retry(r));
        let type_name = raw.kind.value.as_str();
        let keys_ok = !SINK_TYPES.contains(&type_name) || self.sink_keys(raw, type_name);
        let kind = match type_name {
            "http" | "make" => SinkKind::Http(Box::new(self.http_sink(raw, type_name == "make")?)),
            "postgres" => SinkKind::Postgres(Box::new(self.postgres_sink(raw)?)),
            "store" => {
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
        keys_ok.then_some(())?;
        Some(Sink { name: name.value.clone(), kind, retry: retry? })
    }

    /// Reports every sink key its type does not read.
    fn sink_keys(&mut self, raw: &RawSink, type_name: &str) -> bool {
        let set: [(&str, Option<Pos>); 16] = [
            ("batch", raw.batch.as_ref().map(Pos::of)),
            ("tree", raw.tree.as_ref().map(Pos::of)),
            ("key", raw.key.as_ref().map(Pos::of)),
            ("mode", raw.mode.as_ref().map(Pos::of)),
            ("url", raw.url.as_ref().map(Pos::of)),
            ("fallback_url", raw.fallback_url.as_ref().map(Pos::of)),
            ("method", raw.method.as_ref().map(Pos::of)),
            ("headers", raw.headers.as_ref().and_then(|h| h.0.first()).map(|(k, _)| Pos::of(k))),
            ("timeout", raw.timeout.as_ref().map(Pos::of)),
            ("concurrency", raw.concurrency.as_ref().map(Pos::of)),
            ("sign", raw.sign.as_ref().map(Pos::of)),
            ("table", raw.table.as_ref().map(Pos::of)),
            ("conflict", raw.conflict.as_ref().map(Pos::of)),
            ("version", raw.version.as_ref().map(Pos::of)),
            ("extra", raw.extra.as_ref().map(Pos::of)),
            ("columns", raw.columns.as_ref().map(Pos::of)),
        ];
        let allowed: &[&str] = match type_name {
            "store" => &["tree", "key", "mode"],
            "postgres" => {
                &["url", "table", "conflict", "mode", "version", "extra", "columns", "timeout", "concurrency", "batch"]
            }
            _ => &["url", "fallback_url", "method", "headers", "timeout", "concurrency", "sign", "batch"],
        };
        let hint = format!("`{type_name}` sinks read: {}, retry", allowed.join(", "));
        self.unread_keys(&set, allowed, &format!("sink type `{type_name}`"), &hint)
    }

    /// An `http` sink, or a `make` one (envelope on). Every field is checked,
    /// so all of a sink's problems are reported at once.
    fn http_sink(&mut self, raw: &RawSink, make: bool) -> Option<HttpSink> {
        let url = self.target_url(raw);
        let fallback_url = raw.fallback_url.as_ref().map_or(Some(None), |f| self.url(f));
        let method = self.http_method(raw);
        let headers = self.http_headers(raw);
        let timeout = raw.timeout.as_ref().map_or(Some(http_sink::DEFAULT_TIMEOUT), |t| self.duration(t));
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
    fn postgres_sink(&mut self, raw: &RawSink) -> Option<PostgresSink> {
        let url = match &raw.url {
            None => {
                self.error(Pos::of(&raw.kind), "sink type `postgres` needs `url`").with_hint("url: ${DATABASE_URL}");
                None
            }
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
        if let (Some(v), Some(keys)) = (&raw.version, &conflict) {
            if keys.contains(&v.value) {
                self.error(Pos::of(v), format!("`{}` is part of the key; it cannot also be the version", v.value))
                    .with_hint("version: a column such as updated_at, that grows with each change");
            }
        }
        let timeout = raw.timeout.as_ref().map_or(Some(postgres_sink::DEFAULT_TIMEOUT), |t| self.duration(t));
        let concurrency = self.concurrency(raw, postgres_sink::DEFAULT_CONCURRENCY);
        let batch = raw.batch.as_ref().map_or(Some(None), |b| self.batch(b).map(Some));
        let columns = raw.columns.as_ref().map(|c| c.value.clone());
        let plan = Plan {
            mode: mode?,
            conflict: conflict?,
            version,
            extra: raw.extra.as_ref().map(|e| e.value.clone()),
            columns,
        };
        let (url, at) = url?;
        let mut sink = PostgresSink::new(&url, table?, plan, concurrency?, timeout?)
            .map_err(|e| {
                self.error(at, e.to_string())
                    .with_hint("write postgres://user:password@host:5432/database, e.g. url: ${DATABASE_URL}");
            })
            .ok()?;
        sink.batch = batch?;
        Some(sink)
    }

    /// `mode:` of a store or postgres sink (upsert unless it says).
    fn write_mode(&mut self, raw: &RawSink) -> Option<StoreMode> {
        let Some(m) = &raw.mode else { return Some(StoreMode::Upsert) };
        StoreMode::parse(&m.value).or_else(|| {
            self.error(Pos::of(m), format!("unknown {} mode `{}`", raw.kind.value, m.value))
                .with_hint(format!("write one of: {}", StoreMode::NAMES.join(", ")));
            None
        })
    }

    /// `concurrency:`, at least 1.
    fn concurrency(&mut self, raw: &RawSink, default: usize) -> Option<usize> {
        match &raw.concurrency {
            None => Some(default),
            Some(c) if c.value == 0 => {
                self.error(Pos::of(c), "concurrency must be at least 1");
                None
            }
            Some(c) => Some(c.value),
        }
    }

    fn target_url(&mut self, raw: &RawSink) -> Option<String> {
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

    fn http_method(&mut self, raw: &RawSink) -> Option<reqwest::Method> {
        let Some(m) = &raw.method else { return Some(reqwest::Method::POST) };
        let upper = m.value.to_ascii_uppercase();
        if crate::sink::http::METHODS.contains(&upper.as_str()) {
            return reqwest::Method::from_bytes(upper.as_bytes()).ok();
        }
        self.error(Pos::of(m), format!("method `{upper}` cannot carry a document"))
            .with_hint("write POST, PUT or PATCH");
        None
    }

    fn http_headers(&mut self, raw: &RawSink) -> Option<Vec<(String, String)>> {
        let mut headers = Vec::new();
        let mut ok = true;
        for (k, v) in raw.headers.iter().flat_map(|h| h.0.iter()) {
            let Some(value) = self.interp(v) else {
                ok = false;
                continue;
            };
            if http::HeaderName::try_from(k.value.as_str()).is_err() || http::HeaderValue::from_str(&value).is_err() {
                self.error(Pos::of(k), format!("`{}` is not a valid header", k.value));
                ok = false;
                continue;
            }
            headers.push((k.value.clone(), value));
        }
        ok.then_some(headers)
    }

    /// `sign:` on a sink: Standard Webhooks, so receivers can verify us.
    fn outgoing_signer(&mut self, sign: &Spanned<raw::RawSign>) -> Option<hmac::HmacScheme> {
        let scheme = &sign.value.scheme;
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
        let spec = preset.specs.into_iter().next().expect("standard-webhooks has a spec");
        hmac::HmacScheme::new(spec, &[secret])
            .map_err(|e| {
                self.error(Pos::of(&sign.value.secret), format!("cannot sign with this secret: {e}"))
                    .with_hint("use a whsec_<base64> secret: `router secret new --scheme standard-webhooks`");
            })
            .ok()
    }

    fn batch(&mut self, b: &Spanned<raw::RawBatch>) -> Option<Batch> {
        let max_wait = self.duration(&b.value.max_wait);
        if b.value.max_events.value == 0 {
            self.error(Pos::of(&b.value.max_events), "max_events must be at least 1");
            return None;
        }
        Some(Batch { max_events: b.value.max_events.value, max_wait: max_wait? })
    }

    /// An interpolated http(s) URL; `None` when it interpolates to nothing (`${VAR:-}` unset).
    fn url(&mut self, s: &Spanned<String>) -> Option<Option<String>> {
        let url = self.interp(s)?;
        if url.is_empty() {
            return Some(None);
        }
        match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(Some(url)),
            _ => {
                // Never echo the URL: it may carry a token.
                self.error(Pos::of(s), "not an http(s) URL").with_hint("write e.g. https://hook.eu1.make.com/abc123");
                None
            }
        }
    }

    fn retry(&mut self, r: &Spanned<raw::RawRetry>) -> Option<RetryPolicy> {
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
        if let Some(d) = &r.value.deadline {
            p.deadline = Some(self.duration(d)?);
        }
        if let Some(m) = &r.value.max_delay {
            p.max_delay = self.duration(m)?;
        }
        Some(p)
    }

    /// Compiles `verify:`; also returns the scheme's default event type and id expressions.
    fn verifier(&mut self, v: &Spanned<RawVerify>) -> Option<(Verifier, Defaults)> {
        let raw = &v.value;
        let scheme = &raw.scheme;
        let name = scheme.value.as_str();
        if !SCHEMES.contains(&name) {
            let d = self.error(Pos::of(scheme), format!("unknown verify scheme `{name}`"));
            match nearest(name, SCHEMES.iter().copied()) {
                Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                None => d.with_hint(format!("known schemes: {}", SCHEMES.join(", "))),
            }
            return None;
        }
        // Misplaced keys are reported, and the scheme is still checked for its own problems.
        let fields_ok = self.only_fields(raw, name);
        let needs = |cx: &mut Self, what: &str, example: &str| {
            cx.error(Pos::of(scheme), format!("scheme `{name}` needs `{what}`")).with_hint(example.to_string());
            None
        };
        let none = Defaults::default();
        let compiled = match name {
            "none" => {
                self.warning(Pos::of(scheme), "verify scheme `none`: anyone who knows the URL can post events")
                    .with_hint("use the provider's signature scheme, or bearer/basic for internal senders");
                Some((Verifier::None, none))
            }
            "bearer" => {
                let Some(token) = &raw.token else {
                    return needs(self, "token", "token: ${MY_APP_TOKEN} (a list allows rotation)");
                };
                let tokens = self.non_empty_secrets(token)?;
                let header = match &raw.header {
                    Some(h) => Some(self.interp(h)?),
                    None => None,
                };
                Some((Verifier::Bearer(BearerToken::new(header, tokens)), none))
            }
            "basic" => {
                let (Some(user), Some(password)) = (&raw.username, &raw.password) else {
                    return needs(self, "username and password", "username: app\npassword: ${APP_PASSWORD}");
                };
                let user = self.interp(user)?;
                let passwords = self.non_empty_secrets(password)?;
                Some((Verifier::Basic(BasicAuth::new(user, passwords)), none))
            }
            _ => {
                let Some(secret) = &raw.secret else {
                    return needs(self, "secret", "secret: ${PROVIDER_WEBHOOK_SECRET} (a list allows rotation)");
                };
                let secrets = self.non_empty_secrets(secret)?;
                let (mut specs, defaults, handshake, challenge_type) =
                    match presets::preset_for(name, raw.legacy.as_ref().is_some_and(|l| l.value)) {
                        Some(p) => {
                            if p.needs_public_url && raw.public_url.is_none() {
                                return needs(
                                self,
                                "public_url",
                                "public_url: https://hooks.example.com (the URL the provider calls, up to the path)",
                            );
                            }
                            (
                                p.specs,
                                Defaults { kind: p.event_type, id: p.event_id, body_limit: p.body_limit },
                                p.handshake,
                                p.challenge_type,
                            )
                        }
                        None => (vec![self.hmac_spec(raw)?], none, false, None),
                    };
                if let Some(t) = &raw.tolerance {
                    let tolerance = self.duration(t)?;
                    for spec in specs.iter_mut().filter(|s| s.tolerance.is_some() || name == "hmac") {
                        spec.tolerance = Some(tolerance);
                    }
                }
                if let Some(u) = &raw.public_url {
                    let url = self.interp(u)?;
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        self.error(Pos::of(u), format!("public_url `{url}` is not an http(s) URL"))
                            .with_hint("write e.g. https://hooks.example.com");
                        return None;
                    }
                    specs.iter_mut().for_each(|s| s.public_url = Some(url.clone()));
                }
                let mut alternatives = Vec::new();
                for spec in specs {
                    match hmac::HmacScheme::new(spec, &secrets) {
                        Ok(v) => alternatives.push(v),
                        Err(e) => {
                            let example = match name {
                                "standard-webhooks" | "svix" => {
                                    "a whsec_<base64> secret, as `router secret new --scheme standard-webhooks` prints"
                                }
                                "close" => "the hex signature_key Close returned for the subscription",
                                _ => "the secret exactly as the provider shows it",
                            };
                            self.error(Pos::of(secret), format!("scheme `{name}` cannot use this secret: {e}"))
                                .with_hint(example);
                            return None;
                        }
                    }
                }
                let verify_token = match (&raw.verify_token, handshake) {
                    (Some(t), true) => Some(Secret::new(self.interp(t)?)),
                    _ => None,
                };
                Some((
                    Verifier::Signature(SignatureScheme {
                        name: name.to_string(),
                        alternatives,
                        verify_token,
                        challenge_type,
                    }),
                    defaults,
                ))
            }
        };
        compiled.filter(|_| fields_ok)
    }

    /// Reports every `verify:` key the scheme does not read.
    fn only_fields(&mut self, raw: &RawVerify, scheme: &str) -> bool {
        let set: [(&str, Option<Pos>); 17] = [
            ("secret", raw.secret.as_ref().map(Pos::of)),
            ("tolerance", raw.tolerance.as_ref().map(Pos::of)),
            ("legacy", raw.legacy.as_ref().map(Pos::of)),
            ("verify_token", raw.verify_token.as_ref().map(Pos::of)),
            ("public_url", raw.public_url.as_ref().map(Pos::of)),
            ("algorithm", raw.algorithm.as_ref().map(Pos::of)),
            ("encoding", raw.encoding.as_ref().map(Pos::of)),
            ("prefix", raw.prefix.as_ref().map(Pos::of)),
            ("payload", raw.payload.as_ref().map(Pos::of)),
            ("timestamp_header", raw.timestamp_header.as_ref().map(Pos::of)),
            ("id_header", raw.id_header.as_ref().map(Pos::of)),
            ("secret_encoding", raw.secret_encoding.as_ref().map(Pos::of)),
            ("secret_prefix", raw.secret_prefix.as_ref().map(Pos::of)),
            ("token", raw.token.as_ref().map(Pos::of)),
            ("header", raw.header.as_ref().map(Pos::of)),
            ("username", raw.username.as_ref().map(Pos::of)),
            ("password", raw.password.as_ref().map(Pos::of)),
        ];
        let allowed: &[&str] = match scheme {
            "none" => &[],
            "bearer" => &["token", "header"],
            "basic" => &["username", "password"],
            "github" => &["secret", "legacy"],
            "meta" => &["secret", "verify_token"],
            "twilio" => &["secret", "public_url"],
            "shopify" => &["secret"],
            "hmac" => &[
                "secret",
                "tolerance",
                "header",
                "algorithm",
                "encoding",
                "prefix",
                "payload",
                "timestamp_header",
                "id_header",
                "secret_encoding",
                "secret_prefix",
            ],
            _ => &["secret", "tolerance"],
        };
        let reads = if allowed.is_empty() { "no other keys".to_string() } else { allowed.join(", ") };
        self.unread_keys(&set, allowed, &format!("scheme `{scheme}`"), &format!("`{scheme}` reads: {reads}"))
    }

    /// Reports each key that is set but not read by `owner` (a scheme, a sink type).
    fn unread_keys(&mut self, set: &[(&str, Option<Pos>)], allowed: &[&str], owner: &str, hint: &str) -> bool {
        let mut ok = true;
        for (field, pos) in set {
            if let (Some(pos), false) = (pos, allowed.contains(field)) {
                self.error(*pos, format!("`{field}` is not used by {owner}")).with_hint(hint.to_string());
                ok = false;
            }
        }
        ok
    }

    /// The spec of `scheme: hmac`, from its own keys.
    fn hmac_spec(&mut self, raw: &RawVerify) -> Option<hmac::HmacSpec> {
        let Some(header) = &raw.header else {
            self.error(Pos::of(&raw.scheme), "scheme `hmac` needs `header`").with_hint("header: X-Signature");
            return None;
        };
        let pick =
            |cx: &mut Self, s: &Option<Spanned<String>>, names: &[&str], what: &str| -> Result<Option<String>, ()> {
                match s {
                    None => Ok(None),
                    Some(v) if names.contains(&v.value.as_str()) => Ok(Some(v.value.clone())),
                    Some(v) => {
                        cx.error(Pos::of(v), format!("unknown {what} `{}`", v.value))
                            .with_hint(format!("write one of: {}", names.join(", ")));
                        Err(())
                    }
                }
            };
        let algorithm = pick(self, &raw.algorithm, hmac::Algorithm::NAMES, "algorithm");
        let encoding = pick(self, &raw.encoding, hmac::Encoding::NAMES, "encoding");
        let key_encoding = pick(self, &raw.secret_encoding, &["raw", "base64", "hex"], "secret encoding");
        let payload = match &raw.payload {
            None => Some(vec![hmac::Piece::Body]),
            Some(p) => hmac::Piece::parse_template(&p.value)
                .map_err(|e| self.error(Pos::of(p), e).with_hint("e.g. {timestamp}.{body}"))
                .ok(),
        };
        let (Ok(algorithm), Ok(encoding), Ok(key_encoding), Some(payload)) =
            (algorithm, encoding, key_encoding, payload)
        else {
            return None;
        };
        let signs_time = payload.contains(&hmac::Piece::Timestamp);
        if signs_time && raw.timestamp_header.is_none() {
            self.error(
                Pos::of(raw.payload.as_ref().expect("payload has {timestamp}")),
                "`{timestamp}` is signed but no `timestamp_header` says where it is",
            )
            .with_hint("timestamp_header: X-Timestamp");
            return None;
        }
        let key = match key_encoding.as_deref() {
            Some("base64") => hmac::KeyFormat::Base64 {
                prefix: raw.secret_prefix.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
            },
            Some("hex") => hmac::KeyFormat::Hex,
            _ => hmac::KeyFormat::Raw,
        };
        Some(hmac::HmacSpec {
            algorithm: algorithm.as_deref().and_then(hmac::Algorithm::parse).unwrap_or(hmac::Algorithm::Sha256),
            header: header.value.to_ascii_lowercase(),
            format: hmac::SigFormat::Bare { prefix: raw.prefix.as_ref().map(|p| p.value.clone()).unwrap_or_default() },
            encoding: encoding.as_deref().and_then(hmac::Encoding::parse).unwrap_or(hmac::Encoding::Hex),
            payload,
            timestamp_header: raw.timestamp_header.as_ref().map(|h| h.value.to_ascii_lowercase()),
            id_header: raw.id_header.as_ref().map(|h| h.value.to_ascii_lowercase()),
            tolerance: signs_time.then_some(std::time::Duration::from_secs(300)),
            key,
            body_hash_query: None,
            public_url: None,
        })
    }

    /// Secrets that must not all be empty.
    /// A verify secret: not empty, and a default written in the file (the
    /// shipped local trial) is flagged so `serve` keeps it off the network.
    fn non_empty_secrets(&mut self, s: &Spanned<raw::OneOrMany<String>>) -> Option<Vec<Secret>> {
        let defaulted: Vec<String> = s.value.0.iter().flat_map(|item| super::env::defaulted(item, self.env)).collect();
        for name in defaulted {
            self.warning(
                Pos::of(s),
                format!(
                    "`{name}` is not set: this verifies with the default written in the file, which anyone can read"
                ),
            )
            .with_hint(format!("export {name}=<the provider's secret>; until then `serve` listens on loopback only"));
            self.trial_secrets.push(super::TrialSecret {
                variable: name,
                file: self.file.to_path_buf(),
                at: Pos::of(s),
            });
        }
        let secrets = self.secrets(s)?;
        if secrets.is_empty() {
            self.error(Pos::of(s), "the secret is empty").with_hint("set the environment variable it names");
            return None;
        }
        Some(secrets)
    }

    fn filter(&mut self, patterns: &Spanned<raw::OneOrMany<Spanned<String>>>) -> Option<EventFilter> {
        let list = &patterns.value.0;
        if list.is_empty() {
            self.error(Pos::of(patterns), "empty event pattern list").with_hint("write \"*\" to accept every type");
            return None;
        }
        EventFilter::parse(list.iter().map(|p| p.value.as_str()))
            .map_err(|errors| {
                for (i, e) in errors {
                    // A lone pattern (`on: x`) has no span of its own: use the field's.
                    let item = if list[i].referenced.line() == 0 {
                        Spanned::new(list[i].value.clone(), patterns.referenced, patterns.defined)
                    } else {
                        Spanned::new(list[i].value.clone(), list[i].referenced, list[i].defined)
                    };
                    let at = self.pos_in(&item, e.offset);
                    self.error(at, e.message)
                        .with_hint("patterns use letters, digits, . _ - : / and * (e.g. customer.*), ! to exclude");
                }
            })
            .ok()
    }

    /// An expression that must only read path parameters the route has.
    fn checked_expr(&mut self, s: &Spanned<String>, allow_literal: bool, params: &[String]) -> Option<Expr> {
        let expr = self.expr(s, allow_literal)?;
        for src in expr.sources() {
            if let Some(p) = src.param_name() {
                if !params.iter().any(|x| x == p) {
                    let d = self.error(self.pos_in(s, 0), format!("`{p}` is not a parameter of this route's path"));
                    if params.is_empty() {
                        d.with_hint("the path has no {params}; read the body with $.field instead");
                    } else {
                        d.with_hint(format!("the path's parameters: {}", params.join(", ")));
                    }
                    return None;
                }
            }
        }
        Some(expr)
    }

    fn mapping(&mut self, node: &Spanned<MapNode>, params: &[String]) -> Option<Mapping> {
        match &node.value {
            MapNode::Expr(text) => {
                let s = Spanned::new(text.clone(), node.referenced, node.defined);
                self.checked_expr(&s, true, params).map(Mapping::Expr)
            }
            MapNode::Literal(v) => Some(Mapping::Expr(Expr::Literal(v.clone()))),
            MapNode::Object(fields) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (k, v) in fields {
                    match self.mapping(v, params) {
                        Some(m) => out.push((k.value.clone(), m)),
                        None => ok = false,
                    }
                }
                ok.then_some(Mapping::Object(out))
            }
        }
    }

    fn route(
        &mut self,
        raw: &RawFile,
        sinks: &BTreeMap<String, Arc<Sink>>,
        declared_sinks: &HashMap<String, (PathBuf, Pos)>,
    ) -> Option<Route> {
        let (name, path) = match (&raw.route, &raw.path) {
            (None, None) => {
                if raw.verify.is_some() || raw.rules.is_some() || raw.event.is_some() || raw.events.is_some() {
                    self.error(Pos { line: 1, column: 1 }, "route settings without `route:` and `path:`")
                        .with_hint("start the file with `route: <name>` and `path: /hooks/...`");
                }
                return None;
            }
            (Some(n), None) => {
                self.error(Pos::of(n), format!("route `{}` has no `path`", n.value))
                    .with_hint("add e.g. `path: /api/webhooks/whop`");
                return None;
            }
            (None, Some(p)) => {
                self.error(Pos::of(p), "a path without a `route:` name")
                    .with_hint("add `route: <name>` (unique in the directory)");
                return None;
            }
            (Some(n), Some(p)) => (n, p),
        };
        let mut ok = true;
        if name.value.is_empty() || !name.value.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            self.error(Pos::of(name), format!("route name `{}` must be letters, digits, - _ .", name.value));
            ok = false;
        }
        if !path.value.starts_with('/') {
            self.error(Pos::of(path), format!("path `{}` must start with `/`", path.value))
                .with_hint(format!("write /{}", path.value));
            ok = false;
        }
        let params = template_params(&path.value);

        let verified = match &raw.verify {
            Some(v) => self.verifier(v),
            None => {
                self.error(Pos::of(name), format!("route `{}` has no `verify:`", name.value))
                    .with_hint("add `verify: {scheme: bearer, token: ${TOKEN}}`, or `verify: {scheme: none}` to accept anyone (warns)");
                None
            }
        };
        let defaults = verified.as_ref().map(|(_, d)| *d).unwrap_or_default();
        let verifier = verified.map(|(v, _)| v);
        let spec = raw.event.as_ref();
        let one =
            |cx: &mut Self, s: Option<&Spanned<String>>, default: Option<&'static str>| -> Result<Option<Expr>, ()> {
                match (s, default) {
                    (Some(s), _) => cx.checked_expr(s, false, &params).map(Some).ok_or(()),
                    (None, Some(d)) => Ok(Some(Expr::parse(d, false).expect("scheme defaults are valid expressions"))),
                    (None, None) => Ok(None),
                }
            };
        let kind = one(self, spec.and_then(|e| e.kind.as_ref()), defaults.kind);
        let id = one(self, spec.and_then(|e| e.id.as_ref()), defaults.id);
        let time = one(self, spec.and_then(|e| e.time.as_ref()), None);

        let filter = match &raw.events {
            Some(p) => self.filter(p),
            None => Some(EventFilter::any()),
        };

        let mut require = Vec::new();
        for (k, v) in raw.require.iter().flat_map(|m| m.0.iter()) {
            let expr = self.checked_expr(k, false, &params);
            let kind = ValueKind::parse(&v.value);
            if kind.is_none() {
                self.error(Pos::of(v), format!("unknown type `{}`", v.value))
                    .with_hint(format!("write one of: {}", ValueKind::NAMES.join(", ")));
            }
            match (expr, kind) {
                (Some(expr), Some(kind)) => require.push(Requirement { text: k.value.clone(), expr, kind }),
                _ => ok = false,
            }
        }

        let mut rules = Vec::new();
        for (i, r) in raw.rules.iter().flatten().enumerate() {
            match self.rule(&name.value, i, r, &params, sinks, declared_sinks) {
                Some(rule) => {
                    if let Some(route_filter) = &filter {
                        ok &= self.reachable(&rule, r, route_filter);
                    }
                    rules.push(rule);
                }
                None => ok = false,
            }
        }

        let respond = match &raw.respond {
            Some(r) => self.respond(r, &params),
            None => Ok(None),
        };
        ok &= respond.is_ok();
        let respond = respond.unwrap_or(None);
        let body_limit =
            raw.body_limit.as_ref().map_or(defaults.body_limit.unwrap_or(DEFAULT_BODY_LIMIT), |b| b.value.0 as usize);
        if body_limit == 0 {
            self.error(Pos::of(raw.body_limit.as_ref().expect("set when zero")), "body_limit must be above 0");
            ok = false;
        }
        let (Ok(kind), Ok(id), Ok(time), Some(verifier), Some(filter), true) = (kind, id, time, verifier, filter, ok)
        else {
            return None;
        };
        let mut route = Route {
            name: name.value.clone(),
            path: path.value.clone(),
            file: self.file.to_path_buf(),
            verifier,
            event: EventSpec { kind, id, time },
            filter,
            require,
            rules,
            body_limit,
            dedup: raw.dedup.as_ref().is_none_or(|d| d.value),
            examples: raw.examples.iter().flat_map(|m| m.0.iter()).map(|(k, v)| (k.value.clone(), v.clone())).collect(),
            respond,
            ingest_fields: None,
        };
        let default_key = |sink: &str| match &sinks.get(sink)?.kind {
            SinkKind::Store(store) => store.key.as_ref(),
            SinkKind::Http(_) | SinkKind::Postgres(_) => None,
        };
        route.ingest_fields = route.fields_read_at_ingest(default_key);
        Some(route)
    }

    /// `respond:`: a 2xx status (anything else would make the provider
    /// retry an event that was accepted), and a text or JSON body.
    fn respond(&mut self, raw: &Spanned<raw::RawRespond>, params: &[String]) -> Result<Option<Respond>, ()> {
        let r = &raw.value;
        let status = r.status.as_ref().map_or(200, |s| s.value);
        if !(200..300).contains(&status) {
            let at = Pos::of(r.status.as_ref().expect("only a set status can be wrong"));
            self.error(at, format!("respond status {status} is not a success"))
                .with_hint("an accepted event is answered 2xx, or the provider sends it again: use 200-299");
            return Err(());
        }
        let (body, default_type) = match (&r.body, &r.json) {
            (Some(_), Some(j)) => {
                self.error(Pos::of(j), "`respond` has both `body` and `json`").with_hint("keep one of them");
                return Err(());
            }
            (Some(b), None) if b.value.is_empty() => (RespondBody::Text(None), "text/plain; charset=utf-8"),
            (Some(b), None) => {
                (RespondBody::Text(Some(self.checked_expr(b, true, params).ok_or(())?)), "text/plain; charset=utf-8")
            }
            (None, Some(j)) => (RespondBody::Json(self.mapping(j, params).ok_or(())?), "application/json"),
            (None, None) => (RespondBody::Text(None), "text/plain; charset=utf-8"),
        };
        let content_type = r.content_type.as_ref().map_or(default_type.to_string(), |c| c.value.clone());
        if http::HeaderValue::from_str(&content_type).is_err() {
            let at = Pos::of(r.content_type.as_ref().expect("only a set type can be wrong"));
            self.error(at, format!("`{content_type}` is not a valid content type"))
                .with_hint("e.g. text/plain; charset=utf-8");
            return Err(());
        }
        Ok(Some(Respond { status, content_type, body }))
    }

    fn rule(
        &mut self,
        route: &str,
        index: usize,
        r: &Spanned<raw::RawRule>,
        params: &[String],
        sinks: &BTreeMap<String, Arc<Sink>>,
        declared_sinks: &HashMap<String, (PathBuf, Pos)>,
    ) -> Option<Rule> {
        let raw = &r.value;
        let on = self.filter(&raw.on);
        let map = match &raw.map {
            Some(m) => self.mapping(m, params).map(Some),
            None => Some(None),
        };
        if raw.to.is_empty() {
            self.error(Pos::of(r), "a rule with no `to:` sinks delivers nothing")
                .with_hint("add `to: [{ sink: NAME }]`");
            return None;
        }
        let mut targets = Vec::new();
        let mut ok = true;
        for t in &raw.to {
            let sink_name = &t.value.sink;
            let key = t.value.key.as_ref().map(|k| self.checked_expr(k, false, params));
            if matches!(key, Some(None)) {
                ok = false;
            }
            let mut upsert = false;
            match sinks.get(&sink_name.value) {
                Some(sink) => {
                    upsert = matches!(&sink.kind, SinkKind::Store(store) if store.mode == StoreMode::Upsert);
                    let needs_key = matches!(&sink.kind, SinkKind::Store(store) if store.key.is_none());
                    if let (Some(k), false) = (&t.value.key, matches!(sink.kind, SinkKind::Store(_))) {
                        // It would be ignored: only a store's record is named by a key.
                        let hint = match &sink.kind {
                            SinkKind::Postgres(_) => "remove it: a postgres sink writes the row of its `conflict:` columns, taken from the document",
                            _ => "remove it: only store sinks take a record key",
                        };
                        self.error(
                            Pos::of(k),
                            format!("`key:` has no effect on {} sink `{}`", sink.kind_name(), sink_name.value),
                        )
                        .with_hint(hint);
                        ok = false;
                    }
                    if key.is_none() && needs_key {
                        self.error(Pos::of(t), format!("store sink `{}` needs a record key", sink_name.value))
                            .with_hint("add `key: $.data.id` to this target, or a default `key:` on the sink");
                        ok = false;
                    }
                }
                // Declared but broken: its own error is already reported.
                None if declared_sinks.contains_key(&sink_name.value) => ok = false,
                None => {
                    let d = self.error(Pos::of(sink_name), format!("unknown sink `{}`", sink_name.value));
                    match nearest(&sink_name.value, declared_sinks.keys().map(String::as_str)) {
                        Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                        None => d.with_hint("declare it under `sinks:` in any file of the directory"),
                    }
                    ok = false;
                }
            }
            let ordered_by = t.value.ordered_by.as_ref().map(|o| self.checked_expr(o, false, params));
            if matches!(ordered_by, Some(None)) {
                ok = false;
            }
            targets.push(Target {
                sink: sink_name.value.clone(),
                key: key.flatten(),
                ordered_by: ordered_by.flatten(),
                // Settled below, once the rule's map and scripts are known.
                stores_body_as_is: upsert,
            });
        }
        let when =
            raw.when.as_ref().map(|w| self.rhai(w, script::Kind::Condition, false).map(|c| (c, w.value.clone())));
        let script = raw.script.as_ref().map(|s| self.rhai(s, script::Kind::Script, true));
        if matches!(when, Some(None)) || matches!(script, Some(None)) {
            ok = false;
        }
        let name = raw.name.as_ref().map_or_else(|| format!("{route}#{index}"), |n| n.value.clone());
        let plain = raw.map.is_none() && raw.when.is_none() && raw.script.is_none();
        for t in &mut targets {
            t.stores_body_as_is &= plain;
        }
        match (on, map, ok) {
            (Some(on), Some(map), true) => {
                Some(Rule { name, on, map, when: when.flatten(), script: script.flatten(), targets })
            }
            _ => None,
        }
    }

    /// Compiles a `when:` or `script:`; a `script:` naming a `.rhai` file is
    /// read from beside the route file. Errors point into the script's file,
    /// or into the YAML for inline source.
    fn rhai(&mut self, s: &Spanned<String>, kind: script::Kind, may_be_file: bool) -> Option<script::Compiled> {
        let text = s.value.trim_end();
        let engine = self.engines.get(self.limits);
        if may_be_file && !text.contains('\n') && text.ends_with(".rhai") {
            let relative = Path::new(text);
            if relative.is_absolute() || relative.components().any(|c| c == std::path::Component::ParentDir) {
                self.error(Pos::of(s), format!("script `{text}` must be a path inside the routes directory"))
                    .with_hint("write it relative to this file, e.g. `scripts/engagement.rhai`");
                return None;
            }
            let file = self.file.parent().unwrap_or(Path::new(".")).join(relative);
            let source = match std::fs::read_to_string(&file) {
                Ok(source) => source,
                Err(e) => {
                    self.error(Pos::of(s), format!("cannot read script `{}`: {e}", file.display()))
                        .with_hint("scripts are read relative to the route file's directory");
                    return None;
                }
            };
            return script::Compiled::compile(engine, self.limits, kind, &source, script::Origin::file(&file))
                .map_err(|e| {
                    let at = Pos { line: e.line as u64, column: e.column as u64 };
                    let mut d = Diagnostic::error(&file, at, e.message.as_str());
                    d.hint = rhai_hint(e.message.as_str(), kind);
                    self.diags.push(d);
                })
                .ok();
        }
        let origin = self.inline_origin(s);
        script::Compiled::compile(engine, self.limits, kind, &s.value, origin)
            .map_err(|e| {
                let hint = rhai_hint(e.message.as_str(), kind);
                let d = self.error(Pos { line: e.line as u64, column: e.column as u64 }, e.message);
                if let Some(h) = hint {
                    d.with_hint(h);
                }
            })
            .ok()
    }

    /// Where inline Rhai text sits in the YAML: a one-line scalar starts at
    /// its position (after any quote); a block scalar (`|`) is located at its
    /// first content line, and every line starts at that indentation.
    fn inline_origin(&self, s: &Spanned<String>) -> script::Origin {
        let at = Pos::of(s);
        let mut origin = script::Origin::file(self.file);
        if s.value.trim_end().contains('\n') {
            let first = self.text.lines().nth(at.line.saturating_sub(1) as usize).unwrap_or("");
            let indent = first.len() - first.trim_start().len();
            origin.line_offset = at.line.saturating_sub(1) as usize;
            origin.first_line_column = indent;
            origin.column_offset = indent;
        } else {
            let start = self.pos_in(s, 0);
            origin.line_offset = start.line as usize - 1;
            origin.first_line_column = start.column as usize - 1;
        }
        origin
    }

    fn script_limits(&mut self, l: &Spanned<raw::RawScriptLimits>) -> Option<Sandbox> {
        let raw = &l.value;
        let mut limits = Sandbox::default();
        let mut ok = true;
        let mut positive = |cx: &mut Self, v: &Option<Spanned<usize>>, name: &str, slot: &mut usize| {
            if let Some(v) = v {
                if v.value == 0 {
                    cx.error(Pos::of(v), format!("script_limits.{name} must be above 0"));
                    ok = false;
                }
                *slot = v.value;
            }
        };
        positive(self, &raw.call_depth, "call_depth", &mut limits.call_depth);
        positive(self, &raw.expr_depth, "expr_depth", &mut limits.expr_depth);
        positive(self, &raw.array_size, "array_size", &mut limits.array_size);
        positive(self, &raw.map_size, "map_size", &mut limits.map_size);
        let mut string_size = None;
        if let Some(v) = &raw.string_size {
            string_size = Some(Spanned { value: v.value.0 as usize, referenced: v.referenced, defined: v.defined });
        }
        positive(self, &string_size, "string_size", &mut limits.string_size);
        if let Some(v) = &raw.operations {
            if v.value == 0 {
                self.error(Pos::of(v), "script_limits.operations must be above 0");
                ok = false;
            }
            limits.operations = v.value;
        }
        if let Some(w) = &raw.wall_time {
            match self.duration(w) {
                Some(d) if !d.is_zero() => limits.wall_time = d,
                Some(_) => {
                    self.error(Pos::of(w), "script_limits.wall_time must be above 0").with_hint("e.g. `100ms`");
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(limits)
    }

    /// A rule pattern the route's `events:` can never admit is a mistake
    /// (a typo, or `events:` narrowed without the rules): reported at the pattern.
    fn reachable(&mut self, rule: &Rule, raw: &Spanned<raw::RawRule>, route_filter: &EventFilter) -> bool {
        let mut ok = true;
        for pattern in rule.on.unreachable_in(route_filter) {
            // A lone `on: x` has its position on the list, not the item.
            let item = raw.value.on.value.0.iter().find(|p| p.value == pattern).map(Pos::of);
            let at = item.filter(|p| p.line > 0).unwrap_or_else(|| Pos::of(&raw.value.on));
            self.error(at, format!("rule {} can never run: `events:` admits no `{pattern}` event", rule.name))
                .with_hint(format!("the route admits: {}", route_filter.describe().join(", ")));
            ok = false;
        }
        ok
    }

    fn view(&mut self, v: &Spanned<raw::RawView>) -> Option<View> {
        let raw = &v.value;
        let params = template_params(&raw.path.value);
        let key = match &raw.key {
            Some(k) => Some(self.checked_expr(k, false, &params)?),
            None => None,
        };
        if key.is_some() && (raw.filter_by.is_some() || raw.summary.is_some() || raw.summary_values.is_some()) {
            self.error(Pos::of(v), "a view with `key` shows one record; `filter_by` and `summary` are for list views")
                .with_hint("drop `key` for a list view, or `filter_by`/`summary` for a record view");
            return None;
        }
        let script = match &raw.script {
            Some(s) => Some(self.rhai(s, script::Kind::Script, true)?),
            None => None,
        };
        let auth = match &raw.auth {
            Some(a) => Some(BearerToken::new(None, self.non_empty_secrets(&a.value.token)?)),
            None => None,
        };
        Some(View {
            path: raw.path.value.clone(),
            tree: self.interp(&raw.tree)?,
            key,
            filter_by: raw
                .filter_by
                .iter()
                .flatten()
                .map(|f| match f.value.split_once('=') {
                    Some((param, field)) => (param.trim().to_string(), field.trim().to_string()),
                    None => (f.value.clone(), f.value.clone()),
                })
                .collect(),
            summary: raw.summary.as_ref().map(|s| s.value.clone()),
            summary_values: raw.summary_values.iter().flatten().map(|v| v.value.clone()).collect(),
            script,
            auth,
            cors: raw.cors.iter().flatten().map(|c| c.value.clone()).collect(),
        })
    }

    fn path_conflict(&mut self, at: Pos, msg: String, origin: &HashMap<String, String>) {
        let owner = origin.iter().find(|(p, _)| msg.contains(&format!("`{p}`"))).map(|(_, o)| o.clone());
        let d = self.error(at, msg);
        match owner {
            Some(o) => d.with_hint(format!("that path belongs to {o}; give this one a distinct path")),
            None => d.with_hint("give each route and view a distinct path"),
        }
    }
}
