//! Test harness: starts the real server in-process on 127.0.0.1:0 with a
//! temp data directory, and writes route files into a temp routes dir.

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use webhook_router::config;
use webhook_router::reload;
use webhook_router::runtime::{DataDir, Runtime};
use webhook_router::server::{self, Limits};

/// A routes directory in a temp dir.
pub struct TempRoutes {
    pub dir: tempfile::TempDir,
}

impl TempRoutes {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Limits short enough for tests of slow clients.
pub fn test_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(10),
        ..Limits::default()
    }
}

pub struct TestRouter {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub rt: Arc<Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Reloads the routes directory on changes, as `serve` does.
    _watch: Option<reload::Watch>,
}

impl TestRouter {
    /// Starts on `routes` with `data` as the data directory.
    pub async fn start(routes: &Path, data: &Path) -> Self {
        Self::start_with(routes, data, HashMap::new()).await
    }

    pub async fn start_with(routes: &Path, data: &Path, env: HashMap<String, String>) -> Self {
        Self::start_full(routes, data, env, test_limits()).await
    }

    pub async fn start_full(routes: &Path, data: &Path, env: HashMap<String, String>, limits: Limits) -> Self {
        Self::start_configured(routes, data, env, limits, |_| {}).await
    }

    /// `configure` sets what `serve`'s flags would (admin token, retention)
    /// before anything runs.
    pub async fn start_configured(
        routes: &Path,
        data: &Path,
        env: HashMap<String, String>,
        limits: Limits,
        configure: impl FnOnce(&mut webhook_router::runtime::Settings),
    ) -> Self {
        let loaded = config::load(&[routes.to_path_buf()], &env).unwrap_or_else(|d| panic!("config errors:\n{d}"));
        let dir = DataDir::open_with(data, &store_for(data).await).expect("open data dir");
        let mut settings = webhook_router::runtime::Settings::default();
        configure(&mut settings);
        let rt = Runtime::with_settings(loaded.config, dir, settings);
        let env: Arc<dyn webhook_router::config::env::EnvSource + Send + Sync> = Arc::new(env);
        let watch =
            reload::start(rt.clone(), vec![routes.to_path_buf()], env, true, false, false).expect("watch routes");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let api = webhook_router::admin::router(rt.clone());
        let task = tokio::spawn(server::serve(listener, Some((admin, api)), rt.clone(), limits, async {
            let _ = rx.await;
        }));
        Self { addr, admin: admin_addr, rt, shutdown: Some(tx), task: Some(task), _watch: Some(watch) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Graceful stop; the data directory is released when this returns.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        // Wait until the runtime (and with it the directory's lock) is gone.
        let weak = Arc::downgrade(&self.rt);
        drop(self);
        for _ in 0..200 {
            if weak.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls until `check` holds (deliveries are asynchronous), or panics.
    pub async fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        for _ in 0..500 {
            if let Some(v) = check() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

/// The event log a test router opens on `data`: the embedded one, or with
/// `ROUTER_TEST_STORE=postgres` (the test command's second pass) a
/// database of its own on the run's PostgreSQL, made on first use and
/// named in the data directory, so a router restarted on the same
/// directory finds the same log.
pub async fn store_for(data: &Path) -> webhook_router::runtime::Store {
    use webhook_router::runtime::Store;
    if std::env::var("ROUTER_TEST_STORE").as_deref() != Ok("postgres") {
        return Store::Embedded;
    }
    let named = data.join(".test-store");
    let url = match std::fs::read_to_string(&named) {
        Ok(url) => url,
        Err(_) => {
            let (_, url) = crate::postgres::database().await;
            std::fs::create_dir_all(data).unwrap();
            std::fs::write(&named, &url).unwrap();
            url
        }
    };
    Store::Postgres { url, lease: Duration::from_secs(60) }
}

pub fn client() -> reqwest::Client {
    webhook_router::tls::install_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Posts JSON text with a bearer token; returns status and JSON body.
pub async fn post(url: &str, token: &str, body: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req =
        client().post(url).bearer_auth(token).header("content-type", "application/json").body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// GET and parse the JSON answer.
pub async fn get_json(url: &str) -> serde_json::Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

/// Path of the built `router` binary (same profile as the tests).
/// `router serve --no-watch` (reloads on SIGHUP only) on `listen`, no
/// admin listener: callers add their environment and spawn it.
pub fn serve_command(routes: &Path, data: &Path, listen: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(router_bin());
    cmd.args(["serve", "--no-watch", "--admin-listen", "off", "--listen", listen]);
    cmd.arg("--routes").arg(routes).arg("--data").arg(data);
    cmd
}

pub fn router_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_router"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a test receiver does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with extra headers (e.g. `Retry-After`).
    With(u16, &'static str),
    /// Never answers within the sink's timeout.
    Hang,
    /// Drops the connection without answering.
    Close,
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body's bytes (for binary bodies: OTLP protobuf).
    pub raw: Vec<u8>,
}

/// A real HTTP receiver on loopback: answers each request by the next
/// `Reply` of its script (200 once the script is spent) and records it.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    /// Serves on an existing listener (to come up on a known port later).
    pub fn serve(listener: tokio::net::TcpListener, script: Vec<Reply>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = listener.local_addr().unwrap();
        let got: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let script = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(script)));
        let log = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let path = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let raw = buf[head_end..head_end + len].to_vec();
                    let body = String::from_utf8_lossy(&raw).into_owned();
                    log.lock().unwrap().push(Received { path, headers, body, raw });
                    let reply = script.lock().unwrap().pop_front().unwrap_or(Reply::Status(200));
                    let (code, extra) = match reply {
                        Reply::Close => return,
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Reply::Status(c) => (c, String::new()),
                        Reply::With(c, h) => (c, format!("{h}\r\n")),
                    };
                    let resp = format!("HTTP/1.1 {code} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        Self { addr, got }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Runs the `router` binary from the repository root; returns exit code, stdout, stderr.
pub fn run_router(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(router_bin()).args(args).current_dir(repo()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Unix seconds, now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Signs a batch with an official SDK; `node` picks the Node signers.
pub fn sdk_sign(node: bool, requests: &[Value]) -> Vec<Vec<(String, String)>> {
    let dir = repo().join("target/signers");
    let status = Command::new(repo().join("scripts/setup-signers.sh")).status().expect("run setup-signers.sh");
    assert!(status.success(), "scripts/setup-signers.sh failed");
    let mut cmd = if node {
        let mut c = Command::new("node");
        c.arg(dir.join("sign.mjs"));
        c
    } else {
        let mut c = Command::new(dir.join("venv/bin/python"));
        c.arg(repo().join("tests/signers/sign.py"));
        c
    };
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start signer");
    child.stdin.take().unwrap().write_all(serde_json::to_string(requests).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "signer failed");
    let list: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter().map(|m| m.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_string())).collect()).collect()
}

/// Waits until every delivery of event `id` is settled (delivered, skipped or failed).
pub async fn settled(r: &TestRouter, id: u64) -> Vec<webhook_router::storage::DeliveryV1> {
    let log = &r.rt.data.log;
    for _ in 0..1000 {
        let ds = log.deliveries(id).unwrap();
        if ds.iter().all(|d| !d.status.is_open()) {
            return ds;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deliveries of event {id} never settled: {:?}", log.deliveries(id).unwrap());
}
