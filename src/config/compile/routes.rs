//! Routes: event filters, mappings, `respond:`, rules and their targets,
//! and whether each rule can ever run under its route's filter.

use super::*;

impl FileContext<'_> {
    /// An `events:` or `on:` list as an `EventFilter`. Each bad pattern is
    /// /// placed at the character it goes wrong at, inside its own quotes.
    pub(super) fn filter(&mut self, patterns: &Spanned<raw::OneOrMany<Spanned<String>>>) -> Option<EventFilter> {
        let list = &patterns.value.0;
        if list.is_empty() {
            self.error(Pos::of(patterns), "empty event pattern list").with_hint("write \"*\" to accept every type");
            return None;
        }
        // The filter's parser returns every bad pattern with its offset, so a
        // list with two typos gets two errors in one `check`.
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
    pub(super) fn checked_expr(&mut self, s: &Spanned<String>, allow_literal: bool, params: &[String]) -> Option<Expr> {
        let expr = self.expr(s, allow_literal)?;
        // Checked now because at ingest a missing parameter would only be an
        // empty value: the route would quietly write the wrong records.
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

    /// A `map:` (or `respond.json:`) tree: strings are expressions or
    /// /// literals, objects nest. Every field is compiled even after one fails.
    pub(super) fn mapping(&mut self, node: &Spanned<MapNode>, params: &[String]) -> Option<Mapping> {
        match &node.value {
            MapNode::Expr(text) => {
                let s = Spanned::new(text.clone(), node.referenced, node.defined);
                self.checked_expr(&s, true, params).map(Mapping::Expr)
            }
            // Numbers, booleans and null are written as YAML values, not strings.
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

    /// One file's route. `None` when anything is wrong, after every problem
    /// /// of the route has been reported: the whole file, not its first error.
    pub(super) fn route(
        &mut self,
        raw: &RawFile,
        sinks: &BTreeMap<String, Arc<Sink>>,
        declared_sinks: &HashMap<String, (PathBuf, Pos)>,
    ) -> Option<Route> {
        let (name, path) = match (&raw.route, &raw.path) {
            // A file of sinks, views or directory-wide script limits only: fine,
            // unless it also holds settings that only a route reads.
            (None, None) => {
                if raw.verify.is_some() || raw.rules.is_some() || raw.event.is_some() || raw.events.is_some() {
                    self.error(Pos { line: 1, column: 1 }, "route settings without `route:` and `path:`")
                        .with_hint("start the file with `route: <name>` and `path: /hooks/...`");
                }
                return None;
            }
            // Half a route is almost always a typo'd key: name the missing half.
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
        // Route names appear in URLs (`/routes/NAME/test`), metrics labels and
        // file names of route tests: keep them to characters safe in all three.
        if name.value.is_empty() || !name.value.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            self.error(Pos::of(name), format!("route name `{}` must be letters, digits, - _ .", name.value));
            ok = false;
        }
        // The path is matched against the request path, which always starts
        // with `/`: without one the route could never be reached.
        if !path.value.starts_with('/') {
            self.error(Pos::of(path), format!("path `{}` must start with `/`", path.value))
                .with_hint(format!("write /{}", path.value));
            ok = false;
        }
        // The path's `{params}` are all that expressions may read from the URL.
        let params = template_params(&path.value);

        // `verify:` is required: an unauthenticated route must say so with
        // `scheme: none`, which also warns.
        let verified = match &raw.verify {
            Some(v) => self.verifier(v),
            None => {
                self.error(Pos::of(name), format!("route `{}` has no `verify:`", name.value))
                    .with_hint("add `verify: {scheme: bearer, token: ${TOKEN}}`, or `verify: {scheme: none}` to accept anyone (warns)");
                None
            }
        };
        // A preset brings the provider's own event type and id expressions
        // (GitHub's `X-GitHub-Event` header); the route's `event:` wins.
        let defaults = verified.as_ref().map(|(_, d)| *d).unwrap_or_default();
        let verifier = verified.map(|(v, _)| v);
        let spec = raw.event.as_ref();
        // Compiles one of `event:`'s expressions, or the scheme's default for it.
        let one =
            |cx: &mut Self, s: Option<&Spanned<String>>, default: Option<&'static str>| -> Result<Option<Expr>, ()> {
                match (s, default) {
                    (Some(s), _) => cx.checked_expr(s, false, &params).map(Some).ok_or(()),
                    (None, Some(d)) => Ok(Some(Expr::parse(d, false).expect("scheme defaults are valid expressions"))),
                    (None, None) => Ok(None),
                }
            };
        // No type expression at all: every event is `DEFAULT_EVENT_TYPE`, and
        // `on:` patterns match that.
        let kind = one(self, spec.and_then(|e| e.kind.as_ref()), defaults.kind);
        let id = one(self, spec.and_then(|e| e.id.as_ref()), defaults.id);
        let time = one(self, spec.and_then(|e| e.time.as_ref()), None);

        // No `events:` accepts every type; rules still pick theirs with `on:`.
        let filter = match &raw.events {
            Some(p) => self.filter(p),
            None => Some(EventFilter::any()),
        };

        let mut require = Vec::new();
        // `require:` is `expression: type`; each is checked at ingest, and a
        // missing or mistyped field answers 400 with all of them listed.
        for (k, v) in raw.require.iter().flat_map(|m| m.0.iter()) {
            let expr = self.checked_expr(k, false, &params);
            // JSON's types, plus `integer` and `any` (present, whatever it is).
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
                    // Only against a filter that compiled: a broken `events:` has its
                    // own error, and would make every rule look unreachable.
                    if let Some(route_filter) = &filter {
                        ok &= self.reachable(&rule, r, route_filter);
                    }
                    rules.push(rule);
                }
                None => ok = false,
            }
        }

        // `respond:` errors are reported by `respond`; here only the outcome counts.
        let respond = match &raw.respond {
            Some(r) => self.respond(r, &params),
            None => Ok(None),
        };
        ok &= respond.is_ok();
        let respond = respond.unwrap_or(None);
        // The route's own cap, else the provider's (Shopify sends up to
        // 5 MiB... see `presets`), else the router's default.
        let body_limit =
            raw.body_limit.as_ref().map_or(defaults.body_limit.unwrap_or(DEFAULT_BODY_LIMIT), |b| b.value.0 as usize);
        // A zero cap would reject every request with 413.
        if body_limit == 0 {
            self.error(Pos::of(raw.body_limit.as_ref().expect("set when zero")), "body_limit must be above 0");
            ok = false;
        }
        // Every part was compiled (and its problems reported) before any
        // failure returns: this is the one place that gives up.
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
            // Dedup is on unless the route turns it off: a provider's retry of an
            // event already accepted must not run its rules twice.
            dedup: raw.dedup.as_ref().is_none_or(|d| d.value),
            examples: raw.examples.iter().flat_map(|m| m.0.iter()).map(|(k, v)| (k.value.clone(), v.clone())).collect(),
            respond,
            // Filled below, from the finished route.
            ingest_fields: None,
        };
        // What ingest must parse of a body: only the fields the route's
        // expressions read, when it can tell (see `Route::fields_read_at_ingest`).
        // A store sink's default key is one of those reads.
        let default_key = |sink: &str| match &sinks.get(sink)?.kind {
            SinkKind::Store(store) => store.key.as_ref(),
            SinkKind::Http(_) | SinkKind::Postgres(_) => None,
        };
        route.ingest_fields = route.fields_read_at_ingest(default_key);
        Some(route)
    }

    /// `respond:`: a 2xx status (anything else would make the provider
    /// retry an event that was accepted), and a text or JSON body.
    pub(super) fn respond(&mut self, raw: &Spanned<raw::RawRespond>, params: &[String]) -> Result<Option<Respond>, ()> {
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
        // The content type goes out as a header: reject what hyper would refuse
        // to send, at the line, rather than a 500 on the first request.
        let content_type = r.content_type.as_ref().map_or(default_type.to_string(), |c| c.value.clone());
        if http::HeaderValue::from_str(&content_type).is_err() {
            let at = Pos::of(r.content_type.as_ref().expect("only a set type can be wrong"));
            self.error(at, format!("`{content_type}` is not a valid content type"))
                .with_hint("e.g. text/plain; charset=utf-8");
            return Err(());
        }
        Ok(Some(Respond { status, content_type, body }))
    }

    /// One rule: its `on:` filter, `map:`, `when:`/`script:` and targets,
    /// /// each target checked against the sink it names.
    pub(super) fn rule(
        &mut self,
        route: &str,
        index: usize,
        r: &Spanned<raw::RawRule>,
        params: &[String],
        sinks: &BTreeMap<String, Arc<Sink>>,
        declared_sinks: &HashMap<String, (PathBuf, Pos)>,
    ) -> Option<Rule> {
        let raw = &r.value;
        // Every part of the rule is compiled before deciding, for one full report.
        let on = self.filter(&raw.on);
        let map = match &raw.map {
            Some(m) => self.mapping(m, params).map(Some),
            None => Some(None),
        };
        // Nothing to deliver would make the rule a silent no-op; say so.
        if raw.to.is_empty() {
            self.error(Pos::of(r), "a rule with no `to:` sinks delivers nothing")
                .with_hint("add `to: [{ sink: NAME }]`");
            return None;
        }
        let mut targets = Vec::new();
        let mut ok = true;
        for t in &raw.to {
            let sink_name = &t.value.sink;
            // `Some(None)`: written, but broken (its error is reported).
            let key = t.value.key.as_ref().map(|k| self.checked_expr(k, false, params));
            if matches!(key, Some(None)) {
                ok = false;
            }
            // `upsert` (store sinks' default mode) with no mapping or script
            // stores the body as it came: the dispatcher then skips re-parsing.
            let mut upsert = false;
            match sinks.get(&sink_name.value) {
                Some(sink) => {
                    upsert = matches!(&sink.kind, SinkKind::Store(store) if store.mode == StoreMode::Upsert);
                    // A store record needs a key: from the target, or the sink's default.
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
            // `ordered_by:` may read the path too (a tenant), so it is checked alike.
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
        // `when:` is an expression returning a bool; `script:` may be a
        // file next to the route file or inline source (the `true`).
        let when =
            raw.when.as_ref().map(|w| self.rhai(w, script::Kind::Condition, false).map(|c| (c, w.value.clone())));
        let script = raw.script.as_ref().map(|s| self.rhai(s, script::Kind::Script, true));
        if matches!(when, Some(None)) || matches!(script, Some(None)) {
            ok = false;
        }
        // Unnamed rules are `route#index` in logs, the event log and `tap`.
        let name = raw.name.as_ref().map_or_else(|| format!("{route}#{index}"), |n| n.value.clone());
        // Only a rule that neither maps nor scripts stores the body as it came.
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

    /// A rule pattern the route's `events:` can never admit is a mistake
    /// (a typo, or `events:` narrowed without the rules): reported at the pattern.
    pub(super) fn reachable(&mut self, rule: &Rule, raw: &Spanned<raw::RawRule>, route_filter: &EventFilter) -> bool {
        let mut ok = true;
        // `unreachable_in` compares the patterns themselves (with `*` and `!`),
        // not sample types, so `on: order.*` under `events: [customer.*]` is
        // caught without a payload.
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

    /// Two routes or views on one path: names which one had it first.
    pub(super) fn path_conflict(&mut self, at: Pos, msg: String, origin: &HashMap<String, String>) {
        // The table's message names the clashing path in backquotes; find
        // whose it is to say so in the hint.
        let owner = origin.iter().find(|(p, _)| msg.contains(&format!("`{p}`"))).map(|(_, o)| o.clone());
        let d = self.error(at, msg);
        match owner {
            Some(o) => d.with_hint(format!("that path belongs to {o}; give this one a distinct path")),
            None => d.with_hint("give each route and view a distinct path"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compile_text, problems};

    use super::super::{TEST_HEAD as HEAD, TEST_SINK as SINK};

    #[test]
    fn rules_compile_with_their_filters_and_targets() {
        let config = compile_text(&format!(
            "{HEAD}events: [\"order.*\"]\nrules:\n  - on: order.paid\n    to: [{{ sink: s }}]\n{SINK}"
        ))
        .unwrap();
        let route = &config.routes[0];
        assert!(route.filter.admits("order.paid") && !route.filter.admits("customer.created"));
        assert_eq!(route.rules[0].targets[0].sink, "s");
    }

    #[test]
    fn a_rule_its_route_never_admits_is_reported() {
        let got = problems(&format!(
            "{HEAD}events: [\"order.*\"]\nrules:\n  - on: customer.created\n    to: [{{ sink: s }}]\n{SINK}"
        ));
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn a_mapping_may_only_name_the_paths_parameters() {
        let got = problems(&format!(
            "{HEAD}rules:\n  - on: \"*\"\n    map: {{ who: param:user }}\n    to: [{{ sink: s }}]\n{SINK}"
        ));
        assert_eq!(got, ["7:17: `user` is not a parameter of this route's path"]);
    }
}
