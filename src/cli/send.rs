//! `router send ROUTE EVENT_TYPE|all`: builds a sample (or the given)
//! payload, signs it exactly as the route's provider would with the route's
//! own secret, posts it, and prints what was sent and what came back.

use crate::config::{self, env::ProcessEnv};
use crate::route::sample::{self, event_types};
use crate::verify::{is_secret_header, REDACTED};
use anyhow::{anyhow, bail, Context as _};
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
    let params: Vec<(String, String)> =
        args.params.iter().filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut all_ok = true;
    for kind in types {
        let body = match &args.body {
            Some(file) => Some(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?),
            None => None,
        };
        let sample = sample::build(route, &kind, body, &params).map_err(|e| anyhow!(e))?;
        let url = format!("{}{}", args.url.trim_end_matches('/'), sample.path_and_query);
        println!("POST {url}");
        let mut req = http.post(&url).header("content-type", "application/json").body(sample.body.clone());
        for (k, v) in &sample.headers {
            // The request goes out with the credential; the terminal never shows it.
            let shown = if is_secret_header(k, route.verifier.secret_header()) { REDACTED } else { v.as_str() };
            println!("{k}: {shown}");
            req = req.header(k.as_str(), v.as_str());
        }
        println!("\n{}\n", String::from_utf8_lossy(&sample.body));
        let resp = req.send().await.with_context(|| format!("cannot reach the router at {url}"))?;
        let status = resp.status();
        println!("-> {status}\n{}\n", resp.text().await.unwrap_or_default());
        all_ok &= status.is_success();
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
