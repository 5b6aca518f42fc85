//! The event log through the admin API: list with filters and a cursor,
//! one event in full, retry, replay, delete.

use super::{answer, blocking, Failure};
use crate::route::filter::Pattern;
use crate::runtime::Runtime;
use crate::storage::{DeleteError, EventStatus, ListQuery};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Events per list page unless `limit` asks otherwise.
pub const DEFAULT_LIST_LIMIT: usize = 50;
/// The most one page holds.
const MAX_LIST_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub struct ListParams {
    route: Option<String>,
    /// An event pattern as routes write them (`order.*`, `*.deleted`).
    r#type: Option<String>,
    status: Option<String>,
    /// RFC 3339, or Unix seconds / milliseconds.
    since: Option<String>,
    until: Option<String>,
    /// The `next_cursor` of the previous page (ids below it).
    before: Option<u64>,
    limit: Option<usize>,
}

/// `since`/`until` as milliseconds since the epoch.
fn instant(name: &str, text: Option<&str>) -> Result<Option<i64>, String> {
    let Some(text) = text else { return Ok(None) };
    match crate::event::parse_ms(text) {
        Some(ms) => Ok(Some(ms)),
        None => Err(format!(
            "`{name}={text}` is not a time: write RFC 3339 (2026-11-30T08:00:00Z) or Unix seconds/milliseconds"
        )),
    }
}

pub async fn list(State(rt): State<Arc<Runtime>>, Query(q): Query<ListParams>) -> Response {
    let status = match q.status.as_deref().map(|s| EventStatus::parse(s).ok_or(s)) {
        Some(Err(s)) => {
            return Failure::BadRequest(format!("unknown status `{s}` (one of {})", EventStatus::NAMES.join(", ")))
                .into_response()
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let (since_ms, until_ms) = match (instant("since", q.since.as_deref()), instant("until", q.until.as_deref())) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return Failure::BadRequest(e.to_string()).into_response(),
    };
    let event_type = match q.r#type.as_deref().map(Pattern::parse).transpose() {
        Ok(p) => p,
        Err(e) => return Failure::BadRequest(format!("`type`: {}", e.message)).into_response(),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT).clamp(1, MAX_LIST_LIMIT);
    let query = ListQuery { route: q.route, event_type, status, since_ms, until_ms, before: q.before, limit };
    match blocking(move || rt.data.log.list(&query)).await {
        Ok(Ok(events)) => {
            // A full page may have more behind it; the last id is where the next starts.
            let next_cursor = (events.len() == limit).then(|| events.last().map(|e| e.id)).flatten();
            Json(json!({"events": events, "next_cursor": next_cursor})).into_response()
        }
        Ok(Err(e)) => Failure::store(e).into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn show(State(rt): State<Arc<Runtime>>, Path(id): Path<u64>) -> Response {
    answer(blocking(move || rt.data.log.detail(id)).await)
}

/// Gives up on an event for good (a failed one is otherwise kept forever).
pub async fn delete(State(rt): State<Arc<Runtime>>, Path(id): Path<u64>) -> Response {
    match blocking(move || rt.data.log.delete(id)).await {
        Ok(Ok(())) => Json(json!({"deleted": id})).into_response(),
        Ok(Err(DeleteError::Open(id))) => Failure::Conflict(DeleteError::Open(id).to_string()).into_response(),
        Ok(Err(DeleteError::Log(e))) => Failure::from(e).into_response(),
        Err(f) => f.into_response(),
    }
}

pub async fn retry_one(State(rt): State<Arc<Runtime>>, Path(id): Path<u64>) -> Response {
    requeue(rt, Some(id), None).await
}

#[derive(Deserialize)]
pub struct RetryParams {
    route: Option<String>,
}

pub async fn retry_all(State(rt): State<Arc<Runtime>>, Query(q): Query<RetryParams>) -> Response {
    requeue(rt, None, q.route).await
}

async fn requeue(rt: Arc<Runtime>, id: Option<u64>, route: Option<String>) -> Response {
    let for_blocking = rt.clone();
    match blocking(move || for_blocking.data.log.retry_failed(id, route.as_deref())).await {
        Ok(Ok(requeued)) => {
            for r in &requeued {
                rt.stats.requeued(&r.route, &r.sink, r.failed_ms);
            }
            rt.work.notify_one();
            Json(json!({"requeued": requeued.len()})).into_response()
        }
        Ok(Err(e)) => Failure::store(e).into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Deserialize)]
pub struct ReplayParams {
    route: String,
    /// RFC 3339, or Unix seconds / milliseconds.
    since: String,
    until: Option<String>,
    #[serde(default)]
    force: bool,
}

/// Runs a route's stored events of a time range through the current rules.
pub async fn replay(State(rt): State<Arc<Runtime>>, Query(q): Query<ReplayParams>) -> Response {
    let config = rt.config();
    let Some(route) = config.route(&q.route).cloned() else {
        return Failure::NotFound(format!("no route `{}` in the current config", q.route)).into_response();
    };
    let (since, until) = match (instant("since", Some(&q.since)), instant("until", q.until.as_deref())) {
        (Ok(s), Ok(u)) => (s.unwrap_or(0), u.unwrap_or(i64::MAX)),
        (Err(e), _) | (_, Err(e)) => return Failure::BadRequest(e.to_string()).into_response(),
    };
    let for_blocking = rt.clone();
    match blocking(move || {
        for_blocking.data.log.replay(&q.route, since, until, q.force, &|e, body| route.plan_stored(e, body))
    })
    .await
    {
        Ok(Ok(n)) => {
            rt.work.notify_one();
            Json(json!({"added": n})).into_response()
        }
        Ok(Err(e)) => Failure::store(e).into_response(),
        Err(f) => f.into_response(),
    }
}
