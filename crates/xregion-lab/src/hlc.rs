//! A hybrid logical clock: the timestamps that order writes for last-writer-wins.
//!
//! Each issued timestamp is strictly greater than every timestamp issued or observed before, even when the wall
//! clock steps back; it stays close to the wall clock when the wall clock moves forward. The owner persists
//! `high_water()` with every commit and restores it with `Hlc::resume`, so a restart never reuses a timestamp.
//! The wall clock it reads is a `WallClock`, which the lab can skew per region (`clock_offset_ms`).

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A timestamp without the origin region: `(wall_ms, logical)`, ordered lexicographically.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// Milliseconds since the Unix epoch (physical part).
    pub wall_ms: u64,
    /// Orders stamps that share `wall_ms`.
    pub logical: u32,
}

/// The clock; owned by one task (the store's writer), so it needs no lock.
#[derive(Debug, Clone)]
pub struct Hlc {
    /// The largest stamp issued or observed; the next issued stamp is greater.
    last: Stamp,
}

impl Hlc {
    /// A clock that will only issue stamps greater than `high_water` (the persisted mark, or zero).
    pub fn resume(high_water: Stamp) -> Self {
        Hlc { last: high_water }
    }

    /// Issues a new stamp, given the current wall clock in milliseconds.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        self.last = if now_ms > self.last.wall_ms {
            Stamp { wall_ms: now_ms, logical: 0 }
        } else if self.last.logical == u32::MAX {
            // Out of logical room in this millisecond: borrow the next one (stays ahead of the wall clock).
            Stamp { wall_ms: self.last.wall_ms + 1, logical: 0 }
        } else {
            Stamp { wall_ms: self.last.wall_ms, logical: self.last.logical + 1 }
        };
        self.last
    }

    /// Advances past a stamp received from another region, so later local stamps order after it.
    pub fn observe(&mut self, remote: Stamp) {
        if remote > self.last {
            self.last = remote;
        }
    }

    /// The largest stamp issued or observed: what to persist.
    pub fn high_water(&self) -> Stamp {
        self.last
    }
}

/// The wall clock in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn wall_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall clock a region's HLC reads: the system's, shifted by the `clock_offset_ms` defect (0 unless the lab
/// is told to skew the region). Clones share the offset, so the store's handle sets what its writer thread reads.
#[derive(Debug, Clone, Default)]
pub struct WallClock {
    /// Milliseconds added to the system's wall clock; negative runs it behind.
    offset_ms: Arc<AtomicI64>,
}

impl WallClock {
    /// Shifts every later reading by `offset_ms` (0: the system's clock again).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// Now, in milliseconds since the Unix epoch, as this clock reads it.
    pub fn read_ms(&self) -> u64 {
        offset_ms(wall_now_ms(), self.offset_ms.load(Ordering::Relaxed))
    }
}

/// `now_ms` as a clock `offset_ms` off reads it, saturating at both ends.
fn offset_ms(now_ms: u64, offset_ms: i64) -> u64 {
    now_ms.saturating_add_signed(offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a clock ahead stamps later and one behind earlier, and an offset never wraps around.
    #[test]
    fn offset_clock_reads_ahead_and_behind() {
        assert_eq!(offset_ms(10_000, 400), 10_400);
        assert_eq!(offset_ms(10_000, -400), 9_600);
        assert_eq!(offset_ms(100, -400), 0);
        assert_eq!(offset_ms(u64::MAX - 1, 400), u64::MAX);
        // Behind, the clock still never issues a stamp below what it has seen.
        let mut h = Hlc::resume(Stamp::default());
        let seen = Stamp { wall_ms: 10_000, logical: 0 };
        h.observe(seen);
        assert!(h.tick(offset_ms(10_001, -400)) > seen);
        // A clone reads the offset its original was given.
        let clock = WallClock::default();
        let writer_side = clock.clone();
        clock.set_offset_ms(3_600_000);
        assert!(writer_side.read_ms() >= wall_now_ms() + 3_599_000);
    }

    /// Goal: stamps strictly increase even when the wall clock steps back or stands still.
    #[test]
    fn monotonic_when_wall_clock_goes_back() {
        let mut h = Hlc::resume(Stamp::default());
        let a = h.tick(1_000);
        let b = h.tick(1_000);
        let c = h.tick(900); // the wall clock stepped back 100 ms
        let d = h.tick(500);
        let e = h.tick(1_001);
        assert!(a < b && b < c && c < d && d < e, "{a:?} {b:?} {c:?} {d:?} {e:?}");
        assert_eq!(a, Stamp { wall_ms: 1_000, logical: 0 });
        assert_eq!(d, Stamp { wall_ms: 1_000, logical: 3 });
        assert_eq!(e, Stamp { wall_ms: 1_001, logical: 0 });
    }

    /// Goal: after observing a remote stamp from the future, local stamps order after it.
    #[test]
    fn observe_advances_past_remote() {
        let mut h = Hlc::resume(Stamp::default());
        h.tick(1_000);
        let remote = Stamp { wall_ms: 5_000, logical: 7 };
        h.observe(remote);
        let next = h.tick(1_001);
        assert!(next > remote);
        // An older remote stamp does not move the clock back.
        h.observe(Stamp { wall_ms: 10, logical: 0 });
        assert!(h.tick(1_002) > next);
    }

    /// Goal: a clock resumed from a persisted high-water mark never reissues a stamp.
    #[test]
    fn resume_never_reuses() {
        let mut h = Hlc::resume(Stamp::default());
        let issued: Vec<Stamp> = (0..5).map(|_| h.tick(2_000)).collect();
        let mut h2 = Hlc::resume(h.high_water());
        let after = h2.tick(1_500);
        assert!(issued.iter().all(|s| *s < after));
    }

    /// Goal: logical overflow moves to the next millisecond instead of wrapping.
    #[test]
    fn logical_overflow_borrows_next_ms() {
        let mut h = Hlc::resume(Stamp { wall_ms: 7, logical: u32::MAX });
        assert_eq!(h.tick(7), Stamp { wall_ms: 8, logical: 0 });
    }
}
