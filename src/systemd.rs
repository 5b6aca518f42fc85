//! Tells systemd where the router is (`sd_notify`): ready once it listens,
//! reloading around a reload, stopping on SIGTERM, and watchdog pings when
//! the unit sets `WatchdogSec`. Without `NOTIFY_SOCKET` (not under
//! systemd, or `Type=simple`) every call does nothing.

use sd_notify::NotifyState;

/// The listeners are bound and the routes loaded.
pub fn ready(routes: usize) {
    let status = format!("serving {routes} route(s)");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload starts. systemd 253+ wants the monotonic time beside it
/// (`Type=notify-reload` rejects a bare RELOADING=1).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended: applied, or refused with the running routes kept.
pub fn reloaded(applied: bool) {
    let status = if applied { "reloaded" } else { "reload refused; the running routes stay" };
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown began (SIGTERM, Ctrl-C).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing requests in flight")]);
}

/// Pings the watchdog at half the unit's `WatchdogSec` while the runtime
/// runs its tasks: a wedged runtime stops the pings and systemd restarts
/// it. None when no watchdog is set.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "Cannot notify systemd (NOTIFY_SOCKET).");
    }
}
