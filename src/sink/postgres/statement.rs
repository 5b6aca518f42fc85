//! The SQL of one write into an app's own table (the `postgres` sink):
//! built from the table's columns, as the database describes them, and a
//! rule's document. Identifiers are quoted; every value is a parameter,
//! sent as text and cast to its column's type in the statement, so
//! PostgreSQL itself parses it (and names the column when it cannot).
//! Nothing from a payload is ever spliced into the SQL text: the only
//! words spliced in are column names and type names the database gave.

use serde_json::{Map, Value};

/// One column of the target table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// As `format_type` writes it: `integer`, `timestamp with time zone`,
    /// `text[]`, `"WhatsAppStatus"` (already quoted where it must be).
    pub ty: String,
}

impl Column {
    pub fn is_json(&self) -> bool {
        matches!(self.ty.as_str(), "json" | "jsonb")
    }
    fn is_array(&self) -> bool {
        self.ty.ends_with("[]")
    }
    fn is_time(&self) -> bool {
        self.ty.starts_with("timestamp") || self.ty == "date"
    }
}

/// The table a sink writes: its quoted name and its columns.
#[derive(Debug, Clone)]
pub struct Table {
    /// `"schema"."table"`, quoted.
    pub name: String,
    pub columns: Vec<Column>,
}

/// What a write does with the row of its key (`mode:`, the same words as
/// the store's): `Upsert` writes the document's columns, a null as NULL,
/// and leaves the row's other columns (an id, `created_at`) as they are;
/// `Merge` writes only the values the document has (a null or missing
/// field erases nothing); `Delete` deletes the row of the key.
pub use crate::sink::StoreMode as Mode;

/// How a sink writes its table (`conflict:`, `version:`, `extra:`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// The unique key the upsert targets (and a delete matches).
    pub conflict: Vec<String>,
    /// An older document (a lower value here) never overwrites a newer row.
    pub version: Option<String>,
    /// A jsonb column for the document's fields that have no column.
    pub extra: Option<String>,
    /// The document's fields this table takes (`columns:`); `None`: all.
    /// The others are for the rule's other sinks, not an error.
    pub columns: Option<Vec<String>>,
}

impl Plan {
    pub fn takes(&self, field: &str) -> bool {
        self.columns.as_ref().is_none_or(|c| c.iter().any(|n| n == field))
    }
}

/// One document as a row to write: the columns it sets (in the
/// document's order, the key first) and their values as text (`None`:
/// NULL). Rows of the same `shape` share one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub columns: Vec<Column>,
    pub values: Vec<Option<String>>,
    /// How many of `columns` (the first ones) are the `conflict` key.
    key_len: usize,
}

impl Row {
    /// The key's values as text: two rows with the same key cannot be in
    /// one statement (PostgreSQL refuses to change a row twice in one).
    pub fn key(&self) -> &[Option<String>] {
        &self.values[..self.key_len]
    }

    /// The columns' names: rows that set the same columns share a statement.
    pub fn shape(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

/// A statement ready to run over some rows: `params[i]` is `$i+1`, as
/// text (`None`: NULL), for column `bound[i]` (so an error can name the
/// column). It returns one `int4` per row it changed: the row's 1-based
/// place among the statement's rows (so a row the version guard held
/// back, or a delete that found nothing, is told apart).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Option<String>>,
    pub bound: Vec<Column>,
}

/// PostgreSQL takes at most 65,535 parameters per statement; a batch of
/// rows that would need more is cut into several statements.
pub const MAX_PARAMS: usize = 65_535;

/// Why a document cannot be written as it is (final: the same document
/// fails the same way until the table or the route changes).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unwritable {
    #[error("the document is not a JSON object")]
    NotAnObject,
    #[error("the document has no value for the key column `{0}`")]
    MissingKey(String),
    #[error("table {table} has no column `{column}` (add it, or set `extra:` to keep such fields in a jsonb column)")]
    NoColumn { table: String, column: String },
    #[error("column `{column}` ({ty}) cannot take {what}")]
    Type { column: String, ty: String, what: String },
}

/// Quotes an identifier: `a"b` → `"a""b"`.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Table {
    /// `schema.table` or `table` (in `public`) as the sink's `table:` names it.
    pub fn quoted_name(table: &str) -> String {
        match table.split_once('.') {
            Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
            None => format!("{}.{}", quote("public"), quote(table)),
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// `doc` as a row of `table`, checked: every field has a column (or goes
/// to `extra`), every value suits its column's kind, the key is there.
pub fn row(table: &Table, plan: &Plan, doc: &Value) -> Result<Row, Unwritable> {
    let Value::Object(doc) = doc else { return Err(Unwritable::NotAnObject) };
    let mut r = Row { columns: Vec::new(), values: Vec::new(), key_len: plan.conflict.len() };
    let push = |r: &mut Row, col: &Column, v: &Value| -> Result<(), Unwritable> {
        r.values.push(text_of(col, v)?);
        r.columns.push(col.clone());
        Ok(())
    };
    for name in &plan.conflict {
        let col = table.column(name).ok_or_else(|| no_column(table, name))?;
        match doc.get(name) {
            None | Some(Value::Null) => return Err(Unwritable::MissingKey(name.clone())),
            Some(v) => push(&mut r, col, v)?,
        }
    }
    if plan.mode == Mode::Delete {
        return Ok(r);
    }
    // The document's fields in its own order; those without a column go
    // to `extra` (when set), the rest is an error naming the first.
    let mut extra = Map::new();
    for (field, v) in doc {
        if plan.conflict.contains(field) || (plan.mode == Mode::Merge && v.is_null()) || !plan.takes(field) {
            continue;
        }
        match table.column(field) {
            Some(col) if Some(field) != plan.extra.as_ref() => push(&mut r, col, v)?,
            _ if plan.extra.is_some() => _ = extra.insert(field.clone(), v.clone()),
            _ => return Err(no_column(table, field)),
        }
    }
    if let Some(name) = &plan.extra {
        let col = table.column(name).ok_or_else(|| no_column(table, name))?;
        // Merge with nothing to add leaves what the row kept alone.
        if !(extra.is_empty() && plan.mode == Mode::Merge) {
            push(&mut r, col, &Value::Object(extra))?;
        }
    }
    Ok(r)
}

/// The statement that writes `rows` (all of one `shape`, with distinct
/// keys) into `table` as `plan` says.
pub fn statement(table: &Table, plan: &Plan, rows: &[&Row]) -> Statement {
    let first = rows.first().expect("a statement writes at least one row");
    let (mut params, mut bound) = (Vec::new(), Vec::new());
    // `v`: the rows as a VALUES list, `v.c0` the row's place, `v.cN` its
    // N-th column (generic names: no table column can clash with them).
    let mut tuples = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let mut tuple = vec![(i + 1).to_string()];
        for (col, value) in r.columns.iter().zip(&r.values) {
            params.push(value.clone());
            bound.push(col.clone());
            tuple.push(format!("${}::text::{}", params.len(), col.ty));
        }
        tuples.push(format!("({})", tuple.join(", ")));
    }
    let aliases: Vec<String> = (0..=first.columns.len()).map(|i| format!("c{i}")).collect();
    let values = format!("(VALUES {}) AS v ({})", tuples.join(", "), aliases.join(", "));
    let key: Vec<(String, &str)> = first.columns[..first.key_len]
        .iter()
        .zip(&aliases[1..])
        .map(|(c, alias)| (quote(&c.name), alias.as_str()))
        .collect();
    let t = &table.name;
    if plan.mode == Mode::Delete {
        let matches: Vec<String> = key.iter().map(|(q, a)| format!("{t}.{q} = v.{a}")).collect();
        let sql = format!("DELETE FROM {t} USING {values} WHERE {} RETURNING v.c0", matches.join(" AND "));
        return Statement { sql, params, bound };
    }
    // A row that exists is updated, a missing one inserted: an INSERT's
    // row must be whole before PostgreSQL looks for a conflict, so `INSERT
    // .. ON CONFLICT` alone fails on a NOT NULL column without a default
    // (a Prisma `id`) even for a row that is there. The INSERT keeps its
    // ON CONFLICT for a row another writer adds meanwhile.
    let names: Vec<String> = first.columns.iter().map(|c| quote(&c.name)).collect();
    let is_extra = |c: &Column| plan.extra.as_deref() == Some(c.name.as_str());
    // `SET` items, the row as `old` and the new values as `new(alias, q)`.
    let set = |old: &str, new: &dyn Fn(&str, &str) -> String| -> Vec<String> {
        first.columns[first.key_len..]
            .iter()
            .zip(&aliases[1 + first.key_len..])
            .map(|(c, alias)| {
                let q = quote(&c.name);
                match plan.mode {
                    // Merge adds to what the row kept in `extra`.
                    Mode::Merge if is_extra(c) => {
                        format!("{q} = COALESCE({old}.{q}, '{{}}'::jsonb) || {}", new(alias, &q))
                    }
                    _ => format!("{q} = {}", new(alias, &q)),
                }
            })
            .collect()
    };
    // An older document (lower version) leaves the row as it is.
    let guard = |old: &str, new: &dyn Fn(&str, &str) -> String| {
        plan.version.as_ref().map(|v| {
            let q = quote(v);
            let at = first.columns.iter().position(|c| &c.name == v);
            let newer = at.map_or("NULL".to_string(), |i| new(&aliases[i + 1], &q));
            format!("({old}.{q} IS NULL OR {old}.{q} <= {newer})")
        })
    };
    let from_v = |alias: &str, _: &str| format!("v.{alias}");
    let excluded = |_: &str, q: &str| format!("EXCLUDED.{q}");
    let is_key: Vec<String> = key.iter().map(|(q, a)| format!("t0.{q} = v.{a}")).collect();
    let updated = {
        let mut filter = is_key.clone();
        filter.extend(guard("t0", &from_v));
        let set = set("t0", &from_v);
        if set.is_empty() {
            // Only the key: the row that is there is the write.
            format!("SELECT v.c0 FROM v JOIN {t} AS t0 ON {}", filter.join(" AND "))
        } else {
            format!("UPDATE {t} AS t0 SET {} FROM v WHERE {} RETURNING v.c0", set.join(", "), filter.join(" AND "))
        }
    };
    let set = set(t, &excluded);
    let conflict: Vec<&str> = key.iter().map(|(q, _)| q.as_str()).collect();
    let mut on_conflict = if set.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", set.join(", ")) };
    if let (Some(g), false) = (guard(t, &excluded), set.is_empty()) {
        on_conflict.push_str(&format!(" WHERE {g}"));
    }
    let joined: Vec<String> = key.iter().map(|(q, a)| format!("v.{a} = w.{q}")).collect();
    let sql = format!(
        "WITH v AS (SELECT * FROM {values}), u AS ({updated}), \
         w AS (INSERT INTO {t} ({}) SELECT {} FROM v WHERE NOT EXISTS (SELECT 1 FROM {t} AS t0 WHERE {}) \
         ON CONFLICT ({}) DO {on_conflict} RETURNING {}) \
         SELECT c0 FROM u UNION ALL SELECT v.c0 FROM v JOIN w ON {}",
        names.join(", "),
        aliases[1..].join(", "),
        is_key.join(" AND "),
        conflict.join(", "),
        conflict.join(", "),
        joined.join(" AND "),
    );
    Statement { sql, params, bound }
}

/// The statements that write `rows`, in order: one per shape, cut where
/// the parameters would overflow or a key comes again (its second write
/// goes in a statement after its first). Each comes with the indexes of
/// its rows in `rows`, in the order of `v.c0`.
pub fn statements(table: &Table, plan: &Plan, rows: &[Row]) -> Vec<(Statement, Vec<usize>)> {
    let mut groups: Vec<(Vec<&str>, Vec<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let shape = r.shape();
        // A key already in a group goes to a later one: PostgreSQL changes
        // a row once per statement, and the later write must win.
        let fits = |(s, members): &&mut (Vec<&str>, Vec<usize>)| {
            *s == shape
                && (members.len() + 1) * r.columns.len() <= MAX_PARAMS
                && !members.iter().any(|&m| rows[m].key() == r.key())
        };
        let last_with_key = groups.iter().rposition(|(_, m)| m.iter().any(|&m| rows[m].key() == r.key()));
        let free =
            groups.iter_mut().enumerate().skip(last_with_key.map_or(0, |g| g + 1)).map(|(_, g)| g).find(|g| fits(g));
        match free {
            Some((_, members)) => members.push(i),
            None => groups.push((shape, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(_, members)| {
            let group: Vec<&Row> = members.iter().map(|&i| &rows[i]).collect();
            (statement(table, plan, &group), members)
        })
        .collect()
}

/// The query that reads the row stored under `doc`'s key, as JSON text
/// and locked (`FOR UPDATE`): a script's `current`. `None` when `doc` has
/// no full key yet (the script may be what sets it).
pub fn select_current(table: &Table, plan: &Plan, doc: &Value) -> Option<Statement> {
    let Value::Object(doc) = doc else { return None };
    let (mut params, mut bound, mut conds) = (Vec::new(), Vec::new(), Vec::new());
    for name in &plan.conflict {
        let col = table.column(name)?;
        let value = text_of(col, doc.get(name)?).ok()??;
        params.push(Some(value));
        bound.push(col.clone());
        conds.push(format!("t.{} = ${}::text::{}", quote(name), params.len(), col.ty));
    }
    let sql = format!("SELECT to_jsonb(t)::text FROM {} AS t WHERE {} FOR UPDATE", table.name, conds.join(" AND "));
    Some(Statement { sql, params, bound })
}

fn no_column(table: &Table, column: &str) -> Unwritable {
    Unwritable::NoColumn { table: table.name.clone(), column: column.to_string() }
}

/// A JSON value as the text its column's input function parses.
fn text_of(col: &Column, v: &Value) -> Result<Option<String>, Unwritable> {
    let wrong = |what: &str| Unwritable::Type { column: col.name.clone(), ty: col.ty.clone(), what: what.into() };
    Ok(Some(match v {
        Value::Null => return Ok(None),
        _ if col.is_json() => v.to_string(),
        Value::Array(items) if col.is_array() => {
            array_literal(items).ok_or_else(|| wrong("a nested array or an object"))?
        }
        Value::Array(_) => return Err(wrong("an array")),
        Value::Object(_) => return Err(wrong("an object")),
        // Unix seconds or milliseconds, as the router reads event times.
        Value::Number(_) if col.is_time() => crate::event::parse_time(v)
            .and_then(crate::event::format_nanos)
            .ok_or_else(|| wrong("this number as a time"))?,
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
    }))
}

/// `["a", "b\"c", null, 1]` → `{"a","b\"c",NULL,"1"}` (one dimension).
fn array_literal(items: &[Value]) -> Option<String> {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = match item {
            Value::Null => {
                out.push_str("NULL");
                continue;
            }
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(_) | Value::Object(_) => return None,
        };
        out.push('"');
        for c in text.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        let col = |name: &str, ty: &str| Column { name: name.into(), ty: ty.into() };
        Table {
            name: Table::quoted_name("member_activity"),
            columns: vec![
                col("user_id", "text"),
                col("status", "text"),
                col("score", "integer"),
                col("updated_at", "timestamp with time zone"),
                col("tags", "text[]"),
                col("raw", "jsonb"),
            ],
        }
    }

    fn plan(mode: Mode) -> Plan {
        Plan { mode, conflict: vec!["user_id".into()], version: None, extra: None, columns: None }
    }

    fn one(p: &Plan, doc: Value) -> Statement {
        statement(&table(), p, &[&row(&table(), p, &doc).unwrap()])
    }

    #[test]
    fn an_upsert_sets_the_documents_columns_nulls_included() {
        let s = one(&plan(Mode::Upsert), json!({"score": 3, "user_id": "u1", "status": null}));
        assert_eq!(
            s.sql,
            "WITH v AS (SELECT * FROM (VALUES (1, $1::text::text, $2::text::integer, $3::text::text)) AS v (c0, c1, c2, c3)), \
             u AS (UPDATE \"public\".\"member_activity\" AS t0 SET \"score\" = v.c2, \"status\" = v.c3 FROM v \
             WHERE t0.\"user_id\" = v.c1 RETURNING v.c0), \
             w AS (INSERT INTO \"public\".\"member_activity\" (\"user_id\", \"score\", \"status\") SELECT c1, c2, c3 FROM v \
             WHERE NOT EXISTS (SELECT 1 FROM \"public\".\"member_activity\" AS t0 WHERE t0.\"user_id\" = v.c1) \
             ON CONFLICT (\"user_id\") DO UPDATE SET \"score\" = EXCLUDED.\"score\", \"status\" = EXCLUDED.\"status\" \
             RETURNING \"user_id\") SELECT c0 FROM u UNION ALL SELECT v.c0 FROM v JOIN w ON v.c1 = w.\"user_id\""
        );
        assert_eq!(s.params, vec![Some("u1".into()), Some("3".into()), None]);
        // Merge leaves the null out: it erases nothing.
        let m = one(&plan(Mode::Merge), json!({"user_id": "u1", "score": 3, "status": null}));
        assert_eq!(m.params.len(), 2);
        assert!(!m.sql.contains("status"));
    }

    #[test]
    fn a_merge_sets_only_the_documents_columns_and_a_version_guards_it() {
        let mut p = plan(Mode::Merge);
        p.version = Some("updated_at".into());
        let s = one(&p, json!({"user_id": "u1", "updated_at": 1761040800}));
        assert!(s.sql.contains(
            "DO UPDATE SET \"updated_at\" = EXCLUDED.\"updated_at\" WHERE (\"public\".\"member_activity\".\"updated_at\" IS NULL \
             OR \"public\".\"member_activity\".\"updated_at\" <= EXCLUDED.\"updated_at\") RETURNING"
        ));
        assert!(s.sql.contains(
            "SET \"updated_at\" = v.c2 FROM v WHERE t0.\"user_id\" = v.c1 AND (t0.\"updated_at\" IS NULL \
             OR t0.\"updated_at\" <= v.c2) RETURNING v.c0"
        ));
        assert_eq!(s.params[1].as_deref(), Some("2025-10-21T10:00:00.000Z"), "Unix seconds as a time");
        let only_key = one(&plan(Mode::Merge), json!({"user_id": "u1"}));
        assert!(only_key.sql.contains("u AS (SELECT v.c0 FROM v JOIN \"public\".\"member_activity\" AS t0 ON"));
        assert!(only_key.sql.contains("DO NOTHING RETURNING"));
    }

    #[test]
    fn a_delete_matches_the_key_only() {
        let s = one(&plan(Mode::Delete), json!({"user_id": "u1", "score": 9}));
        assert_eq!(
            s.sql,
            "DELETE FROM \"public\".\"member_activity\" USING (VALUES (1, $1::text::text)) AS v (c0, c1) \
             WHERE \"public\".\"member_activity\".\"user_id\" = v.c1 RETURNING v.c0"
        );
        assert_eq!(s.params, vec![Some("u1".into())]);
    }

    #[test]
    fn rows_of_one_shape_share_a_statement() {
        let p = plan(Mode::Merge);
        let rows: Vec<Row> = [
            json!({"user_id": "a", "score": 1}),
            json!({"user_id": "b", "status": "x"}),
            json!({"user_id": "c", "score": 3}),
        ]
        .iter()
        .map(|d| row(&table(), &p, d).unwrap())
        .collect();
        assert_eq!(rows[0].key(), &[Some("a".to_string())]);
        let s = statements(&table(), &p, &rows);
        assert_eq!(s.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), vec![vec![0, 2], vec![1]]);
        assert!(s[0]
            .0
            .sql
            .contains("(VALUES (1, $1::text::text, $2::text::integer), (2, $3::text::text, $4::text::integer))"));
        assert_eq!(s[0].0.params, vec![Some("a".into()), Some("1".into()), Some("c".into()), Some("3".into())]);
        // A key again: its second write comes in a later statement.
        let again: Vec<Row> = [
            json!({"user_id": "a", "score": 1}),
            json!({"user_id": "a", "score": 2}),
            json!({"user_id": "b", "score": 3}),
        ]
        .iter()
        .map(|d| row(&table(), &p, d).unwrap())
        .collect();
        let members: Vec<Vec<usize>> = statements(&table(), &p, &again).into_iter().map(|(_, m)| m).collect();
        assert_eq!(members, vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn columns_picks_the_fields_this_table_takes() {
        let mut p = plan(Mode::Upsert);
        p.columns = Some(vec!["score".into()]);
        let r = row(&table(), &p, &json!({"user_id": "u1", "score": 3, "badge": "gold"})).unwrap();
        let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["user_id", "score"], "the key always, then the listed fields only");
    }

    #[test]
    fn fields_without_a_column_go_to_extra_or_are_refused() {
        let doc = json!({"user_id": "u1", "plan": "pro", "seats": 12});
        assert_eq!(
            row(&table(), &plan(Mode::Upsert), &doc).unwrap_err(),
            Unwritable::NoColumn { table: "\"public\".\"member_activity\"".into(), column: "plan".into() }
        );
        let mut p = plan(Mode::Merge);
        p.extra = Some("raw".into());
        let s = one(&p, doc);
        assert_eq!(s.params[1].as_deref(), Some(r#"{"plan":"pro","seats":12}"#));
        assert!(s
            .sql
            .contains("\"raw\" = COALESCE(\"public\".\"member_activity\".\"raw\", '{}'::jsonb) || EXCLUDED.\"raw\""));
    }

    #[test]
    fn values_are_parameters_whatever_they_hold() {
        let evil = "'); DROP TABLE member_activity; --";
        let s = one(&plan(Mode::Upsert), json!({"user_id": evil, "tags": ["a\"b", "c\\d", null]}));
        assert!(!s.sql.contains("DROP"));
        assert_eq!(s.params, vec![Some(evil.into()), Some(r#"{"a\"b","c\\d",NULL}"#.into())]);
        // A column name is quoted, never spliced bare.
        let mut t = table();
        t.columns.push(Column { name: "we\"ird".into(), ty: "text".into() });
        let p = plan(Mode::Merge);
        let s = statement(&t, &p, &[&row(&t, &p, &json!({"user_id": "u", "we\"ird": "x"})).unwrap()]);
        assert!(s.sql.contains("(\"user_id\", \"we\"\"ird\")"));
    }

    #[test]
    fn what_a_column_cannot_take_is_a_clear_error() {
        let e = row(&table(), &plan(Mode::Upsert), &json!({"user_id": "u", "score": {"a": 1}})).unwrap_err();
        assert_eq!(e.to_string(), "column `score` (integer) cannot take an object");
        let e = row(&table(), &plan(Mode::Upsert), &json!({"score": 1})).unwrap_err();
        assert_eq!(e, Unwritable::MissingKey("user_id".into()));
        assert_eq!(row(&table(), &plan(Mode::Upsert), &json!([1])).unwrap_err(), Unwritable::NotAnObject);
    }
}
