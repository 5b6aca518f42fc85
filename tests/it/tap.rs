//! `router tap`: the binary follows a running router's admin API and
//! prints each request's verdict and each delivery's outcome as they
//! happen, filtered by route and type, never a credential; Ctrl-C ends it
//! with status 0.

use crate::util::{client, router_bin, TempRoutes, TestRouter};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TOKEN: &str = "tap-test-secret-7d41";

fn route(name: &str) -> String {
    format!(
        "route: {name}\npath: /{name}\nverify: {{ scheme: bearer, token: {TOKEN} }}\nevent: {{ type: $.type, id: $.id }}\n\
         events: [\"*\"]\nrules:\n  - on: \"*\"\n    to: [{{ sink: {name}-store, key: $.id }}]\n\
         sinks:\n  {name}-store: {{ type: store }}\n"
    )
}

/// A `router tap` child and its stdout lines as they come.
struct Tap {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Tap {
    fn start(r: &TestRouter, args: &[&str]) -> Self {
        let mut child = Command::new(router_bin())
            .arg("tap")
            .args(args)
            .args(["--json", "--admin", &r.admin.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It says so on stderr once the router streams to it.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.starts_with("Tapping"), "{first}");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Tap { child, lines, seen: Vec::new() }
    }

    /// Lines until one matches `want`, within 10 s.
    fn until(&mut self, want: impl Fn(&Value) -> bool) -> &Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else { break };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            self.seen.push(v);
            if want(self.seen.last().unwrap()) {
                return self.seen.last().unwrap();
            }
        }
        panic!("no such line; saw {:#?}", self.seen);
    }

    /// Ctrl-C: exits 0; returns every line it printed.
    fn interrupt(mut self) -> Vec<Value> {
        let int = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(int.success());
        assert!(self.child.wait().unwrap().success(), "Ctrl-C ends tap cleanly");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(serde_json::from_str(&line).unwrap());
        }
        self.seen
    }
}

fn is(v: &Value, kind: &str, verdict: &str) -> bool {
    v["kind"] == kind && v["verdict"] == verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_follows_requests_and_deliveries_filtered_and_redacted() {
    let routes = TempRoutes::new(&[("shop.yaml", &route("shop")), ("crm.yaml", &route("crm"))]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let (r, orders, all) = tokio::task::spawn_blocking(move || {
        let orders = Tap::start(&r, &["shop", "--type", "order.*"]);
        let all = Tap::start(&r, &[]);
        (r, orders, all)
    })
    .await
    .unwrap();
    let post = |path: &str, token: &str, body: &str| {
        let req = client().post(format!("http://{}{path}", r.addr)).bearer_auth(token);
        req.header("content-type", "application/json").body(body.to_string()).send()
    };
    assert_eq!(post("/shop", TOKEN, r#"{"type": "order.created", "id": "o1"}"#).await.unwrap().status(), 200);
    assert_eq!(post("/shop", TOKEN, r#"{"type": "customer.created", "id": "c1"}"#).await.unwrap().status(), 200);
    assert_eq!(post("/shop", "wrong-token", r#"{"type": "order.created", "id": "o2"}"#).await.unwrap().status(), 401);
    assert_eq!(post("/crm", TOKEN, r#"{"type": "order.created", "id": "x1"}"#).await.unwrap().status(), 200);

    let (orders, all) = tokio::task::spawn_blocking(move || {
        let (mut orders, mut all) = (orders, all);
        let accepted = orders.until(|v| is(v, "request", "accepted")).clone();
        assert_eq!((accepted["route"].as_str(), accepted["type"].as_str()), (Some("shop"), Some("order.created")));
        let delivered = orders.until(|v| is(v, "delivery", "delivered")).clone();
        assert_eq!(delivered["sink"], "shop-store");
        assert_eq!(delivered["id"], accepted["id"]);
        assert_eq!(delivered["attempts"], 1);
        let rejected = all.until(|v| is(v, "request", "rejected")).clone();
        assert_eq!((rejected["route"].as_str(), rejected["reason"].as_str()), (Some("shop"), Some("unauthorized")));
        all.until(|v| is(v, "delivery", "delivered") && v["route"] == "crm");
        (orders.interrupt(), all.interrupt())
    })
    .await
    .unwrap();
    // The filtered tap saw only shop's order.* lines: two of them.
    assert_eq!(orders.len(), 2, "{orders:#?}");
    assert!(orders.iter().all(|v| v["route"] == "shop" && v["type"] == "order.created"), "{orders:#?}");
    // The whole tail: 4 requests (one rejected) and 3 deliveries.
    assert_eq!(all.iter().filter(|v| v["kind"] == "request").count(), 4, "{all:#?}");
    assert_eq!(all.iter().filter(|v| v["kind"] == "delivery").count(), 3, "{all:#?}");
    let printed = serde_json::to_string(&all).unwrap();
    assert!(!printed.contains(TOKEN) && !printed.contains("wrong-token"), "no credential in the tail");
    r.stop().await;
}

/// A bad `--type` pattern is the admin API's 400, said by the CLI (exit 2: it could not run).
#[tokio::test]
async fn tap_refuses_a_bad_type_pattern() {
    let routes = TempRoutes::new(&[("shop.yaml", &route("shop"))]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let admin = r.admin.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(router_bin()).args(["tap", "--type", "order created", "--admin", &admin]).output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot appear in an event pattern") && stderr.contains("400"), "{stderr}");
    r.stop().await;
}
