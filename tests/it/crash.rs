//! kill -9 under load: every event that got a 2xx must be in the log after
//! a restart, and its delivery must complete.

use crate::util::{client, router_bin, TempRoutes, TestRouter};
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUTE: &str = r#"
route: crash
path: /hooks/crash
verify: { scheme: bearer, token: crash-token }
event: { type: $.type, id: $.id }
rules:
  - on: "*"
    to: [{ sink: events, key: $.id }]
sinks:
  events: { type: store }
"#;

/// Writers hammering the router while it is killed.
const WRITERS: usize = 16;
const ROUNDS: usize = 10;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_acknowledged_event() {
    let routes = TempRoutes::new(&[("crash.yaml", ROUTE)]);
    let data = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();

    for round in 0..ROUNDS {
        let port = free_port();
        let mut child = std::process::Command::new(router_bin())
            .args(["serve", "--admin-listen", "off", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--routes")
            .arg(routes.path())
            .arg("--data")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/hooks/crash");
        let mut ready = false;
        for _ in 0..500 {
            if client().get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ready, "router did not start (round {round})");

        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (url, stop, acked) = (url.clone(), stop.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let http = client();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("r{round}-w{w}-{n}");
                    n += 1;
                    let body = serde_json::json!({"id": id, "type": "load.test", "n": n}).to_string();
                    if let Ok(resp) = http.post(&url).bearer_auth("crash-token").body(body).send().await {
                        if resp.status() == 200 {
                            acked.lock().unwrap().insert(id);
                        }
                    }
                }
            }));
        }
        // Kill at a different point of the load each round.
        tokio::time::sleep(Duration::from_millis(250 + 150 * (round % 5) as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "too little load to mean anything: {} acked", acked.len());
    let r = TestRouter::start(routes.path(), data.path()).await;
    let logged: HashSet<String> =
        r.rt.data
            .log
            .list(&webhook_router::storage::ListQuery { limit: usize::MAX, ..Default::default() })
            .unwrap()
            .into_iter()
            .filter_map(|e| e.event_id)
            .collect();
    let lost: Vec<_> = acked.difference(&logged).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    // Deliveries pending at each kill complete after the restart.
    let records = r.rt.data.records.clone();
    let missing = r
        .eventually("every acknowledged event delivered", || {
            let stored: HashSet<String> =
                records.list("events", &[], None, usize::MAX).unwrap().into_iter().map(|(k, _)| k).collect();
            let missing = acked.difference(&stored).count();
            (missing == 0).then_some(missing)
        })
        .await;
    assert_eq!(missing, 0);
    eprintln!("crash test: {} acknowledged events over {ROUNDS} kill -9 rounds, 0 lost", acked.len());
    r.stop().await;
}
