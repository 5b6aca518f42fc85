//! Verification: a route's `verify:` becomes a `Verifier` (a preset
//! scheme, custom HMAC, bearer token, basic auth), with the event
//! expressions the scheme brings and only the keys that scheme reads.

use super::*;

/// The `verify:` keys each scheme reads besides `scheme`. A preset not
/// named here is a signing scheme that reads [`PRESET_KEYS`].
pub(super) const SCHEME_KEYS: &[(&str, &[&str])] = &[
    ("none", &[]),
    ("bearer", &["token", "header"]),
    ("basic", &["username", "password"]),
    ("github", &["secret", "legacy"]),
    ("meta", &["secret", "verify_token"]),
    ("twilio", &["secret", "public_url"]),
    ("shopify", &["secret"]),
    (
        "hmac",
        &[
            "secret",
            "tolerance",
            "header",
            "algorithm",
            "encoding",
            "prefix",
            "payload",
            "timestamp_header",
            "id_header",
            "secret_encoding",
            "secret_prefix",
        ],
    ),
];

/// What the other presets (Stripe, Standard Webhooks, Slack ...) read: a
/// secret, and the clock tolerance of their signed timestamp.
pub(super) const PRESET_KEYS: &[&str] = &["secret", "tolerance"];

impl FileContext<'_> {
    /// Compiles `verify:`; also returns the scheme's default event type and id expressions.
    pub(super) fn verifier(&mut self, v: &Spanned<RawVerify>) -> Option<(Verifier, Defaults)> {
        let raw = &v.value;
        let scheme = &raw.scheme;
        let name = scheme.value.as_str();
        // Unknown: the nearest known name is usually the typo (`stirpe`).
        if !SCHEMES.contains(&name) {
            let d = self.error(Pos::of(scheme), format!("unknown verify scheme `{name}`"));
            match nearest(name, SCHEMES.iter().copied()) {
                Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                None => d.with_hint(format!("known schemes: {}", SCHEMES.join(", "))),
            }
            return None;
        }
        // Misplaced keys are reported, and the scheme is still checked for its own problems.
        let fields_ok = self.only_fields(raw, name);
        // A missing key is placed at `scheme:`: the key has no line to point at.
        let needs = |cx: &mut Self, what: &str, example: &str| {
            cx.error(Pos::of(scheme), format!("scheme `{name}` needs `{what}`")).with_hint(example.to_string());
            None
        };
        let none = Defaults::default();
        let compiled = match name {
            // Allowed, for senders inside a private network, but never quietly.
            "none" => {
                self.warning(Pos::of(scheme), "verify scheme `none`: anyone who knows the URL can post events")
                    .with_hint("use the provider's signature scheme, or bearer/basic for internal senders");
                Some((Verifier::None, none))
            }
            "bearer" => {
                let Some(token) = &raw.token else {
                    return needs(self, "token", "token: ${MY_APP_TOKEN} (a list allows rotation)");
                };
                // A list is a rotation: the old and the new token both pass meanwhile.
                let tokens = self.non_empty_secrets(token)?;
                // A custom header (`X-Api-Key: TOKEN`) instead of `Authorization: Bearer`.
                let header = match &raw.header {
                    Some(h) => Some(self.interp(h)?),
                    None => None,
                };
                Some((Verifier::Bearer(BearerToken::new(header, tokens)), none))
            }
            "basic" => {
                let (Some(user), Some(password)) = (&raw.username, &raw.password) else {
                    return needs(self, "username and password", "username: app\npassword: ${APP_PASSWORD}");
                };
                // The user name is not a secret, the password (or passwords) are.
                let user = self.interp(user)?;
                let passwords = self.non_empty_secrets(password)?;
                Some((Verifier::Basic(BasicAuth::new(user, passwords)), none))
            }
            _ => {
                let Some(secret) = &raw.secret else {
                    return needs(self, "secret", "secret: ${PROVIDER_WEBHOOK_SECRET} (a list allows rotation)");
                };
                // Every other scheme signs: a preset (data in `presets`) gives the
                // header format, signed bytes and defaults; `hmac` builds them from
                // the route's own keys.
                let secrets = self.non_empty_secrets(secret)?;
                let (mut specs, defaults, handshake, challenge_type) =
                    match presets::preset_for(name, raw.legacy.as_ref().is_some_and(|l| l.value)) {
                        Some(p) => {
                            // Twilio signs the URL it called, which behind a proxy is not
                            // the one the router sees: the operator must say what it is.
                            if p.needs_public_url && raw.public_url.is_none() {
                                return needs(
                                self,
                                "public_url",
                                "public_url: https://hooks.example.com (the URL the provider calls, up to the path)",
                            );
                            }
                            (
                                p.specs,
                                Defaults { kind: p.event_type, id: p.event_id, body_limit: p.body_limit },
                                p.handshake,
                                p.challenge_type,
                            )
                        }
                        // Not a preset: `hmac`, configured by the route's keys.
                        None => (vec![self.hmac_spec(raw)?], none, false, None),
                    };
                // Only specs that sign a timestamp have a tolerance to change
                // (`hmac` decides per its own `payload`).
                if let Some(t) = &raw.tolerance {
                    let tolerance = self.duration(t)?;
                    for spec in specs.iter_mut().filter(|s| s.tolerance.is_some() || name == "hmac") {
                        spec.tolerance = Some(tolerance);
                    }
                }
                // Only Twilio's preset signs the URL; others ignore it, and the keys
                // table keeps it off every scheme but `twilio`.
                if let Some(u) = &raw.public_url {
                    let url = self.interp(u)?;
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        self.error(Pos::of(u), format!("public_url `{url}` is not an http(s) URL"))
                            .with_hint("write e.g. https://hooks.example.com");
                        return None;
                    }
                    specs.iter_mut().for_each(|s| s.public_url = Some(url.clone()));
                }
                // One verifier per spec (a provider may sign in two formats during
                // a migration, e.g. GitHub's SHA-1 and SHA-256 headers); each holds
                // every secret of the rotation list.
                let mut alternatives = Vec::new();
                for spec in specs {
                    match hmac::HmacScheme::new(spec, &secrets) {
                        Ok(v) => alternatives.push(v),
                        // The secret's form is wrong for the scheme (not base64 after
                        // `whsec_`, not hex): say what the provider's secret looks like.
                        Err(e) => {
                            let example = match name {
                                "standard-webhooks" | "svix" => {
                                    "a whsec_<base64> secret, as `router secret new --scheme standard-webhooks` prints"
                                }
                                "close" => "the hex signature_key Close returned for the subscription",
                                _ => "the secret exactly as the provider shows it",
                            };
                            self.error(Pos::of(secret), format!("scheme `{name}` cannot use this secret: {e}"))
                                .with_hint(example);
                            return None;
                        }
                    }
                }
                // Meta's GET handshake echoes `hub.challenge` only to whoever knows
                // the verify token; other schemes have no handshake to answer.
                let verify_token = match (&raw.verify_token, handshake) {
                    (Some(t), true) => Some(Secret::new(self.interp(t)?)),
                    _ => None,
                };
                Some((
                    Verifier::Signature(SignatureScheme {
                        name: name.to_string(),
                        alternatives,
                        verify_token,
                        challenge_type,
                    }),
                    defaults,
                ))
            }
        };
        // A stray key fails the verifier even when it compiled: the operator
        // meant it to do something.
        compiled.filter(|_| fields_ok)
    }

    /// Reports every `verify:` key the scheme does not read.
    pub(super) fn only_fields(&mut self, raw: &RawVerify, scheme: &str) -> bool {
        let allowed = keys_of(SCHEME_KEYS, scheme, PRESET_KEYS);
        let reads = if allowed.is_empty() { "no other keys".to_string() } else { allowed.join(", ") };
        self.unread_keys(&raw.written(), allowed, &format!("scheme `{scheme}`"), &format!("`{scheme}` reads: {reads}"))
    }

    /// The spec of `scheme: hmac`, from its own keys.
    pub(super) fn hmac_spec(&mut self, raw: &RawVerify) -> Option<hmac::HmacSpec> {
        let Some(header) = &raw.header else {
            self.error(Pos::of(&raw.scheme), "scheme `hmac` needs `header`").with_hint("header: X-Signature");
            return None;
        };
        // Reads one of a closed set of names (algorithm, encoding...), placing
        // an unknown one at its value with the list to choose from.
        let pick =
            |cx: &mut Self, s: &Option<Spanned<String>>, names: &[&str], what: &str| -> Result<Option<String>, ()> {
                match s {
                    None => Ok(None),
                    Some(v) if names.contains(&v.value.as_str()) => Ok(Some(v.value.clone())),
                    Some(v) => {
                        cx.error(Pos::of(v), format!("unknown {what} `{}`", v.value))
                            .with_hint(format!("write one of: {}", names.join(", ")));
                        Err(())
                    }
                }
            };
        // All three are read before returning, so each mistake is reported.
        let algorithm = pick(self, &raw.algorithm, hmac::Algorithm::NAMES, "algorithm");
        let encoding = pick(self, &raw.encoding, hmac::Encoding::NAMES, "encoding");
        let key_encoding = pick(self, &raw.secret_encoding, &["raw", "base64", "hex"], "secret encoding");
        // What is signed: the raw body unless the template says otherwise
        // (`{timestamp}.{body}`, `{id}.{timestamp}.{body}`).
        let payload = match &raw.payload {
            None => Some(vec![hmac::Piece::Body]),
            Some(p) => hmac::Piece::parse_template(&p.value)
                .map_err(|e| self.error(Pos::of(p), e).with_hint("e.g. {timestamp}.{body}"))
                .ok(),
        };
        let (Ok(algorithm), Ok(encoding), Ok(key_encoding), Some(payload)) =
            (algorithm, encoding, key_encoding, payload)
        else {
            return None;
        };
        // A signed timestamp is what makes replay protection possible: it
        // must be read from somewhere, and it gets the usual five minutes.
        let signs_time = payload.contains(&hmac::Piece::Timestamp);
        if signs_time && raw.timestamp_header.is_none() {
            self.error(
                Pos::of(raw.payload.as_ref().expect("payload has {timestamp}")),
                "`{timestamp}` is signed but no `timestamp_header` says where it is",
            )
            .with_hint("timestamp_header: X-Timestamp");
            return None;
        }
        // How the secret text becomes key bytes: as written, or decoded (a
        // `whsec_` prefix is stripped first).
        let key = match key_encoding.as_deref() {
            Some("base64") => hmac::KeyFormat::Base64 {
                prefix: raw.secret_prefix.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
            },
            Some("hex") => hmac::KeyFormat::Hex,
            _ => hmac::KeyFormat::Raw,
        };
        Some(hmac::HmacSpec {
            algorithm: algorithm.as_deref().and_then(hmac::Algorithm::parse).unwrap_or(hmac::Algorithm::Sha256),
            // Header names are matched lower-case, as `http` stores them.
            header: header.value.to_ascii_lowercase(),
            format: hmac::SigFormat::Bare { prefix: raw.prefix.as_ref().map(|p| p.value.clone()).unwrap_or_default() },
            encoding: encoding.as_deref().and_then(hmac::Encoding::parse).unwrap_or(hmac::Encoding::Hex),
            payload,
            timestamp_header: raw.timestamp_header.as_ref().map(|h| h.value.to_ascii_lowercase()),
            id_header: raw.id_header.as_ref().map(|h| h.value.to_ascii_lowercase()),
            // `tolerance:` (read by the caller) may change this.
            tolerance: signs_time.then_some(std::time::Duration::from_secs(300)),
            key,
            // Only presets use these (Twilio's JSON body hash and public URL).
            body_hash_query: None,
            public_url: None,
        })
    }

    /// A verify secret (or rotation list): not empty, and a default written in the file (the
    /// shipped local trial) is flagged so `serve` keeps it off the network.
    pub(super) fn non_empty_secrets(&mut self, s: &Spanned<raw::OneOrMany<String>>) -> Option<Vec<Secret>> {
        let defaulted: Vec<String> =
// A `${VAR:-default}` secret whose variable is unset verifies with
// text anyone reading the repository knows: a warning, and `serve`
// refuses to listen beyond loopback until it is set.
            s.value.0.iter().flat_map(|item| crate::config::env::defaulted(item, self.env)).collect();
        for name in defaulted {
            self.warning(
                Pos::of(s),
                format!(
                    "`{name}` is not set: this verifies with the default written in the file, which anyone can read"
                ),
            )
            .with_hint(format!("export {name}=<the provider's secret>; until then `serve` listens on loopback only"));
            self.trial_secrets.push(crate::config::TrialSecret {
                variable: name,
                file: self.file.to_path_buf(),
                at: Pos::of(s),
            });
        }
        let secrets = self.secrets(s)?;
        // All entries empty (each an unset `${VAR:-}`): nothing could ever
        // verify, so every request would be a 401. Say it now.
        if secrets.is_empty() {
            self.error(Pos::of(s), "the secret is empty").with_hint("set the environment variable it names");
            return None;
        }
        Some(secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::super::problems;
    use crate::config::raw::RawVerify;

    #[test]
    fn the_keys_table_names_only_schemes_and_their_real_keys() {
        for (scheme, keys) in super::SCHEME_KEYS {
            assert!(crate::verify::presets::SCHEMES.contains(scheme), "`{scheme}` is not a scheme");
            for key in keys.iter().chain(super::PRESET_KEYS) {
                assert!(RawVerify::FIELDS.contains(key), "`{scheme}` reads `{key}`, not a verify key");
            }
        }
    }

    #[test]
    fn a_key_the_scheme_does_not_read_is_an_error_naming_what_it_reads() {
        let got = problems("route: r\npath: /r\nverify: { scheme: bearer, token: t, secret: s }\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("scheme `bearer`"), "{got:?}");
    }

    #[test]
    fn an_unknown_scheme_is_one_error() {
        let got = problems("route: r\npath: /r\nverify: { scheme: stirpe, secret: s }\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("3:19: ") && got[0].contains("stirpe"), "{got:?}");
    }

    #[test]
    fn an_unset_secret_variable_is_named() {
        let got = problems("route: r\npath: /r\nverify: { scheme: github, secret: \"${COMPILE_TEST_UNSET}\" }\n");
        assert!(got.iter().any(|p| p.contains("COMPILE_TEST_UNSET")), "{got:?}");
    }
}
