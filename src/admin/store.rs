//! `GET /store/{tree}[/{key}]`: what store sinks wrote, as JSON.

use super::{blocking, Failure};
use crate::runtime::Runtime;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct StoreQuery {
    /// `field=value`, repeatable as a comma-separated list.
    r#where: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Parses `field=value[,field=value]`.
pub fn parse_where(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("`{pair}` is not field=value"))
        })
        .collect()
}

pub async fn list(State(rt): State<Arc<Runtime>>, Path(tree): Path<String>, Query(q): Query<StoreQuery>) -> Response {
    let filter = match q.r#where.as_deref().map(parse_where).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return Failure::BadRequest(e.to_string()).into_response(),
    };
    let limit = q.limit.unwrap_or(usize::MAX);
    match blocking(move || rt.data.records.list(&tree, &filter, q.after.as_deref(), limit)).await {
        Ok(Ok(records)) => {
            let records: Vec<_> = records.into_iter().map(|(key, value)| json!({"key": key, "value": value})).collect();
            Json(json!({"records": records})).into_response()
        }
        Ok(Err(e)) => Failure::store(e).into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn get(State(rt): State<Arc<Runtime>>, Path((tree, key)): Path<(String, String)>) -> Response {
    let key2 = key.clone();
    match blocking(move || rt.data.records.get(&tree, &key2)).await {
        Ok(Ok(Some(value))) => Json(value).into_response(),
        Ok(Ok(None)) => Failure::NotFound(format!("no record `{key}`")).into_response(),
        Ok(Err(e)) => Failure::store(e).into_response(),
        Err(f) => f.into_response(),
    }
}
