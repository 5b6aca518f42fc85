//! Under systemd: the binary speaks `sd_notify` to a `NOTIFY_SOCKET` the
//! test owns (READY, RELOADING then READY, WATCHDOG, STOPPING), and the
//! shipped unit passes `systemd-analyze verify`.

use crate::util::{repo, router_bin, serve_command, TempRoutes};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Messages received until one contains `want`, within 10 s.
fn until(socket: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l == want);
            seen.push(message);
            if found {
                return true;
            }
        }
    }
    false
}

#[test]
fn the_router_tells_systemd_ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let routes = TempRoutes::new(&[(
        "a.yaml",
        "route: a\npath: /a\nverify: { scheme: bearer, token: t }\nevents: [\"*\"]\nrules:\n  - on: \"*\"\n    to: [{ sink: a-store, key: $.id }]\nsinks:\n  a-store: { type: store }\n",
    )]);
    let mut child = serve_command(routes.path(), &dir.path().join("data"), "127.0.0.1:0")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    assert!(until(&socket, "READY=1", &mut seen), "READY=1 once it listens: {seen:?}");
    assert!(seen.last().unwrap().contains("STATUS=serving 1 route(s)"), "{seen:?}");
    assert!(until(&socket, "WATCHDOG=1", &mut seen), "WATCHDOG=1 with WatchdogSec set: {seen:?}");

    let signal = |name: &str| Command::new("kill").args([name, &child.id().to_string()]).status().unwrap();
    assert!(signal("-HUP").success());
    seen.clear();
    assert!(until(&socket, "RELOADING=1", &mut seen), "RELOADING=1 on SIGHUP: {seen:?}");
    let reloading = seen.last().unwrap().clone();
    assert!(reloading.contains("MONOTONIC_USEC="), "systemd 253 wants the time beside it: {reloading}");
    assert!(until(&socket, "READY=1", &mut seen), "READY=1 after the reload: {seen:?}");

    assert!(signal("-TERM").success());
    assert!(until(&socket, "STOPPING=1", &mut seen), "STOPPING=1 on SIGTERM: {seen:?}");
    assert!(child.wait().unwrap().success());
}

/// The shipped unit, with `ExecStart` pointed at this build, is one
/// `systemd-analyze verify` accepts without a word (it only warns on, say,
/// a misspelt `Type=`, so any output fails the test).
#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo().join("packaging/router.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=router",
        "ProtectSystem=strict",
        "StateDirectory=router",
        "WatchdogSec=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit has {line}");
    }
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed here: only the unit's lines were checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("router.service");
    std::fs::write(&local, unit.replace("/usr/bin/router", router_bin().to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&local).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
