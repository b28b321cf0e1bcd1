//! Convergence: scan every region until they agree on every key under a prefix, bounded in time.

use crate::probe::{Probe, ProbeError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use xregion_check::consistency;
use xregion_model::history::Event;
use xregion_model::wire::Record;

/// Interval between convergence scans.
const SCAN_INTERVAL: Duration = Duration::from_millis(50);

/// Final states of every region for keys under a prefix: region → key → record.
pub type States = BTreeMap<String, BTreeMap<String, Record>>;

/// Scans every region until they agree on every key under `prefix`, or `timeout` passes. A region that answers
/// with an error is scanned again until then; an unreachable one ends the wait at once.
/// Returns the last states read and how long after the call they first agreed (`None` if they never did).
pub async fn await_convergence(
    probes: &[Probe],
    prefix: &str,
    timeout: Duration,
) -> Result<(States, Option<Duration>), ProbeError> {
    let start = Instant::now();
    loop {
        let scans = futures::future::join_all(probes.iter().map(|p| p.scan(prefix))).await;
        let mut states = States::new();
        let mut refused = None;
        for (p, s) in probes.iter().zip(scans) {
            match s {
                Ok(records) => {
                    states.insert(p.region.clone(), records.into_iter().map(|r| (r.key.clone(), r)).collect());
                }
                // A region that cannot be reached at all is reported at once.
                Err(e @ ProbeError::Unreachable { .. }) => return Err(e),
                // One that answers but refuses for now (a database rejoining its cluster after a fault) is read
                // again until the time is up.
                Err(e) => refused = Some(e),
            }
        }
        if let Some(e) = refused {
            if start.elapsed() >= timeout {
                return Err(e);
            }
            tokio::time::sleep(SCAN_INTERVAL).await;
            continue;
        }
        if consistency::check_convergence(&states).is_ok_and(|c| c.passed()) {
            return Ok((states, Some(start.elapsed())));
        }
        if start.elapsed() >= timeout {
            return Ok((states, None));
        }
        tokio::time::sleep(SCAN_INTERVAL).await;
    }
}

/// The final states as the checkers judge them. Where a region's store keeps no tombstones (etcd), a key absent
/// there that the history deleted stands for the latest such delete (`consistency::absent_as_latest_delete`).
pub fn as_judged(probes: &[Probe], history: &[Event], mut states: States) -> States {
    if probes.iter().any(|p| !p.capabilities().tombstones) {
        // A malformed history is reported by the checkers themselves, which read the same history.
        let _ = consistency::absent_as_latest_delete(history, &mut states);
    }
    states
}

/// How the regions' store orders concurrent writes, for the last-write-wins checker's note.
pub fn store_order(probes: &[Probe]) -> &'static str {
    probes.first().map_or("the deployment's versions", |p| p.capabilities().order)
}
