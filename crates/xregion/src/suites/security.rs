//! The security suite: TLS versions and certificates on every endpoint, access control (tokens, scopes, mutual
//! TLS on replication), encryption at rest, the audit trail, data residency and erasure, each proven by behaviour:
//! xregion writes canary data, then shows where it went, who was recorded, and that it is gone.
//!
//! Raw-file evidence (encryption at rest, residency, erasure) comes from scanning `[deployment.security]
//! raw_paths` (the lab fills in its directory) for the canary values' bytes, streaming every regular file up to
//! `RAW_FILE_BYTES_MAX`.

use crate::net::Role;
use crate::probe::{Probe, ProbeError};
use crate::runner::{CheckDef, Ctx, ResultBuilder};
use crate::tls_scan::{ClientCertProbe, Handshake, TlsVersion};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xregion_model::report::{CheckResult, Table, Verdict};

/// Largest raw file scanned; bigger ones are listed as not scanned.
const RAW_FILE_BYTES_MAX: u64 = 1 << 30;
/// Most files scanned under the raw paths.
const RAW_FILES_MAX: usize = 100_000;
/// Timeout of one TLS probe.
const TLS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replication listener may keep a connection without a client certificate open before it counts
/// as accepted.
const MTLS_WAIT: Duration = Duration::from_secs(2);
/// Longest wait for a canary to replicate everywhere before the raw scan.
const REPLICATE_WAIT: Duration = Duration::from_secs(15);
/// Poll interval of the waits.
const POLL: Duration = Duration::from_millis(100);
/// Most audit pages read from one region.
const AUDIT_PAGES_MAX: usize = 10_000;

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "security.tls.versions",
        title: "TLS 1.3 is negotiated and TLS 1.2, 1.1 and 1.0 are refused on every endpoint",
        target: |_| "TLS 1.3 accepted; 1.2, 1.1, 1.0 refused on every region, routing record and the CDN".into(),
    },
    CheckDef {
        id: "security.tls.certificates",
        title: "Every endpoint's certificate verifies to the CA for its address and is far from expiry",
        target: |c| format!("chain to the CA, name matches, ≥ {} days left", c.targets.cert_days_min),
    },
    CheckDef {
        id: "security.access-control",
        title: "No token gets 401, a wrong scope 403, and replication refuses a peer without a client certificate",
        target: |_| "401 without a token, 403 for a wrong scope, mTLS on replication".into(),
    },
    CheckDef {
        id: "security.encryption-at-rest",
        title: "No stored value appears in plaintext in the deployment's raw files",
        target: |_| "0 canary values found in the raw files".into(),
    },
    CheckDef {
        id: "security.audit-trail",
        title: "Every write appears in the region's audit log with principal, action, key and time",
        target: |_| "every write of the check audited".into(),
    },
    CheckDef {
        id: "security.data-residency",
        title: "Records with a residency tag live only in the regions the policy allows",
        target: |c| {
            let s = &c.deployment.security;
            if s.residency_regions.is_empty() {
                format!("{:?} records only where the policy allows", s.residency_tag)
            } else {
                format!("{:?} records only in {}", s.residency_tag, s.residency_regions.join(", "))
            }
        },
    },
    CheckDef {
        id: "security.erasure",
        title: "An erased record is unreadable in every region in time and its bytes are gone from every raw file",
        target: |c| format!("unreadable everywhere within {} s, 0 bytes left in raw files", c.targets.erasure_s),
    },
];

/// Runs one check of this module.
pub async fn run(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    match def.id {
        "security.tls.versions" => tls_versions(def, ctx).await,
        "security.tls.certificates" => tls_certificates(def, ctx).await,
        "security.access-control" => access_control(def, ctx).await,
        "security.encryption-at-rest" => encryption_at_rest(def, ctx).await,
        "security.audit-trail" => audit_trail(def, ctx).await,
        "security.data-residency" => data_residency(def, ctx).await,
        "security.erasure" => erasure(def, ctx).await,
        other => ResultBuilder::new(def, &ctx.config).finish(Verdict::Error, format!("unknown check {other}")),
    }
}

/// An endpoint to scan: what to call it, and its URL.
struct Endpoint {
    label: String,
    url: String,
}

/// Every endpoint clients reach: each region, each routing record, the CDN.
fn endpoints(ctx: &Ctx) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = ctx
        .probes
        .iter()
        .map(|p| Endpoint { label: format!("region {}", p.region), url: p.endpoint.clone() })
        .collect();
    if let Some(t) = &ctx.traffic {
        for (name, url) in &t.records {
            out.push(Endpoint { label: format!("router {name}"), url: url.clone() });
        }
        if let Some(cdn) = &t.cdn {
            out.push(Endpoint { label: "CDN".into(), url: cdn.clone() });
        }
    }
    out
}

/// Scheme, host (brackets removed) and socket address of a URL.
async fn resolve(url: &str) -> Result<(bool, String, SocketAddr), String> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(format!("{url} is not an http(s) URL")),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[1..end + 1];
        let port = authority[end + 2..].strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port);
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| format!("{url}: bad port"))?),
            None => (authority.to_string(), default_port),
        }
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url} resolves to no address"))?;
    Ok((https, host, addr))
}

fn table(title: &str, columns: &[&str], rows: Vec<Vec<String>>) -> Table {
    Table { title: title.into(), columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

/// Up to `n` items joined, with "and N more".
fn list(items: &[String], n: usize) -> String {
    if items.len() <= n { items.join("; ") } else { format!("{}; and {} more", items[..n].join("; "), items.len() - n) }
}

async fn tls_versions(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    let eps = endpoints(ctx);
    let scans = futures::future::join_all(eps.iter().map(|e| async move {
        let (https, host, addr) = match resolve(&e.url).await {
            Ok(r) => r,
            Err(why) => return (e, None, Err(why)),
        };
        if !https {
            return (e, Some(addr), Ok(None));
        }
        let mut by_version = Vec::new();
        for v in TlsVersion::ALL.into_iter().rev() {
            by_version.push((v, crate::tls_scan::probe_legacy(addr, &host, v, TLS_TIMEOUT).await));
        }
        (e, Some(addr), Ok(Some(by_version)))
    }))
    .await;
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut legacy_accepted = 0u32;
    for (e, addr, scan) in scans {
        let addr_s = addr.map_or("-".into(), |a| a.to_string());
        match scan {
            Err(why) => errors.push(format!("{}: {why}", e.label)),
            Ok(None) => {
                problems.push(format!("no TLS on {} (plain http)", e.label));
                rows.push(vec![e.label.clone(), addr_s, "plain http".into(), "-".into(), "-".into(), "-".into()]);
            }
            Ok(Some(by_version)) => {
                let mut row = vec![e.label.clone(), addr_s];
                for (v, r) in by_version {
                    let cell = match &r {
                        Ok(Handshake::Accepted { cipher }) => format!("accepted ({cipher})"),
                        Ok(Handshake::Refused { how }) => format!("refused ({how})"),
                        Err(why) => format!("error: {why}"),
                    };
                    match (v, r) {
                        (TlsVersion::Tls13, Ok(Handshake::Refused { .. })) => {
                            problems.push(format!("TLS 1.3 refused on {}", e.label))
                        }
                        (TlsVersion::Tls13, _) => {}
                        (_, Ok(Handshake::Accepted { .. })) => {
                            legacy_accepted += 1;
                            problems.push(format!("{} accepted on {}", v.name(), e.label));
                        }
                        _ => {}
                    }
                    if let Some(why) = cell.strip_prefix("error: ") {
                        errors.push(format!("{} on {}: {why}", v.name(), e.label));
                    }
                    row.push(cell);
                }
                rows.push(row);
            }
        }
    }
    rb.metric("endpoints", eps.len() as f64).metric("legacy_versions_accepted", f64::from(legacy_accepted));
    rb.table(table(
        "Handshake outcome by endpoint and version",
        &["endpoint", "address", "TLS 1.3", "TLS 1.2", "TLS 1.1", "TLS 1.0"],
        rows,
    ));
    rb.note(
        "TLS 1.0 to 1.2 are offered with a hand-built ClientHello (rustls cannot send them), so a refusal is the \
         server's (an alert or a closed connection), never the client's; TLS 1.3 with rustls.",
    );
    rb.measured(format!("{legacy_accepted} legacy versions accepted on {} endpoints", eps.len()));
    judge(rb, &problems, 6, &errors, format!("TLS 1.3 only on all {} endpoints", eps.len()))
}

async fn tls_certificates(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    let Some(ca_file) = ctx.config.deployment.tls.ca_file.clone() else {
        return rb.finish(Verdict::Skipped, "no CA to verify against: set [deployment.tls] ca_file");
    };
    let ca_pem = match std::fs::read(&ca_file) {
        Ok(p) => p,
        Err(e) => return rb.finish(Verdict::Error, format!("cannot read the CA file {}: {e}", ca_file.display())),
    };
    let min_days = ctx.config.targets.cert_days_min;
    let eps = endpoints(ctx);
    let ca = &ca_pem;
    let reports = futures::future::join_all(eps.iter().map(|e| async move {
        let r = match resolve(&e.url).await {
            Ok((false, _, _)) => Err("plain http: no certificate".to_string()),
            Ok((true, host, addr)) => crate::tls_scan::check_certificate(addr, &host, ca, TLS_TIMEOUT).await,
            Err(why) => Err(why),
        };
        (e, r)
    }))
    .await;
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut least = f64::INFINITY;
    for (e, r) in reports {
        match r {
            Err(why) if why.starts_with("plain http") => {
                problems.push(format!("{}: {why}", e.label));
                rows.push(vec![e.label.clone(), "-".into(), "-".into(), "-".into(), why]);
            }
            Err(why) => errors.push(format!("{}: {why}", e.label)),
            Ok(c) => {
                least = least.min(c.days_left);
                let status = if c.days_left < 0.0 {
                    let p = format!("certificate of {} expired {:.0} days ago", e.label, -c.days_left);
                    problems.push(p.clone());
                    p
                } else if let Some(p) = &c.problem {
                    problems.push(format!("certificate of {} does not verify: {p}", e.label));
                    p.clone()
                } else if c.days_left < min_days {
                    let p =
                        format!("certificate of {} expires in {:.0} days (minimum {min_days})", e.label, c.days_left);
                    problems.push(p.clone());
                    p
                } else {
                    "ok".into()
                };
                rows.push(vec![e.label.clone(), c.subject, c.issuer, format!("{:.1}", c.days_left), status]);
            }
        }
    }
    rb.table(table("Certificates by endpoint", &["endpoint", "subject", "issuer", "days left", "status"], rows));
    if least.is_finite() {
        rb.metric("days_left_min", least);
        rb.measured(format!("{least:.0} days left at least"));
    }
    rb.note(format!("verified against {} at the current time, by the endpoint's address or name", ca_file.display()));
    judge(rb, &problems, 4, &errors, format!("{} certificates verify, {least:.0} days left at least", eps.len()))
}

/// A client sending `role`'s token (or none), with the deployment's TLS and timeouts.
fn role_client(ctx: &Ctx, role: Role) -> reqwest::Client {
    crate::net::client_builder(&ctx.config.deployment, role)
        .connect_timeout(Duration::from_millis(ctx.config.deployment.connect_timeout_ms))
        .timeout(Duration::from_millis(ctx.config.deployment.request_timeout_ms))
        .build()
        .unwrap_or_default()
}

/// Status of one request, or why there was none.
async fn status_of(req: reqwest::RequestBuilder) -> Result<u16, String> {
    req.send().await.map(|r| r.status().as_u16()).map_err(|e| crate::faults::root_cause(&e))
}

async fn access_control(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    let auth = &ctx.config.deployment.auth;
    if auth.read_token.is_none() || auth.write_token.is_none() || auth.admin_token.is_none() {
        return rb.finish(
            Verdict::Skipped,
            "needs a read, a write and an admin token: set [deployment.auth] or XREGION_TOKEN_READ/WRITE/ADMIN",
        );
    }
    let anon = role_client(ctx, Role::Anonymous);
    let reader = role_client(ctx, Role::Read);
    let writer = role_client(ctx, Role::Write);
    let admin = role_client(ctx, Role::Admin);
    let bogus = {
        let mut h = reqwest::header::HeaderMap::new();
        let mut v = reqwest::header::HeaderValue::from_static("Bearer xrl_not-a-valid-token-0000000000000000");
        v.set_sensitive(true);
        h.insert(reqwest::header::AUTHORIZATION, v);
        crate::net::client_builder(&ctx.config.deployment, Role::Anonymous)
            .default_headers(h)
            .timeout(Duration::from_millis(ctx.config.deployment.request_timeout_ms))
            .build()
            .unwrap_or_default()
    };
    let key = format!("{}access", ctx.prefix("access-control"));
    let body = serde_json::json!({ "value": "access-control canary" });
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    for p in &ctx.probes {
        let base = &p.endpoint;
        let kv = format!("{base}/v1/kv/{key}");
        let audit = format!("{base}/v1/audit?limit=1");
        // (request, principal, expected statuses, client request)
        let cases: Vec<(&str, &str, &[u16], reqwest::RequestBuilder)> = vec![
            ("GET /v1/kv/{key}", "no token", &[401], anon.get(&kv)),
            ("PUT /v1/kv/{key}", "no token", &[401], anon.put(&kv).json(&body)),
            ("GET /v1/kv/{key}", "invalid token", &[401], bogus.get(&kv)),
            ("PUT /v1/kv/{key}", "reader", &[403], reader.put(&kv).json(&body)),
            ("POST /v1/erase/{key}", "reader", &[403], reader.post(format!("{base}/v1/erase/{key}"))),
            ("GET /v1/audit", "reader", &[403], reader.get(&audit)),
            ("GET /v1/audit", "writer", &[403], writer.get(&audit)),
            ("GET /metrics", "writer", &[403, 404], writer.get(format!("{base}/metrics"))),
            ("PUT /v1/kv/{key}", "writer", &[200], writer.put(&kv).json(&body)),
            ("GET /v1/kv/{key}", "reader", &[200, 404], reader.get(&kv)),
            ("GET /v1/audit", "admin", &[200], admin.get(&audit)),
        ];
        for (what, who, expected, req) in cases {
            let got = status_of(req).await;
            let ok = matches!(&got, Ok(s) if expected.contains(s));
            let got_s = match &got {
                Ok(s) => s.to_string(),
                Err(e) => format!("error: {e}"),
            };
            match &got {
                Err(e) => errors.push(format!("{what} as {who} on {}: {e}", p.region)),
                Ok(s) if !ok => {
                    problems.push(format!("{what} as {who} got {s} on {} (expected {expected:?})", p.region))
                }
                _ => {}
            }
            let exp = expected.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ");
            rows.push(vec![
                p.region.clone(),
                what.to_string(),
                who.to_string(),
                exp,
                got_s,
                if ok { "ok" } else { "WRONG" }.into(),
            ]);
        }
    }
    rb.table(table(
        "Requests by token and scope",
        &["region", "request", "principal", "expected", "got", "verdict"],
        rows,
    ));
    // Replication: a peer without a client certificate must be refused.
    let repl = &ctx.config.deployment.security.replication;
    let mut mtls_rows = Vec::new();
    if repl.is_empty() {
        rb.note(
            "replication mutual TLS not checked: the deployment's replication listeners are unknown (set \
             [deployment.security] replication = { region = \"host:port\" })",
        );
    }
    for (region, addr) in repl {
        let r = match tokio::net::lookup_host(addr.as_str()).await.ok().and_then(|mut a| a.next()) {
            None => Err(format!("cannot resolve {addr}")),
            Some(sa) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                crate::tls_scan::probe_without_client_cert(sa, host, MTLS_WAIT, TLS_TIMEOUT).await
            }
        };
        let (cell, ok) = match &r {
            Ok(ClientCertProbe::Refused { alert }) => (format!("refused ({alert})"), true),
            Ok(ClientCertProbe::Accepted { how }) => {
                problems.push(format!("replication of {region} accepts a peer without a client certificate ({how})"));
                (format!("accepted ({how})"), false)
            }
            Ok(ClientCertProbe::NotTls { how }) => {
                problems.push(format!("replication of {region} does not speak TLS ({how})"));
                (format!("not TLS ({how})"), false)
            }
            Ok(ClientCertProbe::Undecided { how }) => {
                errors.push(format!(
                    "replication of {region} neither refused with a certificate alert nor accepted: {how}"
                ));
                (format!("undecided ({how})"), false)
            }
            Err(e) => {
                errors.push(format!("replication of {region}: {e}"));
                (format!("error: {e}"), false)
            }
        };
        mtls_rows.push(vec![region.clone(), addr.clone(), cell, if ok { "ok" } else { "WRONG" }.into()]);
    }
    if !mtls_rows.is_empty() {
        rb.table(table(
            "Replication listeners, connected without a client certificate",
            &["region", "address", "outcome", "verdict"],
            mtls_rows,
        ));
    }
    rb.metric("wrong_answers", problems.len() as f64);
    rb.measured(format!("{} wrong answers", problems.len()));
    let replication = if repl.is_empty() {
        "replication not checked (no listeners configured)".to_string()
    } else {
        format!("replication refuses peers without a client certificate ({} listeners)", repl.len())
    };
    let pass = format!("401 without a token, 403 for every wrong scope in {} regions; {replication}", ctx.probes.len());
    judge(rb, &problems, 4, &errors, pass)
}

/// The verdict of a check that collected `problems` (fail, the first `shown` listed) and `errors` (could not
/// measure), or passes with `pass`.
fn judge(rb: ResultBuilder, problems: &[String], shown: usize, errors: &[String], pass: String) -> CheckResult {
    if !problems.is_empty() {
        return rb.finish(Verdict::Fail, list(problems, shown));
    }
    if !errors.is_empty() {
        return rb.finish(Verdict::Error, format!("could not measure: {}", list(errors, 4)));
    }
    rb.finish(Verdict::Pass, pass)
}

/// A fresh canary value: random bytes no file could hold by chance.
fn canary(tag: &str) -> String {
    format!("xrcanary-{tag}-{:032x}", rand::random::<u128>())
}

/// What a raw scan found.
#[derive(Debug, Default)]
struct RawScan {
    /// Files read.
    files: u64,
    /// Bytes read.
    bytes: u64,
    /// Files not read: too big or unreadable.
    skipped: Vec<String>,
    /// (file, index of the needle found).
    hits: Vec<(PathBuf, usize)>,
}

/// Streams every regular file under `paths` (symlinks not followed) looking for `needles`.
fn scan_raw(paths: &[PathBuf], needles: &[Vec<u8>]) -> RawScan {
    let mut out = RawScan::default();
    let overlap = needles.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1);
    let mut stack: Vec<PathBuf> = paths.to_vec();
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        seen += 1;
        if seen > RAW_FILES_MAX {
            out.skipped.push(format!("{} (past {RAW_FILES_MAX} files)", p.display()));
            continue;
        }
        if meta.len() > RAW_FILE_BYTES_MAX {
            out.skipped.push(format!("{} ({} bytes)", p.display(), meta.len()));
            continue;
        }
        match scan_file(&p, needles, overlap) {
            Ok((bytes, found)) => {
                out.files += 1;
                out.bytes += bytes;
                out.hits.extend(found.into_iter().map(|i| (p.clone(), i)));
            }
            Err(e) => out.skipped.push(format!("{} ({e})", p.display())),
        }
    }
    out
}

/// The needles found in one file, read in chunks that overlap by the longest needle.
fn scan_file(path: &Path, needles: &[Vec<u8>], overlap: usize) -> std::io::Result<(u64, Vec<usize>)> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024 + overlap];
    let mut kept = 0usize;
    let mut total = 0u64;
    let mut found = vec![false; needles.len()];
    loop {
        let n = f.read(&mut buf[kept..])?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let window = &buf[..kept + n];
        for (i, needle) in needles.iter().enumerate() {
            if !found[i] && !needle.is_empty() && window.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found[i] = true;
            }
        }
        let keep = overlap.min(window.len());
        let from = window.len() - keep;
        buf.copy_within(from..kept + n, 0);
        kept = keep;
    }
    Ok((total, found.iter().enumerate().filter(|(_, f)| **f).map(|(i, _)| i).collect()))
}

async fn scan_raw_async(paths: Vec<PathBuf>, needles: Vec<Vec<u8>>) -> RawScan {
    tokio::task::spawn_blocking(move || scan_raw(&paths, &needles)).await.unwrap_or_default()
}

/// Waits until every probe serves `key` with `value` (or `None`: serves nothing); returns each region's wait,
/// `None` for those that never did within `limit`.
async fn await_state(probes: &[Probe], key: &str, value: Option<&str>, limit: Duration) -> Vec<Option<Duration>> {
    futures::future::join_all(probes.iter().map(|p| async move {
        let start = Instant::now();
        loop {
            let got = p.get(key).await;
            let done = match (&got, value) {
                (Ok(Some(r)), Some(v)) => r.value.as_deref() == Some(v),
                (Ok(None), None) => true,
                (Ok(Some(r)), None) => r.value.is_none(),
                _ => false,
            };
            if done {
                return Some(start.elapsed());
            }
            if start.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }))
    .await
}

/// Writer-token probes, in region order: what a tenant writes with.
fn writer_probes(ctx: &Ctx) -> Vec<Probe> {
    let c = role_client(ctx, Role::Write);
    ctx.probes.iter().map(|p| p.with_client(c.clone())).collect()
}

fn show_paths(hits: &[(PathBuf, usize)]) -> Vec<String> {
    let mut v: Vec<String> = hits.iter().map(|(p, _)| p.display().to_string()).collect();
    v.dedup();
    v
}

async fn encryption_at_rest(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    let sec = &ctx.config.deployment.security;
    if sec.raw_paths.is_empty() {
        return match &sec.prowler_ocsf {
            Some(file) => prowler(rb, file),
            None => rb.finish(
                Verdict::Skipped,
                "no raw files to scan and no Prowler result: set [deployment.security] raw_paths or prowler_ocsf",
            ),
        };
    }
    let prefix = ctx.prefix("encryption-at-rest");
    let mut canaries = Vec::new();
    for p in &ctx.probes {
        let key = format!("{prefix}{}", p.region);
        let value = canary("rest");
        if let Err(e) = p.put(&key, &value).await {
            return rb.error(&e);
        }
        canaries.push((p.region.clone(), key, value));
    }
    // Every copy in place before the scan: each canary served by every region.
    for (_, key, value) in &canaries {
        let waits = await_state(&ctx.probes, key, Some(value), REPLICATE_WAIT).await;
        if waits.iter().any(Option::is_none) {
            rb.note(format!("{key} did not reach every region within {REPLICATE_WAIT:?}; scanned anyway"));
        }
    }
    let needles: Vec<Vec<u8>> = canaries.iter().map(|(_, _, v)| v.clone().into_bytes()).collect();
    // Twice, a moment apart, so that a store that writes lazily is seen too.
    let mut scan = scan_raw_async(sec.raw_paths.clone(), needles.clone()).await;
    if scan.hits.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        scan = scan_raw_async(sec.raw_paths.clone(), needles).await;
    }
    rb.metric("files_scanned", scan.files as f64)
        .metric("bytes_scanned", scan.bytes as f64)
        .metric("plaintext_hits", scan.hits.len() as f64);
    let rows = canaries
        .iter()
        .enumerate()
        .map(|(i, (region, key, _))| {
            let files: Vec<_> =
                scan.hits.iter().filter(|(_, n)| *n == i).map(|(p, _)| p.display().to_string()).collect();
            vec![region.clone(), key.clone(), files.len().to_string(), files.join(", ")]
        })
        .collect();
    rb.table(table("Canary values found in raw files", &["written in", "key", "files", "where"], rows));
    for s in scan.skipped.iter().take(10) {
        rb.note(format!("not scanned: {s}"));
    }
    rb.note(format!(
        "scanned {} files ({} bytes) under {}",
        scan.files,
        scan.bytes,
        sec.raw_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ));
    rb.measured(format!("{} plaintext hits in {} files", scan.hits.len(), scan.files));
    if !scan.hits.is_empty() {
        let files = show_paths(&scan.hits);
        return rb.finish(Verdict::Fail, format!("plaintext values found at rest in {}", list(&files, 3)));
    }
    if scan.files == 0 {
        return rb.finish(Verdict::Error, "no raw file could be read under raw_paths");
    }
    rb.finish(Verdict::Pass, format!("no canary value in {} raw files ({} bytes)", scan.files, scan.bytes))
}

/// Judges encryption at rest from a Prowler OCSF result file.
fn prowler(mut rb: ResultBuilder, file: &Path) -> CheckResult {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return rb.finish(Verdict::Error, format!("cannot read {}: {e}", file.display())),
    };
    let findings: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
    };
    let s = |v: &serde_json::Value, path: &[&str]| {
        path.iter().try_fold(v, |v, k| v.get(k)).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for f in &findings {
        let code = s(f, &["metadata", "event_code"]);
        let title = s(f, &["finding_info", "title"]);
        let text = format!("{code} {title}").to_lowercase();
        let at_rest = text.contains("encrypt") && !["transit", "tls", "ssl", "https"].iter().any(|w| text.contains(w));
        if !at_rest {
            continue;
        }
        let status = s(f, &["status_code"]).to_uppercase();
        let resource = f
            .get("resources")
            .and_then(|r| r.get(0))
            .map(|r| s(r, &["uid"]))
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| s(f, &["resource", "uid"]));
        if status == "FAIL" {
            failed.push(format!("{code} on {resource}"));
        }
        rows.push(vec![code, title, resource, status]);
    }
    rb.metric("findings", rows.len() as f64).metric("failed", failed.len() as f64);
    let n = rows.len();
    rb.table(table("Prowler encryption-at-rest findings", &["check", "title", "resource", "status"], rows));
    rb.note(format!("from the Prowler OCSF result {}", file.display()));
    rb.measured(format!("{} of {n} findings failed", failed.len()));
    if n == 0 {
        return rb.finish(Verdict::Skipped, format!("{} has no encryption-at-rest finding", file.display()));
    }
    if !failed.is_empty() {
        return rb.finish(Verdict::Fail, format!("Prowler: not encrypted at rest: {}", list(&failed, 3)));
    }
    rb.finish(Verdict::Pass, format!("{n} Prowler encryption-at-rest findings, all passed"))
}

/// Every entry of a region's audit log.
async fn audit_log(p: &Probe) -> Result<Vec<xregion_model::wire::AuditEntry>, ProbeError> {
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..AUDIT_PAGES_MAX {
        let page = p.audit(after, 1000).await?;
        out.extend(page.entries);
        match page.next_after {
            Some(n) if Some(n) != after => after = Some(n),
            _ => break,
        }
    }
    Ok(out)
}

async fn audit_trail(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    if ctx.config.deployment.auth.write_token.is_none() {
        rb.note("no write token configured: writes go with the probes' token");
    }
    let writers = writer_probes(ctx);
    let prefix = ctx.prefix("audit-trail");
    let start_ms = now_ms();
    // (region index, action, key)
    let mut ops: Vec<(usize, &str, String)> = Vec::new();
    for (i, p) in writers.iter().enumerate() {
        let key = format!("{prefix}{}", p.region);
        if let Err(e) = p.put(&key, &canary("audit")).await {
            return rb.error(&e);
        }
        ops.push((i, "put", key.clone()));
        if let Err(e) = p.delete(&key).await {
            return rb.error(&e);
        }
        ops.push((i, "delete", key.clone()));
    }
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    let end_ms = now_ms() + 60_000;
    let mut logs: BTreeMap<usize, Vec<xregion_model::wire::AuditEntry>> = BTreeMap::new();
    for (i, p) in ctx.probes.iter().enumerate() {
        match audit_log(p).await {
            Ok(l) => {
                logs.insert(i, l);
            }
            Err(ProbeError::Status { status: 404, .. }) => {
                return rb.finish(Verdict::Skipped, format!("{} has no /v1/audit route", p.region));
            }
            Err(e) => return rb.error(&e),
        }
    }
    let is_lab = ctx.config.deployment.kind == crate::config::DeploymentKind::Lab;
    for (i, action, key) in &ops {
        let region = &ctx.probes[*i].region;
        let entry = logs.get(i).and_then(|l| {
            l.iter().find(|e| e.key == *key && e.action.to_ascii_lowercase().contains(action) && e.status < 400)
        });
        let problem = match entry {
            None => Some(format!("{action} of {key} missing from the audit log of {region}")),
            Some(e) if e.principal.is_empty() || e.principal == "anonymous" => {
                Some(format!("{action} of {key} in {region} audited without a principal ({:?})", e.principal))
            }
            Some(e) if is_lab && e.principal != xregion_lab::auth::WRITER => {
                Some(format!("{action} of {key} in {region} audited as {:?}, not writer", e.principal))
            }
            Some(e) if e.time_ms + 60_000 < start_ms || e.time_ms > end_ms => {
                Some(format!("{action} of {key} in {region} audited with a wrong time ({} ms)", e.time_ms))
            }
            _ => None,
        };
        rows.push(vec![
            region.clone(),
            action.to_string(),
            key.clone(),
            entry.map_or("-".into(), |e| e.principal.clone()),
            entry.map_or("-".into(), |e| e.action.clone()),
            entry.map_or("-".into(), |e| crate::fault_cmd::clock(e.time_ms)),
            if problem.is_none() { "ok".into() } else { "MISSING/WRONG".into() },
        ]);
        if let Some(p) = problem {
            missing.push(p);
        }
    }
    rb.table(table(
        "Writes of this check and their audit entries",
        &["region", "write", "key", "principal", "action", "time", "verdict"],
        rows,
    ));
    rb.metric("writes", ops.len() as f64).metric("unaudited", missing.len() as f64);
    rb.measured(format!("{} of {} writes audited", ops.len() - missing.len(), ops.len()));
    if !missing.is_empty() {
        return rb.finish(
            Verdict::Fail,
            format!("{} of {} writes not audited: {}", missing.len(), ops.len(), list(&missing, 3)),
        );
    }
    rb.finish(Verdict::Pass, format!("all {} writes audited with principal, action, key and time", ops.len()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The raw directories of `region` under the raw paths (`PATH/<region>`), where they exist.
fn region_dirs(paths: &[PathBuf], region: &str) -> Vec<PathBuf> {
    paths.iter().map(|p| p.join(region)).filter(|p| p.is_dir()).collect()
}

async fn data_residency(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    let sec = &ctx.config.deployment.security;
    let tag = sec.residency_tag.as_str();
    if sec.residency_regions.is_empty() {
        return rb.finish(
            Verdict::Skipped,
            format!("no residency policy: set [deployment.security] residency_regions for tag {tag:?}"),
        );
    }
    let writers = writer_probes(ctx);
    let allowed: Vec<usize> =
        (0..writers.len()).filter(|&i| sec.residency_regions.contains(&writers[i].region)).collect();
    let denied: Vec<usize> = (0..writers.len()).filter(|i| !allowed.contains(i)).collect();
    let Some(&home) = allowed.first() else {
        return rb.finish(Verdict::Error, format!("no region of the deployment is in residency_regions for {tag:?}"));
    };
    let prefix = ctx.prefix("data-residency");
    let home_p = &writers[home];
    let mut records = Vec::new();
    for n in 0..3 {
        let key = format!("{prefix}tagged-{n}");
        let value = canary("residency");
        match home_p.put_tagged(&key, &value, Some(tag)).await {
            Ok(_) => records.push((key, value)),
            Err(e) => {
                return rb.finish(Verdict::Fail, format!("a {tag:?} record was refused in {}: {e}", home_p.region));
            }
        }
    }
    // An untagged marker written after them: once it is everywhere, the tagged records had every chance to be.
    let marker = format!("{prefix}marker");
    let marker_v = canary("marker");
    if let Err(e) = home_p.put(&marker, &marker_v).await {
        return rb.error(&e);
    }
    let waits = await_state(&ctx.probes, &marker, Some(&marker_v), REPLICATE_WAIT).await;
    for (i, w) in waits.iter().enumerate() {
        if w.is_none() {
            rb.note(format!("the untagged marker did not reach {} within {REPLICATE_WAIT:?}", ctx.probes[i].region));
        }
    }
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (key, value) in &records {
        for (i, p) in ctx.probes.iter().enumerate() {
            let should = allowed.contains(&i);
            let got = if should {
                await_state(std::slice::from_ref(p), key, Some(value), REPLICATE_WAIT).await[0].is_some()
            } else {
                matches!(p.get(key).await, Ok(Some(r)) if r.value.is_some())
            };
            let tag_ok = match p.get(key).await {
                Ok(Some(r)) => r.residency.as_deref() == Some(tag),
                _ => !should,
            };
            if should && !got {
                problems.push(format!("{tag} record {key} missing from allowed region {}", p.region));
            }
            if !should && got {
                problems.push(format!("{tag} record {key} reached {}", p.region));
            }
            if should && got && !tag_ok {
                problems.push(format!("{tag} record {key} in {} lost its residency tag", p.region));
            }
            rows.push(vec![
                key.clone(),
                p.region.clone(),
                if should { "allowed" } else { "not allowed" }.into(),
                if got { "present" } else { "absent" }.into(),
                if should == got { "ok" } else { "WRONG" }.into(),
            ]);
        }
    }
    rb.table(table(
        &format!("Records tagged {tag:?} written in {}, by region (through the contract)", home_p.region),
        &["key", "region", "policy", "served", "verdict"],
        rows,
    ));
    // Raw files of the regions that must not hold them.
    let needles: Vec<Vec<u8>> = records.iter().map(|(_, v)| v.clone().into_bytes()).collect();
    let mut raw_rows = Vec::new();
    for &i in &denied {
        let region = &ctx.probes[i].region;
        let dirs = region_dirs(&sec.raw_paths, region);
        if dirs.is_empty() {
            continue;
        }
        let scan = scan_raw_async(dirs, needles.clone()).await;
        if !scan.hits.is_empty() {
            problems.push(format!(
                "{tag} record bytes found in the raw files of {region}: {}",
                list(&show_paths(&scan.hits), 2)
            ));
        }
        raw_rows.push(vec![region.clone(), scan.files.to_string(), scan.hits.len().to_string()]);
    }
    if raw_rows.is_empty() {
        rb.note("no per-region raw directory under raw_paths: raw files not checked for residency");
    } else {
        rb.table(table("Raw files of the regions outside the policy", &["region", "files", "canary hits"], raw_rows));
        rb.note(
            "the raw scan finds values stored in plaintext; with encryption at rest the contract's answer is the \
             evidence",
        );
    }
    // A tagged write to a region outside the policy must be refused.
    let mut refused_rows = Vec::new();
    for &i in &denied {
        let p = &writers[i];
        let key = format!("{prefix}refused-{}", p.region);
        let r = p.put_tagged(&key, &canary("residency"), Some(tag)).await;
        let cell = match &r {
            Ok(_) => {
                problems.push(format!("a {tag} record was accepted by {}, outside the policy", p.region));
                "accepted".to_string()
            }
            Err(ProbeError::Status { status, message, .. }) if (400..500).contains(status) => {
                format!("refused {status}: {message}")
            }
            Err(e) => {
                problems.push(format!("a {tag} write to {} was not cleanly refused: {e}", p.region));
                format!("error: {e}")
            }
        };
        refused_rows.push(vec![p.region.clone(), cell]);
    }
    if !refused_rows.is_empty() {
        rb.table(table(&format!("Writes tagged {tag:?} outside the policy"), &["region", "answer"], refused_rows));
    }
    rb.metric("violations", problems.len() as f64);
    rb.measured(format!("{} violations", problems.len()));
    if !problems.is_empty() {
        return rb.finish(Verdict::Fail, list(&problems, 3));
    }
    rb.finish(
        Verdict::Pass,
        format!(
            "{tag} records stay in {} and are refused elsewhere",
            allowed.iter().map(|&i| ctx.probes[i].region.as_str()).collect::<Vec<_>>().join(", ")
        ),
    )
}

async fn erasure(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let mut rb = ResultBuilder::new(def, &ctx.config);
    let limit = Duration::from_secs_f64(ctx.config.targets.erasure_s.max(0.0));
    let writers = writer_probes(ctx);
    let Some(home) = writers.first() else {
        return rb.finish(Verdict::Error, "no region");
    };
    let key = format!("{}subject", ctx.prefix("erasure"));
    // Two versions, so that an old version in a log is covered too.
    let old = canary("erase-old");
    let new = canary("erase-new");
    for v in [&old, &new] {
        if let Err(e) = home.put(&key, v).await {
            return rb.error(&e);
        }
    }
    let waits = await_state(&ctx.probes, &key, Some(&new), REPLICATE_WAIT).await;
    if let Some(i) = waits.iter().position(Option::is_none) {
        rb.note(format!("the record did not reach {} before the erasure", ctx.probes[i].region));
    }
    let receipt = match home.erase(&key).await {
        Ok(r) => r,
        Err(ProbeError::Status { status: 404 | 405, .. }) => {
            return rb.finish(Verdict::Skipped, format!("{} has no POST /v1/erase route", home.region));
        }
        Err(e) => return rb.error(&e),
    };
    rb.note(format!("erased in {} (receipt version {:?})", receipt.region, receipt.version));
    let gone = await_state(&ctx.probes, &key, None, limit).await;
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut slowest = 0.0f64;
    for (p, g) in ctx.probes.iter().zip(&gone) {
        match g {
            Some(d) => {
                slowest = slowest.max(d.as_secs_f64());
                rows.push(vec![p.region.clone(), format!("{:.2}", d.as_secs_f64()), "ok".into()]);
            }
            None => {
                problems.push(format!("{} still serves the erased value after {:.0} s", p.region, limit.as_secs_f64()));
                rows.push(vec![p.region.clone(), format!("> {:.0}", limit.as_secs_f64()), "STILL READABLE".into()]);
            }
        }
    }
    rb.table(table("Time until the erased record is unreadable", &["region", "seconds", "verdict"], rows));
    rb.metric("unreadable_everywhere_s", slowest);
    let sec = &ctx.config.deployment.security;
    let mut hits = 0;
    if sec.raw_paths.is_empty() {
        rb.note("no raw_paths: the raw files were not checked for the erased bytes");
    } else {
        let needles = vec![old.clone().into_bytes(), new.clone().into_bytes()];
        let scan = scan_raw_async(sec.raw_paths.clone(), needles).await;
        hits = scan.hits.len();
        let files = show_paths(&scan.hits);
        rb.table(table(
            "Raw files still holding the erased bytes",
            &["file", "version"],
            scan.hits
                .iter()
                .map(|(p, i)| vec![p.display().to_string(), if *i == 0 { "old" } else { "latest" }.into()])
                .collect(),
        ));
        rb.note(format!("scanned {} raw files ({} bytes)", scan.files, scan.bytes));
        if !files.is_empty() {
            problems.push(format!("the erased bytes remain in {}", list(&files, 3)));
        }
    }
    rb.metric("raw_hits", hits as f64);
    rb.measured(format!("unreadable everywhere after {slowest:.2} s, {hits} raw hits"));
    if !problems.is_empty() {
        return rb.finish(Verdict::Fail, list(&problems, 3));
    }
    rb.finish(
        Verdict::Pass,
        format!("unreadable in every region after {slowest:.2} s (limit {:.0} s), no bytes left", limit.as_secs_f64()),
    )
}
