//! Hot reload against the real server: files are added, edited, broken,
//! fixed, renamed over and swapped by symlink while a client keeps posting;
//! the client sees no error on the paths that stay.

use crate::util::{client, TempRoutes, TestRouter};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn route(name: &str, path: &str, events: &str) -> String {
    format!(
        "route: {name}\npath: {path}\nverify: {{ scheme: bearer, token: t }}\nevent: {{ type: $.type }}\n\
         events: {events}\nrules:\n  - on: \"*\"\n    to: [{{ sink: {name}-store, key: $.id }}]\n\
         sinks:\n  {name}-store: {{ type: store }}\n"
    )
}

async fn status(r: &TestRouter, path: &str, body: &str) -> u16 {
    let req = client().post(r.url(path)).bearer_auth("t").header("content-type", "application/json");
    req.body(body.to_string()).send().await.map(|a| a.status().as_u16()).unwrap_or(0)
}

/// Polls until `path` answers `want` (reloads are asynchronous), within 2 s.
async fn answers(r: &TestRouter, path: &str, body: &str, want: u16) {
    for _ in 0..200 {
        if status(r, path, body).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never answered {want}");
}

/// Writes through a temp file and a rename, as editors and `kubectl cp` do.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn reload_status(r: &TestRouter) -> webhook_router::reload::ReloadStatus {
    r.rt.reload_status.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_change_under_load_without_errors() {
    let routes = TempRoutes::new(&[("a.yaml", &route("a", "/a", "[\"*\"]"))]);
    let dir = routes.path().to_path_buf();
    let data = tempfile::tempdir().unwrap();
    let r = Arc::new(TestRouter::start(&dir, data.path()).await);

    // A client posting to /a all along: it must never see an error.
    let (stop, sent, errors) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loop_task = {
        let (r, stop, sent, errors) = (r.clone(), stop.clone(), sent.clone(), errors.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let code = status(&r, "/a", &format!(r#"{{"type": "t", "id": "{n}"}}"#)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if code != 200 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // Add a route: it answers without a restart.
    std::fs::write(dir.join("b.yaml"), route("b", "/b", "[\"*\"]")).unwrap();
    answers(&r, "/b", r#"{"type": "t", "id": "x"}"#, 200).await;

    // Break a file: the running config stays, the problem is reported at its place.
    std::fs::write(dir.join("b.yaml"), "route: b\npath: /b\nverify: { scheme: bearer, token: t\n").unwrap();
    for _ in 0..200 {
        if !reload_status(&r).ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = reload_status(&r);
    assert!(!s.ok && s.failures >= 1, "{s:?}");
    assert!(s.problems.iter().any(|p| p.contains("b.yaml:")), "{s:?}");
    assert_eq!(status(&r, "/b", r#"{"type": "t", "id": "y"}"#).await, 200, "old config kept");

    // Fix it by a rename over the broken file, with a narrower `events`.
    replace(&dir, "b.yaml", &route("b", "/b", "[\"only.this\"]"));
    answers(&r, "/b", r#"{"type": "other", "id": "z"}"#, 200).await;
    for _ in 0..200 {
        if reload_status(&r).ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let filtered = client().post(r.url("/b")).bearer_auth("t").body(r#"{"type": "other", "id": "w"}"#).send();
    let filtered: serde_json::Value = filtered.await.unwrap().json().await.unwrap();
    assert_eq!(filtered["filtered"], true, "{filtered}");

    // Remove it: its path is gone.
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    answers(&r, "/b", r#"{"type": "t", "id": "v"}"#, 404).await;

    stop.store(true, Ordering::Relaxed);
    loop_task.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10, "the client kept posting");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "errors on /a across the reloads");
    Arc::into_inner(r).expect("only owner").stop().await;
}

/// A Kubernetes ConfigMap volume: `x.yaml -> ..data/x.yaml`, and an update
/// swaps the `..data` symlink to a new timestamped directory by rename.
#[tokio::test]
async fn configmap_symlink_swap_reloads() {
    let routes = TempRoutes::new(&[]);
    let dir = routes.path();
    std::fs::create_dir(dir.join("..2026_11_23_v1")).unwrap();
    std::fs::write(dir.join("..2026_11_23_v1/x.yaml"), route("x", "/x1", "[\"*\"]")).unwrap();
    std::os::unix::fs::symlink("..2026_11_23_v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/x.yaml", dir.join("x.yaml")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(dir, data.path()).await;
    assert_eq!(status(&r, "/x1", r#"{"type": "t"}"#).await, 200);

    std::fs::create_dir(dir.join("..2026_11_23_v2")).unwrap();
    std::fs::write(dir.join("..2026_11_23_v2/x.yaml"), route("x", "/x2", "[\"*\"]")).unwrap();
    std::os::unix::fs::symlink("..2026_11_23_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    answers(&r, "/x2", r#"{"type": "t"}"#, 200).await;
    assert_eq!(status(&r, "/x1", r#"{"type": "t"}"#).await, 404);
    r.stop().await;
}

/// `serve --no-watch`: file changes wait for SIGHUP, which reloads.
#[test]
fn sighup_reloads_the_binary() {
    let routes = TempRoutes::new(&[("a.yaml", &route("a", "/a", "[\"*\"]"))]);
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = crate::util::serve_command(routes.path(), data.path(), &format!("127.0.0.1:{port}"))
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let get = |path: &str| -> u16 {
        let mut s = match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(_) => return 0,
        };
        use std::io::{Read, Write};
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
    };
    let wait_for = |path: &str, want: u16| {
        for _ in 0..300 {
            if get(path) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    };
    assert!(wait_for("/a", 200), "router started");
    // Without a watcher there is nothing that could reload on a change: the
    // router says so, rather than the test waiting to see nothing happen.
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(said.contains("Not watching the route files (--no-watch)") && !said.contains("Watching"), "{said}");
    std::fs::write(routes.path().join("b.yaml"), route("b", "/b", "[\"*\"]")).unwrap();
    assert_eq!(get("/b"), 404, "no reload without SIGHUP under --no-watch");
    let hup = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    assert!(wait_for("/b", 200), "SIGHUP reloaded");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A delivery in the log whose sink a reload removed fails with a clear
/// error, and delivers once the sink is back and it is retried.
#[tokio::test]
async fn a_removed_sink_fails_its_deliveries_until_it_is_back() {
    use crate::util::{settled, Receiver, Reply};
    use webhook_router::storage::DeliveryStatus;
    let rx = Receiver::start(vec![Reply::Status(503)]).await;
    let with_hook = format!(
        "route: p\npath: /p\nverify: {{ scheme: bearer, token: t }}\nrules:\n  - on: \"*\"\n    to: [{{ sink: hook }}]\n\
         sinks:\n  hook: {{ type: http, url: \"{}\", retry: {{ attempts: 5, backoff: 3s }} }}\n",
        rx.url("/hook")
    );
    let without_hook = "route: p\npath: /p\nverify: { scheme: bearer, token: t }\nrules:\n  - on: \"*\"\n    \
                        to: [{ sink: other }]\nsinks:\n  other: { type: http, url: \"http://127.0.0.1:9/other\" }\n";
    let routes = TempRoutes::new(&[("p.yaml", &with_hook)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let (code, answer) = crate::util::post(&r.url("/p"), "t", "{}", &[]).await;
    assert_eq!(code, 200);
    let id: u64 = answer["id"].as_str().unwrap().parse().unwrap();
    // The first attempt got 503: retrying, due in about 3 s (room for the reload even on a busy box).
    r.eventually("the first attempt", || (rx.count() == 1).then_some(())).await;

    replace(routes.path(), "p.yaml", without_hook);
    r.eventually("the sink removed", || (!r.rt.config().sinks.contains_key("hook")).then_some(())).await;
    let failed = settled(&r, id).await;
    assert_eq!(failed[0].status, DeliveryStatus::Failed);
    assert_eq!(failed[0].last_error.as_deref(), Some("rule p#0 no longer sends to sink `hook`"));

    replace(routes.path(), "p.yaml", &with_hook);
    r.eventually("the sink back", || r.rt.config().sinks.contains_key("hook").then_some(())).await;
    assert_eq!(r.rt.data.log.retry_failed(Some(id), None).unwrap().len(), 1);
    r.rt.work.notify_one();
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(rx.count(), 2);
    r.stop().await;
}

/// A reload that raises a sink's `concurrency:` lets that many run at once
/// (its slots kept the size they were first made with).
#[tokio::test]
async fn a_reloaded_concurrency_applies_to_deliveries() {
    use crate::util::{Receiver, Reply};
    let rx = Receiver::start(vec![Reply::Hang; 10]).await;
    // A second sink that answers at once: its deliveries are the proof that
    // dispatch rounds ran while the first sink was full.
    let fast = Receiver::start(vec![]).await;
    let route = |concurrency: usize| {
        format!(
            "route: p\npath: /p\nverify: {{ scheme: bearer, token: t }}\nevent: {{ id: $.id }}\nrules:\n  - on: \"*\"\n    \
             to: [{{ sink: hook }}, {{ sink: fast }}]\nsinks:\n  \
             hook: {{ type: http, url: \"{}\", timeout: 30s, concurrency: {concurrency} }}\n  \
             fast: {{ type: http, url: \"{}\" }}\n",
            rx.url("/hook"),
            fast.url("/fast")
        )
    };
    let routes = TempRoutes::new(&[("p.yaml", &route(1))]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let post = |i: usize| {
        let url = r.url("/p");
        async move {
            let (code, answer) = crate::util::post(&url, "t", &format!(r#"{{"id": "e{i}"}}"#), &[]).await;
            assert_eq!(code, 200, "{answer}");
        }
    };
    for i in 0..5 {
        post(i).await;
    }
    r.eventually("one delivery in flight", || (rx.count() == 1).then_some(())).await;
    replace(routes.path(), "p.yaml", &route(3));
    r.eventually("three deliveries in flight", || (rx.count() == 3).then_some(())).await;
    // Rounds that deliver these to `fast` would start a fourth on `hook` if
    // it had room: once they are in, `hook` still has three.
    for i in 5..8 {
        post(i).await;
    }
    let fast = &fast;
    r.eventually("every event at the fast sink", || (fast.count() == 8).then_some(())).await;
    assert_eq!(rx.count(), 3, "no more than the new concurrency");
    r.stop().await;
}

/// `${file:PATH}`: a rotated secret file takes effect on SIGHUP, and its
/// content never appears in the router's log, even at debug level.
#[tokio::test]
async fn a_secret_file_is_read_again_on_sighup_and_never_logged() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("token");
    std::fs::write(&secret, "first-7f3a9c\n").unwrap();
    let file = route("a", "/a", "[\"*\"]").replace("token: t", &format!("token: \"${{file:{}}}\"", secret.display()));
    let routes = TempRoutes::new(&[("a.yaml", &file)]);
    let data = tempfile::tempdir().unwrap();
    let log = secrets.path().join("router.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = crate::util::serve_command(routes.path(), data.path(), &format!("127.0.0.1:{port}"))
        .env("ROUTER_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let post = |token: &'static str| async move {
        let req = client().post(format!("http://127.0.0.1:{port}/a")).bearer_auth(token);
        let req = req.header("content-type", "application/json").body(r#"{"type": "t", "id": "1"}"#);
        req.send().await.map(|a| a.status().as_u16()).unwrap_or(0)
    };
    let wait_for = |token: &'static str, want: u16| async move {
        for _ in 0..300 {
            if post(token).await == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    };
    assert!(wait_for("first-7f3a9c", 200).await, "the file's token, its newline trimmed");
    std::fs::write(&secret, "second-b2e8d1\n").unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    assert!(wait_for("second-b2e8d1", 200).await, "SIGHUP read the rotated file");
    assert_eq!(post("first-7f3a9c").await, 401, "the old token is gone");
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("SIGHUP") || logged.contains("eload"), "the log is the router's: {logged}");
    assert!(!logged.contains("first-7f3a9c") && !logged.contains("second-b2e8d1"), "{logged}");
}
