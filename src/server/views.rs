//! Read-only views over store trees (`views:` in route files): one record
//! by key, or a filtered, paginated list with per-value counts. A view may
//! add computed fields with a script, require a bearer token and allow
//! browsers of some origins (CORS). With `Accept: text/event-stream` the
//! same path streams the view as Server-Sent Events each time a sink writes
//! what it shows, so a page needs no polling.

use crate::mapping::Context;
use crate::route::View;
use crate::runtime::{Change, Runtime};
use crate::script::{self, Run};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Records per list page unless `limit` asks for fewer.
const DEFAULT_PAGE: usize = 100;
/// The most a page may hold.
const MAX_PAGE: usize = 1000;
/// A comment line this often keeps idle streams open through proxies.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// One request to a view: its path params and query, owned (streams outlive the handler).
#[derive(Clone)]
struct ViewRequest {
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl ViewRequest {
    /// A record view's key for this request (`None` for list views, or
    /// when the template names a parameter the request lacks).
    fn key(&self, view: &View) -> Option<String> {
        let empty = Value::Null;
        let ctx = Context { body: &empty, params: &self.params, query: &self.query, headers: &[] };
        view.key.as_ref()?.eval_string(&ctx)
    }
}

pub async fn handle(
    rt: &Arc<Runtime>,
    view: &Arc<View>,
    method: &Method,
    headers: &HeaderMap,
    params: &[(String, String)],
    query: &[(String, String)],
) -> Response {
    let cors = allowed_origin(view, headers);
    let mut response = if method == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else if view.auth.as_ref().is_some_and(|a| a.check(headers).is_err()) {
        (StatusCode::UNAUTHORIZED, Json(json!({"success": false, "error": "unauthorized"}))).into_response()
    } else {
        let read = ViewRequest { params: params.to_vec(), query: query.to_vec() };
        let wants_stream =
            headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
        if wants_stream {
            let last_seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            live(rt.clone(), view.clone(), read, last_seen).into_response()
        } else {
            let (status, body, _) = render(rt.clone(), view.clone(), read).await;
            (status, Json(body)).into_response()
        }
    };
    if let Some(origin) = cors {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, last-event-id, cache-control"),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// The `Access-Control-Allow-Origin` value for this request, if its origin is allowed.
fn allowed_origin(view: &View, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    if view.cors.iter().any(|c| c == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let text = origin.to_str().ok()?;
    view.cors.iter().any(|c| c == text).then(|| origin.clone())
}

/// The view as JSON now: `{success, data}` for a record (404 when absent),
/// `{success, data, summary?, next_cursor?, timestamp}` for a list. With a
/// record view comes the record's version: the log id of the event that
/// wrote it (0 when absent), stable across restarts, so it is the record
/// stream's event id.
async fn render(rt: Arc<Runtime>, view: Arc<View>, read: ViewRequest) -> (StatusCode, Value, Option<u64>) {
    let result = tokio::task::spawn_blocking(move || render_blocking(&rt, &view, &read)).await;
    match result {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "A view cannot read the store.");
            (StatusCode::SERVICE_UNAVAILABLE, json!({"success": false, "error": "store unavailable"}), None)
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"success": false, "error": "view failed"}), None),
    }
}

fn render_blocking(
    rt: &Runtime,
    view: &View,
    read: &ViewRequest,
) -> Result<(StatusCode, Value, Option<u64>), crate::storage::LogError> {
    let records = &rt.data.records;
    let not_found = (StatusCode::NOT_FOUND, json!({"success": false, "error": "not found"}), Some(0));
    let script_input = json!({
        "params": pairs(&read.params),
        "query": pairs(&read.query),
        "view": view.path,
    });
    let shown = |record: Value| -> Result<Value, String> {
        let record = strip_meta(record);
        match &view.script {
            None => Ok(record),
            Some(s) => computed(s, record, &script_input),
        }
    };
    if view.key.is_some() {
        let Some(key) = read.key(view) else { return Ok(not_found) };
        return Ok(match records.get(&view.tree, &key)? {
            None => not_found,
            Some(rec) => {
                let version = rec.pointer("/_sync_metadata/log_id").and_then(Value::as_u64);
                match shown(rec) {
                    Ok(data) => (StatusCode::OK, json!({"success": true, "data": data}), version),
                    Err(e) => script_failed(&e),
                }
            }
        });
    }
    let get = |name: &str| read.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let filter: Vec<(String, String)> =
        view.filter_by.iter().filter_map(|(param, field)| get(param).map(|v| (field.clone(), v))).collect();
    let limit = get("limit").and_then(|l| l.parse().ok()).unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page = records.list(&view.tree, &filter, get("cursor").as_deref(), limit + 1)?;
    let next = (page.len() > limit).then(|| page[limit - 1].0.clone());
    let mut data = Vec::with_capacity(limit);
    for (_, rec) in page.into_iter().take(limit) {
        match shown(rec) {
            Ok(d) => data.push(d),
            Err(e) => return Ok(script_failed(&e)),
        }
    }
    let mut body = json!({"success": true, "data": data, "timestamp": crate::event::format_ms(crate::event::now_ms())});
    if let Some(field) = &view.summary {
        // Counted over every matching record (not only this page), as the script shows them.
        let mut all = Vec::new();
        for (_, rec) in records.list(&view.tree, &filter, None, usize::MAX)? {
            match shown(rec) {
                Ok(d) => all.push(d),
                Err(e) => return Ok(script_failed(&e)),
            }
        }
        body["summary"] = summary(&all, field, &view.summary_values);
    }
    if let Some(n) = next {
        body["next_cursor"] = Value::String(n);
    }
    Ok((StatusCode::OK, body, None))
}

fn script_failed(error: &str) -> (StatusCode, Value, Option<u64>) {
    tracing::error!(error, "A view script failed.");
    (StatusCode::INTERNAL_SERVER_ERROR, json!({"success": false, "error": "view script failed"}), None)
}

/// A record through the view's script: `doc` is the record, `event` the request.
fn computed(script: &script::Compiled, record: Value, request: &Value) -> Result<Value, String> {
    let outcome = Run::new(&record, &Value::Null, request, None).and_then(|mut run| {
        run.transform(script)?;
        run.into_doc()
    });
    outcome.map_err(|o| match o {
        script::Refusal::Error(e) => e.0,
        other => format!("{other:?}"),
    })
}

/// The view as a stream: its current state first (unless `Last-Event-ID`
/// says the client already has it), then again after every write that
/// touches it. Each event carries the whole current state, never a delta,
/// and a subscriber that falls behind re-reads once, so no update is
/// missed. Event ids: a record view's record version (the writing event's
/// log id), a list view's change sequence.
fn live(
    rt: Arc<Runtime>,
    view: Arc<View>,
    read: ViewRequest,
    last_seen: Option<u64>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = rt.changes.subscribe();
    let stopping = rt.stopping.subscribe();
    let key = read.key(&view);
    let state = (rt, view, read, key, (changes, stopping), last_seen, true);
    let events =
        stream::unfold(state, |(rt, view, read, key, (mut changes, mut stopping), mut seen, mut first)| async move {
            loop {
                let seq = if first {
                    first = false;
                    rt.change_seq()
                } else {
                    loop {
                        let change = tokio::select! {
                            c = changes.recv() => c,
                            _ = stopping.wait_for(|stop| *stop) => return None,
                        };
                        match change {
                            Ok(Change { tree, key: k, seq }) => {
                                if tree == view.tree && key.as_ref().is_none_or(|want| *want == k) {
                                    break seq;
                                }
                            }
                            Err(RecvError::Lagged(_)) => break rt.change_seq(),
                            Err(RecvError::Closed) => return None,
                        }
                    }
                };
                let (status, body, version) = render(rt.clone(), view.clone(), read.clone()).await;
                let id = version.unwrap_or(seq);
                // Nothing the client has not seen: a reconnect that missed nothing, or a rewrite
                // of a record that left it at the same version.
                if seen.is_some_and(|s| match version {
                    Some(v) => s == v,
                    None => s >= id,
                }) {
                    continue;
                }
                seen = Some(id);
                let kind = if status.is_success() { "update" } else { "missing" };
                let event = Event::default().id(id.to_string()).event(kind).data(body.to_string());
                return Some((Ok(event), (rt, view, read, key, (changes, stopping), seen, first)));
            }
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

fn pairs(p: &[(String, String)]) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// Counts of each value of `field` across all matching records (`always`
/// listed first, 0 when absent), plus `total`.
fn summary(records: &[Value], field: &str, always: &[String]) -> Value {
    let mut counts: Map<String, Value> = always.iter().map(|v| (v.clone(), Value::from(0))).collect();
    for r in records {
        let v = r.get(field).and_then(crate::mapping::value_to_string).unwrap_or_else(|| "unknown".into());
        let n = counts.get(&v).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(v, Value::from(n + 1));
    }
    counts.insert("total".into(), Value::from(records.len()));
    Value::Object(counts)
}

/// Views show the record, not the router's bookkeeping.
fn strip_meta(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(crate::sink::store::SYNC_METADATA);
    }
    v
}
