//! HTTP and Make sinks against real receivers on loopback: retries and their
//! spacing, Retry-After, timeouts, dropped connections, permanent failures,
//! the Make envelope and fallback URL, isolation of a dead sink, and
//! retries that survive a restart.

use crate::util::{post, run_router, settled, Receiver, Reply, TempRoutes, TestRouter};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use webhook_router::storage::{DeliveryStatus, DeliveryV1};

/// A route sending every event to `sinks` (their YAML), with `env` for URLs.
fn routes(sinks: &str, targets: &[&str]) -> TempRoutes {
    let to: Vec<String> = targets.iter().map(|t| format!("{{ sink: {t} }}")).collect();
    let route = format!(
        "route: app\npath: /events\nverify: {{ scheme: bearer, token: t }}\nevent: {{ type: $.type, id: $.id }}\n\
         rules:\n  - on: \"*\"\n    map: {{ order: $.order, amount: $.amount }}\n    to: [{}]\nsinks:\n{sinks}",
        to.join(", ")
    );
    TempRoutes::new(&[("app.yaml", &route)])
}

async fn start(routes: &TempRoutes, data: &tempfile::TempDir, env: &[(&str, String)]) -> TestRouter {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    TestRouter::start_with(routes.path(), data.path(), env).await
}

async fn send(r: &TestRouter, id: &str) -> u64 {
    let body = json!({"id": id, "type": "order.paid", "order": "o-1", "amount": 42}).to_string();
    let (status, answer) = post(&r.url("/events"), "t", &body, &[]).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().unwrap().parse().unwrap()
}

/// Waits until event `id`'s first delivery has had `n` attempts.
async fn attempted(r: &TestRouter, id: u64, n: u32) -> DeliveryV1 {
    let log = &r.rt.data.log;
    r.eventually(&format!("attempt {n} of event {id}"), || {
        log.deliveries(id).unwrap().into_iter().next().filter(|d| d.attempts >= n)
    })
    .await
}

/// How long after its last attempt the router put a delivery's next one:
/// both times are the router's own record, so no clock is read here.
fn scheduled_wait(d: &DeliveryV1) -> Duration {
    let last = d.attempts_log.last().expect("an attempt");
    let at = webhook_router::event::parse_ms(&last.at).expect("an attempt time");
    let next = d.next_attempt_ms.expect("a next attempt");
    Duration::from_millis((next - at) as u64)
}

/// Moves the router's clock to `d`'s next attempt, which then runs at once.
fn skip_to_next(r: &TestRouter, d: &DeliveryV1) {
    r.rt.skip_time(scheduled_wait(d));
}

/// `wait` is `nominal` spread by the retry jitter (±20 %).
fn within_jitter(wait: Duration, nominal: Duration) -> bool {
    wait >= nominal.mul_f64(0.8) && wait <= nominal.mul_f64(1.2)
}

#[tokio::test]
async fn server_errors_retry_with_backoff_then_deliver() {
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(503), Reply::Status(200)]).await;
    // An hour's backoff: nothing is retried unless the test moves the clock.
    let routes = routes(
        "  target:\n    type: http\n    url: ${TARGET}\n    headers: { Authorization: \"Bearer ${TOKEN}\" }\n    \
         retry: { attempts: 5, backoff: 1h, max_delay: 4h }\n",
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/hook")), ("TOKEN", "rcv-token".into())]).await;
    let id = send(&r, "evt_1").await;
    // Backoff 1 h then 2 h, each spread by at most ±20 %.
    for (attempt, nominal) in [(1, 3600), (2, 7200)] {
        let d = attempted(&r, id, attempt).await;
        assert_eq!((d.status, rx.count()), (DeliveryStatus::Retrying, attempt as usize), "{d:?}");
        let wait = scheduled_wait(&d);
        assert!(within_jitter(wait, Duration::from_secs(nominal)), "attempt {attempt}: next in {wait:?}");
        skip_to_next(&r, &d);
    }
    let d = &settled(&r, id).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 3), "{d:?}");
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    let first = &got[0];
    assert_eq!(serde_json::from_str::<Value>(&first.body).unwrap(), json!({"order": "o-1", "amount": 42}));
    let header = |name: &str| first.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("authorization").as_deref(), Some("Bearer rcv-token"));
    assert_eq!(header("x-router-event-id").as_deref(), Some("evt_1"));
    assert_eq!(d.attempts_log.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(), ["retry", "retry", "delivered"]);
    r.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    // Retry-After asks for an hour, over a 10 ms backoff; the wait is the
    // receiver's, with no jitter.
    let rx = Receiver::start(vec![Reply::With(429, "Retry-After: 3600")]).await;
    let routes = routes(
        "  target:\n    type: http\n    url: ${TARGET}\n    retry: { attempts: 3, backoff: 10ms, max_delay: 2h }\n",
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let id = send(&r, "evt_ra").await;
    let d = attempted(&r, id, 1).await;
    assert_eq!(scheduled_wait(&d), Duration::from_secs(3600), "{d:?}");
    assert_eq!(rx.count(), 1);
    skip_to_next(&r, &d);
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(rx.count(), 2);
    r.stop().await;
}

#[tokio::test]
async fn timeouts_and_dropped_connections_retry() {
    let rx = Receiver::start(vec![Reply::Hang, Reply::Close, Reply::Status(204)]).await;
    let routes = routes(
        "  target:\n    type: http\n    url: ${TARGET}\n    timeout: 200ms\n    retry: { attempts: 4, backoff: 20ms }\n",
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let id = send(&r, "evt_to").await;
    let d = &settled(&r, id).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 3), "{d:?}");
    let errors: Vec<_> = d.attempts_log.iter().filter_map(|a| a.error.clone()).collect();
    assert!(errors[0].contains("timed out"), "{errors:?}");
    r.stop().await;
}

#[tokio::test]
async fn client_errors_fail_at_once_and_spent_retries_fail_with_history() {
    let rx = Receiver::start(vec![Reply::Status(404)]).await;
    let down = Receiver::start(vec![Reply::Status(500); 10]).await;
    let routes = routes(
        "  gone:\n    type: http\n    url: ${GONE}\n    retry: { attempts: 5, backoff: 10ms }\n  \
         broken:\n    type: http\n    url: ${BROKEN}\n    retry: { attempts: 3, backoff: 10ms }\n",
        &["gone", "broken"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("GONE", rx.url("/")), ("BROKEN", down.url("/"))]).await;
    let id = send(&r, "evt_fail").await;
    let ds = settled(&r, id).await;
    let gone = ds.iter().find(|d| d.sink == "gone").unwrap();
    assert_eq!((gone.status, gone.attempts), (DeliveryStatus::Failed, 1));
    assert!(gone.last_error.as_deref().unwrap().contains("404"), "{gone:?}");
    let broken = ds.iter().find(|d| d.sink == "broken").unwrap();
    assert_eq!((broken.status, broken.attempts, broken.attempts_log.len()), (DeliveryStatus::Failed, 3, 3));
    assert!(broken.last_error.as_deref().unwrap().contains("after 3 attempts"), "{broken:?}");
    assert_eq!(down.count(), 3);
    let failed =
        r.rt.data
            .log
            .list(&webhook_router::storage::ListQuery {
                status: Some(webhook_router::storage::EventStatus::Failed),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
    assert_eq!(failed[0].id, id);
    r.stop().await;
}

#[tokio::test]
async fn make_envelope_and_fallback_url() {
    let primary = Receiver::start(vec![Reply::Status(410)]).await;
    let admin = Receiver::start(vec![]).await;
    let ok = Receiver::start(vec![]).await;
    let routes = routes(
        "  make-payments:\n    type: make\n    url: ${MAKE_OK}\n  \
         make-cohorts:\n    type: make\n    url: ${MAKE_WEBHOOK_COHORT_ENROLLMENTS_URL:-${MAKE_WEBHOOK_PAYMENTS_URL}}\n  \
         make-gone:\n    type: make\n    url: ${MAKE_GONE}\n    fallback_url: ${MAKE_WEBHOOK_ADMIN_URL:-}\n",
        &["make-payments", "make-cohorts", "make-gone"],
    );
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("MAKE_OK", ok.url("/payments")),
        ("MAKE_WEBHOOK_PAYMENTS_URL", ok.url("/payments-fallback-for-cohorts")),
        ("MAKE_GONE", primary.url("/gone")),
        ("MAKE_WEBHOOK_ADMIN_URL", admin.url("/admin")),
    ];
    let r = start(&routes, &data, &env).await;
    let id = send(&r, "evt_make").await;
    let ds = settled(&r, id).await;
    assert!(ds.iter().all(|d| d.status == DeliveryStatus::Delivered), "{ds:?}");
    let got = ok.requests();
    let paths: Vec<&str> = got.iter().map(|g| g.path.as_str()).collect();
    assert!(paths.contains(&"/payments") && paths.contains(&"/payments-fallback-for-cohorts"), "{paths:?}");
    let envelope: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(envelope["type"], "order.paid");
    assert_eq!(envelope["event_id"], "evt_make");
    assert_eq!(envelope["payload"], json!({"order": "o-1", "amount": 42}));
    assert!(envelope["sent_at"].as_str().unwrap().ends_with('Z'));
    // 410 from the primary is final, so the admin scenario got the same envelope.
    assert_eq!((primary.count(), admin.count()), (1, 1));
    let fallback: Value = serde_json::from_str(&admin.requests()[0].body).unwrap();
    assert_eq!(fallback["event_id"], "evt_make");
    r.stop().await;
}

/// A router sending every event to a sink whose receiver hangs (`timeout`,
/// `concurrency` slots) and to one that answers at once.
async fn dead_and_fast(
    timeout: &str,
    concurrency: usize,
) -> (TestRouter, Receiver, Receiver, (TempRoutes, tempfile::TempDir)) {
    let dead = Receiver::start(vec![Reply::Hang; 50]).await;
    let fast = Receiver::start(vec![]).await;
    let routes = routes(
        &format!(
            "  dead:\n    type: http\n    url: ${{DEAD}}\n    timeout: {timeout}\n    concurrency: {concurrency}\n  \
             fast:\n    type: http\n    url: ${{FAST}}\n"
        ),
        &["dead", "fast"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("DEAD", dead.url("/")), ("FAST", fast.url("/"))]).await;
    // The route files and data directory live as long as the router.
    (r, dead, fast, (routes, data))
}

#[tokio::test]
async fn a_dead_sink_does_not_hold_up_other_sinks_or_ingest() {
    // The dead sink's requests hang for an hour: a fast sink that waited
    // for them would never see its events.
    let (r, dead, fast, _dirs) = dead_and_fast("1h", 2).await;
    for i in 0..20 {
        send(&r, &format!("evt_{i}")).await;
    }
    let fast_rx = &fast;
    r.eventually("fast sink got every event", || (fast_rx.count() == 20).then_some(())).await;
    // The dead sink has at most its concurrency in flight.
    assert_eq!(dead.count(), 2);
    r.stop().await;
}

/// More deliveries waiting on a saturated sink than one dispatch round
/// claims (256) must not hide the other sinks' newer ones: a round claimed
/// the oldest due ones of all sinks, and the dead sink's filled it.
#[tokio::test]
async fn a_backlog_on_a_saturated_sink_does_not_hide_other_sinks_deliveries() {
    let (r, dead, fast, _dirs) = dead_and_fast("30s", 1).await;
    let ids: Vec<String> = (0..300).map(|i| format!("evt_{i}")).collect();
    for chunk in ids.chunks(20) {
        futures_util::future::join_all(chunk.iter().map(|id| send(&r, id))).await;
    }
    let fast_rx = &fast;
    r.eventually("fast sink got every event", || (fast_rx.count() == 300).then_some(())).await;
    assert_eq!(dead.count(), 1, "the dead sink has its one slot in flight");
    r.stop().await;
}

#[tokio::test]
async fn retries_pending_at_shutdown_are_delivered_after_restart() {
    // A port with nothing listening yet: connection refused, retried.
    let parked = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = parked.local_addr().unwrap();
    drop(parked);
    let routes = routes(
        "  later:\n    type: http\n    url: ${LATER}\n    retry: { attempts: 20, backoff: 50ms, max_delay: 200ms }\n",
        &["later"],
    );
    let data = tempfile::tempdir().unwrap();
    let env = [("LATER", format!("http://{addr}/"))];
    let r = start(&routes, &data, &env).await;
    let ids = [send(&r, "evt_a").await, send(&r, "evt_b").await];
    let log = &r.rt.data.log;
    r.eventually("a retry scheduled", || (log.deliveries(ids[1]).unwrap()[0].attempts >= 1).then_some(())).await;
    r.stop().await;

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let rx = Receiver::serve(listener, vec![]);
    let r = start(&routes, &data, &env).await;
    for id in ids {
        let d = &settled(&r, id).await[0];
        assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
        assert!(d.attempts >= 2);
    }
    assert_eq!(rx.count(), 2);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_can_be_retried_and_events_replayed() {
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(500)]).await;
    let routes = routes(
        "  target:\n    type: http\n    url: ${TARGET}\n    retry: { attempts: 2, backoff: 10ms }\n",
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let id = send(&r, "evt_dead").await;
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Failed);

    let d = data.path().to_str().unwrap().to_string();
    let admin = r.admin.to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data", &d, "--admin", &admin]);
        tokio::task::block_in_place(|| run_router(&all))
    };
    let (code, out, err) = cli(&["events", "retry", "--all-failed", "--route", "app"]);
    assert_eq!((code, out.trim()), (0, "1 failed deliveries requeued"), "{err}");
    let d1 = &settled(&r, id).await[0];
    assert_eq!(d1.status, DeliveryStatus::Delivered, "{d1:?}");
    assert_eq!(d1.attempts_log.iter().filter(|a| a.outcome == "requeued").count(), 1);
    assert_eq!(rx.count(), 3);

    // Replay adds nothing for what was delivered, unless forced.
    let (_, out, err) = cli(&["events", "replay", "--route", "app", "--since", "1h"]);
    assert_eq!(out.trim(), "0 deliveries added", "{err}");
    let (_, out, _) = cli(&["events", "replay", "--route", "app", "--since", "1h", "--force"]);
    assert_eq!(out.trim(), "1 deliveries added");
    let all = settled(&r, id).await;
    assert_eq!((all.len(), all[1].status), (2, DeliveryStatus::Delivered));
    assert_eq!(rx.count(), 4);
    assert_eq!(serde_json::from_str::<Value>(&rx.requests()[3].body).unwrap()["order"], "o-1");
    r.stop().await;
}

#[tokio::test]
async fn ordered_by_keeps_one_keys_order_while_other_keys_proceed() {
    // The first request fails; its retry is an hour away (a clock skip).
    let rx = Receiver::start(vec![Reply::Status(500)]).await;
    let route = "route: app\npath: /events\nverify: { scheme: bearer, token: t }\nevent: { type: $.type, id: $.id }\n\
        rules:\n  - on: \"*\"\n    map: { order: $.order, seq: $.id }\n    to: [{ sink: target, ordered_by: $.order }]\n\
        sinks:\n  target:\n    type: http\n    url: ${TARGET}\n    retry: { attempts: 5, backoff: 1h }\n";
    let routes = TempRoutes::new(&[("app.yaml", route)]);
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let post_order = |id: &'static str, order: &'static str| {
        let url = r.url("/events");
        async move {
            let body = json!({"id": id, "type": "t", "order": order}).to_string();
            let (status, answer) = post(&url, "t", &body, &[]).await;
            assert_eq!(status, 200);
            answer["id"].as_str().unwrap().parse::<u64>().unwrap()
        }
    };
    let a1 = post_order("a1", "A").await;
    let first = attempted(&r, a1, 1).await;
    let a2 = post_order("a2", "A").await;
    let b1 = post_order("b1", "B").await;
    // B is not held up by A's retry; a2 waits behind a1, so it is claimed
    // no sooner than a1's retry, which only the clock skip makes due.
    assert_eq!(settled(&r, b1).await[0].status, DeliveryStatus::Delivered);
    let a2_now = &r.rt.data.log.deliveries(a2).unwrap()[0];
    assert_eq!((a2_now.status, a2_now.attempts), (DeliveryStatus::Pending, 0), "a2 must wait while a1 is retrying");
    skip_to_next(&r, &first);
    assert_eq!(settled(&r, a2).await[0].status, DeliveryStatus::Delivered);
    let seen: Vec<String> = rx
        .requests()
        .iter()
        .map(|q| serde_json::from_str::<Value>(&q.body).unwrap()["seq"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ["a1", "b1", "a1", "a2"]);
    r.stop().await;
}

#[tokio::test]
async fn outgoing_requests_are_signed_so_receivers_can_verify_us() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rx = Receiver::start(vec![]).await;
    let routes = routes(
        &format!("  target:\n    type: http\n    url: ${{TARGET}}\n    sign: {{ scheme: standard-webhooks, secret: {secret} }}\n"),
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let id = send(&r, "evt_signed").await;
    settled(&r, id).await;
    let got = &rx.requests()[0];
    let headers: serde_json::Map<String, Value> = got
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("webhook-"))
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    assert_eq!(headers.len(), 3, "{headers:?}");
    let tampered = got.body.replace("42", "43");
    let verdicts = sdk_verify(&[
        json!({"secret": secret, "body": got.body, "headers": headers}),
        json!({"secret": secret, "body": tampered, "headers": headers}),
    ]);
    assert_eq!(verdicts[0], "ok");
    assert_ne!(verdicts[1], "ok");
    r.stop().await;
}

/// Verifies with the official `standardwebhooks` Python SDK (tests/signers/verify.py).
fn sdk_verify(requests: &[Value]) -> Vec<String> {
    use std::io::Write;
    let root = crate::util::repo();
    assert!(std::process::Command::new(root.join("scripts/setup-signers.sh")).status().unwrap().success());
    let mut child = std::process::Command::new(root.join("target/signers/venv/bin/python"))
        .arg(root.join("tests/signers/verify.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(requests).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn batches_group_events_and_retry_as_a_unit() {
    let rx = Receiver::start(vec![Reply::Status(500)]).await;
    let routes = routes(
        "  target:\n    type: make\n    url: ${TARGET}\n    batch: { max_events: 3, max_wait: 1h }\n    \
         retry: { attempts: 3, backoff: 1h }\n",
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    // A lone event waits up to max_wait for company: here an hour, which
    // only a clock skip ends.
    let lone = send(&r, "evt_lone").await;
    let waiting = &r.rt.data.log.deliveries(lone).unwrap()[0];
    assert_eq!((waiting.attempts, rx.count()), (0, 0), "sent before max_wait");
    r.rt.skip_time(Duration::from_secs(3600));
    // Its first batch got the 500: retried as a unit, then delivered.
    let first = attempted(&r, lone, 1).await;
    // A retried batch short of max_events waits for company again, as a new one does.
    r.rt.skip_time(scheduled_wait(&first) + Duration::from_secs(3600));
    let ds = settled(&r, lone).await;
    assert_eq!((ds[0].status, ds[0].attempts), (DeliveryStatus::Delivered, 2));
    r.stop().await;

    // A router of its own, whose clock is the wall clock again: two full
    // batches go at once, and the seventh event waits for max_wait.
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(send(&r, &format!("evt_{i}")).await);
    }
    for id in &ids[..6] {
        assert_eq!(settled(&r, *id).await[0].status, DeliveryStatus::Delivered);
    }
    assert_eq!(r.rt.data.log.deliveries(ids[6]).unwrap()[0].attempts, 0);
    r.rt.skip_time(Duration::from_secs(3600));
    assert_eq!(settled(&r, ids[6]).await[0].status, DeliveryStatus::Delivered);
    let bodies: Vec<Value> = rx.requests()[2..].iter().map(|q| serde_json::from_str(&q.body).unwrap()).collect();
    let sizes: Vec<usize> = bodies.iter().map(|b| b.as_array().unwrap().len()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    // Each item is the Make envelope of its own event.
    let mut seen: Vec<String> = bodies
        .iter()
        .flat_map(|b| b.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()))
        .collect();
    seen.sort();
    assert_eq!(seen, (0..7).map(|i| format!("evt_{i}")).collect::<Vec<_>>());
    r.stop().await;
}

#[tokio::test]
async fn the_rest_after_full_batches_waits_for_max_wait() {
    let rx = Receiver::start(vec![]).await;
    let batched = |max_events: usize| {
        routes(
            &format!(
                "  target:\n    type: make\n    url: ${{TARGET}}\n    concurrency: 2\n    \
                 batch: {{ max_events: {max_events}, max_wait: 1h }}\n"
            ),
            &["target"],
        )
    };
    // Four events wait for a batch of ten...
    let (ten, data) = (batched(10), tempfile::tempdir().unwrap());
    let r = start(&ten, &data, &[("TARGET", rx.url("/"))]).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(send(&r, &format!("evt_{i}")).await);
    }
    r.stop().await;
    // ...and are all due at once for a batch of three: one full batch goes
    // and the fourth waits for company, though a slot is free.
    let three = batched(3);
    let r = start(&three, &data, &[("TARGET", rx.url("/"))]).await;
    for id in &ids[..3] {
        assert_eq!(settled(&r, *id).await[0].status, DeliveryStatus::Delivered);
    }
    let rest = &r.rt.data.log.deliveries(ids[3]).unwrap()[0];
    let sizes: Vec<usize> = rx
        .requests()
        .iter()
        .map(|q| serde_json::from_str::<Value>(&q.body).unwrap().as_array().unwrap().len())
        .collect();
    assert_eq!((rest.attempts, &sizes[..]), (0, &[3][..]), "the fourth went alone before max_wait");
    r.rt.skip_time(Duration::from_secs(3600));
    assert_eq!(settled(&r, ids[3]).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(rx.count(), 2);
    r.stop().await;
}

#[tokio::test]
async fn retries_stop_at_the_policy_deadline() {
    // Every answer asks for an hour (Retry-After: exact, no jitter), and the
    // policy gives up 4.5 h after the first attempt.
    let rx = Receiver::start(vec![Reply::With(503, "Retry-After: 3600"); 100]).await;
    let routes = routes(
        "  target:\n    type: http\n    url: ${TARGET}\n    retry: { attempts: 100, backoff: 1s, max_delay: 1h, deadline: 4h30m }\n",
        &["target"],
    );
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &[("TARGET", rx.url("/"))]).await;
    let id = send(&r, "evt_deadline").await;
    // Attempts at 0, 1, 2, 3 and 4 h; a sixth would start past 4.5 h.
    for attempt in 1..=4 {
        let d = attempted(&r, id, attempt).await;
        assert_eq!(d.status, DeliveryStatus::Retrying, "attempt {attempt}: {d:?}");
        skip_to_next(&r, &d);
    }
    let d = &settled(&r, id).await[0];
    assert_eq!((d.status, d.attempts, rx.count()), (DeliveryStatus::Failed, 5, 5), "{d:?}");
    r.stop().await;
}

#[tokio::test]
async fn seed_002_example_fans_out_to_make_scenarios() {
    let make = Receiver::start(vec![]).await;
    let data = tempfile::tempdir().unwrap();
    // Cohort enrollments are left unset: they go to the payments scenario, as in the seed.
    let env = [
        ("APP_EVENTS_TOKEN", "app-secret".to_string()),
        ("MAKE_WEBHOOK_PAYMENTS_URL", make.url("/payments")),
        ("MAKE_WEBHOOK_SUPPORT_TICKETS_URL", make.url("/tickets")),
        ("MAKE_WEBHOOK_ERRORS_URL", make.url("/errors")),
    ];
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let routes = crate::util::repo().join("examples/seed-002-make/routes.d");
    let r = TestRouter::start_with(&routes, data.path(), env).await;
    let mut ids = Vec::new();
    for name in ["payment.success", "cohort.enrollment.created", "ticket.created", "error.occurred"] {
        let body = std::fs::read_to_string(routes.join(format!("../payloads/{name}.json"))).unwrap();
        let (status, answer) = post(&r.url("/api/events"), "app-secret", &body, &[]).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    // A LOW error is not forwarded: `when:` skips it, with the reason kept.
    let low = r#"{"type": "error.occurred", "id": "evt_err_2", "data": {"severity": "LOW", "message": "slow query"}}"#;
    let (status, answer) = post(&r.url("/api/events"), "app-secret", low, &[]).await;
    assert_eq!(status, 200, "{answer}");
    let low_id = answer["id"].as_str().unwrap().parse::<u64>().unwrap();
    for id in ids {
        assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    }
    let skipped = &settled(&r, low_id).await[0];
    assert_eq!(skipped.status, DeliveryStatus::Skipped);
    assert!(skipped.last_error.as_deref().unwrap().contains("is false"), "{skipped:?}");
    let mut got: Vec<(String, Value)> =
        make.requests().into_iter().map(|q| (q.path, serde_json::from_str(&q.body).unwrap())).collect();
    got.sort_by_key(|(_, b)| b["event_id"].as_str().unwrap().to_string());
    let summary: Vec<(&str, &str)> = got.iter().map(|(p, b)| (p.as_str(), b["type"].as_str().unwrap())).collect();
    assert_eq!(
        summary,
        [
            ("/payments", "cohort.enrollment.created"),
            ("/errors", "error.occurred"),
            ("/payments", "payment.success"),
            ("/tickets", "ticket.created")
        ]
    );
    let payment = &got[2].1;
    assert_eq!((&payment["event_id"], &payment["payload"]["amount"]), (&json!("evt_pay_1"), &json!(4900)));
    let (status, _) = post(&r.url("/api/events"), "wrong", "{}", &[]).await;
    assert_eq!(status, 401);
    r.stop().await;
}
