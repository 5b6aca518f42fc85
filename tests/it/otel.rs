//! OpenTelemetry export: the binary, pointed at a small OTLP/HTTP collector
//! the test runs (`--otlp-endpoint`), sends a trace per request (its
//! `verify` and `log.append` steps as children, under the caller's own
//! `traceparent`) and one per delivery attempt, whose `traceparent` the HTTP
//! sink receives. Without an endpoint nothing is sent, and no `traceparent`.

use crate::util::{client, serve_command, Receiver, Reply, TempRoutes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message;
use serde_json::json;
use std::process::{Child, Stdio};
use std::time::Duration;

const TOKEN: &str = "otel-test-token-51c2";

fn routes(sink: &str) -> TempRoutes {
    TempRoutes::new(&[(
        "traced.yaml",
        &format!(
            "route: traced\npath: /traced\nverify: {{ scheme: bearer, token: {TOKEN} }}\nevent: {{ type: $.type, id: $.id }}\n\
             events: [\"*\"]\nrules:\n  - on: \"*\"\n    to: [{{ sink: app }}]\n\
             sinks:\n  app: {{ type: http, url: \"{sink}\", retry: {{ attempts: 3, backoff: 10ms }} }}\n"
        ),
    )])
}

/// Starts `router serve` on `routes` with `otlp` (an endpoint, or none) and
/// no OTEL_* variable from the test's environment; waits until it answers.
async fn start(routes: &TempRoutes, data: &std::path::Path, otlp: Option<&str>) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = serve_command(routes.path(), data, &format!("127.0.0.1:{port}"));
    for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
        cmd.env_remove(var);
    }
    if let Some(endpoint) = otlp {
        // Batches leave every 50 ms rather than every 5 s.
        cmd.arg("--otlp-endpoint").arg(endpoint).env("OTEL_BSP_SCHEDULE_DELAY", "50");
    }
    let mut child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/traced");
    for _ in 0..500 {
        if client().get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the router did not start");
}

async fn post(url: &str, token: &str, traceparent: Option<&str>) -> u16 {
    let mut req = client().post(url).bearer_auth(token).json(&json!({"type": "order.paid", "id": "o-1"}));
    if let Some(parent) = traceparent {
        req = req.header("traceparent", parent);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// SIGTERM, then waits for the exit without blocking the test's runtime,
/// which serves the collector the last export goes to.
async fn terminate(mut child: Child) {
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    for _ in 0..1000 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the router did not stop within 10 s of SIGTERM");
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        Any::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn requests_and_delivery_attempts_are_exported_as_traces() {
    let collector = Receiver::start(vec![]).await;
    // The first attempt gets a 500 and is retried: two attempts, two traces.
    let app = Receiver::start(vec![Reply::Status(500)]).await;
    let routes = routes(&app.url("/hook"));
    let data = tempfile::tempdir().unwrap();
    let (router, url) = start(&routes, data.path(), Some(&collector.url(""))).await;

    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    assert_eq!(post(&url, TOKEN, Some(&format!("00-{caller_trace}-{caller_span}-01"))).await, 200);
    assert_eq!(post(&url, "wrong-token", None).await, 401);
    until("the retried delivery", || app.count() == 2).await;
    // SIGTERM: what the exporter still holds is sent before the exit.
    terminate(router).await;

    let exports: Vec<ExportTraceServiceRequest> = collector
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/v1/traces");
            let kind = r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
            assert_eq!(kind, Some("application/x-protobuf"));
            ExportTraceServiceRequest::decode(&r.raw[..]).expect("OTLP protobuf")
        })
        .collect();
    let resource = exports[0].resource_spans[0].resource.as_ref().unwrap();
    let service = resource.attributes.iter().find(|kv| kv.key == "service.name").unwrap();
    assert_eq!(format!("{:?}", service.value.as_ref().unwrap().value), r#"Some(StringValue("webhook-router"))"#);
    let spans: Vec<Span> =
        exports.into_iter().flat_map(|e| e.resource_spans).flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let children = |of: &Span| spans.iter().filter(|s| s.parent_span_id == of.span_id).collect::<Vec<_>>();

    // The accepted request continues its caller's trace.
    let requests = named("request");
    assert_eq!(requests.len(), 2, "{spans:#?}");
    let accepted = requests.iter().find(|s| attr(s, "outcome").as_deref() == Some("accepted")).unwrap();
    assert_eq!(hex(&accepted.trace_id), caller_trace);
    assert_eq!(hex(&accepted.parent_span_id), caller_span);
    assert_eq!(attr(accepted, "route").as_deref(), Some("traced"));
    assert_eq!(attr(accepted, "event.type").as_deref(), Some("order.paid"));
    assert_eq!(attr(accepted, "http.response.status_code").as_deref(), Some("200"));
    let mut steps: Vec<(String, Option<String>)> =
        children(accepted).iter().map(|s| (s.name.clone(), attr(s, "ok"))).collect();
    steps.sort();
    let ok = Some("true".to_string());
    assert_eq!(steps, [("log.append".to_string(), ok.clone()), ("verify".to_string(), ok)]);
    assert!(children(accepted).iter().all(|s| s.trace_id == accepted.trace_id));

    // The rejected one: a trace of its own, verify failed, nothing appended.
    let rejected = requests.iter().find(|s| attr(s, "outcome").as_deref() == Some("rejected")).unwrap();
    assert_ne!(rejected.trace_id, accepted.trace_id);
    assert_eq!(attr(rejected, "http.response.status_code").as_deref(), Some("401"));
    assert!(attr(rejected, "reason").is_some());
    let steps: Vec<_> = children(rejected).iter().map(|s| (s.name.clone(), attr(s, "ok"))).collect();
    assert_eq!(steps, [("verify".to_string(), Some("false".to_string()))]);

    // One trace per delivery attempt; the sink got each one's traceparent.
    let mut attempts = named("delivery");
    attempts.sort_by_key(|s| attr(s, "attempt"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let outcomes: Vec<_> = attempts.iter().map(|s| (attr(s, "attempt"), attr(s, "outcome"))).collect();
    assert_eq!(outcomes, [(Some("1".into()), Some("retry".into())), (Some("2".into()), Some("delivered".into()))]);
    let status = |s: &Span| s.status.as_ref().map_or(StatusCode::Unset as i32, |st| st.code);
    assert_eq!(status(attempts[0]), StatusCode::Error as i32, "a 500 is an error on the attempt's span");
    assert_ne!(status(attempts[1]), StatusCode::Error as i32);
    assert_ne!(attempts[0].trace_id, attempts[1].trace_id);
    for (span, got) in attempts.iter().zip(app.requests()) {
        assert_eq!(attr(span, "sink").as_deref(), Some("app"));
        let parent = got.headers.iter().find(|(k, _)| k == "traceparent").map(|(_, v)| v.clone());
        assert_eq!(parent, Some(format!("00-{}-{}-01", hex(&span.trace_id), hex(&span.span_id))));
    }
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced() {
    let app = Receiver::start(vec![]).await;
    let routes = routes(&app.url("/hook"));
    let data = tempfile::tempdir().unwrap();
    let (router, url) = start(&routes, data.path(), None).await;
    assert_eq!(post(&url, TOKEN, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).await, 200);
    until("the delivery", || app.count() == 1).await;
    terminate(router).await;
    let got = &app.requests()[0];
    assert!(got.headers.iter().all(|(k, _)| k != "traceparent"), "{:?}", got.headers);
}
