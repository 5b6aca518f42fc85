//! Rhai scripts (`script:`) and conditions (`when:`), sandboxed.
//!
//! Both are compiled once per config load into an AST bound to an engine
//! that carries the sandbox limits; running one never parses. The sandbox:
//! no module system (the `no_module` feature, so nothing is read from disk),
//! no `eval`, bounded operations, call depth, expression depth and
//! string/array/map sizes, and a wall-clock deadline checked from the
//! progress callback (native helpers are short and cannot loop). `print` and
//! `debug` go to the log. A script error fails its delivery, never the
//! router: every error comes back as a `ScriptError` value.

mod helpers;
pub mod qr;

pub use helpers::DropSignal;

use crate::storage::EventV1;
use rhai::{Dynamic, Engine, EvalAltResult, Position, Scope, AST};
use serde_json::Value;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sandbox limits. Defaults suit transforms of one webhook; `script_limits:`
/// in a route file (or, for the whole directory, in a file without a route)
/// changes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sandbox {
    pub operations: u64,
    pub call_depth: usize,
    pub expr_depth: usize,
    pub string_size: usize,
    pub array_size: usize,
    pub map_size: usize,
    pub wall_time: Duration,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            operations: 100_000,
            call_depth: 32,
            expr_depth: 64,
            string_size: 1 << 20,
            array_size: 10_000,
            map_size: 10_000,
            wall_time: Duration::from_millis(100),
        }
    }
}

/// Operations between two wall-clock checks: `Instant::now` on every
/// operation would cost more than the operations.
const CLOCK_EVERY: u64 = 256;

thread_local! {
    /// The running script's deadline; the engine's progress callback is
    /// shared, so the per-run deadline lives with the thread running it.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Engines by limits, so every script with the same limits shares one.
#[derive(Default)]
pub struct Engines(HashMap<Sandbox, Arc<Engine>>);

impl Engines {
    pub fn get(&mut self, limits: Sandbox) -> Arc<Engine> {
        self.0.entry(limits).or_insert_with(|| Arc::new(sandboxed(limits))).clone()
    }
}

/// The variables every script and condition sees.
pub const INPUTS: &[&str] = &["doc", "payload", "event", "current"];

fn sandboxed(limits: Sandbox) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_strict_variables(true)
        .set_max_operations(limits.operations)
        .set_max_call_levels(limits.call_depth)
        .set_max_expr_depths(limits.expr_depth, limits.expr_depth)
        .set_max_string_size(limits.string_size)
        .set_max_array_size(limits.array_size)
        .set_max_map_size(limits.map_size)
        .disable_symbol("eval")
        .on_print(|text| tracing::info!(script_print = text, "Script print."))
        .on_debug(|text, source, pos| tracing::debug!(script_debug = text, source, %pos, "Script debug."))
        .on_progress(|ops| {
            let late =
                ops % CLOCK_EVERY == 0 && DEADLINE.with(|d| d.get()).is_some_and(|deadline| Instant::now() > deadline);
            late.then(|| Dynamic::from("wall time"))
        });
    helpers::register(&mut engine);
    engine
}

/// Where a script's text sits, so errors point into the right file: a
/// `.rhai` file, or a YAML scalar (line and column offsets of its text).
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: PathBuf,
    /// File line of the script's line 1, minus one.
    pub line_offset: usize,
    /// Added to the column of errors on the script's first line.
    pub first_line_column: usize,
    /// Added to the column of errors on the script's other lines.
    pub column_offset: usize,
}

impl Origin {
    pub fn file(file: &Path) -> Self {
        Self { file: file.to_path_buf(), line_offset: 0, first_line_column: 0, column_offset: 0 }
    }

    /// File line and column of a position in the script (1-based).
    pub fn locate(&self, pos: Position) -> (usize, usize) {
        let (line, column) = (pos.line().unwrap_or(1), pos.position().unwrap_or(1));
        let offset = if line == 1 { self.first_line_column } else { self.column_offset };
        (line + self.line_offset, column + offset)
    }

    fn at(&self, pos: Position) -> String {
        if pos.is_none() {
            return self.file.display().to_string();
        }
        let (line, column) = self.locate(pos);
        format!("{}:{line}:{column}", self.file.display())
    }
}

/// A compile error at its place in the file.
#[derive(Debug)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A script (or condition) that failed while running, with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError(pub String);

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A compiled `script:` or `when:`.
pub struct Compiled {
    engine: Arc<Engine>,
    ast: AST,
    origin: Origin,
    wall_time: Duration,
    /// `when:` is an expression that must give a boolean.
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Script,
    Condition,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?} at {}", self.kind, self.origin.at(Position::NONE))
    }
}

impl Compiled {
    pub fn compile(
        engine: Arc<Engine>,
        limits: Sandbox,
        kind: Kind,
        source: &str,
        origin: Origin,
    ) -> Result<Self, CompileError> {
        // With strict variables, a misspelt name (`paylod`) is a compile
        // error that `router check` reports, not a failure at delivery.
        let mut inputs = Scope::new();
        for name in INPUTS {
            inputs.push(*name, ());
        }
        let parsed = match kind {
            Kind::Script => engine.compile_with_scope(&inputs, source),
            Kind::Condition => engine.compile_expression_with_scope(&inputs, source),
        };
        match parsed {
            Ok(ast) => Ok(Self { engine, ast, origin, wall_time: limits.wall_time, kind }),
            Err(e) => {
                let (line, column) = origin.locate(e.position());
                Err(CompileError { line, column, message: e.err_type().to_string() })
            }
        }
    }

    fn eval(&self, scope: &mut Scope<'static>) -> Result<Dynamic, Refusal> {
        let deadline = Instant::now() + self.wall_time;
        DEADLINE.with(|d| d.set(Some(deadline)));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, &self.ast);
        DEADLINE.with(|d| d.set(None));
        result.map_err(|e| self.error(*e))
    }

    fn error(&self, e: EvalAltResult) -> Refusal {
        if let EvalAltResult::ErrorRuntime(value, _) = &e {
            if let Some(signal) = value.clone().try_cast::<DropSignal>() {
                return Refusal::Dropped(signal.0);
            }
        }
        let at = self.origin.at(e.position());
        let message = match &e {
            EvalAltResult::ErrorTerminated(..) => {
                format!("ran longer than its wall-time limit ({})", humantime::format_duration(self.wall_time))
            }
            EvalAltResult::ErrorTooManyOperations(..) => {
                "ran more operations than its limit (script_limits.operations)".to_string()
            }
            _ => e.to_string().split(" (line ").next().unwrap_or_default().to_string(),
        };
        Refusal::Error(ScriptError(format!("{at}: {message}")))
    }
}

/// Why a rule's scripts did not give a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// `when:` was false.
    NotApplicable(String),
    /// The script called `drop(reason)`.
    Dropped(String),
    Error(ScriptError),
}

/// One event's run through a rule's `when:` and `script:`: the inputs are
/// converted to Rhai values once and shared by both.
pub struct Run {
    scope: Scope<'static>,
}

impl Run {
    /// `event`: what the script sees as `event` (`event_object` for a
    /// delivery); `current`: the record the rule's store target holds now.
    pub fn new(doc: &Value, payload: &Value, event: &Value, current: Option<&Value>) -> Result<Self, Refusal> {
        let mut scope = Scope::new();
        scope.push("doc", to_dynamic(doc));
        scope.push_constant("payload", to_dynamic(payload));
        scope.push_constant("event", to_dynamic(event));
        scope.push_constant("current", current.map(to_dynamic).unwrap_or(Dynamic::UNIT));
        Ok(Self { scope })
    }

    /// Runs `when:`; `Err(NotApplicable)` when it is false.
    pub fn check(&mut self, condition: &Compiled, text: &str) -> Result<(), Refusal> {
        let value = condition.eval(&mut self.scope)?;
        match value.as_bool() {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::NotApplicable(format!("`when: {text}` is false"))),
            Err(kind) => Err(Refusal::Error(ScriptError(format!(
                "{}: `when:` gave a {kind}, not true or false",
                condition.origin.at(Position::NONE)
            )))),
        }
    }

    /// Runs `script:`. The document is what the script returns when that is
    /// a map or an array, otherwise `doc` as the script left it.
    pub fn transform(&mut self, script: &Compiled) -> Result<(), Refusal> {
        let result = script.eval(&mut self.scope)?;
        if result.is_map() || result.is_array() {
            self.scope.set_value("doc", result);
        } else if !result.is_unit() {
            return Err(Refusal::Error(ScriptError(format!(
                "{}: the script returned a {}; return the document (a map) or end with a statement",
                script.origin.at(Position::NONE),
                result.type_name()
            ))));
        }
        Ok(())
    }

    /// The document to deliver.
    pub fn into_doc(self) -> Result<Value, Refusal> {
        let doc = self.scope.get("doc").cloned().unwrap_or(Dynamic::UNIT);
        rhai::serde::from_dynamic(&doc)
            .map_err(|e| Refusal::Error(ScriptError(format!("the document is not valid JSON: {e}"))))
    }
}

/// JSON as a Rhai value. Numbers keep their exact text in `serde_json`
/// (`arbitrary_precision`, so a 30-digit id is never rounded), which
/// `rhai::serde` cannot read; hence this walk. An integer beyond Rhai's
/// 64-bit range comes in as its exact digits in a string, not a rounded
/// float.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Dynamic::from_int(i),
            (None, _) if n.to_string().bytes().all(|b| b.is_ascii_digit() || b == b'-') => n.to_string().into(),
            (None, Some(f)) => Dynamic::from_float(f),
            (None, None) => n.to_string().into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(fields) => {
            Dynamic::from_map(fields.iter().map(|(k, v)| (k.as_str().into(), to_dynamic(v))).collect())
        }
    }
}

/// What a delivery's scripts see as `event`.
pub fn event_object(e: &EventV1) -> Value {
    let pairs =
        |p: &[(String, String)]| Value::Object(p.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
    serde_json::json!({
        "type": e.event_type,
        "id": e.event_id,
        "log_id": e.id,
        "route": e.route,
        "received_at": e.received_at,
        "time": e.event_time,
        "params": pairs(&e.params),
        "query": pairs(&e.query),
        "headers": pairs(&e.headers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> EventV1 {
        EventV1 {
            id: 7,
            route: "r".into(),
            event_type: "membership.accessed".into(),
            event_id: Some("msg_1".into()),
            event_time: None,
            received_at: "2025-10-21T10:00:00.000Z".into(),
            received_ms: 0,
            params: vec![("sessionId".into(), "s-1".into())],
            query: vec![],
            headers: vec![],
            deliveries: 1,
        }
    }

    fn compile_with(limits: Sandbox, kind: Kind, source: &str) -> Result<Compiled, CompileError> {
        let engine = Engines::default().get(limits);
        Compiled::compile(engine, limits, kind, source, Origin::file(Path::new("t.rhai")))
    }

    fn run_with(limits: Sandbox, source: &str, current: Option<Value>) -> Result<Value, Refusal> {
        let script = compile_with(limits, Kind::Script, source).unwrap();
        let mut run =
            Run::new(&json!({"n": 1}), &json!({"data": {"x": "y"}}), &event_object(&event()), current.as_ref())?;
        run.transform(&script)?;
        run.into_doc()
    }

    fn run(source: &str) -> Result<Value, Refusal> {
        run_with(Sandbox::default(), source, None)
    }

    fn error_of(r: Result<Value, Refusal>) -> String {
        match r {
            Err(Refusal::Error(e)) => e.0,
            other => panic!("expected a script error, got {other:?}"),
        }
    }

    #[test]
    fn sees_doc_payload_event_and_current() {
        let src = "doc.n += 1; doc.x = payload.data.x; doc.session = event.params.sessionId; \
                   doc.seen = (current?.seen ?? 0) + 1; doc.kind = event.type;";
        let out = run_with(Sandbox::default(), src, Some(json!({"seen": 4}))).unwrap();
        assert_eq!(out, json!({"n": 2, "x": "y", "session": "s-1", "seen": 5, "kind": "membership.accessed"}));
        assert_eq!(run("doc.seen = current?.seen ?? 0;").unwrap()["seen"], 0);
    }

    #[test]
    fn a_returned_map_is_the_document_and_other_values_are_errors() {
        assert_eq!(run("#{ replaced: true }").unwrap(), json!({"replaced": true}));
        assert!(error_of(run("42")).contains("returned a i64"));
    }

    #[test]
    fn drop_records_the_reason() {
        assert_eq!(run(r#"drop("not a credit pack")"#), Err(Refusal::Dropped("not a credit pack".into())));
        assert_eq!(run("drop()"), Err(Refusal::Dropped("dropped by the script".into())));
    }

    #[test]
    fn runtime_errors_name_the_place() {
        let e = error_of(run("let a = 1;\nlet b = a + no_such_fn();"));
        assert!(e.starts_with("t.rhai:2:13: Function not found: no_such_fn"), "{e}");
    }

    #[test]
    fn limits_stop_runaway_scripts() {
        // A wall time far off, so a loaded CI box still hits the other limits first.
        let roomy = Sandbox { wall_time: Duration::from_secs(60), ..Sandbox::default() };
        let run = |src: &str| run_with(roomy, src, None);
        assert!(error_of(run("loop { doc.n += 1; }")).contains("more operations than its limit"));
        let slow = Sandbox { operations: u64::MAX, wall_time: Duration::from_millis(20), ..Sandbox::default() };
        let started = Instant::now();
        assert!(error_of(run_with(slow, "loop { doc.n += 1; }", None)).contains("wall-time limit (20ms)"));
        assert!(started.elapsed() < Duration::from_secs(2));
        let e = error_of(run(r#"let s = "xxxxxxxx"; loop { s += s; }"#));
        assert!(e.contains("Length of string"), "{e}");
        let e = error_of(run("let a = []; loop { a.push(1); }"));
        assert!(e.contains("Size of array"), "{e}");
        let e = error_of(run("fn f(n) { f(n + 1) } f(0)"));
        assert!(e.contains("Stack overflow") || e.contains("call"), "{e}");
    }

    #[test]
    fn no_eval_and_no_modules() {
        let e = compile_with(Sandbox::default(), Kind::Script, r#"eval("1 + 1")"#).unwrap_err();
        assert!(e.message.contains("eval"), "{}", e.message);
        assert!(compile_with(Sandbox::default(), Kind::Script, r#"import "os" as os;"#).is_err());
    }

    #[test]
    fn unknown_variables_are_compile_errors() {
        let e = compile_with(Sandbox::default(), Kind::Condition, r#"paylod.data.severity == "HIGH""#).unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (1, 1, "Undefined variable: paylod"));
        assert!(compile_with(Sandbox::default(), Kind::Script, "let x = 1; doc.y = x + current?.n ?? 0;").is_ok());
    }

    #[test]
    fn conditions_must_be_booleans() {
        let check = |src: &str| {
            let c = compile_with(Sandbox::default(), Kind::Condition, src).unwrap();
            let event = event_object(&event());
            Run::new(&json!({}), &json!({"data": {"severity": "HIGH"}}), &event, None).unwrap().check(&c, src)
        };
        assert_eq!(check(r#"payload.data.severity in ["HIGH", "CRITICAL"]"#), Ok(()));
        assert!(matches!(check(r#"payload.data.severity == "LOW""#), Err(Refusal::NotApplicable(_))));
        assert!(matches!(check("payload.data.severity"), Err(Refusal::Error(_))));
        // An expression, not statements.
        assert!(compile_with(Sandbox::default(), Kind::Condition, "let x = 1; x == 1").is_err());
    }

    #[test]
    fn helpers() {
        let out = run(r#"
            doc.sha = sha256("abc");
            doc.mac = hmac_sha256("Jefe", "what do ya want for nothing?");
            doc.id = uuid();
            doc.t = parse_time("2025-10-21T10:00:00Z");
            doc.unix = parse_time(1761040800);
            doc.back = format_time(doc.t + 1500);
            doc.gap = seconds_between("2025-10-21T10:00:00Z", "2025-10-21T10:01:30Z");
            doc.json = to_json(#{ a: [1, 2] });
            doc.parsed = parse_json("{\"b\": true}");
            doc.now = now();
        "#)
        .unwrap();
        // FIPS 180-2 and RFC 4231 (test case 2) vectors.
        assert_eq!(out["sha"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(out["mac"], "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let id = out["id"].as_str().unwrap();
        assert!(id.len() == 36 && id.as_bytes()[14] == b'4', "{id}");
        assert_eq!((&out["t"], &out["unix"]), (&json!(1761040800000i64), &json!(1761040800000i64)));
        assert_eq!(out["back"], "2025-10-21T10:00:01.500Z");
        assert_eq!(
            (&out["gap"], &out["json"], &out["parsed"]),
            (&json!(90.0), &json!("{\"a\":[1,2]}"), &json!({"b": true}))
        );
        assert!(out["now"].as_str().unwrap().ends_with('Z'));
        assert!(error_of(run(r#"parse_time("yesterday")"#)).contains("not a time"));
    }
}
