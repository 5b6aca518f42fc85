//! Reading a request body under a size cap and a deadline. The cap is
//! enforced while reading (a 10 GB upload is cut off at the limit, never
//! buffered), and a client that trickles bytes is cut off at the deadline.
//!
//! Past the cap the rest of the body is read and thrown away, up to a
//! bound, before the 413 goes out: closing on a client that is still
//! sending resets the connection, and ordinary clients (Python's urllib,
//! Node's fetch) then report EPIPE instead of the answer.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::time::Duration;

/// Bytes past the cap read (and dropped) so the client sees the 413.
pub const DRAIN_BYTES: usize = 8 << 20;
/// Time allowed for that.
const DRAIN_TIME: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("body not received in time")]
    TimedOut,
    #[error("body could not be read")]
    Broken,
}

/// The whole body, or why not.
pub async fn read_capped(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, BodyError> {
    let mut body = body;
    let mut out = BytesMut::new();
    let read = tokio::time::timeout(deadline, async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    })
    .await;
    match read {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Err(BodyError::TooLarge(limit))) => {
            drain(body, DRAIN_BYTES).await;
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(out.freeze()),
    }
}

/// Reads and drops up to `bound` bytes of what the client is still sending
/// (within `DRAIN_TIME`), so it reads the answer instead of a reset.
pub async fn drain(mut body: Body, bound: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > bound {
                break;
            }
        }
    })
    .await;
}
