//! A real browser: headless Chromium (Debian's, installed by
//! scripts/setup-browser.sh) opens seed 003's session page, a `qr` webhook
//! is posted, and the QR image appears through the page's live stream.
//! The dashboard is driven the same way. Screenshots are kept in
//! target/artifacts/ for a human to look at.

use crate::util::{repo, TestRouter};
use std::collections::HashMap;
use std::process::Command;

/// Installs the browser and the scripts (once), runs `script` from
/// tests/signers with `args` off the async workers, and returns the JSON
/// line it prints; fails the test with its output if it fails.
async fn run_in_browser(script: &str, args: Vec<String>) -> serde_json::Value {
    for setup in ["scripts/setup-signers.sh", "scripts/setup-browser.sh"] {
        let status = Command::new(repo().join(setup)).status().unwrap();
        assert!(status.success(), "{setup} failed");
    }
    let script = repo().join("target/signers").join(script);
    let out = tokio::task::spawn_blocking(move || Command::new("node").arg(script).args(args).output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_page_shows_a_new_qr_code_live() {
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
    let result =
        run_in_browser("browser-qr.mjs", vec![page, base, "browser-token".into(), shot.display().to_string()]).await;
    assert_eq!(result["status"], "qr_generated");
    let png = std::fs::read(artifacts.join("seed-003-qr.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    r.stop().await;
}

/// The dashboard in a real browser: sign in with the admin token, see a
/// failed delivery, click Retry against a receiver that now answers 200,
/// and see the event delivered. Screenshots go to target/artifacts/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_retries_a_failed_delivery() {
    use crate::util::{post, settled, test_limits, Receiver, Reply, TempRoutes};
    use webhook_router::storage::DeliveryStatus;
    use webhook_router::verify::{BearerToken, Secret};
    let hook = Receiver::start(vec![Reply::Status(422)]).await;
    let routes = TempRoutes::new(&[(
        "orders.yaml",
        "route: orders\npath: /hooks/orders\nverify: { scheme: bearer, token: t }\nevent: { type: $.type, id: $.id }\n\
         rules:\n  - on: \"*\"\n    to: [{ sink: crm }]\nsinks:\n  crm: { type: http, url: \"${CRM}\", retry: { attempts: 1 } }\n",
    )]);
    let data = tempfile::tempdir().unwrap();
    let env = HashMap::from([("CRM".to_string(), hook.url("/crm"))]);
    let r = TestRouter::start_configured(routes.path(), data.path(), env, test_limits(), |s| {
        s.admin_token = Some(BearerToken::new(None, vec![Secret::new("dash-token".to_string())]));
    })
    .await;
    let body = serde_json::json!({"id": "evt_browser", "type": "order.paid", "total": 12}).to_string();
    let (status, answer) = post(&r.url("/hooks/orders"), "t", &body, &[]).await;
    assert_eq!(status, 200, "{answer}");
    let id: u64 = answer["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Failed);

    let artifacts = repo().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let admin = format!("http://{}/", r.admin);
    let args = vec![admin, "dash-token".into(), id.to_string(), "orders".into(), artifacts.display().to_string()];
    let result = run_in_browser("browser-dashboard.mjs", args).await;
    assert_eq!(result["status"], "delivered");
    assert_eq!(result["failed_before"], "1");
    assert_eq!(result["external_requests"], serde_json::json!([]), "the page loads nothing from elsewhere");
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(hook.count(), 2);
    for shot in ["dashboard-failed.png", "dashboard-delivered.png"] {
        assert_eq!(&std::fs::read(artifacts.join(shot)).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    }
    r.stop().await;
}
