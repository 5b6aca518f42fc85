//! Defects found by running the router against clients and faults no one
//! here wrote (real SDKs' payloads, full disks, hostile clients and route
//! files). One test per defect; each failed on the code before its fix.

use crate::util::{client, now, post, sdk_sign, settled, Receiver, Reply, TempRoutes, TestRouter};
use serde_json::{json, Value};
use std::collections::HashMap;
use webhook_router::storage::DeliveryStatus;

/// A store keyed by a field of the body; no `map:` (the whole document).
fn store_route(name: &str, verify: &str, event: &str, key: &str) -> String {
    format!(
        "route: {name}\npath: /hooks/{name}\nverify: {verify}\nevent: {event}\n\
         rules:\n  - on: \"*\"\n    to: [{{ sink: {name}, key: \"{key}\" }}]\nsinks:\n  {name}: {{ type: store }}\n"
    )
}

/// The log id in a 200's answer (`"id": "12"`).
fn log_id(answer: &Value) -> u64 {
    answer["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no id in {answer}"))
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// Item 1: a form body was verified and answered 200, then delivered as
/// null (dispatch re-parsed the raw body as JSON): "the record key is
/// missing from the event". Slack's slash command signed by slack-sdk and
/// GitHub's form content type (`payload=<json>`) signed by octokit.
#[tokio::test]
async fn form_bodies_reach_the_sink_as_ingest_parsed_them() {
    let routes = TempRoutes::new(&[
        (
            "slack.yaml",
            &store_route("slack", "{ scheme: slack, secret: slacksecret }", "{ type: $.command }", "{$.user_id}"),
        ),
        ("github.yaml", &store_route("github", "{ scheme: github, secret: gh-secret }", "{}", "{$.issue.number}")),
    ]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;

    let slash = form(&[("command", "/deploy"), ("text", "prod now"), ("user_id", "U2147483697")]);
    let issue = json!({"action": "opened", "issue": {"number": 1347, "title": "Found a bug"}}).to_string();
    let github = form(&[("payload", &issue)]);
    let slack_headers =
        &sdk_sign(false, &[json!({"scheme": "slack", "secret": "slacksecret", "body": slash, "timestamp": now()})])[0];
    let github_headers = &sdk_sign(true, &[json!({"scheme": "github", "secret": "gh-secret", "body": github})])[0];
    for (path, body, signed, extra) in [
        ("/hooks/slack", &slash, slack_headers, vec![]),
        ("/hooks/github", &github, github_headers, vec![("x-github-event", "issues"), ("x-github-delivery", "d-1")]),
    ] {
        let mut req =
            client().post(r.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body.clone());
        for (k, v) in
            signed.iter().chain(&extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
        {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{path}: {answer}");
        let ds = settled(&r, log_id(&answer)).await;
        assert_eq!(ds[0].status, DeliveryStatus::Delivered, "{path}: {:?}", ds[0].last_error);
    }
    let slack = r.rt.data.records.get("slack", "U2147483697").unwrap().expect("slack record");
    assert_eq!((&slack["command"], &slack["text"]), (&json!("/deploy"), &json!("prod now")));
    let gh = r.rt.data.records.get("github", "1347").unwrap().expect("github record");
    assert_eq!((&gh["action"], &gh["issue"]["title"]), (&json!("opened"), &json!("Found a bug")));
    r.stop().await;
}

/// Item 2: numeric ids past 64 bits were read as floats, so two different
/// ids had the same key and the second event was answered `duplicate`
/// and lost.
#[tokio::test]
async fn large_numeric_ids_stay_exact() {
    let routes = TempRoutes::new(&[(
        "ids.yaml",
        &store_route("ids", "{ scheme: bearer, token: t0k }", "{ type: $.type, id: $.id }", "{$.id}"),
    )]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let pairs = [
        ("123456789012345678901234567890", "123456789012345678901234567891"),
        ("18446744073709551616", "18446744073709551617"),
        ("-9223372036854775809", "-9223372036854775810"),
        ("9007199254740993", "9007199254740992"),
    ];
    for (a, b) in pairs {
        for id in [a, b] {
            let body = format!(r#"{{"type":"thing.created","id":{id}}}"#);
            let (s, answer) = post(&r.url("/hooks/ids"), "t0k", &body, &[]).await;
            assert_eq!((s, answer.get("duplicate")), (200, None), "{id}: {answer}");
            let ds = settled(&r, log_id(&answer)).await;
            assert_eq!(ds[0].status, DeliveryStatus::Delivered, "{id}");
            let event = r.rt.data.log.event(log_id(&answer)).unwrap();
            assert_eq!(event.event_id.as_deref(), Some(id));
            let record = r.rt.data.records.get("ids", id).unwrap().unwrap_or_else(|| panic!("no record {id}"));
            // The stored document keeps the number's own text too.
            assert_eq!(record["id"].to_string(), id);
        }
    }
    r.stop().await;
}

/// Item 3: times were written with as many fraction digits as they had
/// (`.29Z`, none on a whole second), so they sorted wrongly as text.
#[tokio::test]
async fn written_times_have_fixed_milliseconds() {
    let routes = TempRoutes::new(&[(
        "t.yaml",
        &store_route("t", "{ scheme: bearer, token: t0k }", "{ type: $.type, id: $.id, time: $.at }", "{$.id}"),
    )]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let fixed = |t: &str| {
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.' && t[20..23].bytes().all(|b| b.is_ascii_digit())
    };
    for (i, at) in ["2025-10-21T20:51:00.29Z", "2025-10-21T20:51:00Z", "1761079860"].iter().enumerate() {
        let body = json!({"type": "x", "id": format!("e{i}"), "at": at}).to_string();
        let (s, answer) = post(&r.url("/hooks/t"), "t0k", &body, &[]).await;
        assert_eq!(s, 200, "{answer}");
        let id = log_id(&answer);
        settled(&r, id).await;
        let event = r.rt.data.log.event(id).unwrap();
        assert!(fixed(&event.received_at), "{}", event.received_at);
        let time = event.event_time.unwrap();
        assert!(fixed(&time), "{time}");
        let meta = &r.rt.data.records.get("t", &format!("e{i}")).unwrap().unwrap()["_sync_metadata"];
        for field in ["received_at", "event_time"] {
            assert!(fixed(meta[field].as_str().unwrap()), "{field}: {meta}");
        }
    }
    assert_eq!(r.rt.data.log.event(1).unwrap().event_time.as_deref(), Some("2025-10-21T20:51:00.290Z"));
    r.stop().await;
}

/// Item 4: after a failed delivery was retried by hand and delivered,
/// `/stats` still said delivered 0, failed 1, success 0 %.
#[tokio::test]
async fn stats_count_a_retried_delivery_as_delivered() {
    let hook = Receiver::start(vec![Reply::Status(400)]).await;
    let route = "route: s\npath: /hooks/s\nverify: { scheme: bearer, token: t0k }\nevent: { type: $.type }\n\
                 rules:\n  - on: \"*\"\n    to: [{ sink: hook }]\nsinks:\n  hook: { type: http, url: \"${HOOK}\", retry: { attempts: 1 } }\n";
    let routes = TempRoutes::new(&[("s.yaml", route)]);
    let data = tempfile::tempdir().unwrap();
    let env = HashMap::from([("HOOK".to_string(), hook.url("/in"))]);
    let r = TestRouter::start_with(routes.path(), data.path(), env).await;
    let (_, answer) = post(&r.url("/hooks/s"), "t0k", r#"{"type":"a"}"#, &[]).await;
    let id = log_id(&answer);
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Failed);
    let stats = |r: &TestRouter| {
        let s = r.rt.stats.report(["s"]).routes["s"].clone();
        (s.delivered, s.failed, s.success_rate)
    };
    assert_eq!(stats(&r), (0, 1, Some(0.0)));
    let resp = client().post(r.admin_url(&format!("/events/{id}/retry"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(stats(&r), (1, 0, Some(1.0)));
    r.stop().await;
}

fn reloads(r: &TestRouter) -> webhook_router::reload::ReloadStatus {
    r.rt.reload_status.lock().unwrap().clone()
}

/// Item 7: reading a route file (`cat`, `router check`, an editor) raised
/// access events, each reload read the files again, and the router
/// reloaded every ~150 ms forever. Two real changes must be two reloads,
/// however often the files are read around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_route_files_does_not_reload() {
    let routes =
        TempRoutes::new(&[("a.yaml", &store_route("a", "{ scheme: bearer, token: t0k }", "{}", "fixed-{$.x}"))]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let file = routes.path().join("a.yaml");
    // Off the runtime's threads, so the watcher and reloads run meanwhile.
    let read_around = || {
        let (file, dir) = (file.clone(), routes.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            for _ in 0..20 {
                std::fs::read_to_string(&file).unwrap();
                assert_eq!(crate::util::run_router(&["check", "--no-tests", dir.to_str().unwrap()]).0, 0);
            }
        })
    };
    for name in ["b", "c"] {
        read_around().await.unwrap();
        // An unchanged rewrite is not a change either.
        std::fs::write(&file, std::fs::read(&file).unwrap()).unwrap();
        std::fs::write(&file, store_route(name, "{ scheme: bearer, token: t0k }", "{}", "fixed-{$.x}")).unwrap();
        let path = format!("/hooks/{name}");
        r.eventually("the change to be live", || r.rt.config().table.lookup(&path).map(|_| ())).await;
        read_around().await.unwrap();
    }
    // The reads between and after the two changes reloaded nothing (the
    // old watcher reloaded every ~150 ms from the first read on).
    let s = reloads(&r);
    assert_eq!((s.reloads, s.failures), (2, 0), "{s:?}");
    r.stop().await;
}

/// Item 8: a path with 26 or more `{params}` panicked inside matchit
/// (exit 101 from `check` and `serve`; the reload task panicked over and
/// over while `GET /reload` said ok).
#[tokio::test]
async fn a_path_with_many_params_is_a_problem_not_a_panic() {
    let many = (0..26).map(|i| format!("/{{p{i}}}")).collect::<String>();
    let file = format!("route: many\npath: {many}\nverify: {{ scheme: none }}\n");
    let broken = TempRoutes::new(&[("many.yaml", &file)]);
    let (code, stdout, stderr) = crate::util::run_router(&["check", broken.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let want = format!("many.yaml:2:7: error: path `{many}` has 26 parameters; at most 16 are allowed");
    assert!(stdout.contains(&want), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let routes =
        TempRoutes::new(&[("a.yaml", &store_route("a", "{ scheme: bearer, token: t0k }", "{}", "fixed-{$.x}"))]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    std::fs::write(routes.path().join("many.yaml"), &file).unwrap();
    let s = r.eventually("the refused reload", || Some(reloads(&r)).filter(|s| s.failures > 0)).await;
    assert!(!s.ok && s.problems.iter().any(|p| p.contains("has 26 parameters")), "{s:?}");
    // The old routes still serve.
    assert_eq!(post(&r.url("/hooks/a"), "t0k", "{}", &[]).await.0, 200);
    r.stop().await;
}

/// Runs the binary in `dir` with `env` (nothing else of the test's own).
fn router_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_in(dir, &crate::util::router_bin(), args, env)
}

/// Runs `program` in `dir` with `env` and without the router variables of
/// the test's own environment.
fn run_in(
    dir: &std::path::Path,
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("WHOP_WEBHOOK_SECRET")
        .env_remove("ROUTER_DATA")
        .env_remove("ROUTER_ADMIN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Item 12: with `WHOP_WEBHOOK_SECRET` unset, `serve` on 0.0.0.0 accepted
/// events signed with the trial secret published in the shipped route file.
#[test]
fn the_trial_secret_never_serves_the_network() {
    let routes = crate::util::repo().join("routes.d");
    let routes = routes.to_str().unwrap();
    let data = tempfile::tempdir().unwrap();
    let args = ["serve", "--routes", routes, "--data", data.path().to_str().unwrap(), "--admin-listen", "off"];
    // Run with a deadline: the old code served instead of refusing.
    let args = [&args[..], &["--listen", "0.0.0.0:0"]].concat();
    let bin = crate::util::router_bin();
    let bounded = [&["10s", bin.to_str().unwrap()][..], &args].concat();
    // coreutils' `timeout` exits 124 when it had to cut the command off.
    let (code, _, stderr) = run_in(data.path(), std::path::Path::new("timeout"), &bounded, &[]);
    assert!(code != 0 && code != 124, "{code}: {stderr}");
    assert!(
        stderr.contains("--listen 0.0.0.0:0 is not a loopback address, and WHOP_WEBHOOK_SECRET is not set"),
        "{stderr}"
    );

    let (code, stdout, _) = router_in(data.path(), &["check", "--strict", "--no-tests", routes], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("whop-members.yaml:11:11: warning: `WHOP_WEBHOOK_SECRET` is not set"), "{stdout}");
    let set = [("WHOP_WEBHOOK_SECRET", "ws_real_secret")];
    assert_eq!(router_in(data.path(), &["check", "--strict", "--no-tests", routes], &set).0, 0);
}

/// Item 12, on reload: a router serving the network refuses a reload that
/// would verify with a trial secret, at the place the secret is written.
#[tokio::test]
async fn a_reload_never_brings_a_trial_secret_to_the_network() {
    let trial = "route: t\npath: /t\nverify: { scheme: bearer, token: \"${TRIAL_TOKEN:-trial}\" }\n";
    let routes = TempRoutes::new(&[("t.yaml", trial)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let paths = [routes.path().to_path_buf()];
    assert!(webhook_router::reload::reload(&r.rt, &paths, &HashMap::new(), "watch", false), "loopback: allowed");
    assert!(!webhook_router::reload::reload(&r.rt, &paths, &HashMap::new(), "watch", true));
    let s = reloads(&r);
    let want = format!(
        "{}:3:34: error: `TRIAL_TOKEN` is not set and this router serves the network",
        routes.path().join("t.yaml").display()
    );
    assert!(s.problems.iter().any(|p| p.starts_with(&want)), "{s:?}");
    r.stop().await;
}

/// Item 13: a secret written as a number was echoed in the type error, and
/// a credential in the query string was stored and shown verbatim.
#[tokio::test]
async fn secrets_stay_out_of_diagnostics_and_the_log() {
    let numeric =
        TempRoutes::new(&[("n.yaml", "route: n\npath: /n\nverify: { scheme: bearer, token: 998877665544 }\n")]);
    let (code, stdout, stderr) = router_in(numeric.path(), &["check", "."], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("n.yaml:3:27: error: invalid type: integer, expected a string"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("998877665544"));

    let routes =
        TempRoutes::new(&[("q.yaml", &store_route("q", "{ scheme: bearer, token: t0k }", "{}", "fixed-{$.x}"))]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let url = r.url("/hooks/q?token=tok-3c9f&api_key=key-77aa&X-Signature=sig-5e1d&tenant=acme");
    let (s, answer) = post(&url, "t0k", r#"{"x":1}"#, &[]).await;
    assert_eq!(s, 200);
    let id = log_id(&answer);
    let shown = client().get(r.admin_url(&format!("/events/{id}"))).send().await.unwrap().text().await.unwrap();
    let event = r.rt.data.log.event(id).unwrap();
    assert_eq!(
        event.query,
        [("token", "[redacted]"), ("api_key", "[redacted]"), ("X-Signature", "[redacted]"), ("tenant", "acme")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    for secret in ["tok-3c9f", "key-77aa", "sig-5e1d"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    r.stop().await;
}

/// Item 14: a 20,000-character `events` glob took 14.5 s and 431 MB in the
/// overlap check; 10,000 nested `${V:-...}` took 4.5 s. Both are bounded.
#[test]
fn huge_patterns_and_nesting_are_refused_with_a_position() {
    let glob = "a*".repeat(10_000);
    let nested = format!("{}x{}", "${V:-".repeat(10_000), "}".repeat(10_000));
    let file = format!(
        "route: big\npath: /big\nverify: {{ scheme: bearer, token: \"{nested}\" }}\nevents: [\"{glob}\"]\n\
         rules:\n  - on: \"{glob}b\"\n    to: [{{ sink: s, key: $.id }}]\nsinks:\n  s: {{ type: store }}\n"
    );
    let routes = TempRoutes::new(&[("big.yaml", &file)]);
    let (code, stdout, _) = router_in(routes.path(), &["check", "."], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("big.yaml:3:34: error: defaults nested more than 8 deep"), "{stdout}");
    assert!(
        stdout.contains("big.yaml:4:11: error: event pattern of 20000 characters; at most 256 are allowed"),
        "{stdout}"
    );
    assert!(stdout.contains("big.yaml:6:10: error: event pattern of 20001 characters"), "{stdout}");
}

/// Item 19: `store get --admin ADDR` without `--data` created an empty
/// `./data` and answered "no record" from it.
#[test]
fn the_cli_never_creates_a_data_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let (code, _, stderr) = router_in(cwd.path(), &["store", "get", "members", "u1", "--admin", "127.0.0.1:1"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("admin API at http://127.0.0.1:1 does not answer"), "{stderr}");
    let (code, _, stderr) = router_in(cwd.path(), &["events", "list"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no data directory at data: pass --data DIR"), "{stderr}");
    assert!(std::fs::read_dir(cwd.path()).unwrap().next().is_none(), "the CLI created something");
}

/// Item 20: library internals in messages ("use from_str_multiple...",
/// `Depth { depth: 65 }`), invalid UTF-8 at `:0:0`, one Rhai error printed
/// once per rule using the script, route-test problems without a column.
#[test]
fn diagnostics_have_one_shape_and_say_each_problem_once() {
    let deep = format!(
        "route: d\npath: /d\nverify: {{ scheme: none }}\nexamples:\n  a: {}{}\n",
        "[".repeat(70),
        "]".repeat(70)
    );
    let shared = "route: s\npath: /s\nverify: { scheme: none }\nrules:\n  - on: a\n    script: scripts/bad.rhai\n    to: [{ sink: st, key: $.id }]\n  - on: b\n    script: scripts/bad.rhai\n    to: [{ sink: st, key: $.id }]\nsinks:\n  st: { type: store }\n";
    let routes = TempRoutes::new(&[
        ("a-multi.yaml", "route: m\npath: /m\n---\nroute: n\npath: /n\n"),
        ("b-deep.yaml", &deep),
        ("d-shared.yaml", shared),
    ]);
    std::fs::write(routes.path().join("c-latin1.yaml"), b"route: x\npath: /x # caf\xe9\n").unwrap();
    std::fs::create_dir(routes.path().join("scripts")).unwrap();
    std::fs::write(routes.path().join("scripts/bad.rhai"), "let x = ;\n").unwrap();
    std::fs::create_dir(routes.path().join("tests")).unwrap();
    std::fs::write(routes.path().join("tests/t.yaml"), "tests:\n  - name: [oops\n").unwrap();
    let (code, stdout, _) = router_in(routes.path(), &["check", "."], &[]);
    assert_eq!(code, 1, "{stdout}");
    for want in [
        "a-multi.yaml:4:1: error: a route file holds one YAML document; a second one starts here (split the file in two)\n",
        "b-deep.yaml:5:",
        ": error: nested more than 64 levels deep\n",
        "c-latin1.yaml:2:15: error: not valid UTF-8 (byte 0xe9); save the file as UTF-8\n",
    ] {
        assert!(stdout.contains(want), "want {want:?} in\n{stdout}");
    }
    assert_eq!(stdout.matches("bad.rhai:1:9: error:").count(), 1, "{stdout}");
    for line in stdout.lines().filter(|l| l.contains(": error: ") || l.contains(": warning: ")) {
        let mut parts = line.splitn(4, ':');
        let (_, line_no, col) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert!(line_no.parse::<u32>().is_ok_and(|n| n > 0) && col.parse::<u32>().is_ok_and(|n| n > 0), "{line}");
        assert!(!line.contains("from_str") && !line.contains("Depth {"), "{line}");
    }
    // Route tests run only when the routes load; a broken test file is still reported in the same shape.
    std::fs::remove_file(routes.path().join("a-multi.yaml")).unwrap();
    std::fs::remove_file(routes.path().join("b-deep.yaml")).unwrap();
    std::fs::remove_file(routes.path().join("c-latin1.yaml")).unwrap();
    std::fs::remove_file(routes.path().join("d-shared.yaml")).unwrap();
    std::fs::write(routes.path().join("ok.yaml"), "route: ok\npath: /ok\nverify: { scheme: bearer, token: t }\n")
        .unwrap();
    let (_, stdout, _) = router_in(routes.path(), &["check", "."], &[]);
    assert!(stdout.contains("tests/t.yaml:2:"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("./tests/t.yaml:2:") || l.contains("tests/t.yaml:2:") && l.contains(": error: ")),
        "{stdout}"
    );
}

/// Item 9: with every connection slot held by clients that connect and
/// send nothing, a real sender waited in the accept queue until the
/// header timeout (up to 11 s). Now the quietest connection makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_stall_real_senders() {
    let routes =
        TempRoutes::new(&[("a.yaml", &store_route("a", "{ scheme: bearer, token: t0k }", "{}", "fixed-{$.x}"))]);
    let data = tempfile::tempdir().unwrap();
    let limits = webhook_router::server::Limits {
        max_connections: 64,
        header_timeout: std::time::Duration::from_secs(30),
        ..crate::util::test_limits()
    };
    let r = TestRouter::start_full(routes.path(), data.path(), HashMap::new(), limits).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    }
    // Well under the header timeout: the old code answered only after it.
    webhook_router::tls::install_provider();
    let quick = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
    for i in 0..5 {
        let resp = quick.post(r.url("/hooks/a")).bearer_auth("t0k").body(format!(r#"{{"x":{i}}}"#)).send().await;
        assert_eq!(resp.expect("answered while the slots are full of silent clients").status(), 200);
    }
    drop(silent);
    r.stop().await;
}

/// Item 10: the router closed while an oversize body was still coming, so
/// Python's urllib and Node's fetch saw EPIPE / a reset instead of the 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_clients_read_the_413() {
    let route = "route: small\npath: /hooks/small\nverify: { scheme: bearer, token: t0k }\nbody_limit: 2KiB\n";
    let routes = TempRoutes::new(&[("small.yaml", route)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let url = r.url("/hooks/small");
    let python = format!(
        "import urllib.request, urllib.error\n\
         req = urllib.request.Request('{url}', data=b'x' * (4 << 20), headers={{'Authorization': 'Bearer t0k'}})\n\
         try:\n    urllib.request.urlopen(req, timeout=10)\n    print('no error')\n\
         except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n"
    );
    let node = format!(
        "const r = await fetch('{url}', {{ method: 'POST', headers: {{ authorization: 'Bearer t0k' }}, body: 'x'.repeat(4 << 20) }});\n\
         console.log(r.status, await r.text());"
    );
    for (cmd, args) in
        [("python3", vec!["-c", python.as_str()]), ("node", vec!["--input-type=module", "-e", node.as_str()])]
    {
        let (cmd, args) = (cmd.to_string(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let out = tokio::task::spawn_blocking(move || std::process::Command::new(&cmd).args(&args).output().unwrap())
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with("413 {\"error\":\"body too large\""),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    r.stop().await;
}

/// Item 11: the shutdown grace (10 s, no setting) was shorter than the body
/// timeout, and nothing said what was cut off.
#[test]
fn shutdown_grace_is_a_setting_and_says_what_it_cut_off() {
    use std::io::Write;
    let routes =
        TempRoutes::new(&[("a.yaml", &store_route("a", "{ scheme: bearer, token: t0k }", "{}", "fixed-{$.x}"))]);
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(crate::util::router_bin())
        .args(["serve", "--admin-listen", "off", "--listen", &listen, "--shutdown-grace", "1s", "--routes"])
        .arg(routes.path())
        .arg("--data")
        .arg(data.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = std::time::Instant::now();
    let mut slow = loop {
        if let Ok(s) = std::net::TcpStream::connect(&listen) {
            break s;
        }
        assert!(child.try_wait().unwrap().is_none(), "serve exited at start");
        assert!(up.elapsed() < std::time::Duration::from_secs(20), "serve never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Headers and half the body: the body timeout (30 s) is far away.
    slow.write_all(
        b"POST /hooks/a HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t0k\r\nContent-Length: 100\r\n\r\n{\"x\":",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("Shutdown grace period over: cutting off 1 connection(s) still open"), "{log}");
}

/// Item 17: a body starting with a UTF-8 BOM got 400 (so the provider
/// retried forever), and GitHub routes capped bodies at 1 MiB although
/// GitHub sends up to 25 MB.
#[tokio::test]
async fn provider_defaults_bom_and_github_body_limit() {
    let github = "route: gh\npath: /hooks/gh\nverify: { scheme: github, secret: s }\n";
    let capped = "route: gh2\npath: /hooks/gh2\nverify: { scheme: github, secret: s }\nbody_limit: 1KiB\n";
    let routes = TempRoutes::new(&[
        ("gh.yaml", github),
        ("gh2.yaml", capped),
        ("b.yaml", &store_route("b", "{ scheme: bearer, token: t0k }", "{ type: $.type }", "{$.id}")),
    ]);
    let config = webhook_router::config::load(&[routes.path().to_path_buf()], &HashMap::new()).unwrap().config;
    assert_eq!(config.route("gh").unwrap().body_limit, 25 << 20);
    assert_eq!(config.route("gh2").unwrap().body_limit, 1024);

    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    let resp = client()
        .post(r.url("/hooks/b"))
        .bearer_auth("t0k")
        .header("content-type", "application/json; charset=utf-8")
        .body(b"\xEF\xBB\xBF{\"type\":\"a\",\"id\":\"bom-1\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = log_id(&resp.json().await.unwrap());
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(r.rt.data.records.get("b", "bom-1").unwrap().unwrap()["type"], "a");
    r.stop().await;
}

/// Item 16: a route could only answer the router's JSON; Slack shows a
/// slash command's answer to the user, so it must be the route's own.
#[tokio::test]
async fn a_route_answers_with_its_own_respond() {
    let slack = "route: deploy\npath: /hooks/deploy\nverify: { scheme: slack, secret: slacksecret }\n\
                 event: { type: $.command }\nrespond:\n  body: \"Deploying {$.text} for <@{$.user_id}>\"\n";
    let empty = "route: quiet\npath: /hooks/quiet\nverify: { scheme: bearer, token: t0k }\nrespond: { status: 204, body: \"\" }\n";
    let json = "route: js\npath: /hooks/js\nverify: { scheme: bearer, token: t0k }\nevent: { type: $.type }\n\
                events: [a]\nrespond:\n  json: { ok: true, got: $.type }\n";
    let routes = TempRoutes::new(&[("deploy.yaml", slack), ("quiet.yaml", empty), ("js.yaml", json)]);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;

    let slash = form(&[("command", "/deploy"), ("text", "api"), ("user_id", "U1")]);
    let signed =
        &sdk_sign(false, &[json!({"scheme": "slack", "secret": "slacksecret", "body": slash, "timestamp": now()})])[0];
    let mut req =
        client().post(r.url("/hooks/deploy")).header("content-type", "application/x-www-form-urlencoded").body(slash);
    for (k, v) in signed {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.headers()["content-type"].to_str().unwrap()),
        (200, "text/plain; charset=utf-8")
    );
    assert_eq!(resp.text().await.unwrap(), "Deploying api for <@U1>");
    assert_eq!(r.rt.data.log.event(1).unwrap().event_type, "/deploy", "the event is still logged");

    let resp = client().post(r.url("/hooks/quiet")).bearer_auth("t0k").body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(resp.text().await.unwrap(), "");
    // Filtered types get the route's answer too; errors keep the router's.
    for (kind, want) in [("a", r#"{"ok":true,"got":"a"}"#), ("b", r#"{"ok":true,"got":"b"}"#)] {
        let resp = client()
            .post(r.url("/hooks/js"))
            .bearer_auth("t0k")
            .body(format!(r#"{{"type":"{kind}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), want);
    }
    let resp = client().post(r.url("/hooks/js")).bearer_auth("nope").body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    r.stop().await;

    let bad =
        TempRoutes::new(&[("b.yaml", "route: b\npath: /b\nverify: { scheme: none }\nrespond: { status: 302 }\n")]);
    let (code, stdout, _) = router_in(bad.path(), &["check", "."], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("b.yaml:4:20: error: respond status 302 is not a success"), "{stdout}");
}

/// Items 5 and 6: after a full disk every request got 503 forever, even
/// once space was freed (only a restart helped), `/healthz` said ok
/// throughout, on a 12 MiB disk a request hung with no answer, and the
/// delivery loop logged ~3,000 lines a second. Now every request is
/// answered, `/healthz` fails while the store is down, the router gets a
/// working store back by itself within seconds of the space coming back,
/// and nothing acknowledged is lost. Needs root (it mounts a small tmpfs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_and_recovered_from_without_a_restart() {
    let top = tempfile::tempdir().unwrap();
    let disk = top.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"]).arg(&disk).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let route = store_route("a", "{ scheme: bearer, token: t0k }", "{ type: $.type, id: $.id }", "{$.id}");
    let routes = TempRoutes::new(&[("a.yaml", &route)]);
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, admin) = (free_port(), free_port());
    let child = std::process::Command::new(crate::util::router_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--routes")
        .arg(routes.path())
        .arg("--data")
        .arg(disk.join("data"))
        .stderr(std::fs::File::create(top.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = KillOnDrop(child);
    webhook_router::tls::install_provider();
    let quick = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    let send = |i: usize| {
        let body = json!({"type": "x", "id": format!("e{i}"), "pad": "x".repeat(3000)}).to_string();
        quick.post(format!("http://127.0.0.1:{port}/hooks/a")).bearer_auth("t0k").body(body).send()
    };
    let health = || quick.get(format!("http://127.0.0.1:{admin}/healthz")).send();
    for _ in 0..200 {
        if health().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut acked = Vec::new();
    let post = async |i: usize, acked: &mut Vec<usize>| -> u16 {
        let status = send(i).await.expect("every request is answered, none hangs").status().as_u16();
        assert!(status == 200 || status == 503, "{status}");
        if status == 200 {
            acked.push(i);
        }
        status
    };
    post(0, &mut acked).await;
    let _ = std::fs::write(disk.join("fill"), vec![0u8; 16 << 20]);
    let mut refused = 0;
    for i in 1..300 {
        refused += usize::from(post(i, &mut acked).await == 503);
    }
    assert!(refused > 250, "the disk never filled: {refused} refused");
    // Whether /healthz answers `status` within `tries` tenths of a second.
    let health_becomes = async |status: u16, tries: usize| {
        for _ in 0..tries {
            if health().await.is_ok_and(|r| r.status().as_u16() == status) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    assert!(health_becomes(503, 100).await, "/healthz never said the store is down");

    std::fs::remove_file(disk.join("fill")).unwrap();
    let mut back = false;
    for i in 1000..1150 {
        // 503 or, while it restarts in place, a refused connection.
        if matches!(send(i).await.map(|r| r.status().as_u16()), Ok(200)) {
            acked.push(i);
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the router never took events again after the space came back");
    for i in 2000..2020 {
        assert_eq!(post(i, &mut acked).await, 200);
    }
    // /healthz follows the supervisor's next probe.
    assert!(health_becomes(200, 50).await, "/healthz never recovered");
    let listed: Value = quick
        .get(format!("http://127.0.0.1:{admin}/events?route=a&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logged: std::collections::HashSet<&str> =
        listed["events"].as_array().unwrap().iter().filter_map(|e| e["event_id"].as_str()).collect();
    for i in &acked {
        assert!(logged.contains(format!("e{i}").as_str()), "acknowledged e{i} is not in the log");
    }
    drop(child);
    let log = std::fs::read_to_string(top.path().join("log")).unwrap();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    assert!(errors < 50, "{errors} error lines: the fault is logged once per interval\n{log}");
    // The event log and the records take writes again by themselves: no
    // restart in place.
    assert!(log.contains("The store takes writes again"), "{log}");
    assert!(!log.contains("restarting in place"), "{log}");
}
