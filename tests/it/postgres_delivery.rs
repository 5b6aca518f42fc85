//! Events through the running router into a real PostgreSQL table: posted
//! over HTTP, acknowledged, delivered by the dispatcher. Out-of-order and
//! repeated events, a type error that is final until the table is fixed
//! and the delivery retried, and a database that goes away mid-delivery
//! (its own cluster, halted and started again) and is caught up with.

use crate::postgres::database;
use crate::util::{client, post, repo, settled, test_limits, TempRoutes, TestRouter};
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio_postgres::Client;
use webhook_router::storage::DeliveryStatus;
use webhook_router::verify::{BearerToken, Secret};

const ADMIN_TOKEN: &str = "admin-token-pg-1";

const ORDERS: &str = "CREATE TABLE orders (
    order_id text PRIMARY KEY,
    status text NOT NULL,
    quantity integer,
    note text,
    updated_at timestamptz NOT NULL
)";

/// A route writing each event's order to `orders`, newest `updated_at` wins.
fn routes() -> TempRoutes {
    TempRoutes::new(&[(
        "orders.yaml",
        "route: orders\npath: /orders\nverify: { scheme: bearer, token: t }\nevent: { type: $.type, id: $.id }\n\
         rules:\n  - on: \"order.*\"\n    map: { order_id: $.order, status: $.status, quantity: $.quantity, \
         note: $.note, updated_at: $.at }\n    to: [{ sink: orders }]\n\
         sinks:\n  orders:\n    type: postgres\n    url: ${DATABASE_URL}\n    table: orders\n    conflict: order_id\n    \
         mode: merge\n    version: updated_at\n    retry: { attempts: 100, backoff: 50ms, max_delay: 250ms }\n",
    )])
}

async fn start(routes: &TempRoutes, data: &tempfile::TempDir, url: &str) -> TestRouter {
    let env = HashMap::from([("DATABASE_URL".to_string(), url.to_string())]);
    TestRouter::start_configured(routes.path(), data.path(), env, test_limits(), |s| {
        s.admin_token = Some(BearerToken::new(None, vec![Secret::new(ADMIN_TOKEN.to_string())]));
    })
    .await
}

/// Posts one order event; returns the event's log id (or the answer for a duplicate).
async fn send(r: &TestRouter, body: Value) -> (u16, Value) {
    post(&r.url("/orders"), "t", &body.to_string(), &[]).await
}

async fn accepted(r: &TestRouter, body: Value) -> u64 {
    let (status, answer) = send(r, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().unwrap().parse().unwrap()
}

async fn order(db: &Client, id: &str) -> (String, Option<i32>, Option<String>) {
    let row = db.query_one("SELECT status, quantity, note FROM orders WHERE order_id = $1", &[&id]).await.unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn out_of_order_and_repeated_events_leave_the_newest_row_and_hostile_text_stays_text() {
    let (db, url) = database().await;
    db.batch_execute(ORDERS).await.unwrap();
    let (routes, data) = (routes(), tempfile::tempdir().unwrap());
    let r = start(&routes, &data, &url).await;

    let paid =
        json!({"id": "e2", "type": "order.paid", "order": "o-1", "status": "paid", "at": "2026-12-01T10:00:02Z"});
    let created = json!({"id": "e1", "type": "order.created", "order": "o-1", "status": "created", "quantity": 2, "at": "2026-12-01T10:00:01Z"});
    // The newer event lands first; the older one, arriving late, changes nothing.
    let first = accepted(&r, paid.clone()).await;
    assert_eq!(settled(&r, first).await[0].status, DeliveryStatus::Delivered);
    let late = accepted(&r, created).await;
    // Skipped: the table held it back (its `updated_at` is older), not failed.
    assert_eq!(settled(&r, late).await[0].status, DeliveryStatus::Skipped);
    assert_eq!(order(&db, "o-1").await, ("paid".into(), None, None));
    // The provider sends the same event again: answered, not written twice.
    let (status, answer) = send(&r, paid).await;
    assert_eq!((status, &answer["duplicate"]), (200, &json!(true)), "{answer}");

    let hostile = "Robert'); DROP TABLE orders; -- \"quoted\" ; \\ $1 ''";
    let id = accepted(
        &r,
        json!({"id": "e3", "type": "order.noted", "order": "o-2'; --", "status": "open", "note": hostile, "at": 1764583203}),
    )
    .await;
    assert_eq!(settled(&r, id).await[0].status, DeliveryStatus::Delivered);
    assert_eq!(order(&db, "o-2'; --").await, ("open".into(), None, Some(hostile.into())));
    let count: i64 = db.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(count, 2, "the table is intact");
    r.stop().await;
}

#[tokio::test]
async fn a_type_error_is_final_with_the_column_and_delivers_on_retry_once_the_table_is_altered() {
    let (db, url) = database().await;
    db.batch_execute(ORDERS).await.unwrap();
    let (routes, data) = (routes(), tempfile::tempdir().unwrap());
    let r = start(&routes, &data, &url).await;

    let body = json!({"id": "e1", "type": "order.created", "order": "o-9", "status": "created", "quantity": "a dozen",
                      "at": "2026-12-01T10:00:00Z"});
    let id = accepted(&r, body).await;
    let d = settled(&r, id).await.remove(0);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1), "a type error is not retried: {d:?}");
    let error = d.last_error.unwrap();
    assert!(error.contains("quantity") && error.contains("a dozen"), "names the column and the value: {error}");

    db.batch_execute("ALTER TABLE orders ALTER COLUMN quantity TYPE text").await.unwrap();
    let retried = client()
        .post(r.admin_url(&format!("/events/{id}/retry")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(retried["requeued"], 1);
    let d = r
        .eventually("the retried delivery", || {
            let d = r.rt.data.log.deliveries(id).unwrap().remove(0);
            (d.status == DeliveryStatus::Delivered).then_some(d)
        })
        .await;
    let outcomes: Vec<&str> = d.attempts_log.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "requeued", "delivered"]);
    let quantity: String =
        db.query_one("SELECT quantity FROM orders WHERE order_id = 'o-9'", &[]).await.unwrap().get(0);
    assert_eq!(quantity, "a dozen");
    r.stop().await;
}

/// A PostgreSQL of its own (the shared one serves the other tests), which
/// this test takes down and brings back: `scripts/setup-postgres.sh`.
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    fn start() -> Self {
        let out = std::process::Command::new("bash")
            .arg(repo().join("scripts/setup-postgres.sh"))
            .env_remove("DATABASE_URL")
            .output()
            .expect("run setup-postgres.sh");
        assert!(out.status.success(), "setup-postgres: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let value = |name: &str| {
            let at = text.find(&format!("{name}='")).unwrap_or_else(|| panic!("no {name} in {text}")) + name.len() + 2;
            text[at..at + text[at..].find('\'').unwrap()].to_string()
        };
        Self { url: value("DATABASE_URL"), dir: value("PG_TEST_DIR") }
    }

    fn run(&self, command: &str) {
        let status = std::process::Command::new("bash")
            .arg(repo().join("scripts/setup-postgres.sh"))
            .args([command, &self.dir])
            .status()
            .unwrap();
        assert!(status.success(), "setup-postgres.sh {command}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.run("stop");
    }
}

#[tokio::test]
async fn a_database_that_goes_away_mid_delivery_is_retried_and_caught_up_when_it_is_back() {
    let pg = Cluster::start();
    let (db, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(connection);
    db.batch_execute(ORDERS).await.unwrap();
    drop(db);
    conn.await.unwrap().unwrap();
    let (routes, data) = (routes(), tempfile::tempdir().unwrap());
    let r = start(&routes, &data, &pg.url).await;

    let at = |s: u32| format!("2026-12-01T10:00:{s:02}Z");
    let first =
        accepted(&r, json!({"id": "e0", "type": "order.created", "order": "o-0", "status": "created", "at": at(0)}))
            .await;
    assert_eq!(settled(&r, first).await[0].status, DeliveryStatus::Delivered);

    pg.run("halt");
    // Acknowledged while the database is down: the events are in the log.
    let mut ids = Vec::new();
    for i in 1..=5u32 {
        let body = json!({"id": format!("e{i}"), "type": "order.created", "order": format!("o-{i}"), "status": "created", "at": at(i)});
        ids.push(accepted(&r, body).await);
    }
    r.eventually("a failed attempt against the stopped database", || {
        let d = r.rt.data.log.deliveries(ids[0]).unwrap().remove(0);
        (d.attempts >= 2 && d.status.is_open()).then_some(())
    })
    .await;
    let d = r.rt.data.log.deliveries(ids[0]).unwrap().remove(0);
    assert!(d.last_error.as_deref().is_some_and(|e| !e.is_empty()), "the error is kept: {d:?}");

    pg.run("start");
    for id in &ids {
        let d = settled(&r, *id).await.remove(0);
        assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
    }
    let (db, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let count: i64 = db.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(count, 6, "every acknowledged event is in the table");
    r.stop().await;
}
