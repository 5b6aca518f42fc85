//! The contract's response table and the ingest pipeline, over real HTTP.

use crate::util::{client, get_json, post, TempRoutes, TestRouter};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webhook_router::storage::{DeliveryStatus, NewDelivery, NewEvent, Parsed};

pub const SHOP: &str = r#"
route: shop
path: /hooks/{tenant}
verify: { scheme: bearer, token: [old-token, test-token] }
event:
  type: $.type
  id: $.id
  time: $.created
events: ["customer.*", "!customer.deleted", "order.paid"]
require:
  $.data.object.id: string
  $.data.object.n: integer
body_limit: 2KiB
rules:
  - on: customer.*
    map:
      id: $.data.object.id
      email: $.data.object.email
      tenant: "{tenant}"
      source: query:source
      agent: header:user-agent
    to: [{ sink: customers, key: "{tenant}:{$.data.object.id}" }]
  - name: orders
    on: order.paid
    to: [{ sink: orders, key: $.id }]
sinks:
  customers: { type: store, mode: merge }
  orders: { type: store }
"#;

fn event(id: &str, kind: &str, object: &str, created: i64) -> String {
    json!({"id": id, "type": kind, "created": created, "data": {"object": {"id": object, "n": 1, "email": format!("{object}@example.com")}}})
        .to_string()
}

async fn start() -> (TempRoutes, tempfile::TempDir, TestRouter) {
    let routes = TempRoutes::new(&[("shop.yaml", SHOP)]);
    let data = tempfile::tempdir().unwrap();
    let router = TestRouter::start(routes.path(), data.path()).await;
    (routes, data, router)
}

/// Sends raw bytes and returns whatever the server answers until it closes.
async fn raw(addr: std::net::SocketAddr, parts: &[&[u8]], pause: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for p in parts {
        s.write_all(p).await.unwrap();
        tokio::time::sleep(pause).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn every_status_of_the_contract() {
    let (_routes, _data, r) = start().await;
    let url = r.url("/hooks/acme");
    let body = event("evt_1", "customer.created", "cus_1", 1000);

    let (s, b) = post(&url, "test-token", &body, &[]).await;
    assert_eq!((s, &b["received"], &b["event"]), (200, &json!(true), &json!("customer.created")), "{b}");
    let id = b["id"].clone();

    let (s, b) = post(&url, "test-token", &body, &[]).await;
    assert_eq!((s, &b["duplicate"], &b["id"]), (200, &json!(true), &id), "{b}");

    for filtered in ["customer.deleted", "invoice.paid"] {
        let (s, b) = post(&url, "test-token", &event("evt_f", filtered, "cus_1", 1), &[]).await;
        assert_eq!((s, &b["filtered"]), (200, &json!(true)), "{filtered}: {b}");
    }

    let (s, b) = post(&url, "test-token", "{not json", &[]).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("body is not valid JSON")));

    let missing = json!({"id": "evt_2", "type": "customer.updated", "created": 5, "data": {"object": {"n": "one"}}});
    let (s, b) = post(&url, "test-token", &missing.to_string(), &[]).await;
    assert_eq!(s, 400);
    assert_eq!(
        b["problems"],
        json!(["$.data.object.id: missing (expected string)", "$.data.object.n: expected integer, got string"])
    );
    let no_id = json!({"type": "order.paid", "data": {"object": {"id": "o", "n": 1}}});
    let (s, b) = post(&url, "test-token", &no_id.to_string(), &[]).await;
    assert_eq!((s, &b["problems"][0]), (400, &json!("event id: missing or not a string/number")));

    let (s, b) = post(&url, "wrong-token", &body, &[]).await;
    assert_eq!((s, &b), (401, &json!({"error": "unauthorized"})));
    let resp = client().post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    assert_eq!(client().post(r.url("/nowhere")).body("{}").send().await.unwrap().status(), 404);
    let resp = client().put(&url).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST, GET, HEAD");

    let big = json!({"id": "evt_big", "type": "order.paid", "pad": "x".repeat(3000), "data": {"object": {"id": "o", "n": 1}}});
    let (s, b) = post(&url, "test-token", &big.to_string(), &[]).await;
    assert_eq!((s, &b["limit_bytes"]), (413, &json!(2048)));

    // Without Content-Length the cap applies while reading, not after.
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "y".repeat(1500));
    let head = "POST /hooks/acme HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer test-token\r\nTransfer-Encoding: chunked\r\n\r\n";
    let answer =
        raw(r.addr, &[head.as_bytes(), chunk.as_bytes(), chunk.as_bytes(), b"0\r\n\r\n"], Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    r.rt.data.log.set_fail_writes(true);
    let (s, b) = post(&url, "test-token", &event("evt_3", "order.paid", "o3", 1), &[]).await;
    assert_eq!((s, &b["error"]), (503, &json!("event store unavailable, retry later")));
    r.rt.data.log.set_fail_writes(false);
    // Nothing half-written: the retried request is new, not a duplicate.
    let (s, b) = post(&url, "test-token", &event("evt_3", "order.paid", "o3", 1), &[]).await;
    assert_eq!((s, b.get("duplicate")), (200, None), "{b}");

    let health = get_json(&url).await;
    assert_eq!(health["route"], "shop");
    assert_eq!(health["supported_events"], json!(["customer.*", "order.paid", "!customer.deleted"]));

    let counts = r.rt.stats.report(["shop"]).routes["shop"].clone();
    assert_eq!((counts.accepted, counts.duplicates, counts.filtered), (2, 1, 2));
    r.stop().await;
}

#[tokio::test]
async fn params_query_headers_and_rotation_reach_the_store() {
    let (_routes, _data, r) = start().await;
    let url = r.url("/hooks/acme?source=stripe");
    let (s, _) =
        post(&url, "old-token", &event("evt_1", "customer.created", "cus_9", 1000), &[("user-agent", "Stripe/1.0")])
            .await;
    assert_eq!(s, 200);
    let (s, _) = post(&r.url("/hooks/acme"), "test-token", &event("evt_o", "order.paid", "o1", 1), &[]).await;
    assert_eq!(s, 200);
    let records = r.rt.data.records.clone();
    let rec = r.eventually("customer record", || records.get("customers", "acme:cus_9").unwrap()).await;
    assert_eq!(
        (&rec["id"], &rec["email"], &rec["tenant"], &rec["source"], &rec["agent"]),
        (&json!("cus_9"), &json!("cus_9@example.com"), &json!("acme"), &json!("stripe"), &json!("Stripe/1.0"))
    );
    assert_eq!(rec["_sync_metadata"]["event_id"], "evt_1");
    assert_eq!(rec["_sync_metadata"]["event_time"], "1970-01-01T00:16:40.000Z");
    // No `map:` = the whole body.
    let order = r.eventually("order record", || records.get("orders", "evt_o").unwrap()).await;
    assert_eq!(order["data"]["object"]["id"], "o1");
    r.stop().await;
}

#[tokio::test]
async fn older_events_never_overwrite_newer_records() {
    let (_routes, _data, r) = start().await;
    let url = r.url("/hooks/acme");
    let newer = json!({"id": "evt_new", "type": "customer.updated", "created": 2000, "data": {"object": {"id": "c", "n": 1, "email": "new@x"}}});
    let older = json!({"id": "evt_old", "type": "customer.updated", "created": 1000, "data": {"object": {"id": "c", "n": 1, "email": "old@x"}}});
    let (_, a) = post(&url, "test-token", &newer.to_string(), &[]).await;
    let log = &r.rt.data.log;
    let first: u64 = a["id"].as_str().unwrap().parse().unwrap();
    r.eventually("newer delivered", || {
        (log.deliveries(first).unwrap()[0].status == DeliveryStatus::Delivered).then_some(())
    })
    .await;
    let (_, b) = post(&url, "test-token", &older.to_string(), &[]).await;
    let second: u64 = b["id"].as_str().unwrap().parse().unwrap();
    let d = r
        .eventually("older handled", || log.deliveries(second).unwrap().into_iter().find(|d| !d.status.is_open()))
        .await;
    assert_eq!(d.status, DeliveryStatus::Skipped);
    assert!(d.last_error.as_deref().unwrap().contains("out of order"), "{d:?}");
    assert_eq!(r.rt.data.records.get("customers", "acme:c").unwrap().unwrap()["email"], "new@x");
    r.stop().await;
}

#[tokio::test]
async fn restart_finds_every_event_and_resumes_pending_deliveries() {
    let routes = TempRoutes::new(&[("shop.yaml", SHOP)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, b) =
            post(&r.url("/hooks/t"), "test-token", &event(&format!("evt_{i}"), "order.paid", "o", i), &[]).await;
        assert_eq!(s, 200);
        ids.push(b["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    r.stop().await;

    // Events logged while no dispatcher runs (as after a crash) stay pending...
    {
        let store = crate::util::store_for(data.path()).await;
        let dir = webhook_router::runtime::DataDir::open_with(data.path(), &store).unwrap();
        for i in 20..25 {
            let event = NewEvent {
                route: "shop".into(),
                event_type: "order.paid".into(),
                event_id: Some(format!("evt_{i}")),
                dedup: true,
                event_time: None,
                params: vec![("tenant".into(), "t".into())],
                query: vec![],
                headers: vec![],
                body: event(&format!("evt_{i}"), "order.paid", "o", i).into_bytes().into(),
                payload: Parsed::Whole(
                    serde_json::from_str(&event(&format!("evt_{i}"), "order.paid", "o", i)).unwrap(),
                ),
            };
            let d =
                NewDelivery { rule: 1, target: 0, rule_name: "orders".into(), sink: "orders".into(), order_key: None };
            dir.log.append(event, vec![d]).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // ...and a restarted router finds all 25 and delivers the pending ones.
    let r = TestRouter::start(routes.path(), data.path()).await;
    let all = r.rt.data.log.list(&webhook_router::storage::ListQuery { limit: 100, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 25);
    for id in &ids {
        assert_eq!(r.rt.data.log.event(*id).unwrap().route, "shop");
    }
    let records = r.rt.data.records.clone();
    r.eventually("pending deliveries resumed", || {
        (records.list("orders", &[], None, 100).unwrap().len() == 25).then_some(())
    })
    .await;
    r.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let (_routes, _data, r) = start().await;
    // Headers that never finish: the connection is closed after the header timeout.
    let answer = raw(r.addr, &[b"POST /hooks/acme HTTP/1.1\r\nHost: t\r\n"], Duration::from_millis(900)).await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    // A body that never finishes: 408.
    let head = b"POST /hooks/acme HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer test-token\r\nContent-Length: 100\r\n\r\n{\"id\":";
    let answer = raw(r.addr, &[head], Duration::from_millis(900)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The listener still serves others.
    let (s, _) = post(&r.url("/hooks/acme"), "test-token", &event("e", "order.paid", "o", 1), &[]).await;
    assert_eq!(s, 200);
    r.stop().await;
}

const SESSIONS: &str = r#"
route: whatsapp
path: /api/whatsapp/webhook/{sessionId}
verify: { scheme: bearer, token: wa-token }
event: { type: $.event }
rules:
  - on: qr
    map: { sessionId: "{sessionId}", userId: query:userId, status: qr_generated, qr: $.data.qr }
    to: [{ sink: sessions, key: "{sessionId}" }]
  - on: ready
    map: { sessionId: "{sessionId}", userId: query:userId, status: session_connected, qr: null }
    to: [{ sink: sessions, key: "{sessionId}" }]
sinks:
  sessions: { type: store, mode: merge }
views:
  - path: /api/whatsapp/session/status/{sessionId}
    tree: sessions
    key: "{sessionId}"
  - path: /api/whatsapp/session/list-realtime
    tree: sessions
    filter_by: [userId, status]
    summary: status
"#;

#[tokio::test]
async fn views_read_what_store_sinks_wrote() {
    let routes = TempRoutes::new(&[("wa.yaml", SESSIONS)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    for (session, user, kind) in [("s1", "u1", "qr"), ("s2", "u1", "ready"), ("s3", "u2", "qr")] {
        let body = json!({"event": kind, "data": {"qr": format!("1@{session}")}}).to_string();
        let url = r.url(&format!("/api/whatsapp/webhook/{session}?userId={user}"));
        assert_eq!(post(&url, "wa-token", &body, &[]).await.0, 200);
    }
    let records = r.rt.data.records.clone();
    r.eventually("3 sessions", || (records.list("sessions", &[], None, 10).unwrap().len() == 3).then_some(())).await;

    let one = get_json(&r.url("/api/whatsapp/session/status/s1")).await;
    assert_eq!(one["success"], true);
    assert_eq!((&one["data"]["status"], &one["data"]["qr"]), (&json!("qr_generated"), &json!("1@s1")));
    assert!(one["data"].get("_sync_metadata").is_none());
    let missing = client().get(r.url("/api/whatsapp/session/status/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let list = get_json(&r.url("/api/whatsapp/session/list-realtime?userId=u1")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["summary"], json!({"qr_generated": 1, "session_connected": 1, "total": 2}));
    let page = get_json(&r.url("/api/whatsapp/session/list-realtime?limit=2")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let next = page["next_cursor"].as_str().unwrap();
    let rest = get_json(&r.url(&format!("/api/whatsapp/session/list-realtime?limit=2&cursor={next}"))).await;
    assert_eq!(rest["data"][0]["sessionId"], "s3");
    assert!(rest.get("next_cursor").is_none());
    let post_view = client().post(r.url("/api/whatsapp/session/list-realtime")).send().await.unwrap();
    assert_eq!(post_view.status(), 405);
    drop(records);
    r.stop().await;
}

#[tokio::test]
async fn dedup_false_accepts_repeats_and_keeps_the_id() {
    let route = "route: repeat\npath: /repeat\nverify: { scheme: bearer, token: t }\nevent: { type: $.type, id: $.id }\ndedup: false\n";
    let routes = TempRoutes::new(&[("repeat.yaml", route)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let body = json!({"id": "evt_same", "type": "x"}).to_string();
    let (_, a) = post(&r.url("/repeat"), "t", &body, &[]).await;
    let (_, b) = post(&r.url("/repeat"), "t", &body, &[]).await;
    assert!(a.get("duplicate").is_none() && b.get("duplicate").is_none(), "{a} {b}");
    assert_ne!(a["id"], b["id"]);
    assert_eq!(r.rt.data.log.event(2).unwrap().event_id.as_deref(), Some("evt_same"));
    r.stop().await;
}

/// The cap holds (never more than `max_connections` open), but a new
/// sender is not kept waiting behind clients that send nothing: the
/// quietest of those is closed to make room.
#[tokio::test]
async fn open_connections_are_bounded() {
    let routes = TempRoutes::new(&[("shop.yaml", SHOP)]);
    let data = tempfile::tempdir().unwrap();
    let limits = webhook_router::server::Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(30),
        ..crate::util::test_limits()
    };
    let r = TestRouter::start_full(routes.path(), data.path(), Default::default(), limits).await;
    // Two clients hold both slots without sending anything.
    let mut idle =
        [tokio::net::TcpStream::connect(r.addr).await.unwrap(), tokio::net::TcpStream::connect(r.addr).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    third.write_all(b"GET /hooks/acme HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    // The first (quietest) idle client was closed to make room.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), idle[0].read(&mut buf)).await.unwrap();
    assert_eq!(closed.unwrap(), 0, "the oldest silent connection is closed");
    r.stop().await;
}
