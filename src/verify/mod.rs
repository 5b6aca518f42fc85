//! Request authentication. A request enters as `Unverified` and the ingest
//! pipeline only continues with a `Verified` one, so no path can skip the
//! check. Failures carry a reason for the debug log; the client only ever
//! sees a bare 401.

pub mod hmac;
pub mod presets;
mod token;

pub use token::{BasicAuth, BearerToken};

use http::{HeaderMap, Uri};

/// A request whose origin has not been checked yet.
pub struct Unverified<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub uri: &'a Uri,
}

/// A request that passed its route's verifier. Only `Verifier::verify` makes one.
pub struct Verified<'a> {
    inner: Unverified<'a>,
    /// The message id the provider signed (Standard Webhooks), a default dedup key.
    pub signed_id: Option<String>,
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
    #[error("signed timestamp outside the tolerance")]
    Expired,
}

/// A route's compiled `verify:` block.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// No check (`verify: {scheme: none}`); `router check` warns.
    None,
    Bearer(BearerToken),
    Basic(BasicAuth),
    /// A provider scheme or `hmac`: alternatives, the first whose header is present decides.
    Signature(SignatureScheme),
}

/// A compiled signature scheme.
#[derive(Debug, Clone)]
pub struct SignatureScheme {
    pub name: String,
    pub alternatives: Vec<hmac::HmacScheme>,
    /// Meta's `hub.verify_token`, when the scheme answers the GET handshake.
    pub verify_token: Option<Secret>,
    /// Slack's `url_verification`: a verified body of this `type` is answered
    /// with its `challenge` and not logged.
    pub challenge_type: Option<&'static str>,
}

impl Verifier {
    pub fn scheme(&self) -> &str {
        match self {
            Verifier::None => "none",
            Verifier::Bearer(_) => "bearer",
            Verifier::Basic(_) => "basic",
            Verifier::Signature(s) => &s.name,
        }
    }

    pub fn verify<'a>(&self, req: Unverified<'a>) -> Result<Verified<'a>, VerifyError> {
        let signed_id = match self {
            Verifier::None => None,
            Verifier::Bearer(b) => b.check(req.headers).map(|()| None)?,
            Verifier::Basic(b) => b.check(req.headers).map(|()| None)?,
            Verifier::Signature(s) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let request = hmac::Request { headers: req.headers, body: req.body, uri: req.uri, now };
                let chosen = s.alternatives.iter().find(|a| a.applies(&request)).ok_or(VerifyError::Missing)?;
                chosen.verify(&request)?.id
            }
        };
        Ok(Verified { inner: req, signed_id })
    }

    /// The headers that authenticate `body` for this verifier, as its provider
    /// (or internal sender) would send them, with the first configured secret.
    pub fn sign(&self, body: &[u8], uri: &Uri, now: i64, id: &str) -> Result<Vec<(String, String)>, String> {
        match self {
            Verifier::None => Ok(vec![]),
            Verifier::Bearer(b) => Ok(b.credentials()),
            Verifier::Basic(b) => Ok(b.credentials()),
            Verifier::Signature(s) => s.alternatives[0].sign(body, uri, now, id),
        }
    }

    /// The top-level body fields `challenge` reads.
    pub fn challenge_fields(&self) -> &'static [&'static str] {
        match self {
            Verifier::Signature(SignatureScheme { challenge_type: Some(_), .. }) => &["type", "challenge"],
            _ => &[],
        }
    }

    /// A verified POST that is the provider's URL check, not an event:
    /// the challenge to echo (Slack's `url_verification`).
    pub fn challenge<'a>(&self, payload: &'a serde_json::Value) -> Option<&'a str> {
        let Verifier::Signature(SignatureScheme { challenge_type: Some(kind), .. }) = self else { return None };
        (payload.get("type")?.as_str()? == *kind).then(|| payload.get("challenge")?.as_str()).flatten()
    }

    /// Meta's subscription handshake: `Some(challenge)` to echo when the GET's
    /// `hub.mode=subscribe` and `hub.verify_token` matches, `Some(Err)` when it
    /// does not, `None` when this is no handshake.
    pub fn handshake(&self, query: &[(String, String)]) -> Option<Result<String, VerifyError>> {
        let Verifier::Signature(SignatureScheme { verify_token: Some(token), .. }) = self else { return None };
        let get = |k: &str| query.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
        if get("hub.mode")? != "subscribe" {
            return Some(Err(VerifyError::Malformed));
        }
        let given = get("hub.verify_token").unwrap_or("");
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.expose().as_bytes()).into();
        Some(if ok { Ok(get("hub.challenge").unwrap_or("").to_string()) } else { Err(VerifyError::Mismatch) })
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

/// Whether a header carries a credential (always-secret names, or the
/// route's token header): never stored, printed or shown as is.
pub fn is_secret_header(name: &str, route_secret: Option<&str>) -> bool {
    ALWAYS_SECRET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
        || route_secret.is_some_and(|s| s.eq_ignore_ascii_case(name))
}

/// Query parameters that carry credentials (`?token=`, `?api_key=`, a
/// signed URL's `sig`): compared without case, `-` and `_`, and as a
/// suffix (`access_token`, `x-api-key`).
const SECRET_QUERY_SUFFIXES: &[&str] =
    &["token", "apikey", "key", "secret", "password", "passwd", "signature", "sig", "auth", "credentials"];

/// Whether a query parameter carries a credential: never stored, printed
/// or shown as is.
pub fn is_secret_query(name: &str) -> bool {
    let plain: String = name.chars().filter(|c| !matches!(c, '-' | '_')).collect::<String>().to_ascii_lowercase();
    SECRET_QUERY_SUFFIXES.iter().any(|s| plain.ends_with(s))
}

/// What is stored in place of a secret header's value.
pub const REDACTED: &str = "[redacted]";
