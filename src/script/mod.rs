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

use crate::log::EventV1;
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
pub struct Limits {
    pub operations: u64,
    pub call_depth: usize,
    pub expr_depth: usize,
    pub string_size: usize,
    pub array_size: usize,
    pub map_size: usize,
    pub wall_time: Duration,
}

impl Default for Limits {
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
pub struct Engines(HashMap<Limits, Arc<Engine>>);

impl Engines {
    pub fn get(&mut self, limits: Limits) -> Arc<Engine> {
        self.0.entry(limits).or_insert_with(|| Arc::new(sandboxed(limits))).clone()
    }
}

fn sandboxed(limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine
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
        limits: Limits,
        kind: Kind,
        source: &str,
        origin: Origin,
    ) -> Result<Self, CompileError> {
        let parsed = match kind {
            Kind::Script => engine.compile(source),
            Kind::Condition => engine.compile_expression(source),
        };
        match parsed {
            Ok(ast) => Ok(Self { engine, ast, origin, wall_time: limits.wall_time, kind }),
            Err(e) => {
                let (line, column) = origin.locate(e.position());
                Err(CompileError { line, column, message: e.err_type().to_string() })
            }
        }
    }

    fn eval(&self, scope: &mut Scope<'static>) -> Result<Dynamic, Outcome> {
        let deadline = Instant::now() + self.wall_time;
        DEADLINE.with(|d| d.set(Some(deadline)));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, &self.ast);
        DEADLINE.with(|d| d.set(None));
        result.map_err(|e| self.error(*e))
    }

    fn error(&self, e: EvalAltResult) -> Outcome {
        if let EvalAltResult::ErrorRuntime(value, _) = &e {
            if let Some(signal) = value.clone().try_cast::<DropSignal>() {
                return Outcome::Dropped(signal.0);
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
        Outcome::Error(ScriptError(format!("{at}: {message}")))
    }
}

/// Why a rule's scripts did not give a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
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
    /// `current`: the record the rule's store target holds now, if any.
    pub fn new(doc: &Value, payload: &Value, event: &EventV1, current: Option<&Value>) -> Result<Self, Outcome> {
        let convert = |v: &Value| {
            rhai::serde::to_dynamic(v).map_err(|e| Outcome::Error(ScriptError(format!("cannot pass JSON in: {e}"))))
        };
        let mut scope = Scope::new();
        scope.push("doc", convert(doc)?);
        scope.push_constant("payload", convert(payload)?);
        scope.push_constant("event", convert(&event_object(event))?);
        scope.push_constant("current", current.map(convert).transpose()?.unwrap_or(Dynamic::UNIT));
        Ok(Self { scope })
    }

    /// Runs `when:`; `Err(NotApplicable)` when it is false.
    pub fn check(&mut self, condition: &Compiled, text: &str) -> Result<(), Outcome> {
        let value = condition.eval(&mut self.scope)?;
        match value.as_bool() {
            Ok(true) => Ok(()),
            Ok(false) => Err(Outcome::NotApplicable(format!("`when: {text}` is false"))),
            Err(kind) => Err(Outcome::Error(ScriptError(format!(
                "{}: `when:` gave a {kind}, not true or false",
                condition.origin.at(Position::NONE)
            )))),
        }
    }

    /// Runs `script:`. The document is what the script returns when that is
    /// a map or an array, otherwise `doc` as the script left it.
    pub fn transform(&mut self, script: &Compiled) -> Result<(), Outcome> {
        let result = script.eval(&mut self.scope)?;
        if result.is_map() || result.is_array() {
            self.scope.set_value("doc", result);
        } else if !result.is_unit() {
            return Err(Outcome::Error(ScriptError(format!(
                "{}: the script returned a {}; return the document (a map) or end with a statement",
                script.origin.at(Position::NONE),
                result.type_name()
            ))));
        }
        Ok(())
    }

    /// The document to deliver.
    pub fn into_doc(self) -> Result<Value, Outcome> {
        let doc = self.scope.get("doc").cloned().unwrap_or(Dynamic::UNIT);
        rhai::serde::from_dynamic(&doc)
            .map_err(|e| Outcome::Error(ScriptError(format!("the document is not valid JSON: {e}"))))
    }
}

/// What scripts see as `event`.
fn event_object(e: &EventV1) -> Value {
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
