//! The listeners: accept loop with a connection bound, header and body
//! deadlines for slow clients, and graceful shutdown. One catch-all handler
//! serves every route and view from the current config snapshot, so a
//! reload never rebuilds or rebinds anything.

mod body;
mod ingest;
mod response;
mod views;

pub use body::read_capped;

use crate::runtime::Runtime;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Limits that protect the listener from hostile or broken clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time allowed for a request's headers to arrive (slowloris).
    pub header_timeout: Duration,
    /// Time allowed for the whole body to arrive (408 after).
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Runs the router: the webhook listener, the optional admin listener and
/// the dispatcher, until `shutdown` resolves. Then it stops accepting,
/// finishes requests in flight, lets deliveries in progress record their
/// outcome, and flushes the log.
pub async fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    rt: Arc<Runtime>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(crate::dispatch::run(rt.clone(), stop_rx.clone()));
    let app = app(rt.clone(), limits);
    let main = tokio::spawn(accept_loop(listener, app, limits, stop_rx.clone()));
    let admin = admin.map(|l| tokio::spawn(accept_loop(l, crate::admin::router(rt.clone()), limits, stop_rx.clone())));
    let retention = tokio::spawn(crate::retention::run(rt.clone(), stop_rx.clone()));
    let upkeep = tokio::spawn(every(Duration::from_secs(5), stop_rx.clone(), {
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
    let _ = dispatcher.await;
    let _ = retention.await;
    let _ = upkeep.await;
    let rt2 = rt.clone();
    tokio::task::spawn_blocking(move || rt2.data.log.flush_blocking())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    tracing::info!("Stopped.");
    Ok(())
}

/// The webhook listener's service: routes and views. Route tests call it
/// in-process, without a socket.
pub fn app(rt: Arc<Runtime>, limits: Limits) -> Router {
    Router::new().fallback(ingest::handle).with_state(ingest::Ingest { rt, limits })
}

/// Calls `f` every `period` until `stop`.
async fn every(period: Duration, mut stop: watch::Receiver<bool>, f: impl Fn()) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => f(),
            _ = stop.changed() => return,
        }
    }
}

async fn accept_loop(listener: TcpListener, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = TowerToHyperService::new(app);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = stop.changed() => break,
        };
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
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "Connection closed with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("Requests still running after the shutdown grace period; closing them.");
    }
}
