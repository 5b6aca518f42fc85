//! A request a route's provider could have sent: the route's example (or a
//! skeleton) with the event type and a fresh id written where the route
//! reads them, signed with the route's own scheme and secret. `router send`
//! posts it over HTTP; the admin API's test button runs it in-process.

use super::table::fill_params;
use super::Route;
use crate::mapping::{Expr, Source};
use serde_json::{json, Map, Value};

/// A signed request, ready to send to the route's path.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// The route path with parameters filled in, plus the query if the
    /// route reads the event type from it.
    pub path_and_query: String,
    /// Signature headers and those the route reads the type or id from.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SampleRequest {
    /// As a request for the in-process ingest service.
    pub fn to_request(&self) -> Result<http::Request<axum::body::Body>, String> {
        let mut req = http::Request::post(&self.path_and_query).header("content-type", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req.body(axum::body::Body::from(self.body.clone())).map_err(|e| e.to_string())
    }
}

/// Builds the request for `kind`; `body` replaces the sample payload and
/// `params` gives path parameter values (default `test`).
pub fn build(
    route: &Route,
    kind: &str,
    body: Option<Vec<u8>>,
    params: &[(String, String)],
) -> Result<SampleRequest, String> {
    let body = match body {
        Some(b) => b,
        None => serde_json::to_vec_pretty(&sample(route, kind)).map_err(|e| e.to_string())?,
    };
    let path = fill_params(&route.path, |name| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()));
    let mut query = String::new();
    let mut headers = Vec::new();
    if let Some(Expr::Source(src)) = &route.event.kind {
        match src {
            Source::Query(q) => query = format!("?{q}={kind}"),
            Source::Header(h) => headers.push((h.clone(), kind.to_string())),
            _ => {}
        }
    }
    let id = format!("msg_{}", crate::random::hex(12));
    if let Some(Expr::Source(Source::Header(h))) = &route.event.id {
        headers.push((h.clone(), id.clone()));
    }
    let path_and_query = format!("{path}{query}");
    let uri: http::Uri = path_and_query.parse().map_err(|_| "the route path is not a valid URI".to_string())?;
    let now = crate::event::now_ms() / 1000;
    let mut signed = route.verifier.sign(&body, &uri, now, &id).map_err(|e| format!("route `{}`: {e}", route.name))?;
    signed.extend(headers);
    Ok(SampleRequest { path_and_query, headers: signed, body })
}

/// Concrete types the route names: its examples, then `events:` and `on:`
/// patterns without wildcards.
pub fn event_types(route: &Route) -> Vec<String> {
    let mut out: Vec<String> = route.examples.iter().map(|(k, _)| k.clone()).collect();
    let patterns = route.filter.describe().into_iter().chain(route.rules.iter().flat_map(|r| r.on.describe()));
    for p in patterns {
        if !p.contains('*') && !p.starts_with('!') && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The route's example for `kind`, or a skeleton; the event type and a fresh
/// id are written where the route reads them from the body.
fn sample(route: &Route, kind: &str) -> Value {
    let mut doc = route.examples.iter().find(|(k, _)| k == kind).map(|(_, v)| v.clone()).unwrap_or_else(|| json!({}));
    if let Some(Expr::Source(Source::Body(p))) = &route.event.kind {
        set(&mut doc, p.field_names().as_deref(), Value::String(kind.to_string()));
    }
    if let Some(Expr::Source(Source::Body(p))) = &route.event.id {
        set(&mut doc, p.field_names().as_deref(), Value::String(format!("evt_{}", crate::random::hex(12))));
    }
    doc
}

fn set(doc: &mut Value, path: Option<&[&str]>, value: Value) {
    let Some((last, parents)) = path.and_then(|p| p.split_last()) else { return };
    let mut at = doc;
    for name in parents {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at.as_object_mut().expect("made an object").entry(name.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(obj) = at.as_object_mut() {
        obj.insert(last.to_string(), value);
    }
}
