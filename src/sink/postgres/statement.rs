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
    fn is_json(&self) -> bool {
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

/// What a write does with the row of its key (`mode:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The document's columns are written, a null as NULL; the row's other
    /// columns (an id, `created_at`) stay as they are.
    Upsert,
    /// As upsert, but a null or missing field erases nothing: only the
    /// values the document has are written.
    Merge,
    /// The row of the key is deleted.
    Delete,
}

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
}

/// A statement ready to run: `params[i]` is `$i+1`, as text (`None`:
/// NULL), for column `bound[i]` (so an error can name the column).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Option<String>>,
    pub bound: Vec<Column>,
}

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

    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The statement that writes `doc` into `table` as `plan` says.
pub fn build(table: &Table, plan: &Plan, doc: &Value) -> Result<Statement, Unwritable> {
    let Value::Object(doc) = doc else { return Err(Unwritable::NotAnObject) };
    let (mut params, mut bound) = (Vec::new(), Vec::new());
    let mut bind = |col: &Column, v: &Value| -> Result<String, Unwritable> {
        params.push(text_of(col, v)?);
        bound.push(col.clone());
        Ok(format!("${}::text::{}", params.len(), col.ty))
    };
    let mut key = Vec::with_capacity(plan.conflict.len());
    for name in &plan.conflict {
        let col = table.column(name).ok_or_else(|| no_column(table, name))?;
        match doc.get(name) {
            None | Some(Value::Null) => return Err(Unwritable::MissingKey(name.clone())),
            Some(v) => key.push((col, v)),
        }
    }
    if plan.mode == Mode::Delete {
        let mut conds = Vec::new();
        for (col, v) in key {
            conds.push(format!("{} = {}", quote(&col.name), bind(col, v)?));
        }
        let sql = format!("DELETE FROM {} WHERE {}", table.name, conds.join(" AND "));
        return Ok(Statement { sql, params, bound });
    }
    // The document's fields in its own order; those without a column go
    // to `extra` (when set), the rest is an error naming the first.
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut extra = Map::new();
    for (field, v) in doc {
        if plan.mode == Mode::Merge && v.is_null() {
            continue;
        }
        match table.column(field) {
            Some(col) if Some(field) != plan.extra.as_ref() => {
                names.push(quote(field));
                values.push(bind(col, v)?);
            }
            _ if plan.extra.is_some() => _ = extra.insert(field.clone(), v.clone()),
            _ => return Err(no_column(table, field)),
        }
    }
    let extra_col = match &plan.extra {
        Some(name) => Some(table.column(name).ok_or_else(|| no_column(table, name))?),
        None => None,
    };
    if let (Some(col), false) = (extra_col, extra.is_empty() && plan.mode == Mode::Merge) {
        names.push(quote(&col.name));
        values.push(bind(col, &Value::Object(extra))?);
    }
    let conflict: Vec<String> = plan.conflict.iter().map(|c| quote(c)).collect();
    let mut set = Vec::new();
    for col in &table.columns {
        let q = quote(&col.name);
        if conflict.contains(&q) {
            continue;
        }
        let in_doc = names.contains(&q);
        let is_extra = extra_col.is_some_and(|e| e.name == col.name);
        match (plan.mode, in_doc) {
            // Merge adds to what the row kept in `extra`.
            (Mode::Merge, true) if is_extra => {
                set.push(format!("{q} = COALESCE({}.{q}, '{{}}'::jsonb) || EXCLUDED.{q}", table.name))
            }
            (_, true) => set.push(format!("{q} = EXCLUDED.{q}")),
            (_, false) => {}
        }
    }
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO ",
        table.name,
        names.join(", "),
        values.join(", "),
        conflict.join(", ")
    );
    if set.is_empty() {
        sql.push_str("NOTHING");
    } else {
        sql.push_str("UPDATE SET ");
        sql.push_str(&set.join(", "));
        if let Some(v) = &plan.version {
            let q = quote(v);
            sql.push_str(&format!(" WHERE {t}.{q} IS NULL OR {t}.{q} <= EXCLUDED.{q}", t = table.name));
        }
    }
    Ok(Statement { sql, params, bound })
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
        Plan { mode, conflict: vec!["user_id".into()], version: None, extra: None }
    }

    #[test]
    fn an_upsert_sets_the_documents_columns_nulls_included() {
        let s = build(&table(), &plan(Mode::Upsert), &json!({"user_id": "u1", "score": 3, "status": null})).unwrap();
        assert_eq!(
            s.sql,
            "INSERT INTO \"public\".\"member_activity\" (\"user_id\", \"score\", \"status\") \
             VALUES ($1::text::text, $2::text::integer, $3::text::text) \
             ON CONFLICT (\"user_id\") DO UPDATE SET \"status\" = EXCLUDED.\"status\", \"score\" = EXCLUDED.\"score\""
        );
        assert_eq!(s.params, vec![Some("u1".into()), Some("3".into()), None]);
        // Merge leaves the null out: it erases nothing.
        let m = build(&table(), &plan(Mode::Merge), &json!({"user_id": "u1", "score": 3, "status": null})).unwrap();
        assert_eq!(m.params.len(), 2);
        assert!(!m.sql.contains("status"));
    }

    #[test]
    fn a_merge_sets_only_the_documents_columns_and_a_version_guards_it() {
        let mut p = plan(Mode::Merge);
        p.version = Some("updated_at".into());
        let s = build(&table(), &p, &json!({"user_id": "u1", "updated_at": 1761040800})).unwrap();
        assert!(s.sql.ends_with(
            "DO UPDATE SET \"updated_at\" = EXCLUDED.\"updated_at\" WHERE \"public\".\"member_activity\".\"updated_at\" IS NULL \
             OR \"public\".\"member_activity\".\"updated_at\" <= EXCLUDED.\"updated_at\""
        ));
        assert_eq!(s.params[1].as_deref(), Some("2025-10-21T10:00:00.000Z"), "Unix seconds as a time");
        let only_key = build(&table(), &plan(Mode::Merge), &json!({"user_id": "u1"})).unwrap();
        assert!(only_key.sql.ends_with("DO NOTHING"));
    }

    #[test]
    fn a_delete_matches_the_key_only() {
        let s = build(&table(), &plan(Mode::Delete), &json!({"user_id": "u1", "score": 9})).unwrap();
        assert_eq!(s.sql, "DELETE FROM \"public\".\"member_activity\" WHERE \"user_id\" = $1::text::text");
        assert_eq!(s.params, vec![Some("u1".into())]);
    }

    #[test]
    fn fields_without_a_column_go_to_extra_or_are_refused() {
        let doc = json!({"user_id": "u1", "plan": "pro", "seats": 12});
        assert_eq!(
            build(&table(), &plan(Mode::Upsert), &doc).unwrap_err(),
            Unwritable::NoColumn { table: "\"public\".\"member_activity\"".into(), column: "plan".into() }
        );
        let mut p = plan(Mode::Merge);
        p.extra = Some("raw".into());
        let s = build(&table(), &p, &doc).unwrap();
        assert_eq!(s.params[1].as_deref(), Some(r#"{"plan":"pro","seats":12}"#));
        assert!(s
            .sql
            .contains("\"raw\" = COALESCE(\"public\".\"member_activity\".\"raw\", '{}'::jsonb) || EXCLUDED.\"raw\""));
    }

    #[test]
    fn values_are_parameters_whatever_they_hold() {
        let evil = "'); DROP TABLE member_activity; --";
        let s =
            build(&table(), &plan(Mode::Upsert), &json!({"user_id": evil, "tags": ["a\"b", "c\\d", null]})).unwrap();
        assert!(!s.sql.contains("DROP"));
        assert_eq!(s.params, vec![Some(evil.into()), Some(r#"{"a\"b","c\\d",NULL}"#.into())]);
        // A column name is quoted, never spliced bare.
        let mut t = table();
        t.columns.push(Column { name: "we\"ird".into(), ty: "text".into() });
        let s = build(&t, &plan(Mode::Merge), &json!({"user_id": "u", "we\"ird": "x"})).unwrap();
        assert!(s.sql.contains("(\"user_id\", \"we\"\"ird\")"));
    }

    #[test]
    fn what_a_column_cannot_take_is_a_clear_error() {
        let e = build(&table(), &plan(Mode::Upsert), &json!({"user_id": "u", "score": {"a": 1}})).unwrap_err();
        assert_eq!(e.to_string(), "column `score` (integer) cannot take an object");
        let e = build(&table(), &plan(Mode::Upsert), &json!({"score": 1})).unwrap_err();
        assert_eq!(e, Unwritable::MissingKey("user_id".into()));
        assert_eq!(build(&table(), &plan(Mode::Upsert), &json!([1])).unwrap_err(), Unwritable::NotAnObject);
    }
}
