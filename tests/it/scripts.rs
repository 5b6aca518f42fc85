//! Scripts through the real server: a script that throws, loops or drops
//! settles its own delivery (failed with its place, or dropped) and never
//! the router; a slow script does not hold up ingest.

use crate::util::{post, settled, TempRoutes, TestRouter};
use std::time::Duration;
use webhook_router::storage::DeliveryStatus;

const ROUTES: &str = r#"
route: scripted
path: /scripted
verify: { scheme: bearer, token: t }
event: { type: $.type }
script_limits: { operations: 1000000000, wall_time: 3s }
rules:
  - on: boom
    script: |
      doc.total = 1;
      doc.x = payload.missing.field;
    to: [{ sink: records, key: $.id }]
  - on: spin
    script: "loop { doc.n = 1; }"
    to: [{ sink: records, key: $.id }]
  - on: skip
    script: drop("not for us")
    to: [{ sink: records, key: $.id }]
  - on: ok
    script: doc.seen = (current?.seen ?? 0) + 1;
    to: [{ sink: records, key: $.id }]
sinks:
  records: { type: store }
"#;

async fn send(r: &TestRouter, body: &str) -> u64 {
    let (status, answer) = post(&r.url("/scripted"), "t", body, &[]).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn script_errors_and_drops_settle_their_delivery_only() {
    let routes = TempRoutes::new(&[("scripted.yaml", ROUTES)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;

    let boom = settled(&r, send(&r, r#"{"type": "boom", "id": "a"}"#).await).await;
    assert_eq!(boom[0].status, DeliveryStatus::Failed);
    let error = boom[0].last_error.as_deref().unwrap();
    // The inline script's line 2 is line 11 of the route file; `field` starts at column 31.
    assert!(error.contains("scripted.yaml:11:31: Unknown property 'field'"), "{error}");
    assert!(r.rt.data.records.get("records", "a").unwrap().is_none(), "nothing half-written");

    let skip = settled(&r, send(&r, r#"{"type": "skip", "id": "b"}"#).await).await;
    assert_eq!((skip[0].status, skip[0].last_error.as_deref()), (DeliveryStatus::Dropped, Some("not for us")));

    for _ in 0..2 {
        let ok = settled(&r, send(&r, r#"{"type": "ok", "id": "c"}"#).await).await;
        assert_eq!(ok[0].status, DeliveryStatus::Delivered);
    }
    assert_eq!(r.rt.data.records.get("records", "c").unwrap().unwrap()["seen"], 2);
    r.stop().await;
}

#[tokio::test]
async fn a_runaway_script_fails_at_its_wall_time_while_ingest_goes_on() {
    let routes = TempRoutes::new(&[("scripted.yaml", ROUTES)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let spin = send(&r, r#"{"type": "spin", "id": "s"}"#).await;
    // Give the dispatcher time to start the script, then keep posting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..20 {
        send(&r, &format!(r#"{{"type": "none", "id": "n{i}"}}"#)).await;
    }
    let open = r.rt.data.log.deliveries(spin).unwrap()[0].status.is_open();
    assert!(open, "every post was answered while the script was still running");
    let done = settled(&r, spin).await;
    assert_eq!(done[0].status, DeliveryStatus::Failed);
    assert!(done[0].last_error.as_deref().unwrap().contains("wall-time limit (3s)"), "{:?}", done[0]);
    r.stop().await;
}
