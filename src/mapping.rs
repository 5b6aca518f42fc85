//! Expressions that read a value out of a request, compiled once at load.
//!
//! One notation everywhere (`event.type`, `require`, `map`, store keys):
//!
//! | written            | reads                                        |
//! |--------------------|----------------------------------------------|
//! | `$.data.id`        | JSONPath (RFC 9535) into the JSON body       |
//! | `param:sessionId`  | a path parameter (`/hooks/{sessionId}`)      |
//! | `query:userId`     | a query-string parameter                     |
//! | `header:X-Event`   | a request header (case-insensitive)          |
//! | `"user-{$.data.id}"` | a template: any of the above inside `{}`; a bare `{name}` is a path parameter |
//!
//! Any other string in `map:` is a literal. A JSONPath that can select
//! several nodes (wildcards, filters, slices, `..`) yields an array; a
//! singular one yields its value or nothing.

use serde_json::Value;

/// A compiled JSONPath (RFC 9535, serde_json_path), with its source text
/// for messages.
#[derive(Debug, Clone)]
pub struct JsonPath {
    text: String,
    query: serde_json_path::JsonPath,
    /// The field names / indexes of a singular path (`$.data.id`,
    /// `$['a'][0]`); `None` when the path can select several nodes.
    singular: Option<Vec<Step>>,
}

/// One step of a singular path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Name(String),
    Index(i64),
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let query = serde_json_path::JsonPath::parse(text).map_err(|e| {
            // "parser error" says nothing the column does not; other details name the part.
            let detail = match e.message() {
                "parser error" => String::new(),
                m => format!(": {m}"),
            };
            ExprError {
                offset: text.get(..e.position()).map_or(0, |t| t.chars().count()),
                message: format!("`{text}`: invalid JSONPath syntax{detail}"),
                hint: Some("JSONPath looks like $.data.user_id or $.items[0].id".into()),
            }
        })?;
        Ok(Self { text: text.to_string(), query, singular: singular_steps(text) })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The steps of a singular path; `None` when it can select several nodes.
    pub fn steps(&self) -> Option<&[Step]> {
        self.singular.as_deref()
    }

    /// The field names of a path made only of names (`$.data.id`), to write
    /// a value at that place (`router send` building a sample).
    pub fn field_names(&self) -> Option<Vec<&str>> {
        self.singular
            .as_ref()?
            .iter()
            .map(|s| match s {
                Step::Name(n) => Some(n.as_str()),
                Step::Index(_) => None,
            })
            .collect()
    }

    /// Every node the path selects, in RFC 9535 order.
    pub fn nodes<'v>(&self, doc: &'v Value) -> Vec<&'v Value> {
        match &self.singular {
            // At most one node: walked directly (every request's event type
            // and every record key), not through the general query engine.
            Some(steps) => walk(doc, steps).into_iter().collect(),
            None => self.query.query(doc).all(),
        }
    }

    /// The selected value (singular path), or an array of every match.
    pub fn select(&self, doc: &Value) -> Option<Value> {
        let found = self.nodes(doc);
        if self.singular.is_some() {
            found.first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(found.into_iter().cloned().collect()))
        }
    }
}

/// The node a singular path's steps lead to, as RFC 9535 selects it: a
/// name only in an object, an index only in an array (negative from its end).
fn walk<'v>(mut at: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    for step in steps {
        at = match step {
            Step::Name(name) => at.as_object()?.get(name)?,
            Step::Index(i) => {
                let items = at.as_array()?;
                let i = if *i < 0 {
                    items.len().checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
                } else {
                    usize::try_from(*i).ok()?
                };
                items.get(i)?
            }
        };
    }
    Some(at)
}

/// The steps of `text` when it is a singular query in RFC 9535's sense
/// (only name and index selectors, no descendants); `None` otherwise.
/// Runs on text serde_json_path has already accepted, so it only has to
/// recognise the singular shapes, not reject bad syntax.
fn singular_steps(text: &str) -> Option<Vec<Step>> {
    let mut rest = text.strip_prefix('$')?;
    let mut steps = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(steps);
        }
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_' || !c.is_ascii())).unwrap_or(after.len());
            if end == 0 || after.starts_with("..") {
                return None;
            }
            steps.push(Step::Name(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let inner = after.trim_start();
            let (step, tail) = match inner.chars().next()? {
                q @ ('\'' | '"') => quoted_name(&inner[1..], q)?,
                _ => {
                    let end = inner.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(inner.len());
                    (Step::Index(inner[..end].parse().ok()?), &inner[end..])
                }
            };
            rest = tail.trim_start().strip_prefix(']')?;
            steps.push(step);
        } else {
            return None;
        }
    }
}

/// A quoted name selector's text (after the opening quote), unescaped, and
/// what follows its closing quote.
fn quoted_name(s: &str, quote: char) -> Option<(Step, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Some((Step::Name(out), &s[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    // \uXXXX (and surrogate pairs): rare in a route file; the
                    // path still works, it is only treated as non-singular.
                    'u' => return None,
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// Where a value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Body(JsonPath),
    Param(String),
    Query(String),
    /// Stored lower-case; HTTP header names are case-insensitive.
    Header(String),
}

/// A compiled expression: a source, a template, or a literal.
#[derive(Debug, Clone)]
pub enum Expr {
    Source(Source),
    Template(Vec<Part>),
    Literal(Value),
}

#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Value(Source),
}

/// A compile error inside an expression; `offset` is a character offset
/// into the expression text, so the caller can point at the exact column.
#[derive(Debug, Clone)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Everything an expression can read from one request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub body: &'a Value,
    pub params: &'a [(String, String)],
    pub query: &'a [(String, String)],
    /// Header names lower-case.
    pub headers: &'a [(String, String)],
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl Source {
    fn parse(text: &str) -> Result<Option<Self>, ExprError> {
        if text.starts_with('$') {
            return JsonPath::parse(text).map(|p| Some(Source::Body(p)));
        }
        for (prefix, make) in [
            ("param:", Source::Param as fn(String) -> Source),
            ("query:", Source::Query),
            ("header:", |s: String| Source::Header(s.to_ascii_lowercase())),
        ] {
            if let Some(name) = text.strip_prefix(prefix) {
                if name.is_empty() {
                    return Err(ExprError {
                        offset: prefix.len(),
                        message: format!("`{text}` names nothing"),
                        hint: Some(format!("write {prefix}NAME")),
                    });
                }
                return Ok(Some(make(name.to_string())));
            }
        }
        Ok(None)
    }

    pub fn eval(&self, ctx: &Context) -> Option<Value> {
        match self {
            Source::Body(p) => p.select(ctx.body),
            Source::Param(n) => lookup(ctx.params, n).map(Value::from),
            Source::Query(n) => lookup(ctx.query, n).map(Value::from),
            Source::Header(n) => lookup(ctx.headers, n).map(Value::from),
        }
    }

    /// The path parameter this source reads, for checking it against the route path.
    pub fn param_name(&self) -> Option<&str> {
        match self {
            Source::Param(n) => Some(n),
            _ => None,
        }
    }
}

impl Expr {
    /// The JSONPaths into the body this expression reads.
    pub fn body_paths(&self) -> Vec<&JsonPath> {
        self.sources()
            .into_iter()
            .filter_map(|s| match s {
                Source::Body(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Parses an expression; strings that are neither a source nor a template
    /// are literals only when `allow_literal` (in `map:`), errors elsewhere.
    pub fn parse(text: &str, allow_literal: bool) -> Result<Self, ExprError> {
        if let Some(src) = Source::parse(text)? {
            return Ok(Expr::Source(src));
        }
        if text.contains('{') {
            return parse_template(text).map(Expr::Template);
        }
        if allow_literal {
            return Ok(Expr::Literal(Value::String(text.to_string())));
        }
        Err(ExprError {
            offset: 0,
            message: format!("`{text}` is not an expression"),
            hint: Some(
                "write a JSONPath ($.data.id), param:NAME, query:NAME, header:NAME or a template \"{...}\"".into(),
            ),
        })
    }

    pub fn eval(&self, ctx: &Context) -> Option<Value> {
        match self {
            Expr::Source(s) => s.eval(ctx),
            Expr::Literal(v) => Some(v.clone()),
            Expr::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Value(src) => out.push_str(&value_to_string(&src.eval(ctx)?)?),
                    }
                }
                Some(Value::String(out))
            }
        }
    }

    /// The value as a string (numbers and booleans formatted), for keys, ids and types.
    pub fn eval_string(&self, ctx: &Context) -> Option<String> {
        value_to_string(&self.eval(ctx)?)
    }

    /// Every source the expression reads.
    pub fn sources(&self) -> Vec<&Source> {
        match self {
            Expr::Source(s) => vec![s],
            Expr::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Value(s) => Some(s),
                    Part::Text(_) => None,
                })
                .collect(),
            Expr::Literal(_) => vec![],
        }
    }
}

/// Scalars as text; objects, arrays and null have no key form.
pub fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_template(text: &str) -> Result<Vec<Part>, ExprError> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let inner_start = consumed + open + 1;
        let close = rest[open..].find('}').ok_or_else(|| ExprError {
            offset: consumed + open,
            message: format!("`{text}`: `{{` is never closed"),
            hint: Some("close it: {name}".into()),
        })? + open;
        let inner = rest[open + 1..close].trim();
        let source = match Source::parse(inner) {
            Ok(Some(s)) => s,
            Ok(None) if !inner.is_empty() && inner.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') => {
                Source::Param(inner.to_string())
            }
            Ok(None) => {
                return Err(ExprError {
                    offset: inner_start,
                    message: format!("`{{{inner}}}` is not a path parameter or expression"),
                    hint: Some("inside {} write a path parameter name, $.json.path, query:NAME or header:NAME".into()),
                })
            }
            Err(mut e) => {
                e.offset += inner_start;
                return Err(e);
            }
        };
        parts.push(Part::Value(source));
        consumed += close + 1;
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// A compiled `map:` block: builds the output document of a rule.
#[derive(Debug, Clone)]
pub enum Mapping {
    Expr(Expr),
    Object(Vec<(String, Mapping)>),
}

impl Mapping {
    /// The JSONPaths into the body the mapping reads.
    pub fn body_paths(&self) -> Vec<&JsonPath> {
        match self {
            Mapping::Expr(e) => e.body_paths(),
            Mapping::Object(fields) => fields.iter().flat_map(|(_, m)| m.body_paths()).collect(),
        }
    }

    /// Builds the document; fields whose source is missing are left out, so a
    /// `merge` never erases a stored field because a payload lacked it.
    pub fn build(&self, ctx: &Context) -> Value {
        match self {
            Mapping::Expr(e) => e.eval(ctx).unwrap_or(Value::Null),
            Mapping::Object(fields) => {
                let mut obj = serde_json::Map::new();
                for (k, m) in fields {
                    match m {
                        Mapping::Expr(e) => {
                            if let Some(v) = e.eval(ctx) {
                                obj.insert(k.clone(), v);
                            }
                        }
                        nested => {
                            obj.insert(k.clone(), nested.build(ctx));
                        }
                    }
                }
                Value::Object(obj)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx<'a>(body: &'a Value, params: &'a [(String, String)]) -> Context<'a> {
        Context { body, params, query: &[], headers: &[] }
    }

    #[test]
    fn a_singular_path_walked_selects_what_the_query_engine_selects() {
        let doc = json!({"data": {"id": "m_1", "items": [{"k": 1}, {"k": 2}, [3]], "n": 3, "s": "text",
                          "odd key": {"é": true}, "0": "zero"}, "list": ["a", "b"]});
        let paths = [
            "$",
            "$.data",
            "$.data.id",
            "$.data.missing",
            "$.data.items[0].k",
            "$.data.items[-1][0]",
            "$.data.items[-4]",
            "$.data.items[3]",
            "$.data.items[-3].k",
            "$.data['odd key']['é']",
            "$[\"data\"].n",
            "$.data.n.x",
            "$.data.s[0]",
            "$.list[1]",
            "$.list.length",
            "$.data[0]",
            "$.data['0']",
            "$.list[-9007199254740991]",
            "$ .data .id",
        ];
        for text in paths {
            let path = JsonPath::parse(text).unwrap();
            assert!(path.steps().is_some(), "{text} is singular");
            assert_eq!(path.nodes(&doc), path.query.query(&doc).all(), "{text}");
        }
    }

    #[test]
    fn sources_and_templates() {
        let body = json!({"data": {"id": "m_1", "n": 3, "items": [{"k": 1}, {"k": 2}]}});
        let params = vec![("sessionId".to_string(), "s-9".to_string())];
        let c = ctx(&body, &params);
        assert_eq!(Expr::parse("$.data.id", false).unwrap().eval(&c), Some(json!("m_1")));
        assert_eq!(Expr::parse("$.data.missing", false).unwrap().eval(&c), None);
        assert_eq!(Expr::parse("$.data.items[*].k", false).unwrap().eval(&c), Some(json!([1, 2])));
        assert_eq!(Expr::parse("param:sessionId", false).unwrap().eval(&c), Some(json!("s-9")));
        assert_eq!(Expr::parse("{sessionId}", false).unwrap().eval(&c), Some(json!("s-9")));
        assert_eq!(Expr::parse("m-{$.data.n}-{sessionId}", false).unwrap().eval_string(&c).as_deref(), Some("m-3-s-9"));
        assert!(Expr::parse("m-{$.nope}", false).unwrap().eval(&c).is_none());
        assert!(matches!(Expr::parse("active", true).unwrap(), Expr::Literal(_)));
        assert!(Expr::parse("active", false).is_err());
    }

    #[test]
    fn errors_carry_offsets() {
        let e = Expr::parse("$.data[", false).unwrap_err();
        assert!(e.message.contains("invalid JSONPath"), "{}", e.message);
        let e = Expr::parse("id-{$.x", false).unwrap_err();
        assert_eq!(e.offset, 3);
        let e = Expr::parse("a-{bad name}", false).unwrap_err();
        assert_eq!(e.offset, 3);
    }

    /// The RFC 9535 compliance suite (tests/fixtures/jsonpath-cts), every
    /// case: invalid selectors are refused, valid ones select exactly the
    /// expected nodes, and a path we treat as singular never selects two.
    #[test]
    fn jsonpath_compliance_suite() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jsonpath-cts/cts.json");
        let cts: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let mut failures = Vec::new();
        let tests = cts["tests"].as_array().unwrap();
        for t in tests {
            let (name, selector) = (t["name"].as_str().unwrap(), t["selector"].as_str().unwrap());
            let parsed = JsonPath::parse(selector);
            if t["invalid_selector"] == json!(true) {
                if parsed.is_ok() {
                    failures.push(format!("{name}: `{selector}` accepted"));
                }
                continue;
            }
            let path = match parsed {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{name}: `{selector}` refused: {}", e.message));
                    continue;
                }
            };
            let got = Value::Array(path.nodes(&t["document"]).into_iter().cloned().collect());
            let allowed: Vec<&Value> = match t.get("results") {
                Some(Value::Array(r)) => r.iter().collect(),
                _ => vec![&t["result"]],
            };
            if !allowed.contains(&&got) {
                failures.push(format!("{name}: `{selector}` gave {got}, want {}", allowed[0]));
            }
            if path.singular.is_some() && got.as_array().unwrap().len() > 1 {
                failures.push(format!("{name}: `{selector}` taken as singular but selects several nodes"));
            }
        }
        assert_eq!(tests.len(), 703);
        assert!(failures.is_empty(), "{} of 703 cases fail:\n{}", failures.len(), failures.join("\n"));
    }

    #[test]
    fn singular_paths() {
        for (text, steps) in [
            ("$.data.id", Some(vec![Step::Name("data".into()), Step::Name("id".into())])),
            ("$['a b'][0]", Some(vec![Step::Name("a b".into()), Step::Index(0)])),
            ("$[ \"x\" ][-1]", Some(vec![Step::Name("x".into()), Step::Index(-1)])),
            ("$['it\\'s']", Some(vec![Step::Name("it's".into())])),
            ("$", Some(vec![])),
            ("$.a.*", None),
            ("$..a", None),
            ("$['a','b']", None),
            ("$[0:2]", None),
            ("$[?@.a]", None),
        ] {
            assert_eq!(JsonPath::parse(text).unwrap().singular, steps, "{text}");
        }
    }

    #[test]
    fn mapping_omits_missing_fields() {
        let body = json!({"data": {"user_id": "u1"}});
        let m = Mapping::Object(vec![
            ("user_id".into(), Mapping::Expr(Expr::parse("$.data.user_id", true).unwrap())),
            ("email".into(), Mapping::Expr(Expr::parse("$.data.email", true).unwrap())),
            ("status".into(), Mapping::Expr(Expr::parse("active", true).unwrap())),
        ]);
        assert_eq!(m.build(&ctx(&body, &[])), json!({"user_id": "u1", "status": "active"}));
    }
}
