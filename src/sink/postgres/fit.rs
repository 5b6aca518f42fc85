//! Whether a sink's plan fits its table as the catalog describes it:
//! what `router check --connect` reports before any event is sent. Pure:
//! the caller reads the table and its unique indexes from the database
//! and turns each misfit into a `file:line:col` problem.

use super::statement::{Mode, Plan, Table};

/// The part of a sink's declaration a misfit is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Conflict,
    Version,
    Extra,
    Columns,
}

/// One way the plan does not fit the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    pub part: Part,
    /// The name written in the route file that the table lacks, if any
    /// (for a "did you mean" among the table's columns).
    pub missing: Option<String>,
    pub message: String,
}

/// Every misfit of `plan` on `table`, whose unique indexes (plain
/// columns, no predicate) are `unique`.
pub fn misfits(table: &Table, unique: &[Vec<String>], plan: &Plan) -> Vec<Misfit> {
    let mut out = Vec::new();
    let lacks = |part: Part, name: &str, what: &str| Misfit {
        part,
        missing: Some(name.to_string()),
        message: format!("table {} has no column `{name}` ({what})", table.name),
    };
    let mut key_complete = true;
    for name in &plan.conflict {
        if table.column(name).is_none() {
            key_complete = false;
            out.push(lacks(Part::Conflict, name, "named in `conflict:`"));
        }
    }
    // `INSERT .. ON CONFLICT (key)` needs a unique index on exactly the key;
    // a delete matches by the key and needs none.
    if key_complete && plan.mode != Mode::Delete && !unique.iter().any(|u| same_set(u, &plan.conflict)) {
        let key = plan.conflict.join(", ");
        out.push(Misfit {
            part: Part::Conflict,
            missing: None,
            message: format!(
                "table {} has no unique index on ({key}): an upsert needs one \
                 (CREATE UNIQUE INDEX ON {} ({key}), or name the columns of an existing one)",
                table.name, table.name
            ),
        });
    }
    if let Some(v) = &plan.version {
        if table.column(v).is_none() {
            out.push(lacks(Part::Version, v, "named in `version:`"));
        }
    }
    if let Some(e) = &plan.extra {
        match table.column(e) {
            None => out.push(lacks(Part::Extra, e, "named in `extra:`")),
            Some(c) if c.ty != "jsonb" => out.push(Misfit {
                part: Part::Extra,
                missing: None,
                message: format!("column `{e}` is {}; `extra:` needs a jsonb column", c.ty),
            }),
            Some(_) => {}
        }
    }
    for name in plan.columns.iter().flatten() {
        if table.column(name).is_none() && plan.extra.is_none() {
            out.push(lacks(Part::Columns, name, "named in `columns:`; set `extra:` to keep it in a jsonb column"));
        }
    }
    out
}

/// Why a document field `field` cannot be written to `table`, if it cannot:
/// the table takes it, has no column for it and no `extra:` to hold it.
pub fn field_misfit(table: &Table, plan: &Plan, field: &str) -> Option<String> {
    let written = plan.mode != Mode::Delete || plan.conflict.iter().any(|k| k == field);
    (written && plan.takes(field) && table.column(field).is_none() && plan.extra.is_none()).then(|| {
        format!(
            "table {} has no column `{field}` (add it, list the fields this sink takes in `columns:`, \
             or set `extra:` to keep such fields in a jsonb column)",
            table.name
        )
    })
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::postgres::statement::Column;

    fn table() -> Table {
        let col = |name: &str, ty: &str| Column { name: name.into(), ty: ty.into() };
        Table {
            name: Table::quoted_name("member_activity"),
            columns: vec![col("user_id", "text"), col("status", "text"), col("raw", "jsonb"), col("note", "text")],
        }
    }

    fn plan() -> Plan {
        Plan { mode: Mode::Upsert, conflict: vec!["user_id".into()], version: None, extra: None, columns: None }
    }

    fn unique() -> Vec<Vec<String>> {
        vec![vec!["user_id".into()]]
    }

    #[test]
    fn a_plan_that_fits_has_no_misfits() {
        let p = Plan { extra: Some("raw".into()), columns: Some(vec!["status".into(), "other".into()]), ..plan() };
        assert_eq!(misfits(&table(), &unique(), &p), vec![]);
    }

    #[test]
    fn missing_columns_are_named_by_the_part_that_names_them() {
        let p = Plan {
            conflict: vec!["user".into()],
            version: Some("updated_at".into()),
            extra: Some("payload".into()),
            ..plan()
        };
        let found: Vec<(Part, Option<String>)> =
            misfits(&table(), &unique(), &p).into_iter().map(|m| (m.part, m.missing)).collect();
        assert_eq!(
            found,
            vec![
                (Part::Conflict, Some("user".into())),
                (Part::Version, Some("updated_at".into())),
                (Part::Extra, Some("payload".into())),
            ]
        );
    }

    #[test]
    fn an_upsert_needs_a_unique_index_on_exactly_its_key() {
        let none = misfits(&table(), &[vec!["user_id".into(), "status".into()]], &plan());
        assert_eq!(none.len(), 1);
        assert!(none[0].message.contains("no unique index on (user_id)"), "{}", none[0].message);
        let delete = Plan { mode: Mode::Delete, ..plan() };
        assert_eq!(misfits(&table(), &[], &delete), vec![]);
        let two = Plan { conflict: vec!["status".into(), "user_id".into()], ..plan() };
        assert_eq!(misfits(&table(), &[vec!["user_id".into(), "status".into()]], &two), vec![]);
    }

    #[test]
    fn extra_must_be_jsonb_and_columns_must_exist_without_it() {
        let text = Plan { extra: Some("note".into()), ..plan() };
        assert!(misfits(&table(), &unique(), &text)[0].message.contains("needs a jsonb column"));
        let listed = Plan { columns: Some(vec!["status".into(), "sessions".into()]), ..plan() };
        let m = misfits(&table(), &unique(), &listed);
        assert_eq!((m.len(), m[0].part, m[0].missing.as_deref()), (1, Part::Columns, Some("sessions")));
    }

    #[test]
    fn a_field_fits_when_it_has_a_column_is_not_taken_or_extra_holds_it() {
        assert_eq!(field_misfit(&table(), &plan(), "status"), None);
        assert!(field_misfit(&table(), &plan(), "email").is_some());
        let listed = Plan { columns: Some(vec!["status".into()]), ..plan() };
        assert_eq!(field_misfit(&table(), &listed, "email"), None);
        let extra = Plan { extra: Some("raw".into()), ..plan() };
        assert_eq!(field_misfit(&table(), &extra, "email"), None);
        let delete = Plan { mode: Mode::Delete, ..plan() };
        assert_eq!(field_misfit(&table(), &delete, "email"), None);
    }
}
