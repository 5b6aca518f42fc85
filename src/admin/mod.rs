//! The admin listener (loopback by default): the operator's API, the
//! Prometheus endpoint and the dashboard. With `--admin-token` (or
//! `ROUTER_ADMIN_TOKEN`) every call needs `Authorization: Bearer <token>`,
//! compared in constant time; only the dashboard's page itself (static, no
//! data) loads without it, so the browser can ask for the token. The CLI
//! reads data through this API while `router serve` holds the directory.

mod dashboard;
mod events;
mod failure;
mod routes;
mod stats;
mod store;
mod tap;

pub use events::DEFAULT_LIST_LIMIT;
pub use store::parse_where;

use crate::runtime::Runtime;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use failure::Failure;
use std::sync::Arc;

pub fn router(rt: Arc<Runtime>) -> Router {
    let guard = rt.clone();
    Router::new()
        .route("/healthz", get(stats::health))
        .route("/readyz", get(stats::ready))
        .route("/metrics", get(stats::metrics))
        .route("/stats", get(stats::stats))
        .route("/routes", get(routes::list))
        .route("/routes/{name}/test", post(routes::test))
        .route("/reload", get(routes::reload_status))
        .route("/events", get(events::list))
        .route("/events/{id}", get(events::show).delete(events::delete))
        .route("/events/{id}/retry", post(events::retry_one))
        .route("/events/retry", post(events::retry_all))
        .route("/events/replay", post(events::replay))
        .route("/store/{tree}", get(store::list))
        .route("/store/{tree}/{key}", get(store::get))
        .route("/tap", get(tap::tap))
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let guard = guard.clone();
            async move {
                // Constant-time compare (BearerToken); the reason is never told.
                match guard.settings.admin_token.as_ref() {
                    Some(token) if token.check(req.headers()).is_err() => Failure::Unauthorized.into_response(),
                    _ => next.run(req).await,
                }
            }
        }))
        // Added after the guard: the page holds no data, and asks for the token.
        .route("/", get(dashboard::page))
        .with_state(rt)
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure::Internal(e.to_string()))
}

/// A store call's result as an answer: its JSON, or 404 / 503.
fn answer<T: serde::Serialize>(result: Result<Result<T, crate::storage::LogError>, Failure>) -> Response {
    match result {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e)) => Failure::from(e).into_response(),
        Err(f) => f.into_response(),
    }
}
