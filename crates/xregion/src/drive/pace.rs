//! The pacing loop: the open model (wrk2's), once for the whole crate.
//!
//! Operation `i` is due at `start + i / rate`, whatever happened to the ones before it, so a slow deployment
//! cannot slow the offered load down (no coordinated omission): callers measure latency from the due time.
//! Operations in flight are bounded; one that finds them all busy is reported to `skipped` instead of queued.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// When operations are due and how many may run.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Operations started per second.
    pub rate_per_s: f64,
    /// Most operations in flight.
    pub in_flight_max: usize,
    /// When operation 0 is due.
    pub start: Instant,
    /// Most operations started, whatever the time.
    pub count_max: u64,
    /// No operation is started at or after this.
    pub until: Option<Instant>,
}

impl Pace {
    /// `rate_per_s` from now, with up to `in_flight_max` in flight, until stopped.
    pub fn new(rate_per_s: f64, in_flight_max: usize) -> Pace {
        Pace { rate_per_s, in_flight_max, start: Instant::now(), count_max: u64::MAX, until: None }
    }

    /// Operation 0 is due at `start`.
    pub fn starting(self, start: Instant) -> Pace {
        Pace { start, ..self }
    }

    /// At most `count` operations.
    pub fn count(self, count: u64) -> Pace {
        Pace { count_max: count, ..self }
    }

    /// None started at or after `until`.
    pub fn until(self, until: Instant) -> Pace {
        Pace { until: Some(until), ..self }
    }

    /// When operation `i` is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate_per_s)
    }
}

/// Starts `op(i, due)` for each due operation until `stop` is cancelled or `pace` runs out; a due operation that
/// finds `in_flight_max` running calls `skipped(i, due)` instead. Returns once every started operation ended.
pub async fn open_model<F, Fut>(pace: Pace, stop: &CancellationToken, mut op: F, mut skipped: impl FnMut(u64, Instant))
where
    F: FnMut(u64, Instant) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(pace.in_flight_max));
    let mut running = tokio::task::JoinSet::new();
    for i in 0..pace.count_max {
        let due = pace.due(i);
        if pace.until.is_some_and(|u| due >= u) {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            skipped(i, due);
            continue;
        };
        let work = op(i, due);
        running.spawn(async move {
            work.await;
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Goal: the count bound, the deadline and the in-flight bound each stop or skip operations; method: a paused
    /// clock, so that the schedule is exact.
    #[tokio::test(start_paused = true)]
    async fn bounds_hold() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let s = started.clone();
        let pace = Pace::new(100.0, 8).count(5);
        open_model(
            pace,
            &CancellationToken::new(),
            move |i, _| {
                s.lock().unwrap().push(i);
                async {}
            },
            |_, _| {},
        )
        .await;
        assert_eq!(*started.lock().unwrap(), [0, 1, 2, 3, 4]);

        let n = Arc::new(Mutex::new(0u64));
        let c = n.clone();
        let pace = Pace::new(100.0, 8);
        let pace = pace.until(pace.start + Duration::from_millis(100));
        open_model(
            pace,
            &CancellationToken::new(),
            move |_, _| {
                *c.lock().unwrap() += 1;
                async {}
            },
            |_, _| {},
        )
        .await;
        assert_eq!(*n.lock().unwrap(), 10, "due at 0, 10, …, 90 ms");

        // Each operation takes 1 s at 100/s with 2 in flight: the rest of the first second is skipped.
        let skipped = Mutex::new(0u64);
        let pace = Pace::new(100.0, 2).count(10);
        open_model(
            pace,
            &CancellationToken::new(),
            |_, _| tokio::time::sleep(Duration::from_secs(1)),
            |_, _| *skipped.lock().unwrap() += 1,
        )
        .await;
        assert_eq!(*skipped.lock().unwrap(), 8);
    }
}
