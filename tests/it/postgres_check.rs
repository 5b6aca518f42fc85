//! `router check --connect` against a real PostgreSQL: each problem the
//! table shows is reported where the route file must change, and once the
//! table and the file agree the check passes. Plain `router check` never
//! opens a connection.

use crate::postgres::database;
use crate::util::{router_bin, TempRoutes};

const ORDERS: &str = "CREATE TABLE orders (order_id text NOT NULL, status text, quantity integer, note text)";

/// The route file: `map:` keys on lines 5-8, the sink's `conflict:` on
/// line 15, `version:` on 16, the example on line 19.
fn route(quantity_key: &str) -> String {
    format!(
        "route: orders\npath: /orders\nverify: {{ scheme: bearer, token: t }}\nevent: {{ type: $.type, id: $.id }}\n\
         rules:\n  - on: \"order.*\"\n    map:\n      order_id: $.order\n      status: $.status\n      \
         {quantity_key}: $.quantity\n      updated_at: $.at\n    to: [{{ sink: orders }}]\n\
         sinks:\n  orders:\n    type: postgres\n    url: ${{DATABASE_URL}}\n    table: orders\n    conflict: order_id\n    \
         version: updated_at\n    mode: merge\nexamples:\n  order.created: {{ type: order.created, order: o-1, \
         status: created, quantity: a dozen, at: \"2026-12-01T10:00:00Z\" }}\n"
    )
}

/// `router check --connect` (or without `--connect`) with `DATABASE_URL`: exit code and stdout.
fn check(routes: &TempRoutes, url: &str, connect: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(router_bin());
    cmd.arg("check").arg(routes.path()).env("DATABASE_URL", url);
    if connect {
        cmd.arg("--connect");
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn check_connect_reports_what_the_table_lacks_at_its_place_in_the_file() {
    let (db, url) = database().await;
    // A password in the URL (the test server trusts loopback) must never be shown.
    let url = url.replacen("://router@", "://router:hunter2@", 1);
    let routes = TempRoutes::new(&[("orders.yaml", &route("quantty"))]);
    let file = routes.path().join("orders.yaml").display().to_string();

    let (code, out) = check(&routes, &url, false);
    assert_eq!(code, 0, "plain check opens no database, and there is no table yet:\n{out}");

    let (code, out) = check(&routes, &url, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{file}:17:12: error: sink `orders`: table `orders`")), "no table:\n{out}");
    assert!(out.contains("does not exist"), "{out}");

    db.batch_execute(ORDERS).await.unwrap();
    let (code, out) = check(&routes, &url, true);
    assert_eq!(code, 1, "{out}");
    let expect = [
        (format!("{file}:18:15: error:"), "no unique index on (order_id)"),
        (format!("{file}:19:14: error:"), "no column `updated_at` (named in `version:`)"),
        (format!("{file}:10:7: error:"), "no column `quantty`"),
        (format!("{file}:10:7: error:"), "did you mean `quantity`?"),
        (format!("{file}:22:3: error:"), "no column `quantty`"),
    ];
    for (at, what) in &expect {
        assert!(out.lines().any(|l| l.starts_with(at.as_str())) && out.contains(what), "{at} {what}:\n{out}");
    }
    assert!(!out.contains("hunter2"), "the password is shown:\n{out}");

    // The table and the file fixed, the example's value is still one the
    // column's type refuses.
    db.batch_execute("CREATE UNIQUE INDEX ON orders (order_id); ALTER TABLE orders ADD COLUMN updated_at timestamptz")
        .await
        .unwrap();
    std::fs::write(routes.path().join("orders.yaml"), route("quantity")).unwrap();
    let (code, out) = check(&routes, &url, true);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{file}:22:3: error: example `order.created`"))
            && out.contains("column `quantity` (integer) cannot take \"a dozen\""),
        "{out}"
    );
    assert_eq!(out.matches("error:").count(), 1, "only the type is left:\n{out}");

    db.batch_execute("ALTER TABLE orders ALTER COLUMN quantity TYPE text").await.unwrap();
    let (code, out) = check(&routes, &url, true);
    assert_eq!(code, 0, "{out}");
    let rows: i64 = db.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "check writes nothing");
}
