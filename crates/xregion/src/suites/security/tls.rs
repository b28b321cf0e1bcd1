//! TLS on every endpoint (regions, routing records, the CDN): which versions are negotiated and refused, and
//! whether each certificate verifies to the CA for its name with enough days left.

use super::{TLS_TIMEOUT, table};
use crate::check::{Ctx, PerRegion, ResultBuilder};
use crate::tls_scan::{Handshake, TlsVersion};
use std::net::SocketAddr;
use xregion_model::report::{CheckResult, Verdict};

/// An endpoint to scan: what to call it, its row in the per-region verdicts, and its URL.
struct Endpoint {
    /// `region us-east-1`, `router latency`, `CDN`.
    label: String,
    /// The region's name, or the label of a routing record or the CDN.
    row: String,
    /// Its base URL.
    url: String,
}

/// Every endpoint clients reach: each region, each routing record, the CDN.
fn endpoints(ctx: &Ctx) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = ctx
        .probes
        .iter()
        .map(|p| Endpoint { label: format!("region {}", p.region), row: p.region.clone(), url: p.endpoint.clone() })
        .collect();
    if let Some(t) = &ctx.traffic {
        for (name, url) in &t.records {
            let label = format!("router {name}");
            out.push(Endpoint { row: label.clone(), label, url: url.clone() });
        }
        if let Some(cdn) = &t.cdn {
            out.push(Endpoint { label: "CDN".into(), row: "CDN".into(), url: cdn.clone() });
        }
    }
    out
}

/// Scheme, host (brackets removed) and socket address of a URL.
async fn resolve(url: &str) -> Result<(bool, String, SocketAddr), String> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(format!("{url} is not an http(s) URL; check the endpoint in the config")),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[1..end + 1];
        let port = authority[end + 2..].strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port);
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => {
                (h.to_string(), p.parse().map_err(|_| format!("{url} has a bad port; check the endpoint"))?)
            }
            None => (authority.to_string(), default_port),
        }
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host} of {url} ({e}); check the host name in the endpoint and the DNS"))?
        .next()
        .ok_or_else(|| format!("{host} of {url} resolves to no address; check the host name in the endpoint"))?;
    Ok((https, host, addr))
}

pub(super) async fn tls_versions(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
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
    let mut per = PerRegion::new();
    let mut rows = Vec::new();
    let mut legacy_accepted = 0u32;
    for (e, addr, scan) in scans {
        let addr_s = addr.map_or("-".into(), |a| a.to_string());
        match scan {
            Err(why) => {
                per.error(&e.row, why);
            }
            Ok(None) => {
                per.fail(&e.row, format!("no TLS: {} is plain http", e.url));
                rows.push(vec![e.label.clone(), addr_s, "plain http".into(), "-".into(), "-".into(), "-".into()]);
            }
            Ok(Some(by_version)) => {
                let mut row = vec![e.label.clone(), addr_s];
                let mut ok = true;
                for (v, r) in by_version {
                    let cell = match &r {
                        Ok(Handshake::Accepted { cipher }) => format!("accepted ({cipher})"),
                        Ok(Handshake::Refused { how }) => format!("refused ({how})"),
                        Err(why) => format!("error: {why}"),
                    };
                    match (v, r) {
                        (TlsVersion::Tls13, Ok(Handshake::Refused { how })) => {
                            ok = false;
                            per.fail(&e.row, format!("TLS 1.3 refused ({how}); enable TLS 1.3"));
                        }
                        (TlsVersion::Tls13, Ok(Handshake::Accepted { .. })) => {}
                        (_, Ok(Handshake::Accepted { .. })) => {
                            ok = false;
                            legacy_accepted += 1;
                            per.fail(&e.row, format!("{} accepted; allow TLS 1.3 only", v.name()));
                        }
                        (_, Ok(Handshake::Refused { .. })) => {}
                        (_, Err(why)) => {
                            ok = false;
                            per.error(&e.row, format!("{} could not be probed: {why}", v.name()));
                        }
                    }
                    row.push(cell);
                }
                if ok {
                    per.pass(&e.row, "TLS 1.3 accepted; 1.2, 1.1 and 1.0 refused");
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
    let plural = if legacy_accepted == 1 { "" } else { "s" };
    rb.measured(format!("{legacy_accepted} legacy version{plural} accepted on {} endpoints", eps.len()));
    per.finish(rb, format!("TLS 1.3 only on all {} endpoints", eps.len()))
}

/// The CA file certificates are verified against: `[deployment.tls] ca_file` (or `XREGION_CA_FILE`), else
/// `SSL_CERT_FILE`, the variable OpenSSL and rustls' native roots honour.
fn ca_file(ctx: &Ctx) -> Option<std::path::PathBuf> {
    ctx.config
        .deployment
        .tls
        .ca_file
        .clone()
        .or_else(|| std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()).map(std::path::PathBuf::from))
}

pub(super) async fn tls_certificates(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let Some(ca_file) = ca_file(ctx) else {
        return rb.finish(
            Verdict::Skipped,
            "no CA to verify against: set [deployment.tls] ca_file, XREGION_CA_FILE or SSL_CERT_FILE",
        );
    };
    let ca_pem = match std::fs::read(&ca_file) {
        Ok(p) => p,
        Err(e) => {
            return rb.finish(
                Verdict::Error,
                format!("cannot read the CA file {} ({e}); check ca_file or XREGION_CA_FILE", ca_file.display()),
            );
        }
    };
    let min_days = ctx.config.targets.cert_days_min;
    let eps = endpoints(ctx);
    let (ca, ca_path) = (&ca_pem, ca_file.as_path());
    let reports = futures::future::join_all(eps.iter().map(|e| async move {
        let r = match resolve(&e.url).await {
            Ok((false, _, _)) => Ok(None),
            Ok((true, host, addr)) => {
                crate::tls_scan::check_certificate(addr, &host, ca, Some(ca_path), TLS_TIMEOUT).await.map(Some)
            }
            Err(why) => Err(why),
        };
        (e, r)
    }))
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut per = PerRegion::new();
    let mut rows = Vec::new();
    let mut least: Option<(f64, i64)> = None;
    for (e, r) in reports {
        match r {
            Ok(None) => {
                let why = format!("no certificate: {} is plain http", e.url);
                rows.push(vec![e.label.clone(), "-".into(), "-".into(), "-".into(), why.clone()]);
                per.fail(&e.row, why);
            }
            Err(why) => {
                per.error(&e.row, why);
            }
            Ok(Some(c)) => {
                if least.is_none_or(|(d, _)| c.days_left < d) {
                    least = Some((c.days_left, c.not_after));
                }
                let status = if let Some(p) = &c.problem {
                    per.fail(&e.row, p.clone());
                    p.clone()
                } else if c.days_left < min_days {
                    let p = format!(
                        "certificate {}, fewer than the {min_days} days required; renew it",
                        crate::net::expiry(c.not_after, now)
                    );
                    per.fail(&e.row, p.clone());
                    p
                } else {
                    per.pass(&e.row, format!("certificate verifies; {}", crate::net::expiry(c.not_after, now)));
                    "ok".into()
                };
                rows.push(vec![e.label.clone(), c.subject, c.issuer, format!("{:.1}", c.days_left), status]);
            }
        }
    }
    rb.table(table("Certificates by endpoint", &["endpoint", "subject", "issuer", "days left", "status"], rows));
    let least_s = match least {
        Some((days, not_after)) => {
            rb.metric("days_left_min", days);
            let soonest = crate::net::expiry(not_after, now);
            rb.measured(soonest.split(" (").next().unwrap_or(&soonest).to_string());
            format!("the soonest {soonest}")
        }
        None => String::new(),
    };
    rb.note(format!("verified against {} at the current time, by the endpoint's address or name", ca_file.display()));
    per.finish(rb, format!("{} certificates verify; {least_s}", eps.len()))
}
