//! `router tap [ROUTE] [--type PATTERN]`: a running router's requests and
//! deliveries, live, one line each (the admin API's `GET /tap`), until
//! Ctrl-C. `--json` prints the lines as the API sends them.

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this route's requests and deliveries (its `route:` name).
    route: Option<String>,
    /// Only events whose type matches, as a route writes it (`customer.*`, `*.deleted`).
    #[arg(long = "type", value_name = "PATTERN")]
    event_type: Option<String>,
    /// Admin address of the running router.
    #[arg(long, env = "ROUTER_ADMIN", default_value = "127.0.0.1:9090")]
    admin: String,
    /// The admin API's token, when the router was started with one.
    #[arg(long, env = "ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Print each line as JSON, as the admin API sends it.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    tokio::select! {
        done = follow(&args) => done,
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
    }
}

async fn follow(args: &Args) -> anyhow::Result<ExitCode> {
    let base = format!("http://{}", args.admin);
    // No overall timeout: the stream is meant to stay open.
    let client = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(5)).build()?;
    let mut query = Vec::new();
    if let Some(r) = &args.route {
        query.push(("route", r.clone()));
    }
    if let Some(t) = &args.event_type {
        query.push(("type", t.clone()));
    }
    let mut req = client.get(format!("{base}/tap")).query(&query).header("accept", "text/event-stream");
    if let Some(t) = &args.admin_token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.with_context(|| format!("the router's admin API at {base} does not answer"))?;
    match resp.status().as_u16() {
        200 => {}
        401 => bail!("the admin API at {base} wants its token: pass --admin-token or set ROUTER_ADMIN_TOKEN"),
        status => {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            bail!("admin API: {} ({status})", body["error"].as_str().unwrap_or("error"));
        }
    }
    eprintln!("Tapping {base} (Ctrl-C to stop)...");
    let mut pending = String::new();
    let mut kind = String::new();
    while let Some(chunk) = resp.chunk().await.context("the stream from the router broke")? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(k) = line.strip_prefix("event:") {
                kind = k.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                print_line(&kind, data.trim(), args.json)?;
            }
        }
    }
    eprintln!("The router closed the stream (it stopped).");
    Ok(ExitCode::SUCCESS)
}

fn print_line(kind: &str, data: &str, json: bool) -> anyhow::Result<()> {
    if kind == "lagged" {
        eprintln!("... {data} line(s) missed (this terminal fell behind)");
        return Ok(());
    }
    if json {
        println!("{data}");
        return Ok(());
    }
    let v: Value = serde_json::from_str(data).map_err(|e| anyhow!("the router sent a line that is not JSON: {e}"))?;
    let s = |k: &str| v[k].as_str().unwrap_or("");
    let time = s("at").get(11..23).unwrap_or(s("at"));
    let id = v["id"].as_u64().map(|i| format!("#{i}")).unwrap_or_else(|| "-".into());
    let why = if s("reason").is_empty() { String::new() } else { format!(" ({})", s("reason")) };
    match kind {
        "delivery" => println!(
            "{time}  {:<20} {:<8}   -> {} {}{why} [attempt {}]",
            s("route"),
            id,
            s("sink"),
            s("verdict"),
            v["attempts"].as_u64().unwrap_or(0)
        ),
        _ => println!("{time}  {:<20} {:<8} {} {}{why}", s("route"), id, s("type"), s("verdict")),
    }
    Ok(())
}
