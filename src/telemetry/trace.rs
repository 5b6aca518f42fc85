//! OpenTelemetry traces, off unless an OTLP endpoint is configured: one
//! trace per webhook request (its `verify` and `log.append` steps as child
//! spans) and one per delivery attempt, exported over OTLP/HTTP (protobuf)
//! by the SDK's batch processor on a thread of its own. A delivery's W3C
//! `traceparent` goes to HTTP sinks, so the receiver's work joins its trace;
//! a request's own `traceparent` makes the router's span a child of it.
//!
//! The spans are tracing spans at TRACE level under one target, [`TARGET`]:
//! only the export layer asks for them, so the logs do not change, and with
//! export off no layer wants them and each costs one disabled-callsite check.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::Layer;

use super::RequestVerdict;

/// The target of every span exported.
pub const TARGET: &str = "webhook_router::trace";

/// The standard variables that also turn export on (the exporter reads
/// them itself, with `OTEL_EXPORTER_OTLP_HEADERS` and the rest).
const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// The export pipeline, when configured: `--otlp-endpoint` (a collector's
/// base URL; spans go to `<URL>/v1/traces`), else the standard variables.
/// `OTEL_SDK_DISABLED=true` turns it off whatever is set.
pub fn exporter(base: Option<&str>) -> anyhow::Result<Option<Exporter>> {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled || (base.is_none() && !ENDPOINT_VARS.iter().any(|v| set(v))) {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
    let mut to = "the OTEL_EXPORTER_OTLP_* endpoint".to_string();
    if let Some(base) = base {
        let url = traces_url(base)?;
        to = host_of(&url);
        builder = builder.with_endpoint(url);
    }
    let exporter = builder.build().map_err(|e| anyhow::anyhow!("cannot set up the OTLP trace exporter: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty());
    let resource = Resource::builder()
        .with_service_name(service.unwrap_or_else(|| "webhook-router".into()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    Ok(Some(Exporter { provider, to }))
}

/// Where spans go, for the log: scheme, host and port (never credentials
/// a URL may carry).
fn host_of(url: &str) -> String {
    let uri: axum::http::Uri = url.parse().expect("checked by traces_url");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}", uri.scheme_str().unwrap_or("http"), uri.host().unwrap_or(""))
}

/// `--otlp-endpoint`'s URL with the traces path the OTLP/HTTP spec puts
/// under a base URL (kept if it is there already).
fn traces_url(base: &str) -> anyhow::Result<String> {
    let uri: axum::http::Uri = base.parse().map_err(|e| {
        anyhow::anyhow!(
            "--otlp-endpoint `{base}` is not a URL ({e}): write the collector's, e.g. http://localhost:4318"
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        anyhow::bail!("--otlp-endpoint `{base}` needs http:// or https:// and a host, e.g. http://localhost:4318");
    }
    let base = base.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") })
}

/// A running export pipeline.
pub struct Exporter {
    provider: SdkTracerProvider,
    to: String,
}

impl Exporter {
    /// The collector, for the log (no credentials).
    pub fn destination(&self) -> &str {
        &self.to
    }

    /// The tracing layer that turns the router's spans into OpenTelemetry
    /// ones; warnings and errors logged inside a span become its events.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let wanted = Targets::new().with_target(TARGET, LevelFilter::TRACE).with_default(LevelFilter::WARN);
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("webhook-router")).with_filter(wanted)
    }

    /// Sends what is still buffered, then stops the exporter's thread (it
    /// blocks, so it runs on the blocking pool).
    pub async fn shutdown(self) {
        let done = tokio::task::spawn_blocking(move || self.provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "The last traces could not be exported.");
        }
    }
}

/// A webhook request's span; its parent is the request's `traceparent`
/// when it carries one.
pub fn request(route: &str, headers: &HeaderMap) -> Span {
    let span = tracing::trace_span!(
        target: TARGET, "request",
        otel.kind = "server", route, http.request.method = "POST",
        outcome = Empty, reason = Empty, event.id = Empty, event.type = Empty,
        http.response.status_code = Empty, otel.status_code = Empty,
    );
    if !span.is_disabled() {
        let _ = span.set_parent(TraceContextPropagator::new().extract(&Headers(headers)));
    }
    span
}

/// What a request came to: its verdict, the status it got, the event.
pub fn answered(span: &Span, counted: RequestVerdict, status: u16, event_type: Option<&str>, id: Option<u64>) {
    span.record("outcome", counted.name());
    if let RequestVerdict::Rejected(why) = counted {
        span.record("reason", why.name());
    }
    span.record("http.response.status_code", status);
    if let Some(kind) = event_type {
        span.record("event.type", kind);
    }
    if let Some(id) = id {
        span.record("event.id", id);
    }
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// The signature (or token) check of a request.
pub fn verify(scheme: &str) -> Span {
    tracing::trace_span!(target: TARGET, "verify", scheme, ok = Empty)
}

/// Appending the event to the log, until it is durable.
pub fn append() -> Span {
    tracing::trace_span!(target: TARGET, "log.append", ok = Empty, otel.status_code = Empty)
}

/// How a step (`verify`, `log.append`) ended.
pub fn step(span: &Span, ok: bool) {
    span.record("ok", ok);
}

/// A step that could not do its work (the log refused the write).
pub fn step_failed(span: &Span) {
    span.record("ok", false);
    span.record("otel.status_code", "error");
}

/// One delivery attempt: `events` deliveries to `sink` in one go (more than
/// one for a batch), `event` the log id of the first.
pub fn delivery(sink: &str, route: &str, event: u64, events: usize, attempt: u32) -> Span {
    tracing::trace_span!(
        target: TARGET, "delivery",
        sink, route, event.id = event, batch.size = events, attempt,
        outcome = Empty, otel.status_description = Empty,
    )
}

/// An attempt's outcome; a batch's is its worst member's (`error` set for
/// a retry or a failure).
pub fn settled(span: &Span, outcome: &str, error: Option<&str>) {
    span.record("outcome", outcome);
    if let Some(error) = error {
        span.record("otel.status_description", error);
    }
}

/// The W3C `traceparent` of the current span (a delivery's, for the
/// request to its sink), if it is being traced.
pub fn traceparent() -> Option<String> {
    let cx = Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// A request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_a_base_url() {
        assert_eq!(traces_url("http://collector:4318").unwrap(), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("https://otel.example/").unwrap(), "https://otel.example/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(host_of("https://user:pw@otel.example:4318/v1/traces"), "https://otel.example:4318");
        for bad in ["collector:4318", "ftp://c/", "not a url", "/v1/traces"] {
            let e = traces_url(bad).unwrap_err().to_string();
            assert!(e.contains("--otlp-endpoint") && e.contains("http://localhost:4318"), "{bad}: {e}");
        }
    }

    #[test]
    fn without_a_span_being_traced_there_is_no_traceparent() {
        assert_eq!(traceparent(), None);
    }
}
