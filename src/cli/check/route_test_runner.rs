//! Route tests (`routes.d/tests/*.yaml`), run by `router check`: each test
//! posts a request to the real ingest service in-process (no socket), runs
//! the event's deliveries once (store sinks write to a throwaway store;
//! HTTP sinks are not called, their body is captured) and compares status,
//! outcome, documents and store records with what the test expects. The
//! tests of one file run in order against one store, so a file can play a
//! sequence (join, then access, then leave).

use crate::config::diagnostic::Pos;
use crate::config::env::EnvSource;
use crate::config::raw::Spanned;
use crate::config::Config;
use crate::dispatch::{self, Rehearsed};
use crate::runtime::{DataDir, Runtime};
use axum::body::Body;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<Spanned<RouteTest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteTest {
    name: String,
    /// The route under test (its path, params filled, is the default).
    route: String,
    #[serde(default)]
    request: Request,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// Path parameters, e.g. `{sessionId: s-1}`.
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Query string without `?`.
    query: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The JSON body, written as YAML.
    body: Option<Value>,
    /// Or a file holding the body, relative to the test file.
    body_file: Option<String>,
    /// Signed as the route's provider would (default); `false` sends the
    /// headers as given, to test rejections.
    sign: Option<bool>,
    /// The signed message id (a repeat of an id is a duplicate).
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<u16>,
    /// accepted | filtered | duplicate | rejected
    outcome: Option<String>,
    #[serde(default)]
    deliveries: Vec<ExpectDelivery>,
    #[serde(default)]
    records: Vec<ExpectRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDelivery {
    sink: String,
    /// delivered | skipped | dropped | failed (default delivered)
    status: Option<String>,
    /// Fields the sink must receive (a subset: unlisted fields are not compared).
    document: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectRecord {
    tree: String,
    key: String,
    /// Fields the record must hold (a subset); `null`: no record.
    record: Value,
}

/// What running the tests came to.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    /// `file:line: test "name": problem`, one per failed test (with its diff lines).
    pub failures: Vec<String>,
}

/// Runs every `*.yaml` under `<routes>/tests/`. A file that does not parse
/// is one failure; the config is loaded afresh per file (its own store).
pub async fn run(routes: &Path, env: &dyn EnvSource) -> Report {
    let mut report = Report::default();
    let dir = routes.join("tests");
    let Ok(entries) = std::fs::read_dir(&dir) else { return report };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for file in files {
        run_file(routes, &file, env, &mut report).await;
    }
    report
}

async fn run_file(routes: &Path, file: &Path, env: &dyn EnvSource, report: &mut Report) {
    // Every problem in the one diagnostic shape: file:line:col: error: ...
    let fail_at = |report: &mut Report, at: Pos, msg: String| {
        report.failures.push(crate::config::Diagnostic::error(file, at, msg).to_string())
    };
    let fail = |report: &mut Report, msg: String| fail_at(report, Pos { line: 1, column: 1 }, msg);
    let text = match std::fs::read(file).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let d = crate::config::not_utf8(file, e.as_bytes(), e.utf8_error().valid_up_to());
            return report.failures.push(d.to_string());
        }
        Err(e) => return fail(report, format!("cannot read: {e}")),
    };
    let parsed: TestFile = match serde_saphyr::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            let at = e.location().map(|l| Pos::from_location(&l)).unwrap_or(Pos { line: 1, column: 1 });
            let message = e.without_snippet().to_string();
            let message = message.split_once(" at line ").map_or(message.as_str(), |(m, _)| m).trim().to_string();
            return fail_at(report, at, message);
        }
    };
    let config = match crate::config::load(&[routes.to_path_buf()], env) {
        Ok(l) => l.config,
        Err(_) => return fail(report, "the routes do not load; fix them first".into()),
    };
    let scratch = match Scratch::new(config) {
        Ok(s) => s,
        Err(e) => return fail(report, e),
    };
    let app = scratch.app();
    for (n, test) in parsed.tests.iter().enumerate() {
        let at = Pos::of(test);
        let problems = run_test(&scratch.rt, &app, file, &test.value, n).await;
        if problems.is_empty() {
            report.passed += 1;
        } else {
            let mut msg =
                format!("{}:{}:{}: error: test \"{}\" failed", file.display(), at.line, at.column, test.value.name);
            for p in problems {
                let _ = write!(msg, "\n  {}", p.replace('\n', "\n  "));
            }
            report.failures.push(msg);
        }
    }
}

/// A throwaway runtime: the routes' config over a scratch store in the
/// temp dir, removed when this is dropped (drop its `app`s first).
pub struct Scratch {
    pub rt: Arc<Runtime>,
    dir: PathBuf,
}

impl Scratch {
    pub fn new(config: Config) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("router-route-tests-{}", unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make a scratch store: {e}"))?;
        match DataDir::open(&dir) {
            Ok(data) => Ok(Scratch { rt: Runtime::new(config, data), dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e.to_string())
            }
        }
    }

    /// The ingest service over this runtime, called in-process.
    pub fn app(&self) -> impl crate::server::App {
        crate::server::app(self.rt.clone(), crate::server::Limits::default())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the ingest service made of one request.
pub struct Posted {
    pub status: u16,
    pub answer: Value,
    /// `accepted`, `filtered`, `duplicate` or `rejected`.
    pub outcome: &'static str,
    /// When accepted: each delivery, run once (`dispatch::rehearse`).
    pub rehearsed: Vec<Rehearsed>,
}

/// Posts `req` to `app` in-process and rehearses the deliveries of the
/// event it accepted.
pub async fn post(rt: &Runtime, app: &impl crate::server::App, req: http::Request<Body>) -> Result<Posted, String> {
    let resp = app.clone().oneshot(req).await.map_err(|e| format!("the request failed: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let outcome = match (status, &answer) {
        (200..=299, a) if a["duplicate"] == true => "duplicate",
        (200..=299, a) if a["filtered"] == true => "filtered",
        (200..=299, _) => "accepted",
        _ => "rejected",
    };
    let rehearsed = match (outcome, answer["id"].as_str().and_then(|id| id.parse::<u64>().ok())) {
        // On this thread, as the dispatcher's blocking round would run them.
        ("accepted", Some(id)) => dispatch::rehearse(rt, id),
        _ => Vec::new(),
    };
    Ok(Posted { status, answer, outcome, rehearsed })
}

/// A random suffix for scratch names and message ids.
fn unique() -> String {
    crate::random::hex(8)
}

/// One test's problems (empty when it passes).
async fn run_test(rt: &Runtime, app: &impl crate::server::App, file: &Path, t: &RouteTest, n: usize) -> Vec<String> {
    let config = rt.config();
    let Some(route) = config.route(&t.route) else {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        return vec![format!("no route `{}` (routes: {})", t.route, names.join(", "))];
    };
    let body = match (&t.request.body, &t.request.body_file) {
        (Some(b), _) => serde_json::to_vec(b).expect("JSON serialises"),
        (None, Some(f)) => match std::fs::read(file.parent().unwrap_or(Path::new(".")).join(f)) {
            Ok(b) => b,
            Err(e) => return vec![format!("body_file {f}: {e}")],
        },
        (None, None) => b"{}".to_vec(),
    };
    let mut path = crate::route::table::fill_params(&route.path, |name| t.request.params.get(name).map(String::as_str));
    if let Some(q) = &t.request.query {
        path = format!("{path}?{q}");
    }
    let uri: http::Uri = match path.parse() {
        Ok(u) => u,
        Err(e) => return vec![format!("request path `{path}`: {e}")],
    };
    let mut headers: Vec<(String, String)> = t.request.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if t.request.sign.unwrap_or(true) {
        let id = t.request.id.clone().unwrap_or_else(|| format!("msg_test_{n}_{}", unique()));
        match route.verifier.sign(&body, &uri, crate::event::now_ms() / 1000, &id) {
            Ok(signed) => headers.extend(signed),
            Err(e) => return vec![format!("cannot sign for route `{}`: {e}", route.name)],
        }
    }
    let mut req = http::Request::post(uri).header("content-type", "application/json");
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let Ok(req) = req.body(Body::from(body)) else { return vec!["a header is not valid HTTP".into()] };
    let Posted { status, answer, outcome, rehearsed } = match post(rt, app, req).await {
        Ok(p) => p,
        Err(e) => return vec![e],
    };

    let mut problems = Vec::new();
    if let Some(want) = t.expect.status {
        if want != status {
            problems.push(format!("status: expected {want}, got {status} {answer}"));
        }
    }
    if let Some(want) = &t.expect.outcome {
        if want != outcome {
            problems.push(format!("outcome: expected {want}, got {outcome} ({status} {answer})"));
        }
    }
    problems.extend(compare_deliveries(&t.expect.deliveries, &rehearsed));
    for r in &t.expect.records {
        let actual = rt.data.records.get(&r.tree, &r.key).ok().flatten();
        match (&r.record, actual) {
            (Value::Null, None) => {}
            (Value::Null, Some(a)) => problems.push(format!("record {}/{}: expected none, got {a}", r.tree, r.key)),
            (_, None) => problems.push(format!("record {}/{}: expected one, there is none", r.tree, r.key)),
            (want, Some(a)) => {
                let diff = subset_diff(want, &a, "$");
                if !diff.is_empty() {
                    problems.push(format!("record {}/{}:\n{}", r.tree, r.key, diff.join("\n")));
                }
            }
        }
    }
    problems
}

/// Expected deliveries matched in order against the actual ones of the same sink.
fn compare_deliveries(expected: &[ExpectDelivery], actual: &[Rehearsed]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = vec![false; actual.len()];
    for e in expected {
        let Some(i) = (0..actual.len()).find(|&i| !used[i] && actual[i].sink == e.sink) else {
            let sinks: Vec<&str> = actual.iter().map(|a| a.sink.as_str()).collect();
            problems.push(format!("no delivery to sink `{}` (deliveries went to: [{}])", e.sink, sinks.join(", ")));
            continue;
        };
        used[i] = true;
        let a = &actual[i];
        let want = e.status.as_deref().unwrap_or("delivered");
        if want != a.status {
            let why = a.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
            problems
                .push(format!("delivery to `{}` (rule {}): expected {want}, got {}{why}", a.sink, a.rule, a.status));
        }
        if let (Some(want), Some(got)) = (&e.document, &a.document) {
            let diff = subset_diff(want, got, "$");
            if !diff.is_empty() {
                problems.push(format!("document sent to `{}`:\n{}", a.sink, diff.join("\n")));
            }
        } else if e.document.is_some() {
            problems.push(format!("delivery to `{}` sent no document", a.sink));
        }
    }
    problems
}

/// Where `actual` differs from `expected`, where every field `expected`
/// names must match and other fields of `actual` are ignored. Arrays
/// compare element by element and must have the same length.
pub fn subset_diff(expected: &Value, actual: &Value, at: &str) -> Vec<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .flat_map(|(k, v)| match a.get(k) {
                Some(av) => subset_diff(v, av, &format!("{at}.{k}")),
                None if v.is_null() => Vec::new(),
                None => vec![format!("- {at}.{k}: expected {v}, missing")],
            })
            .collect(),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            e.iter().zip(a).enumerate().flat_map(|(i, (ev, av))| subset_diff(ev, av, &format!("{at}[{i}]"))).collect()
        }
        (e, a) if e == a => Vec::new(),
        (e, a) => vec![format!("- {at}: expected {e}\n+ {at}: actual   {a}")],
    }
}

#[cfg(test)]
mod tests {
    use super::subset_diff;
    use serde_json::json;

    #[test]
    fn subset_diffs() {
        let actual = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "extra": true});
        assert!(subset_diff(&json!({"a": 1, "b": {"c": [1, 2]}}), &actual, "$").is_empty());
        assert_eq!(
            subset_diff(&json!({"b": {"d": "y"}}), &actual, "$"),
            ["- $.b.d: expected \"y\"\n+ $.b.d: actual   \"x\""]
        );
        assert_eq!(subset_diff(&json!({"z": 1}), &actual, "$"), ["- $.z: expected 1, missing"]);
        assert!(subset_diff(&json!({"z": null}), &actual, "$").is_empty());
        assert_eq!(subset_diff(&json!({"b": {"c": [1]}}), &actual, "$").len(), 1);
    }
}
