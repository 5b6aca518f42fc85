//! Raw YAML → compiled `Config`, collecting every problem with its position.
//!
//! Order: parse each file, gather sinks (names are global), then compile
//! routes and views against them. A problem in one place never hides the
//! others: each step records diagnostics and carries on.
//!
//! This file holds the driver and `FileContext` (one file's compile state,
//! its diagnostics and the helpers every part uses); each thing compiled
//! has a file: `routes`, `verify`, `sinks`, `scripts`, `views`, and
//! `hints` for the YAML and Rhai error messages.

use super::diagnostic::{nearest, Diagnostic, Diagnostics, Pos};
use super::env::{interpolate, EnvSource};
use super::raw::{self, MapNode, RawFile, RawSink, RawVerify, Spanned};
use super::{Config, Loaded};
use crate::mapping::{Expr, ExprError, Mapping};
use crate::route::filter::EventFilter;
use crate::route::table::{template_params, Endpoint, RouteTable};
use crate::route::{
    EventSpec, Requirement, Respond, RespondBody, Route, Rule, Target, ValueKind, View, DEFAULT_BODY_LIMIT,
};
use crate::script::{self, Engines, Sandbox};
use crate::sink::http::{self as http_sink, HttpSink};
use crate::sink::postgres::{self as postgres_sink, statement::Plan, PostgresSink};
use crate::sink::{Batch, RetryPolicy, Sink, SinkKind, StoreMode, StoreSink, SINK_TYPES};
use crate::verify::presets::{self, SCHEMES};
use crate::verify::{hmac, BasicAuth, BearerToken, Secret, SignatureScheme, Verifier};
use serde_saphyr::Location;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod hints;
mod routes;
mod scripts;
mod sinks;
mod verify;
mod views;

use hints::{rhai_hint, yaml_error};

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
    // Parse every file first: a YAML error in one file is reported, and
    // the others still compile, so `check` lists all files' problems.
    let mut files = Vec::new();
    for (path, text) in sources {
        match raw::parse(text) {
            Ok(Some(raw)) => files.push((path.as_path(), text.as_str(), raw)),
            Ok(None) => {} // an empty file declares nothing
            Err(e) => diags.push(yaml_error(path, text, &e)),
        }
    }

    // What the files share while they compile: the problems found, the
    // script engines (one per sandbox), and the trial secrets `serve` guards.
    let mut dir = Directory { env, diags, engines: Engines::default(), trial_secrets: Vec::new() };
    // Directory-wide script limits: `script_limits:` in a file without a route.
    let mut default_limits = Sandbox::default();
    let mut limits_origin: Option<(PathBuf, Pos)> = None;
    for (path, text, raw) in &files {
        // Read before any script compiles: the limits are part of each
        // script's engine, so they must be known first.
        let (Some(l), None) = (&raw.script_limits, &raw.route) else { continue };
        let mut cx = dir.file(path, text, Sandbox::default());
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
    // Sorted by name: `router check` and the admin API list them in a
    // stable order.
    let mut sinks: BTreeMap<String, Arc<Sink>> = BTreeMap::new();
    let mut sink_origin: HashMap<String, (PathBuf, Pos)> = HashMap::new();
    for (path, text, raw) in &files {
        let mut cx = dir.file(path, text, default_limits);
        for (name, sink) in raw.sinks.iter().flat_map(|m| m.0.iter()) {
            // Names are global so any route may send to any sink; a second
            // declaration is an error at the second, pointing to the first.
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

    // Routes and views share one path table: a webhook route and a view
    // on the same path would shadow each other.
    let mut table = RouteTable::default();
    let mut routes = Vec::new();
    let mut views = Vec::new();
    let mut route_origin: HashMap<String, (PathBuf, Pos)> = HashMap::new();
    let mut path_origin: HashMap<String, String> = HashMap::new();
    for (path, text, raw) in &files {
        let mut cx = dir.file(path, text, default_limits);
        // A route file's own `script_limits:` apply to its scripts only.
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
                // Index into `routes`: the table holds positions, the config the
                // routes, so a lookup is one match and one index.
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
    // Counted from the raw rules, so a rule that failed to compile still
    // counts as using its sink: no warning on top of the real error.
    let used: std::collections::HashSet<&str> = files
        .iter()
        .flat_map(|(_, _, raw)| raw.rules.iter().flatten())
        .flat_map(|r| r.value.to.iter().map(|t| t.value.sink.value.as_str()))
        .collect();
    let Directory { mut diags, trial_secrets, .. } = dir;
    for (name, (file, at)) in &sink_origin {
        if !used.contains(name.as_str()) {
            let mut d = Diagnostic::warning(file, *at, format!("sink `{name}` is not used by any rule"));
            d.hint = Some(format!("send to it with `to: [{{ sink: {name} }}]` in a rule, or remove it"));
            diags.push(d);
        }
    }

    // Sorted by file, line and column: the order an operator fixes them in.
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    let files = sources.iter().map(|(p, _)| p.clone()).collect();
    Ok(Loaded { config: Config { routes, views, sinks, table, files, trial_secrets }, warnings: diags })
}

/// What the files of one directory share while they compile.
struct Directory<'a> {
    env: &'a dyn EnvSource,
    diags: Diagnostics,
    engines: Engines,
    trial_secrets: Vec<super::TrialSecret>,
}

impl<'a> Directory<'a> {
    /// The context one file compiles in, its scripts under `limits`.
    fn file<'f>(&'f mut self, file: &'f Path, text: &'f str, limits: Sandbox) -> FileContext<'f> {
        FileContext {
            file,
            text,
            env: self.env,
            diags: &mut self.diags,
            engines: &mut self.engines,
            limits,
            trial_secrets: &mut self.trial_secrets,
        }
    }
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
        // Every diagnostic of this file carries its path: one shape,
        // `file:line:col: error: message`, whatever part found it.
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
        // serde-saphyr places a quoted scalar at its quote; the text starts
        // one column later.
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
        // The error names the variable and never its value; a secret's
        // default may be in the file, but a set value is the operator's.
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
        // A list item has no span of its own (`OneOrMany<String>`): each is
        // placed at the list.
        for item in &s.value.0 {
            let spanned = Spanned::new(item.clone(), s.referenced, s.defined);
            let v = self.interp(&spanned)?;
            if !v.is_empty() {
                out.push(Secret::new(v));
            }
        }
        Some(out)
    }

    /// Reports each key that is written but not read by `owner` (a scheme,
    /// a sink type): `allowed` is the owner's row of its table.
    fn unread_keys(&mut self, written: &[(&str, &Location)], allowed: &[&str], owner: &str, hint: &str) -> bool {
        let mut ok = true;
        for (key, at) in written {
            if !allowed.contains(key) {
                self.error(Pos::from_location(at), format!("`{key}` is not used by {owner}")).with_hint(hint);
                ok = false;
            }
        }
        ok
    }

    fn duration(&mut self, s: &Spanned<String>) -> Option<std::time::Duration> {
        // humantime's units (`500ms`, `5m`, `1h 30m`) are what every duration
        // in a route file uses, and what `--help` shows for the CLI's.
        humantime::parse_duration(s.value.trim())
            .map_err(|e| {
                self.error(Pos::of(s), format!("`{}` is not a duration: {e}", s.value))
                    .with_hint("write e.g. 500ms, 30s, 5m or 1h")
            })
            .ok()
    }
}

/// `name`'s row of a keys table (`SINK_KEYS`, `SCHEME_KEYS`), or `otherwise`.
fn keys_of<'t>(table: &[(&str, &'t [&'t str])], name: &str, otherwise: &'t [&'t str]) -> &'t [&'t str] {
    table.iter().find(|(n, _)| *n == name).map_or(otherwise, |(_, keys)| keys)
}

/// What the parts' unit tests compile: one file, from text, with no
/// environment; the config, or every error as `line:col: message`.
#[cfg(test)]
pub(super) fn compile_text(yaml: &str) -> Result<Config, Vec<String>> {
    let env = std::collections::HashMap::<String, String>::new();
    let sources = [(PathBuf::from("t.yaml"), yaml.to_string())];
    compile(&sources, &env, Diagnostics::default())
        .map(|l| l.config)
        .map_err(|d| d.errors().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect())
}

/// The problems a file has (panics if it compiles).
#[cfg(test)]
pub(super) fn problems(yaml: &str) -> Vec<String> {
    match compile_text(yaml) {
        Ok(_) => panic!("the file compiles; it should not"),
        Err(problems) => problems,
    }
}

/// The head of the parts' test route files (four lines, a path parameter
/// `tenant`, events typed by `$.type`) and a store sink their rules send to.
#[cfg(test)]
pub(super) const TEST_HEAD: &str = "route: r\npath: /r/{tenant}\nverify: { scheme: none }\nevent: { type: $.type }\n";
#[cfg(test)]
pub(super) const TEST_SINK: &str = "sinks:\n  s: { type: store, key: $.id }\n";
