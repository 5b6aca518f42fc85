//! Parsing only the fields a route reads at ingest.
//!
//! A route without rules for an event (or filtering it out) reads a handful
//! of fields: the event type, id and time, `require:`, ordering keys,
//! `respond:`. Building the whole `Value` tree of a body (every string and
//! map allocated) was a quarter of the router's CPU on such events. When
//! every path ingest evaluates is singular (`$.data.object.id`), the body is
//! parsed into a document holding just those paths: objects on the way keep
//! only the names on some path, the values at the ends are whole, arrays on
//! the way are whole (an index may count from the end), and everything else
//! is skipped by the parser without being built. The skipped parts are still
//! checked, so what is not JSON is refused exactly as by a full parse, and
//! every expression over the paths gives what it gives over the whole body.

use super::NotJson;
use crate::mapping::{JsonPath, Step};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The fields to keep: a tree of the names on the paths.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    root: Node,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Node {
    /// The whole value here is read.
    whole: bool,
    names: BTreeMap<String, Node>,
}

impl Fields {
    /// The fields `paths` read; `None` when one of them can select several
    /// nodes (or is the whole body): the body is then parsed whole.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a JsonPath>) -> Option<Self> {
        let mut fields = Self::default();
        for path in paths {
            fields.add(path.steps()?);
        }
        (!fields.root.whole).then_some(fields)
    }

    /// Adds a path of top-level or nested names (and indexes).
    pub fn add(&mut self, steps: &[Step]) {
        let mut node = &mut self.root;
        for step in steps {
            match step {
                Step::Name(name) => node = node.names.entry(name.clone()).or_default(),
                // Below an index the array is kept whole (see the module doc).
                Step::Index(_) => break,
            }
        }
        node.whole = true;
    }

    /// Parses a JSON document keeping only these fields.
    pub fn parse(&self, json: &[u8]) -> Result<Value, NotJson> {
        // UTF-8 is checked once over the whole body (JSON text is UTF-8,
        // so a body that is not is refused as a full parse refuses it);
        // then the parser neither re-checks nor copies unescaped strings.
        let text = std::str::from_utf8(json)
            .map_err(|e| NotJson(format!("invalid UTF-8 at byte {} of the body", e.valid_up_to())))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let doc = Keep(&self.root).deserialize(&mut de).map_err(|e| NotJson(e.to_string()))?;
        de.end().map_err(|e| NotJson(e.to_string()))?;
        Ok(doc)
    }
}

/// Parses a value without building it. Unlike `IgnoredAny` (which
/// serde_json skips iteratively, without its nesting limit) it descends
/// through `deserialize_any`, so a body nested deeper than a full parse
/// accepts is refused here too.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A map key, borrowed from the body unless it had escapes: only the keys
/// that are kept are allocated.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Deserializes the value at one node of the tree.
struct Keep<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for Keep<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keep<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.names.get(&*key) {
                Some(child) => {
                    let value = map.next_value_seed(Keep(child))?;
                    out.insert(key.into_owned(), value);
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        // A number arrives here too (serde_json's arbitrary precision passes
        // it as a one-entry map): it has no names, so it reads as `{}`, and
        // no path through it selects anything, as on the number itself.
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    // Scalars where a path goes on: nothing below them, so no path selects
    // anything here; they are kept as they are.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Context, Expr};
    use serde_json::json;

    fn fields(paths: &[&str]) -> (Option<Fields>, Vec<Expr>) {
        let exprs: Vec<Expr> = paths.iter().map(|p| Expr::parse(p, false).unwrap()).collect();
        (Fields::of(exprs.iter().flat_map(|e| e.body_paths())), exprs)
    }

    #[test]
    fn keeps_only_the_paths_and_reads_as_the_whole_body() {
        let body = br#"{"type":"customer.created","id":"evt_1","big":{"x":[1,2,{"y":"z"}],"s":"\u00e9"},
            "data":{"object":{"id":"cus_1","n":12345678901234567890123,"tags":["a","b"]},"other":1},
            "list":[{"k":"first"},{"k":"last"}],"num":7}"#;
        let paths =
            ["$.type", "$.id", "$.data.object.id", "$.data.object.tags", "$.list[-1].k", "$.num.x", "$.missing.deep"];
        let (fields, exprs) = fields(&paths);
        let sparse = fields.expect("all singular").parse(body).unwrap();
        assert_eq!(
            sparse,
            json!({"type": "customer.created", "id": "evt_1",
                   "data": {"object": {"id": "cus_1", "tags": ["a", "b"]}},
                   "list": [{"k": "first"}, {"k": "last"}], "num": 7})
        );
        let whole: Value = serde_json::from_slice(body).unwrap();
        for (path, expr) in paths.iter().zip(&exprs) {
            let at = |doc: &Value| expr.eval(&Context { body: doc, params: &[], query: &[], headers: &[] });
            assert_eq!(at(&sparse), at(&whole), "{path}");
        }
    }

    #[test]
    fn what_is_not_json_is_refused_even_where_it_is_skipped() {
        let (fields, _) = fields(&["$.type"]);
        let fields = fields.unwrap();
        for bad in [&br#"{"type":"a","skipped":[1,}"#[..], br#"{"type":"a"} trailing"#, br#"{"type":"a","x":tru}"#, b""]
        {
            assert!(fields.parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(serde_json::from_slice::<Value>(bad).is_err());
        }
        // Not UTF-8 (in a skipped string, and raw outside any string).
        for bad in [&b"{\"type\":\"a\",\"skipped\":\"\xff\"}"[..], b"{\"type\":\"a\"}\xc3"] {
            assert!(fields.parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(serde_json::from_slice::<Value>(bad).is_err());
        }
        let deep = format!("{{\"type\":\"a\",\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(fields.parse(deep.as_bytes()).is_err(), "the nesting limit holds where skipped");
    }

    #[test]
    fn an_escaped_key_is_the_name_it_spells() {
        let (fields, _) = fields(&["$.type", "$.data.id"]);
        let body = br#"{"ty\u0070e":"a","d\u0061ta":{"id":"x","other":"\u00e9"},"skipped\n":1}"#;
        assert_eq!(fields.unwrap().parse(body).unwrap(), json!({"type": "a", "data": {"id": "x"}}));
    }

    #[test]
    fn a_path_that_selects_several_nodes_needs_the_whole_body() {
        assert_eq!(fields(&["$.type", "$.items[*].id"]).0, None);
        assert_eq!(fields(&["$..id"]).0, None);
        assert_eq!(fields(&["$"]).0, None);
        assert!(fields(&[]).0.is_some_and(|f| f.parse(br#"{"a":1}"#).unwrap() == json!({})));
    }
}
