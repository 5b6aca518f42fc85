//! SSE fan-out: 1,000 open streams on one WhatsApp session (seed 003's
//! status view, the real server on loopback); a `qr` webhook is posted and
//! the time from its 2xx to each stream receiving the new state is taken,
//! over 20 rounds. Prints p50/p99 of all stream latencies and of the last
//! stream per round. Run: `cargo bench --bench sse`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webhook_router::config::env::EnvSource;
use webhook_router::runtime::{DataDir, Runtime};
use webhook_router::{config, reload, server};

const STREAMS: usize = 1000;
const ROUNDS: usize = 20;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    webhook_router::tls::install_provider();
    let routes = std::path::PathBuf::from("examples/seed-003-whatsapp/routes.d");
    let data = std::env::temp_dir().join(format!("router-bench-sse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let env = HashMap::from([("WHATSAPP_WEBHOOK_TOKEN".to_string(), "bench".to_string())]);
    let loaded = config::load(std::slice::from_ref(&routes), &env).expect("routes load");
    let rt = Runtime::new(loaded.config, DataDir::open(&data).unwrap());
    let env: Arc<dyn EnvSource + Send + Sync> = Arc::new(env);
    let _watch = reload::start(rt.clone(), vec![routes], env, false, false, false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = server::Limits { max_connections: STREAMS + 64, ..server::Limits::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, None, rt.clone(), limits, async {
        let _ = stopped.await;
    }));

    // Each stream reports (round's qr text seen, when) for every event it gets.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for _ in 0..STREAMS {
        let url = format!("{base}/api/whatsapp/session/status/bench-1");
        let (seen_tx, ready_tx) = (seen_tx.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut resp = client.get(&url).header("accept", "text/event-stream").send().await.unwrap();
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if block.contains("event: missing") {
                        let _ = ready_tx.send(());
                    } else if let Some(at) = block.find("round-") {
                        let n: usize =
                            block[at + 6..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
                        let _ = seen_tx.send((n, Instant::now()));
                    }
                }
            }
        });
    }
    for _ in 0..STREAMS {
        ready_rx.recv().await.unwrap();
    }
    println!("{STREAMS} streams open on one session");

    let client = reqwest::Client::new();
    let (mut all, mut last) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let body = format!(r#"{{"event": "qr", "data": {{"qr": "1@round-{round},AbCdEf=="}}}}"#);
        let resp = client
            .post(format!("{base}/api/whatsapp/webhook/bench-1"))
            .bearer_auth("bench")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let acked = Instant::now();
        let mut got = 0;
        let mut slowest = 0.0;
        while got < STREAMS {
            let (n, at) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv()).await.unwrap().unwrap();
            if n != round {
                continue;
            }
            let ms = at.saturating_duration_since(acked).as_secs_f64() * 1000.0;
            all.push(ms);
            slowest = f64::max(slowest, ms);
            got += 1;
        }
        last.push(slowest);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    println!("webhook 2xx -> stream has the new state, {ROUNDS} rounds x {STREAMS} streams:");
    println!("  every stream:     p50 {:.1} ms, p99 {:.1} ms", pct(&all, 0.5), pct(&all, 0.99));
    println!("  last stream/round: p50 {:.1} ms, p99 {:.1} ms", pct(&last, 0.5), pct(&last, 0.99));
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = std::fs::remove_dir_all(&data);
}
