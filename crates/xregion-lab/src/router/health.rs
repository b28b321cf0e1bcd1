//! Region health as the router sees it: active checks (`GET /healthz` every interval, with a timeout, over the
//! router's TLS client and without a token: the route is public), a
//! threshold state machine, and passive ejection when a connection to a region fails.
//!
//! A healthy region goes down after `failures` consecutive failed checks, or at once when a request cannot
//! connect to it or after `CONSECUTIVE_5XX_MAX` 5xx answers in a row (`Proxy::after_attempt`); a down region
//! comes back after `successes` consecutive passed checks. Under `router_never_fails_over` the router routes
//! as if every region were healthy, whatever this state says. A restarted region
//! comes back on the same address, so the checks pick it up again without any wiring.

use super::RegionState;
use crate::http_client;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The threshold state machine of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    /// Whether the region gets traffic.
    pub up: bool,
    /// Consecutive failed checks (reset by a pass).
    pub failures: u32,
    /// Consecutive passed checks (reset by a failure).
    pub successes: u32,
}

impl HealthState {
    /// A region starts up: the supervisor starts the router only once every region is ready.
    pub fn new() -> HealthState {
        HealthState { up: true, failures: 0, successes: 0 }
    }

    /// Records one check; returns the new state when it changed.
    pub fn observe(&mut self, passed: bool, failures_max: u32, successes_max: u32) -> Option<bool> {
        if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.up && self.successes >= successes_max {
                self.up = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= failures_max {
                self.up = false;
                return Some(false);
            }
        }
        None
    }

    /// Passive ejection: a connection failed, so the region is down now; it needs `successes` passed checks.
    pub fn eject(&mut self) -> bool {
        let was_up = self.up;
        self.up = false;
        self.successes = 0;
        was_up
    }
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState::new()
    }
}

/// Checks one region until `stop`; updates its state and logs every transition.
pub async fn check_loop(
    region: Arc<RegionState>,
    client: http_client::Client,
    interval: Duration,
    timeout: Duration,
    failures_max: u32,
    successes_max: u32,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A region cut off from clients fails its checks like one whose connections fail.
        let outcome = match region.unreachable() {
            Some(e) => Err(e),
            None => match client.request("GET", region.addr, "/healthz", None, timeout).await {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("http {status}: {}", String::from_utf8_lossy(&body))),
                Err(e) => Err(e.to_string()),
            },
        };
        region.checks.fetch_add(1, Ordering::Relaxed);
        let changed = {
            let mut h = region.health.lock().unwrap_or_else(|p| p.into_inner());
            let changed = h.observe(outcome.is_ok(), failures_max, successes_max);
            region.healthy.store(h.up, Ordering::Release);
            changed
        };
        if let Ok(mut last) = region.last_check.lock() {
            *last = match &outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => e.clone(),
            };
        }
        match changed {
            Some(true) => tracing::info!(region = %region.name, "region healthy again"),
            Some(false) => {
                tracing::warn!(region = %region.name, error = ?outcome.err(), "region marked down by health checks")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the thresholds: `failures` consecutive failures mark down, `successes` consecutive passes mark
    /// up, an interleaved result resets the other count, and ejection needs the full `successes` to recover.
    #[test]
    fn thresholds_and_ejection() {
        let mut h = HealthState::new();
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None, "a pass resets the failure count");
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), Some(false));
        assert!(!h.up);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None, "a failure resets the success count");
        assert_eq!((h.observe(true, 2, 3), h.observe(true, 2, 3), h.observe(true, 2, 3)), (None, None, Some(true)));
        assert!(h.up);
        assert!(h.eject());
        assert!(!h.eject(), "ejecting a down region is no transition");
        assert_eq!((h.observe(true, 2, 2), h.observe(true, 2, 2)), (None, Some(true)));
        // Thresholds of 1 flip on every result.
        let mut h = HealthState::new();
        assert_eq!((h.observe(false, 1, 1), h.observe(true, 1, 1)), (Some(false), Some(true)));
    }
}
