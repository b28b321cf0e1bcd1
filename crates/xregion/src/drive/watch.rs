//! The measuring side watches itself. A ticker asks the runtime to wake it every `TICK` and records how late it
//! woke (scheduler lag), and the process's CPU time is read at both ends of a check. A client that is starved of
//! CPU sends late and reads late, so the latencies it measures grow with its own lag, not the deployment's. The
//! runner attaches these figures to every measured check, and a check that failed while its measuring side was
//! overloaded becomes `error: measurement overloaded (…)`: the failure may be the client's, and a CI gate must not
//! flip on it. (The load checks' generator runs in its own process; its figures are its own.)

use super::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the ticker asks to be woken.
const TICK: Duration = Duration::from_millis(10);
/// Scheduler lag P99 at or above which the measuring side counts as overloaded, in ms.
pub const LAG_P99_MAX_MS: f64 = 20.0;
/// Largest single scheduler lag at or above which the measuring side counts as overloaded, in ms.
pub const LAG_MAX_MS: f64 = 150.0;

/// The ticker and what it saw.
pub struct SelfWatch {
    lags_us: Arc<Mutex<Vec<u32>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A point to measure from.
pub struct Mark {
    tick: usize,
    cpu_s: f64,
    at: Instant,
}

/// The measuring side's load over a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Ticks seen.
    pub ticks: usize,
    /// Scheduler lag P99, in ms.
    pub lag_p99_ms: f64,
    /// Largest scheduler lag, in ms.
    pub lag_max_ms: f64,
    /// The process's CPU use, in percent of one core.
    pub cpu_pct: f64,
}

impl Load {
    /// Why the measuring side was overloaded, if it was.
    pub fn overloaded(&self) -> Option<String> {
        (self.lag_p99_ms >= LAG_P99_MAX_MS || self.lag_max_ms >= LAG_MAX_MS).then(|| {
            format!(
                "scheduler lag P99 {:.1} ms, max {:.0} ms (limits {LAG_P99_MAX_MS} and {LAG_MAX_MS} ms), xregion \
                 at {:.0}% of a core",
                self.lag_p99_ms, self.lag_max_ms, self.cpu_pct
            )
        })
    }
}

/// CPU time (user + system) of this process so far, in seconds.
fn cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

impl SelfWatch {
    /// Starts the ticker on the current runtime.
    pub fn start() -> SelfWatch {
        let lags_us: Arc<Mutex<Vec<u32>>> = Arc::default();
        let out = lags_us.clone();
        let task = tokio::spawn(async move {
            let mut due = Instant::now() + TICK;
            loop {
                tokio::time::sleep_until(due.into()).await;
                let now = Instant::now();
                let late = now.saturating_duration_since(due).as_micros().min(u32::MAX as u128) as u32;
                lock(&out).push(late);
                due = now + TICK;
            }
        });
        SelfWatch { lags_us, task }
    }

    /// Now, to measure from.
    pub fn mark(&self) -> Mark {
        Mark { tick: lock(&self.lags_us).len(), cpu_s: cpu_s(), at: Instant::now() }
    }

    /// The load since `m`.
    pub fn since(&self, m: &Mark) -> Load {
        let mut lags: Vec<u32> = lock(&self.lags_us).get(m.tick..).map(<[u32]>::to_vec).unwrap_or_default();
        lags.sort_unstable();
        let at = |q: f64| {
            if lags.is_empty() {
                0.0
            } else {
                lags[((q * lags.len() as f64).ceil() as usize).clamp(1, lags.len()) - 1] as f64 / 1000.0
            }
        };
        let wall = m.at.elapsed().as_secs_f64();
        Load {
            ticks: lags.len(),
            lag_p99_ms: at(0.99),
            lag_max_ms: at(1.0),
            cpu_pct: if wall > 0.0 { 100.0 * (cpu_s() - m.cpu_s) / wall } else { 0.0 },
        }
    }
}

impl Drop for SelfWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a runtime blocked for 300 ms shows as a lag of about that much, and counts as overloaded; an idle
    /// one does not.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_shows_as_lag() {
        let w = SelfWatch::start();
        let m = w.mark();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = w.since(&m);
        assert!(idle.ticks >= 3, "{idle:?}");
        let m = w.mark();
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::thread::sleep(Duration::from_millis(300)); // blocks the only runtime thread
        tokio::time::sleep(Duration::from_millis(30)).await;
        let blocked = w.since(&m);
        assert!(blocked.lag_max_ms >= 250.0, "{blocked:?}");
        assert!(blocked.overloaded().is_some_and(|why| why.contains("scheduler lag")), "{blocked:?}");
    }
}
