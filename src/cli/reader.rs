//! Reads the data directory for the CLI: directly when no router runs, or
//! through the admin API of the router that holds it (one process at a time
//! opens a data directory). Both paths return the same JSON.

use super::DataArgs;
use crate::runtime::{DataDir, OpenError};
use crate::storage::ListQuery;
use anyhow::{anyhow, Context as _};
use serde_json::{json, Value};

/// Where the CLI reads from: the directory itself, or the router that has
/// it open. Each method answers the same JSON either way, so a command's
/// output does not depend on whether a router happens to be running.
pub enum Reader {
    Local(DataDir),
    Remote { base: String, client: reqwest::Client, token: Option<String> },
}

/// A read that found nothing (exit 1, not a crash).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

impl Reader {
    /// Opens the directory when it is free, else asks the router that holds
    /// it (its lock says one does). `--admin` alone skips the directory.
    pub fn open(args: &DataArgs) -> anyhow::Result<Self> {
        let remote = |admin: &str| -> anyhow::Result<Self> {
            // A router that does not answer in 10 s is wedged or gone: say so
            // rather than hang an operator's shell (or a cron job).
            let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
            Ok(Reader::Remote { base: format!("http://{admin}"), client, token: args.admin_token.clone() })
        };
        // The default is `serve`'s own `--admin-listen` default, so on one box
        // `router events list` just works beside a running router.
        let admin = args.admin.as_deref().unwrap_or("127.0.0.1:9090");
        let data = match (&args.data, &args.admin) {
            (Some(d), _) => d.clone(),
            // `--admin` alone names the router to ask.
            (None, Some(_)) => return remote(admin),
            (None, None) => std::path::PathBuf::from("data"),
        };
        // A reader never creates a data directory (a typo must not look like an empty store).
        if !data.is_dir() {
            return Err(anyhow!(
                "no data directory at {}: pass --data DIR (what `router serve --data` was given), or --admin ADDR to ask a running router",
                data.display()
            ));
        }
        let store = crate::runtime::Store::parse(args.store.as_deref(), std::time::Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
        match DataDir::open_with(&data, &store) {
            Ok(dir) => Ok(Reader::Local(dir)),
            // The lock is the proof a router runs on this directory: only it may
            // write, and it knows things the files do not yet (claims in flight).
            Err(OpenError::Locked(_)) => remote(admin),
            Err(e) => Err(e.into()),
        }
    }

    /// A GET of the admin API.
    async fn remote(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, query).await
    }

    /// A POST of the admin API (the calls that change state).
    async fn remote_post(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, query).await
    }

    /// One admin API call; a 404 becomes `NotFound` (exit 1, not a crash).
    async fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let Reader::Remote { base, client, token } = self else {
            unreachable!("admin calls only when a router holds the data")
        };
        let mut req = client.request(method, format!("{base}{path}")).query(query);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!("the data directory is in use, and the router's admin API at {base} does not answer")
        })?;
        // The admin API answers JSON on every path, errors included
        // (`admin::failure`), so one parse serves success and failure alike.
        let status = resp.status();
        let body: Value = resp.json().await.context("admin API answered something that is not JSON")?;
        match status.as_u16() {
            200..=299 => Ok(body),
            404 => Err(NotFound(body["error"].as_str().unwrap_or("not found").to_string()).into()),
            401 => {
                Err(anyhow!("the admin API at {base} wants its token: pass --admin-token or set ROUTER_ADMIN_TOKEN"))
            }
            // Any other status: the router's own words (it never sends internals).
            _ => Err(anyhow!("admin API: {} ({status})", body["error"].as_str().unwrap_or("error"))),
        }
    }

    /// The events a `ListQuery` selects, newest first.
    pub async fn events(&self, q: ListQuery) -> anyhow::Result<Value> {
        match self {
            Reader::Local(d) => Ok(json!({"events": d.log.list(&q)?})),
            Reader::Remote { .. } => {
                // The same filters as the admin API's `GET /events`, by the same names.
                let mut query = vec![("limit", q.limit.to_string())];
                if let Some(r) = q.route {
                    query.push(("route", r));
                }
                if let Some(t) = q.event_type {
                    // The pattern as written: the router parses it with the routes' own
                    // matcher, as the offline path does.
                    query.push(("type", t.as_str().to_string()));
                }
                if let Some(s) = q.status {
                    query.push(("status", serde_json::to_value(s)?.as_str().unwrap_or_default().to_string()));
                }
                self.remote("/events", &query).await
            }
        }
    }

    /// One event with its deliveries and their attempts.
    pub async fn event(&self, id: u64) -> anyhow::Result<Value> {
        match self {
            Reader::Local(d) => match d.log.detail(id) {
                Ok(detail) => Ok(serde_json::to_value(detail)?),
                Err(crate::storage::LogError::NotFound(w)) => Err(NotFound(format!("no such {w}")).into()),
                Err(e) => Err(e.into()),
            },
            Reader::Remote { .. } => self.remote(&format!("/events/{id}"), &[]).await,
        }
    }

    /// Requeues failed deliveries: of one event, or all (of a route).
    pub async fn retry(&self, event: Option<u64>, route: Option<String>) -> anyhow::Result<usize> {
        let n = match self {
            Reader::Local(d) => {
                // Offline, nothing else will sync the requeued states: flush before
                // exiting, or the next `serve` would find them still failed.
                let n = d.log.retry_failed(event, route.as_deref())?.len();
                d.log.flush_blocking()?;
                return Ok(n);
            }
            Reader::Remote { .. } => match event {
                Some(id) => self.remote_post(&format!("/events/{id}/retry"), &[]).await?,
                None => {
                    self.remote_post("/events/retry", &route.map(|r| vec![("route", r)]).unwrap_or_default()).await?
                }
            },
        };
        Ok(n["requeued"].as_u64().unwrap_or(0) as usize)
    }

    /// Replays a route's events of a time range through the current rules
    /// (offline: the rules of `routes`).
    pub async fn replay(
        &self,
        route: &str,
        since_ms: i64,
        until_ms: i64,
        force: bool,
        routes: &std::path::Path,
    ) -> anyhow::Result<usize> {
        match self {
            Reader::Local(d) => {
                // Offline, the rules come from the route files on disk; through a
                // router, from the config it is serving. Either way replay plans with
                // the current rules, not the ones the event was first routed by.
                let loaded = crate::config::load(&[routes.to_path_buf()], &crate::config::env::ProcessEnv)
                    .map_err(|diags| anyhow!("route files have errors:\n{diags}"))?;
                let r =
                    loaded.config.route(route).ok_or_else(|| anyhow!("no route `{route}` in {}", routes.display()))?;
                let n = d.log.replay(route, since_ms, until_ms, force, &|e, body| r.plan_stored(e, body))?;
                d.log.flush_blocking()?;
                Ok(n)
            }
            Reader::Remote { .. } => {
                let mut q =
                    vec![("route", route.to_string()), ("since", since_ms.to_string()), ("force", force.to_string())];
                // An open-ended range is sent without `until`, which the API reads as "now".
                if until_ms != i64::MAX {
                    q.push(("until", until_ms.to_string()));
                }
                Ok(self.remote_post("/events/replay", &q).await?["added"].as_u64().unwrap_or(0) as usize)
            }
        }
    }

    /// One record of the store sink.
    pub async fn record(&self, tree: &str, key: &str) -> anyhow::Result<Value> {
        match self {
            Reader::Local(d) => d.records.get(tree, key)?.ok_or_else(|| NotFound(format!("no record `{key}`")).into()),
            Reader::Remote { .. } => {
                let path = format!("/store/{}/{}", encode(tree), encode(key));
                self.remote(&path, &[]).await
            }
        }
    }

    /// The records of a tree, optionally filtered by field values.
    pub async fn records(&self, tree: &str, filter: &[(String, String)]) -> anyhow::Result<Value> {
        match self {
            Reader::Local(d) => {
                // The CLI lists a whole tree (an operator asked for it); the admin
                // API pages, and the router applies the same `where` filters.
                let records = d.records.list(tree, filter, None, usize::MAX)?;
                Ok(
                    json!({"records": records.into_iter().map(|(key, value)| json!({"key": key, "value": value})).collect::<Vec<_>>()}),
                )
            }
            Reader::Remote { .. } => {
                // `where=field=value,...` is the admin API's filter form.
                let w: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let query = if w.is_empty() { vec![] } else { vec![("where", w.join(","))] };
                self.remote(&format!("/store/{}", encode(tree)), &query).await
            }
        }
    }
}

/// A tree or key as one URL path segment: `/` and spaces escaped, and a
/// space as `%20` (a `+` in a path is a plus, not a space).
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}
