//! The admin listener (loopback by default): read access to the event log,
//! the store and per-route counters. With `--admin-token` (or
//! `ROUTER_ADMIN_TOKEN`) every call needs `Authorization: Bearer <token>`. The CLI uses it to read data while
//! `router serve` holds the data directory.

use crate::log::{EventStatus, ListQuery};
use crate::runtime::Runtime;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Events per list page unless `limit` asks otherwise.
pub const DEFAULT_LIST_LIMIT: usize = 50;

pub fn router(rt: Arc<Runtime>) -> Router {
    let guard = rt.clone();
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/routes", get(routes))
        .route("/reload", get(reload_status))
        .route("/events", get(list_events))
        .route("/events/{id}", get(show_event))
        .route("/events/{id}/retry", post(retry_event))
        .route("/events/retry", post(retry_all))
        .route("/events/replay", post(replay))
        .route("/store/{tree}", get(store_list))
        .route("/store/{tree}/{key}", get(store_get))
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let guard = guard.clone();
            async move {
                // Constant-time compare (BearerToken); the reason is never told.
                match guard.admin_token.get() {
                    Some(token) if token.check(req.headers()).is_err() => {
                        (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthorized"}))).into_response()
                    }
                    _ => next.run(req).await,
                }
            }
        }))
        .with_state(rt)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

/// Runs a blocking store read off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn routes(State(rt): State<Arc<Runtime>>) -> Response {
    let config = rt.config();
    let counts = rt.stats.routes();
    let routes: Vec<_> = config
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "path": r.path,
                "file": r.file,
                "verify": r.verifier.scheme(),
                "events": r.filter.describe(),
                "rules": r.rules.iter().map(|rule| json!({"name": rule.name, "on": rule.on.describe(),
                    "to": rule.targets.iter().map(|t| &t.sink).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                "counts": counts.get(&r.name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Json(json!({"routes": routes})).into_response()
}

#[derive(Deserialize)]
pub struct EventsQuery {
    route: Option<String>,
    status: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

async fn list_events(State(rt): State<Arc<Runtime>>, Query(q): Query<EventsQuery>) -> Response {
    let status = match q.status.as_deref().map(|s| EventStatus::parse(s).ok_or(s)) {
        Some(Err(s)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown status `{s}` (one of {})", EventStatus::NAMES.join(", ")),
            )
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let query = ListQuery { route: q.route, status, before: q.before, limit: q.limit.unwrap_or(DEFAULT_LIST_LIMIT) };
    match blocking(move || rt.data.log.list(&query)).await {
        Ok(Ok(events)) => Json(json!({"events": events})).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

async fn show_event(State(rt): State<Arc<Runtime>>, Path(id): Path<u64>) -> Response {
    match blocking(move || rt.data.log.detail(id)).await {
        Ok(Ok(detail)) => Json(detail).into_response(),
        Ok(Err(crate::log::LogError::NotFound(what))) => error(StatusCode::NOT_FOUND, format!("no such {what}")),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

async fn retry_event(State(rt): State<Arc<Runtime>>, Path(id): Path<u64>) -> Response {
    requeue(rt, Some(id), None).await
}

#[derive(Deserialize)]
pub struct RetryQuery {
    route: Option<String>,
}

async fn retry_all(State(rt): State<Arc<Runtime>>, Query(q): Query<RetryQuery>) -> Response {
    requeue(rt, None, q.route).await
}

async fn requeue(rt: Arc<Runtime>, id: Option<u64>, route: Option<String>) -> Response {
    let rt2 = rt.clone();
    match blocking(move || rt2.data.log.retry_failed(id, route.as_deref())).await {
        Ok(Ok(n)) => {
            rt.work.notify_one();
            Json(json!({"requeued": n})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct ReplayQuery {
    route: String,
    /// Milliseconds since the epoch.
    since: i64,
    until: Option<i64>,
    #[serde(default)]
    force: bool,
}

async fn replay(State(rt): State<Arc<Runtime>>, Query(q): Query<ReplayQuery>) -> Response {
    let config = rt.config();
    let Some(route) = config.route(&q.route).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("no route `{}` in the current config", q.route));
    };
    let rt2 = rt.clone();
    let until = q.until.unwrap_or(i64::MAX);
    match blocking(move || {
        rt2.data.log.replay(&q.route, q.since, until, q.force, &|e, body| plan_stored(&route, e, body))
    })
    .await
    {
        Ok(Ok(n)) => {
            rt.work.notify_one();
            Json(json!({"added": n})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

/// The deliveries a stored event gets under `route`'s current rules.
pub fn plan_stored(route: &crate::route::Route, e: &crate::log::EventV1, body: &[u8]) -> Vec<crate::log::NewDelivery> {
    let payload: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let ctx = crate::mapping::Context { body: &payload, params: &e.params, query: &e.query, headers: &e.headers };
    route.plan(&e.event_type, &ctx)
}

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

async fn store_list(State(rt): State<Arc<Runtime>>, Path(tree): Path<String>, Query(q): Query<StoreQuery>) -> Response {
    let filter = match q.r#where.as_deref().map(parse_where).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = q.limit.unwrap_or(usize::MAX);
    match blocking(move || rt.data.records.list(&tree, &filter, q.after.as_deref(), limit)).await {
        Ok(Ok(records)) => {
            let records: Vec<_> = records.into_iter().map(|(key, value)| json!({"key": key, "value": value})).collect();
            Json(json!({"records": records})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

async fn store_get(State(rt): State<Arc<Runtime>>, Path((tree, key)): Path<(String, String)>) -> Response {
    let key2 = key.clone();
    match blocking(move || rt.data.records.get(&tree, &key2)).await {
        Ok(Ok(Some(value))) => Json(value).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no record `{key}`")),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(r) => r,
    }
}

/// The last reload: when, why, whether it took, and every problem if not.
async fn reload_status(State(rt): State<Arc<Runtime>>) -> Json<serde_json::Value> {
    let status = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(serde_json::to_value(status).unwrap_or_default())
}
