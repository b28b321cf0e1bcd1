//! Recovery figures from what clients saw: RTO, availability and RPO.
//!
//! The runner records every canary request (its intended send time, whether it succeeded, which region served it)
//! and every sequenced write of the RPO writer (when it was acknowledged, and which surviving region holds it).
//! These functions turn those records into figures; they never look at a clock.
//!
//! - **RTO** is measured with sliding windows of width `window_ms`, started every `step_ms`. A window is bad when it
//!   holds at least `min_samples` requests and its success rate is below the threshold. The recovery moment is
//!   the start of the first window after the last bad one: from then on, every window is good. RTO is that moment
//!   minus the fault, or zero when no window touching the fault period was bad.
//! - **Availability** is successful requests over all requests sent from the fault to the end of the observation.
//! - **RPO** is the time between the fault and the acknowledgement of the newest write such that every write
//!   acknowledged up to it is held: the start of the data-loss window. It is zero when nothing acknowledged
//!   before the fault is missing.

use std::collections::{BTreeMap, BTreeSet};

/// One request as a client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Intended send time, in ms since the scenario started (open model: the schedule, not the actual send).
    pub t_ms: f64,
    /// Whether the service answered successfully.
    pub ok: bool,
    /// From the intended send time to the answer (or the failure), in ms.
    pub latency_ms: f64,
    /// The region that served it, when known.
    pub region: Option<String>,
}

/// How windows are formed and judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRule {
    /// Width of one window, in ms.
    pub window_ms: f64,
    /// Distance between the starts of two windows, in ms.
    pub step_ms: f64,
    /// A window is good at or above this success rate, in percent.
    pub threshold_pct: f64,
    /// Windows with fewer requests are not judged (too thin to say anything).
    pub min_samples: usize,
}

/// One window's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Start, in ms since the scenario started.
    pub start_ms: f64,
    /// Requests whose intended time falls in `[start, start + width)`.
    pub total: usize,
    /// Of them, the successful ones.
    pub ok: usize,
}

impl Window {
    /// Success rate in percent (100 for an empty window).
    pub fn success_pct(&self) -> f64 {
        if self.total == 0 { 100.0 } else { self.ok as f64 * 100.0 / self.total as f64 }
    }
}

/// Counts of every window starting at `from_ms`, `from_ms + step`, … whose end is at most `to_ms`.
/// `attempts` need not be sorted.
pub fn windows(attempts: &[Attempt], from_ms: f64, to_ms: f64, rule: &WindowRule) -> Vec<Window> {
    let mut times: Vec<(f64, bool)> = attempts.iter().map(|a| (a.t_ms, a.ok)).collect();
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    if !(rule.step_ms > 0.0 && rule.window_ms > 0.0) {
        return out;
    }
    let mut start = from_ms;
    // Two cursors over the sorted times: [lo, hi) is the current window.
    let (mut lo, mut hi, mut ok_prefix) = (0usize, 0usize, vec![0usize; times.len() + 1]);
    for (i, (_, ok)) in times.iter().enumerate() {
        ok_prefix[i + 1] = ok_prefix[i] + usize::from(*ok);
    }
    while start + rule.window_ms <= to_ms + 1e-9 {
        let end = start + rule.window_ms;
        while lo < times.len() && times[lo].0 < start {
            lo += 1;
        }
        hi = hi.max(lo);
        while hi < times.len() && times[hi].0 < end {
            hi += 1;
        }
        out.push(Window { start_ms: start, total: hi - lo, ok: ok_prefix[hi] - ok_prefix[lo] });
        start += rule.step_ms;
    }
    out
}

/// RTO and availability of one fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// Time from the fault to the recovery moment, in ms; `None` when the last judged window is still bad (not
    /// recovered by the end of the observation).
    pub rto_ms: Option<f64>,
    /// The recovery moment, in ms since the scenario started.
    pub recovered_at_ms: Option<f64>,
    /// Judged windows below the threshold.
    pub bad_windows: usize,
    /// Windows with enough requests to judge.
    pub judged_windows: usize,
    /// Windows too thin to judge.
    pub thin_windows: usize,
    /// Lowest success rate of a judged window, in percent.
    pub worst_window_pct: f64,
    /// Requests sent from the fault to the end.
    pub total: usize,
    /// Of them, the failed ones.
    pub failed: usize,
}

impl Recovery {
    /// Successful share of the requests from the fault to the end, in percent.
    pub fn availability_pct(&self) -> f64 {
        if self.total == 0 { 100.0 } else { (self.total - self.failed) as f64 * 100.0 / self.total as f64 }
    }
}

/// Judges recovery from a fault at `fault_ms`, observed until `end_ms`. Windows start from one window before the
/// fault, so failures right after the fault are seen by full windows.
pub fn recovery(attempts: &[Attempt], fault_ms: f64, end_ms: f64, rule: &WindowRule) -> Recovery {
    let first_start = fault_ms - rule.window_ms + rule.step_ms;
    let ws = windows(attempts, first_start, end_ms, rule);
    let judged: Vec<&Window> = ws.iter().filter(|w| w.total >= rule.min_samples).collect();
    let thin_windows = ws.len() - judged.len();
    let bad: Vec<&&Window> = judged.iter().filter(|w| w.success_pct() < rule.threshold_pct).collect();
    let worst_window_pct = judged.iter().map(|w| w.success_pct()).fold(100.0, f64::min);
    let (rto_ms, recovered_at_ms) = match bad.last() {
        None => (Some(0.0), Some(fault_ms)),
        Some(last_bad) => {
            let still_bad = judged.last().is_some_and(|w| w.start_ms == last_bad.start_ms);
            if still_bad {
                (None, None)
            } else {
                let at = last_bad.start_ms + rule.step_ms;
                (Some((at - fault_ms).max(0.0)), Some(at.max(fault_ms)))
            }
        }
    };
    let during: Vec<&Attempt> = attempts.iter().filter(|a| a.t_ms >= fault_ms && a.t_ms < end_ms).collect();
    Recovery {
        rto_ms,
        recovered_at_ms,
        bad_windows: bad.len(),
        judged_windows: judged.len(),
        thin_windows,
        worst_window_pct,
        total: during.len(),
        failed: during.iter().filter(|a| !a.ok).count(),
    }
}

/// A write of the RPO writer.
#[derive(Debug, Clone, PartialEq)]
pub struct SequencedWrite {
    /// Its place in the writer's sequence.
    pub seq: u64,
    /// When it was acknowledged, in ms since the scenario started; `None` if it never was.
    pub acked_ms: Option<f64>,
    /// Whether the failing region acknowledged it (or it is not known who did), rather than a region the client
    /// moved to after a promotion.
    pub by_failing: bool,
}

/// The RPO of one surviving region.
#[derive(Debug, Clone, PartialEq)]
pub struct Rpo {
    /// From the newest fully-held acknowledged write to the failure, in ms; 0 when nothing is missing.
    pub rpo_ms: f64,
    /// Writes acknowledged before the fault took effect.
    pub acked_before_fault: usize,
    /// Of them, the ones the region does not hold, in sequence order.
    pub missing: Vec<u64>,
}

/// When a fault was injected, in ms since the scenario started: from the start of the injection to its end (a
/// fault command that kills a process and promotes another takes a while; the kill lands somewhere in between).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultWindow {
    pub from_ms: f64,
    pub to_ms: f64,
}

/// RPO of a region that holds `held` (sequence numbers) after a fault injected during `fault`. Every write the
/// failing region acknowledged before the injection ended counts: it was at risk (the injection kills the region
/// somewhere inside it). A write acknowledged during the injection by another region, one the client followed the
/// writer to after a promotion, was never at risk. The failure is placed at the failing region's last
/// acknowledgement inside the injection, or at its start if there was none, so the RPO never includes the time the
/// injection itself took.
pub fn rpo(writes: &[SequencedWrite], held: &BTreeSet<u64>, fault: FaultWindow) -> Rpo {
    let at_risk = |w: &SequencedWrite, t: f64| t <= fault.from_ms || (t <= fault.to_ms && w.by_failing);
    let mut acked: Vec<(f64, u64)> =
        writes.iter().filter_map(|w| w.acked_ms.filter(|t| at_risk(w, *t)).map(|t| (t, w.seq))).collect();
    acked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let missing: Vec<u64> = {
        let mut m: Vec<u64> = acked.iter().filter(|(_, s)| !held.contains(s)).map(|(_, s)| *s).collect();
        m.sort_unstable();
        m
    };
    let failed_at = acked.last().map_or(fault.from_ms, |(t, _)| t.max(fault.from_ms));
    let rpo_ms = match acked.iter().position(|(_, s)| !held.contains(s)) {
        None => 0.0,
        // Every write acknowledged before the first missing one is held; the loss window starts at the last of
        // them (or at the first acknowledgement if even the first is missing).
        Some(0) => failed_at - acked[0].0,
        Some(i) => failed_at - acked[i - 1].0,
    };
    Rpo { rpo_ms: rpo_ms.max(0.0), acked_before_fault: acked.len(), missing }
}

/// Successful requests per region per window: the per-region traffic chart. Keys are region names (`?` when
/// unknown); values are `(window start, requests per second)`.
pub fn per_region_rate(
    attempts: &[Attempt],
    from_ms: f64,
    to_ms: f64,
    step_ms: f64,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    if step_ms <= 0.0 || to_ms <= from_ms {
        return out;
    }
    let n = ((to_ms - from_ms) / step_ms).ceil() as usize;
    let mut counts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for a in attempts.iter().filter(|a| a.ok && a.t_ms >= from_ms && a.t_ms < to_ms) {
        let i = (((a.t_ms - from_ms) / step_ms) as usize).min(n.saturating_sub(1));
        counts.entry(a.region.clone().unwrap_or_else(|| "?".into())).or_insert_with(|| vec![0; n])[i] += 1;
    }
    for (region, c) in counts {
        let points = c.iter().enumerate().map(|(i, k)| (from_ms + i as f64 * step_ms, *k as f64 * 1000.0 / step_ms));
        out.insert(region, points.collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(from_ms: f64, to_ms: f64, every_ms: f64, ok: impl Fn(f64) -> bool) -> Vec<Attempt> {
        let mut v = Vec::new();
        let mut t = from_ms;
        while t < to_ms {
            v.push(Attempt { t_ms: t, ok: ok(t), latency_ms: 1.0, region: Some("a".into()) });
            t += every_ms;
        }
        v
    }

    const RULE: WindowRule = WindowRule { window_ms: 1000.0, step_ms: 100.0, threshold_pct: 99.0, min_samples: 20 };

    /// Goal: an outage from 5.0 s to 7.0 s after a fault at 5.0 s gives an RTO of about 2 s (not 3 s: windows are
    /// judged from their start), and availability counts the failed share.
    #[test]
    fn outage_gives_rto_of_its_length() {
        let a = steady(0.0, 20_000.0, 10.0, |t| !(5000.0..7000.0).contains(&t));
        let r = recovery(&a, 5000.0, 20_000.0, &RULE);
        let rto = r.rto_ms.unwrap();
        assert!((1900.0..=2100.0).contains(&rto), "rto {rto}");
        assert_eq!(r.failed, 200);
        assert_eq!(r.total, 1500);
        assert!((r.availability_pct() - 86.67).abs() < 0.01);
        assert_eq!(r.worst_window_pct, 0.0);
    }

    /// Goal: no failure gives RTO 0; an outage lasting to the end gives no RTO; thin windows are not judged.
    #[test]
    fn no_outage_and_no_recovery() {
        let fine = steady(0.0, 10_000.0, 10.0, |_| true);
        assert_eq!(recovery(&fine, 3000.0, 10_000.0, &RULE).rto_ms, Some(0.0));
        let dead = steady(0.0, 10_000.0, 10.0, |t| t < 3000.0);
        let r = recovery(&dead, 3000.0, 10_000.0, &RULE);
        assert_eq!(r.rto_ms, None);
        assert_eq!(r.availability_pct(), 0.0);
        let thin = steady(0.0, 10_000.0, 100.0, |t| t < 3000.0);
        let r = recovery(&thin, 3000.0, 10_000.0, &RULE);
        assert_eq!(r.rto_ms, Some(0.0), "windows of 10 requests are too thin to judge");
        assert!(r.thin_windows > 0);
    }

    /// Goal: a single failure in 1000 stays above a 99% threshold; two bursts give the RTO of the later one.
    #[test]
    fn threshold_and_last_bad_window() {
        let a = steady(0.0, 20_000.0, 10.0, |t| t != 6000.0);
        assert_eq!(recovery(&a, 5000.0, 20_000.0, &RULE).rto_ms, Some(0.0));
        let b = steady(0.0, 20_000.0, 10.0, |t| !(5000.0..5500.0).contains(&t) && !(9000.0..9300.0).contains(&t));
        let rto = recovery(&b, 5000.0, 20_000.0, &RULE).rto_ms.unwrap();
        assert!((4200.0..=4400.0).contains(&rto), "rto {rto}");
    }

    /// Goal: RPO is the age at the fault of the last write before the first gap; writes after the fault and
    /// unacknowledged writes do not count.
    #[test]
    fn rpo_from_first_gap() {
        let at = |t: f64| FaultWindow { from_ms: t, to_ms: t };
        let writes: Vec<SequencedWrite> =
            (0..100).map(|i| SequencedWrite { seq: i, acked_ms: Some(i as f64 * 10.0), by_failing: true }).collect();
        let all: BTreeSet<u64> = (0..100).collect();
        assert_eq!(rpo(&writes, &all, at(500.0)), Rpo { rpo_ms: 0.0, acked_before_fault: 51, missing: vec![] });
        let prefix: BTreeSet<u64> = (0..45).collect();
        let r = rpo(&writes, &prefix, at(500.0));
        assert_eq!(r.missing, vec![45, 46, 47, 48, 49, 50]);
        assert!((r.rpo_ms - 60.0).abs() < 1e-9, "{}", r.rpo_ms);
        let mut gap = all.clone();
        gap.remove(&10);
        assert!((rpo(&writes, &gap, at(500.0)).rpo_ms - 410.0).abs() < 1e-9);
        let none = BTreeSet::new();
        assert!((rpo(&writes, &none, at(500.0)).rpo_ms - 500.0).abs() < 1e-9);
        let unacked = vec![SequencedWrite { seq: 0, acked_ms: None, by_failing: true }];
        assert_eq!(rpo(&unacked, &none, at(500.0)).acked_before_fault, 0);
    }

    /// Goal: a fault command that runs for a while (kill, then promote) still counts the writes the failing region
    /// acknowledged while it ran, and the RPO ends at the last of them, not at the command's end; writes the new
    /// writer acknowledged while it ran do not count. Method: writes
    /// every 10 ms; the command runs from 500 to 800 ms and the region acknowledged until 560 ms; 520..=560 missing.
    #[test]
    fn rpo_counts_writes_acknowledged_during_the_injection() {
        let writes: Vec<SequencedWrite> =
            (0..=56).map(|i| SequencedWrite { seq: i, acked_ms: Some(i as f64 * 10.0), by_failing: true }).collect();
        let held: BTreeSet<u64> = (0..52).collect();
        let r = rpo(&writes, &held, FaultWindow { from_ms: 500.0, to_ms: 800.0 });
        assert_eq!(r.missing, vec![52, 53, 54, 55, 56]);
        assert_eq!(r.acked_before_fault, 57);
        assert!((r.rpo_ms - 50.0).abs() < 1e-9, "from 510 (last held) to 560 (last acknowledged): {}", r.rpo_ms);
        // Writes the client moved to a promoted region acknowledged during the injection were never at risk.
        // They neither count as missing nor move the failure to their time.
        let mut moved = writes.clone();
        moved.extend((57..=76).map(|i| SequencedWrite {
            seq: i,
            acked_ms: Some(600.0 + (i - 57) as f64 * 10.0),
            by_failing: false,
        }));
        let r = rpo(&moved, &held, FaultWindow { from_ms: 500.0, to_ms: 800.0 });
        assert_eq!((r.acked_before_fault, r.missing.len()), (57, 5), "{r:?}");
        assert!((r.rpo_ms - 50.0).abs() < 1e-9, "{}", r.rpo_ms);
        // Nothing acknowledged during the injection: the failure is its start.
        let early: BTreeSet<u64> = (0..48).collect();
        let r = rpo(&writes[..50], &early, FaultWindow { from_ms: 500.0, to_ms: 800.0 });
        assert!((r.rpo_ms - 30.0).abs() < 1e-9, "{}", r.rpo_ms);
    }

    /// Goal: per-region rates count successful requests per step and scale to per second.
    #[test]
    fn per_region_rates() {
        let mut a = steady(0.0, 1000.0, 10.0, |_| true);
        a.push(Attempt { t_ms: 50.0, ok: true, latency_ms: 1.0, region: Some("b".into()) });
        a.push(Attempt { t_ms: 60.0, ok: false, latency_ms: 1.0, region: Some("b".into()) });
        let r = per_region_rate(&a, 0.0, 1000.0, 500.0);
        assert_eq!(r["a"], vec![(0.0, 100.0), (500.0, 100.0)]);
        assert_eq!(r["b"], vec![(0.0, 2.0), (500.0, 0.0)]);
    }
}
