//! The postgres sink's writes against a real PostgreSQL: the one the test
//! command starts for the run (`scripts/setup-postgres.sh`, or
//! `DATABASE_URL`), a fresh database per test.

use serde_json::json;
use tokio_postgres::{Client, NoTls};
use webhook_router::sink::postgres::statement::{Mode, Plan};
use webhook_router::sink::postgres::{load_table, Item, PostgresSink};
use webhook_router::sink::Outcome;

/// A new, empty database on the run's server: a client on it, and its URL.
pub async fn database() -> (Client, String) {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with scripts/test.sh, which starts a PostgreSQL for them");
    let admin = connect(&url).await;
    let name = format!("t_{:08x}{:08x}", rand_u32(), rand_u32());
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
    let (base, _) = url.rsplit_once('/').expect("a database URL ends in /DB");
    let url = format!("{base}/{name}");
    (connect(&url).await, url)
}

/// A sink on `table` of the database at `url`.
pub fn sink(url: &str, table: &str, plan: Plan) -> PostgresSink {
    PostgresSink::new(url, table.into(), plan, 2, std::time::Duration::from_secs(10)).expect("a valid URL")
}

/// One write of `docs` (one transaction): an outcome each.
async fn write_all(sink: &PostgresSink, docs: &[serde_json::Value]) -> Vec<Outcome> {
    let items: Vec<Item> = docs.iter().map(|d| Item { doc: d.clone(), finish: None }).collect();
    sink.write(&items).await
}

/// One document written by a fresh sink on `table`.
async fn write(url: &str, table: &str, plan: Plan, doc: &serde_json::Value) -> Outcome {
    write_all(&sink(url, table, plan), std::slice::from_ref(doc)).await.remove(0)
}

fn rand_u32() -> u64 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random bytes");
    u64::from(u32::from_le_bytes(b))
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Seed 001's table, with a column of each type the sink converts to.
const MEMBER_ACTIVITY: &str = "CREATE TABLE member_activity (
    user_id text PRIMARY KEY,
    status text NOT NULL DEFAULT 'active',
    engagement_score integer NOT NULL DEFAULT 0,
    total_sessions integer NOT NULL DEFAULT 0,
    last_active timestamptz,
    is_trial boolean,
    lifetime_value numeric(12,2),
    member_uuid uuid,
    tags text[],
    raw jsonb
)";

fn plan(mode: Mode) -> Plan {
    Plan { mode, conflict: vec!["user_id".into()], version: None, extra: None, columns: None }
}

#[tokio::test]
async fn documents_land_in_typed_columns_and_modes_do_what_they_say() {
    let (db, url) = database().await;
    db.batch_execute(MEMBER_ACTIVITY).await.unwrap();
    let doc = json!({
        "user_id": "user_1", "status": "joined", "engagement_score": 10, "total_sessions": 1,
        "last_active": 1761040800, "is_trial": true, "lifetime_value": "49.90",
        "member_uuid": "6b1f3c1e-0b4e-4c1a-9d7e-2f0b8f3a9c10", "tags": ["pro", "eu"], "raw": {"a": [1, 2]}
    });
    assert_eq!(write(&url, "member_activity", plan(Mode::Upsert), &doc).await, Outcome::Delivered);
    let row = db
        .query_one(
            "SELECT status, engagement_score, last_active = '2025-10-21T10:00:00Z', is_trial, lifetime_value::text, \
             member_uuid::text, tags, raw::text FROM member_activity WHERE user_id = 'user_1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "joined");
    assert_eq!(row.get::<_, i32>(1), 10);
    assert!(row.get::<_, bool>(2), "Unix seconds stored as that instant");
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, String>(4), "49.90");
    assert_eq!(row.get::<_, String>(5), "6b1f3c1e-0b4e-4c1a-9d7e-2f0b8f3a9c10");
    assert_eq!(row.get::<_, Vec<String>>(6), vec!["pro", "eu"]);
    assert_eq!(row.get::<_, String>(7), r#"{"a": [1, 2]}"#);

    // Merge: a missing or null field erases nothing.
    let merge = json!({"user_id": "user_1", "engagement_score": 15, "tags": null});
    assert_eq!(write(&url, "member_activity", plan(Mode::Merge), &merge).await, Outcome::Delivered);
    let row = db.query_one("SELECT status, engagement_score, tags IS NULL FROM member_activity", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, bool>(2)), ("joined".into(), 15, false));

    // Upsert: the document's columns, a null as NULL; the others stay.
    let upsert = json!({"user_id": "user_1", "status": "left", "tags": null});
    assert_eq!(write(&url, "member_activity", plan(Mode::Upsert), &upsert).await, Outcome::Delivered);
    let row = db.query_one("SELECT status, engagement_score, tags IS NULL FROM member_activity", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, bool>(2)), ("left".into(), 15, true));

    // Delete by the key; a second delete changes nothing.
    assert_eq!(write(&url, "member_activity", plan(Mode::Delete), &upsert).await, Outcome::Delivered);
    assert!(matches!(write(&url, "member_activity", plan(Mode::Delete), &upsert).await, Outcome::Skipped { .. }));
    assert_eq!(db.query_one("SELECT count(*) FROM member_activity", &[]).await.unwrap().get::<_, i64>(0), 0);
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_row() {
    let (db, url) = database().await;
    db.batch_execute(MEMBER_ACTIVITY).await.unwrap();
    let mut p = plan(Mode::Merge);
    p.version = Some("last_active".into());
    let newer = json!({"user_id": "u", "status": "active", "last_active": "2025-10-21T10:00:00Z"});
    let older = json!({"user_id": "u", "status": "joined", "last_active": "2025-10-21T09:00:00Z"});
    assert_eq!(write(&url, "member_activity", p.clone(), &newer).await, Outcome::Delivered);
    assert!(matches!(write(&url, "member_activity", p.clone(), &older).await, Outcome::Skipped { .. }));
    // The same event again (a replay) still writes: equal is not older.
    assert_eq!(write(&url, "member_activity", p.clone(), &newer).await, Outcome::Delivered);
    let status: String = db.query_one("SELECT status FROM member_activity", &[]).await.unwrap().get(0);
    assert_eq!(status, "active");
}

#[tokio::test]
async fn a_hostile_payload_is_stored_as_text_and_the_table_stays() {
    let (db, url) = database().await;
    db.batch_execute(MEMBER_ACTIVITY).await.unwrap();
    let evil = "x'); DROP TABLE member_activity; -- \"; SELECT 1; \\ $1 $$";
    let doc = json!({"user_id": evil, "status": evil, "tags": [evil, "{a,b}"], "raw": {evil: evil}});
    assert_eq!(write(&url, "member_activity", plan(Mode::Upsert), &doc).await, Outcome::Delivered);
    let row = db.query_one("SELECT user_id, status, tags, raw->>$1 FROM member_activity", &[&evil]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), evil);
    assert_eq!(row.get::<_, String>(1), evil);
    assert_eq!(row.get::<_, Vec<String>>(2), vec![evil, "{a,b}"]);
    assert_eq!(row.get::<_, String>(3), evil);
}

#[tokio::test]
async fn a_type_error_is_final_and_names_the_column_then_passes_once_the_table_is_fixed() {
    let (db, url) = database().await;
    db.batch_execute(MEMBER_ACTIVITY).await.unwrap();
    // One sink throughout: what it read of the table must not outlive the ALTER.
    let s = sink(&url, "member_activity", plan(Mode::Upsert));
    let doc = json!({"user_id": "u", "engagement_score": "high"});
    let Outcome::Failed { error } = write_all(&s, std::slice::from_ref(&doc)).await.remove(0) else {
        panic!("a value the column cannot parse is final");
    };
    assert!(
        error.contains("invalid input syntax for type integer") && error.contains("column `engagement_score`"),
        "{error}"
    );
    // A field with no column: final, says what to do.
    let Outcome::Failed { error } = write_all(&s, &[json!({"user_id": "u", "plan": "pro"})]).await.remove(0) else {
        panic!("an unknown column is final");
    };
    assert!(error.contains("no column `plan`") && error.contains("extra:"), "{error}");
    // The operator changes the column's type; the same document now lands.
    db.batch_execute("ALTER TABLE member_activity ALTER COLUMN engagement_score TYPE text").await.unwrap();
    assert_eq!(write_all(&s, std::slice::from_ref(&doc)).await.remove(0), Outcome::Delivered);
}

#[tokio::test]
async fn a_prisma_model_with_quoted_names_and_an_enum() {
    // Seed 003's model as Prisma creates it: CamelCase names, an enum type.
    let (db, url) = database().await;
    db.batch_execute(
        r#"CREATE TYPE "SessionStatus" AS ENUM ('PENDING', 'QR', 'CONNECTED', 'DISCONNECTED');
           CREATE TABLE "WhatsAppSession" ("sessionId" text PRIMARY KEY, "status" "SessionStatus" NOT NULL,
             "qrCode" text, "updatedAt" timestamp(3) NOT NULL)"#,
    )
    .await
    .unwrap();
    let p = Plan {
        mode: Mode::Merge,
        conflict: vec!["sessionId".into()],
        version: Some("updatedAt".into()),
        extra: None,
        columns: None,
    };
    let qr = json!({"sessionId": "s1", "status": "QR", "qrCode": "2@abc", "updatedAt": 1761040800000u64});
    assert_eq!(write(&url, "WhatsAppSession", p.clone(), &qr).await, Outcome::Delivered);
    let up = json!({"sessionId": "s1", "status": "CONNECTED", "updatedAt": 1761040801000u64});
    assert_eq!(write(&url, "WhatsAppSession", p.clone(), &up).await, Outcome::Delivered);
    let row = db.query_one(r#"SELECT "status"::text, "qrCode" FROM "WhatsAppSession""#, &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("CONNECTED".into(), "2@abc".into()));
    let Outcome::Failed { error } = write(
        &url,
        "WhatsAppSession",
        p.clone(),
        &json!({"sessionId": "s1", "status": "LOST", "updatedAt": 1761040802000u64}),
    )
    .await
    else {
        panic!("a value outside the enum is final");
    };
    assert!(error.contains("column `status`"), "{error}");
}

#[tokio::test]
async fn a_batch_is_one_statement_per_shape_and_one_bad_row_holds_back_no_other() {
    let (db, url) = database().await;
    db.batch_execute(MEMBER_ACTIVITY).await.unwrap();
    let mut p = plan(Mode::Merge);
    p.version = Some("last_active".into());
    let s = sink(&url, "member_activity", p);
    let docs = [
        json!({"user_id": "a", "engagement_score": 1, "last_active": 1761040800}),
        json!({"user_id": "b", "status": "joined"}),
        // The same key twice in a batch: written in order, both land.
        json!({"user_id": "a", "engagement_score": 2, "last_active": 1761040801}),
        json!({"user_id": "c", "engagement_score": 3, "last_active": 1761040800}),
    ];
    assert_eq!(write_all(&s, &docs).await, vec![Outcome::Delivered; 4]);
    let score: i32 =
        db.query_one("SELECT engagement_score FROM member_activity WHERE user_id = 'a'", &[]).await.unwrap().get(0);
    assert_eq!(score, 2);
    // An older version in a batch is skipped, its neighbours written.
    let docs = [
        json!({"user_id": "a", "engagement_score": 9, "last_active": 1761040000}),
        json!({"user_id": "c", "engagement_score": 4, "last_active": 1761040900}),
    ];
    let outcomes = write_all(&s, &docs).await;
    assert!(matches!(outcomes[0], Outcome::Skipped { .. }), "{outcomes:?}");
    assert_eq!(outcomes[1], Outcome::Delivered);
    // A value the column refuses fails that row alone, with the column named.
    let docs = [
        json!({"user_id": "d", "engagement_score": 5}),
        json!({"user_id": "e", "engagement_score": "lots"}),
        json!({"user_id": "f", "engagement_score": 6}),
    ];
    let outcomes = write_all(&s, &docs).await;
    assert_eq!((&outcomes[0], &outcomes[2]), (&Outcome::Delivered, &Outcome::Delivered));
    let Outcome::Failed { error } = &outcomes[1] else { panic!("{outcomes:?}") };
    assert!(error.contains("column `engagement_score`"), "{error}");
    let n: i64 = db.query_one("SELECT count(*) FROM member_activity", &[]).await.unwrap().get(0);
    assert_eq!(n, 5, "a, b, c, d, f");
}

#[tokio::test]
async fn a_missing_table_is_reported_by_name() {
    let (db, _) = database().await;
    let e = load_table(&db, "nope.member_activity").await.unwrap_err();
    let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    assert!(text.contains("nope"), "{text}");
}

#[tokio::test]
async fn no_server_is_a_retry() {
    // A port nothing listens on: the connection fails, which retrying may fix.
    let err = tokio_postgres::connect("postgres://router@127.0.0.1:1/postgres", NoTls).await.err().expect("refused");
    assert!(matches!(webhook_router::sink::postgres::outcome_of(&err), Outcome::Retry { .. }));
}
