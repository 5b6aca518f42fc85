//! `bearer` and `basic`: shared-secret schemes for internal senders (an app
//! posting its own events, seed 002). Several secrets may be valid at once,
//! so a token can be rotated without downtime. Every comparison is
//! constant-time and checks all candidates.

use super::{Secret, VerifyError};
use base64::Engine;
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// True when `given` equals any of `accepted`, in time independent of which.
fn matches_any(given: &[u8], accepted: &[Secret]) -> bool {
    let mut ok = subtle::Choice::from(0);
    for secret in accepted {
        ok |= given.ct_eq(secret.expose().as_bytes());
    }
    ok.into()
}

fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(VerifyError::Missing)?;
    if values.next().is_some() {
        return Err(VerifyError::Malformed);
    }
    value.to_str().map_err(|_| VerifyError::Malformed)
}

/// `Authorization: Bearer <token>`, or the raw token in a custom header.
#[derive(Clone, Debug)]
pub struct BearerToken {
    header: String,
    tokens: Vec<Secret>,
}

impl BearerToken {
    /// `header`: None for `Authorization: Bearer`, else a header holding the bare token.
    pub fn new(header: Option<String>, tokens: Vec<Secret>) -> Self {
        Self { header: header.unwrap_or_else(|| "authorization".into()).to_ascii_lowercase(), tokens }
    }

    pub fn header(&self) -> &str {
        &self.header
    }

    /// The header an internal sender would send (first token).
    pub(super) fn credentials(&self) -> Vec<(String, String)> {
        let token = self.tokens[0].expose();
        let value = if self.header == "authorization" { format!("Bearer {token}") } else { token.to_string() };
        vec![(self.header.clone(), value)]
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        let value = single_header(headers, &self.header)?;
        let token = if self.header == "authorization" {
            let (scheme, rest) = value.split_once(' ').ok_or(VerifyError::Malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(VerifyError::Malformed);
            }
            rest.trim()
        } else {
            value.trim()
        };
        if matches_any(token.as_bytes(), &self.tokens) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

/// `Authorization: Basic base64(user:password)`.
#[derive(Clone, Debug)]
pub struct BasicAuth {
    username: String,
    passwords: Vec<Secret>,
}

impl BasicAuth {
    pub fn new(username: String, passwords: Vec<Secret>) -> Self {
        Self { username, passwords }
    }

    /// The header an internal sender would send (first password).
    pub(super) fn credentials(&self) -> Vec<(String, String)> {
        let pair = format!("{}:{}", self.username, self.passwords[0].expose());
        vec![("authorization".into(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))]
    }

    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        let value = single_header(headers, "authorization")?;
        let (scheme, encoded) = value.split_once(' ').ok_or(VerifyError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(VerifyError::Malformed);
        }
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| VerifyError::Malformed)?;
        let text = std::str::from_utf8(&decoded).map_err(|_| VerifyError::Malformed)?;
        let (user, password) = text.split_once(':').ok_or(VerifyError::Malformed)?;
        let user_ok: bool = user.as_bytes().ct_eq(self.username.as_bytes()).into();
        let password_ok = matches_any(password.as_bytes(), &self.passwords);
        if user_ok & password_ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_rotation_and_errors() {
        let b = BearerToken::new(None, vec![Secret::new("old"), Secret::new("new")]);
        assert!(!format!("{b:?}").contains("old"), "Debug must not show secrets");
        assert_eq!(b.check(&headers(&[("authorization", "Bearer new")])), Ok(()));
        assert_eq!(b.check(&headers(&[("authorization", "bearer old")])), Ok(()));
        assert_eq!(b.check(&headers(&[("authorization", "Bearer nope")])), Err(VerifyError::Mismatch));
        assert_eq!(b.check(&headers(&[])), Err(VerifyError::Missing));
        assert_eq!(b.check(&headers(&[("authorization", "new")])), Err(VerifyError::Malformed));
        let twice = headers(&[("authorization", "Bearer new"), ("authorization", "Bearer new")]);
        assert_eq!(b.check(&twice), Err(VerifyError::Malformed));
        let custom = BearerToken::new(Some("X-Token".into()), vec![Secret::new("t")]);
        assert_eq!(custom.check(&headers(&[("x-token", "t")])), Ok(()));
    }

    #[test]
    fn basic() {
        // RFC 7617 example: Aladdin / open sesame.
        let b = BasicAuth::new("Aladdin".into(), vec![Secret::new("open sesame")]);
        assert_eq!(b.check(&headers(&[("authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")])), Ok(()));
        assert_eq!(b.check(&headers(&[("authorization", "Basic QWxhZGRpbjpvcGVu")])), Err(VerifyError::Mismatch));
        assert_eq!(b.check(&headers(&[("authorization", "Basic !!!")])), Err(VerifyError::Malformed));
    }
}
