//! Routes as configured (secrets redacted), a test event sent through one,
//! and the last reload's outcome.

use super::Failure;
use crate::route::sample;
use crate::runtime::Runtime;
use crate::server::Limits;
use crate::verify::{is_secret_header, REDACTED};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

/// Every route with what it verifies, accepts and delivers where, plus its
/// live figures. A sink shows its type and origin, never a URL path, a
/// header value or a secret.
pub async fn list(State(rt): State<Arc<Runtime>>) -> Response {
    let config = rt.config();
    let report = rt.stats.report(config.routes.iter().map(|r| r.name.as_str()));
    let routes: Vec<Value> = config
        .routes
        .iter()
        .map(|r| {
            let sinks: Vec<&str> = {
                let mut names: Vec<&str> =
                    r.rules.iter().flat_map(|rule| rule.targets.iter().map(|t| t.sink.as_str())).collect();
                names.sort_unstable();
                names.dedup();
                names
            };
            json!({
                "name": r.name,
                "path": r.path,
                "file": r.file,
                "verify": r.verifier.scheme(),
                "events": r.filter.describe(),
                "event_types": sample::event_types(r),
                "rules": r.rules.iter().map(|rule| json!({"name": rule.name, "on": rule.on.describe(),
                    "to": rule.targets.iter().map(|t| &t.sink).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                "sinks": sinks.iter().filter_map(|s| config.sinks.get(*s)).map(|s| s.describe()).collect::<Vec<_>>(),
                "stats": report.routes.get(&r.name),
            })
        })
        .collect();
    Json(json!({"routes": routes})).into_response()
}

#[derive(Deserialize, Default)]
pub struct TestParams {
    /// The type to send; default: the route's first concrete type.
    event_type: Option<String>,
    /// A payload to send instead of the route's sample.
    body: Option<Value>,
    #[serde(default)]
    params: std::collections::BTreeMap<String, String>,
}

/// `POST /routes/{name}/test`: what `router send` does, in-process: a sample
/// (or the given) payload, signed with the route's own scheme and secret,
/// through the whole ingest pipeline. Answers what was sent (credentials
/// redacted) and what the route answered.
pub async fn test(State(rt): State<Arc<Runtime>>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    let p: TestParams = if body.iter().all(u8::is_ascii_whitespace) {
        TestParams::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return Failure::BadRequest(format!("body: {e} (expected {{\"event_type\": ..., \"body\": ...}})"))
                    .into_response()
            }
        }
    };
    let config = rt.config();
    let Some(route) = config.route(&name).cloned() else {
        return Failure::NotFound(format!("no route `{name}` in the current config")).into_response();
    };
    let Some(kind) = p.event_type.or_else(|| sample::event_types(&route).into_iter().next()) else {
        return Failure::BadRequest("the route names no concrete event type: give `event_type`".into()).into_response();
    };
    let payload = p.body.map(|b| serde_json::to_vec_pretty(&b).unwrap_or_default());
    let params: Vec<(String, String)> = p.params.into_iter().collect();
    let request = match sample::build(&route, &kind, payload, &params) {
        Ok(r) => r,
        Err(e) => return Failure::Unprocessable(e.to_string()).into_response(),
    };
    let req = match request.to_request() {
        Ok(r) => r,
        Err(e) => return Failure::Unprocessable(e.to_string()).into_response(),
    };
    let answer = match crate::server::app(rt.clone(), Limits::default()).oneshot(req).await {
        Ok(a) => a,
        Err(e) => match e {},
    };
    let status = answer.status().as_u16();
    let bytes = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let shown: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| {
            (k.as_str(), if is_secret_header(k, route.verifier.secret_header()) { REDACTED } else { v.as_str() })
        })
        .collect();
    Json(json!({
        "request": {
            "method": "POST",
            "path": request.path_and_query,
            "event_type": kind,
            "headers": shown,
            "body": serde_json::from_slice::<Value>(&request.body).unwrap_or(Value::Null),
        },
        "response": {
            "status": status,
            "body": serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        },
    }))
    .into_response()
}

/// The last reload: when, why, whether it took, and every problem if not.
pub async fn reload_status(State(rt): State<Arc<Runtime>>) -> Json<Value> {
    let status = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(serde_json::to_value(status).unwrap_or_default())
}
