//! The seeds' handlers, replaced by the shipped examples: each test starts
//! the router on an example's routes directory, posts the seed's payloads
//! (signed by the provider's SDK where the route verifies signatures) and
//! checks what the seed's handler would have written or sent.

use crate::util::{client, now, post, repo, sdk_sign, settled, Receiver, TestRouter};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use webhook_router::storage::DeliveryStatus;

fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

fn payload(example_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(example_dir.join("payloads").join(format!("{name}.json"))).unwrap()
}

fn env(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Signs each body with the provider SDK (one signer run), one second apart.
fn signed(scheme: &str, secret: &str, bodies: &[String]) -> Vec<Vec<(String, String)>> {
    let start = now() - bodies.len() as i64;
    let requests: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"scheme": scheme, "secret": secret, "body": b, "timestamp": start + i as i64, "id": format!("msg_{i}")}))
        .collect();
    sdk_sign(false, &requests)
}

/// Posts one signed request; returns the status and the JSON answer.
async fn send(r: &TestRouter, path: &str, body: &str, headers: &[(String, String)]) -> (u16, Value) {
    let mut req = client().post(r.url(path)).header("content-type", "application/json").body(body.to_string());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// Posts, expects 200 with a new event, and waits until its deliveries settle.
async fn accept(r: &TestRouter, path: &str, body: &str, headers: &[(String, String)]) -> Vec<DeliveryStatus> {
    let (status, answer) = send(r, path, body, headers).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap_or_else(|| panic!("no event id in {answer}")).parse().unwrap();
    settled(r, id).await.iter().map(|d| d.status).collect()
}

fn record(r: &TestRouter, tree: &str, key: &str) -> Option<Value> {
    r.rt.data.records.get(tree, key).unwrap()
}

#[tokio::test]
async fn seed_001_engagement_rules() {
    const SECRET: &str = "ws_seed_001_secret";
    let dir = example("seed-001-whop-members");
    let data = tempfile::tempdir().unwrap();
    let r = TestRouter::start_with(&dir.join("routes.d"), data.path(), env(&[("WHOP_WEBHOOK_SECRET", SECRET.into())]))
        .await;
    let [joined, accessed, left] =
        ["membership.went_valid", "membership.accessed", "membership.went_invalid"].map(|t| payload(&dir, t));
    let bodies = [joined, accessed.clone(), accessed.clone(), left];
    let sigs = signed("whop", SECRET, &bodies);
    let path = "/api/webhooks/whop";

    assert_eq!(accept(&r, path, &bodies[0], &sigs[0]).await, [DeliveryStatus::Delivered]);
    let member = record(&r, "members", "user_xxx").unwrap();
    assert_eq!(member["status"], "active");
    assert_eq!(member["engagement_score"], 100);
    assert_eq!(member["total_sessions"], 0);
    assert_eq!(member["joined_at"], "2025-10-21T10:00:00Z");
    assert_eq!(member["email"], "member@example.com");

    accept(&r, path, &bodies[1], &sigs[1]).await;
    accept(&r, path, &bodies[2], &sigs[2]).await;
    let member = record(&r, "members", "user_xxx").unwrap();
    assert_eq!((&member["total_sessions"], &member["last_active"]), (&json!(2), &json!("2025-10-21T10:00:00Z")));

    // Whop redelivers the second access: answered `duplicate`, counted once.
    let (status, answer) = send(&r, path, &bodies[2], &sigs[2]).await;
    assert_eq!((status, &answer["duplicate"]), (200, &json!(true)));

    accept(&r, path, &bodies[3], &sigs[3]).await;
    let member = record(&r, "members", "user_xxx").unwrap();
    assert_eq!((&member["status"], &member["engagement_score"]), (&json!("inactive"), &json!(0)));
    // Kept, not deleted: the history stays.
    assert_eq!((&member["total_sessions"], &member["email"]), (&json!(2), &json!("member@example.com")));
    r.stop().await;
}

/// A fresh database with the example's `postgres/schema.sql`, and its URL.
async fn schema(example_dir: &Path) -> (tokio_postgres::Client, String) {
    let (db, url) = crate::postgres::database().await;
    let sql = std::fs::read_to_string(example_dir.join("postgres/schema.sql")).unwrap();
    db.batch_execute(&sql).await.expect("the example's schema.sql applies");
    (db, url)
}

/// Seed 001's postgres variant on a fresh `member_activity`, and one
/// member's life signed by Whop's SDK: join, access ×3, leave.
struct Seed001OnPostgres {
    r: TestRouter,
    db: tokio_postgres::Client,
    bodies: [String; 5],
    sigs: Vec<Vec<(String, String)>>,
    _data: tempfile::TempDir,
}

async fn seed_001_on_postgres() -> Seed001OnPostgres {
    const SECRET: &str = "ws_seed_001_pg_secret";
    let dir = example("seed-001-whop-members");
    let (db, url) = schema(&dir).await;
    let data = tempfile::tempdir().unwrap();
    let vars = env(&[("WHOP_WEBHOOK_SECRET", SECRET.into()), ("DATABASE_URL", url)]);
    let r = TestRouter::start_with(&dir.join("postgres/routes.d"), data.path(), vars).await;
    let [joined, accessed, left] =
        ["membership.went_valid", "membership.accessed", "membership.went_invalid"].map(|t| payload(&dir, t));
    let bodies = [joined, accessed.clone(), accessed.clone(), accessed, left];
    let sigs = signed("whop", SECRET, &bodies);
    Seed001OnPostgres { r, db, bodies, sigs, _data: data }
}

#[tokio::test]
async fn seed_001_engagement_rules_on_postgres() {
    let Seed001OnPostgres { r, db, bodies, sigs, _data } = seed_001_on_postgres().await;
    let path = "/api/webhooks/whop";
    let member = || async {
        let row = db
            .query_one(
                "SELECT status, engagement_score, total_sessions, email, (joined_at AT TIME ZONE 'UTC')::text, \
                 (last_active AT TIME ZONE 'UTC')::text, (expired_at AT TIME ZONE 'UTC')::text FROM member_activity WHERE user_id = 'user_xxx'",
                &[],
            )
            .await
            .unwrap();
        let text = |i: usize| row.get::<_, Option<String>>(i);
        (row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, i32>(2), text(3), text(4), text(5), text(6))
    };

    assert_eq!(accept(&r, path, &bodies[0], &sigs[0]).await, [DeliveryStatus::Delivered]);
    let joined_at = Some("2025-10-21 10:00:00".to_string());
    let email = Some("member@example.com".to_string());
    assert_eq!(member().await, ("active".into(), 100, 0, email.clone(), joined_at.clone(), None, None));
    // Three accesses, counted against the row (the script's `current`);
    // Whop redelivering one is answered `duplicate` and counted once.
    for i in 1..=3 {
        assert_eq!(accept(&r, path, &bodies[i], &sigs[i]).await, [DeliveryStatus::Delivered]);
    }
    let (status, answer) = send(&r, path, &bodies[2], &sigs[2]).await;
    assert_eq!((status, &answer["duplicate"]), (200, &json!(true)));
    let (status, score, sessions, ..) = member().await;
    assert_eq!((status.as_str(), score, sessions), ("active", 100, 3));

    accept(&r, path, &bodies[4], &sigs[4]).await;
    // Left: inactive, score 0, the row and its history kept (merge writes
    // only what the leave event carries).
    assert_eq!(member().await, ("inactive".into(), 0, 3, email, joined_at.clone(), joined_at.clone(), joined_at));
    let rows: i64 = db.query_one("SELECT count(*) FROM member_activity", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1);
    r.stop().await;
}

/// Whop sends a member's events back to back (`router send whop-members
/// all` does too): acknowledged before any is written, they must reach the
/// row in arrival order, or a leave written before an access leaves the
/// member active.
#[tokio::test]
async fn seed_001_on_postgres_applies_a_burst_in_arrival_order() {
    let Seed001OnPostgres { r, db, bodies, sigs, _data } = seed_001_on_postgres().await;
    let mut ids = Vec::new();
    for (body, sig) in bodies.iter().zip(&sigs) {
        let (status, answer) = send(&r, "/api/webhooks/whop", body, sig).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    for id in ids {
        let got: Vec<DeliveryStatus> = settled(&r, id).await.iter().map(|d| d.status).collect();
        assert_eq!(got, [DeliveryStatus::Delivered], "event {id}");
    }
    let row = db
        .query_one(
            "SELECT status, engagement_score, total_sessions FROM member_activity WHERE user_id = 'user_xxx'",
            &[],
        )
        .await
        .unwrap();
    let member: (String, i32, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(member, ("inactive".into(), 0, 3));
    r.stop().await;
}

#[tokio::test]
async fn seed_003_sessions_on_postgres() {
    let dir = example("seed-003-whatsapp");
    let (db, url) = schema(&dir).await;
    db.batch_execute(r#"INSERT INTO "User" ("id") VALUES ('user-456')"#).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let vars = env(&[("WHATSAPP_WEBHOOK_TOKEN", "gw-key".into()), ("DATABASE_URL", url)]);
    let r = TestRouter::start_with(&dir.join("postgres/routes.d"), data.path(), vars).await;
    let hook = |session: &str, user: &str| format!("/api/whatsapp/webhook/{session}?userId={user}");
    let auth = [("authorization".to_string(), "Bearer gw-key".to_string())];
    let session = |id: &'static str| {
        let db = &db;
        async move {
            let row = db
                .query_one(
                    r#"SELECT "id", "userId", "status", "qr", "message", "createdAt"::text, "updatedAt"::text,
                              "isNotification" FROM "WhatsAppSession" WHERE "sessionId" = $1"#,
                    &[&id],
                )
                .await
                .unwrap();
            let text = |i: usize| row.get::<_, Option<String>>(i);
            (
                text(0).unwrap(),
                text(1).unwrap(),
                text(2).unwrap(),
                text(3),
                text(4),
                text(5).unwrap(),
                text(6).unwrap(),
                row.get::<_, bool>(7),
            )
        }
    };

    assert_eq!(
        accept(&r, &hook("session-123", "user-456"), &payload(&dir, "qr"), &auth).await,
        [DeliveryStatus::Delivered]
    );
    let (id, user, status, qr, message, created, _, notification) = session("session-123").await;
    assert_eq!((user.as_str(), status.as_str()), ("user-456", "qr_generated"));
    assert_eq!(qr.as_deref(), Some("1@ABC123xyz,AbCdEfGhIjKlMnOp==,QrStUvWxYz==,1234567890=="));
    assert_eq!(message.as_deref(), Some("QR code generated, scan to connect"));
    assert!(!notification, "a column the document does not name keeps its default");

    for event in ["loading_screen", "ready"] {
        let path = hook("session-123", "user-456");
        let (status, answer) = send(&r, &path, &payload(&dir, event), &auth).await;
        assert_eq!(status, 200, "{answer}");
        let d = settled(&r, answer["id"].as_str().unwrap().parse().unwrap()).await.remove(0);
        assert_eq!(d.status, DeliveryStatus::Delivered, "{event}: {d:?}");
    }
    let (id2, _, status, qr, message, created2, updated, _) = session("session-123").await;
    assert_eq!(
        (status.as_str(), qr, message.as_deref()),
        ("session_connected", None, Some("WhatsApp session connected successfully"))
    );
    assert_eq!((id2, created2), (id, created.clone()), "the row's id and createdAt are kept");
    assert!(updated >= created, "{updated} >= {created}");
    // Messages have no table in the seed: they stay in the store.
    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "message"), &auth).await;
    assert_eq!(record(&r, "whatsapp_messages", "msg_123").unwrap()["body"], "Hello World");

    // A session of a user the app does not know breaks the foreign key:
    // final, with PostgreSQL's reason, and delivered once the user exists.
    let (status, answer) = send(&r, &hook("session-7", "user-new"), &payload(&dir, "qr"), &auth).await;
    assert_eq!(status, 200, "{answer}");
    let event: u64 = answer["id"].as_str().unwrap().parse().unwrap();
    let d = settled(&r, event).await.remove(0);
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert!(d.last_error.as_deref().unwrap().contains("WhatsAppSession_userId_fkey"), "{:?}", d.last_error);
    db.batch_execute(r#"INSERT INTO "User" ("id") VALUES ('user-new')"#).await.unwrap();
    assert_eq!(r.rt.data.log.retry_failed(Some(event), None).unwrap().len(), 1);
    r.rt.work.notify_one();
    r.eventually("the retried session", || {
        let d = r.rt.data.log.deliveries(event).unwrap().remove(0);
        (d.status == DeliveryStatus::Delivered).then_some(())
    })
    .await;
    assert_eq!(session("session-7").await.1, "user-new");
    r.stop().await;
}

#[tokio::test]
async fn seed_000_chat_initiation() {
    const SECRET: &str = "ws_seed_000_secret";
    let chat = Receiver::start(vec![]).await;
    let dir = example("seed-000-whop-chat");
    let data = tempfile::tempdir().unwrap();
    let vars = env(&[("WHOP_WEBHOOK_SECRET", SECRET.into()), ("CHAT_SERVICE_URL", chat.url(""))]);
    let r = TestRouter::start_with(&dir.join("routes.d"), data.path(), vars).await;
    let joined = payload(&dir, "membership.went_valid");
    let no_product = r#"{"action": "membership.went_valid", "data": {"user_id": "user_2", "membership_id": "memb_2"}}"#;
    let credits = payload(&dir, "payment.succeeded");
    let plain_payment = credits.replace("credit_pack", "subscription");
    let failed = payload(&dir, "payment.failed");
    let bodies = [joined, no_product.to_string(), credits, plain_payment, failed];
    let sigs = signed("whop", SECRET, &bodies);
    let mut outcomes = Vec::new();
    for (body, sig) in bodies.iter().zip(&sigs) {
        outcomes.push(accept(&r, "/api/webhooks", body, sig).await);
    }
    use DeliveryStatus::*;
    assert_eq!(outcomes, [vec![Delivered], vec![Skipped], vec![Delivered], vec![Skipped], vec![Delivered]]);
    let got: Vec<(String, Value)> =
        chat.requests().into_iter().map(|q| (q.path, serde_json::from_str(&q.body).unwrap())).collect();
    assert_eq!(
        got,
        [
            (
                "/internal/user-joined".to_string(),
                json!({"user_id": "user_123456789", "product_id": "prod_123456789", "membership_id": "memb_123456789"})
            ),
            (
                "/internal/credits".to_string(),
                json!({"user_id": "user_123456789", "payment_id": "payment_123456789", "pack_id": "pack_123",
                       "credits": 10, "amount": 1000, "currency": "usd"})
            ),
            (
                "/internal/cleanup".to_string(),
                json!({"event": "payment.failed", "user_id": "user_123456789", "product_id": "prod_123456789",
                       "payment_id": "payment_987654321"})
            ),
        ]
    );
    assert!(chat.requests()[0].headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer local-trial-token"));
    r.stop().await;
}

#[tokio::test]
async fn seed_003_whatsapp_sessions() {
    let dir = example("seed-003-whatsapp");
    let data = tempfile::tempdir().unwrap();
    let r =
        TestRouter::start_with(&dir.join("routes.d"), data.path(), env(&[("WHATSAPP_WEBHOOK_TOKEN", "gw-key".into())]))
            .await;
    let hook = |session: &str, user: &str| format!("/api/whatsapp/webhook/{session}?userId={user}");
    let auth = [("authorization".to_string(), "Bearer gw-key".to_string())];
    let status_of = |session: &'static str| {
        let url = r.url(&format!("/api/whatsapp/session/status/{session}"));
        async move { client().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };

    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "qr"), &auth).await;
    let view = status_of("session-123").await;
    assert_eq!(view["success"], true);
    let s = &view["data"];
    assert_eq!(
        (&s["status"], &s["userId"], &s["sessionId"]),
        (&json!("qr_generated"), &json!("user-456"), &json!("session-123"))
    );
    assert_eq!(s["qr"], "1@ABC123xyz,AbCdEfGhIjKlMnOp==,QrStUvWxYz==,1234567890==");
    assert!(s["qrImage"].as_str().unwrap().starts_with("data:image/png;base64,iVBORw0KGgo"));
    assert_eq!(
        [&s["needsQR"], &s["isConnected"], &s["isLoading"], &s["hasError"]],
        [&json!(true), &json!(false), &json!(false), &json!(false)]
    );
    assert_eq!(s["message"], "QR code generated, scan to connect");
    let created = s["createdAt"].clone();

    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "loading_screen"), &auth).await;
    let s = status_of("session-123").await["data"].clone();
    assert_eq!((&s["status"], &s["loadingPercent"], &s["isLoading"]), (&json!("loading"), &json!(75), &json!(true)));

    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "change_state"), &auth).await;
    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "ready"), &auth).await;
    let s = status_of("session-123").await["data"].clone();
    assert_eq!(
        (&s["status"], &s["isConnected"], &s["needsQR"]),
        (&json!("session_connected"), &json!(true), &json!(false))
    );
    assert!(s.get("qr").is_none() && s.get("qrImage").is_none(), "QR cleared: {s}");
    assert_eq!(s["createdAt"], created, "createdAt is kept");
    // `ready` leaves nothing stale: no raw payload (`data.qr`), no earlier
    // state or loading progress.
    assert!(s.get("data").is_none() && s.get("event").is_none(), "raw payload kept: {s}");
    assert!(s.get("loadingPercent").is_none() && s["state"] == "CONNECTED", "stale fields: {s}");
    // The seed's own list query.
    let list = r.url("/api/whatsapp/session/list-realtime?status=connected");
    let connected = client().get(list).send().await.unwrap().json::<Value>().await.unwrap();
    let ids: Vec<&Value> = connected["data"].as_array().unwrap().iter().map(|s| &s["sessionId"]).collect();
    assert_eq!(ids, [&json!("session-123")], "{connected}");
    assert_eq!(connected["summary"]["connected"], 1, "{connected}");

    // An empty QR string is no QR.
    let empty_qr = json!({"event": "qr", "data": {"qr": ""}});
    accept(&r, &hook("session-e", "user-e"), &empty_qr.to_string(), &auth).await;
    let s = status_of("session-e").await["data"].clone();
    assert_eq!((&s["needsQR"], &s["hasQR"], s.get("qrImage")), (&json!(false), &json!(false), None), "{s}");

    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "change_state"), &auth).await;
    assert_eq!(status_of("session-123").await["data"]["status"], "connecting");
    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "disconnected"), &auth).await;
    let s = status_of("session-123").await["data"].clone();
    assert_eq!(
        (&s["status"], &s["message"]),
        (&json!("session_not_connected"), &json!("Session disconnected: User logged out"))
    );

    accept(&r, &hook("session-9", "user-456"), &payload(&dir, "auth_failure"), &auth).await;
    let s = status_of("session-9").await["data"].clone();
    assert_eq!((&s["status"], &s["hasError"]), (&json!("auth_failure"), &json!(true)));
    assert_eq!(s["message"], "Authentication failed: Invalid QR scan");

    // Messages, their acks and calls land in their own trees.
    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "message"), &auth).await;
    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "message_ack"), &auth).await;
    let m = record(&r, "whatsapp_messages", "msg_123").unwrap();
    assert_eq!((&m["body"], &m["ack"], &m["ackStatus"]), (&json!("Hello World"), &json!(2), &json!("delivered")));
    accept(&r, &hook("session-123", "user-456"), &payload(&dir, "call"), &auth).await;
    assert_eq!(record(&r, "whatsapp_calls", "call_123").unwrap()["from"], "6281234567890@c.us");

    // The list page: filter and per-status counts.
    let list = client().get(r.url("/api/whatsapp/session/list-realtime?userId=user-456")).send().await.unwrap();
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // The seed's summary, every bucket present.
    let want = json!({"connected": 0, "disconnected": 1, "loading": 0, "needsQR": 0, "error": 1, "total": 2});
    assert_eq!(list["summary"], want);
    assert_eq!(list["data"][0]["connection"], "disconnected", "the bucket is stored with the session");
    let (code, missing) = (client().get(r.url("/api/whatsapp/session/status/nope")).send().await.unwrap().status(), ());
    assert_eq!((code.as_u16(), missing), (404, ()));

    // The seed's Zod validation: a malformed event is a 400 naming each problem.
    let (status, answer) = post(&r.url(&hook("session-123", "u")), "gw-key", r#"{"data": "nope"}"#, &[]).await;
    assert_eq!(status, 400, "{answer}");
    let text = answer.to_string();
    assert!(text.contains("$.event") && text.contains("$.data"), "{text}");
    r.stop().await;
}

#[tokio::test]
async fn seed_004_stripe_and_close_sync() {
    const STRIPE: &str = "whsec_seed_004";
    const CLOSE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let dir = example("seed-004-revops-sync");
    let data = tempfile::tempdir().unwrap();
    let vars = env(&[("STRIPE_WEBHOOK_SECRET", STRIPE.into()), ("CLOSE_WEBHOOK_SECRET", CLOSE.into())]);
    let r = TestRouter::start_with(&dir.join("routes.d"), data.path(), vars).await;

    let stripe: Vec<String> =
        ["customer.created", "customer.subscription.created", "invoice.paid", "customer.updated", "customer.deleted"]
            .iter()
            .map(|n| payload(&dir, n))
            .collect();
    let sigs = signed("stripe", STRIPE, &stripe);
    let path = "/api/webhooks/ws_1/job_9";
    for (body, sig) in stripe[..4].iter().zip(&sigs) {
        assert_eq!(accept(&r, path, body, sig).await, [DeliveryStatus::Delivered]);
    }
    let customer = record(&r, "stripe", "ws_1/customer/cus_123").unwrap();
    assert_eq!((&customer["data"]["email"], &customer["job_id"]), (&json!("ada@lovelace.dev"), &json!("job_9")));
    assert_eq!(customer["_sync_metadata"]["event_id"], "evt_2");
    assert_eq!(customer["_sync_metadata"]["event_type"], "customer.updated");
    assert_eq!(record(&r, "stripe", "ws_1/subscription/sub_9").unwrap()["data"]["status"], "active");
    assert_eq!(record(&r, "stripe", "ws_1/invoice/in_7").unwrap()["data"]["amount_paid"], 4900);

    // A late, older `customer.created` redelivered under a new id is skipped: the record is newer.
    let stale_body = stripe[0].replace("evt_1", "evt_1b");
    let stale_sig = signed("stripe", STRIPE, std::slice::from_ref(&stale_body));
    assert_eq!(accept(&r, path, &stale_body, &stale_sig[0]).await, [DeliveryStatus::Skipped]);
    assert_eq!(record(&r, "stripe", "ws_1/customer/cus_123").unwrap()["data"]["email"], "ada@lovelace.dev");

    assert_eq!(accept(&r, path, &stripe[4], &sigs[4]).await, [DeliveryStatus::Delivered]);
    assert!(record(&r, "stripe", "ws_1/customer/cus_123").is_none(), "deleted");
    // Types outside `customer.*` / `invoice.*` are filtered, not stored.
    let other = r#"{"id": "evt_x", "type": "charge.refunded", "created": 1761041000, "data": {"object": {"id": "ch_1", "object": "charge"}}}"#;
    let other_sig = signed("stripe", STRIPE, &[other.to_string()]);
    let (status, answer) = send(&r, path, other, &other_sig[0]).await;
    assert_eq!((status, &answer["filtered"]), (200, &json!(true)));

    let close: Vec<String> = ["close.lead.created", "close.opportunity.updated", "close.lead.deleted"]
        .iter()
        .map(|n| payload(&dir, n))
        .collect();
    let sigs = signed("close", CLOSE, &close);
    let path = "/api/webhooks/close/ws_1/job_10";
    assert_eq!(accept(&r, path, &close[0], &sigs[0]).await, [DeliveryStatus::Delivered]);
    let lead = record(&r, "close", "ws_1/lead/lead_42").unwrap();
    assert_eq!(
        (&lead["data"]["display_name"], &lead["_sync_metadata"]["event_type"]),
        (&json!("Acme Corp"), &json!("lead.created"))
    );
    assert_eq!(accept(&r, path, &close[1], &sigs[1]).await, [DeliveryStatus::Delivered]);
    assert_eq!(record(&r, "close", "ws_1/opportunity/oppo_7").unwrap()["data"]["status_label"], "Won");
    assert_eq!(accept(&r, path, &close[2], &sigs[2]).await, [DeliveryStatus::Delivered]);
    assert!(record(&r, "close", "ws_1/lead/lead_42").is_none(), "deleted");
    r.stop().await;
}
