//! `GET /tap[?route=R&type=PATTERN]`: the live tail `router tap` reads, as
//! server-sent events (`event: request|delivery`, `data:` one JSON line;
//! `event: lagged` when a slow reader missed lines). Ends when the router
//! stops.

use super::Failure;
use crate::route::filter::Pattern;
use crate::runtime::Runtime;
use crate::telemetry::tap::Tapped;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize)]
pub struct TapQuery {
    route: Option<String>,
    /// An event-type pattern as routes write them (`customer.*`, `*.deleted`).
    r#type: Option<String>,
}

pub async fn tap(State(rt): State<Arc<Runtime>>, Query(q): Query<TapQuery>) -> Response {
    let pattern = match q.r#type.as_deref().map(Pattern::parse).transpose() {
        Ok(p) => p,
        Err(e) => return Failure::BadRequest(format!("type: {}", e.message)).into_response(),
    };
    let wanted = move |line: &Tapped| {
        q.route.as_ref().is_none_or(|r| *r == line.route)
            && pattern.as_ref().is_none_or(|p| line.event_type.as_deref().is_some_and(|t| p.matches(t)))
    };
    let state = (rt.tap.subscribe(), rt.stopping.subscribe());
    let lines = stream::unfold(state, move |(mut lines, mut stopping)| {
        let wanted = wanted.clone();
        async move {
            loop {
                let line = tokio::select! {
                    l = lines.recv() => l,
                    _ = stopping.wait_for(|stop| *stop) => return None,
                };
                let event = match line {
                    Ok(line) if wanted(&line) => {
                        Event::default().event(line.kind).data(serde_json::to_string(&line).unwrap_or_default())
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok::<_, std::convert::Infallible>(event), (lines, stopping)));
            }
        }
    });
    Sse::new(lines).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
