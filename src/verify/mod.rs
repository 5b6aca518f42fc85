//! Request authentication. A request enters as `Unverified` and the ingest
//! pipeline only continues with a `Verified` one, so no path can skip the
//! check. Failures carry a reason for the debug log; the client only ever
//! sees a bare 401.

mod token;

pub use token::{BasicAuth, BearerToken};

use http::HeaderMap;

/// A request whose origin has not been checked yet.
pub struct Unverified<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// A request that passed its route's verifier. Only `Verifier::verify` makes one.
pub struct Verified<'a> {
    inner: Unverified<'a>,
}

impl<'a> Verified<'a> {
    pub fn headers(&self) -> &'a HeaderMap {
        self.inner.headers
    }
    pub fn body(&self) -> &'a [u8] {
        self.inner.body
    }
}

/// Why a request was refused; for the debug log only (never the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("credentials missing")]
    Missing,
    #[error("credentials malformed")]
    Malformed,
    #[error("credentials do not match")]
    Mismatch,
}

/// A route's compiled `verify:` block.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// No check (`verify: {scheme: none}`); `router check` warns.
    None,
    Bearer(BearerToken),
    Basic(BasicAuth),
}

impl Verifier {
    pub fn scheme(&self) -> &'static str {
        match self {
            Verifier::None => "none",
            Verifier::Bearer(_) => "bearer",
            Verifier::Basic(_) => "basic",
        }
    }

    pub fn verify<'a>(&self, req: Unverified<'a>) -> Result<Verified<'a>, VerifyError> {
        match self {
            Verifier::None => {}
            Verifier::Bearer(b) => b.check(req.headers)?,
            Verifier::Basic(b) => b.check(req.headers)?,
        }
        Ok(Verified { inner: req })
    }

    /// Headers that carry a credential for this scheme: never stored or shown.
    pub fn secret_header(&self) -> Option<&str> {
        match self {
            Verifier::Bearer(b) => Some(b.header()),
            _ => None,
        }
    }
}

/// A credential from a route file. Its `Debug` never shows the value, so a
/// secret cannot reach a log line or an error message by accident; reading
/// it takes an explicit `expose()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Headers that carry credentials whatever the route; their values are
/// replaced before an event is written to the log.
pub const ALWAYS_SECRET_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"];

/// What is stored in place of a secret header's value.
pub const REDACTED: &str = "[redacted]";
