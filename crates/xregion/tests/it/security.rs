//! The security suite against the hardened lab: the whole suite passes on the defaults (and the compliance
//! checks with it), and each check fails, naming the problem, when the lab runs with the matching protection off.

use crate::common::{TempDir, check, lab_lock, report, run_xregion, text};
use std::time::Duration;

/// Longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs `checks` against a lab with `extra` config; returns the report, exit code and output.
fn run_security(name: &str, checks: &[&str], extra: &str) -> (serde_json::Value, Option<i32>, String) {
    let _g = lab_lock();
    let dir = TempDir::new(name);
    let config = dir.path().join("xregion.toml");
    std::fs::write(&config, extra).expect("write config");
    let out = dir.path().join("out");
    let mut args = vec!["run", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seed", "5"];
    if checks.is_empty() {
        args.extend(["--suite", "security"]);
    }
    for c in checks {
        args.extend(["--check", c]);
    }
    let o = run_xregion(&args, &[], RUN_LIMIT);
    (report(&out), o.status.code(), text(&o))
}

/// Asserts that `id` failed with a summary containing every one of `words`.
fn assert_fails(r: &serde_json::Value, id: &str, words: &[&str]) {
    let c = check(r, id);
    assert_eq!(c["verdict"], "fail", "{c}");
    let summary = c["summary"].as_str().unwrap_or("");
    for w in words {
        assert!(summary.contains(w), "{id}: {w:?} not in {summary:?}");
    }
}

/// Goal: on the default (hardened) lab the whole security suite passes, compliance included, and neither
/// report.json nor the output holds a token.
#[test]
fn security_suite_passes_on_the_default_lab() {
    let (r, code, out) = run_security("sec-pass", &[], "");
    for c in r["checks"].as_array().expect("checks") {
        assert_eq!(c["verdict"], "pass", "{c}");
    }
    for id in [
        "security.tls.versions",
        "security.tls.certificates",
        "security.access-control",
        "security.encryption-at-rest",
        "security.audit-trail",
        "security.data-residency",
        "security.erasure",
        "security.compliance.soc2",
        "security.compliance.iso27001",
        "security.compliance.gdpr",
    ] {
        check(&r, id);
    }
    assert_eq!(code, Some(0), "{out}");
    let json = r.to_string();
    assert!(!json.contains("xrl_") && !out.contains("xrl_"), "a token leaked");
    assert!(json.contains("[redacted]"), "the recorded config should show redacted tokens");
}

/// Goal: TLS 1.2 accepted by the lab's listeners fails security.tls.versions, naming the version.
#[test]
fn tls_versions_fail_when_tls12_is_accepted() {
    let (r, code, _) =
        run_security("sec-tls12", &["security.tls.versions"], "[lab.defects]\ntls_min_version = \"1.2\"\n");
    assert_fails(&r, "security.tls.versions", &["us-east-1: TLS 1.2 accepted"]);
    assert_eq!(code, Some(1));
}

/// Goal: an expired certificate fails security.tls.certificates, naming it expired.
#[test]
fn certificates_fail_when_expired() {
    let (r, _, _) = run_security("sec-expired", &["security.tls.certificates"], "[lab.defects]\ncert_expired = true\n");
    assert_fails(&r, "security.tls.certificates", &["expired"]);
}

/// Goal: with authentication off, requests without a token are served: access-control fails naming the 401 that
/// did not come.
#[test]
fn access_control_fails_without_auth() {
    let (r, _, _) = run_security("sec-noauth", &["security.access-control"], "[lab.defects]\nauth_disabled = true\n");
    assert_fails(&r, "security.access-control", &["no token got"]);
}

/// Goal: with mTLS off, a replication peer without a client certificate is accepted, and the check names it.
#[test]
fn access_control_fails_without_mtls() {
    let (r, _, _) = run_security("sec-nomtls", &["security.access-control"], "[lab.defects]\nmtls_disabled = true\n");
    assert_fails(&r, "security.access-control", &["without a client certificate"]);
}

/// Goal: values stored in plaintext are found by the raw scan.
#[test]
fn encryption_at_rest_fails_on_plaintext() {
    let (r, _, _) =
        run_security("sec-plain", &["security.encryption-at-rest"], "[lab.defects]\nplaintext_at_rest = true\n");
    assert_fails(&r, "security.encryption-at-rest", &["plaintext values found at rest"]);
}

/// Goal: without an audit log, every write of the check is reported missing.
#[test]
fn audit_trail_fails_without_audit() {
    let (r, _, _) = run_security("sec-noaudit", &["security.audit-trail"], "[lab.defects]\naudit_disabled = true\n");
    assert_fails(&r, "security.audit-trail", &["not audited", "missing from the audit log"]);
}

/// Goal: with residency ignored by replication, EU records reach the US regions and the check names one.
#[test]
fn data_residency_fails_when_ignored() {
    let (r, _, _) =
        run_security("sec-nores", &["security.data-residency"], "[lab.defects]\nresidency_disabled = true\n");
    assert_fails(&r, "security.data-residency", &["eu record", "reached us-"]);
}

/// Goal: an erasure that stays in one region leaves the value readable elsewhere, and the check names the region.
#[test]
fn erasure_fails_when_local_only() {
    let (r, _, _) = run_security(
        "sec-erase",
        &["security.erasure"],
        "[lab.defects]\nerasure_local_only = true\n[targets]\nerasure_s = 3\n",
    );
    assert_fails(&r, "security.erasure", &["still serves the erased value"]);
}

/// Six HTTPS servers with one fault each, speaking enough of the probe contract for the security suite.
mod six {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Longest request head or body a test server reads.
    const REQUEST_BYTES_MAX: usize = 64 * 1024;
    /// Requests served on one connection before it is closed.
    const REQUESTS_PER_CONNECTION_MAX: usize = 10_000;
    /// Connections one server accepts before it stops.
    const CONNECTIONS_MAX: usize = 2_000;

    /// What is wrong with one server.
    #[derive(Clone, Copy, PartialEq)]
    pub enum Fault {
        /// It also accepts TLS 1.2.
        Tls12,
        /// Its certificate expired 3 days ago.
        Expired,
        /// Its certificate has 5 days left.
        FiveDays,
        /// Its certificate names `localhost`, not its address.
        WrongName,
        /// It serves requests without a token.
        NoAuth,
        /// Nothing.
        Good,
    }

    /// A fresh CA: its PEM and an issuer for server certificates.
    pub fn ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "xregion six-servers test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        (pem, rcgen::Issuer::new(params, key))
    }

    /// The shared store (writes are visible in every region at once) and one audit log per region.
    struct State<'a> {
        kv: &'a mut BTreeMap<String, serde_json::Value>,
        audit: &'a mut Vec<serde_json::Value>,
    }

    /// Starts a server for `fault` on `ip`, port 0; returns its address.
    pub async fn start(
        ip: &str,
        region: &str,
        fault: Fault,
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        kv: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    ) -> SocketAddr {
        let now = time::OffsetDateTime::now_utc();
        let names = if fault == Fault::WrongName { vec!["localhost".to_string()] } else { vec![ip.to_string()] };
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, region);
        params.not_before = now - time::Duration::days(100);
        params.not_after = match fault {
            Fault::Expired => now - time::Duration::days(3) - time::Duration::hours(1),
            Fault::FiveDays => now + time::Duration::days(5) + time::Duration::hours(1),
            _ => now + time::Duration::days(90),
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = if fault == Fault::Tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let audit: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let region = region.to_string();
        tokio::spawn(async move {
            for _ in 0..CONNECTIONS_MAX {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, kv, audit, region) = (acceptor.clone(), kv.clone(), audit.clone(), region.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(std::time::Duration::from_secs(5), acceptor.accept(tcp));
                    if let Ok(Ok(mut tls)) = handshake.await {
                        for _ in 0..REQUESTS_PER_CONNECTION_MAX {
                            let Some((method, target, token, body)) = read_request(&mut tls).await else { break };
                            let (status, json) = {
                                let (mut kv, mut audit) = (kv.lock().unwrap(), audit.lock().unwrap());
                                let mut state = State { kv: &mut kv, audit: &mut audit };
                                answer(&mut state, &region, fault, &method, &target, &token, &body)
                            };
                            let body = json.to_string();
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if tls.write_all(head.as_bytes()).await.is_err()
                                || tls.write_all(body.as_bytes()).await.is_err()
                            {
                                break;
                            }
                        }
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    /// Reads one request: method, target, bearer token, body. `None` at the end of the connection.
    async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(String, String, String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > REQUEST_BYTES_MAX {
                return None;
            }
            let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
        let (mut token, mut length) = (String::new(), 0usize);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "authorization" => token = v.trim().trim_start_matches("Bearer ").to_string(),
                    "content-length" => length = v.trim().parse().ok()?,
                    _ => {}
                }
            }
        }
        let mut body = buf[end..].to_vec();
        while body.len() < length.min(REQUEST_BYTES_MAX) {
            let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            body.extend_from_slice(&chunk[..n]);
        }
        Some((method, target, token, body))
    }

    /// The answer to one request, as the probe contract has it (tokens `t-read`, `t-write`, `t-admin`).
    fn answer(
        state: &mut State<'_>,
        region: &str,
        fault: Fault,
        method: &str,
        target: &str,
        token: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let err = |status: u16, e: &str| (status, serde_json::json!({ "error": e, "message": e }));
        let (path, _query) = target.split_once('?').unwrap_or((target, ""));
        if path == "/healthz" {
            return (200, serde_json::json!({ "status": "ok", "region": region }));
        }
        // Scopes: 1 read, 2 write, 3 admin; the no-auth server lets a request without a token in as an admin.
        let (principal, scope) = match token {
            "t-read" => ("reader", 1),
            "t-write" => ("writer", 2),
            "t-admin" => ("admin", 3),
            "" if fault == Fault::NoAuth => ("", 3),
            _ => return err(401, "unauthorized"),
        };
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let version = serde_json::json!({ "wall_ms": now_ms, "logical": 0, "origin": region });
        let audit = |state: &mut State<'_>, action: &str, key: &str| {
            let seq = state.audit.len() as u64 + 1;
            state.audit.push(serde_json::json!({
                "seq": seq, "time_ms": now_ms, "principal": principal, "action": action, "key": key, "status": 200
            }));
        };
        let record = |key: &str, value: Option<&str>| serde_json::json!({ "key": key, "value": value, "version": version, "region": region });
        if let Some(key) = path.strip_prefix("/v1/kv/") {
            return match (method, scope) {
                ("GET", _) => match state.kv.get(key) {
                    Some(r) if !r["value"].is_null() => (200, r.clone()),
                    _ => err(404, "not_found"),
                },
                ("PUT", 2..) => {
                    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                    let r = record(key, v["value"].as_str());
                    state.kv.insert(key.to_string(), r.clone());
                    audit(state, "put", key);
                    (200, r)
                }
                ("DELETE", 2..) => {
                    let r = record(key, None);
                    state.kv.insert(key.to_string(), r.clone());
                    audit(state, "delete", key);
                    (200, r)
                }
                _ => err(403, "forbidden"),
            };
        }
        if let Some(key) = path.strip_prefix("/v1/erase/") {
            if scope < 2 {
                return err(403, "forbidden");
            }
            state.kv.insert(key.to_string(), record(key, None));
            audit(state, "erase", key);
            return (200, serde_json::json!({ "key": key, "region": region, "version": version }));
        }
        match (path, scope) {
            ("/v1/kv", _) => (200, serde_json::json!({ "records": [], "next_after": null })),
            ("/v1/audit", 3) => {
                (200, serde_json::json!({ "region": region, "entries": state.audit, "next_after": null }))
            }
            ("/v1/audit", _) => err(403, "forbidden"),
            _ => err(404, "not_found"),
        }
    }
}

/// Goal (issue 12): one unusable endpoint no longer blanks the suite. Against six HTTPS servers with one fault
/// each (TLS 1.2 accepted, an expired certificate, 5 days left, a wrong host name, no auth required, and a good
/// one), `xregion run --suite security` names every faulty server's fault in readable words, the good server
/// passes every check that judges it, and the exit code is 1 (a failure), not 2. Method: the servers run in this
/// process on 127.0.0.x, port 0, with certificates from a test CA made with rcgen; xregion trusts that CA through
/// ca_file.
#[test]
fn six_servers_one_fault_each() {
    use six::Fault;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = TempDir::new("sec-six");
    let (ca_pem, issuer) = six::ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let servers = [
        ("tls12", "127.0.0.11", Fault::Tls12),
        ("expired", "127.0.0.12", Fault::Expired),
        ("five-days", "127.0.0.13", Fault::FiveDays),
        ("wrong-name", "127.0.0.14", Fault::WrongName),
        ("no-auth", "127.0.0.15", Fault::NoAuth),
        ("good", "127.0.0.16", Fault::Good),
    ];
    let kv = std::sync::Arc::default();
    let mut config =
        String::from("[deployment]\nkind = \"http\"\nconnect_timeout_ms = 1000\nrequest_timeout_ms = 2000\n");
    for (name, ip, fault) in servers {
        let addr = rt.block_on(six::start(ip, name, fault, &issuer, std::sync::Arc::clone(&kv)));
        config.push_str(&format!("[[deployment.regions]]\nname = \"{name}\"\nendpoint = \"https://{addr}\"\n"));
    }
    config.push_str(&format!(
        "[deployment.tls]\nca_file = \"{}\"\n[deployment.auth]\nread_token = \"t-read\"\nwrite_token = \"t-write\"\n\
         admin_token = \"t-admin\"\n[targets]\nerasure_s = 2\n",
        ca_file.display()
    ));
    let config_path = dir.path().join("xregion.toml");
    std::fs::write(&config_path, &config).unwrap();
    let out = dir.path().join("out");
    let args =
        ["run", "--config", config_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--suite", "security"];
    let o = run_xregion(&args, &[], Duration::from_secs(120));
    let all = text(&o);
    let r = report(&out);
    assert_eq!(o.status.code(), Some(1), "a failure beats an error: {all}");

    // The row of `region` in check `id`: (verdict, reason).
    let row = |id: &str, region: &str| -> (String, String) {
        let c = check(&r, id);
        let rows = c["regions"].as_array().unwrap_or_else(|| panic!("{id} has per-region verdicts: {c}"));
        let row = rows.iter().find(|x| x["region"] == region).unwrap_or_else(|| panic!("{id}: no {region} row: {c}"));
        (row["verdict"].as_str().unwrap().to_string(), row["reason"].as_str().unwrap().to_string())
    };
    let fails = |id: &str, region: &str, words: &str| {
        let (v, reason) = row(id, region);
        assert_eq!(v, "fail", "{id} {region}: {reason}");
        assert!(reason.contains(words), "{id} {region}: {words:?} not in {reason:?}");
    };
    fails("security.tls.versions", "tls12", "TLS 1.2 accepted");
    fails("security.tls.certificates", "expired", "certificate expired 3 days ago (not after 20");
    fails("security.tls.certificates", "five-days", "certificate expires in 5 days (not after 20");
    fails("security.tls.certificates", "wrong-name", "certificate is valid for localhost, not 127.0.0.14");
    fails("security.access-control", "no-auth", "as no token got 200 (expected 401)");
    for id in ["security.tls.versions", "security.tls.certificates", "security.access-control", "security.audit-trail"]
    {
        assert_eq!(check(&r, id)["verdict"], if id == "security.audit-trail" { "error" } else { "fail" }, "{id}");
        assert_eq!(row(id, "good").0, "pass", "{id}: the good server passes");
    }
    // The servers whose certificate the clients refuse are error rows naming why, and the others are still judged.
    let (v, reason) = row("security.access-control", "wrong-name");
    assert_eq!(v, "error");
    assert!(reason.contains("certificate is valid for localhost, not 127.0.0.14"), "{reason}");
    let (v, reason) = row("security.audit-trail", "expired");
    assert_eq!(v, "error");
    assert!(reason.contains("certificate expired 3 days ago"), "{reason}");
    assert_eq!(row("security.audit-trail", "no-auth").0, "pass");
    // No Debug output of a library type reaches the report or the console.
    let json = r.to_string();
    for debug in ["Context {", "IpAddress(", "UnknownIssuer", "NotValidForName", "Ipv4Addr", "-1 days"] {
        assert!(!json.contains(debug) && !all.contains(debug), "{debug:?} in the output: {all}");
    }
    drop(rt);
}
