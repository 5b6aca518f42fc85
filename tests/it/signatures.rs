//! Every signature preset against requests signed by the providers' own
//! SDKs (tests/signers, installed by scripts/setup-signers.sh), never by the
//! router's signing code.

use crate::util::{client, now, sdk_sign, TempRoutes, TestRouter};
use serde_json::{json, Value};

/// One route file per scheme; secrets listed old first, new second (rotation).
fn route_files() -> Vec<(String, String)> {
    let route = |name: &str, verify: String, event_type: &str| {
        (
            format!("{name}.yaml"),
            format!("route: {name}\npath: /hooks/{name}\nverify:\n{verify}\nevent: {{ type: {event_type} }}\n"),
        )
    };
    vec![
        route("stripe", "  scheme: stripe\n  secret: [whsec_old_5fJ2kq, whsec_new_9xQ4pz]".into(), "$.type"),
        route("standard", format!("  scheme: standard-webhooks\n  secret: [{SW_OLD}, {SW_NEW}]"), "$.type"),
        route("svix", format!("  scheme: svix\n  secret: [{SW_OLD}, {SW_NEW}]"), "$.type"),
        route("whop", "  scheme: whop\n  secret: [ws_old_a1b2c3, ws_new_d4e5f6]".into(), "$.type"),
        route("github", "  scheme: github\n  secret: [old-gh-secret, new-gh-secret]\n  legacy: true".into(), "$.type"),
        route("shopify", "  scheme: shopify\n  secret: [old-shop-secret, new-shop-secret]".into(), "$.type"),
        route("slack", "  scheme: slack\n  secret: [oldslacksecret, newslacksecret]".into(), "$.command"),
        route("close", format!("  scheme: close\n  secret: [{CLOSE_OLD}, {CLOSE_NEW}]"), "$.type"),
        route(
            "meta",
            "  scheme: meta\n  secret: [old-app-secret, new-app-secret]\n  verify_token: meatyhamhock".into(),
            "$.type",
        ),
        route(
            "twilio",
            "  scheme: twilio\n  secret: [oldauthtoken, newauthtoken]\n  public_url: https://router.example.com".into(),
            "query:kind",
        ),
        route("paddle", "  scheme: paddle\n  secret: [pdl_ntfset_old, pdl_ntfset_new]".into(), "$.type"),
        route(
            "custom",
            "  scheme: hmac\n  secret: [old-custom, new-custom]\n  header: X-Custom-Signature\n  algorithm: sha512\n  \
             encoding: base64\n  prefix: \"sha512=\"\n  payload: \"{timestamp}.{header:X-Tenant}.{body}\"\n  \
             timestamp_header: X-Custom-Timestamp\n  tolerance: 2m"
                .into(),
            "$.type",
        ),
    ]
}

const SW_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_NEW: &str = "whsec_bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA==";
const CLOSE_OLD: &str = "058bfb6a3d8cfdc4da7c3be5901b16ae11da982b46a25fb2cd7016e97a140a1c";
const CLOSE_NEW: &str = "9a3c5f0e1d2b4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d";

/// How one preset is exercised.
struct Case {
    route: &'static str,
    /// Scheme name for the signer script.
    signer: &'static str,
    node: bool,
    old: &'static str,
    new: &'static str,
    /// A well-formed secret the route does not know.
    wrong: &'static str,
    timestamped: bool,
    form: bool,
}

async fn post(r: &TestRouter, path: &str, body: &str, headers: &[(String, String)], form: bool) -> u16 {
    let mut req = client()
        .post(r.url(path))
        .header("content-type", if form { "application/x-www-form-urlencoded" } else { "application/json" })
        .body(body.to_string());
    for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with('_')) {
        req = req.header(k.as_str(), v.as_str());
    }
    req.send().await.unwrap().status().as_u16()
}

/// The router with one route per scheme; the temp dirs live as long as the returned guards.
async fn start_catalog() -> (TempRoutes, tempfile::TempDir, TestRouter) {
    let files = route_files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let routes = TempRoutes::new(&refs);
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start(routes.path(), data.path()).await;
    (routes, data, r)
}

async fn check(case: Case) {
    let (_routes, _data, r) = start_catalog().await;
    let t = now();
    let body = |n: u32| {
        if case.form {
            format!("command=%2Fdeploy&text=n{n}&kind=call")
        } else {
            json!({"id": format!("evt_{}_{n}", case.route), "type": "test.event", "n": n}).to_string()
        }
    };
    let path = if case.signer.starts_with("twilio") {
        format!("/hooks/{}?kind=call", case.route)
    } else {
        format!("/hooks/{}", case.route)
    };
    let url = format!("https://router.example.com{path}");
    let req = |secret: &str, n: u32, ts: i64| json!({"scheme": case.signer, "secret": secret, "body": body(n), "timestamp": ts, "id": format!("msg_{n}"), "url": url});
    let mut batch = vec![req(case.new, 1, t), req(case.old, 2, t), req(case.wrong, 3, t), req(case.new, 4, t)];
    if case.timestamped {
        batch.push(req(case.new, 5, t - 3600));
        batch.push(req(case.new, 6, t + 3600));
    }
    let mut signed = sdk_sign(case.node, &batch);
    // The metadata headers a real delivery carries (the presets' default type and id).
    for (n, headers) in signed.iter_mut().enumerate() {
        match case.route {
            "github" => headers
                .extend([("X-GitHub-Delivery".into(), format!("d-{n}")), ("X-GitHub-Event".into(), "push".into())]),
            "shopify" => headers.extend([
                ("X-Shopify-Webhook-Id".into(), format!("w-{n}")),
                ("X-Shopify-Topic".into(), "orders/create".into()),
            ]),
            _ => {}
        }
    }
    // twilio-json signs a URL with ?bodySHA256=...: post to that exact path.
    let path_for = |h: &[(String, String)]| match h.iter().find(|(k, _)| k == "_url") {
        Some((_, u)) => u.trim_start_matches("https://router.example.com").to_string(),
        None => path.clone(),
    };
    let route = case.route;
    assert_eq!(post(&r, &path_for(&signed[0]), &body(1), &signed[0], case.form).await, 200, "{route}: new secret");
    assert_eq!(
        post(&r, &path_for(&signed[1]), &body(2), &signed[1], case.form).await,
        200,
        "{route}: old secret (rotation)"
    );
    assert_eq!(post(&r, &path_for(&signed[2]), &body(3), &signed[2], case.form).await, 401, "{route}: unknown secret");
    let tampered = body(4).replace('4', "5");
    assert_eq!(post(&r, &path_for(&signed[3]), &tampered, &signed[3], case.form).await, 401, "{route}: tampered body");
    assert_eq!(post(&r, &path, &body(4), &[], case.form).await, 401, "{route}: no signature");
    if case.timestamped {
        assert_eq!(post(&r, &path_for(&signed[4]), &body(5), &signed[4], case.form).await, 401, "{route}: an hour old");
        assert_eq!(
            post(&r, &path_for(&signed[5]), &body(6), &signed[5], case.form).await,
            401,
            "{route}: an hour ahead"
        );
    }
    let accepted = r.rt.stats.report([route]).routes[route].accepted;
    assert_eq!(accepted, 2, "{route}: exactly the two valid requests were accepted");
    r.stop().await;
}

fn case(route: &'static str, signer: &'static str, old: &'static str, new: &'static str, wrong: &'static str) -> Case {
    Case { route, signer, node: false, old, new, wrong, timestamped: true, form: false }
}

#[tokio::test]
async fn stripe_sdk() {
    check(case("stripe", "stripe", "whsec_old_5fJ2kq", "whsec_new_9xQ4pz", "whsec_other_1")).await;
}

#[tokio::test]
async fn standard_webhooks_sdk() {
    check(case("standard", "standard-webhooks", SW_OLD, SW_NEW, "whsec_c29tZS1vdGhlci1zZWNyZXQtYnl0ZXM=")).await;
}

#[tokio::test]
async fn svix_sdk_with_svix_headers() {
    check(case("svix", "svix", SW_OLD, SW_NEW, "whsec_c29tZS1vdGhlci1zZWNyZXQtYnl0ZXM=")).await;
}

#[tokio::test]
async fn whop_standard_webhooks_form() {
    check(case("whop", "whop", "ws_old_a1b2c3", "ws_new_d4e5f6", "ws_other_999")).await;
}

#[tokio::test]
async fn whop_legacy_form() {
    check(case("whop", "whop-legacy", "ws_old_a1b2c3", "ws_new_d4e5f6", "ws_other_999")).await;
}

#[tokio::test]
async fn github_octokit() {
    check(Case { node: true, timestamped: false, ..case("github", "github", "old-gh-secret", "new-gh-secret", "x") })
        .await;
}

#[tokio::test]
async fn github_legacy_sha1() {
    check(Case { timestamped: false, ..case("github", "github-sha1", "old-gh-secret", "new-gh-secret", "x") }).await;
}

#[tokio::test]
async fn shopify_api_helper() {
    check(Case {
        node: true,
        timestamped: false,
        ..case("shopify", "shopify", "old-shop-secret", "new-shop-secret", "x")
    })
    .await;
}

#[tokio::test]
async fn slack_sdk_form_body() {
    check(Case { form: true, ..case("slack", "slack", "oldslacksecret", "newslacksecret", "otherslacksecret") }).await;
}

#[tokio::test]
async fn close_independent_hmac() {
    check(case("close", "close", CLOSE_OLD, CLOSE_NEW, "00112233445566778899aabbccddeeff")).await;
}

#[tokio::test]
async fn meta_signature_via_octokit() {
    check(Case { node: true, timestamped: false, ..case("meta", "meta", "old-app-secret", "new-app-secret", "x") })
        .await;
}

#[tokio::test]
async fn twilio_sdk_form() {
    check(Case { timestamped: false, form: true, ..case("twilio", "twilio", "oldauthtoken", "newauthtoken", "x") })
        .await;
}

#[tokio::test]
async fn twilio_sdk_json_body_hash() {
    check(Case { timestamped: false, ..case("twilio", "twilio-json", "oldauthtoken", "newauthtoken", "x") }).await;
}

#[tokio::test]
async fn paddle_independent_hmac() {
    check(case("paddle", "paddle", "pdl_ntfset_old", "pdl_ntfset_new", "pdl_ntfset_other")).await;
}

#[tokio::test]
async fn generic_hmac_independent_computation() {
    check(case("custom", "custom-hmac", "old-custom", "new-custom", "other-custom")).await;
}

#[tokio::test]
async fn meta_handshake_and_hostile_headers() {
    let (_routes, _data, r) = start_catalog().await;
    let hs = "/hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=";
    let ok = client().get(r.url(&format!("{hs}meatyhamhock"))).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(client().get(r.url(&format!("{hs}wrong"))).send().await.unwrap().status(), 403);

    let send = |headers: Vec<(&'static str, Vec<u8>)>| {
        let r = &r;
        async move {
            let mut req = client().post(r.url("/hooks/stripe")).body("{\"type\":\"x\"}");
            for (k, v) in headers {
                req = req.header(k, reqwest::header::HeaderValue::from_bytes(&v).unwrap());
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let good_shape = format!("t={},v1={}", now(), "a".repeat(64));
    assert_eq!(
        send(vec![
            ("stripe-signature", good_shape.clone().into_bytes()),
            ("stripe-signature", good_shape.into_bytes())
        ])
        .await,
        401
    );
    assert_eq!(
        send(vec![("stripe-signature", format!("t={},v1={}", now(), "f".repeat(20_000)).into_bytes())]).await,
        401
    );
    assert_eq!(send(vec![("stripe-signature", "t=1,v1=\u{e9}\u{e9}".as_bytes().to_vec())]).await, 401);
    assert_eq!(send(vec![("stripe-signature", b"garbage".to_vec())]).await, 401);
    assert_eq!(send(vec![("stripe-signature", b"t=notanumber,v1=00".to_vec())]).await, 401);
    assert_eq!(send(vec![("x-hub-signature-256", b"sha256=zz".to_vec())]).await, 401);
    r.stop().await;
}

#[tokio::test]
async fn slack_url_verification_is_answered_when_signed() {
    let (_routes, _data, r) = start_catalog().await;
    // Slack's documented example body.
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let signed =
        sdk_sign(false, &[json!({"scheme": "slack", "secret": "newslacksecret", "body": body, "timestamp": now()})]);
    let mut req = client().post(r.url("/hooks/slack")).header("content-type", "application/json").body(body);
    for (k, v) in &signed[0] {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer, json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}));
    assert!(r.rt.data.log.list(&Default::default()).unwrap().is_empty(), "a URL check is not an event");
    let unsigned = client()
        .post(r.url("/hooks/slack"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    r.stop().await;
}
