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
    b = b.use_preconfigured_tls(tls).local_address(deployment.source_address);
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

/// Where the clients' trust comes from, as a reader would configure it: the advice of every certificate message.
fn trust_advice(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(f) => format!(
            "set [deployment.tls] ca_file (or XREGION_CA_FILE) to the CA that issued it (now trusted: {})",
            f.display()
        ),
        None => "set [deployment.tls] ca_file or XREGION_CA_FILE (or SSL_CERT_FILE) to the PEM file of the CA that \
                 issued it"
            .to_string(),
    }
}

/// A Unix time as RFC 3339 UTC, to the second.
pub fn unix_date(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `expired N days ago (not after DATE)`, for a certificate whose `notAfter` is `not_after` (Unix seconds) at
/// `now`; `expires in N days (not after DATE)` while it is still valid.
pub fn expiry(not_after: i64, now: i64) -> String {
    let date = unix_date(not_after);
    let days = (not_after - now).abs() / 86_400;
    let n = match days {
        0 => "less than a day".to_string(),
        1 => "1 day".to_string(),
        d => format!("{d} days"),
    };
    if not_after < now {
        format!("expired {n} ago (not after {date})")
    } else {
        format!("expires in {n} (not after {date})")
    }
}

/// A certificate that failed verification for `host`, as one sentence: what is wrong and what to do. `ca_file` is
/// what the client trusted (none: the system's roots).
pub fn certificate_problem(e: &rustls::CertificateError, host: &str, ca_file: Option<&Path>) -> String {
    use rustls::CertificateError as C;
    let reissue = format!("serve one that names {host}, or put one of its names in the endpoint URL");
    match e {
        C::NotValidForNameContext { presented, .. } => {
            let names: Vec<String> = presented.iter().filter_map(|n| plain_name(n)).collect();
            if names.is_empty() {
                format!("certificate names no host (no DNS name or IP address in it), not {host}; {reissue}")
            } else {
                format!("certificate is valid for {}, not {host}; {reissue}", names.join(", "))
            }
        }
        C::NotValidForName => format!("certificate is not valid for {host}; {reissue}"),
        C::ExpiredContext { time, not_after } => {
            format!("certificate {}; renew it", expiry(not_after.as_secs() as i64, time.as_secs() as i64))
        }
        C::Expired => "certificate has expired; renew it".to_string(),
        C::NotValidYetContext { not_before, .. } => format!(
            "certificate is not valid before {}; check the certificate's dates and this machine's clock",
            unix_date(not_before.as_secs() as i64)
        ),
        C::NotValidYet => "certificate is not valid yet; check its dates and this machine's clock".to_string(),
        C::UnknownIssuer => format!("certificate is issued by a CA xregion does not trust; {}", trust_advice(ca_file)),
        C::BadSignature => format!(
            "certificate is signed by another key than the trusted CA's (a CA of the same name?); {}",
            trust_advice(ca_file)
        ),
        C::Revoked => "certificate has been revoked; replace it".to_string(),
        C::BadEncoding => "certificate cannot be parsed; serve a valid X.509 certificate".to_string(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate is not for server authentication (extended key usage); serve a server certificate".to_string()
        }
        _ => format!(
            "certificate was rejected ({}); serve a valid certificate for {host}",
            alert_name(u8::from(rustls::AlertDescription::from(e.clone())))
        ),
    }
}

/// A name the certificate presents, as webpki writes it (`DnsName("api.test")`, `IpAddress(10.0.0.1)`), without
/// the wrapper; `None` for names a host cannot match (a directory name, an unsupported kind).
fn plain_name(presented: &str) -> Option<String> {
    let inner = |prefix: &str| presented.strip_prefix(prefix)?.strip_suffix(')').map(|n| n.trim_matches('"'));
    inner("DnsName(")
        .or_else(|| inner("IpAddress("))
        .map(str::to_string)
        .or_else(|| (!presented.contains('(') && presented != "DirectoryName").then(|| presented.to_string()))
}

/// A rustls error during a handshake with `host`, as one sentence; rustls' own `Display` shows `Debug` output of
/// its enums for several variants, so none of it reaches the user.
pub fn tls_problem(e: &rustls::Error, host: &str, ca_file: Option<&Path>) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => certificate_problem(c, host, ca_file),
        E::AlertReceived(a) => format!("the server ended the TLS handshake with {}", alert_name(u8::from(*a))),
        E::PeerIncompatible(_) => "the server has no TLS version or cipher suite in common with xregion (TLS 1.3 or \
                                   1.2, AEAD suites); enable TLS 1.3 on it"
            .to_string(),
        E::NoCertificatesPresented => "the server presented no certificate; configure one".to_string(),
        E::PeerMisbehaved(_)
        | E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::DecryptError
        | E::PeerSentOversizedRecord => {
            "the server broke the TLS protocol in the handshake; check that it is a TLS endpoint".to_string()
        }
        E::General(s) => format!("the TLS handshake failed: {s}"),
        _ => "the TLS handshake failed; check the endpoint's TLS configuration".to_string(),
    }
}

/// The name of a TLS alert description, as `alert certificate_required`.
pub fn alert_name(code: u8) -> String {
    let name = match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return format!("alert {code}"),
    };
    format!("alert {name}")
}

/// What went wrong on the way to `host` (a connection, a name lookup, a TLS handshake), as the middle of a
/// sentence that names the endpoint: `refused the connection; …`, `certificate is valid for …`. It walks the
/// error's sources for the rustls error or the I/O error that says what happened, and never shows a library's
/// `Debug` output.
pub fn transport_problem(e: &(dyn std::error::Error + 'static), host: &str, ca_file: Option<&Path>) -> String {
    let mut deepest = e.to_string();
    let mut dns = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return tls_problem(t, host, ca_file);
        }
        // An I/O error may wrap another (hyper-rustls wraps tokio-rustls' error in `io::Error::other`), whose
        // payload is the rustls error; `io::Error::source` skips the payload, so descend through `get_ref`.
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls_problem(t, host, ca_file);
            }
            use std::io::ErrorKind as K;
            match e.kind() {
                K::ConnectionRefused => {
                    return "refused the connection; check that the service is running and listens on that port"
                        .to_string();
                }
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return "closed the connection during the handshake; check that it speaks HTTPS (or HTTP) on \
                            that port"
                        .to_string();
                }
                K::TimedOut => {
                    return "did not accept a connection in time; check the address, the port and any firewall"
                        .to_string();
                }
                K::HostUnreachable | K::NetworkUnreachable => {
                    return format!("cannot be reached (no route to {host}); check the address and the network");
                }
                _ => {}
            }
            io = e.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        let text = err.to_string();
        dns |= text.contains("dns error") || text.contains("failed to lookup address");
        deepest = text;
        cur = err.source();
    }
    if dns {
        return format!("cannot be resolved ({host} has no address); check the host name in the endpoint and the DNS");
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;
    use rustls::pki_types::{ServerName, UnixTime};

    const DAY: u64 = 86_400;

    /// Goal: pin the wording of every certificate message a user sees: what is wrong, with the names, dates and
    /// the option to set, and no `Debug` output of rustls' types.
    #[test]
    fn certificate_messages_are_sentences() {
        let ip = ServerName::try_from("127.0.0.4").unwrap().to_owned();
        let presented = vec!["DnsName(\"localhost\")".into(), "IpAddress(10.0.0.1)".into(), "DirectoryName".into()];
        let e = C::NotValidForNameContext { expected: ip.clone(), presented };
        assert_eq!(
            certificate_problem(&e, "127.0.0.4", None),
            "certificate is valid for localhost, 10.0.0.1, not 127.0.0.4; serve one that names 127.0.0.4, or put one \
             of its names in the endpoint URL"
        );
        let e = C::NotValidForNameContext { expected: ip, presented: vec!["api.test".into()] };
        assert!(certificate_problem(&e, "127.0.0.4", None).starts_with("certificate is valid for api.test, not"));
        let now = 1_800_000_000;
        let e = C::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(now - 3 * DAY - 60)),
        };
        assert_eq!(
            certificate_problem(&e, "h", None),
            "certificate expired 3 days ago (not after 2027-01-12T07:59:00Z); renew it"
        );
        assert_eq!(
            expiry(now as i64 + 5 * DAY as i64 + 9, now as i64),
            "expires in 5 days (not after 2027-01-20T08:00:09Z)"
        );
        assert_eq!(expiry(now as i64 - 10, now as i64), "expired less than a day ago (not after 2027-01-15T07:59:50Z)");
        assert_eq!(
            certificate_problem(&C::UnknownIssuer, "h", None),
            "certificate is issued by a CA xregion does not trust; set [deployment.tls] ca_file or XREGION_CA_FILE \
             (or SSL_CERT_FILE) to the PEM file of the CA that issued it"
        );
        assert_eq!(
            certificate_problem(&C::UnknownIssuer, "h", Some(Path::new("/etc/ca.pem"))),
            "certificate is issued by a CA xregion does not trust; set [deployment.tls] ca_file (or XREGION_CA_FILE) \
             to the CA that issued it (now trusted: /etc/ca.pem)"
        );
        for e in [C::BadSignature, C::Revoked, C::UnhandledCriticalExtension, C::NotValidYet] {
            let m = certificate_problem(&e, "h", None);
            assert!(m.starts_with("certificate ") && !m.contains("Context") && !m.contains('{'), "{m}");
        }
    }

    /// Goal: TLS errors other than certificates read as sentences, and an alert is named as in the RFC.
    #[test]
    fn tls_messages_are_sentences() {
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion);
        assert_eq!(tls_problem(&e, "h", None), "the server ended the TLS handshake with alert protocol_version");
        let e = rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered);
        assert!(!tls_problem(&e, "h", None).contains("Tls12"), "no Debug output");
        let e = rustls::Error::InvalidCertificate(C::Expired);
        assert_eq!(tls_problem(&e, "h", None), "certificate has expired; renew it");
    }

    /// Goal: connection failures name what happened and what to check, found deep in an error's sources.
    #[test]
    fn transport_messages_are_sentences() {
        #[derive(Debug)]
        struct Wrap(&'static str, std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.1)
            }
        }
        let refused = Wrap("client error (Connect)", std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(
            transport_problem(&refused, "127.0.0.1", None),
            "refused the connection; check that the service is running and listens on that port"
        );
        let dns = Wrap("dns error", std::io::Error::other("failed to lookup address information"));
        assert_eq!(
            transport_problem(&dns, "nowhere.invalid", None),
            "cannot be resolved (nowhere.invalid has no address); check the host name in the endpoint and the DNS"
        );
        let tls =
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(C::UnknownIssuer));
        let tls = Wrap("client error (Connect)", tls);
        assert!(transport_problem(&tls, "h", None).starts_with("certificate is issued by a CA xregion does not trust"));
    }
}
