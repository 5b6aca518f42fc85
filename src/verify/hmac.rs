//! The generic HMAC engine. Every provider scheme (`presets`) and the
//! user-defined `scheme: hmac` are an `HmacSpec`: which header carries the
//! signature and in what format, which bytes are signed, how the secret is
//! decoded, and the timestamp tolerance. The same spec verifies requests and
//! signs them (`router send`), so the two can never drift apart.

use super::{Secret, VerifyError};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Uri};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Longest signature header accepted; real ones are under 1 KB.
const MAX_HEADER_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] = &["sha1", "sha256", "sha512"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sha1" => Self::Sha1,
            "sha256" => Self::Sha256,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha1 => run::<Hmac<sha1::Sha1>>(key, message),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Self::Sha512 => run::<Hmac<sha2::Sha512>>(key, message),
        }
    }
}

/// How signature bytes are written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub const NAMES: &'static [&'static str] = &["hex", "base64"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hex" => Self::Hex,
            "base64" => Self::Base64,
            _ => return None,
        })
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(bytes),
            Self::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Hex => hex::decode(text).ok(),
            Self::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }
}

/// The shape of the signature header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigFormat {
    /// The whole value is one signature after an optional prefix
    /// (`sha256=<hex>` for GitHub, `v0=<hex>` for Slack, bare for Shopify).
    Bare { prefix: String },
    /// `key=value` pairs split by `separator`; every `signature_key` entry is
    /// a candidate, `timestamp_key` the signed time (Stripe `t=..,v1=..`,
    /// Paddle `ts=..;h1=..`). Other keys are ignored (Stripe's `v0`).
    Fields { separator: char, signature_key: String, timestamp_key: Option<String> },
    /// Space-separated `version,signature` entries; entries of `version`
    /// are candidates (Standard Webhooks `v1,<b64> v1,<b64>`).
    Versioned { version: String },
}

/// One piece of the signed payload template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// The raw body bytes.
    Body,
    /// The signed timestamp, as sent.
    Timestamp,
    /// The message id (`id_headers`).
    Id,
    Header(String),
    /// `public_url` + the request's path and query (Twilio).
    Url,
    /// Form parameters sorted by name, each `name` + `value` (Twilio).
    SortedForm,
}

impl Piece {
    /// Parses a template such as `{timestamp}.{body}` or `{id}.{timestamp}.{body}`.
    pub fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                out.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("`{{` at {open} is never closed"))? + open;
            let name = &rest[open + 1..close];
            out.push(match name {
                "body" => Piece::Body,
                "timestamp" => Piece::Timestamp,
                "id" => Piece::Id,
                "url" => Piece::Url,
                "form" => Piece::SortedForm,
                _ => match name.strip_prefix("header:") {
                    Some(h) if !h.is_empty() => Piece::Header(h.to_ascii_lowercase()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}`: use {{body}}, {{timestamp}}, {{id}}, {{header:Name}}, {{url}} or {{form}}"
                        ))
                    }
                },
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            out.push(Piece::Text(rest.to_string()));
        }
        if !out.contains(&Piece::Body) && !out.contains(&Piece::SortedForm) {
            return Err("the signed payload must include {body} (or {form})".into());
        }
        Ok(out)
    }
}

/// How a configured secret becomes the HMAC key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFormat {
    /// The secret's UTF-8 bytes, prefix included (Stripe, GitHub, Whop `ws_`).
    Raw,
    /// Strip `prefix` if present, then base64-decode (Standard Webhooks `whsec_`).
    Base64 { prefix: String },
    /// Hex-decode (Close).
    Hex,
}

impl KeyFormat {
    pub fn decode(&self, secret: &str) -> Result<Vec<u8>, String> {
        match self {
            KeyFormat::Raw => Ok(secret.as_bytes().to_vec()),
            KeyFormat::Hex => hex::decode(secret.trim()).map_err(|_| "the secret is not hex".into()),
            KeyFormat::Base64 { prefix } => {
                let text = secret.trim().strip_prefix(prefix.as_str()).unwrap_or(secret.trim());
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(text.trim_end_matches('='))
                    .map_err(|_| format!("the secret is not {prefix}<base64>"))
            }
        }
    }
}

/// Everything that defines one HMAC scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSpec {
    pub algorithm: Algorithm,
    /// Header carrying the signature, lower-case.
    pub header: String,
    pub format: SigFormat,
    pub encoding: Encoding,
    pub payload: Vec<Piece>,
    /// Header holding the timestamp, when it is not inside the signature header.
    pub timestamp_header: Option<String>,
    /// Header holding the message id for `{id}`.
    pub id_header: Option<String>,
    /// Accepted clock difference, both directions; `None` = no timestamp check.
    pub tolerance: Option<Duration>,
    pub key: KeyFormat,
    /// A query parameter that must equal hex SHA-256 of the body (Twilio's JSON variant).
    pub body_hash_query: Option<String>,
    /// The URL providers call, up to the path (`https://hooks.example.com`), for `{url}`:
    /// behind a proxy the router cannot know it.
    pub public_url: Option<String>,
}

/// An HMAC scheme with its decoded keys: it verifies requests, and signs
/// the outgoing requests of HTTP sinks that have `sign:`.
#[derive(Clone)]
pub struct HmacScheme {
    pub spec: HmacSpec,
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HmacScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacScheme").field("spec", &self.spec).field("keys", &self.keys.len()).finish()
    }
}

/// What a verified request carried besides its signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    /// The message id that was signed (a natural dedup key).
    pub id: Option<String>,
}

/// The request parts a signature can cover.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub uri: &'a Uri,
    /// Unix seconds now.
    pub now: i64,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, VerifyError> {
    let mut all = headers.get_all(name).iter();
    let Some(value) = all.next() else { return Ok(None) };
    if all.next().is_some() || value.len() > MAX_HEADER_BYTES {
        return Err(VerifyError::Malformed);
    }
    value.to_str().map(Some).map_err(|_| VerifyError::Malformed)
}

fn sorted_form(body: &[u8]) -> String {
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params.into_iter().map(|(k, v)| k + v.as_str()).collect()
}

impl HmacScheme {
    pub fn new(spec: HmacSpec, secrets: &[Secret]) -> Result<Self, String> {
        let keys = secrets.iter().map(|s| spec.key.decode(s.expose())).collect::<Result<_, _>>()?;
        Ok(Self { spec, keys })
    }

    /// The signed payload for one request.
    fn payload(&self, req: &Request, ts: Option<&str>, id: Option<&str>) -> Result<Vec<u8>, VerifyError> {
        let mut out = Vec::with_capacity(req.body.len() + 64);
        for piece in &self.spec.payload {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Body => out.extend_from_slice(req.body),
                Piece::Timestamp => out.extend_from_slice(ts.ok_or(VerifyError::Missing)?.as_bytes()),
                Piece::Id => out.extend_from_slice(id.ok_or(VerifyError::Missing)?.as_bytes()),
                Piece::Header(h) => {
                    out.extend_from_slice(header(req.headers, h)?.ok_or(VerifyError::Missing)?.as_bytes())
                }
                Piece::Url => {
                    let base = self.spec.public_url.as_deref().unwrap_or("");
                    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
                    out.extend_from_slice(base.trim_end_matches('/').as_bytes());
                    out.extend_from_slice(path.as_bytes());
                }
                Piece::SortedForm => {
                    if self.spec.body_hash_query.as_ref().is_none_or(|q| query_param(req.uri, q).is_none()) {
                        out.extend_from_slice(sorted_form(req.body).as_bytes());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether the request carries this spec's signature header at all.
    pub fn applies(&self, req: &Request) -> bool {
        req.headers.contains_key(self.spec.header.as_str())
    }

    pub fn verify(&self, req: &Request) -> Result<Signed, VerifyError> {
        let value = header(req.headers, &self.spec.header)?.ok_or(VerifyError::Missing)?;
        let (candidates, field_ts) = self.candidates(value)?;
        let ts = match (field_ts, &self.spec.timestamp_header) {
            (Some(t), _) => Some(t),
            (None, Some(h)) => Some(header(req.headers, h)?.ok_or(VerifyError::Missing)?),
            (None, None) => None,
        };
        if let Some(tolerance) = self.spec.tolerance {
            let at: i64 = ts.ok_or(VerifyError::Missing)?.trim().parse().map_err(|_| VerifyError::Malformed)?;
            if (req.now - at).unsigned_abs() > tolerance.as_secs() {
                return Err(VerifyError::Expired);
            }
        }
        let id = match &self.spec.id_header {
            Some(h) => header(req.headers, h)?,
            None => None,
        };
        if let Some(q) = &self.spec.body_hash_query {
            if let Some(expected) = query_param(req.uri, q) {
                use sha2::Digest;
                let actual = hex::encode(sha2::Sha256::digest(req.body));
                if !bool::from(actual.as_bytes().ct_eq(expected.to_ascii_lowercase().as_bytes())) {
                    return Err(VerifyError::Mismatch);
                }
            }
        }
        let payload = self.payload(req, ts, id)?;
        let decoded: Vec<Vec<u8>> = candidates.iter().filter_map(|c| self.spec.encoding.decode(c)).collect();
        if decoded.is_empty() {
            return Err(VerifyError::Malformed);
        }
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            let expected = self.spec.algorithm.mac(key, &payload);
            for candidate in &decoded {
                ok |= expected.as_slice().ct_eq(candidate);
            }
        }
        if bool::from(ok) {
            Ok(Signed { id: id.map(str::to_string) })
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    /// Signature candidates in the header value, and a timestamp field if the format has one.
    fn candidates<'a>(&self, value: &'a str) -> Result<(Vec<&'a str>, Option<&'a str>), VerifyError> {
        match &self.spec.format {
            SigFormat::Bare { prefix } => {
                let sig = value.trim().strip_prefix(prefix.as_str()).ok_or(VerifyError::Malformed)?;
                Ok((vec![sig], None))
            }
            SigFormat::Fields { separator, signature_key, timestamp_key } => {
                let mut sigs = Vec::new();
                let mut ts = None;
                for part in value.split(*separator) {
                    let Some((k, v)) = part.trim().split_once('=') else { continue };
                    if k == signature_key {
                        sigs.push(v);
                    } else if timestamp_key.as_deref() == Some(k) {
                        if ts.is_some() {
                            return Err(VerifyError::Malformed);
                        }
                        ts = Some(v);
                    }
                }
                if timestamp_key.is_some() && ts.is_none() {
                    return Err(VerifyError::Malformed);
                }
                Ok((sigs, ts))
            }
            SigFormat::Versioned { version } => {
                let sigs = value
                    .split(' ')
                    .filter_map(|entry| entry.split_once(','))
                    .filter(|(v, _)| v == version)
                    .map(|(_, s)| s)
                    .collect();
                Ok((sigs, None))
            }
        }
    }

    /// Signs `body` as the provider would, with the first secret: the headers
    /// to send (for `router send`).
    pub fn sign(&self, body: &[u8], uri: &Uri, now: i64, id: &str) -> Result<Vec<(String, String)>, String> {
        let ts = now.to_string();
        let mut headers = Vec::new();
        if let Some(h) = &self.spec.timestamp_header {
            headers.push((h.clone(), ts.clone()));
        }
        if let Some(h) = &self.spec.id_header {
            headers.push((h.clone(), id.to_string()));
        }
        let none = HeaderMap::new();
        let req = Request { headers: &none, body, uri, now };
        let payload = self.payload(&req, Some(&ts), Some(id)).map_err(|_| {
            "this scheme signs request headers ({header:...}); send the request with a client that sets them"
                .to_string()
        })?;
        let sig = self.spec.encoding.encode(&self.spec.algorithm.mac(&self.keys[0], &payload));
        let value = match &self.spec.format {
            SigFormat::Bare { prefix } => format!("{prefix}{sig}"),
            SigFormat::Fields { separator, signature_key, timestamp_key } => match timestamp_key {
                Some(t) => format!("{t}={ts}{separator}{signature_key}={sig}"),
                None => format!("{signature_key}={sig}"),
            },
            SigFormat::Versioned { version } => format!("{version},{sig}"),
        };
        headers.push((self.spec.header.clone(), value));
        Ok(headers)
    }
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
