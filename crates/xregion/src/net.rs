//! The HTTP clients' transport security: rustls (ring provider, TLS 1.3 and 1.2) trusting the deployment's CA, and
//! the bearer token each client sends.
//!
//! Every reqwest client of xregion is built from [`client_builder`], so that no client can reach an HTTPS
//! endpoint with a weaker configuration than the others, and the token is set once, as a sensitive default
//! header (reqwest then keeps it out of `Debug`).

use crate::config::{Deployment, Secret};
use std::path::Path;

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

/// The rustls client config every client uses (`xregion_load::tls`): TLS 1.3 and 1.2, trusting the CA
/// certificates in `ca_file` (PEM) or, without one, the system's trusted roots.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    xregion_load::tls::client_config(ca_file).map_err(anyhow::Error::msg)
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

/// A reqwest builder that speaks TLS (1.3 or 1.2) trusting the deployment's CA and sends `role`'s token. A CA
/// file that cannot be read leaves the builder with no trusted root (every HTTPS call then fails naming the
/// certificate), after a warning; the run's start-up has already checked it with [`tls_config`].
pub fn client_builder(deployment: &Deployment, role: Role) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder();
    let tls = tls_config(deployment.tls.ca_file.as_deref()).unwrap_or_else(|e| {
        // Without a CA file and without system roots only plain HTTP works, which is fine for an HTTP deployment
        // (one with an HTTPS endpoint was refused at start-up).
        if deployment.tls.ca_file.is_some() {
            tracing::warn!("{e:#}");
        }
        xregion_load::tls::config_with(rustls::RootCertStore::empty())
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
