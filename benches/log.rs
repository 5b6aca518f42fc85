//! The segment log at size: fills a data directory with N events (default
//! 1,000,000; 1 KB bodies, dedup keys, one delivery each, all delivered),
//! then opens it in a fresh process and prints how long that took and the
//! peak RSS. `cargo bench --bench log -- [N] [DIR]`; keep DIR to run the
//! router on it afterwards (scripts/bench-big-log.sh).

use std::time::Instant;
use webhook_router::runtime::DataDir;
use webhook_router::storage::{NewDelivery, NewEvent, Parsed};

fn event(i: u64) -> NewEvent {
    let pad = "x".repeat(850);
    let body = serde_json::json!({"id": format!("evt_{i}"), "type": "customer.updated", "data": {"object": {"id": format!("cus_{}", i % 5000), "pad": pad}}});
    NewEvent {
        route: "bench-stripe".into(),
        event_type: "customer.updated".into(),
        event_id: Some(format!("evt_{i}")),
        dedup: true,
        event_time: None,
        params: vec![],
        query: vec![],
        headers: vec![("content-type".into(), "application/json".into()), ("user-agent".into(), "Stripe/1.0".into())],
        body: body.to_string().into_bytes().into(),
        payload: Parsed::Whole(body),
    }
}

fn vm(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if std::env::args().any(|a| a == "--open-only") {
        let t = Instant::now();
        let dir = DataDir::open(std::path::Path::new(&args[0])).expect("open");
        let opened = t.elapsed();
        println!(
            "open: {:.3} s, queue depth {}, peak RSS {}",
            opened.as_secs_f64(),
            dir.log.queue_depth(),
            vm("VmHWM")
        );
        return;
    }
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let keep = args.get(1).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let path = keep.clone().unwrap_or_else(|| tmp.path().join("data"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let t = Instant::now();
    {
        let dir = DataDir::open(&path).expect("open");
        let log = dir.log.clone();
        rt.block_on(async move {
            // In chunks, each settled before the next, as a running router
            // delivers while it ingests.
            const CHUNK: u64 = 10_000;
            for start in (0..n).step_by(CHUNK as usize) {
                let end = (start + CHUNK).min(n);
                let mut tasks = Vec::new();
                for w in 0..64u64 {
                    let log = log.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut i = start + w;
                        while i < end {
                            let d = NewDelivery {
                                rule: 0,
                                target: 0,
                                rule_name: "r#0".into(),
                                sink: "customers".into(),
                                order_key: None,
                            };
                            log.append(event(i), vec![d]).await.unwrap();
                            i += 64;
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                loop {
                    let claimed = log.claim(i64::MAX, 4096, &Default::default()).unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                    let states = claimed
                        .into_iter()
                        .map(|c| {
                            let mut d = c.delivery;
                            d.status = webhook_router::storage::DeliveryStatus::Delivered;
                            d.next_attempt_ms = None;
                            d
                        })
                        .collect();
                    log.record(states).await.unwrap();
                }
            }
            log.flush_blocking().unwrap();
        });
    }
    let filled = t.elapsed();
    println!(
        "filled {n} events in {:.1} s ({:.0} events/s) at {}",
        filled.as_secs_f64(),
        n as f64 / filled.as_secs_f64(),
        path.display()
    );
    let out =
        std::process::Command::new(std::env::current_exe().unwrap()).arg("--open-only").arg(&path).output().unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}
