//! TLS on every endpoint (regions, routing records, the CDN): which versions are negotiated and refused, and
//! whether each certificate verifies to the CA for its name with enough days left.

use super::{TLS_TIMEOUT, judge, table};
use crate::check::{Ctx, ResultBuilder};
use crate::tls_scan::{Handshake, TlsVersion};
use std::net::SocketAddr;
use xregion_model::report::{CheckResult, Verdict};

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

pub(super) async fn tls_certificates(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
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
