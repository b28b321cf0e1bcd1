//! Stop conditions (`[stop]`), the AWS FIS practice: while a fault is in force, a condition that holds ends the
//! observation at once, so the scenario restores the region (the user's restore command runs) and its checks are
//! `error: stopped by condition …` instead of a verdict taken on an aborted experiment.

use crate::check::Ctx;
use crate::config::Stop;
use crate::drive::lock;
use crate::net::Role;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xregion_check::recovery::Attempt;

/// How often the health URL is asked.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// Fewest canary requests in the window before the error-rate condition is taken: a rate from a handful of
/// requests would abort on noise.
const WINDOW_REQUESTS_MIN: usize = 20;

/// The stop conditions of one fault, watched from its injection until the observation ends.
pub(super) struct StopWatch {
    cfg: Stop,
    /// Why the health URL condition holds, once it does.
    tripped: Arc<Mutex<Option<String>>>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl StopWatch {
    /// Starts watching: the health URL poller runs in the background.
    pub(super) fn start(ctx: &Ctx) -> StopWatch {
        let cfg = ctx.config.stop.clone();
        let tripped: Arc<Mutex<Option<String>>> = Arc::default();
        let poller = cfg.health_url.clone().map(|url| {
            let client = crate::net::client_builder(&ctx.config.deployment, Role::Read)
                .connect_timeout(Duration::from_millis(ctx.config.deployment.connect_timeout_ms))
                .timeout(Duration::from_millis(ctx.config.deployment.request_timeout_ms))
                .build()
                .unwrap_or_default();
            let (tripped, failures_max) = (tripped.clone(), cfg.health_failures);
            tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    let failure = match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!("answered {}", r.status().as_u16())),
                        Err(e) => Some(crate::faults::root_cause(&e)),
                    };
                    match failure {
                        None => failures = 0,
                        Some(why) => {
                            failures += 1;
                            if failures >= failures_max {
                                *lock(&tripped) = Some(format!(
                                    "the health URL {url} failed {failures} times in a row (last: {why})"
                                ));
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(HEALTH_EVERY).await;
                }
            })
        });
        StopWatch { cfg, tripped, poller }
    }

    /// The condition that holds now, if one does. `canary` is every canary request so far, `fault_ms` the fault
    /// time and `judged_end` the time up to which every request has its outcome (all in ms since the start).
    pub(super) fn holds(&self, canary: &[Attempt], fault_ms: f64, judged_end: f64) -> Option<String> {
        if let Some(why) = lock(&self.tripped).clone() {
            return Some(why);
        }
        let max = self.cfg.error_rate_pct?;
        let window = self.cfg.error_rate_for_s * 1000.0;
        if judged_end - fault_ms < window {
            return None;
        }
        let from = judged_end - window;
        let (mut n, mut failed) = (0usize, 0usize);
        for a in canary.iter().filter(|a| a.t_ms > from && a.t_ms <= judged_end) {
            n += 1;
            failed += usize::from(!a.ok);
        }
        let rate = if n == 0 { 0.0 } else { 100.0 * failed as f64 / n as f64 };
        (n >= WINDOW_REQUESTS_MIN && rate > max).then(|| {
            format!(
                "the canaries' error rate was {rate:.1}% ({failed} of {n}) over the last {} s, above \
                 stop.error_rate_pct = {max}",
                self.cfg.error_rate_for_s
            )
        })
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(cfg: Stop) -> StopWatch {
        StopWatch { cfg, tripped: Arc::default(), poller: None }
    }

    fn attempts(from_ms: f64, n: usize, every_ms: f64, ok: impl Fn(usize) -> bool) -> Vec<Attempt> {
        (0..n)
            .map(|i| Attempt { t_ms: from_ms + i as f64 * every_ms, ok: ok(i), latency_ms: 1.0, region: None })
            .collect()
    }

    /// Goal: the error-rate condition holds only over a full window after the fault, with enough requests, and
    /// above the limit; the health poller's finding wins.
    #[test]
    fn error_rate_condition() {
        let cfg = Stop { error_rate_pct: Some(50.0), error_rate_for_s: 2.0, ..Stop::default() };
        let w = watch(cfg);
        // 100 requests over 2 s from a fault at 1000 ms, 60% failing; the window (1000, 3000] holds 99.
        let a = attempts(1000.0, 100, 20.0, |i| i % 5 < 2);
        assert_eq!(w.holds(&a, 1000.0, 2500.0), None, "window not full yet");
        let why = w.holds(&a, 1000.0, 3000.0).expect("60% > 50%");
        assert!(why.contains("60.6% (60 of 99)") && why.contains("stop.error_rate_pct = 50"), "{why}");
        let fine = attempts(1000.0, 100, 20.0, |i| i % 5 < 3);
        assert_eq!(w.holds(&fine, 1000.0, 3000.0), None, "40% is below 50%");
        let few = attempts(1000.0, 10, 200.0, |_| false);
        assert_eq!(w.holds(&few, 1000.0, 3000.0), None, "10 requests are too few to abort on");
        *lock(&w.tripped) = Some("the health URL failed".into());
        assert_eq!(w.holds(&fine, 1000.0, 3000.0).as_deref(), Some("the health URL failed"));
    }
}
