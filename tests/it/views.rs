//! Views against the real server: live updates over Server-Sent Events
//! (with reconnection by `Last-Event-ID`), bearer auth and CORS.

use crate::util::{client, post, TempRoutes, TestRouter};
use serde_json::Value;
use std::time::Duration;

const ROUTES: &str = r#"
route: sessions
path: /hook/{sessionId}
verify: { scheme: bearer, token: t }
event: { type: $.event }
rules:
  - on: "*"
    map: { status: $.status, qr: $.qr }
    script: |
      if doc.qr != () { doc.qrImage = qr_data_url(doc.qr); }
    to: [{ sink: sessions, key: "param:sessionId" }]
views:
  - path: /status/{sessionId}
    tree: sessions
    key: "{sessionId}"
    script: doc.isConnected = doc.status == "connected";
    cors: ["https://app.example"]
  - path: /private/{sessionId}
    tree: sessions
    key: "{sessionId}"
    auth: { token: [old-view-token, view-token] }
sinks:
  sessions: { type: store, mode: merge }
"#;

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// Reads events off a streaming response.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let mut req = client().get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Self { resp, buf: String::new() }
    }

    /// The next event (heartbeat comments skipped), or `None` after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field =
                    |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_string());
                let Some(data) = field("data:") else { continue };
                let (id, event) = (field("id:").unwrap_or_default(), field("event:").unwrap_or_default());
                return Some(Sse { id, event, data: serde_json::from_str(&data).unwrap() });
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.unwrap()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn a_view_streams_each_write_and_a_reconnect_misses_nothing() {
    let routes = TempRoutes::new(&[("s.yaml", ROUTES)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let url = r.url("/status/s1");

    let mut stream = SseReader::open(&url, None).await;
    let first = stream.next(Duration::from_secs(5)).await.expect("the current state first");
    assert_eq!((first.event.as_str(), &first.data["success"]), ("missing", &Value::Bool(false)));

    let (code, _) = post(&r.url("/hook/s1"), "t", r#"{"event": "qr", "status": "qr", "qr": "1@ABC"}"#, &[]).await;
    assert_eq!(code, 200);
    let update = stream.next(Duration::from_secs(5)).await.expect("the QR update");
    assert_eq!(update.event, "update");
    assert_eq!(update.data["data"]["status"], "qr");
    assert!(update.data["data"]["qrImage"].as_str().unwrap().starts_with("data:image/png;base64,"));
    assert_eq!(update.data["data"]["isConnected"], false, "the view script ran");
    // Another session's write is not this view's business.
    post(&r.url("/hook/other"), "t", r#"{"event": "qr", "status": "qr", "qr": "x"}"#, &[]).await;
    assert!(stream.next(Duration::from_millis(300)).await.is_none());
    drop(stream);

    // Reconnecting with the last id seen: nothing new, so nothing is resent...
    let mut again = SseReader::open(&url, Some(&update.id)).await;
    assert!(again.next(Duration::from_millis(300)).await.is_none());
    drop(again);
    // ...but a write made while disconnected is sent at once on reconnect.
    post(&r.url("/hook/s1"), "t", r#"{"event": "ready", "status": "connected"}"#, &[]).await;
    let mut back = None;
    for _ in 0..100 {
        let rec = r.rt.data.records.get("sessions", "s1").unwrap().unwrap();
        if rec["status"] == "connected" {
            back = Some(SseReader::open(&url, Some(&update.id)).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let missed = back.expect("delivered").next(Duration::from_secs(5)).await.expect("the missed update");
    assert_eq!(
        (&missed.data["data"]["status"], &missed.data["data"]["isConnected"]),
        (&"connected".into(), &true.into())
    );
    assert!(missed.id.parse::<u64>().unwrap() > update.id.parse::<u64>().unwrap());

    // An open stream does not hold up a graceful stop (the grace is 10 s).
    let mut open = SseReader::open(&url, None).await;
    open.next(Duration::from_secs(5)).await.expect("the current state");
    tokio::time::timeout(Duration::from_secs(3), r.stop()).await.expect("stopped without waiting for the stream");
    assert!(open.next(Duration::from_secs(1)).await.is_none(), "the stream ended");
}

#[tokio::test]
async fn views_check_tokens_and_answer_cors() {
    let routes = TempRoutes::new(&[("s.yaml", ROUTES)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    post(&r.url("/hook/s1"), "t", r#"{"event": "ready", "status": "connected"}"#, &[]).await;
    r.eventually("the record", || r.rt.data.records.get("sessions", "s1").unwrap()).await;

    let get = |path: &str, token: Option<&str>| {
        let mut req = client().get(r.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/private/s1", None).await, 401);
    assert_eq!(get("/private/s1", Some("wrong")).await, 401);
    assert_eq!(get("/private/s1", Some("view-token")).await, 200);
    assert_eq!(get("/private/s1", Some("old-view-token")).await, 200, "rotation list");

    let preflight = client()
        .request(reqwest::Method::OPTIONS, r.url("/status/s1"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example");
    let other = client().get(r.url("/status/s1")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("access-control-allow-origin").is_none(), "origin not allowed");
    r.stop().await;
}
