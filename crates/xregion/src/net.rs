//! The HTTP clients' transport security: rustls (ring provider, TLS 1.3 only) trusting the deployment's CA, and
//! the bearer token each client sends.
//!
//! Every reqwest client of xregion is built from [`client_builder`], so that no client can reach an HTTPS
//! endpoint with a weaker configuration than the others, and the token is set once, as a sensitive default
//! header (reqwest then keeps it out of `Debug`).

use crate::config::{Deployment, Secret};
use anyhow::Context as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::path::Path;
use std::sync::Arc;

/// Which token a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No token.
    Anonymous,
    /// The read token.
    Read,
    /// The write token.
    Write,
    /// The admin token (probes, fault control).
    Admin,
}

/// The rustls client config trusting the CA certificates in `ca_file` (PEM), TLS 1.3 only. Without a file, no
/// CA is trusted: only plain `http://` endpoints can be reached.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.with_context(|| format!("{} is not PEM", path.display()))?;
            roots.add(c).with_context(|| format!("{} holds a certificate rustls rejects", path.display()))?;
            n += 1;
        }
        anyhow::ensure!(n > 0, "{} holds no certificate", path.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("rustls refused TLS 1.3 with the ring provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The token of `role`, if the config has one.
pub fn token(deployment: &Deployment, role: Role) -> Option<&Secret> {
    let a = &deployment.auth;
    match role {
        Role::Anonymous => None,
        Role::Read => a.read_token.as_ref(),
        Role::Write => a.write_token.as_ref(),
        Role::Admin => a.admin_token.as_ref(),
    }
}

/// A reqwest builder that speaks TLS 1.3 trusting the deployment's CA and sends `role`'s token. A CA file that
/// cannot be read leaves the builder without it (every HTTPS call then fails naming the certificate), after a
/// warning; the run's start-up has already checked it with [`tls_config`].
pub fn client_builder(deployment: &Deployment, role: Role) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder();
    let tls = tls_config(deployment.tls.ca_file.as_deref()).unwrap_or_else(|e| {
        tracing::warn!("{e:#}");
        tls_config(None).expect("an empty root store is always valid")
    });
    b = b.use_preconfigured_tls(tls);
    if let Some(t) = token(deployment, role) {
        b = b.default_headers(auth_headers(t));
    }
    b
}

/// The `Authorization: Bearer` header map of `token`, marked sensitive.
pub fn auth_headers(token: &Secret) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
        v.set_sensitive(true);
        h.insert(reqwest::header::AUTHORIZATION, v);
    }
    h
}
