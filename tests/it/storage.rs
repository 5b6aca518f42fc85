//! The segment log as a storage engine: torn and garbage tails, reopened.

use webhook_router::storage::embedded::{SegmentLog, HOT_EVENTS};
use webhook_router::storage::{EventLog, ListQuery, NewDelivery, NewEvent, Parsed};

fn event(i: usize) -> NewEvent {
    let body = serde_json::json!({"id": format!("evt_{i}"), "type": "order.paid", "pad": "x".repeat(i * 37 % 900)});
    NewEvent {
        route: "shop".into(),
        event_type: "order.paid".into(),
        event_id: Some(format!("evt_{i}")),
        dedup: true,
        event_time: None,
        params: vec![],
        query: vec![],
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes().into(),
        payload: Parsed::Whole(body),
    }
}

fn delivery() -> NewDelivery {
    NewDelivery { rule: 0, target: 0, rule_name: "orders".into(), sink: "orders".into(), order_key: None }
}

fn segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    segs.pop().unwrap()
}

fn ids(log: &SegmentLog) -> Vec<u64> {
    let mut ids: Vec<u64> =
        log.list(&ListQuery { limit: usize::MAX, ..Default::default() }).unwrap().into_iter().map(|e| e.id).collect();
    ids.reverse();
    ids
}

/// Appends `n` events one at a time; returns the segment length after each
/// (event i is wholly on disk iff the file is at least that long).
async fn fill(dir: &std::path::Path, n: usize) -> Vec<u64> {
    let (log, _) = SegmentLog::open(dir, HOT_EVENTS).unwrap();
    let mut ends = Vec::new();
    for i in 0..n {
        log.append(event(i), vec![delivery()]).await.unwrap();
        ends.push(std::fs::metadata(segment(dir)).unwrap().len());
    }
    ends
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_log_cut_anywhere_opens_with_every_whole_event() {
    let top = tempfile::tempdir().unwrap();
    let clean = top.path().join("clean");
    let ends = fill(&clean, 40).await;
    let total = *ends.last().unwrap();
    // Cut points: a fixed pseudo-random spread, plus the edges.
    let mut cuts: Vec<u64> = (1..=30u64).map(|k| (k * 2_654_435_761) % total).collect();
    cuts.extend([0, 1, 7, 8, ends[0] - 1, ends[0], ends[0] + 1, total - 1]);
    for (n, cut) in cuts.into_iter().enumerate() {
        let dir = top.path().join(format!("cut{n}"));
        copy_dir(&clean, &dir);
        let seg = segment(&dir);
        std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
        let whole = ends.iter().take_while(|end| **end <= cut).count();
        let (log, opened) = SegmentLog::open(&dir, HOT_EVENTS).unwrap();
        assert_eq!(ids(&log), (1..=whole as u64).collect::<Vec<_>>(), "cut at {cut}");
        let boundary = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(opened.dropped, cut - boundary, "cut at {cut}: what was dropped is reported");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), boundary, "the torn tail is cut off the file");
        // Every whole event is readable, body and all, and still due.
        for id in 1..=whole as u64 {
            assert_eq!(log.detail(id).unwrap().payload["id"], format!("evt_{}", id - 1));
        }
        assert_eq!(log.queue_depth(), whole);
        // The log goes on from there: new ids follow, and survive a reopen.
        let next = log.append(event(1000), vec![]).await.unwrap();
        assert_eq!(next, webhook_router::storage::Appended::New(whole as u64 + 1));
        drop(log);
        let (log, again) = SegmentLog::open(&dir, HOT_EVENTS).unwrap();
        assert_eq!(again.dropped, 0);
        assert_eq!(ids(&log).len(), whole + 1);
    }
}

#[tokio::test]
async fn a_garbage_tail_is_dropped_and_reported() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("log");
    fill(&dir, 10).await;
    let seg = segment(&dir);
    let before = std::fs::metadata(&seg).unwrap().len();
    // Garbage that looks like a frame header, then noise.
    let mut garbage = vec![0x10, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    garbage.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(&garbage).unwrap();
    let (log, opened) = SegmentLog::open(&dir, HOT_EVENTS).unwrap();
    assert_eq!(opened.dropped, garbage.len() as u64);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), before);
    assert_eq!(ids(&log), (1..=10).collect::<Vec<_>>());
    // Dedup keys came back with the events.
    assert_eq!(log.append(event(3), vec![]).await.unwrap(), webhook_router::storage::Appended::Duplicate(4));
}

#[test]
fn the_router_says_what_it_cut() {
    let top = tempfile::tempdir().unwrap();
    let data = top.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let dir = webhook_router::runtime::DataDir::open(&data).unwrap();
        rt.block_on(dir.log.append(event(1), vec![])).unwrap();
    }
    let seg = segment(&data.join("log"));
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(&[7u8; 33]).unwrap();
    let out = std::process::Command::new(crate::util::router_bin())
        .args(["events", "list", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("torn tail") && stderr.contains("33"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("evt_1"));
}

#[tokio::test]
async fn a_data_dir_of_the_sled_release_is_migrated_at_start() {
    // Made by `router serve` of the release before the segment log (7e8bc04)
    // with tests/fixtures/sled-data-0.1.routes.yaml: three orders stored, a
    // refund whose HTTP sink failed, an unrouted event.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let data = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("sled-data-0.1"), data.path());
    let routes = crate::util::TempRoutes::new(&[(
        "shop.yaml",
        &std::fs::read_to_string(fixtures.join("sled-data-0.1.routes.yaml")).unwrap(),
    )]);
    let r = crate::util::TestRouter::start(routes.path(), data.path()).await;
    assert!(data.path().join("log").is_dir(), "the segment log replaced the old tree");
    let all = r.rt.data.log.list(&ListQuery { limit: 10, ..Default::default() }).unwrap();
    let seen: Vec<(u64, &str, String)> =
        all.iter().map(|e| (e.id, e.event_type.as_str(), format!("{:?}", e.status))).collect();
    assert_eq!(
        seen,
        vec![
            (5, "unrouted.thing", "Unrouted".to_string()),
            (4, "refund.created", "Failed".to_string()),
            (3, "order.paid", "Delivered".to_string()),
            (2, "order.paid", "Delivered".to_string()),
            (1, "order.paid", "Delivered".to_string()),
        ]
    );
    assert_eq!(r.rt.data.log.detail(2).unwrap().payload["n"], 2, "bodies came along");
    assert_eq!(r.rt.data.records.get("orders", "evt_3").unwrap().unwrap()["n"], 3, "records came along");
    assert_eq!(r.rt.data.records.list("orders", &[], None, 10).unwrap().len(), 3);
    for sled_file in ["db", "conf", "blobs"] {
        assert!(!data.path().join(sled_file).exists(), "sled's {sled_file} is removed once copied");
    }
    // Dedup keys came along: the provider's retry of an old event is a duplicate...
    let url = r.url("/hooks/shop");
    let shop = |body: &'static str| crate::util::post(&url, "fixture-token", body, &[]);
    let (_, answer) = shop(r#"{"id":"evt_2","type":"order.paid","n":2}"#).await;
    assert_eq!(answer["duplicate"], true, "{answer}");
    // ...new ids follow the old ones, and the failed delivery can be retried.
    let (_, answer) = shop(r#"{"id":"evt_9","type":"order.paid","n":9}"#).await;
    assert_eq!(answer["id"], "6", "{answer}");
    assert_eq!(r.rt.data.log.retry_failed(Some(4), None).unwrap().len(), 1);
    r.stop().await;
    // Opening again finds nothing left to migrate and everything in place.
    let dir = webhook_router::runtime::DataDir::open(data.path()).unwrap();
    assert_eq!(dir.log.list(&ListQuery { limit: 10, ..Default::default() }).unwrap().len(), 6);
}

#[test]
fn a_data_directory_is_held_by_one_process_at_a_time() {
    use webhook_router::runtime::{DataDir, OpenError};
    let data = tempfile::tempdir().unwrap();
    let first = DataDir::open(data.path()).unwrap();
    assert!(matches!(DataDir::open(data.path()), Err(OpenError::Locked(_))));
    drop(first);
    DataDir::open(data.path()).expect("released when the first one closed");
}

#[tokio::test]
async fn store_deliveries_due_at_shutdown_are_written_before_the_dispatcher_stops() {
    // A SIGTERM right after an acknowledged event: the dispatcher is told to
    // stop before its next round. The store delivery must still be written
    // (HTTP deliveries stay due for the restart). Deterministic: the stop
    // is given before the dispatcher ever runs.
    let routes = crate::util::TempRoutes::new(&[(
        "shop.yaml",
        "route: shop\npath: /hooks/shop\nverify: { scheme: none }\nevent: { type: $.type, id: $.id }\n\
         rules:\n  - on: order.*\n    to: [{ sink: orders, key: $.id }]\nsinks:\n  orders: { type: store }\n",
    )]);
    let data = tempfile::tempdir().unwrap();
    let loaded = webhook_router::config::load(&[routes.path().to_path_buf()], &std::collections::HashMap::new())
        .unwrap_or_else(|d| panic!("{d}"));
    let rt = webhook_router::runtime::Runtime::new(
        loaded.config,
        webhook_router::runtime::DataDir::open(data.path()).unwrap(),
    );
    rt.data.log.append(event(1), vec![delivery()]).await.unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(true);
    webhook_router::dispatch::run(rt.clone(), stop).await;
    assert_eq!(rt.data.records.get("orders", "evt_1").unwrap().unwrap()["id"], "evt_1");
    assert_eq!(rt.data.log.queue_depth(), 0);
}

#[tokio::test]
async fn a_body_stored_as_is_is_read_whole_when_a_reload_changed_its_rule() {
    // Accepted under a rule that stores the body as is (ingest parses only
    // the type and the key), delivered after reloads gave the target another
    // key and then a `map:`: the dispatcher reads them from the whole body.
    let config = |rule: &str| {
        let routes = crate::util::TempRoutes::new(&[(
            "shop.yaml",
            &format!(
                "route: shop\npath: /hooks/shop\nverify: {{ scheme: none }}\nevent: {{ type: $.type, id: $.id }}\n\
                 rules:\n  - on: order.*\n{rule}\nsinks:\n  orders: {{ type: store }}\n"
            ),
        )]);
        webhook_router::config::load(&[routes.path().to_path_buf()], &std::collections::HashMap::new())
            .unwrap_or_else(|d| panic!("{d}"))
            .config
    };
    let data = tempfile::tempdir().unwrap();
    let rt = webhook_router::runtime::Runtime::new(
        config("    to: [{ sink: orders, key: $.id }]"),
        webhook_router::runtime::DataDir::open(data.path()).unwrap(),
    );
    assert!(rt.config().route("shop").unwrap().rules[0].targets[0].stores_body_as_is);
    let append = |i: usize| {
        let mut e = event(i);
        // What ingest keeps when every delivery stores the body as is.
        let Parsed::Whole(body) = &e.payload else { unreachable!() };
        e.payload = Parsed::Fields(serde_json::json!({"id": body["id"], "type": body["type"]}));
        rt.data.log.append(e, vec![delivery()])
    };
    append(1).await.unwrap();
    rt.swap(config("    to: [{ sink: orders, key: $.pad }]"));
    append(2).await.unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(true);
    webhook_router::dispatch::run(rt.clone(), stop).await;
    let first = rt.data.records.get("orders", &"x".repeat(37)).unwrap().expect("keyed by the new path");
    assert_eq!((first["id"].as_str(), first["_sync_metadata"]["log_id"].as_u64()), (Some("evt_1"), Some(1)));

    rt.swap(config("    map: { order: $.id, size: $.pad }\n    to: [{ sink: orders, key: $.id }]"));
    append(3).await.unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(true);
    webhook_router::dispatch::run(rt.clone(), stop).await;
    let mapped = rt.data.records.get("orders", "evt_3").unwrap().expect("mapped from the whole body");
    assert_eq!(mapped["size"].as_str().map(str::len), Some(3 * 37));
    assert_eq!(rt.data.log.queue_depth(), 0);
}
