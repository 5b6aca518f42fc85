//! The admin API over real HTTP: the token, stats that match what was
//! sent, event filters and the cursor, retry / replay / delete, test
//! events, Prometheus metrics, retention, and secrets that never show up
//! in an answer or a log line.

use crate::util::{client, post, repo, router_bin, settled, test_limits, Receiver, Reply, TempRoutes, TestRouter};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use webhook_router::retention::Retention;
use webhook_router::storage::DeliveryStatus;
use webhook_router::verify::{BearerToken, Secret};

const ADMIN_TOKEN: &str = "admin-token-0c9d";
const ROUTE_SECRET: &str = "route-secret-4b7e";
const SINK_KEY: &str = "sink-key-5d2a";
const SINK_PATH: &str = "secret-path-93c1";

/// Every event goes to a store; orders also go to an HTTP receiver with a
/// credential header and a secret in its URL path (as Make hooks have).
const SHOP: &str = r#"
route: shop
path: /hooks/shop
verify: { scheme: bearer, token: "${ROUTE_SECRET}" }
event: { type: $.type, id: $.id }
events: ["order.*", "customer.*"]
examples:
  order.paid: { type: order.paid, id: x, total: 12 }
rules:
  - name: all
    on: "*"
    to: [{ sink: ledger, key: $.id }]
  - name: notify
    on: order.*
    map: { id: $.id, total: $.total }
    to: [{ sink: hook }]
sinks:
  ledger: { type: store }
  hook:
    type: http
    url: ${HOOK_URL}
    headers: { X-Api-Key: "${SINK_KEY}" }
    retry: { attempts: 1 }
"#;

fn shop_env(hook: &Receiver) -> HashMap<String, String> {
    HashMap::from([
        ("ROUTE_SECRET".to_string(), ROUTE_SECRET.to_string()),
        ("SINK_KEY".to_string(), SINK_KEY.to_string()),
        ("HOOK_URL".to_string(), hook.url(&format!("/{SINK_PATH}"))),
    ])
}

async fn start(routes: &TempRoutes, data: &tempfile::TempDir, hook: &Receiver, retention: Retention) -> TestRouter {
    TestRouter::start_configured(routes.path(), data.path(), shop_env(hook), test_limits(), |s| {
        s.admin_token = Some(BearerToken::new(None, vec![Secret::new(ADMIN_TOKEN.to_string())]));
        s.retention = retention;
    })
    .await
}

/// One admin call with the token; returns status and JSON.
async fn admin(r: &TestRouter, method: &str, path: &str) -> (u16, Value) {
    let req = client()
        .request(method.parse().unwrap(), r.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{}");
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(r: &TestRouter, id: &str, kind: &str) -> (u16, Value) {
    let body = json!({"id": id, "type": kind, "total": 12}).to_string();
    post(&r.url("/hooks/shop"), ROUTE_SECRET, &body, &[]).await
}

fn id_of(answer: &Value) -> u64 {
    answer["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn stats_filters_retry_replay_and_delete() {
    let hook = Receiver::start(vec![Reply::Status(400)]).await;
    let routes = TempRoutes::new(&[("shop.yaml", SHOP)]);
    let data = tempfile::tempdir().unwrap();
    let r = start(&routes, &data, &hook, Retention::default()).await;

    // The token is required, compared exactly; the page itself is not data.
    for token in [None, Some("wrong"), Some("admin-token-0c9")] {
        let mut req = client().get(r.admin_url("/stats"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "token {token:?}");
    }
    let page = client().get(r.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Admin token"));

    // 3 accepted (the first order fails at the hook, the second is delivered),
    // 1 duplicate, 1 filtered, 2 unauthorized, 1 invalid.
    let (_, a) = send(&r, "evt_1", "order.paid").await;
    let first = id_of(&a);
    settled(&r, first).await;
    let (_, a) = send(&r, "evt_2", "order.refunded").await;
    let second = id_of(&a);
    let (_, a) = send(&r, "evt_3", "customer.created").await;
    let third = id_of(&a);
    assert_eq!(send(&r, "evt_1", "order.paid").await.1["duplicate"], true);
    assert_eq!(send(&r, "evt_4", "invoice.paid").await.1["filtered"], true);
    for _ in 0..2 {
        let (s, _) = post(&r.url("/hooks/shop"), "nope", "{}", &[]).await;
        assert_eq!(s, 401);
    }
    assert_eq!(post(&r.url("/hooks/shop"), ROUTE_SECRET, "not json", &[]).await.0, 400);
    settled(&r, second).await;
    settled(&r, third).await;

    let (s, stats) = admin(&r, "GET", "/stats").await;
    assert_eq!(s, 200);
    let shop = &stats["stats"]["routes"]["shop"];
    let counts = ["received", "today", "accepted", "duplicates", "filtered", "rejected", "delivered", "failed"]
        .map(|k| shop[k].as_u64().unwrap());
    assert_eq!(counts, [8, 8, 3, 1, 1, 3, 4, 1], "{shop:#}");
    assert_eq!(shop["rejected_by_reason"]["unauthorized"], 2);
    assert_eq!(shop["rejected_by_reason"]["invalid"], 1);
    assert_eq!(shop["success_rate"], 0.8);
    assert_eq!(shop["ingest_ms"]["count"], 8);
    assert!(shop["ingest_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(shop["delivery_ms"]["count"], 4);
    assert_eq!(shop["per_minute"].as_array().unwrap().len(), 60);
    assert_eq!(shop["per_minute"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 8);
    let sinks = &stats["stats"]["sinks"];
    assert_eq!((sinks["ledger"]["delivered"].as_u64(), sinks["hook"]["failed"].as_u64()), (Some(3), Some(1)));
    assert!(stats["store"]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["store"]["retention"], "30days");

    // Filters: type pattern, status, time range, and a cursor through pages.
    let ids = |v: &Value| v["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&admin(&r, "GET", "/events?type=order.*").await.1), vec![second, first]);
    // The routes' own patterns: a wildcard anywhere, not only at the end.
    assert_eq!(ids(&admin(&r, "GET", "/events?type=*.paid").await.1), vec![first]);
    assert_eq!(ids(&admin(&r, "GET", "/events?type=*o*.*d").await.1), vec![third, second, first]);
    let (s, bad) = admin(&r, "GET", "/events?type=order%20paid").await;
    assert_eq!(s, 400, "{bad}");
    assert_eq!(ids(&admin(&r, "GET", "/events?route=shop&status=failed").await.1), vec![first]);
    assert_eq!(ids(&admin(&r, "GET", "/events?since=2999-01-01T00:00:00Z").await.1), Vec::<u64>::new());
    assert_eq!(ids(&admin(&r, "GET", "/events?until=2000-01-01T00:00:00Z").await.1), Vec::<u64>::new());
    let (s, bad) = admin(&r, "GET", "/events?since=yesterday").await;
    assert_eq!(s, 400, "{bad}");
    let page1 = admin(&r, "GET", "/events?limit=2").await.1;
    assert_eq!(ids(&page1), vec![third, second]);
    let cursor = page1["next_cursor"].as_u64().unwrap();
    let page2 = admin(&r, "GET", &format!("/events?limit=2&before={cursor}")).await.1;
    assert_eq!(ids(&page2), vec![first]);
    assert_eq!(page2["next_cursor"], Value::Null);

    // One event in full: payload, redacted credential, every attempt.
    let (_, detail) = admin(&r, "GET", &format!("/events/{first}")).await;
    assert_eq!(detail["payload"]["id"], "evt_1");
    let auth = detail["headers"].as_array().unwrap().iter().find(|h| h[0] == "authorization").unwrap();
    assert_eq!(auth[1], "[redacted]");
    let hook_delivery = detail["delivery_records"].as_array().unwrap().iter().find(|d| d["sink"] == "hook").unwrap();
    assert_eq!(hook_delivery["status"], "failed");
    assert_eq!(hook_delivery["last_error"], "receiver answered 400 Bad Request");

    // Retry: the receiver now answers 200.
    // A store that fails says so, but not how: that is for the log.
    r.rt.data.log.set_fail_writes(true);
    let (s, refused) = admin(&r, "POST", &format!("/events/{first}/retry")).await;
    r.rt.data.log.set_fail_writes(false);
    assert_eq!(s, 503, "{refused}");
    assert_eq!(refused["error"], "the store is unavailable; the router's log says why");
    assert_eq!(admin(&r, "POST", &format!("/events/{first}/retry")).await.1["requeued"], 1);
    let ds = settled(&r, first).await;
    assert!(ds.iter().all(|d| d.status == DeliveryStatus::Delivered), "{ds:?}");
    assert_eq!(hook.count(), 3);
    assert_eq!(admin(&r, "POST", "/events/retry?route=shop").await.1["requeued"], 0);

    // Replay: nothing new unless forced; forced, every target again.
    assert_eq!(admin(&r, "POST", "/events/replay?route=shop&since=0").await.1["added"], 0);
    assert_eq!(
        admin(&r, "POST", "/events/replay?route=shop&since=2000-01-01T00:00:00Z&force=true").await.1["added"],
        5
    );
    // The store already holds each event, so its replays are skipped; the hook gets them again.
    for id in [first, second, third] {
        let ds = settled(&r, id).await;
        assert!(ds.iter().all(|d| matches!(d.status, DeliveryStatus::Delivered | DeliveryStatus::Skipped)), "{ds:?}");
    }
    assert_eq!(hook.count(), 5);
    assert_eq!(admin(&r, "POST", "/events/replay?route=nope&since=0").await.0, 404);

    // A test event through the route's own scheme and pipeline.
    let (s, test) = admin(&r, "POST", "/routes/shop/test").await;
    assert_eq!(s, 200, "{test}");
    assert_eq!(
        (test["request"]["event_type"].as_str(), test["response"]["status"].as_u64()),
        (Some("order.paid"), Some(200))
    );
    let tested = test["response"]["body"]["id"].as_str().unwrap().parse::<u64>().unwrap();
    settled(&r, tested).await;
    assert_eq!(hook.count(), 6);

    // Routes: scheme, events, rules and sinks, without their secrets.
    let (_, routes_json) = admin(&r, "GET", "/routes").await;
    let route = &routes_json["routes"][0];
    assert_eq!((route["verify"].as_str(), route["events"].clone()), (Some("bearer"), json!(["order.*", "customer.*"])));
    let hook_sink = route["sinks"].as_array().unwrap().iter().find(|s| s["name"] == "hook").unwrap();
    assert_eq!(hook_sink["headers"], json!(["X-Api-Key"]));
    assert!(hook_sink["url"].as_str().unwrap().ends_with("/…"), "{hook_sink}");

    // Prometheus and the probes.
    let metrics = client().get(r.admin_url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    for line in [
        r#"webhook_router_requests_total{route="shop",outcome="accepted"} 4"#,
        r#"webhook_router_requests_total{route="shop",outcome="rejected",reason="unauthorized"} 2"#,
        r#"webhook_router_deliveries_total{route="shop",sink="hook",outcome="failed"} 1"#,
        "webhook_router_queue_depth 0",
        "webhook_router_reload_failures_total 0",
        "webhook_router_config_last_reload_successful 1",
        concat!(r#"webhook_router_build_info{version=""#, env!("CARGO_PKG_VERSION"), r#""} 1"#),
        // HELP goes with the series' own type.
        "# TYPE webhook_router_queue_depth gauge",
        "# TYPE webhook_router_requests_total counter",
        "# TYPE webhook_router_ingest_duration_seconds histogram",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_cpu_seconds_total counter",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    let loaded: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("webhook_router_config_last_reload_success_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((loaded - crate::util::now() as f64).abs() < 600.0, "{loaded}");
    for series in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(series.starts_with("webhook_router_") || series.starts_with("process_"), "unprefixed: {series}");
    }
    assert!(!text.contains("rejected_total"), "rejections are a label of requests_total");
    assert!(
        text.contains("webhook_router_log_size_bytes")
            && text.contains("webhook_router_ingest_duration_seconds_bucket")
    );
    assert_eq!(admin(&r, "GET", "/readyz").await.1["status"], "ready");

    // Delete gives up on an event for good.
    assert_eq!(admin(&r, "DELETE", &format!("/events/{third}")).await.0, 200);
    assert_eq!(admin(&r, "GET", &format!("/events/{third}")).await.0, 404);
    r.stop().await;
}

#[tokio::test]
async fn retention_removes_settled_events_and_keeps_failed_ones() {
    let hook = Receiver::start(vec![Reply::Status(400)]).await;
    let routes = TempRoutes::new(&[("shop.yaml", SHOP)]);
    let data = tempfile::tempdir().unwrap();
    let policy = Retention { keep: Some(Duration::from_millis(600)), every: Duration::from_millis(100), batch: 2 };
    let r = start(&routes, &data, &hook, policy).await;
    // Oldest first: a failed order, a delivered customer event; then the newest.
    let failed = id_of(&send(&r, "evt_1", "order.paid").await.1);
    settled(&r, failed).await;
    let delivered = id_of(&send(&r, "evt_2", "customer.created").await.1);
    settled(&r, delivered).await;
    let newest = id_of(&send(&r, "evt_3", "customer.updated").await.1);
    settled(&r, newest).await;

    let log = &r.rt.data.log;
    r.eventually("the delivered event to be pruned", || log.event(delivered).is_err().then_some(())).await;
    assert!(log.detail(delivered).is_err() && log.deliveries(delivered).is_err());
    assert!(log.event(failed).is_ok(), "a failed event is kept until retried");
    assert!(log.event(newest).is_ok(), "the newest event is kept: ids continue from it");
    // Its dedup entry went with it: the provider may send the id again.
    assert_eq!(send(&r, "evt_2", "customer.created").await.1.get("duplicate"), None);

    // Retried and delivered, the failed event is settled and goes too.
    assert_eq!(admin(&r, "POST", &format!("/events/{failed}/retry")).await.1["requeued"], 1);
    r.eventually("the retried event to be pruned", || log.event(failed).is_err().then_some(())).await;
    assert!(admin(&r, "GET", "/stats").await.1["stats"]["pruned"].as_u64().unwrap() >= 2);
    r.stop().await;
}

/// A secret configured on a route (its token, a sink's credential header,
/// a sink URL's path) and the admin token never appear in any admin answer
/// or any log line, even at debug level and with a failing delivery.
#[test]
fn secrets_never_reach_an_answer_or_a_log_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hook = rt.block_on(Receiver::start(vec![Reply::Status(400)]));
    let routes = TempRoutes::new(&[("shop.yaml", SHOP)]);
    let data = tempfile::tempdir().unwrap();
    let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (web, adm) = (port(), port());
    let mut child = std::process::Command::new(router_bin())
        .current_dir(repo())
        .args(["serve", "--log-format", "json", "--listen", &format!("127.0.0.1:{web}")])
        .args(["--admin-listen", &format!("127.0.0.1:{adm}"), "--routes"])
        .arg(routes.path())
        .arg("--data")
        .arg(data.path())
        .envs(shop_env(&hook))
        .env("ROUTER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let answers = rt.block_on(async {
        let c = client();
        let admin_url = format!("http://127.0.0.1:{adm}");
        for _ in 0..300 {
            if c.get(format!("{admin_url}/healthz")).bearer_auth(ADMIN_TOKEN).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let body = json!({"id": "evt_1", "type": "order.paid", "total": 3}).to_string();
        let (s, _) = post(&format!("http://127.0.0.1:{web}/hooks/shop"), ROUTE_SECRET, &body, &[]).await;
        assert_eq!(s, 200);
        post(&format!("http://127.0.0.1:{web}/hooks/shop"), "wrong-token", &body, &[]).await;
        // Wait for the delivery to fail, so its error is logged too.
        for _ in 0..300 {
            let r = c.get(format!("{admin_url}/events?status=failed")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
            if r.json::<Value>().await.unwrap()["events"].as_array().is_some_and(|a| !a.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answers = String::new();
        for (method, path) in [
            ("POST", "/routes/shop/test"),
            ("GET", "/routes"),
            ("GET", "/stats"),
            ("GET", "/metrics"),
            ("GET", "/reload"),
            ("GET", "/readyz"),
            ("GET", "/events"),
            ("GET", "/events/1"),
            ("GET", "/events/2"),
            ("GET", "/store/ledger"),
            ("GET", "/"),
        ] {
            let resp = c
                .request(method.parse().unwrap(), format!("{admin_url}{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{method} {path}: {}", resp.status());
            answers.push_str(&resp.text().await.unwrap());
        }
        answers
    });
    assert!(answers.contains("[redacted]") && answers.contains("receiver answered 400"), "{answers}");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    child.wait().unwrap();
    assert!(log.contains("Delivery failed for good"), "the failure is logged:\n{log}");
    for secret in [ROUTE_SECRET, SINK_KEY, SINK_PATH, ADMIN_TOKEN] {
        assert!(!answers.contains(secret), "`{secret}` in an admin answer:\n{answers}");
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}
