//! The Debian package: `scripts/build-deb.sh` packages this build (the
//! release profile, `--no-build`, so the test costs no second compile) and
//! the test reads the .deb back with dpkg-deb: what it installs and where,
//! its conffiles, its maintainer scripts, and that the binary and the route
//! files it ships work from the unpacked tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::repo;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn build_deb(out: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    assert!(
        target.join("release/router").exists(),
        "the package test packages target/release/router: run it under `cargo nextest run --release`"
    );
    run(Command::new(repo().join("scripts/build-deb.sh"))
        .args(["--profile", "release", "--no-build", "--fast", "-o"])
        .arg(out));
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package: {debs:?}");
    debs.into_iter().next().unwrap()
}

#[test]
fn the_debian_package_installs_the_router_as_a_service() {
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());
    let name = deb.file_name().unwrap().to_str().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(name.starts_with(&format!("webhook-router_{version}-1_")), "{name}");

    // What it installs, with the modes that matter.
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let mode_of = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("the package lacks /{path}:\n{listing}"))
    };
    assert_eq!(mode_of("usr/bin/router"), "-rwxr-xr-x");
    // Secrets go in /etc/default/router: root's only.
    assert_eq!(mode_of("etc/default/router"), "-rw-------");
    for path in [
        "usr/lib/systemd/system/router.service",
        "usr/lib/sysusers.d/webhook-router.conf",
        "usr/lib/tmpfiles.d/router.conf",
        "usr/share/bash-completion/completions/router",
        "usr/share/zsh/vendor-completions/_router",
        "usr/share/fish/vendor_completions.d/router.fish",
        "usr/share/man/man1/router.1.gz",
        "usr/share/man/man1/router-serve.1.gz",
        "usr/share/man/man1/router-events-list.1.gz",
        "etc/router/routes.d/whop-members.yaml",
        "etc/router/routes.d/sinks.yaml",
        "etc/router/routes.d/scripts/engagement.rhai",
        "etc/router/routes.d/tests/whop-members.yaml",
        "etc/router/routes.d/tests/payloads/membership.went_valid.json",
        "usr/share/webhook-router/route-file.schema.json",
        "usr/share/doc/webhook-router/copyright",
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }

    // The control file, and every file in /etc kept across upgrades.
    let control = run(Command::new("dpkg-deb").args(["--field"]).arg(&deb));
    for field in ["Package: webhook-router", "Section: net", "Depends: libc6"] {
        assert!(control.contains(field), "control lacks {field}:\n{control}");
    }
    let scripts = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(scripts.path()));
    let conffiles = std::fs::read_to_string(scripts.path().join("conffiles")).unwrap();
    for path in ["/etc/router/routes.d/whop-members.yaml", "/etc/router/routes.d/sinks.yaml", "/etc/default/router"] {
        assert!(conffiles.lines().any(|l| l == path), "{path} is not a conffile:\n{conffiles}");
    }

    // postinst makes the user and the state directory, enables the unit and
    // starts it; removal stops it and never deletes /var/lib/router.
    let postinst = std::fs::read_to_string(scripts.path().join("postinst")).unwrap();
    for step in [
        "systemd-sysusers",
        "webhook-router.conf",
        "systemd-tmpfiles --create router.conf",
        "deb-systemd-helper enable router.service",
        "deb-systemd-invoke",
    ] {
        assert!(postinst.contains(step), "postinst lacks {step}:\n{postinst}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        let path = scripts.path().join(script);
        run(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("/var/lib/router"), "{script} must not touch the event log:\n{text}");
    }
    assert!(std::fs::read_to_string(scripts.path().join("prerm"))
        .unwrap()
        .contains("deb-systemd-invoke stop router.service"));

    // Unpacked, the tree is what the unit runs: the service user and its
    // directory, and route files the packaged binary accepts as shipped.
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(root.path()));
    let at = |path: &str| root.path().join(path);
    let unit = std::fs::read_to_string(at("usr/lib/systemd/system/router.service")).unwrap();
    for line in [
        "ExecStart=/usr/bin/router serve --routes /etc/router/routes.d --data /var/lib/router",
        "User=router",
        "StateDirectory=router",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let sysusers = std::fs::read_to_string(at("usr/lib/sysusers.d/webhook-router.conf")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u router ") && l.ends_with(" /var/lib/router")), "{sysusers}");
    let tmpfiles = std::fs::read_to_string(at("usr/lib/tmpfiles.d/router.conf")).unwrap();
    assert!(tmpfiles.lines().any(|l| l == "d /var/lib/router 0700 router router -"), "{tmpfiles}");

    let router = at("usr/bin/router");
    let said = run(Command::new(&router).arg("--version"));
    assert!(said.contains(version), "{said}");
    // `check` runs the shipped route tests too (routes.d/tests).
    let checked = run(Command::new(&router)
        .args(["check", "--strict"])
        .arg(at("etc/router/routes.d"))
        .env("WHOP_WEBHOOK_SECRET", "ws_package_test"));
    assert!(checked.contains("route tests: 6 passed, 0 failed"), "{checked}");

    // The man pages are gzipped roff of this binary's commands.
    let page = run(Command::new("gzip").arg("-dc").arg(at("usr/share/man/man1/router-serve.1.gz")));
    assert!(page.contains(".TH router-serve 1") && page.contains("ROUTER_LISTEN"), "{page}");
    let bash = std::fs::read_to_string(at("usr/share/bash-completion/completions/router")).unwrap();
    assert!(bash.contains("complete -F _router") && bash.contains("tap"), "bash completion");
}
