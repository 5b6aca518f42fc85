//! The webhook pipeline, in the order a request meets it:
//! match → read (capped) → verify → parse → event type → filter →
//! id/time/require → append (durable) → 200.
//!
//! Filtering comes before `require`: an event type the route does not want
//! gets 200 `filtered` even if it lacks the fields wanted ones must carry,
//! so a provider never retries an event nobody asked for.

use super::body::{read_capped, BodyError};
use super::response::{Accepted, IngestError};
use super::{views, Limits};
use crate::config::Config;
use crate::event::{format_nanos, parse_time, EventMeta};
use crate::mapping::Context;
use crate::route::table::Endpoint;
use crate::route::{Route, DEFAULT_EVENT_TYPE};
use crate::runtime::Runtime;
use crate::storage::{Appended, LogError, NewEvent, Parsed};
use crate::telemetry::tap::Tapped;
use crate::telemetry::trace;
use crate::telemetry::RequestVerdict;
use crate::verify::{is_secret_header, is_secret_query, Unverified, REDACTED};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::Instrument;

/// What the handler needs besides the request: axum clones it per request,
/// so it holds only an `Arc` and the copyable limits.
#[derive(Clone)]
pub struct Ingest {
    pub rt: Arc<Runtime>,
    pub limits: Limits,
}

/// The one handler of the webhook listener.
pub async fn handle(State(state): State<Ingest>, req: Request) -> Response {
    // One snapshot for the whole request: a reload never changes it midway.
    // The latency figure covers the whole answer, lookup included.
    let started = std::time::Instant::now();
    let config: Arc<Config> = state.rt.config();
    let Some(matched) = config.table.lookup(req.uri().path()) else {
        // A 404 names no route, so it is counted apart: a spike of them is a
        // provider (or a scanner) posting to a path nobody configured.
        state.rt.stats.unmatched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return IngestError::NotFound.into_response();
    };
    // Parsed once: views filter by it, verifiers read tokens from it and
    // routes map it (`query.*`).
    let query = parse_query(req.uri().query());
    match matched.endpoint {
        // A view shares the listener (one port for the provider and the page)
        // but only reads: anything but GET, HEAD and OPTIONS is refused here.
        Endpoint::View(i) => {
            if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
                return IngestError::MethodNotAllowed { allow: "GET, HEAD, OPTIONS" }.into_response();
            }
            views::handle(&state.rt, &config.views[i], req.method(), req.headers(), &matched.params, &query).await
        }
        Endpoint::Route(i) => {
            let route = config.routes[i].clone();
            match *req.method() {
                Method::POST => {
                    // The span continues the caller's `traceparent`, if it sent one.
                    let span = trace::request(&route.name, req.headers());
                    let (result, answer) =
                        match ingest(&state, &route, matched.params, query, req).instrument(span.clone()).await {
                            Ok((accepted, answer)) => (Ok(accepted), answer),
                            Err(e) => (Err(e), None),
                        };
                    // One verdict feeds the counters, the tap and the span, so the three
                    // never disagree about what happened to a request.
                    let counted = match &result {
                        Ok(Accepted::New { .. }) => RequestVerdict::Accepted,
                        Ok(Accepted::Duplicate { .. }) => RequestVerdict::Duplicate,
                        Ok(Accepted::Filtered { .. } | Accepted::Challenge(_)) => RequestVerdict::Filtered,
                        Err(e) => RequestVerdict::Rejected(e.reason()),
                    };
                    state.rt.stats.request(&route.name, counted, started.elapsed());
                    state.rt.tap.publish(|| tapped(&route.name, counted, &result));
                    let (event_type, id) = identity(&result);
                    let (event_type, id) = (event_type.map(str::to_owned), id);
                    // A route's own `respond:` answer replaces ours only on success:
                    // errors keep their contract shape, which providers' retries rely on.
                    let response = match (result, answer) {
                        (Ok(_), Some(own)) => own,
                        (Ok(a), None) => a.into_response(),
                        (Err(e), _) => e.into_response(),
                    };
                    trace::answered(&span, counted, response.status().as_u16(), event_type.as_deref(), id);
                    response
                }
                // GET is either a provider's subscription handshake (Meta's
                // `hub.challenge`) or an operator checking the route is up.
                Method::GET | Method::HEAD => match route.verifier.handshake(&query) {
                    Some(Ok(challenge)) => challenge.into_response(),
                    Some(Err(reason)) => {
                        tracing::debug!(route = %route.name, %reason, "Subscription handshake refused.");
                        (axum::http::StatusCode::FORBIDDEN, "forbidden").into_response()
                    }
                    None => health(&route),
                },
                _ => IngestError::MethodNotAllowed { allow: "POST, GET, HEAD" }.into_response(),
            }
        }
    }
}

/// A request's line for `router tap`.
fn tapped(route: &str, counted: RequestVerdict, result: &Result<Accepted, IngestError>) -> Tapped {
    let mut line = Tapped::new("request", route, counted.name());
    let (event_type, id) = identity(result);
    (line.event_type, line.id) = (event_type.map(str::to_owned), id);
    if let RequestVerdict::Rejected(why) = counted {
        line.reason = Some(why.name().to_string());
    }
    line
}

/// A request's event type and log id, as far as it got.
fn identity(result: &Result<Accepted, IngestError>) -> (Option<&str>, Option<u64>) {
    match result {
        Ok(Accepted::New { id, event } | Accepted::Duplicate { id, event }) => (Some(event), Some(*id)),
        Ok(Accepted::Filtered { event }) => (Some(event), None),
        Ok(Accepted::Challenge(_)) | Err(_) => (None, None),
    }
}

/// `GET` on a route path: what it is and what it accepts.
fn health(route: &Route) -> Response {
    let events = if route.filter.describe().is_empty() { vec!["*".to_string()] } else { route.filter.describe() };
    let rules: Vec<Value> =
        route.rules.iter().map(|r| json!({"name": r.name, "on": r.on.describe(), "to": r.targets.iter().map(|t| &t.sink).collect::<Vec<_>>()})).collect();
    Json(json!({
        "status": "ok",
        "route": route.name,
        "webhook_endpoint": route.path,
        "verify": route.verifier.scheme(),
        "supported_events": events,
        "rules": rules,
    }))
    .into_response()
}

async fn ingest(
    state: &Ingest,
    route: &Route,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    req: Request,
) -> Result<(Accepted, Option<Response>), IngestError> {
    let (parts, body) = req.into_parts();
    // The body is read whole before verifying: a signature covers the
    // exact bytes, so nothing may be parsed or normalised first.
    let body = read_body(&parts.headers, body, route.body_limit, state.limits).await?;

    // `Unverified` can only become `Verified` through the route's
    // verifier (typestate): no later step can read an unchecked body.
    let unverified = Unverified { headers: &parts.headers, body: &body, uri: &parts.uri };
    let verifying = trace::verify(route.verifier.scheme());
    let verified = verifying.in_scope(|| route.verifier.verify(unverified));
    trace::step(&verifying, verified.is_ok());
    // Why a signature failed is logged (at debug: a flood of forgeries
    // must not flood the log) but never told to the sender.
    let verified = verified.map_err(|reason| {
        tracing::debug!(route = %route.name, scheme = route.verifier.scheme(), %reason, "Request rejected by verifier.");
        IngestError::Unauthorized
    })?;

    let content_type = verified.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // Only the fields ingest reads, unless the event has deliveries (below).
    let not_json =
        |e: crate::payload::NotJson| IngestError::Invalid { error: "body is not valid JSON", problems: vec![e.0] };
    let payload =
        crate::payload::parse_only(content_type, verified.body(), route.ingest_fields.as_ref()).map_err(not_json)?;
    // Slack's `url_verification` and the like are answered, never logged:
    // they carry no event.
    if let Some(challenge) = route.verifier.challenge(&payload) {
        return Ok((Accepted::Challenge(challenge.to_string()), None));
    }
    let headers = header_pairs(verified.headers(), route.verifier.secret_header());
    let ctx = Context { body: &payload, params: &params, query: &query, headers: &headers };

    let kind = match &route.event.kind {
        None => DEFAULT_EVENT_TYPE.to_string(),
        Some(expr) => expr.eval_string(&ctx).ok_or_else(|| {
            // Every problem at once: the sender fixes them in one round.
            let mut problems = vec!["event type: missing or not a string".to_string()];
            problems.extend(route.check_required(&ctx));
            IngestError::Invalid { error: "invalid event", problems }
        })?,
    };
    if !route.filter.admits(&kind) {
        return Ok((Accepted::Filtered { event: kind }, own_answer(route, &ctx)));
    }
    let mut meta = event_meta(route, &ctx, kind)?;
    // No `event.id:` mapping: the id the signature scheme signed (the
    // `webhook-id` of Standard Webhooks, say) is the dedup key.
    if route.event.id.is_none() {
        meta.id = verified.signed_id.clone();
    }

    // Which rules fire, and for which sinks, is decided now, at ingest:
    // the deliveries are written with the event, in one durable write, so
    // an event can never be on disk without the work it owes.
    let deliveries = route.plan(&meta.kind, &ctx);
    let answer = own_answer(route, &ctx);
    let has_work = !deliveries.is_empty();
    // The dispatcher gets what it reads in memory, parsed once: the whole
    // document, unless every delivery stores the body as it came.
    let payload = match route.ingest_fields {
        Some(_) if has_work && route.needs_document(&deliveries) => {
            Parsed::Whole(crate::payload::parse(content_type, verified.body()).map_err(not_json)?)
        }
        Some(_) => Parsed::Fields(payload),
        None => Parsed::Whole(payload),
    };
    // Credentials in the URL are for this request's checks, not the log.
    let query =
        query.into_iter().map(|(k, v)| if is_secret_query(&k) { (k, REDACTED.to_string()) } else { (k, v) }).collect();
    let event = NewEvent {
        route: route.name.clone(),
        event_type: meta.kind.clone(),
        event_id: meta.id,
        dedup: route.dedup,
        event_time: meta.time,
        params,
        query,
        headers,
        body,
        payload,
    };
    // No request waits on the store without a deadline: a store stuck on a
    // full disk answers 503, so the provider retries later.
    let appending = trace::append();
    // The 2xx waits for this: `append` returns once the group commit
    // holding the event is synced.
    let appended = tokio::time::timeout(state.limits.store_timeout, state.rt.data.log.append(event, deliveries))
        .instrument(appending.clone())
        .await
        .unwrap_or_else(|_| Err(LogError::Unavailable(format!("no answer within {:?}", state.limits.store_timeout))));
    match appended {
        Ok(_) => trace::step(&appending, true),
        Err(_) => trace::step_failed(&appending),
    }
    // `event_writes` remembers a failure run: its end is logged once, so
    // an operator sees when a full disk stopped mattering.
    if appended.is_ok() && state.rt.event_writes.ok() {
        tracing::info!("The event store takes writes again.");
    }
    match appended {
        Ok(Appended::New(id)) => {
            // Wakes the dispatcher now rather than at its next poll, so a
            // delivery starts within a round trip of the 200.
            if has_work {
                state.rt.work.notify_one();
            }
            tracing::debug!(route = %route.name, id, event = %meta.kind, "Event accepted.");
            Ok((Accepted::New { id, event: meta.kind }, answer))
        }
        // A repeat of an id already logged is answered 200 `duplicate` with
        // the first copy's log id: the provider stops retrying, nothing runs.
        Ok(Appended::Duplicate(id)) => Ok((Accepted::Duplicate { id, event: meta.kind }, answer)),
        Err(e) => {
            // Logged once per interval, with how many failed meanwhile: a full
            // disk under load must not write a line per request.
            if let Some(times) = state.rt.event_writes.failed() {
                tracing::error!(route = %route.name, error = %e, times, "Cannot write events; answering 503.");
            }
            // 503: the provider retries later; nothing was acknowledged.
            Err(IngestError::Unavailable)
        }
    }
}

/// The route's `respond:` answer for this request, if it has one.
fn own_answer(route: &Route, ctx: &Context) -> Option<Response> {
    let respond = route.respond.as_ref()?;
    // The status was checked to be a 2xx when the route compiled.
    let status = axum::http::StatusCode::from_u16(respond.status).unwrap_or(axum::http::StatusCode::OK);
    Some((status, [(header::CONTENT_TYPE, respond.content_type.clone())], respond.render(ctx)).into_response())
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize, limits: Limits) -> Result<bytes::Bytes, IngestError> {
    // Refuse a declared oversize body before reading a byte of it.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // A body we may read to its end is read, so the client gets the 413.
        if declared.is_some_and(|n| n <= super::body::DRAIN_BYTES as u64) {
            super::body::drain(body, super::body::DRAIN_BYTES).await;
        }
        return Err(IngestError::TooLarge { limit });
    }
    // A chunked body has no declared length: it is counted as it comes,
    // and a client that trickles it is cut off at `body_timeout`.
    read_capped(body, limit, limits.body_timeout).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => IngestError::TooLarge { limit },
        BodyError::TimedOut => IngestError::Timeout,
        BodyError::Broken => IngestError::BadBody,
    })
}

/// Reads id and time, and checks `require`; every problem is reported at once.
fn event_meta(route: &Route, ctx: &Context, kind: String) -> Result<EventMeta, IngestError> {
    let mut problems = Vec::new();
    let id = match &route.event.id {
        None => None,
        Some(expr) => {
            let id = expr.eval_string(ctx);
            if id.as_deref().is_none_or(str::is_empty) {
                problems.push("event id: missing or not a string/number".to_string());
            }
            id
        }
    };
    // An unparseable time is a sender's mistake (400), but a missing one
    // is not: `event.time` is optional in most payloads.
    let time = match route.event.time.as_ref().and_then(|e| e.eval(ctx)) {
        None | Some(Value::Null) => None,
        Some(v) => match parse_time(&v).and_then(format_nanos) {
            Some(t) => Some(t),
            None => {
                problems.push(format!("event time: {v} is not an RFC 3339 time or Unix timestamp"));
                None
            }
        },
    };
    problems.extend(route.check_required(ctx));
    if problems.is_empty() {
        Ok(EventMeta { kind, id, time })
    } else {
        Err(IngestError::Invalid { error: "invalid event", problems })
    }
}

/// The query string as pairs, in order, repeated keys kept.
fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Headers as stored in the log: lower-case names, credentials redacted.
fn header_pairs(headers: &HeaderMap, secret: Option<&str>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str();
            // Signatures, tokens and the route's own secret header never reach
            // the log: the record is what an operator reads and replays.
            let value = if is_secret_header(name, secret) {
                REDACTED.to_string()
            } else {
                // Almost every value is visible ASCII: checked without the lossy scan.
                match value.to_str() {
                    Ok(text) => text.to_string(),
                    Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
                }
            };
            (name.to_string(), value)
        })
        .collect()
}
