//! What `GET /v1/stats/store` reports, the lab's equivalent of connection-pool statistics: how long each request
//! waited to get the store, how long each group commit took, and how long each read used the store, in
//! HdrHistograms of microseconds with a fixed range (so fixed memory).

use hdrhistogram::Histogram;
use std::sync::Mutex;
use std::time::Duration;
use xregion_model::wire::LatencySummary;

/// Largest duration the timing histograms track, in microseconds (one hour); longer ones are clamped to it,
/// which keeps each histogram's memory fixed.
pub const TIMING_US_MAX: u64 = 3_600 * 1_000_000;

/// Significant digits of the timing histograms: a relative error below 0.1%.
const TIMING_SIGFIG: u8 = 3;

/// The timing histograms, in microseconds.
struct Timings {
    /// Waits to get the store, writes and reads.
    acquire_us: Histogram<u64>,
    /// Of which the writes' (the group-commit queue).
    write_acquire_us: Histogram<u64>,
    /// Of which the reads' (the start of a read transaction).
    read_acquire_us: Histogram<u64>,
    /// Group commits, fsync included.
    commit_us: Histogram<u64>,
    /// Reads' time in the store.
    read_us: Histogram<u64>,
}

impl Timings {
    fn new() -> Timings {
        // The bounds are constants that satisfy hdrhistogram's preconditions (low >= 1, high >= 2 * low,
        // sigfig <= 5), so construction cannot fail.
        let h = || {
            Histogram::new_with_bounds(1, TIMING_US_MAX, TIMING_SIGFIG).expect("constant histogram bounds are valid")
        };
        Timings { acquire_us: h(), write_acquire_us: h(), read_acquire_us: h(), commit_us: h(), read_us: h() }
    }
}

/// How long requests waited for the store and used it; shared by every `Store` handle and the writer thread.
///
/// One mutex guards the histograms: the writer takes it once per group commit and a read once when it ends,
/// each for a few hundred nanoseconds, so it stays off the critical path of the fsync.
pub struct StoreTimings {
    /// The histograms since the store opened or since the last reset.
    inner: Mutex<Timings>,
}

/// A duration in whole microseconds, clamped to the histograms' range.
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(TIMING_US_MAX)
}

impl StoreTimings {
    /// Empty histograms.
    pub fn new() -> StoreTimings {
        StoreTimings { inner: Mutex::new(Timings::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timings> {
        // A panic while recording cannot leave a histogram half-updated in a way that matters for statistics.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One group commit of `commit`, and the wait of each request in it (microseconds).
    pub(super) fn record_commit(&self, waits_us: &[u64], commit: Duration) {
        let mut t = self.lock();
        for w in waits_us {
            t.acquire_us.saturating_record(*w);
            t.write_acquire_us.saturating_record(*w);
        }
        t.commit_us.saturating_record(micros(commit));
    }

    /// One read that waited `acquire` to begin and then used the store for `read`.
    pub(super) fn record_read(&self, acquire: Duration, read: Duration) {
        let mut t = self.lock();
        t.acquire_us.saturating_record(micros(acquire));
        t.read_acquire_us.saturating_record(micros(acquire));
        t.read_us.saturating_record(micros(read));
    }

    /// The summaries in milliseconds; with `reset`, the histograms are emptied in the same critical section, so
    /// no sample is lost or counted twice between two resets.
    pub fn summaries(&self, reset: bool) -> Summaries {
        let mut t = self.lock();
        let out = Summaries {
            acquire: summary(&t.acquire_us),
            write_acquire: summary(&t.write_acquire_us),
            read_acquire: summary(&t.read_acquire_us),
            commit: summary(&t.commit_us),
            read: summary(&t.read_us),
        };
        if reset {
            let t = &mut *t;
            for h in
                [&mut t.acquire_us, &mut t.write_acquire_us, &mut t.read_acquire_us, &mut t.commit_us, &mut t.read_us]
            {
                h.reset();
            }
        }
        out
    }
}

/// What `GET /v1/stats/store` reports, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summaries {
    /// Every wait to get the store.
    pub acquire: LatencySummary,
    /// The writes' waits.
    pub write_acquire: LatencySummary,
    /// The reads' waits.
    pub read_acquire: LatencySummary,
    /// Group commits.
    pub commit: LatencySummary,
    /// Reads' time in the store.
    pub read: LatencySummary,
}

impl Default for StoreTimings {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram of microseconds as a summary in milliseconds (all zero when it is empty).
pub fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a summary is in milliseconds, its percentiles follow the samples within the histogram's 0.1%, an
    /// empty one is all zero, and `summaries(true)` answers before it resets. Method: 100 reads of 1..=100 ms.
    #[test]
    fn timings_summarize_in_ms_and_reset_after_answering() {
        let t = StoreTimings::new();
        assert_eq!(t.summaries(false).read, LatencySummary::default());
        for ms in 1..=100u64 {
            t.record_read(Duration::from_micros(10), Duration::from_millis(ms));
        }
        t.record_commit(&[5, 7], Duration::from_millis(2));
        let s = t.summaries(true);
        let (acquire, commit, read) = (s.acquire, s.commit, s.read);
        assert_eq!((acquire.count, commit.count, read.count), (102, 1, 100));
        assert_eq!((s.write_acquire.count, s.read_acquire.count), (2, 100), "waits by kind: {s:?}");
        assert!(s.write_acquire.max <= 0.008 && s.read_acquire.max >= 0.009, "{s:?}");
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(read.p50, 50.0) && near(read.p95, 95.0) && near(read.p99, 99.0), "{read:?}");
        assert!(near(read.max, 100.0) && near(commit.max, 2.0) && near(acquire.max, 0.010), "{read:?} {commit:?}");
        let s = t.summaries(false);
        let counts = [s.acquire, s.write_acquire, s.read_acquire, s.commit, s.read].map(|l| l.count);
        assert_eq!(counts, [0; 5], "reset after answering");
    }
}
