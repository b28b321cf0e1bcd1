//! The TLS client configuration every xregion client shares (the probes, the canaries, the load engine): rustls
//! with the ring provider, TLS 1.3 and 1.2 (whether a deployment refuses 1.2 is `security.tls.versions`'s verdict,
//! not a reason to be unable to test its other promises), trusting either the CA file the config names or, without
//! one, the operating system's trusted roots.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::path::Path;
use std::sync::Arc;

/// The roots: every certificate of the PEM file `ca_file`, or the system's trusted roots without one.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("the CA file {} is not PEM: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("the CA file {} holds a certificate rustls rejects: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("the CA file {} holds no certificate", path.display()));
            }
        }
        None => return system_roots(),
    }
    Ok(roots)
}

/// The operating system's trusted roots, read once per process (a few hundred files).
fn system_roots() -> Result<rustls::RootCertStore, String> {
    static ROOTS: std::sync::OnceLock<Result<rustls::RootCertStore, String>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map_or_else(|| "none found".to_string(), |e| e.to_string());
                return Err(format!(
                    "no CA file is configured and the system has no trusted root certificates ({why}): set \
                     [deployment.tls] ca_file"
                ));
            }
            Ok(roots)
        })
        .clone()
}

/// A client config trusting `roots(ca_file)`, TLS 1.3 and 1.2, no client certificate.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    Ok(config_with(roots(ca_file)?))
}

/// A client config trusting `roots`, TLS 1.3 and 1.2, no client certificate. With no root, every HTTPS
/// connection fails naming the certificate, and plain HTTP still works.
pub fn config_with(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.3 and 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a CA file that is missing, not PEM or empty is refused naming the file; a valid one is trusted.
    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("xregion-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(roots(Some(&missing)).unwrap_err().contains("missing.pem"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert!(roots(Some(&empty)).unwrap_err().contains("holds no certificate"));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert_eq!(roots(Some(&good)).unwrap().len(), 1);
        assert!(client_config(Some(&good)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
