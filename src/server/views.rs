//! Read-only views over store trees (`views:` in route files): one record
//! by key, or a filtered, paginated list with per-value counts.

use crate::config::View;
use crate::mapping::Context;
use crate::runtime::Runtime;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Records per list page unless `limit` asks for fewer.
const DEFAULT_PAGE: usize = 100;
/// The most a page may hold.
const MAX_PAGE: usize = 1000;

pub async fn handle(rt: &Runtime, view: &View, params: &[(String, String)], query: &[(String, String)]) -> Response {
    let records = rt.data.records.clone();
    let empty = Value::Null;
    let ctx = Context { body: &empty, params, query, headers: &[] };
    let result = match &view.key {
        Some(key) => {
            let Some(key) = key.eval_string(&ctx) else {
                return (StatusCode::NOT_FOUND, Json(json!({"success": false, "error": "not found"}))).into_response();
            };
            let tree = view.tree.clone();
            tokio::task::spawn_blocking(move || records.get(&tree, &key).map(|r| r.map(strip_meta))).await.map(|r| {
                r.map(|rec| match rec {
                    Some(data) => (StatusCode::OK, Json(json!({"success": true, "data": data}))).into_response(),
                    None => {
                        (StatusCode::NOT_FOUND, Json(json!({"success": false, "error": "not found"}))).into_response()
                    }
                })
            })
        }
        None => {
            let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let filter: Vec<(String, String)> =
                view.filter_by.iter().filter_map(|f| get(f).map(|v| (f.clone(), v))).collect();
            let limit = get("limit").and_then(|l| l.parse().ok()).unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
            let cursor = get("cursor");
            let (tree, summary_field) = (view.tree.clone(), view.summary.clone());
            tokio::task::spawn_blocking(move || -> sled::Result<Response> {
                let page = records.list(&tree, &filter, cursor.as_deref(), limit + 1)?;
                let next = (page.len() > limit).then(|| page[limit - 1].0.clone());
                let data: Vec<Value> = page.into_iter().take(limit).map(|(_, v)| strip_meta(v)).collect();
                let mut body = json!({"success": true, "data": data, "timestamp": crate::event::format_ms(crate::event::now_ms())});
                if let Some(field) = summary_field {
                    body["summary"] = summary(&records.list(&tree, &filter, None, usize::MAX)?, &field);
                }
                if let Some(n) = next {
                    body["next_cursor"] = Value::String(n);
                }
                Ok(Json(body).into_response())
            })
            .await
        }
    };
    match result {
        Ok(Ok(r)) => r,
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"success": false, "error": "store unavailable"})))
            .into_response(),
    }
}

/// Counts of each value of `field` across all matching records, plus `total`.
fn summary(records: &[(String, Value)], field: &str) -> Value {
    let mut counts = Map::new();
    for (_, r) in records {
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
