//! `router send ROUTE EVENT_TYPE|all`: builds a sample (or the given)
//! payload, signs it exactly as the route's provider would with the route's
//! own secret, posts it, and prints what was sent and what came back.

use crate::config::{self, env::ProcessEnv};
use crate::mapping::{Expr, Source};
use crate::route::table::fill_params;
use crate::route::Route;
use crate::verify::{is_secret_header, REDACTED};
use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The route's name.
    route: String,
    /// The event type to send, or `all` for one of each type the route names.
    event_type: String,
    /// Send this file's bytes as the body instead of a sample.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Router base URL (the route's path is appended).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Directory of route files.
    #[arg(long, default_value = "routes.d")]
    routes: PathBuf,
    /// Path parameter values, `name=value` (default `test` for each).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = config::load(std::slice::from_ref(&args.routes), &ProcessEnv)
        .map_err(|d| anyhow!("route files have errors:\n{d}"))?;
    let route = loaded.config.route(&args.route).ok_or_else(|| {
        let names: Vec<&str> = loaded.config.routes.iter().map(|r| r.name.as_str()).collect();
        anyhow!("no route `{}` (routes: {})", args.route, names.join(", "))
    })?;
    let types = if args.event_type == "all" { event_types(route) } else { vec![args.event_type.clone()] };
    if types.is_empty() {
        bail!("route `{}` names no concrete event type; give one, or add `examples:`", route.name);
    }
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut all_ok = true;
    for kind in types {
        let body = match &args.body {
            Some(file) => std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
            None => serde_json::to_vec_pretty(&sample(route, &kind))?,
        };
        let path = fill_params(&route.path, |name| {
            args.params.iter().find_map(|g| g.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        });
        let mut query = String::new();
        let mut extra = Vec::new();
        if let Some(Expr::Source(src)) = &route.event.kind {
            match src {
                Source::Query(q) => query = format!("?{q}={kind}"),
                Source::Header(h) => extra.push((h.clone(), kind.clone())),
                _ => {}
            }
        }
        let id = format!("msg_{}", random_hex(12));
        if let Some(Expr::Source(Source::Header(h))) = &route.event.id {
            extra.push((h.clone(), id.clone()));
        }
        let uri: http::Uri = format!("{path}{query}").parse().context("route path is not a valid URI")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        let mut headers =
            route.verifier.sign(&body, &uri, now, &id).map_err(|e| anyhow!("route `{}`: {e}", route.name))?;
        headers.extend(extra);
        let url = format!("{}{path}{query}", args.url.trim_end_matches('/'));
        println!("POST {url}");
        let mut req = http.post(&url).header("content-type", "application/json").body(body.clone());
        for (k, v) in &headers {
            // The request goes out with the credential; the terminal never shows it.
            let shown = if is_secret_header(k, route.verifier.secret_header()) { REDACTED } else { v.as_str() };
            println!("{k}: {shown}");
            req = req.header(k.as_str(), v.as_str());
        }
        println!("\n{}\n", String::from_utf8_lossy(&body));
        let resp = req.send().await.with_context(|| format!("cannot reach the router at {url}"))?;
        let status = resp.status();
        println!("-> {status}\n{}\n", resp.text().await.unwrap_or_default());
        all_ok &= status.is_success();
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Concrete types the route names: its examples, then `events:` and `on:`
/// patterns without wildcards.
fn event_types(route: &Route) -> Vec<String> {
    let mut out: Vec<String> = route.examples.iter().map(|(k, _)| k.clone()).collect();
    let patterns = route.filter.describe().into_iter().chain(route.rules.iter().flat_map(|r| r.on.describe()));
    for p in patterns {
        if !p.contains('*') && !p.starts_with('!') && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The route's example for `kind`, or a skeleton; the event type and a fresh
/// id are written where the route reads them from the body.
fn sample(route: &Route, kind: &str) -> Value {
    let mut doc = route.examples.iter().find(|(k, _)| k == kind).map(|(_, v)| v.clone()).unwrap_or_else(|| json!({}));
    if let Some(Expr::Source(Source::Body(p))) = &route.event.kind {
        set(&mut doc, p.field_names().as_deref(), Value::String(kind.to_string()));
    }
    if let Some(Expr::Source(Source::Body(p))) = &route.event.id {
        set(&mut doc, p.field_names().as_deref(), Value::String(format!("evt_{}", random_hex(12))));
    }
    doc
}

fn set(doc: &mut Value, path: Option<&[&str]>, value: Value) {
    let Some((last, parents)) = path.and_then(|p| p.split_last()) else { return };
    let mut at = doc;
    for name in parents {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at.as_object_mut().expect("made an object").entry(name.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(obj) = at.as_object_mut() {
        obj.insert(last.to_string(), value);
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS has a random source");
    buf
}
