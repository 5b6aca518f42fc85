//! Reading a request body under a size cap and a deadline. The cap is
//! enforced while reading (a 10 GB upload is cut off at the limit, never
//! buffered), and a client that trickles bytes is cut off at the deadline.

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::time::Duration;

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
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge(limit)),
        Ok(Err(e)) => {
            // hyper wraps a deadline hit inside the body stream too.
            if std::error::Error::source(&*e).is_some_and(|s| s.downcast_ref::<LengthLimitError>().is_some()) {
                Err(BodyError::TooLarge(limit))
            } else {
                Err(BodyError::Broken)
            }
        }
    }
}
