//! TLS for outgoing connections (HTTP sinks, PostgreSQL): rustls with ring,
//! so neither OpenSSL nor aws-lc is compiled in.

/// Installs the TLS crypto provider (ring; reqwest is built without one).
/// Call before building any client; repeated calls are harmless.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client configuration with the system's certificate roots (none, with
/// a warning, where the system has none: TLS connections then fail).
pub fn client_config() -> rustls::ClientConfig {
    use rustls_platform_verifier::ConfigVerifierExt;
    install_provider();
    rustls::ClientConfig::with_platform_verifier().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "No system certificate roots; TLS connections will fail.");
        rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
    })
}
