//! The `http` sink, and `make` (the same mechanism with Make.com's envelope
//! `{type, payload, event_id, sent_at}` and a fallback URL).
//!
//! One shared rustls client; redirects are not followed; every request has
//! an overall timeout. What a response means is decided here, once:
//! 2xx delivered; 5xx, 408, 429, timeouts and connection errors retry (with
//! the receiver's `Retry-After` on 429/503); other statuses fail at once.

use super::retry::parse_retry_after;
use super::{Batch, Outcome};
use crate::verify::hmac::HmacScheme;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// A `type: http` or `type: make` sink.
#[derive(Debug)]
pub struct HttpSink {
    pub url: String,
    /// Tried once when the primary fails for good (Make's admin scenario).
    pub fallback_url: Option<String>,
    pub method: reqwest::Method,
    /// Extra headers (credentials for the receiver), env-interpolated.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Deliveries in flight at once to this sink.
    pub concurrency: usize,
    /// Wrap the document in Make's envelope.
    pub envelope: bool,
    /// Sign outgoing requests (Standard Webhooks), so receivers can verify us.
    pub signer: Option<HmacScheme>,
    /// Send events as JSON arrays.
    pub batch: Option<Batch>,
}

/// The methods an http sink may send with (each carries a body).
pub const METHODS: &[&str] = &["POST", "PUT", "PATCH"];

/// Requests to a sink at once unless `concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Time for a whole request unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client every HTTP sink shares.
pub fn client() -> reqwest::Client {
    crate::tls::install_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("webhook-router/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is valid")
}

/// What a delivery sends besides its document.
pub struct Envelope<'a> {
    pub event_type: &'a str,
    /// Stable across retries, so receivers can dedup on it.
    pub event_id: &'a str,
}

impl HttpSink {
    /// What one event contributes to a request body: its document, or
    /// Make's envelope around it.
    pub fn item(&self, doc: Value, env: &Envelope<'_>) -> Value {
        if self.envelope {
            json!({
                "type": env.event_type,
                "payload": doc,
                "event_id": env.event_id,
                "sent_at": crate::event::format_ms(crate::event::now_ms()),
            })
        } else {
            doc
        }
    }

    /// One attempt with `body` (one item, or a batch's array). `env` names
    /// the request for the receiver. `last_try`: the retry policy is spent
    /// after this one, so a retryable failure is final and the fallback URL
    /// gets its turn.
    pub async fn deliver(&self, client: &reqwest::Client, body: &Value, env: &Envelope<'_>, last_try: bool) -> Outcome {
        let body = serde_json::to_vec(body).expect("JSON values serialise");
        let outcome = self.send(client, &self.url, &body, env).await;
        let final_failure = match &outcome {
            Outcome::Failed { .. } => true,
            Outcome::Retry { .. } => last_try,
            _ => false,
        };
        match (&self.fallback_url, final_failure) {
            (Some(fallback), true) => match self.send(client, fallback, &body, env).await {
                Outcome::Delivered => Outcome::Delivered,
                other => {
                    let primary = error_of(&outcome);
                    Outcome::Failed { error: format!("{primary}; fallback: {}", error_of(&other)) }
                }
            },
            _ => outcome,
        }
    }

    async fn send(&self, client: &reqwest::Client, url: &str, body: &[u8], env: &Envelope<'_>) -> Outcome {
        let mut req = client
            .request(self.method.clone(), url)
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .header("x-router-event-id", env.event_id)
            .header("x-router-event-type", env.event_type);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // The delivery's trace, when traces are exported: the receiver's
        // spans join it.
        if let Some(parent) = crate::telemetry::trace::traceparent() {
            req = req.header("traceparent", parent);
        }
        if let Some(signer) = &self.signer {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let uri: http::Uri = "/".parse().expect("valid");
            for (k, v) in signer.sign(body, &uri, now, env.event_id).unwrap_or_default() {
                req = req.header(k, v);
            }
        }
        match req.body(body.to_vec()).send().await {
            Ok(resp) => classify(resp.status(), resp.headers().get("retry-after").and_then(|v| v.to_str().ok())),
            Err(e) if e.is_timeout() => {
                Outcome::Retry { error: format!("timed out after {:?}", self.timeout), after: None }
            }
            Err(e) if e.is_connect() => Outcome::Retry { error: "connection failed".into(), after: None },
            Err(e) => Outcome::Retry { error: format!("request failed: {}", without_url(&e)), after: None },
        }
    }
}

/// What an HTTP status means for a delivery.
pub fn classify(status: reqwest::StatusCode, retry_after: Option<&str>) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let error = format!("receiver answered {status}");
    match code {
        429 | 503 => Outcome::Retry { error, after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())) },
        408 | 500..=599 => Outcome::Retry { error, after: None },
        _ => Outcome::Failed { error },
    }
}

fn error_of(o: &Outcome) -> String {
    match o {
        Outcome::Retry { error, .. } | Outcome::Failed { error } => error.clone(),
        Outcome::Skipped { reason } | Outcome::Dropped { reason } => reason.clone(),
        Outcome::Delivered => "delivered".into(),
    }
}

/// reqwest errors include the URL, which may carry credentials in its query.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn statuses() {
        assert_eq!(classify(StatusCode::OK, None), Outcome::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, None), Outcome::Delivered);
        assert!(matches!(classify(StatusCode::INTERNAL_SERVER_ERROR, None), Outcome::Retry { after: None, .. }));
        assert!(matches!(classify(StatusCode::REQUEST_TIMEOUT, None), Outcome::Retry { .. }));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some("7")),
            Outcome::Retry {
                error: "receiver answered 429 Too Many Requests".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(classify(StatusCode::SERVICE_UNAVAILABLE, Some("2")), Outcome::Retry { after: Some(_), .. }));
        assert!(matches!(classify(StatusCode::BAD_REQUEST, None), Outcome::Failed { .. }));
        assert!(matches!(classify(StatusCode::NOT_FOUND, None), Outcome::Failed { .. }));
        assert!(matches!(classify(StatusCode::MOVED_PERMANENTLY, None), Outcome::Failed { .. }));
    }
}
