//! The `router` binary: `check` on broken fixtures (each compared with the
//! `.expected` file beside it), and the data-reading commands both against a
//! running router (through its admin API) and offline.

use crate::util::{repo, router_bin, TempRoutes, TestRouter};
use serde_json::{json, Value};
use std::process::Command;

fn router(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(router_bin())
        .args(args)
        .current_dir(repo())
        .env_remove("WHOP_WEBHOOK_SECRET")
        .env("CHECK_FIXTURE_SET", "set")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each fixture's expected problems, from the `<fixture>.expected` beside it
/// (empty: none is reported at that file), keyed by the fixture's path.
fn expected_problems() -> std::collections::BTreeMap<String, String> {
    let dir = repo().join("tests/fixtures/invalid");
    let mut files = Vec::new();
    for entry in walk(&dir) {
        let name = entry.strip_prefix(&dir).unwrap().to_str().unwrap().to_string();
        if let Some(fixture) = name.strip_suffix(".expected") {
            assert!(dir.join(fixture).is_file(), "{name} has no fixture beside it");
            files.push((format!("tests/fixtures/invalid/{fixture}"), std::fs::read_to_string(&entry).unwrap()));
        } else {
            assert!(dir.join(format!("{name}.expected")).is_file(), "the fixture {name} lacks {name}.expected");
        }
    }
    files.into_iter().collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `check`'s text report split by the file each problem is at (a problem's
/// hint lines stay with it); the last line is the totals.
fn problems_by_file(report: &str) -> (std::collections::BTreeMap<String, String>, String) {
    let mut by_file = std::collections::BTreeMap::<String, String>::new();
    let (mut current, mut totals) = (None, String::new());
    for line in report.lines() {
        if let Some((file, _)) = line.split_once(':').filter(|_| !line.starts_with(' ')) {
            if line.contains(": error: ") || line.contains(": warning: ") {
                current = Some(file.to_string());
            } else {
                totals = line.to_string();
                continue;
            }
        } else if !line.starts_with(' ') {
            totals = line.to_string();
            continue;
        }
        let file = current.clone().expect("a hint follows a problem");
        by_file.entry(file).or_default().push_str(&format!("{line}\n"));
    }
    (by_file, totals)
}

#[test]
fn check_reports_every_problem_with_file_line_column() {
    let (code, stdout, stderr) = router(&["check", "tests/fixtures/invalid"]);
    assert_eq!(code, 1, "stderr: {stderr}");
    let (mut got, totals) = problems_by_file(&stdout);
    let expected = expected_problems();
    for (fixture, want) in &expected {
        assert_eq!(got.remove(fixture).unwrap_or_default(), *want, "{fixture} (its .expected file)");
    }
    assert!(got.is_empty(), "problems at files with no .expected: {got:#?}");
    let count = |kind: &str| expected.values().flat_map(|t| t.lines()).filter(|l| l.contains(kind)).count();
    assert_eq!(totals, format!("{} error(s), {} warning(s)", count(": error: "), count(": warning: ")));
}

#[test]
fn check_json_format_lists_the_same_problems() {
    let (code, stdout, _) = router(&["check", "--format", "json", "tests/fixtures/invalid"]);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, 1);
    assert_eq!(v["ok"], false);
    let errors = expected_problems().values().flat_map(|t| t.lines()).filter(|l| l.contains(": error: ")).count();
    assert_eq!(v["errors"].as_u64().unwrap() as usize, errors);
    assert!(v["diagnostics"][0]["line"].as_u64().unwrap() > 0);
}

#[test]
fn shipped_routes_pass_and_warnings_fail_only_when_strict() {
    let (code, stdout, _) = router(&["check", "routes.d"]);
    assert_eq!(code, 0, "{stdout}");
    // The shipped trial secret (WHOP_WEBHOOK_SECRET unset) is the one warning.
    assert!(stdout.contains("ok with 1 warning(s)"), "{stdout}");
    let open = TempRoutes::new(&[("open.yaml", "route: open\npath: /open\nverify: { scheme: none }\n")]);
    let dir = open.path().to_str().unwrap();
    let (code, stdout, _) = router(&["check", dir]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("open.yaml:3:19: warning: verify scheme `none`"), "{stdout}");
    let (code, _, _) = router(&["check", "--strict", dir]);
    assert_eq!(code, 1);
    let (code, _, stderr) = router(&["check", "no/such/dir"]);
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_store_commands_read_a_running_router_and_offline() {
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(&repo().join("routes.d"), data.path()).await;
    // `router send` signs seed 001's example as Whop would, with the route's secret.
    let base = format!("http://{}", r.addr);
    let (code, out, err) =
        tokio::task::block_in_place(|| router(&["send", "whop-members", "membership.went_valid", "--url", &base]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("webhook-signature: v1,") && out.contains("-> 200 OK"), "{out}");
    let records = r.rt.data.records.clone();
    r.eventually("member record", || records.get("members", "user_xxx").unwrap()).await;
    let (code, out, _) =
        tokio::task::block_in_place(|| router(&["send", "whop-members", "payment.succeeded", "--url", &base]));
    assert_eq!(code, 0);
    assert!(out.contains(r#""filtered":true"#), "{out}");

    let d = data.path().to_str().unwrap().to_string();
    let admin = r.admin.to_string();
    let online = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data", &d, "--admin", &admin, "--json"]);
        router(&all)
    };
    let (code, out, err) = tokio::task::block_in_place(|| online(&["store", "get", "members", "user_xxx"]));
    assert_eq!(code, 0, "{err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&rec["status"], &rec["engagement_score"]), (&json!("active"), &json!(100)));
    let (_, list, _) = tokio::task::block_in_place(|| online(&["events", "list", "--status", "delivered"]));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert!(list[0]["event_id"].as_str().unwrap().starts_with("msg_"), "{list}");
    // `--type` takes a route's patterns, through the admin API and offline.
    let types = |list: &str| -> Vec<String> {
        let list: Value = serde_json::from_str(list).unwrap();
        list.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap().to_string()).collect()
    };
    let (code, list, err) = tokio::task::block_in_place(|| online(&["events", "list", "--type", "*.went_valid"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&list), ["membership.went_valid"]);
    let (_, list, _) = tokio::task::block_in_place(|| online(&["events", "list", "--type", "*.accessed"]));
    assert_eq!(types(&list), Vec::<String>::new());
    let (code, _, err) = tokio::task::block_in_place(|| online(&["events", "list", "--type", "a b"]));
    assert_eq!(code, 2, "a bad pattern cannot run: {err}");
    assert!(err.contains("--type") && err.contains("cannot appear"), "{err}");
    let (_, show, _) = tokio::task::block_in_place(|| online(&["events", "show", "1"]));
    let show: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["payload"]["data"]["user_id"], "user_xxx");
    assert!(!show.to_string().contains("ws_local_trial_secret"), "the secret must never be shown");
    let (code, _, err) = tokio::task::block_in_place(|| online(&["store", "get", "members", "nobody"]));
    assert_eq!(code, 1, "{err}");
    drop(records); // it holds the data directory's lock
    r.stop().await;

    // Offline: the same answers straight from the data directory.
    let (code, out, err) = router(&["store", "list", "members", "--where", "status=active", "--data", &d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let offline: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(offline[0]["key"], "user_xxx");
    assert_eq!(offline[0]["value"]["email"], "member@example.com");
    let (code, out, err) = router(&["events", "list", "--type", "membership.*", "--data", &d, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 1);
    let (code, out, _) = router(&["events", "show", "1", "--data", &d, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["delivery_records"][0]["status"], "delivered");
}

#[test]
fn sigterm_stops_gracefully_and_keeps_the_data() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(router_bin())
        .current_dir(repo())
        .args(["serve", "--admin-listen", "off", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut sent = (-1, String::new(), String::new());
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            sent = router(&["send", "whop-members", "membership.went_valid", "--url", &base]);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(sent.0, 0, "{}{}", sent.1, sent.2);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("Shutting down") && log.contains("Stopped."), "{log}");
    let d = data.path().to_str().unwrap();
    let (code, out, err) = router(&["store", "get", "members", "user_xxx", "--data", d, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["status"], "active");
}

#[test]
fn secret_new_prints_the_schemes_format() {
    use base64::Engine;
    let (code, out, _) = router(&["secret", "new", "--scheme", "standard-webhooks"]);
    assert_eq!(code, 0);
    let key = out.trim().strip_prefix("whsec_").expect("whsec_ prefix");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(key).unwrap().len(), 32);
    let (_, whop, _) = router(&["secret", "new", "--scheme", "whop"]);
    assert!(whop.trim().starts_with("ws_") && whop.trim().len() == 3 + 64, "{whop}");
    let (_, other, _) = router(&["secret", "new", "--scheme", "github"]);
    assert_ne!(other, router(&["secret", "new", "--scheme", "github"]).1, "secrets are random");
    assert_eq!(router(&["secret", "new", "--scheme", "nope"]).0, 2);
}

/// Every route file the project ships: the default routes, the examples, the benchmarks'.
fn shipped_route_files() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![repo().join("routes.d")];
    for parent in ["examples", "scripts"] {
        for e in std::fs::read_dir(repo().join(parent)).unwrap() {
            let p = e.unwrap().path();
            // Examples keep theirs in routes.d/; benchmark routes sit in their own dir.
            let dir = if p.join("routes.d").is_dir() { p.join("routes.d") } else { p };
            if dir.is_dir() && !dir.ends_with("seed-001-whop-members/routes.d") {
                dirs.push(dir);
            }
        }
    }
    let mut files: Vec<_> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn schema_is_generated_from_the_loader_types_and_current() {
    let (code, out, err) = router(&["schema"]);
    assert_eq!(code, 0, "{err}");
    let committed = std::fs::read_to_string(repo().join("docs/route-file.schema.json")).unwrap();
    assert_eq!(
        out, committed,
        "docs/route-file.schema.json is stale: run `router schema > docs/route-file.schema.json`"
    );
    let schema: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["$defs"]["RawRule"]["properties"]["when"]["description"].as_str().unwrap().contains("Rhai"));
    // Editors complete the closed sets from the very lists the compiler accepts.
    assert_eq!(schema["$id"], webhook_router::config::raw::SCHEMA_ID);
    let names = |v: &Value| -> Vec<String> { serde_json::from_value(v["enum"].clone()).unwrap() };
    let (verify, sink) = (&schema["$defs"]["RawVerify"]["properties"], &schema["$defs"]["RawSink"]["properties"]);
    assert_eq!(names(&verify["scheme"]), webhook_router::verify::presets::SCHEMES);
    assert_eq!(names(&sink["type"]), webhook_router::sink::SINK_TYPES);
    assert_eq!(names(&sink["mode"]), webhook_router::sink::StoreMode::NAMES);
    assert_eq!(names(&sink["method"]), webhook_router::sink::http::METHODS);
}

#[test]
fn shipped_route_files_validate_against_the_schema() {
    let files = shipped_route_files();
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema="), "{} lacks the $schema line", f.display());
    }
    let status = Command::new(repo().join("scripts/setup-signers.sh")).status().unwrap();
    assert!(status.success());
    let validate = |files: &[std::path::PathBuf]| {
        Command::new(repo().join("target/signers/venv/bin/python"))
            .arg(repo().join("tests/signers/validate_schema.py"))
            .arg(repo().join("docs/route-file.schema.json"))
            .args(files)
            .output()
            .unwrap()
    };
    let out = validate(&files);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // The validator does reject what the loader rejects.
    let broken = validate(&[repo().join("tests/fixtures/invalid/02-unknown-key.yaml")]);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stdout).contains("'pth' was unexpected"));
    let typo = TempRoutes::new(&[(
        "typo.yaml",
        "route: typo\npath: /typo\nverify: { scheme: strip, secret: x }\nsinks:\n  s: { type: htp, mode: upsrt }\n",
    )]);
    let out = validate(&[typo.path().join("typo.yaml")]);
    let said = String::from_utf8_lossy(&out.stdout);
    for value in ["'strip' is not one of", "'htp' is not one of", "'upsrt' is not one of"] {
        assert!(said.contains(value), "{value}: {said}");
    }
}

#[test]
fn route_tests_run_in_check_and_failures_show_a_diff() {
    let (code, out, _) = router(&["check", "routes.d"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("route tests: 6 passed, 0 failed"), "{out}");

    let route = "route: orders\npath: /orders/{shop}\nverify: { scheme: bearer, token: t }\nevent: { type: $.type }\n\
                 rules:\n  - on: order.*\n    map: { shop: param:shop, total: $.total, status: placed }\n    \
                 to: [{ sink: orders, key: $.id }]\nsinks:\n  orders: { type: store }\n";
    let tests = r#"tests:
  - name: an order is stored
    route: orders
    request: { params: { shop: s1 }, body: { type: order.created, id: o1, total: 12 } }
    expect:
      deliveries: [{ sink: orders, document: { shop: s1, total: 12 } }]
      records: [{ tree: orders, key: o1, record: { status: placed } }]
  - name: a wrong expectation
    route: orders
    request: { params: { shop: s1 }, body: { type: order.created, id: o2, total: 5 } }
    expect:
      records: [{ tree: orders, key: o2, record: { total: 7, status: placed } }]
"#;
    let dir = TempRoutes::new(&[("orders.yaml", route)]);
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/orders.yaml"), tests).unwrap();
    let (code, out, _) = router(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let file = dir.path().join("tests/orders.yaml");
    let expected = format!(
        "{}:8:5: error: test \"a wrong expectation\" failed\n  record orders/o2:\n  - $.total: expected 7\n  + $.total: actual   5\n\
         route tests: 1 passed, 1 failed\n",
        file.display()
    );
    assert!(out.ends_with(&expected), "{out}");
}

#[test]
fn send_never_prints_the_credential_it_sends() {
    let routes = "examples/seed-003-whatsapp/routes.d";
    let (_, out, _) = router(&["send", "whatsapp", "qr", "--routes", routes, "--url", "http://127.0.0.1:1"]);
    assert!(out.contains("authorization: [redacted]"), "{out}");
    assert!(!out.contains("local-trial-token"), "{out}");
}

#[test]
fn the_admin_api_requires_its_token_and_never_shows_it() {
    const TOKEN: &str = "admin-secret-4f1c";
    let data = tempfile::tempdir().unwrap();
    let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (web, admin) = (port(), port());
    // Off loopback without a token: refused before anything binds.
    let (code, _, err) = router(
        &["serve", "--admin-listen", "0.0.0.0:0", "--listen", "127.0.0.1:0", "--data"]
            .iter()
            .copied()
            .chain([data.path().to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("--admin-token"), "{err}");

    let child = Command::new(router_bin())
        .current_dir(repo())
        .args(["serve", "--listen", &format!("127.0.0.1:{web}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--data")
        .arg(data.path())
        .env("ROUTER_ADMIN_TOKEN", TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let get = |token: Option<&str>| -> u16 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) else { return 0 };
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
    };
    for _ in 0..300 {
        if get(Some(TOKEN)) == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(get(Some(TOKEN)), 200);
    assert_eq!(get(None), 401);
    assert_eq!(get(Some("wrong")), 401);

    // The CLI reads through it with the token, and says what is missing without.
    let d = data.path().to_str().unwrap();
    let addr = format!("127.0.0.1:{admin}");
    let (code, out, err) = router(&["events", "list", "--data", d, "--admin", &addr, "--admin-token", TOKEN]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = router(&["events", "list", "--data", d, "--admin", &addr]);
    assert_ne!(code, 0);
    assert!(err.contains("ROUTER_ADMIN_TOKEN") && !err.contains(TOKEN), "{err}");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
}

/// `router completions` prints scripts the shells accept, and `router man`
/// a man page naming every command: what a package installs.
#[test]
fn completions_and_man_page_are_what_packagers_install() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, stderr) = router(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(script.contains("serve") && script.contains("admin-listen"), "{shell}: {script}");
    }
    let (_, bash, _) = router(&["completions", "bash"]);
    let syntax = Command::new("bash").args(["-n", "-c", &bash]).output().expect("bash runs");
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
    let (code, page, _) = router(&["man"]);
    assert_eq!(code, 0);
    assert!(page.starts_with(".ie") || page.contains(".TH router 1"), "{page}");
    for section in [".TH router 1", ".SH NAME", ".SH SYNOPSIS", "serve", "check", "completions"] {
        assert!(page.contains(section), "man page lacks {section}");
    }
    // One page per command, named as man(1) finds them.
    let pages = tempfile::tempdir().unwrap();
    let (code, _, stderr) = router(&["man", "--dir", pages.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["router.1", "router-serve.1", "router-events-list.1", "router-tap.1", "router-completions.1"] {
        let page = std::fs::read_to_string(pages.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains(".SH NAME"), "{name}");
    }
    assert!(!pages.path().join("router-help.1").exists(), "no page for clap's own help command");
    let (code, _, stderr) = router(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {stderr}");
}
