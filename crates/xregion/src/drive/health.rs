//! Health: every region's health answer at once (the preflight), and the bounded wait until every region says
//! `ok`.

use crate::probe::Probe;
use std::time::{Duration, Instant};

/// Interval between two health rounds while waiting.
const HEALTH_POLL: Duration = Duration::from_millis(200);

/// Checks every region's health concurrently; returns the problems, each naming the region and endpoint.
/// A region known only by its application API has no health answer to check.
pub async fn problems(probes: &[Probe]) -> Vec<String> {
    let checked = probes.iter().filter(|p| p.capabilities().keys);
    let results = futures::future::join_all(checked.map(|p| async move { (p, p.health().await) })).await;
    let mut problems = Vec::new();
    for (p, r) in results {
        match r {
            Ok(h) if h.status == "ok" => {}
            Ok(h) => problems.push(format!("region {} at {} reports health \"{}\"", p.region, p.endpoint, h.status)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems
}

/// Waits until every region answers its health check with `ok`, for at most `limit`; returns how long that took,
/// or the last round's problems.
pub async fn await_all_healthy(probes: &[Probe], limit: Duration) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    loop {
        let problems = problems(probes).await;
        if problems.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(problems);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}
