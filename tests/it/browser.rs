//! A real browser: headless Chromium (Debian's, installed by
//! scripts/setup-browser.sh) opens seed 003's session page, a `qr` webhook
//! is posted, and the QR image appears through the page's live stream.
//! The screenshot is kept in target/artifacts/ for a human to look at.

use crate::util::{repo, TestRouter};
use std::collections::HashMap;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_page_shows_a_new_qr_code_live() {
    for setup in ["scripts/setup-signers.sh", "scripts/setup-browser.sh"] {
        let status = Command::new(repo().join(setup)).status().unwrap();
        assert!(status.success(), "{setup} failed");
    }
    let routes = repo().join("examples/seed-003-whatsapp/routes.d");
    let data = tempfile::tempdir().unwrap();
    let env = HashMap::from([("WHATSAPP_WEBHOOK_TOKEN".to_string(), "browser-token".to_string())]);
    let r = TestRouter::start_with(&routes, data.path(), env).await;
    let base = r.url("");
    let page = format!(
        "file://{}?session=browser-1&base={base}",
        repo().join("examples/seed-003-whatsapp/page/index.html").display()
    );
    let artifacts = repo().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("seed-003-qr.png");
    let _ = std::fs::remove_file(&shot);
    let script = repo().join("target/signers/browser-qr.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(script).args([&page, &base, "browser-token"]).arg(&shot).output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["status"], "qr_generated");
    let png = std::fs::read(artifacts.join("seed-003-qr.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    r.stop().await;
}
