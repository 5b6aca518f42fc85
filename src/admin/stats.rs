//! Figures for operators and for Prometheus, and the health probes.

use super::{blocking, Failure};
use crate::runtime::Runtime;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// What is measured from the store at each request.
struct Storage {
    size_bytes: u64,
    queue_depth: usize,
}

async fn storage(rt: &Arc<Runtime>) -> Result<Storage, Failure> {
    let rt = rt.clone();
    blocking(move || Storage { size_bytes: rt.data.size_on_disk(), queue_depth: rt.data.log.queue_depth() }).await
}

/// `GET /stats`: per route and per sink, plus the store and the last reload.
pub async fn stats(State(rt): State<Arc<Runtime>>) -> Response {
    let store = match storage(&rt).await {
        Ok(s) => s,
        Err(f) => return f.into_response(),
    };
    let config = rt.config();
    let report = rt.stats.report(config.routes.iter().map(|r| r.name.as_str()));
    let reload = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let retention = rt.retention();
    Json(json!({
        "stats": report,
        "store": {
            "size_bytes": store.size_bytes,
            "queue_depth": store.queue_depth,
            "retention": retention.keep.map(|d| humantime::format_duration(d).to_string()),
        },
        "reload": reload,
    }))
    .into_response()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(rt): State<Arc<Runtime>>) -> Response {
    let store = match storage(&rt).await {
        Ok(s) => s,
        Err(f) => return f.into_response(),
    };
    let reload = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let routes = rt.config().routes.len();
    let text = rt.stats.render_prometheus(
        &[("webhook_router_reloads_total", reload.reloads), ("webhook_router_reload_failures_total", reload.failures)],
        &[
            ("webhook_router_log_size_bytes", store.size_bytes as f64),
            ("webhook_router_queue_depth", store.queue_depth as f64),
            ("webhook_router_routes", routes as f64),
            ("webhook_router_config_last_reload_successful", if reload.ok { 1.0 } else { 0.0 }),
            ("webhook_router_config_last_reload_success_timestamp_seconds", reload.loaded_at_ms as f64 / 1000.0),
        ],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /healthz`: 503 while the store does not take writes (and the
/// router could not get it back by itself), so a supervisor restarts it.
pub async fn health(State(rt): State<Arc<Runtime>>) -> Response {
    if rt.store_down.load(std::sync::atomic::Ordering::Relaxed) {
        return Failure::Unavailable("the store does not take writes").into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when the store takes a synced write and a config is
/// loaded and the router is not stopping; 503 with the reason otherwise.
pub async fn ready(State(rt): State<Arc<Runtime>>) -> Response {
    if *rt.stopping.borrow() {
        return Failure::Unavailable("stopping").into_response();
    }
    let probing = rt.clone();
    // A store stuck on a dead disk must not hang the probe with it.
    match tokio::time::timeout(std::time::Duration::from_secs(2), blocking(move || probing.data.probe_write())).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "Readiness probe: the store does not take writes.");
            return Failure::Unavailable("store not writable").into_response();
        }
        Ok(Err(f)) => return f.into_response(),
        Err(_) => return Failure::Unavailable("store not answering").into_response(),
    }
    let config = rt.config();
    let reload = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(json!({
        "status": "ready",
        "routes": config.routes.len(),
        // A refused reload leaves the previous routes serving: still ready.
        "last_reload_ok": reload.ok,
    }))
    .into_response()
}
