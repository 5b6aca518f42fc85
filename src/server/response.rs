//! Every answer ingest gives, mapped to status and JSON body in one place.
//! Internal detail (store errors, verifier reasons) never reaches a client.

use crate::telemetry::Reject;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a request was not accepted.
#[derive(Debug)]
pub enum IngestError {
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    TooLarge {
        limit: usize,
    },
    Timeout,
    BadBody,
    Unauthorized,
    /// Body is not JSON, or misses required fields: every problem listed.
    Invalid {
        error: &'static str,
        problems: Vec<String>,
    },
    Unavailable,
}

impl IngestError {
    /// The label this refusal is counted under. `NotFound` has no route to
    /// count it on (it goes to `unmatched`); it is listed only to be total.
    pub fn reason(&self) -> Reject {
        match self {
            IngestError::NotFound | IngestError::BadBody => Reject::BadBody,
            IngestError::MethodNotAllowed { .. } => Reject::MethodNotAllowed,
            IngestError::TooLarge { .. } => Reject::TooLarge,
            IngestError::Timeout => Reject::Timeout,
            IngestError::Unauthorized => Reject::Unauthorized,
            IngestError::Invalid { .. } => Reject::Invalid,
            IngestError::Unavailable => Reject::Unavailable,
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            IngestError::NotFound => (StatusCode::NOT_FOUND, json!({"error": "no route for this path"})),
            IngestError::MethodNotAllowed { allow } => {
                let mut r =
                    (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"error": "method not allowed"}))).into_response();
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
                return r;
            }
            IngestError::TooLarge { limit } => {
                // The rest of an oversize body may still be on its way: this
                // connection is done after the answer.
                let body = Json(json!({"error": "body too large", "limit_bytes": limit}));
                let mut r = (StatusCode::PAYLOAD_TOO_LARGE, body).into_response();
                r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            IngestError::Timeout => (StatusCode::REQUEST_TIMEOUT, json!({"error": "body not received in time"})),
            IngestError::BadBody => (StatusCode::BAD_REQUEST, json!({"error": "body could not be read"})),
            IngestError::Unauthorized => (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"})),
            IngestError::Invalid { error, problems } => {
                (StatusCode::BAD_REQUEST, json!({"error": error, "problems": problems}))
            }
            IngestError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "event store unavailable, retry later"}))
            }
        };
        (status, Json(body)).into_response()
    }
}

/// The 2xx answers.
pub enum Accepted {
    New {
        id: u64,
        event: String,
    },
    Duplicate {
        id: u64,
        event: String,
    },
    Filtered {
        event: String,
    },
    /// A provider's URL check (Slack `url_verification`), answered, not logged.
    Challenge(String),
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        // The hot path: serialised straight from a struct, not built as a `Value`.
        let receipt = |id: Option<u64>, event, duplicate, filtered| {
            let receipt = Receipt { received: true, duplicate, filtered, id: id.map(|id| id.to_string()), event };
            (StatusCode::OK, Json(receipt)).into_response()
        };
        match self {
            Accepted::New { id, event } => receipt(Some(id), &event, false, false),
            Accepted::Duplicate { id, event } => receipt(Some(id), &event, true, false),
            Accepted::Filtered { event } => receipt(None, &event, false, true),
            Accepted::Challenge(challenge) => (StatusCode::OK, Json(json!({"challenge": challenge}))).into_response(),
        }
    }
}

/// The body of a 2xx for an event: `{"received": true, ["duplicate"|"filtered": true,] ["id",] "event"}`.
#[derive(serde::Serialize)]
struct Receipt<'a> {
    received: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    filtered: bool,
    /// The router's log id, as a string (ids may outgrow a JSON number's safe range).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    event: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(a: Accepted) -> String {
        let bytes = a.into_response().into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_answers_keep_their_shape() {
        let event = || "customer.created".to_string();
        assert_eq!(
            body(Accepted::New { id: 7, event: event() }).await,
            r#"{"received":true,"id":"7","event":"customer.created"}"#
        );
        assert_eq!(
            body(Accepted::Duplicate { id: 7, event: event() }).await,
            r#"{"received":true,"duplicate":true,"id":"7","event":"customer.created"}"#
        );
        assert_eq!(
            body(Accepted::Filtered { event: event() }).await,
            r#"{"received":true,"filtered":true,"event":"customer.created"}"#
        );
        assert_eq!(body(Accepted::Challenge("c".into())).await, r#"{"challenge":"c"}"#);
    }
}
