//! The lab's own certificate authority and the rustls configurations built on it.
//!
//! What: at lab start the supervisor calls [`Pki::create`], which makes a CA with `rcgen` and issues, under
//! `DIR/pki/`:
//! - `ca.pem` (the CA certificate, readable: xregion and the user's tools trust it) and `ca.key` (mode 0600);
//! - per region, a server certificate (`server-<region>.pem`/`.key`; DNS names: the region name and `localhost`,
//!   IP: the region's address) and a replication client certificate (`client-<region>.pem`/`.key`; DNS name: the
//!   region name, extended key usage clientAuth);
//! - the router's server certificate (`server-router.pem`/`.key`; `router`, `localhost`, the router's address),
//!   which serves the routing records and the CDN edges;
//! - `pki.json`, a manifest of the names and options, so that [`Pki::load`] can reopen the PKI.
//!
//! Every private key has mode 0600 and is refused on load when it is looser.
//!
//! Why: the issue asks for TLS 1.3 only on every listener and mutual TLS between regions, with knobs that switch
//! each protection off so that the security checks can be shown to fail. The builders take those knobs as
//! arguments ([`TlsMin`], `require_client_cert`) and [`PkiOptions::expired`] issues expired server certificates.
//!
//! How: region processes run separately; each calls [`Pki::load`] with the lab directory from the spec and builds
//! its configs, reading only the CA certificate and its own key files. Every config uses the ring provider
//! explicitly, never the process default. Replication clients dial a peer through the WAN proxy, so they verify
//! the peer's certificate by its region name (`ServerName` = the region), not by the address they dial. A
//! replication listener names its peer with [`peer_region`] and checks it against the peer's `Hello`.
//!
//! With the `expired` defect, the lab's own clients ([`Pki::client_config`], [`Pki::repl_client_config`]) still
//! verify the chain and the name but accept an expired server certificate, so the lab keeps working while
//! outside clients (the security checks) see the defect.

use crate::LabError;
use crate::layout::{CertFiles, LabDir};
use crate::secret_file::{self, PUBLIC_MODE, SECRET_MODE};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Version of the manifest's format.
const MANIFEST_VERSION: u32 = 1;
/// The router's name: its certificate's DNS name and the `who` of [`Pki::server_config`].
pub const ROUTER: &str = "router";
/// The name every server certificate also carries, for clients that dial `localhost`.
const LOCALHOST: &str = "localhost";
/// Default lifetime of the CA and of every certificate, in days.
pub const DEFAULT_VALIDITY_DAYS: u32 = 90;
/// Certificates start this long before their creation, so that a clock a little behind still accepts them.
const NOT_BEFORE_BACKDATE: time::Duration = time::Duration::hours(1);
/// With the `expired` defect, server certificates expired this long before lab start.
const EXPIRED_AGO: time::Duration = time::Duration::days(1);
/// Bytes of a certificate serial number (RFC 5280 allows at most 20 octets; 16 random bytes cannot collide).
const SERIAL_BYTES: usize = 16;
/// Common name of the lab's CA, followed by a random id, so that two labs' CAs never share a subject (a
/// verifier would otherwise take one for the issuer of the other's certificates).
const CA_COMMON_NAME: &str = "xregion lab CA";
/// Random bytes of the CA's id.
const CA_ID_BYTES: usize = 4;
/// Organization of every certificate the lab issues.
const ORGANIZATION: &str = "xregion lab";
/// The application protocol of every HTTP listener (regions, router, edges).
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMin {
    /// TLS 1.3 only: the hardened lab.
    #[default]
    Tls13,
    /// TLS 1.2 and 1.3: the `tls_min_version = "1.2"` defect.
    Tls12,
}

impl TlsMin {
    /// The protocol versions a server with this minimum speaks.
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        match self {
            TlsMin::Tls13 => TLS13_ONLY,
            TlsMin::Tls12 => TLS12_AND_13,
        }
    }
}

/// TLS 1.3 alone: every client config and the replication listeners.
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
/// TLS 1.2 and 1.3: the defect.
const TLS12_AND_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// How [`Pki::create`] issues the certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiOptions {
    /// The defect: every server certificate (regions and router) has already expired (`notAfter` in the past).
    /// Client certificates and the CA stay valid.
    pub expired: bool,
    /// Lifetime of the CA and of every certificate, in days (at least 1).
    pub validity_days: u32,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions { expired: false, validity_days: DEFAULT_VALIDITY_DAYS }
    }
}

/// What `pki.json` records: the names certificates were issued for and the options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    /// Region names with their addresses, in the order given to `create`.
    regions: Vec<(String, IpAddr)>,
    router_ip: IpAddr,
    options: PkiOptions,
}

/// The lab's PKI: the CA certificate and where the issued certificates and keys are. It holds no private key;
/// each builder reads the key it needs.
#[derive(Clone)]
pub struct Pki {
    /// The lab directory (the PKI is under `DIR/pki`).
    dir: LabDir,
    manifest: Manifest,
    ca: CertificateDer<'static>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let regions: Vec<&str> = self.manifest.regions.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Pki")
            .field("dir", &self.dir.pki_dir())
            .field("regions", &regions)
            .field("router_ip", &self.manifest.router_ip)
            .field("options", &self.manifest.options)
            .finish_non_exhaustive()
    }
}

/// The ring crypto provider, built once.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// A TLS library error in a `LabError`, with what was being done.
fn tls_error(context: &str, e: impl std::fmt::Display) -> LabError {
    LabError::State(format!("{context}: {e}"))
}

impl Pki {
    /// Creates the CA and every certificate under `dir/pki/`, replacing any earlier PKI there.
    pub fn create(
        dir: &Path,
        regions: &[(String, IpAddr)],
        router_ip: IpAddr,
        opts: PkiOptions,
    ) -> Result<Pki, LabError> {
        if opts.validity_days == 0 {
            return Err(LabError::Invalid("the certificates' validity must be at least 1 day".into()));
        }
        for (i, (name, _)) in regions.iter().enumerate() {
            secret_file::check_name(name)?;
            if name == ROUTER {
                return Err(LabError::Invalid(format!("a region cannot be named {ROUTER:?}: the router is")));
            }
            if regions[..i].iter().any(|(other, _)| other == name) {
                return Err(LabError::Invalid(format!("region {name:?} is listed twice")));
            }
        }
        let dir = LabDir::new(dir);
        secret_file::create_dir(&dir.pki_dir())?;

        let now = time::OffsetDateTime::now_utc();
        let validity = time::Duration::days(i64::from(opts.validity_days));
        let valid = (now - NOT_BEFORE_BACKDATE, now + validity);
        let expired = (now - EXPIRED_AGO - validity, now - EXPIRED_AGO);
        let server_validity = if opts.expired { expired } else { valid };
        // The CA must cover the expired certificates' past too, so that they fail on their own dates only.
        let ca_validity = (server_validity.0.min(valid.0), valid.1);

        let ca_key = KeyPair::generate().map_err(|e| tls_error("cannot generate the CA key", e))?;
        let ca_id: String = secret_file::random_bytes::<CA_ID_BYTES>()?.iter().map(|b| format!("{b:02x}")).collect();
        let mut ca_params = params(&format!("{CA_COMMON_NAME} {ca_id}"), Vec::new(), ca_validity)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| tls_error("cannot sign the CA certificate", e))?;
        let issuer = Issuer::new(ca_params, ca_key);
        secret_file::write_file(&dir.ca_key_file(), issuer.key().serialize_pem().as_bytes(), SECRET_MODE)?;
        secret_file::write_file(&dir.ca_file(), ca_cert.pem().as_bytes(), PUBLIC_MODE)?;

        let mut servers: Vec<(&str, IpAddr)> = regions.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
        servers.push((ROUTER, router_ip));
        for (name, ip) in servers {
            let sans = vec![dns(name)?, dns(LOCALHOST)?, SanType::IpAddress(ip)];
            let files = dir.server_cert(name);
            issue(&issuer, &files, name, sans, ExtendedKeyUsagePurpose::ServerAuth, server_validity)?;
        }
        for (name, _) in regions {
            let files = dir.client_cert(name);
            issue(&issuer, &files, name, vec![dns(name)?], ExtendedKeyUsagePurpose::ClientAuth, valid)?;
        }

        let manifest = Manifest { version: MANIFEST_VERSION, regions: regions.to_vec(), router_ip, options: opts };
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        secret_file::write_file(&dir.pki_manifest(), &json, PUBLIC_MODE)?;
        Pki::open(dir, manifest, ca_cert.der().clone())
    }

    /// Reopens the PKI that [`Pki::create`] made under `dir/pki/`.
    pub fn load(dir: &Path) -> Result<Pki, LabError> {
        let dir = LabDir::new(dir);
        let path = dir.pki_manifest();
        let text = std::fs::read(&path).map_err(|e| LabError::io(format!("cannot read {}", path.display()), e))?;
        let manifest: Manifest =
            secret_file::parse_versioned(&path, &text, "PKI manifest", |m: &Manifest| m.version, MANIFEST_VERSION)?;
        let mut chain = read_chain(&dir.ca_file())?;
        let ca = chain.swap_remove(0);
        Pki::open(dir, manifest, ca)
    }

    fn open(dir: LabDir, manifest: Manifest, ca: CertificateDer<'static>) -> Result<Pki, LabError> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).map_err(|e| tls_error("the CA certificate is not usable as a trust anchor", e))?;
        Ok(Pki { dir, manifest, ca, roots: Arc::new(roots) })
    }

    /// `DIR/pki/ca.pem`: the file a client trusts to reach the lab.
    pub fn ca_path(lab_dir: &Path) -> PathBuf {
        LabDir::new(lab_dir).ca_file()
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// Whether the server certificates were issued expired (the defect).
    pub fn expired(&self) -> bool {
        self.manifest.options.expired
    }

    /// A listener's config for `who` (a region name or [`ROUTER`]): its server certificate, no client
    /// authentication, ALPN `http/1.1`, and TLS 1.3 only unless `min` is [`TlsMin::Tls12`] (the defect).
    pub fn server_config(&self, who: &str, min: TlsMin) -> Result<Arc<ServerConfig>, LabError> {
        if who != ROUTER {
            self.check_region(who)?;
        }
        let (chain, key) = read_pair(&self.dir.server_cert(who))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(min.versions())
            .map_err(|e| tls_error("cannot build a server config", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls_error(&format!("the server certificate of {who} is not usable"), e))?;
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(Arc::new(config))
    }

    /// The replication listener's config of `region`: its server certificate, TLS 1.3 only, and client
    /// certificates that must chain to the lab's CA (with extended key usage clientAuth). With
    /// `require_client_cert = false` (the defect) a client without a certificate is let in too; a certificate
    /// that is presented must still verify. Name the peer with [`peer_region`].
    pub fn repl_server_config(&self, region: &str, require_client_cert: bool) -> Result<Arc<ServerConfig>, LabError> {
        self.check_region(region)?;
        let (chain, key) = read_pair(&self.dir.server_cert(region))?;
        let mut verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider());
        if !require_client_cert {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier.build().map_err(|e| tls_error("cannot build the client certificate verifier", e))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(TLS13_ONLY)
            .map_err(|e| tls_error("cannot build a server config", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| tls_error(&format!("the server certificate of {region} is not usable"), e))?;
        Ok(Arc::new(config))
    }

    /// The replication client config of `region`: TLS 1.3 only, presents the region's client certificate and
    /// verifies the peer's server certificate against the lab's CA. Connect with `ServerName` = the peer's region
    /// name (the WAN proxy's address is not the peer's).
    pub fn repl_client_config(&self, region: &str) -> Result<Arc<ClientConfig>, LabError> {
        self.check_region(region)?;
        let (chain, key) = read_pair(&self.dir.client_cert(region))?;
        let config = self
            .client_builder()?
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(&format!("the client certificate of {region} is not usable"), e))?;
        Ok(Arc::new(config))
    }

    /// A client config that trusts only the lab's CA, TLS 1.3 only, ALPN `http/1.1`, no client certificate: for
    /// the supervisor, the router's upstream calls and health checks.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, LabError> {
        let mut config = self.client_builder()?.with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(Arc::new(config))
    }

    /// TLS 1.3, the lab's CA as the only root and, with the `expired` defect, a verifier that accepts expired
    /// server certificates (see the module doc).
    fn client_builder(&self) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, LabError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(TLS13_ONLY)
            .map_err(|e| tls_error("cannot build a client config", e))?;
        if !self.expired() {
            return Ok(builder.with_root_certificates(self.roots.clone()));
        }
        let inner = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| tls_error("cannot build the server certificate verifier", e))?;
        Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptExpired { inner })))
    }

    fn check_region(&self, region: &str) -> Result<(), LabError> {
        if self.manifest.regions.iter().any(|(name, _)| name == region) {
            return Ok(());
        }
        let known: Vec<&str> = self.manifest.regions.iter().map(|(n, _)| n.as_str()).collect();
        Err(LabError::UnknownRegion { name: region.to_string(), known: known.join(", ") })
    }
}

/// The region a verified replication peer's client certificate names: its only DNS name.
///
/// Pass the connection's `peer_certificates()` after a handshake with [`Pki::repl_server_config`]; only then has
/// the certificate been verified against the lab's CA. An error says why there is no name (no certificate, with
/// the `require_client_cert = false` defect; or a certificate that is not one of the lab's client certificates).
pub fn peer_region(certs: Option<&[CertificateDer<'_>]>) -> Result<String, LabError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or_else(|| LabError::Invalid("the peer presented no client certificate".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| LabError::Invalid(format!("the peer's certificate cannot be parsed: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| LabError::Invalid(format!("the peer's certificate has a bad subjectAltName: {e}")))?
        .ok_or_else(|| LabError::Invalid("the peer's certificate has no subjectAltName".into()))?;
    let names: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(name) => Some(*name),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [name] => {
            secret_file::check_name(name)?;
            Ok((*name).to_string())
        }
        _ => Err(LabError::Invalid(format!(
            "the peer's certificate names {} DNS names; a lab client certificate names exactly one",
            names.len()
        ))),
    }
}

/// A DNS subject alternative name.
fn dns(name: &str) -> Result<SanType, LabError> {
    Ia5String::try_from(name)
        .map(SanType::DnsName)
        .map_err(|e| LabError::Invalid(format!("{name:?} cannot be a DNS name in a certificate: {e}")))
}

/// Certificate parameters with the lab's subject, a random serial and the given validity.
fn params(
    common_name: &str,
    sans: Vec<SanType>,
    (not_before, not_after): (time::OffsetDateTime, time::OffsetDateTime),
) -> Result<CertificateParams, LabError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    let mut serial = secret_file::random_bytes::<SERIAL_BYTES>()?;
    serial[0] &= 0x7f; // a DER INTEGER with the top bit set would be negative
    params.serial_number = Some(SerialNumber::from_slice(&serial[..]));
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// Issues a leaf certificate under `issuer` and writes it to `files` (its key with mode 0600).
fn issue(
    issuer: &Issuer<'_, KeyPair>,
    files: &CertFiles,
    common_name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    validity: (time::OffsetDateTime, time::OffsetDateTime),
) -> Result<(), LabError> {
    let key = KeyPair::generate().map_err(|e| tls_error("cannot generate a key", e))?;
    let mut leaf = params(common_name, sans, validity)?;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![usage];
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf
        .signed_by(&key, issuer)
        .map_err(|e| tls_error(&format!("cannot sign the certificate of {common_name}"), e))?;
    secret_file::write_file(&files.key, key.serialize_pem().as_bytes(), SECRET_MODE)?;
    secret_file::write_file(&files.pem, cert.pem().as_bytes(), PUBLIC_MODE)
}

/// The certificates of a PEM file (at least one).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, LabError> {
    let text = std::fs::read(path).map_err(|e| LabError::io(format!("cannot read {}", path.display()), e))?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LabError::State(format!("{} is not a PEM certificate: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(LabError::State(format!("{} holds no certificate", path.display())));
    }
    Ok(chain)
}

/// The certificate chain and the private key of `files` (the key must be private).
fn read_pair(files: &CertFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), LabError> {
    let chain = read_chain(&files.pem)?;
    let key_pem = secret_file::read_secret(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| LabError::State(format!("{} is not a PEM private key: {e}", files.key.display())))?;
    Ok((chain, key))
}

/// The `expired` defect's verifier for the lab's own clients: full verification, except that an expired
/// certificate is verified again at the last second of its validity (so chain, name and signatures still count).
#[derive(Debug)]
struct AcceptExpired {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AcceptExpired {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |at| self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, at);
        match verify(now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => {
                let not_after = x509_parser::parse_x509_certificate(end_entity.as_ref())
                    .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
                    .1
                    .validity()
                    .not_after
                    .timestamp();
                let last_second = u64::try_from(not_after - 1).unwrap_or(0);
                verify(UnixTime::since_unix_epoch(Duration::from_secs(last_second)))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{CA_CERT_FILE, CA_KEY_FILE};
    use crate::secret_file::TestDir;
    use rustls::{ClientConnection, ServerConnection, Stream};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;

    /// Every socket operation of a test handshake gives up after this long.
    const IO_TIMEOUT: Duration = Duration::from_secs(5);
    /// What the server writes once the handshake is done, and the client reads.
    const GREETING: &[u8] = b"ok";

    fn regions() -> Vec<(String, IpAddr)> {
        vec![
            ("us-east-1".to_string(), "127.0.1.1".parse().unwrap()),
            ("eu-west-1".to_string(), "127.0.1.3".parse().unwrap()),
        ]
    }

    fn create(dir: &Path, opts: PkiOptions) -> Pki {
        Pki::create(dir, &regions(), "127.0.1.254".parse().unwrap(), opts).unwrap()
    }

    /// What the server saw of a handshake that succeeded: the version and the peer's region, if any.
    #[derive(Debug)]
    struct Accepted {
        version: Option<rustls::ProtocolVersion>,
        peer: Result<String, String>,
    }

    /// One handshake over a loopback TCP pair: the server writes `GREETING` once the handshake is done and the
    /// client reads it (in TLS 1.3 the client finishes before the server has judged its certificate, so only the
    /// read tells that the server let it in). Returns what each side got.
    fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> (Result<Accepted, String>, Result<(), String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_side = std::thread::spawn(move || -> Result<Accepted, String> {
            let (mut tcp, _) = listener.accept().map_err(|e| e.to_string())?;
            tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut conn = ServerConnection::new(server).map_err(|e| e.to_string())?;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
            }
            Stream::new(&mut conn, &mut tcp).write_all(GREETING).map_err(|e| e.to_string())?;
            let peer = peer_region(conn.peer_certificates()).map_err(|e| e.to_string());
            Ok(Accepted { version: conn.protocol_version(), peer })
        });
        let client_side = (|| -> Result<(), String> {
            let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
            let mut conn = ClientConnection::new(client, server_name).map_err(|e| e.to_string())?;
            let mut got = [0u8; GREETING.len()];
            Stream::new(&mut conn, &mut tcp).read_exact(&mut got).map_err(|e| e.to_string())?;
            assert_eq!(got, GREETING);
            Ok(())
        })();
        (server_side.join().unwrap(), client_side)
    }

    /// A TLS 1.2-only client that trusts the lab's CA.
    fn tls12_client(pki: &Pki) -> Arc<ClientConfig> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(pki.roots.clone())
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A TLS 1.3 client that trusts `pki`'s CA and presents the certificate and key of `files`.
    fn client_with_cert(pki: &Pki, files: &CertFiles) -> Arc<ClientConfig> {
        let (chain, key) = read_pair(files).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(TLS13_ONLY)
            .unwrap()
            .with_root_certificates(pki.roots.clone())
            .with_client_auth_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }

    /// A TLS 1.3 client without a certificate that trusts `pki`'s CA and offers no ALPN (as a scanner would).
    fn anonymous_client(pki: &Pki) -> Arc<ClientConfig> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(TLS13_ONLY)
            .unwrap()
            .with_root_certificates(pki.roots.clone())
            .with_no_client_auth();
        Arc::new(config)
    }

    /// Goal: `client_config` completes a TLS 1.3 handshake with the region's and the router's `server_config`,
    /// by region name, `localhost` and address; ALPN is http/1.1; a name the certificate lacks is refused.
    #[test]
    fn tls13_handshake_by_every_name() {
        let dir = TestDir::new("pki-13");
        let pki = create(&dir, PkiOptions::default());
        let client = pki.client_config().unwrap();
        for (who, name) in [
            ("us-east-1", "us-east-1"),
            ("us-east-1", "localhost"),
            ("us-east-1", "127.0.1.1"),
            (ROUTER, "router"),
            (ROUTER, "127.0.1.254"),
        ] {
            let server = pki.server_config(who, TlsMin::Tls13).unwrap();
            assert_eq!(server.alpn_protocols, vec![ALPN_HTTP11.to_vec()]);
            let (s, c) = handshake(server, client.clone(), name);
            assert_eq!(c, Ok(()), "{who} as {name}");
            assert_eq!(s.unwrap().version, Some(rustls::ProtocolVersion::TLSv1_3), "{who} as {name}");
        }
        let (_, c) = handshake(pki.server_config("us-east-1", TlsMin::Tls13).unwrap(), client, "eu-west-1");
        let e = c.unwrap_err();
        assert!(e.contains("not valid for name"), "a certificate is only good for its own names: {e}");
    }

    /// Goal: a TLS 1.2-only client is refused by a `Tls13` server and accepted (on TLS 1.2) by a `Tls12` one.
    #[test]
    fn tls12_only_with_the_defect() {
        let dir = TestDir::new("pki-12");
        let pki = create(&dir, PkiOptions::default());
        let (s, c) = handshake(pki.server_config(ROUTER, TlsMin::Tls13).unwrap(), tls12_client(&pki), ROUTER);
        assert!(s.is_err() && c.is_err(), "server {s:?}, client {c:?}");
        let (s, c) = handshake(pki.server_config(ROUTER, TlsMin::Tls12).unwrap(), tls12_client(&pki), ROUTER);
        assert_eq!(c, Ok(()));
        assert_eq!(s.unwrap().version, Some(rustls::ProtocolVersion::TLSv1_2));
    }

    /// Goal: the replication listener refuses a client without a certificate, with another CA's certificate or
    /// with a server certificate, and accepts the region's client certificate and names the peer; with
    /// `require_client_cert = false` an anonymous client gets in and has no name.
    #[test]
    fn mutual_tls_for_replication() {
        let dir = TestDir::new("pki-mtls");
        let pki = create(&dir, PkiOptions::default());
        let strict = pki.repl_server_config("us-east-1", true).unwrap();

        let (s, c) = handshake(strict.clone(), anonymous_client(&pki), "us-east-1");
        let e = s.unwrap_err();
        assert!(e.contains("no certificates") && c.is_err(), "{e}; client {c:?}");

        let other_dir = TestDir::new("pki-other");
        create(&other_dir, PkiOptions::default());
        let foreign = client_with_cert(&pki, &LabDir::new(&*other_dir).client_cert("eu-west-1"));
        let (s, c) = handshake(strict.clone(), foreign, "us-east-1");
        let e = s.unwrap_err();
        assert!(e.contains("UnknownIssuer") && c.is_err(), "{e}; client {c:?}");

        let server_cert_as_client = client_with_cert(&pki, &pki.dir.server_cert("eu-west-1"));
        let (s, c) = handshake(strict.clone(), server_cert_as_client, "us-east-1");
        assert!(s.is_err() && c.is_err(), "a server certificate lacks clientAuth");

        let (s, c) = handshake(strict, pki.repl_client_config("eu-west-1").unwrap(), "us-east-1");
        assert_eq!(c, Ok(()));
        let s = s.unwrap();
        assert_eq!(s.peer, Ok("eu-west-1".to_string()));
        assert_eq!(s.version, Some(rustls::ProtocolVersion::TLSv1_3));

        let lax = pki.repl_server_config("us-east-1", false).unwrap();
        let (s, c) = handshake(lax.clone(), anonymous_client(&pki), "us-east-1");
        assert_eq!(c, Ok(()));
        assert!(s.unwrap().peer.unwrap_err().contains("no client certificate"));
        let (s, _) = handshake(lax, pki.repl_client_config("eu-west-1").unwrap(), "us-east-1");
        assert_eq!(s.unwrap().peer, Ok("eu-west-1".to_string()), "a presented certificate still names the peer");
    }

    /// Goal: with `expired`, every server certificate's notAfter is in the past while client certificates stay
    /// valid; a strict client refuses the server as expired, and the lab's own clients still get through.
    #[test]
    fn expired_server_certificates() {
        let dir = TestDir::new("pki-expired");
        let pki = create(&dir, PkiOptions { expired: true, ..PkiOptions::default() });
        assert!(Pki::load(&dir).unwrap().expired());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let not_after = |files: CertFiles| {
            let der = read_chain(&files.pem).unwrap().swap_remove(0);
            x509_parser::parse_x509_certificate(der.as_ref()).unwrap().1.validity().not_after.timestamp()
        };
        for who in ["us-east-1", "eu-west-1", ROUTER] {
            assert!(not_after(pki.dir.server_cert(who)) < now, "{who}");
        }
        assert!(not_after(pki.dir.client_cert("us-east-1")) > now);

        let (s, c) =
            handshake(pki.server_config("us-east-1", TlsMin::Tls13).unwrap(), anonymous_client(&pki), "us-east-1");
        let e = c.unwrap_err();
        assert!(e.contains("certificate expired") && s.is_err(), "{e}; server {s:?}");
        let (_, c) = handshake(
            pki.server_config("us-east-1", TlsMin::Tls13).unwrap(),
            pki.client_config().unwrap(),
            "us-east-1",
        );
        assert_eq!(c, Ok(()));
        let (s, c) = handshake(
            pki.repl_server_config("us-east-1", true).unwrap(),
            pki.repl_client_config("eu-west-1").unwrap(),
            "us-east-1",
        );
        assert_eq!(c, Ok(()));
        assert_eq!(s.unwrap().peer, Ok("eu-west-1".to_string()));
        let (_, c) = handshake(
            pki.server_config("us-east-1", TlsMin::Tls13).unwrap(),
            pki.client_config().unwrap(),
            "eu-west-1",
        );
        assert!(c.is_err(), "the expired-tolerant verifier still checks the name");

        let fresh_dir = TestDir::new("pki-fresh");
        let fresh = create(&fresh_dir, PkiOptions::default());
        assert!(not_after(fresh.dir.server_cert("us-east-1")) > now);
    }

    /// Goal: keys have mode 0600, certificates are readable, and `load` reopens the PKI and refuses a loosened key
    /// and names it does not know.
    #[test]
    fn files_modes_and_load() {
        let dir = TestDir::new("pki-files");
        create(&dir, PkiOptions::default());
        let pki_dir = LabDir::new(&*dir).pki_dir();
        let mode = |name: &str| std::fs::metadata(pki_dir.join(name)).unwrap().permissions().mode() & 0o777;
        for key in [CA_KEY_FILE, "server-us-east-1.key", "server-router.key", "client-eu-west-1.key"] {
            assert_eq!(mode(key), SECRET_MODE, "{key}");
        }
        for cert in [CA_CERT_FILE, "server-us-east-1.pem", "client-eu-west-1.pem"] {
            assert_eq!(mode(cert) & 0o044, 0o044, "{cert} is readable");
        }
        assert_eq!(Pki::ca_path(&dir), pki_dir.join(CA_CERT_FILE));

        let pki = Pki::load(&dir).unwrap();
        assert!(!pki.expired());
        assert!(pki.server_config("eu-west-1", TlsMin::Tls13).is_ok());
        assert!(matches!(pki.server_config("ap-south-1", TlsMin::Tls13), Err(LabError::UnknownRegion { .. })));
        assert!(matches!(pki.repl_client_config(ROUTER), Err(LabError::UnknownRegion { .. })));

        std::fs::set_permissions(pki_dir.join("server-eu-west-1.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = pki.server_config("eu-west-1", TlsMin::Tls13).unwrap_err().to_string();
        assert!(err.contains("mode 644"), "{err}");

        let bad = Pki::create(
            &dir,
            &[("router".into(), "127.0.0.1".parse().unwrap())],
            "127.0.0.1".parse().unwrap(),
            PkiOptions::default(),
        );
        assert!(bad.is_err());
    }
}
