//! Provider schemes as data for the one HMAC engine (`hmac.rs`): each preset
//! is a list of alternative specs (the first whose signature header is
//! present decides) plus the event type and id the provider puts in its
//! headers. Facts and sources: docs/signatures.md.

use super::hmac::{Algorithm, Encoding, HmacSpec, KeyFormat, Piece, SigFormat};
use std::time::Duration;

/// A provider scheme.
pub struct Preset {
    pub specs: Vec<HmacSpec>,
    /// Default `event.type` expression when the route sets none.
    pub event_type: Option<&'static str>,
    /// Default `event.id` expression when the route sets none (besides the signed id).
    pub event_id: Option<&'static str>,
    /// Answers Meta's GET `hub.challenge` handshake (needs `verify_token`).
    pub handshake: bool,
    /// Answers a signed POST whose `type` is this with `{"challenge": ...}`
    /// (Slack's `url_verification`), instead of logging it as an event.
    pub challenge_type: Option<&'static str>,
    /// Needs `public_url` (signs the URL it called).
    pub needs_public_url: bool,
    /// What `router secret new` prints: a prefix and the encoding of 32 random bytes.
    pub secret_style: (&'static str, Encoding),
    /// The body cap when the route sets none: the provider's own maximum
    /// (a smaller cap would refuse, and the provider re-send forever, its
    /// largest events).
    pub body_limit: Option<usize>,
}

/// The scheme names `verify.scheme` accepts, tokens included.
pub const SCHEMES: &[&str] = &[
    "stripe",
    "github",
    "standard-webhooks",
    "svix",
    "whop",
    "shopify",
    "slack",
    "close",
    "meta",
    "twilio",
    "paddle",
    "hmac",
    "bearer",
    "basic",
    "none",
];

const FIVE_MINUTES: Duration = Duration::from_secs(300);

fn template(t: &str) -> Vec<Piece> {
    Piece::parse_template(t).expect("preset templates are valid")
}

/// The shape shared by every preset: SHA-256 over the raw body, raw key.
fn base(header: &str, format: SigFormat, encoding: Encoding, payload: &str) -> HmacSpec {
    HmacSpec {
        algorithm: Algorithm::Sha256,
        header: header.into(),
        format,
        encoding,
        payload: template(payload),
        timestamp_header: None,
        id_header: None,
        tolerance: None,
        key: KeyFormat::Raw,
        body_hash_query: None,
        public_url: None,
    }
}

fn bare(prefix: &str) -> SigFormat {
    SigFormat::Bare { prefix: prefix.into() }
}

fn fields(separator: char, signature_key: &str, timestamp_key: &str) -> SigFormat {
    SigFormat::Fields { separator, signature_key: signature_key.into(), timestamp_key: Some(timestamp_key.into()) }
}

/// Standard Webhooks with header prefix `webhook-` or `svix-`.
fn standard(prefix: &str, key: KeyFormat) -> HmacSpec {
    HmacSpec {
        timestamp_header: Some(format!("{prefix}timestamp")),
        id_header: Some(format!("{prefix}id")),
        tolerance: Some(FIVE_MINUTES),
        key,
        ..base(
            &format!("{prefix}signature"),
            SigFormat::Versioned { version: "v1".into() },
            Encoding::Base64,
            "{id}.{timestamp}.{body}",
        )
    }
}

/// Stripe's construction, also Whop's legacy `x-whop-signature`.
fn stripe_like(header: &str) -> HmacSpec {
    HmacSpec {
        tolerance: Some(FIVE_MINUTES),
        ..base(header, fields(',', "v1", "t"), Encoding::Hex, "{timestamp}.{body}")
    }
}

fn preset(specs: Vec<HmacSpec>) -> Preset {
    Preset {
        specs,
        event_type: None,
        event_id: None,
        handshake: false,
        challenge_type: None,
        needs_public_url: false,
        secret_style: ("", Encoding::Hex),
        body_limit: None,
    }
}

/// The preset of a provider scheme, `None` for `hmac`, tokens and unknown names.
/// `legacy`: also accept GitHub's SHA-1 `X-Hub-Signature`.
pub fn preset_for(scheme: &str, legacy: bool) -> Option<Preset> {
    let whsec = || KeyFormat::Base64 { prefix: "whsec_".into() };
    Some(match scheme {
        "stripe" => Preset {
            event_type: Some("$.type"),
            event_id: Some("$.id"),
            secret_style: ("whsec_", Encoding::Hex),
            ..preset(vec![stripe_like("stripe-signature")])
        },
        "standard-webhooks" | "svix" => Preset {
            secret_style: ("whsec_", Encoding::Base64),
            ..preset(vec![standard("webhook-", whsec()), standard("svix-", whsec())])
        },
        "whop" => Preset {
            secret_style: ("ws_", Encoding::Hex),
            ..preset(vec![standard("webhook-", KeyFormat::Raw), stripe_like("x-whop-signature")])
        },
        "github" => {
            let mut specs = vec![base("x-hub-signature-256", bare("sha256="), Encoding::Hex, "{body}")];
            if legacy {
                specs.push(HmacSpec {
                    algorithm: Algorithm::Sha1,
                    ..base("x-hub-signature", bare("sha1="), Encoding::Hex, "{body}")
                });
            }
            Preset {
                event_type: Some("header:X-GitHub-Event"),
                event_id: Some("header:X-GitHub-Delivery"),
                // "Payloads are capped at 25 MB" (GitHub's webhook docs).
                body_limit: Some(25 << 20),
                ..preset(specs)
            }
        }
        "shopify" => Preset {
            event_type: Some("header:X-Shopify-Topic"),
            event_id: Some("header:X-Shopify-Webhook-Id"),
            ..preset(vec![base("x-shopify-hmac-sha256", bare(""), Encoding::Base64, "{body}")])
        },
        "slack" => Preset {
            challenge_type: Some("url_verification"),
            ..preset(vec![HmacSpec {
                timestamp_header: Some("x-slack-request-timestamp".into()),
                tolerance: Some(FIVE_MINUTES),
                ..base("x-slack-signature", bare("v0="), Encoding::Hex, "v0:{timestamp}:{body}")
            }])
        },
        "close" => preset(vec![HmacSpec {
            timestamp_header: Some("close-sig-timestamp".into()),
            tolerance: Some(FIVE_MINUTES),
            key: KeyFormat::Hex,
            ..base("close-sig-hash", bare(""), Encoding::Hex, "{timestamp}{body}")
        }]),
        "meta" => Preset {
            handshake: true,
            ..preset(vec![base("x-hub-signature-256", bare("sha256="), Encoding::Hex, "{body}")])
        },
        "twilio" => Preset {
            needs_public_url: true,
            ..preset(vec![HmacSpec {
                algorithm: Algorithm::Sha1,
                body_hash_query: Some("bodySHA256".into()),
                ..base("x-twilio-signature", bare(""), Encoding::Base64, "{url}{form}")
            }])
        },
        "paddle" => Preset {
            secret_style: ("pdl_ntfset_", Encoding::Hex),
            ..preset(vec![HmacSpec {
                // Paddle's SDKs allow 5 s each way.
                tolerance: Some(Duration::from_secs(5)),
                ..base("paddle-signature", fields(';', "h1", "ts"), Encoding::Hex, "{timestamp}:{body}")
            }])
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    //! The providers' published test vectors, through the presets.
    use super::*;
    use crate::verify::hmac::{HmacScheme, Request};
    use crate::verify::{Secret, VerifyError};
    use http::{HeaderMap, HeaderName, HeaderValue, Uri};

    fn verify(
        scheme: &str,
        secret: &str,
        headers: &[(&str, &str)],
        body: &str,
        uri: &str,
        now: i64,
    ) -> Result<(), VerifyError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let uri: Uri = uri.parse().unwrap();
        let req = Request { headers: &map, body: body.as_bytes(), uri: &uri, now };
        let p = preset_for(scheme, false).unwrap();
        let specs = p.specs.into_iter().map(|mut s| {
            s.public_url = Some("https://mycompany.com".into());
            s
        });
        let verifiers: Vec<HmacScheme> = specs.map(|s| HmacScheme::new(s, &[Secret::new(secret)]).unwrap()).collect();
        let chosen = verifiers.iter().find(|v| v.applies(&req)).ok_or(VerifyError::Missing)?;
        chosen.verify(&req).map(|_| ())
    }

    #[test]
    fn github_published_vector() {
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = [("x-hub-signature-256", sig)];
        assert_eq!(verify("github", "It's a Secret to Everybody", &h, "Hello, World!", "/", 0), Ok(()));
        assert_eq!(
            verify("github", "It's a Secret to Everybody", &h, "Hello, World?", "/", 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn standard_webhooks_library_vector() {
        let h = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ];
        let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(verify("standard-webhooks", key, &h, body, "/", 1614265330), Ok(()));
        assert_eq!(verify("standard-webhooks", key, &h, body, "/", 1614265330 + 301), Err(VerifyError::Expired));
        assert_eq!(verify("standard-webhooks", key, &h, body, "/", 1614265330 - 301), Err(VerifyError::Expired));
        // A rotation header: an unknown signature first, then the valid one.
        let both = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,ignored v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h2 = [h[0], h[1], ("webhook-signature", both)];
        assert_eq!(verify("standard-webhooks", key, &h2, body, "/", 1614265330), Ok(()));
    }

    #[test]
    fn slack_published_vector() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = [
            ("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
            ("x-slack-request-timestamp", "1531420618"),
        ];
        assert_eq!(verify("slack", "8f742231b10e8888abcd99yyyzzz85a5", &h, body, "/", 1531420618), Ok(()));
        assert_eq!(
            verify("slack", "8f742231b10e8888abcd99yyyzzz85a5", &h, body, "/", 1531420618 + 3600),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn twilio_published_vectors() {
        let form = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
        let h = [("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")];
        assert_eq!(verify("twilio", "12345", &h, form, "/myapp.php?foo=1&bar=2", 0), Ok(()));
        let body = r#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let uri = format!("/myapp.php?foo=1&bar=2&bodySHA256={hash}");
        let h = [("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4=")];
        assert_eq!(verify("twilio", "12345", &h, body, &uri, 0), Ok(()));
        // The signature covers the URL, not the body: the body hash check catches a swap.
        assert_eq!(verify("twilio", "12345", &h, r#"{"property": "other"}"#, &uri, 0), Err(VerifyError::Mismatch));
    }
}
