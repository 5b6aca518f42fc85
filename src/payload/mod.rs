//! The request body as the document every expression reads: one parser
//! for ingest (which checks it) and delivery (which reads the stored raw
//! body back), so both always see the same document.
//!
//! - JSON as is; a leading UTF-8 byte order mark is ignored (RFC 8259 §8.1
//!   allows it, and refusing it makes the provider retry forever).
//! - A form body (`application/x-www-form-urlencoded`: Slack commands,
//!   Twilio) is an object of its fields; a repeated field becomes an array.
//! - A form whose only field is `payload` holding JSON (GitHub's form
//!   content type, Slack's interactive messages) is that JSON, so a route
//!   reads the same fields whichever content type the sender chose.

pub mod fields;

use fields::Fields;
use serde_json::Value;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a body is not a document.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotJson(pub String);

/// Whether a `Content-Type` value names a form body.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start().get(..33).is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    })
}

/// Parses `body` as its content type says.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Value, NotJson> {
    parse_only(content_type, body, None)
}

/// Parses `body`, keeping only `fields` when given (see `fields`; a form
/// is small and always parsed whole).
pub fn parse_only(content_type: Option<&str>, body: &[u8], fields: Option<&Fields>) -> Result<Value, NotJson> {
    if is_form(content_type) {
        return Ok(parse_form(body));
    }
    let json = body.strip_prefix(BOM).unwrap_or(body);
    match fields {
        Some(fields) => fields.parse(json),
        None => serde_json::from_slice(json).map_err(|e| NotJson(e.to_string())),
    }
}

/// The JSON text of a body that is parsed as JSON (not a form), without a
/// byte order mark: what can be stored as it came.
pub fn json_text<'a>(headers: &[(String, String)], body: &'a [u8]) -> Option<&'a [u8]> {
    let content_type = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
    (!is_form(content_type)).then(|| body.strip_prefix(BOM).unwrap_or(body))
}

/// Parses a logged body with its logged headers (lower-case names), as
/// ingest parsed it.
pub fn parse_stored(headers: &[(String, String)], body: &[u8]) -> Result<Value, NotJson> {
    let content_type = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
    parse(content_type, body)
}

fn parse_form(body: &[u8]) -> Value {
    let mut fields = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(body).into_owned() {
        match fields.get_mut(&k) {
            None => {
                fields.insert(k, Value::String(v));
            }
            Some(Value::Array(list)) => list.push(Value::String(v)),
            Some(first) => *first = Value::Array(vec![first.take(), Value::String(v)]),
        }
    }
    if let (1, Some(Value::String(inner))) = (fields.len(), fields.get("payload")) {
        if let Ok(doc @ Value::Object(_)) = serde_json::from_str::<Value>(inner) {
            return doc;
        }
    }
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=utf-8");

    #[test]
    fn json_form_and_github_payload() {
        assert_eq!(parse(None, br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(parse(Some("application/json"), b"\xEF\xBB\xBF{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(
            parse(FORM, b"command=%2Fdeploy&text=now&x=1&x=2").unwrap(),
            json!({"command": "/deploy", "text": "now", "x": ["1", "2"]})
        );
        let github =
            format!("payload={}", url::form_urlencoded::byte_serialize(br#"{"action":"opened"}"#).collect::<String>());
        assert_eq!(
            parse(Some("Application/X-WWW-Form-Urlencoded"), github.as_bytes()).unwrap(),
            json!({"action": "opened"})
        );
        // `payload` beside other fields, or not JSON: just a field.
        assert_eq!(parse(FORM, b"payload=hi").unwrap(), json!({"payload": "hi"}));
        assert!(parse(None, b"{nope").is_err());
        assert!(parse(None, b"").is_err());
    }
}
