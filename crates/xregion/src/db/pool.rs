//! What a region client's connection pool did: how long each operation waited to get a connection, and whether the
//! connection was one the pool reused or one it had to open. The performance.database.pool check reads it after a
//! load, as the seed's "connection acquisition and efficiency".

use std::sync::Mutex;
use std::time::Duration;
use xregion_check::stats::LatencyRecorder;

/// Most connections one region client's pool holds (Postgres and MySQL alike).
pub const POOL_MAX: usize = 64;

/// Counts of one pool since it was last read.
#[derive(Default)]
struct Counts {
    /// Time to get a connection, each acquisition.
    acquire: LatencyRecorder,
    /// Acquisitions that got a newly opened connection.
    opened: u64,
}

/// A pool's meter: every acquisition records into it.
pub struct PoolMeter {
    /// What was recorded since the last `take`.
    counts: Mutex<Counts>,
    /// Most connections the pool holds.
    max_size: usize,
}

/// What a pool did between two reads of its meter.
#[derive(Debug, Clone)]
pub struct PoolReport {
    /// Time to get a connection, each acquisition.
    pub acquire: LatencyRecorder,
    /// Acquisitions that got a newly opened connection; the rest reused one.
    pub opened: u64,
    /// Most connections the pool holds.
    pub max_size: usize,
}

impl PoolReport {
    /// Acquisitions recorded.
    pub fn acquisitions(&self) -> u64 {
        self.acquire.count()
    }

    /// Share of acquisitions that reused an open connection, in percent (0 without acquisitions).
    pub fn reuse_pct(&self) -> f64 {
        let n = self.acquisitions();
        if n == 0 { 0.0 } else { 100.0 * n.saturating_sub(self.opened) as f64 / n as f64 }
    }
}

impl PoolMeter {
    /// A meter for a pool of at most `max_size` connections.
    pub fn new(max_size: usize) -> PoolMeter {
        PoolMeter { counts: Mutex::new(Counts::default()), max_size }
    }

    /// Records one acquisition that waited `waited` and got a newly `opened` connection or a reused one.
    pub fn record(&self, waited: Duration, opened: bool) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.acquire.record(waited);
        c.opened += u64::from(opened);
    }

    /// What was recorded since the last call, which starts the next period.
    pub fn take(&self) -> PoolReport {
        let c = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        PoolReport { acquire: c.acquire, opened: c.opened, max_size: self.max_size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the report counts acquisitions and opened connections of one period, its reuse share follows, and
    /// taking it starts a new period.
    #[test]
    fn reports_one_period_at_a_time() {
        let m = PoolMeter::new(8);
        m.record(Duration::from_millis(3), true);
        for _ in 0..3 {
            m.record(Duration::from_micros(20), false);
        }
        let r = m.take();
        assert_eq!((r.acquisitions(), r.opened, r.max_size), (4, 1, 8));
        assert_eq!(r.reuse_pct(), 75.0);
        assert!(r.acquire.max_ms() >= 2.9, "{}", r.acquire.max_ms());
        assert_eq!(m.take().acquisitions(), 0);
        assert_eq!(m.take().reuse_pct(), 0.0);
    }
}
