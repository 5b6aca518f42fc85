//! Connection slots. When every slot is taken, the connection that has
//! been quiet longest and is not inside a request is closed to make room:
//! a thousand clients that connect and send nothing must not keep real
//! senders waiting in the kernel's queue until the header timeout.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What the slot table knows of one open connection.
#[derive(Default)]
pub struct Conn {
    /// When it last sent bytes (µs since the table's start).
    last_read: AtomicI64,
    /// Requests it has in progress (a connection mid-request is never shed).
    in_request: AtomicUsize,
    /// Told to close.
    pub shed: Notify,
}

impl Conn {
    /// Marks a request started; the guard marks it done when dropped.
    pub fn request(self: &Arc<Self>) -> InRequest {
        self.in_request.fetch_add(1, Relaxed);
        InRequest(self.clone())
    }
}

pub struct InRequest(Arc<Conn>);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.in_request.fetch_sub(1, Relaxed);
    }
}

/// The open connections of one listener.
pub struct Table {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Table {
    fn default() -> Self {
        Self { started: Instant::now(), next_id: AtomicU64::new(0), open: Mutex::default() }
    }
}

impl Table {
    fn now(&self) -> i64 {
        self.started.elapsed().as_micros() as i64
    }

    /// Registers a new connection; `close` removes it.
    pub fn open(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Relaxed);
        let conn = Arc::new(Conn::default());
        conn.last_read.store(self.now(), Relaxed);
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(id, conn.clone());
        (id, conn)
    }

    pub fn close(&self, id: u64) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Tells the connection quiet longest, outside a request, to close.
    /// Returns whether there was one.
    pub fn shed_idlest(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let idlest =
            open.values().filter(|c| c.in_request.load(Relaxed) == 0).min_by_key(|c| c.last_read.load(Relaxed));
        match idlest {
            Some(c) => {
                c.shed.notify_one();
                true
            }
            None => false,
        }
    }

    /// Wraps a stream so its reads mark the connection active.
    pub fn track<S>(self: &Arc<Self>, stream: S, conn: Arc<Conn>) -> Tracked<S> {
        Tracked { stream, conn, table: self.clone() }
    }
}

/// A stream whose reads update its connection's `last_read`.
pub struct Tracked<S> {
    stream: S,
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.last_read.store(self.table.now(), Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_the_quietest_connection_outside_a_request() {
        let t = Table::default();
        let (_, a) = t.open();
        let (_, b) = t.open();
        b.last_read.store(a.last_read.load(Relaxed) + 10, Relaxed);
        let busy = a.request();
        assert!(t.shed_idlest());
        // `a` is older but mid-request: `b` is told to close.
        assert!(tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), b.shed.notified()).await.is_ok()
        }));
        drop(busy);
        t.close(0);
        t.close(1);
        assert!(!t.shed_idlest());
    }
}
