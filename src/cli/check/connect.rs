//! `router check --connect`: what only the databases can tell. Each
//! postgres sink's table is read from its catalog and set against the
//! route files: the table itself (`table:`), the columns `conflict:`,
//! `version:`, `extra:` and `columns:` name, a unique index for the
//! upsert, the `map:` keys of the rules that write it, and the route's
//! `examples:`, rehearsed as `router check`'s route tests are and each
//! value cast by PostgreSQL to its column's type. Problems come in the
//! loader's shape, at the place in the file that must change.

use super::route_test_runner::{self, Scratch};
use crate::config::diagnostic::nearest;
use crate::config::raw::{self, MapNode, RawFile, RawSink, Spanned};
use crate::config::{self, Config, Diagnostic, Diagnostics, Pos};
use crate::route::sample;
use crate::sink::postgres::fit::{self, Part};
use crate::sink::postgres::statement::{self, Table};
use crate::sink::postgres::{self as postgres_sink, PostgresSink};
use crate::sink::{Outcome, SinkKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A postgres sink whose table could be read.
struct Reached<'a> {
    sink: &'a PostgresSink,
    table: Table,
    client: deadpool_postgres::Object,
}

/// The problems the databases of `config`'s postgres sinks show.
pub async fn check(paths: &[PathBuf], config: Config) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let files = raw_files(paths);
    let scratch = match Scratch::new(config) {
        Ok(s) => s,
        Err(e) => {
            let at = paths.first().map_or(Path::new("."), PathBuf::as_path);
            diags.push(Diagnostic::error(at, Pos::UNKNOWN, format!("cannot rehearse the examples: {e}")));
            return diags;
        }
    };
    let config = scratch.rt.config();
    let mut reached: BTreeMap<&str, Reached> = BTreeMap::new();
    for (file, raw) in &files {
        for (name, sink) in raw.sinks.iter().flat_map(|m| m.0.iter()) {
            let Some(SinkKind::Postgres(p)) = config.sinks.get(&name.value).map(|s| &s.kind) else { continue };
            if let Some(r) = reach(file, name, &sink.value, p, &mut diags).await {
                reached.insert(name.value.as_str(), r);
            }
        }
    }
    if reached.is_empty() {
        return diags;
    }
    for (file, raw) in &files {
        map_keys(file, raw, &reached, &mut diags);
    }
    let app = scratch.app();
    for (file, raw) in &files {
        let Some(route) = raw.route.as_ref().and_then(|n| config.route(&n.value)) else { continue };
        for (kind, _) in raw.examples.iter().flat_map(|m| m.0.iter()) {
            let at = Pos::of(kind);
            // The example as `router send` posts it: a fresh id written in.
            let req = sample::build(route, &kind.value, None, &[]).and_then(|r| r.to_request());
            let posted = match req {
                Ok(req) => route_test_runner::post(&scratch.rt, &app, req).await,
                Err(e) => Err(e),
            };
            let posted = match posted {
                Ok(p) if p.outcome == "rejected" => {
                    let why = format!("example `{}` is rejected ({}): {}", kind.value, p.status, p.answer);
                    diags.push(Diagnostic::warning(file, at, why));
                    continue;
                }
                Ok(p) => p,
                Err(e) => {
                    diags.push(Diagnostic::warning(
                        file,
                        at,
                        format!("example `{}` was not rehearsed: {e}", kind.value),
                    ));
                    continue;
                }
            };
            for r in &posted.rehearsed {
                let (Some(target), Some(doc)) = (reached.get(r.sink.as_str()), &r.document) else { continue };
                let what = format!("example `{}`, rule {} → sink `{}`", kind.value, r.rule, r.sink);
                match statement::row(&target.table, &target.sink.plan, doc) {
                    Err(e) => diags.push(Diagnostic::error(file, at, format!("{what}: {e}"))),
                    Ok(row) => {
                        let pairs = row.values.iter().zip(&row.columns);
                        if let Some((column, reason)) = postgres_sink::refused_value(&target.client, pairs).await {
                            let value = doc.get(&column.name).map(ToString::to_string).unwrap_or_default();
                            diags.push(
                                Diagnostic::error(
                                    file,
                                    at,
                                    format!(
                                        "{what}: column `{}` ({}) cannot take {value}: {reason}",
                                        column.name, column.ty
                                    ),
                                )
                                .with_hint("change the column's type, or map the field to a value it takes"),
                            );
                        }
                    }
                }
            }
        }
    }
    drop(app);
    diags
}

/// Every route file under `paths`, parsed again for its positions (the
/// loader has already accepted them).
fn raw_files(paths: &[PathBuf]) -> Vec<(PathBuf, RawFile)> {
    config::route_files(paths, &mut Diagnostics::default())
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).ok()?;
            let raw = raw::parse(&text).ok()??;
            Some((file, raw))
        })
        .collect()
}

/// Opens `sink`'s database and reads its table; its misfits go to `diags`.
async fn reach<'a>(
    file: &Path,
    name: &Spanned<String>,
    raw: &RawSink,
    sink: &'a PostgresSink,
    diags: &mut Diagnostics,
) -> Option<Reached<'a>> {
    let at = |s: Option<Pos>| s.unwrap_or(Pos::of(&raw.kind));
    let t = &sink.target;
    let client = match sink.connect().await {
        Ok(c) => c,
        Err(Outcome::Retry { error, .. } | Outcome::Failed { error }) => {
            let message = format!(
                "sink `{}`: cannot reach PostgreSQL at {}:{}, database {} as {}: {error}",
                name.value, t.host, t.port, t.database, t.user
            );
            diags.push(
                Diagnostic::error(file, at(raw.url.as_ref().map(Pos::of)), message)
                    .with_hint("check the host, port, user and password in the URL (or the variable it names)"),
            );
            return None;
        }
        Err(_) => return None,
    };
    let table_at = at(raw.table.as_ref().map(Pos::of));
    let table = match postgres_sink::load_table(&client, &sink.table).await {
        Ok(t) if !t.columns.is_empty() => t,
        Ok(t) => {
            diags.push(Diagnostic::error(file, table_at, format!("table {} has no columns", t.name)));
            return None;
        }
        Err(e) => {
            let error = match postgres_sink::outcome_of(&e) {
                Outcome::Retry { error, .. } | Outcome::Failed { error } => error,
                _ => e.to_string(),
            };
            diags.push(
                Diagnostic::error(file, table_at, format!("sink `{}`: table `{}`: {error}", name.value, sink.table))
                    .with_hint(
                        "create it (the example's schema.sql), or write `schema.table` if it is not in `public`",
                    ),
            );
            return None;
        }
    };
    let unique = postgres_sink::unique_keys(&client, &table.name).await.unwrap_or_default();
    for m in fit::misfits(&table, &unique, &sink.plan) {
        let written = match m.part {
            Part::Conflict => raw.conflict.as_ref().map(Pos::of),
            Part::Version => raw.version.as_ref().map(Pos::of),
            Part::Extra => raw.extra.as_ref().map(Pos::of),
            Part::Columns => raw.columns.as_ref().map(Pos::of),
        };
        let hint = column_hint(&table, m.missing.as_deref());
        let d = Diagnostic::error(file, at(written), format!("sink `{}`: {}", name.value, m.message));
        diags.push(match hint {
            Some(h) => d.with_hint(h),
            None => d,
        });
    }
    Some(Reached { sink, table, client })
}

/// The `map:` keys of each rule that writes a reached table, against its
/// columns. A rule with a script may still remove or rename the field, so
/// there the problem is a warning.
fn map_keys(file: &Path, raw: &RawFile, reached: &BTreeMap<&str, Reached>, diags: &mut Diagnostics) {
    for rule in raw.rules.iter().flatten() {
        let rule = &rule.value;
        let Some(Spanned { value: MapNode::Object(entries), .. }) = &rule.map else { continue };
        for target in &rule.to {
            let Some(r) = reached.get(target.value.sink.value.as_str()) else { continue };
            for (key, _) in entries {
                let Some(problem) = fit::field_misfit(&r.table, &r.sink.plan, &key.value) else { continue };
                let message = format!("sink `{}`: {problem}", target.value.sink.value);
                let d = if rule.script.is_some() {
                    Diagnostic::warning(file, Pos::of(key), format!("{message}, unless the rule's script removes it"))
                } else {
                    Diagnostic::error(file, Pos::of(key), message)
                };
                diags.push(match column_hint(&r.table, Some(&key.value)) {
                    Some(h) => d.with_hint(h),
                    None => d,
                });
            }
        }
    }
}

/// "did you mean" for a name the table lacks, else the columns it has.
fn column_hint(table: &Table, missing: Option<&str>) -> Option<String> {
    let missing = missing?;
    let names = table.columns.iter().map(|c| c.name.as_str());
    Some(match nearest(missing, names.clone()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("its columns: {}", names.collect::<Vec<_>>().join(", ")),
    })
}
