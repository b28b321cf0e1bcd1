//! The catalogue: every suite and every check, in run order. It is the dispatch: the runner iterates over it and
//! calls each definition's function.

use crate::check::CheckDef;

/// A suite: its name and what it covers.
#[derive(Debug, Clone, Copy)]
pub struct SuiteDef {
    /// Name used with `--suite`.
    pub name: &'static str,
    /// What the suite proves.
    pub about: &'static str,
}

/// The suites, in listing order.
pub const SUITES: &[SuiteDef] = &[
    SuiteDef { name: "cross-region", about: "replication, convergence and conflict resolution across regions" },
    SuiteDef { name: "performance", about: "load, latency and CDN figures under concurrent users" },
    SuiteDef { name: "disaster-recovery", about: "region failure, RTO and RPO" },
    SuiteDef { name: "security", about: "TLS, access control, encryption, audit, residency and erasure" },
];

/// Every check, in run order.
pub fn catalogue() -> Vec<CheckDef> {
    use crate::suites::{compliance, cross_region, e2e, failover, latency, performance, routing, security};
    [
        cross_region::CHECKS,
        routing::CHECKS,
        e2e::CHECKS,
        failover::CHECKS,
        performance::CHECKS,
        latency::CHECKS,
        failover::DR_CHECKS,
        security::CHECKS,
        compliance::CHECKS,
    ]
    .concat()
}

/// The checks that `--suite` and `--check` select, in run order; an unknown suite or an empty selection is an
/// error that says what exists.
pub fn select(suites: &[String], checks: &[String]) -> Result<Vec<CheckDef>, String> {
    for s in suites {
        if !SUITES.iter().any(|d| d.name == s) {
            let known: Vec<_> = SUITES.iter().map(|d| d.name).collect();
            return Err(format!("unknown suite {s:?}; known suites: {}", known.join(", ")));
        }
    }
    let selected: Vec<CheckDef> = catalogue()
        .into_iter()
        .filter(|c| suites.is_empty() || suites.iter().any(|s| s == c.suite()))
        .filter(|c| checks.is_empty() || checks.iter().any(|p| c.id.starts_with(p.as_str())))
        .collect();
    if selected.is_empty() {
        return Err("no check matches the selection; `xregion list` shows them".into());
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every id is unique, well formed (`suite.area.name`), and names a suite that exists.
    #[test]
    fn ids_are_unique_and_name_known_suites() {
        let all = catalogue();
        let mut ids: Vec<_> = all.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate check ids");
        for c in &all {
            assert!(c.id.split('.').count() >= 2, "{} is not suite.area.name", c.id);
            assert!(SUITES.iter().any(|s| s.name == c.suite()), "{} names no suite", c.id);
        }
        assert!(SUITES.iter().all(|s| all.iter().any(|c| c.suite() == s.name)), "a suite without checks");
    }

    /// Goal: selection by suite and by id prefix keeps run order and refuses what matches nothing.
    #[test]
    fn selection() {
        let dr = select(&["disaster-recovery".into()], &[]).unwrap();
        assert!(dr.iter().all(|c| c.suite() == "disaster-recovery") && !dr.is_empty());
        let tls = select(&[], &["security.tls.".into()]).unwrap();
        assert_eq!(
            tls.iter().map(|c| c.id).collect::<Vec<_>>(),
            ["security.tls.versions", "security.tls.certificates"]
        );
        assert!(select(&["nope".into()], &[]).unwrap_err().contains("known suites"));
        assert!(select(&[], &["nope".into()]).is_err());
    }
}
