//! The security suite: TLS versions and certificates on every endpoint, access control (tokens, scopes, mutual
//! TLS on replication), encryption at rest, the audit trail, data residency and erasure, each proven by behaviour:
//! xregion writes canary data, then shows where it went, who was recorded, and that it is gone.
//!
//! Raw-file evidence (encryption at rest, residency, erasure) comes from scanning `[deployment.security]
//! raw_paths` (the lab fills in its directory) for the canary values' bytes, streaming every regular file up to
//! `RAW_FILE_BYTES_MAX`.
//!
//! One module per area: `tls` (versions and certificates), `access` (tokens, scopes, replication mTLS), `at_rest`
//! (the raw-file scan and encryption at rest), `audit`, and `data` (residency and erasure). The compliance
//! frameworks that judge these checks are in `suites::compliance`.
//!
//! The checks that measure endpoints one by one (TLS versions and certificates, access control, the audit trail)
//! judge each region on its own (`check::PerRegion`): one region whose certificate cannot be verified is an
//! `error` row naming it and the cause, and the faults of the other regions are still found. They run even when
//! the preflight could not reach every region (`Needs::usable` is false).

mod access;
mod at_rest;
mod audit;
mod data;
mod tls;

use crate::check::{CheckDef, Ctx, Needs};
use crate::measure;
use crate::net::Role;
use crate::probe::Probe;
use access::access_control;
use at_rest::encryption_at_rest;
use audit::audit_trail;
use data::{data_residency, erasure};
use std::time::{Duration, Instant};
use tls::{tls_certificates, tls_versions};
use xregion_model::report::Table;

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
        needs: Needs { usable: false, ..Needs::NONE },
        run: measure!(tls_versions),
    },
    CheckDef {
        id: "security.tls.certificates",
        title: "Every endpoint's certificate verifies to the CA for its address and is far from expiry",
        target: |c| format!("chain to the CA, name matches, ≥ {} days left", c.targets.cert_days_min),
        needs: Needs { usable: false, ..Needs::NONE },
        run: measure!(tls_certificates),
    },
    CheckDef {
        id: "security.access-control",
        title: "No token gets 401, a wrong scope 403, and replication refuses a peer without a client certificate",
        target: |_| "401 without a token, 403 for a wrong scope, mTLS on replication".into(),
        needs: Needs { usable: false, ..Needs::NONE },
        run: measure!(access_control),
    },
    CheckDef {
        id: "security.encryption-at-rest",
        title: "No stored value appears in plaintext in the deployment's raw files",
        target: |_| "0 canary values found in the raw files".into(),
        needs: Needs::NONE,
        run: measure!(encryption_at_rest),
    },
    CheckDef {
        id: "security.audit-trail",
        title: "Every write appears in the region's audit log with principal, action, key and time",
        target: |_| "every write of the check audited".into(),
        needs: Needs { usable: false, ..Needs::NONE },
        run: measure!(audit_trail),
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
        needs: Needs::NONE,
        run: measure!(data_residency),
    },
    CheckDef {
        id: "security.erasure",
        title: "An erased record is unreadable in every region in time and its bytes are gone from every raw file",
        target: |c| format!("unreadable everywhere within {} s, 0 bytes left in raw files", c.targets.erasure_s),
        needs: Needs::NONE,
        run: measure!(erasure),
    },
];

pub(super) fn table(title: &str, columns: &[&str], rows: Vec<Vec<String>>) -> Table {
    Table { title: title.into(), columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

/// Up to `n` items joined, with "and N more".
pub(super) fn list(items: &[String], n: usize) -> String {
    if items.len() <= n { items.join("; ") } else { format!("{}; and {} more", items[..n].join("; "), items.len() - n) }
}

/// The canary value of `key` (`tag` tells values of one key apart): 128 random bits no file could hold by chance,
/// drawn from the run's seeded family, so that a replayed seed writes the same values.
pub(super) fn canary(ctx: &Ctx, key: &str, tag: &str) -> String {
    use rand::Rng;
    let bits: u128 = crate::drive::seed::rng(ctx.seed, &format!("canary/{key}/{tag}")).random();
    format!("xrcanary-{tag}-{bits:032x}")
}

/// Waits until every probe serves `key` with `value` (or `None`: serves nothing); returns each region's wait,
/// `None` for those that never did within `limit`.
pub(super) async fn await_state(
    probes: &[Probe],
    key: &str,
    value: Option<&str>,
    limit: Duration,
) -> Vec<Option<Duration>> {
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
pub(super) fn writer_probes(ctx: &Ctx) -> Vec<Probe> {
    let c = role_client(ctx, Role::Write);
    ctx.probes.iter().map(|p| p.with_client(c.clone())).collect()
}

/// A client sending `role`'s token (or none), with the deployment's TLS and timeouts.
pub(super) fn role_client(ctx: &Ctx, role: Role) -> reqwest::Client {
    crate::net::client_builder(&ctx.config.deployment, role)
        .connect_timeout(Duration::from_millis(ctx.config.deployment.connect_timeout_ms))
        .timeout(Duration::from_millis(ctx.config.deployment.request_timeout_ms))
        .build()
        .unwrap_or_default()
}
