//! `router events list|show`: the event log from the command line.

use super::reader::{NotFound, Reader};
use super::DataArgs;
use crate::route::filter::Pattern;
use crate::storage::{EventStatus, ListQuery};
use anyhow::bail;
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Recent events, newest first.
    List {
        /// Only this route's events (its `route:` name).
        #[arg(long)]
        route: Option<String>,
        /// pending, failed, delivered or unrouted.
        #[arg(long)]
        status: Option<String>,
        /// Only these event types, written as in a route (`order.*`, `*.deleted`).
        #[arg(long = "type", value_name = "PATTERN")]
        event_type: Option<String>,
        /// How many events at most.
        #[arg(long, default_value_t = crate::admin::DEFAULT_LIST_LIMIT)]
        limit: usize,
        #[command(flatten)]
        data: DataArgs,
    },
    /// One event in full: payload, headers (credentials redacted), deliveries.
    Show {
        /// The event's id (the `id` of `events list` and of the 200 answer).
        id: u64,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Requeue failed deliveries: of one event, or `--all-failed` (of `--route`).
    Retry {
        /// The event whose failed deliveries to requeue.
        id: Option<u64>,
        /// Every event with a failed delivery.
        #[arg(long, conflicts_with = "id")]
        all_failed: bool,
        /// With `--all-failed`: only this route's events.
        #[arg(long, requires = "all_failed")]
        route: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Run a route's stored events through the current rules again.
    Replay {
        /// The route whose stored events to run again.
        #[arg(long)]
        route: String,
        /// RFC 3339 time, Unix seconds, or a duration ago (`2h`).
        #[arg(long)]
        since: String,
        /// Received before this time (same forms as `--since`) [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Also send again what was already delivered.
        #[arg(long)]
        force: bool,
        /// Route files to take the rules from when no router runs.
        #[arg(long, default_value = "routes.d")]
        routes: std::path::PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Milliseconds since the epoch from RFC 3339, Unix seconds, or a duration ago.
fn parse_when(text: &str) -> anyhow::Result<i64> {
    if let Some(ms) = crate::event::parse_ms(text) {
        return Ok(ms);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(crate::event::now_ms() - ago.as_millis() as i64),
        Err(_) => bail!("`{text}` is not a time: write 2026-11-23T10:00:00Z, Unix seconds, or a duration ago like 2h"),
    }
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Retry { id, all_failed, route, data } => {
            if id.is_none() && !all_failed {
                bail!("give an event id, or --all-failed");
            }
            let n = Reader::open(&data)?.retry(id, route).await?;
            println!("{n} failed deliveries requeued");
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { route, since, until, force, routes, data } => {
            let since = parse_when(&since)?;
            let until = until.as_deref().map(parse_when).transpose()?.unwrap_or(i64::MAX);
            let n = Reader::open(&data)?.replay(&route, since, until, force, &routes).await?;
            println!("{n} deliveries added");
            Ok(ExitCode::SUCCESS)
        }
        Command::List { route, status, event_type, limit, data } => {
            let event_type = match event_type.as_deref().map(Pattern::parse).transpose() {
                Ok(p) => p,
                Err(e) => bail!("--type: {}", e.message),
            };
            let status = match status.as_deref() {
                None => None,
                Some(s) => match EventStatus::parse(s) {
                    Some(s) => Some(s),
                    None => bail!("unknown status `{s}`; use one of {}", EventStatus::NAMES.join(", ")),
                },
            };
            let reader = Reader::open(&data)?;
            let out = reader.events(ListQuery { route, status, event_type, limit, ..Default::default() }).await?;
            if data.json {
                println!("{}", serde_json::to_string_pretty(&out["events"])?);
            } else {
                println!(
                    "{:>8}  {:<24}  {:<20}  {:<28}  {:<9}  DELIVERIES",
                    "ID", "RECEIVED", "ROUTE", "TYPE", "STATUS"
                );
                for e in out["events"].as_array().into_iter().flatten() {
                    println!(
                        "{:>8}  {:<24}  {:<20}  {:<28}  {:<9}  {}",
                        text(&e["id"]),
                        text(&e["received_at"]),
                        text(&e["route"]),
                        text(&e["event_type"]),
                        text(&e["status"]),
                        e["deliveries"]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id, data } => {
            let reader = Reader::open(&data)?;
            let detail = match reader.event(id).await {
                Ok(d) => d,
                Err(e) if e.is::<NotFound>() => {
                    eprintln!("router: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e),
            };
            if data.json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "event {}  {}  route {}  type {}",
                detail["id"],
                text(&detail["status"]),
                text(&detail["route"]),
                text(&detail["event_type"])
            );
            println!(
                "received {}  provider id {}  event time {}",
                text(&detail["received_at"]),
                text(&detail["event_id"]),
                text(&detail["event_time"])
            );
            println!("\nheaders:");
            for h in detail["headers"].as_array().into_iter().flatten() {
                println!("  {}: {}", text(&h[0]), text(&h[1]));
            }
            println!("\npayload:\n{}", serde_json::to_string_pretty(&detail["payload"])?);
            println!("\ndeliveries:");
            for d in detail["delivery_records"].as_array().into_iter().flatten() {
                println!(
                    "  #{} {} -> {}: {} after {} attempt(s){}",
                    d["index"],
                    text(&d["rule_name"]),
                    text(&d["sink"]),
                    text(&d["status"]),
                    d["attempts"],
                    d["last_error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A JSON scalar as plain text (`-` for null).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
