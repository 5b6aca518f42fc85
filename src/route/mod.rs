//! The compiled form of a route: everything ingest needs, already parsed.
//! Built by `config::compile`; runtime code never re-parses a string.

pub mod filter;
pub mod sample;
pub mod table;
pub mod view;

pub use view::View;

use crate::mapping::{Context, Expr, JsonPath, Mapping, Step};
use crate::payload::fields::Fields;
use crate::script::{self, Compiled};
use crate::storage::EventV1;
use crate::verify::Verifier;
use filter::EventFilter;
use serde_json::Value;
use std::path::PathBuf;

/// Largest body a route accepts unless it sets `body_limit`.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// The event type given to every event of a route without `event.type`.
pub const DEFAULT_EVENT_TYPE: &str = "event";

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// The file that declared it, for messages.
    pub file: PathBuf,
    pub verifier: Verifier,
    pub event: EventSpec,
    /// `events:`; what it rejects is answered 200 `filtered` and not stored.
    pub filter: EventFilter,
    pub require: Vec<Requirement>,
    pub rules: Vec<Rule>,
    pub body_limit: usize,
    /// Whether a repeated `(route, event.id)` is answered `duplicate`.
    pub dedup: bool,
    /// `examples:`: sample payloads per event type (`router send`).
    pub examples: Vec<(String, Value)>,
    /// `respond:`: the route's own answer to an accepted request.
    pub respond: Option<Respond>,
    /// The body fields ingest reads (`fields_read_at_ingest`), set once
    /// compiled; `None`: the body is parsed whole.
    pub ingest_fields: Option<Fields>,
}

/// A route's own 2xx answer, rendered from the request.
#[derive(Debug)]
pub struct Respond {
    pub status: u16,
    pub content_type: String,
    pub body: RespondBody,
}

#[derive(Debug)]
pub enum RespondBody {
    /// A text template (`Expr`), or nothing at all.
    Text(Option<Expr>),
    /// A JSON document built like `map:`.
    Json(Mapping),
}

impl Respond {
    /// The answer's bytes for this request; a template field the request
    /// lacks renders as empty text (the sender still gets its 2xx).
    pub fn render(&self, ctx: &Context) -> Vec<u8> {
        match &self.body {
            RespondBody::Text(None) => Vec::new(),
            RespondBody::Text(Some(e)) => e.eval_string(ctx).unwrap_or_default().into_bytes(),
            RespondBody::Json(m) => serde_json::to_vec(&m.build(ctx)).unwrap_or_default(),
        }
    }
}

/// Where an event's type, id and time are read from.
#[derive(Debug, Default)]
pub struct EventSpec {
    pub kind: Option<Expr>,
    /// The dedup key; without it every request is a new event.
    pub id: Option<Expr>,
    /// Enables out-of-order protection in store sinks.
    pub time: Option<Expr>,
}

/// One `require:` entry: a value that must be present with a given JSON type.
#[derive(Debug)]
pub struct Requirement {
    pub text: String,
    pub expr: Expr,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    /// Present and not null.
    Any,
}

impl ValueKind {
    pub const NAMES: &'static [&'static str] = &["string", "number", "integer", "boolean", "object", "array", "any"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "number" => Self::Number,
            "integer" => Self::Integer,
            "boolean" | "bool" => Self::Boolean,
            "object" => Self::Object,
            "array" => Self::Array,
            "any" => Self::Any,
            _ => return None,
        })
    }

    pub fn admits(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Number => v.is_number(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Boolean => v.is_boolean(),
            Self::Object => v.is_object(),
            Self::Array => v.is_array(),
            Self::Any => !v.is_null(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
            Self::Any => "non-null value",
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Route {
    /// Every unmet `require:` entry, as messages for the 400 body.
    pub fn check_required(&self, ctx: &Context) -> Vec<String> {
        self.require
            .iter()
            .filter_map(|r| match r.expr.eval(ctx) {
                None => Some(format!("{}: missing (expected {})", r.text, r.kind.name())),
                Some(v) if !r.kind.admits(&v) => {
                    Some(format!("{}: expected {}, got {}", r.text, r.kind.name(), json_type(&v)))
                }
                Some(_) => None,
            })
            .collect()
    }

    /// The deliveries a stored event gets under this route's current rules
    /// (replay).
    pub fn plan_stored(&self, e: &EventV1, body: &[u8]) -> Vec<crate::storage::NewDelivery> {
        let payload = crate::payload::parse_stored(&e.headers, body).unwrap_or(Value::Null);
        let ctx = Context { body: &payload, params: &e.params, query: &e.query, headers: &e.headers };
        self.plan(&e.event_type, &ctx)
    }

    /// The body fields ingest reads: the event's type, id and time,
    /// `require:`, ordering keys, `respond:`, a provider's URL check, and
    /// the record keys of targets that store the body as is (`default_key`:
    /// a store sink's own key, for targets that give none). `None` when one of them is not a singular path
    /// (the whole body is parsed then). An event with other deliveries is
    /// parsed whole for them.
    pub fn fields_read_at_ingest<'a>(&'a self, default_key: impl Fn(&str) -> Option<&'a Expr>) -> Option<Fields> {
        let EventSpec { kind, id, time } = &self.event;
        let mut paths: Vec<&JsonPath> = [kind, id, time].into_iter().flatten().flat_map(Expr::body_paths).collect();
        paths.extend(self.require.iter().flat_map(|r| r.expr.body_paths()));
        let targets = self.rules.iter().flat_map(|r| &r.targets);
        paths.extend(targets.clone().filter_map(|t| t.ordered_by.as_ref()).flat_map(Expr::body_paths));
        let as_is = targets.filter(|t| t.stores_body_as_is);
        paths.extend(as_is.filter_map(|t| t.key.as_ref().or_else(|| default_key(&t.sink))).flat_map(Expr::body_paths));
        match self.respond.as_ref().map(|r| &r.body) {
            Some(RespondBody::Text(Some(e))) => paths.extend(e.body_paths()),
            Some(RespondBody::Json(m)) => paths.extend(m.body_paths()),
            Some(RespondBody::Text(None)) | None => {}
        }
        let mut fields = Fields::of(paths)?;
        for name in self.verifier.challenge_fields() {
            fields.add(&[Step::Name(name.to_string())]);
        }
        Some(fields)
    }

    /// Whether delivering `planned` needs the whole parsed document (a
    /// delivery maps it, runs a script on it or sends it).
    pub fn needs_document(&self, planned: &[crate::storage::NewDelivery]) -> bool {
        planned.iter().any(|d| {
            let target = self.rules.get(d.rule as usize).and_then(|r| r.targets.get(d.target as usize));
            !target.is_some_and(|t| t.stores_body_as_is)
        })
    }

    /// The deliveries an event of this type gets: one per (matching rule,
    /// target), with its ordering key read from the event.
    pub fn plan(&self, event_type: &str, ctx: &Context) -> Vec<crate::storage::NewDelivery> {
        self.rules_for(event_type)
            .flat_map(|(ri, rule)| {
                rule.targets.iter().enumerate().map(move |(ti, t)| crate::storage::NewDelivery {
                    rule: ri as u32,
                    target: ti as u32,
                    rule_name: rule.name.clone(),
                    sink: t.sink.clone(),
                    // An event without the field is ordered with the others lacking it.
                    order_key: t.ordered_by.as_ref().map(|e| e.eval_string(ctx).unwrap_or_default()),
                })
            })
            .collect()
    }

    /// The rules whose `on:` admits this type, with their index.
    pub fn rules_for<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = (usize, &'a Rule)> + 'a {
        self.rules.iter().enumerate().filter(move |(_, r)| r.on.admits(event_type))
    }
}

#[derive(Debug)]
pub struct Rule {
    /// `name:` or `<route>#<index>`.
    pub name: String,
    pub on: EventFilter,
    /// Without `map:` the document is the whole JSON body.
    pub map: Option<Mapping>,
    /// `when:`: the condition and its text (for the skip reason).
    pub when: Option<(Compiled, String)>,
    pub script: Option<Compiled>,
    pub targets: Vec<Target>,
}

impl Rule {
    /// The mapped document, before any script.
    pub fn document(&self, ctx: &Context) -> Value {
        match &self.map {
            Some(m) => m.build(ctx),
            None => ctx.body.clone(),
        }
    }

    /// Whether delivering needs Rhai (which must run off the async workers).
    pub fn has_scripts(&self) -> bool {
        self.when.is_some() || self.script.is_some()
    }

    /// Runs `when:` and `script:` over the mapped document; without them
    /// the document passes through untouched (and unconverted).
    pub fn run_scripts(
        &self,
        doc: Value,
        payload: &Value,
        event: &EventV1,
        current: Option<&Value>,
    ) -> Result<Value, script::Refusal> {
        if !self.has_scripts() {
            return Ok(doc);
        }
        let mut run = script::Run::new(&doc, payload, &script::event_object(event), current)?;
        if let Some((condition, text)) = &self.when {
            run.check(condition, text)?;
        }
        if let Some(s) = &self.script {
            run.transform(s)?;
        }
        run.into_doc()
    }
}

/// One `to:` entry of a rule.
#[derive(Debug)]
pub struct Target {
    pub sink: String,
    /// Store sinks: the record key, overriding the sink's default.
    pub key: Option<Expr>,
    /// Deliveries to this target with the same value go strictly in order.
    pub ordered_by: Option<Expr>,
    /// An upsert to a store sink by a rule with no `map:`, `when:` or
    /// `script:`: the record is the body as it came, so delivering needs
    /// only the record key, not the parsed document.
    pub stores_body_as_is: bool,
}
