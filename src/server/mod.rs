//! The listeners: accept loop with a connection bound, header and body
//! deadlines for slow clients, and graceful shutdown. One catch-all handler
//! serves every route and view from the current config snapshot, so a
//! reload never rebuilds or rebinds anything.

mod body;
mod conn;
mod ingest;
mod response;
mod views;

pub use body::read_capped;

use crate::runtime::Runtime;
use axum::body::Body;
use axum::handler::Handler as _;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::Service;

/// Limits that protect the listener from hostile or broken clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once; past it the quietest one outside a
    /// request is closed for each new one.
    pub max_connections: usize,
    /// Time allowed for a request's headers to arrive (slowloris).
    pub header_timeout: Duration,
    /// Time allowed for the whole body to arrive (408 after).
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long a request waits for its event to be durable (503 after).
    pub store_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            store_timeout: Duration::from_secs(5),
        }
    }
}

/// Runs the router: the webhook listener, the optional admin listener and
/// the dispatcher, until `shutdown` resolves. Then it stops accepting,
/// finishes requests in flight, lets deliveries in progress record their
/// outcome, and flushes the log.
pub async fn serve(
    listener: TcpListener,
    // The admin API is built by the caller (it sits above the server).
    admin: Option<(TcpListener, Router)>,
    rt: Arc<Runtime>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(crate::dispatch::run(rt.clone(), stop_rx.clone()));
    let app = app(rt.clone(), limits);
    let main = tokio::spawn(accept_loop(listener, app, limits, stop_rx.clone()));
    let admin = admin.map(|(l, api)| tokio::spawn(accept_loop(l, api, limits, stop_rx.clone())));
    let retention = tokio::spawn(crate::retention::run(rt.clone(), stop_rx.clone()));
    let upkeep = tokio::spawn(run_every(Duration::from_secs(5), stop_rx.clone(), {
        let rt = rt.clone();
        move || rt.stats.exporter.upkeep()
    }));

    shutdown.await;
    tracing::info!("Shutting down: no new connections, finishing requests in flight.");
    let _ = stop_tx.send(true);
    rt.stopping.send_replace(true);
    let _ = main.await;
    if let Some(a) = admin {
        let _ = a.await;
    }
    // A store stuck on a dead disk may hold a delivery round or a sweep for
    // good: give them the store's deadline, then go (they stay due).
    for (what, task) in [("dispatcher", dispatcher), ("retention", retention), ("upkeep", upkeep)] {
        if tokio::time::timeout(limits.store_timeout, task).await.is_err() {
            tracing::warn!(task = what, "Still waiting on the store at shutdown; not waiting longer.");
        }
    }
    // A store stuck on a dead disk must not keep the process from stopping.
    let flushing = rt.clone();
    let flushed = tokio::time::timeout(
        limits.store_timeout,
        tokio::task::spawn_blocking(move || flushing.data.log.flush_blocking()),
    )
    .await;
    match flushed {
        Ok(Ok(Ok(()))) => tracing::info!("Stopped."),
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, "Stopped; the last flush failed (acknowledged events were already synced).")
        }
        Ok(Err(e)) => tracing::error!(error = %e, "Stopped; the last flush panicked."),
        Err(_) => tracing::error!(
            "Stopped; the store did not answer the last flush (acknowledged events were already synced)."
        ),
    }
    Ok(())
}

/// The webhook listener's service: routes and views. It is the one ingest
/// handler with no path router in front (the route table matches paths,
/// and a reload swaps it). Route tests call it in-process, without a socket.
pub fn app(rt: Arc<Runtime>, limits: Limits) -> impl App {
    ingest::handle.with_state(ingest::Ingest { rt, limits })
}

/// A service the listener serves, and that can be called in-process.
pub trait App:
    Service<Request<Body>, Response = Response, Error = Infallible, Future: Send + 'static>
    + Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: Service<Request<Body>, Response = Response, Error = Infallible, Future: Send + 'static>
        + Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Calls `f` every `period` until `stop`.
async fn run_every(period: Duration, mut stop: watch::Receiver<bool>, f: impl Fn()) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => f(),
            _ = stop.changed() => return,
        }
    }
}

async fn accept_loop(listener: TcpListener, app: impl App, limits: Limits, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let table = Arc::new(conn::Table::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = TowerToHyperService::new(app);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Every slot taken: the quietest connection outside a request makes
        // room, so silent clients cannot keep this one waiting.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                table.shed_idlest();
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = stop.changed() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, conn) = table.open();
        let io = TokioIo::new(table.track(stream, conn.clone()));
        let (service, in_conn) = (service.clone(), conn.clone());
        let counted = hyper::service::service_fn(move |req| {
            let busy = in_conn.request();
            let answer = service.call(req);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let served = graceful.watch(builder.serve_connection(io, counted));
        let table = table.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = served => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "Connection closed with an error.");
                },
                _ = conn.shed.notified() => tracing::debug!(%peer, "Closed a quiet connection to make room for a new one."),
            }
            table.close(id);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(
            connections = open,
            grace = ?limits.shutdown_grace,
            "Shutdown grace period over: cutting off {open} connection(s) still open (a request not yet answered was not acknowledged, so its sender retries)."
        );
    }
}
