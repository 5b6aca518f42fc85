//! The serde mirror of a route file, exactly as written: strings stay strings,
//! every value that can be wrong keeps its position (`Spanned`), and unknown
//! keys are rejected. `compile` turns this into the runtime form.
//!
//! Enums that would lose spans (internally tagged, untagged, flatten) are
//! avoided: variant-specific fields are flat and checked in `compile`.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Location;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A value with its place in the file: serde-saphyr's `Spanned`, in a type
/// of ours so the JSON Schema (`router schema`) can describe it as `T`.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    /// Where the value is written (for an alias, where the alias is).
    pub referenced: Location,
    pub defined: Location,
}

impl<T> Spanned<T> {
    pub fn new(value: T, referenced: Location, defined: Location) -> Self {
        Self { value, referenced, defined }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Self { value: s.value, referenced: s.referenced, defined: s.defined })
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        T::json_schema(g)
    }
}

/// Declares a mapping whose optional keys only some variants read (a sink's
/// `type`, a verifier's `scheme`). Besides the struct, unchanged, it gives
/// `written()`: each optional key the file sets, with where. The compiler
/// checks that list against the variant's own table, so no list of the
/// struct's field names is kept by hand.
macro_rules! variant_keys {
    (
        $(#[$outer:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$outer])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        impl $name {
            /// Every field, by its Rust name (a renamed one, like `kind` for
            /// `type`, is required and never in a variant's table).
            #[cfg(test)]
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The optional keys that are written, in declaration order.
            pub fn written(&self) -> Vec<(&'static str, &Location)> {
                let mut keys = Vec::new();
                $(
                    if let Some(at) = OptionalKey::written_at(&self.$field) {
                        keys.push((stringify!($field), at));
                    }
                )*
                keys
            }
        }
    };
}

/// Where an optional key is written, if it is. A required key answers
/// `None`: every variant reads it, so it is never an unread key.
trait OptionalKey {
    fn written_at(&self) -> Option<&Location>;
}

impl<T> OptionalKey for Spanned<T> {
    fn written_at(&self) -> Option<&Location> {
        None
    }
}

impl<T> OptionalKey for Option<Spanned<T>> {
    fn written_at(&self) -> Option<&Location> {
        self.as_ref().map(|s| &s.referenced)
    }
}

impl<V> OptionalKey for Option<OrderedMap<V>> {
    /// A mapping is placed at its first key (an empty one is not a mistake).
    fn written_at(&self) -> Option<&Location> {
        self.as_ref().and_then(|m| m.0.first()).map(|(k, _)| &k.referenced)
    }
}

/// Reads one route file's text (`None`: an empty file, which declares nothing).
pub fn parse(text: &str) -> Result<Option<RawFile>, serde_saphyr::Error> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Option<RawFile>>(text, options)
}

/// One file of `routes.d`: optionally one route, plus any sinks and views.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// The route's name (unique across the directory).
    pub route: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub verify: Option<Spanned<RawVerify>>,
    pub event: Option<RawEventSpec>,
    pub events: Option<Spanned<OneOrMany<Spanned<String>>>>,
    pub require: Option<OrderedMap<Spanned<String>>>,
    pub rules: Option<Vec<Spanned<RawRule>>>,
    /// `false` accepts repeats of an event id (the id is still recorded).
    pub dedup: Option<Spanned<bool>>,
    /// Largest accepted body, e.g. `1MiB`, `256KiB`, `65536`.
    pub body_limit: Option<Spanned<ByteSize>>,
    pub sinks: Option<OrderedMap<Spanned<RawSink>>>,
    pub views: Option<Vec<Spanned<RawView>>>,
    /// Sample payloads per event type, for `router send`.
    pub examples: Option<OrderedMap<serde_json::Value>>,
    /// Sandbox limits of this route's scripts; in a file without a route,
    /// the default for the whole directory.
    pub script_limits: Option<Spanned<RawScriptLimits>>,
    /// What the route answers an accepted request with, instead of the
    /// router's JSON (Slack slash commands show it to the user).
    pub respond: Option<Spanned<RawRespond>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScriptLimits {
    /// Rhai operations per run.
    pub operations: Option<Spanned<u64>>,
    pub call_depth: Option<Spanned<usize>>,
    pub expr_depth: Option<Spanned<usize>>,
    /// Longest string a script may build, e.g. `1MiB`.
    pub string_size: Option<Spanned<ByteSize>>,
    pub array_size: Option<Spanned<usize>>,
    pub map_size: Option<Spanned<usize>>,
    /// Wall-clock time per run, e.g. `100ms`.
    pub wall_time: Option<Spanned<String>>,
}

/// A route's own answer to an accepted (new, duplicate or filtered) request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    /// A 2xx status; 200 unless set.
    pub status: Option<Spanned<u16>>,
    /// A text template over the request (`Deploying {$.text}`); `""` for an empty body.
    pub body: Option<Spanned<String>>,
    /// A JSON answer, written like a rule's `map:`.
    pub json: Option<Spanned<MapNode>>,
    /// The answer's content type; `text/plain; charset=utf-8` for `body:`, `application/json` for `json:`.
    pub content_type: Option<Spanned<String>>,
}

variant_keys! {
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RawVerify {
        /// A provider preset, `hmac` (configured), `bearer`, `basic` or `none`.
        #[schemars(schema_with = "scheme_names")]
        pub scheme: Spanned<String>,
        /// Signature schemes: the signing secret(s); a list allows rotation.
        pub secret: Option<Spanned<OneOrMany<String>>>,
        /// Accepted clock difference for signed timestamps, e.g. `5m`.
        pub tolerance: Option<Spanned<String>>,
        /// github: also accept the SHA-1 `X-Hub-Signature`.
        pub legacy: Option<Spanned<bool>>,
        /// meta: the `hub.verify_token` of the GET subscription handshake.
        pub verify_token: Option<Spanned<String>>,
        /// twilio: the public URL providers call, up to the path (the router may sit behind a proxy).
        pub public_url: Option<Spanned<String>>,
        /// hmac: sha1 | sha256 | sha512.
        pub algorithm: Option<Spanned<String>>,
        /// hmac: hex | base64.
        pub encoding: Option<Spanned<String>>,
        /// hmac: text before the signature in the header, e.g. `sha256=`.
        pub prefix: Option<Spanned<String>>,
        /// hmac: the signed bytes, e.g. `{timestamp}.{body}`.
        pub payload: Option<Spanned<String>>,
        /// hmac: header holding the signed timestamp.
        pub timestamp_header: Option<Spanned<String>>,
        /// hmac: header holding the message id for `{id}`.
        pub id_header: Option<Spanned<String>>,
        /// hmac: raw | base64 | hex.
        pub secret_encoding: Option<Spanned<String>>,
        /// hmac: prefix stripped from the secret before decoding, e.g. `whsec_`.
        pub secret_prefix: Option<Spanned<String>>,
        /// bearer: the accepted token(s).
        pub token: Option<Spanned<OneOrMany<String>>>,
        /// bearer: header carrying the token (default `Authorization: Bearer ...`);
        /// hmac: header carrying the signature.
        pub header: Option<Spanned<String>>,
        /// basic: the accepted user name.
        pub username: Option<Spanned<String>>,
        /// basic: the accepted password(s).
        pub password: Option<Spanned<OneOrMany<String>>>,
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEventSpec {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    pub time: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Optional name, shown in logs and the event log.
    pub name: Option<Spanned<String>>,
    pub on: Spanned<OneOrMany<Spanned<String>>>,
    pub map: Option<Spanned<MapNode>>,
    /// A Rhai expression over `payload`, `event`, `doc`; false skips the rule.
    pub when: Option<Spanned<String>>,
    /// A `.rhai` file (relative to the route file) or inline Rhai source.
    pub script: Option<Spanned<String>>,
    pub to: Vec<Spanned<RawTarget>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub sink: Spanned<String>,
    /// Store sinks: the record key (an expression or template).
    pub key: Option<Spanned<String>>,
    /// Deliveries with the same value go strictly in arrival order.
    pub ordered_by: Option<Spanned<String>>,
}

variant_keys! {
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RawSink {
        #[serde(rename = "type")]
        #[schemars(schema_with = "sink_type_names")]
        pub kind: Spanned<String>,
        /// store: the record tree (default: the sink's name).
        pub tree: Option<Spanned<String>>,
        /// store: default record key when a rule's target gives none.
        pub key: Option<Spanned<String>>,
        /// store, postgres: upsert | merge | delete.
        #[serde(default)]
        #[schemars(schema_with = "mode_names")]
        pub mode: Option<Spanned<String>>,
        /// postgres: the table (`table` or `schema.table`).
        pub table: Option<Spanned<String>>,
        /// postgres: the unique key the upsert targets (a column or a list of them).
        pub conflict: Option<Spanned<OneOrMany<String>>>,
        /// postgres: a column; an event with a lower value never overwrites the row.
        pub version: Option<Spanned<String>>,
        /// postgres: a jsonb column for the document's fields that have no column.
        pub extra: Option<Spanned<String>>,
        /// postgres: the document's fields this table takes (default: all; the
        /// others may be for the rule's other sinks).
        pub columns: Option<Spanned<Vec<String>>>,
        pub retry: Option<Spanned<RawRetry>>,
        /// http, make: where to POST; postgres: the connection URL.
        pub url: Option<Spanned<String>>,
        /// make (and http): tried when the primary fails for good.
        pub fallback_url: Option<Spanned<String>>,
        /// http: POST (default), PUT or PATCH.
        #[serde(default)]
        #[schemars(schema_with = "method_names")]
        pub method: Option<Spanned<String>>,
        /// http, make: extra request headers.
        pub headers: Option<OrderedMap<Spanned<String>>>,
        /// http, make: time for a whole request, e.g. `10s`; postgres: for one write.
        pub timeout: Option<Spanned<String>>,
        /// http, make, postgres: deliveries in flight at once.
        pub concurrency: Option<Spanned<usize>>,
        /// http, make: sign outgoing requests: `{scheme: standard-webhooks, secret: whsec_...}`.
        pub sign: Option<Spanned<RawSign>>,
        /// http, make: send events as JSON arrays; postgres: as multi-row statements: `{max_events: 100, max_wait: 2s}`.
        pub batch: Option<Spanned<RawBatch>>,
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub max_events: Spanned<usize>,
    pub max_wait: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSign {
    pub scheme: Spanned<String>,
    pub secret: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub max_delay: Option<Spanned<String>>,
    /// Give up once this long has passed since the first attempt, e.g. `24h`.
    pub deadline: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawView {
    pub path: Spanned<String>,
    pub tree: Spanned<String>,
    /// One record: the key template, e.g. `"{sessionId}"`. Absent = a list view.
    pub key: Option<Spanned<String>>,
    /// List views: query parameters that filter on the record field of the
    /// same name; `param=field` filters on another field (`status=connection`).
    pub filter_by: Option<Vec<Spanned<String>>>,
    /// List views: a field whose values are counted into `summary`.
    pub summary: Option<Spanned<String>>,
    /// List views: `summary` values always shown, with 0 when no record has them.
    pub summary_values: Option<Vec<Spanned<String>>>,
    /// Rhai run on each record before it is shown (computed fields); sees
    /// `doc` (the record) and `event` (`params`, `query`).
    pub script: Option<Spanned<String>>,
    /// Require `Authorization: Bearer <token>`: `{token: ${VIEW_TOKEN}}` (a list allows rotation).
    pub auth: Option<Spanned<RawViewAuth>>,
    /// Origins allowed to read it from a browser (`["*"]` for any): CORS headers and preflight.
    pub cors: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawViewAuth {
    pub token: Spanned<OneOrMany<String>>,
}

/// A size such as `1MiB`, `512KiB`, `10kb` or a plain byte count.
#[derive(Debug, Clone, Copy)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 1MiB, 256KiB or 65536")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("`{v}` is not a size; write e.g. 1MiB, 256KiB or 65536")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `1MiB`, `1 MB`, `512k`, `100` (bytes). Units are powers of 1024.
fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `x` or `[x, y]`, so single values need no brackets.
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de> + FromScalar> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + FromScalar> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![T::from_scalar(v)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Builds a list item from a lone scalar (`on: x` rather than `on: [x]`).
/// A lone item has no span of its own: `Location::UNKNOWN`, and the
/// enclosing `Spanned<OneOrMany>` gives the position.
pub trait FromScalar {
    fn from_scalar(s: &str) -> Self;
}

impl FromScalar for String {
    fn from_scalar(s: &str) -> Self {
        s.to_string()
    }
}

impl FromScalar for Spanned<String> {
    fn from_scalar(s: &str) -> Self {
        Spanned::new(s.to_string(), Location::UNKNOWN, Location::UNKNOWN)
    }
}

/// A YAML mapping with its keys' positions, in file order.
#[derive(Debug)]
pub struct OrderedMap<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

/// A `map:` entry: an expression string, a nested mapping, or a literal.
#[derive(Debug)]
pub enum MapNode {
    Expr(String),
    Object(Vec<(Spanned<String>, Spanned<MapNode>)>),
    Literal(serde_json::Value),
}

impl<'de> Deserialize<'de> for MapNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MapNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an expression such as $.data.id, a literal, or a nested mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MapNode, E> {
                Ok(MapNode::Expr(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MapNode, E> {
                Ok(MapNode::Literal(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MapNode, E> {
                Ok(MapNode::Literal(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MapNode, E> {
                Ok(MapNode::Literal(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MapNode, E> {
                Ok(MapNode::Literal(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<MapNode, E> {
                Ok(MapNode::Literal(serde_json::Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<MapNode, E> {
                Ok(MapNode::Literal(serde_json::Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MapNode, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    out.push(v);
                }
                Ok(MapNode::Literal(serde_json::Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MapNode, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    out.push((k, v));
                }
                Ok(MapNode::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `x` or `[x, y]`.
impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let item = g.subschema_for::<T>();
        json_schema!({ "anyOf": [item, { "type": "array", "items": item }] })
    }
}

impl<V: JsonSchema> JsonSchema for OrderedMap<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("Map_{}", V::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object", "additionalProperties": g.subschema_for::<V>() })
    }
}

impl JsonSchema for MapNode {
    fn schema_name() -> Cow<'static, str> {
        "MapNode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An expression ($.data.id, param:name, query:name, header:name, \"text-{...}\"), a literal, or a nested mapping of these.",
            "anyOf": [
                { "type": ["string", "number", "boolean", "null", "array"] },
                { "type": "object", "additionalProperties": { "$ref": "#/$defs/MapNode" } }
            ]
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: bytes, or with a unit: 512KiB, 1MiB, 10kb.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*([kKmMgG]i?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

/// The JSON Schema of a route file, from the types the loader reads.
/// The schema's `$id`: a name, not a download (editors are pointed at a
/// file, `router schema > route-file.schema.json`; see docs/route-files.md).
pub const SCHEMA_ID: &str = "urn:webhook-router:route-file";

pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawFile);
    schema.insert("$id".into(), SCHEMA_ID.into());
    schema.insert("title".into(), "webhook-router route file (routes.d/*.yaml)".into());
    serde_json::to_value(schema).expect("schemas serialise")
}

/// A string that is one of `names`: what editors complete and flag. The
/// lists are the ones the compiler accepts, so the two cannot drift.
fn one_of(names: &[&str]) -> Schema {
    json_schema!({ "type": "string", "enum": names })
}

fn scheme_names(_: &mut SchemaGenerator) -> Schema {
    one_of(crate::verify::presets::SCHEMES)
}

fn sink_type_names(_: &mut SchemaGenerator) -> Schema {
    one_of(crate::sink::SINK_TYPES)
}

fn mode_names(_: &mut SchemaGenerator) -> Schema {
    one_of(crate::sink::StoreMode::NAMES)
}

fn method_names(_: &mut SchemaGenerator) -> Schema {
    one_of(crate::sink::http::METHODS)
}
