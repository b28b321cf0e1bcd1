//! TLS probing, as testssl.sh does it: which protocol versions an endpoint accepts, and what its certificate says.
//!
//! - **TLS 1.0, 1.1 and 1.2** are probed with a hand-built ClientHello that offers exactly one version (no
//!   `supported_versions` extension) and a broad list of cipher suites, because rustls cannot send a TLS 1.0 or
//!   1.1 hello. The server's first answer decides: a ServerHello carrying the offered version means it was
//!   **accepted**; an alert, or a close before any ServerHello, means the **server refused**. The builder is
//!   proven sound by the unit tests, where a server that does speak TLS 1.2 accepts the same hand-built hello, so
//!   a refusal cannot be the client's fault.
//! - **TLS 1.3** is probed with rustls offering only TLS 1.3.
//! - **Certificates**: the chain the server presents is recorded during a handshake and then verified on its own
//!   against the configured CA (chain, hostname, validity), and the days left are read from the leaf.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.0.
    Tls10,
    /// TLS 1.1.
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Every version, oldest first.
    pub const ALL: [TlsVersion; 4] = [TlsVersion::Tls10, TlsVersion::Tls11, TlsVersion::Tls12, TlsVersion::Tls13];

    /// `TLS 1.2`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS 1.0",
            TlsVersion::Tls11 => "TLS 1.1",
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        }
    }

    /// The version on the wire.
    fn wire(self) -> u16 {
        match self {
            TlsVersion::Tls10 => 0x0301,
            TlsVersion::Tls11 => 0x0302,
            TlsVersion::Tls12 => 0x0303,
            TlsVersion::Tls13 => 0x0304,
        }
    }
}

/// What the server did with a hello offering one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The server chose the offered version.
    Accepted {
        /// The cipher suite it chose, as its IANA number (`0xC02F`) or rustls name.
        cipher: String,
    },
    /// The server refused: how (an alert's name, or closing the connection).
    Refused {
        /// For example `alert protocol_version` or `closed the connection`.
        how: String,
    },
}

/// Cipher suites offered by the hand-built hello: every common suite of TLS 1.0 to 1.2, so that a server that
/// speaks the version finds one it accepts.
const LEGACY_SUITES: &[u16] = &[
    0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, // ECDHE AEAD (TLS 1.2)
    0x009c, 0x009d, 0x009e, 0x009f, // RSA and DHE AEAD (TLS 1.2)
    0xc009, 0xc013, 0xc00a, 0xc014, // ECDHE CBC-SHA
    0x0033, 0x0039, 0x002f, 0x0035, 0x000a, // DHE and RSA CBC-SHA, 3DES
    0x00ff, // renegotiation SCSV
];

/// Signature schemes offered (needed by TLS 1.2 servers; ignored by older ones).
const SIGNATURE_SCHEMES: &[u16] =
    &[0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0201, 0x0203];

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn push_u24(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    push_u16(out, kind);
    push_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// A complete TLS record holding a ClientHello that offers only `version` (1.0 to 1.2).
pub fn client_hello(version: TlsVersion, server_name: &str, random: [u8; 32]) -> Vec<u8> {
    let mut exts = Vec::new();
    if !server_name.is_empty() && server_name.parse::<std::net::IpAddr>().is_err() {
        let mut sni = Vec::new();
        push_u16(&mut sni, (server_name.len() + 3) as u16);
        sni.push(0);
        push_u16(&mut sni, server_name.len() as u16);
        sni.extend_from_slice(server_name.as_bytes());
        extension(&mut exts, 0x0000, &sni);
    }
    // supported_groups: x25519, secp256r1, secp384r1.
    extension(&mut exts, 0x000a, &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]);
    // ec_point_formats: uncompressed.
    extension(&mut exts, 0x000b, &[1, 0]);
    let mut sigs = Vec::new();
    push_u16(&mut sigs, (SIGNATURE_SCHEMES.len() * 2) as u16);
    for s in SIGNATURE_SCHEMES {
        push_u16(&mut sigs, *s);
    }
    extension(&mut exts, 0x000d, &sigs);
    // extended_master_secret, renegotiation_info.
    extension(&mut exts, 0x0017, &[]);
    extension(&mut exts, 0xff01, &[0]);

    let mut body = Vec::new();
    push_u16(&mut body, version.wire());
    body.extend_from_slice(&random);
    body.push(0); // no session id
    push_u16(&mut body, (LEGACY_SUITES.len() * 2) as u16);
    for s in LEGACY_SUITES {
        push_u16(&mut body, *s);
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    push_u16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);

    let mut handshake = vec![1u8]; // client_hello
    push_u24(&mut handshake, body.len());
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16u8]; // handshake
    push_u16(&mut record, 0x0301); // record-layer version, as real clients send it
    push_u16(&mut record, handshake.len() as u16);
    record.extend_from_slice(&handshake);
    record
}

use crate::net::alert_name;

/// Reads the server's first answer to a hello and judges it.
pub fn judge_answer(offered: TlsVersion, answer: &[u8]) -> Option<Handshake> {
    if answer.len() < 5 {
        return None;
    }
    let (kind, len) = (answer[0], u16::from_be_bytes([answer[3], answer[4]]) as usize);
    let body = &answer[5..];
    match kind {
        0x15 if body.len() >= 2 => Some(Handshake::Refused { how: alert_name(body[1]) }),
        0x16 => {
            // Handshake: type(1) length(3) version(2) random(32) session_id_len(1) session_id cipher(2).
            if body.len() < 4 + 2 + 32 + 1 || body.len() < len.min(4 + 2 + 32 + 1) {
                return None;
            }
            if body[0] != 2 {
                return Some(Handshake::Refused { how: format!("answered with handshake message {}", body[0]) });
            }
            let version = u16::from_be_bytes([body[4], body[5]]);
            let sid = body[38] as usize;
            let at = 39 + sid;
            if body.len() < at + 2 {
                return None;
            }
            let cipher = u16::from_be_bytes([body[at], body[at + 1]]);
            if version == offered.wire() {
                Some(Handshake::Accepted { cipher: format!("0x{cipher:04X}") })
            } else {
                Some(Handshake::Refused { how: format!("answered with version 0x{version:04X}") })
            }
        }
        other => Some(Handshake::Refused { how: format!("answered with record type {other}") }),
    }
}

/// Offers only `version` (1.0 to 1.2) with a hand-built hello and reports what the server did.
pub async fn probe_legacy(
    addr: SocketAddr,
    server_name: &str,
    version: TlsVersion,
    timeout: Duration,
) -> Result<Handshake, String> {
    if version == TlsVersion::Tls13 {
        return probe_tls13(addr, server_name, timeout).await;
    }
    let work = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| connect_problem(addr, &e))?;
        let random: [u8; 32] = rand::random();
        s.write_all(&client_hello(version, server_name, random)).await.map_err(|e| format!("cannot send: {e}"))?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => {
                    return Ok(judge_answer(version, &answer)
                        .unwrap_or(Handshake::Refused { how: "closed the connection".into() }));
                }
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if let Some(h) = judge_answer(version, &answer) {
                        return Ok(h);
                    }
                    if answer.len() > 64 * 1024 {
                        return Err("the answer is not TLS".to_string());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok(Handshake::Refused { how: "reset the connection".into() });
                }
                Err(e) => return Err(format!("cannot read the answer: {e}")),
            }
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| no_answer(addr, timeout))?
}

/// `ADDR did not answer within N s`: a server that accepted the connection but never answered.
fn no_answer(addr: SocketAddr, timeout: Duration) -> String {
    format!("{addr} did not answer within {} s; check that it serves TLS on that port", timeout.as_secs_f64())
}

/// A failed connection to `addr` as one sentence: what happened and what to check.
fn connect_problem(addr: SocketAddr, e: &std::io::Error) -> String {
    format!("{addr} {}", crate::net::transport_problem(e, &addr.ip().to_string(), None))
}

/// Accepts any certificate and records the chain: used where only the protocol matters, or to capture the chain
/// for an independent verification.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        chain.clear();
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs a rustls handshake offering `versions`, recording the chain. Returns the negotiated version and suite.
async fn rustls_handshake(
    addr: SocketAddr,
    server_name: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    timeout: Duration,
) -> Result<(Result<(String, String), String>, Vec<CertificateDer<'static>>), String> {
    let recorder = Arc::new(Recorder { chain: Mutex::default(), provider: provider() });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| format!("bad server name: {e}"))?;
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| connect_problem(addr, &e))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok::<_, String>(match connector.connect(name, tcp).await {
            Ok(tls) => {
                let (_, conn) = tls.get_ref();
                let version = match conn.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
                    Some(v) => format!("TLS version 0x{:04X}", u16::from(v)),
                    None => "an unknown version".to_string(),
                };
                let suite = conn.negotiated_cipher_suite().map_or("an unknown suite".into(), |s| {
                    s.suite().as_str().map_or_else(|| format!("0x{:04X}", u16::from(s.suite())), str::to_string)
                });
                Ok((version, suite))
            }
            Err(e) => Err(crate::net::transport_problem(&e, server_name, None)),
        })
    };
    let outcome = tokio::time::timeout(timeout, work).await.map_err(|_| no_answer(addr, timeout))??;
    let chain = recorder.chain.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((outcome, chain))
}

/// Offers only TLS 1.3 (rustls) and reports what the server did.
pub async fn probe_tls13(addr: SocketAddr, server_name: &str, timeout: Duration) -> Result<Handshake, String> {
    let (outcome, _) = rustls_handshake(addr, server_name, &[&rustls::version::TLS13], timeout).await?;
    Ok(match outcome {
        Ok((_, suite)) => Handshake::Accepted { cipher: suite },
        Err(e) => Handshake::Refused { how: e },
    })
}

/// What a listener that should demand a client certificate (mutual TLS) did with a client that offered none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertProbe {
    /// It completed a TLS handshake and then refused with an alert about the certificate.
    Refused {
        /// The alert, for example `alert certificate_required`.
        alert: String,
    },
    /// It let the client in: it kept the connection open, or sent application data.
    Accepted {
        /// How that showed.
        how: String,
    },
    /// It did not speak TLS: the handshake broke without an alert (a plain-TCP listener drops a ClientHello).
    NotTls {
        /// What happened.
        how: String,
    },
    /// It ended the connection in a way that says neither: closed without an alert after the handshake, or an
    /// alert that is not about the certificate.
    Undecided {
        /// What happened.
        how: String,
    },
}

/// Whether a TLS alert is how a server refuses a client without a certificate: `certificate_required` (TLS 1.3),
/// `handshake_failure` (what TLS 1.2 servers send), `bad_certificate` or `access_denied`.
fn refuses_missing_certificate(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(alert, A::CertificateRequired | A::HandshakeFailure | A::BadCertificate | A::AccessDenied)
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Records whether the server asked for a client certificate (a CertificateRequest), and offers none.
#[derive(Debug, Default)]
struct AskedForCert(std::sync::atomic::AtomicBool);

impl rustls::client::ResolvesClientCert for AskedForCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Judges an error that ended the connection, during the handshake (`in_handshake`) or on the first read, for a
/// server that did (`asked`) or did not ask for a client certificate.
fn judge_refusal(e: &std::io::Error, in_handshake: bool, asked: bool) -> ClientCertProbe {
    match tls_error(e) {
        Some(rustls::Error::AlertReceived(alert)) => {
            let name = alert_name(u8::from(*alert));
            if refuses_missing_certificate(*alert) && asked {
                ClientCertProbe::Refused { alert: name }
            } else if refuses_missing_certificate(*alert) {
                ClientCertProbe::Undecided { how: format!("sent {name} without having asked for a client certificate") }
            } else {
                ClientCertProbe::Undecided { how: format!("sent {name}, which is not about the certificate") }
            }
        }
        Some(other) if in_handshake => ClientCertProbe::NotTls {
            how: format!("the TLS handshake failed: {}", crate::net::tls_problem(other, "the listener", None)),
        },
        Some(other) => ClientCertProbe::Undecided {
            how: format!("TLS error after the handshake: {}", crate::net::tls_problem(other, "the listener", None)),
        },
        None if in_handshake => ClientCertProbe::NotTls {
            how: format!("the connection broke during the TLS handshake, with no alert: {e}"),
        },
        None => ClientCertProbe::Undecided { how: format!("the connection broke with no TLS alert: {e}") },
    }
}

/// Connects to a listener that should demand a client certificate (mutual TLS) without presenting one, and
/// reports what the server did. A TLS 1.3 server judges the client's certificate after the client's Finished, so
/// its refusal comes as an alert on the first read; a TLS 1.2 server fails the handshake. Only an alert about the
/// certificate, from a server that asked for one, counts as refused: a listener that is not TLS at all also drops
/// the connection, and one that refuses for another reason (an unknown SNI name) proves nothing about client
/// certificates. Kept open for `wait`, or sending application data, is `Accepted`. `host` is the name in the
/// configured address: a DNS name is sent as SNI, an IP address sends none. The server's certificate is not
/// verified: only its client-authentication policy is under test.
pub async fn probe_without_client_cert(
    addr: SocketAddr,
    host: &str,
    wait: Duration,
    timeout: Duration,
) -> Result<ClientCertProbe, String> {
    let recorder = Arc::new(Recorder { chain: Mutex::default(), provider: provider() });
    let asked = Arc::new(AskedForCert::default());
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(recorder)
        .with_client_cert_resolver(asked.clone());
    let was_asked = || asked.0.load(std::sync::atomic::Ordering::SeqCst);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host} is not a valid server name; check the listener's address"))?,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr} did not accept a connection within {} s", timeout.as_secs_f64()))?
        .map_err(|e| connect_problem(addr, &e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => return Err(format!("{addr} did not finish the TLS handshake within {} s", timeout.as_secs_f64())),
        Ok(Err(e)) => return Ok(judge_refusal(&e, true, was_asked())),
        Ok(Ok(tls)) => tls,
    };
    let mut buf = [0u8; 256];
    let asked_how = |how: String| {
        if was_asked() { how } else { format!("{how}; it never asked for a client certificate") }
    };
    Ok(match tokio::time::timeout(wait, tls.read(&mut buf)).await {
        Err(_) => ClientCertProbe::Accepted {
            how: asked_how(format!("kept the connection open for {} s", wait.as_secs_f64())),
        },
        Ok(Ok(0)) => ClientCertProbe::Undecided { how: "closed the connection with no alert".into() },
        Ok(Ok(n)) => ClientCertProbe::Accepted { how: asked_how(format!("sent {n} bytes of application data")) },
        Ok(Err(e)) => judge_refusal(&e, false, was_asked()),
    })
}

/// What the certificate check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CertReport {
    /// Subject of the leaf.
    pub subject: String,
    /// Issuer of the leaf.
    pub issuer: String,
    /// Days until the leaf expires (negative once expired).
    pub days_left: f64,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
    /// `None` when the chain verifies to the CA for the name and is valid now; otherwise why not.
    pub problem: Option<String>,
}

/// Fetches the chain `addr` presents for `server_name` and verifies it against `ca_pem` (PEM, one or more CA
/// certificates, read from `ca_file`) at the current time. The problem, if any, is one sentence: the names the
/// certificate is valid for, when it expired, or which CA option to set.
pub async fn check_certificate(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &[u8],
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<CertReport, String> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let (_, chain) = rustls_handshake(addr, server_name, &versions, timeout).await?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{addr} presented no certificate; configure one on the server"));
    };
    let (subject, issuer, not_after) = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, c)) => (c.subject().to_string(), c.issuer().to_string(), c.validity().not_after.timestamp()),
        Err(e) => return Err(format!("the certificate of {addr} cannot be parsed ({e}); serve a valid X.509 one")),
    };
    let now = UnixTime::now();
    let days_left = (not_after - now.as_secs() as i64) as f64 / 86_400.0;
    let ca_name = ca_file.map_or_else(|| "the CA file".to_string(), |f| f.display().to_string());
    let mut roots = rustls::RootCertStore::empty();
    for c in <CertificateDer<'static> as rustls_pki_types::pem::PemObject>::pem_slice_iter(ca_pem) {
        let c = c.map_err(|e| format!("{ca_name} is not valid PEM ({e}); point ca_file at the CA's PEM file"))?;
        roots.add(c).map_err(|e| format!("{ca_name} holds a certificate rustls rejects ({e}); use the CA's PEM"))?;
    }
    if roots.is_empty() {
        return Err(format!("{ca_name} holds no certificate; point ca_file at the CA's PEM file"));
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("cannot build a certificate verifier from {ca_name}: {e}"))?;
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| format!("{server_name} is not a valid server name; check the endpoint URL"))?;
    let problem = verifier
        .verify_server_cert(leaf, &chain[1..], &name, &[], now)
        .err()
        .map(|e| crate::net::tls_problem(&e, server_name, ca_file));
    Ok(CertReport { subject, issuer, days_left, not_after, problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A rustls server on loopback speaking `versions`, with a certificate for `localhost` valid from `not_before`
    /// to `not_after` (Unix seconds), signed by a fresh CA; returns its address and the CA PEM.
    async fn server(
        versions: &[&'static rustls::SupportedProtocolVersion],
        not_after_days: i64,
    ) -> (SocketAddr, String) {
        server_with(versions, not_after_days, None).await
    }

    /// As `server`, asking for client certificates from its CA when `client_auth` is set (required when true,
    /// optional when false). Each connection is held until the client closes it.
    async fn server_with(
        versions: &[&'static rustls::SupportedProtocolVersion],
        not_after_days: i64,
        client_auth: Option<bool>,
    ) -> (SocketAddr, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time_now();
        params.not_before = now - time::Duration::days(2);
        params.not_after = now + time::Duration::days(not_after_days);
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions).unwrap();
        let builder = match client_auth {
            None => builder.with_no_client_auth(),
            Some(required) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der().clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if required { verifier } else { verifier.allow_unauthenticated() };
                builder.with_client_cert_verifier(verifier.build().unwrap())
            }
        };
        let config = builder
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..16 {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 512];
                        while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        (addr, ca.pem())
    }

    fn time_now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    const T: Duration = Duration::from_secs(5);

    /// Goal: against a TLS 1.3-only server, 1.0, 1.1 and 1.2 are refused by the server (an alert) and 1.3 is
    /// accepted; against a server that also speaks 1.2, the same hand-built 1.2 hello is accepted, which proves
    /// the builder and so that the refusals are the server's.
    #[tokio::test]
    async fn versions_are_told_apart() {
        let (addr, _) = server(&[&rustls::version::TLS13], 90).await;
        for v in [TlsVersion::Tls10, TlsVersion::Tls11, TlsVersion::Tls12] {
            let h = probe_legacy(addr, "localhost", v, T).await.unwrap();
            assert!(matches!(&h, Handshake::Refused { how } if how.starts_with("alert")), "{v:?}: {h:?}");
        }
        let h = probe_legacy(addr, "localhost", TlsVersion::Tls13, T).await.unwrap();
        assert!(matches!(&h, Handshake::Accepted { cipher } if cipher.contains("TLS13")), "{h:?}");

        let (addr12, _) = server(&[&rustls::version::TLS13, &rustls::version::TLS12], 90).await;
        let h = probe_legacy(addr12, "localhost", TlsVersion::Tls12, T).await.unwrap();
        assert!(matches!(&h, Handshake::Accepted { .. }), "{h:?}");
        let h = probe_legacy(addr12, "localhost", TlsVersion::Tls10, T).await.unwrap();
        assert!(matches!(&h, Handshake::Refused { .. }), "{h:?}");
    }

    /// Goal: the mutual-TLS probe calls a listener refused only when it sends a certificate alert. A server that
    /// requires a client certificate (TLS 1.3, and TLS 1.2 where the refusal is a handshake alert) is refused; one
    /// that lets a certificate-less client in is accepted; a plain-TCP listener that drops the ClientHello is
    /// not TLS, never refused.
    #[tokio::test]
    async fn client_certificate_policy_is_told_apart() {
        let wait = Duration::from_millis(500);
        let (addr, _) = server_with(&[&rustls::version::TLS13], 90, Some(true)).await;
        let p = probe_without_client_cert(addr, "localhost", wait, T).await.unwrap();
        assert_eq!(p, ClientCertProbe::Refused { alert: "alert certificate_required".into() });
        let (addr, _) = server_with(&[&rustls::version::TLS12], 90, Some(true)).await;
        let p = probe_without_client_cert(addr, "localhost", wait, T).await.unwrap();
        assert!(matches!(&p, ClientCertProbe::Refused { .. }), "TLS 1.2: {p:?}");
        let (addr, _) = server_with(&[&rustls::version::TLS13], 90, Some(false)).await;
        let p = probe_without_client_cert(addr, "localhost", wait, T).await.unwrap();
        assert!(matches!(&p, ClientCertProbe::Accepted { .. }), "optional client auth: {p:?}");
        let (addr, _) = server(&[&rustls::version::TLS13], 90).await;
        let p = probe_without_client_cert(addr, "localhost", wait, T).await.unwrap();
        assert!(matches!(&p, ClientCertProbe::Accepted { .. }), "no client auth: {p:?}");

        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = plain.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = plain.accept().await.unwrap();
            let mut buf = [0u8; 4];
            let _ = tcp.read_exact(&mut buf).await; // a length prefix that is far too long: drop the connection
        });
        let p = probe_without_client_cert(addr, "localhost", wait, T).await.unwrap();
        assert!(matches!(&p, ClientCertProbe::NotTls { .. }), "plain TCP: {p:?}");

        // A server that refuses every handshake (here: it has no certificate for the name) without ever asking
        // for a client certificate proves nothing about client certificates.
        #[derive(Debug)]
        struct NoCert;
        impl rustls::server::ResolvesServerCert for NoCert {
            fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
                None
            }
        }
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let refusing = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = refusing.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = refusing.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let p = probe_without_client_cert(addr, "unknown.example", wait, T).await.unwrap();
        assert!(matches!(&p, ClientCertProbe::Undecided { .. }), "refuses without asking: {p:?}");
    }

    /// Goal: a hand-written ServerHello for TLS 1.0 is judged accepted, an alert refused, a short answer undecided.
    #[test]
    fn answers_are_judged() {
        let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x01];
        hello.extend_from_slice(&[0u8; 32]);
        hello.extend_from_slice(&[0x00, 0xc0, 0x13, 0x00]);
        assert_eq!(judge_answer(TlsVersion::Tls10, &hello), Some(Handshake::Accepted { cipher: "0xC013".into() }));
        assert_eq!(
            judge_answer(TlsVersion::Tls10, &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 70]),
            Some(Handshake::Refused { how: "alert protocol_version".into() })
        );
        assert_eq!(judge_answer(TlsVersion::Tls10, &[0x16, 0x03]), None);
        let h = client_hello(TlsVersion::Tls11, "example.test", [7; 32]);
        assert_eq!(&h[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(u16::from_be_bytes([h[9], h[10]]), 0x0302, "client_version is the offered one");
        assert_eq!(h.len(), 5 + u16::from_be_bytes([h[3], h[4]]) as usize);
    }

    /// Goal: the certificate check verifies chain and name, reports days left, and names what is wrong with a wrong
    /// CA, a wrong name and an expired certificate.
    #[tokio::test]
    async fn certificates_are_verified() {
        let (addr, ca) = server(&[&rustls::version::TLS13], 90).await;
        let r = check_certificate(addr, "localhost", ca.as_bytes(), None, T).await.unwrap();
        assert_eq!(r.problem, None, "{r:?}");
        assert!((88.0..=91.0).contains(&r.days_left), "{r:?}");
        let wrong_name = check_certificate(addr, "127.0.0.1", ca.as_bytes(), None, T).await.unwrap();
        assert_eq!(
            wrong_name.problem.unwrap(),
            "certificate is valid for localhost, not 127.0.0.1; serve one that names 127.0.0.1, or put one of its \
             names in the endpoint URL"
        );
        let (_, other_ca) = server(&[&rustls::version::TLS13], 90).await;
        let ca_file = std::path::Path::new("other-ca.pem");
        let wrong_ca = check_certificate(addr, "localhost", other_ca.as_bytes(), Some(ca_file), T).await.unwrap();
        // Both test CAs share a name, so the chain is built and its signature fails.
        let p = wrong_ca.problem.unwrap();
        assert!(p.contains("ca_file (or XREGION_CA_FILE)") && p.contains("other-ca.pem"), "{p}");
        let (old, old_ca) = server(&[&rustls::version::TLS13], -1).await;
        let expired = check_certificate(old, "localhost", old_ca.as_bytes(), None, T).await.unwrap();
        assert!(expired.days_left < 0.0);
        let p = expired.problem.unwrap();
        assert!(p.starts_with("certificate expired 1 day ago (not after 20"), "{p}");
        // A closed port names the address and what to check.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let e = check_certificate(closed, "localhost", ca.as_bytes(), None, T).await.unwrap_err();
        assert_eq!(
            e,
            format!("{closed} refused the connection; check that the service is running and listens on that port")
        );
    }
}
