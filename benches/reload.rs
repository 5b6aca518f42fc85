//! Hot reload figures, against the real server on loopback:
//! 1. time from a route file appearing to its path answering (20 times);
//! 2. a client loop at 64 connections posting to a route that stays while
//!    the directory is reloaded 50 times: every error is counted (must be 0).
//!
//! Run: `cargo bench --bench reload`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webhook_router::config::env::EnvSource;
use webhook_router::runtime::{DataDir, Runtime};
use webhook_router::{config, reload, server};

const CONNECTIONS: usize = 64;
const RELOADS: u64 = 50;
const NEW_ROUTES: usize = 20;

fn route(name: &str, path: &str, events: &str) -> String {
    format!(
        "route: {name}\npath: {path}\nverify: {{ scheme: bearer, token: t }}\nevent: {{ type: $.type }}\n\
         events: {events}\nrules:\n  - on: \"*\"\n    to: [{{ sink: {name}-store, key: $.id }}]\n\
         sinks:\n  {name}-store: {{ type: store }}\n"
    )
}

/// Writes through a temp file and a rename, as editors do.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::main]
async fn main() {
    webhook_router::tls::install_provider();
    let routes = std::env::temp_dir().join(format!("router-bench-reload-{}", std::process::id()));
    let data = routes.with_extension("data");
    let _ = std::fs::remove_dir_all(&routes);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(routes.join("a.yaml"), route("a", "/a", "[\"*\"]")).unwrap();

    let env: HashMap<String, String> = HashMap::new();
    let loaded = config::load(std::slice::from_ref(&routes), &env).expect("routes load");
    let rt = Runtime::new(loaded.config, DataDir::open(&data).unwrap());
    let env: Arc<dyn EnvSource + Send + Sync> = Arc::new(env);
    let _watch = reload::start(rt.clone(), vec![routes.clone()], env, true, false, false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, None, rt.clone(), server::Limits::default(), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();

    // 1. A new file to its path answering.
    let mut times = Vec::new();
    for i in 0..NEW_ROUTES {
        let url = format!("{base}/new{i}");
        let started = Instant::now();
        replace(&routes, &format!("new{i}.yaml"), &route(&format!("new{i}"), &format!("/new{i}"), "[\"*\"]"));
        loop {
            let ok = client.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false);
            if ok {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "route {i} never answered");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("file change -> new route answering, {NEW_ROUTES} changes (debounce 150 ms):");
    println!("  median {:.0} ms, min {:.0} ms, max {:.0} ms", times[times.len() / 2], times[0], times[times.len() - 1]);

    // 2. 64 connections posting throughout 50 reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for c in 0..CONNECTIONS {
        let (client, url, stop, sent, errors) =
            (client.clone(), format!("{base}/a"), stop.clone(), sent.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!(r#"{{"type": "t", "id": "{c}-{n}"}}"#);
                let ok = client
                    .post(&url)
                    .bearer_auth("t")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let before = rt.reload_status.lock().unwrap().reloads;
    for i in 0..RELOADS {
        // Alternate edits of the live route's file and of another file.
        let events = if i % 2 == 0 { "[\"t\", \"u\"]" } else { "[\"*\"]" };
        replace(&routes, "a.yaml", &route("a", "/a", events));
        let want = before + i + 1;
        while rt.reload_status.lock().unwrap().reloads < want {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let status = rt.reload_status.lock().unwrap().clone();
    println!("client loop at {CONNECTIONS} connections across {RELOADS} reloads ({:.1} s):", elapsed.as_secs_f64());
    println!(
        "  requests {}, errors {}, reloads done {}, failed reloads {}",
        sent.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        status.reloads - before,
        status.failures
    );
    let _ = stop_server.send(());
    let _ = server.await;
    drop(rt);
    let _ = std::fs::remove_dir_all(&routes);
    let _ = std::fs::remove_dir_all(&data);
}
