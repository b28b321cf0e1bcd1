//! `check_lww_realtime`: whether last-write-wins kept real-time order, by the rules in the parent module's doc. No
//! acknowledged write may lose to a write that had ended, in real time, before it began, by more than a tolerance
//! (the store's stated clock resolution plus the measuring tolerance). Timestamp LWW on a skewed clock does exactly
//! that: a region whose clock runs ahead stamps its write later than a write that really came after it.
//!
//! Real time is the history's own `time_ns`, read from one monotonic clock in one process, so every invoke and
//! completion are comparable. An invoke is recorded before the request is sent and a completion after the answer
//! arrived, so the gap the history shows between one write's completion and another's invoke is never longer than
//! the gap between the two writes' effects: a measured gap can only hide a violation, never invent one.

use super::error::CheckError;
use super::model::{
    Counts, FinalStates, Held, KeyWrites, Write, WriteRef, acked_version, collect_writes, counts, keys_in_scope,
    validate_states,
};
use super::table::{bounded_table, show};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_model::history::Event;
use xregion_model::report::Table;

/// Fewest ordered writes (see `RealtimeCheck::ordered_writes`) a pass rests on. With one of three regions' clocks
/// skewed beyond the spacing of a chain of writes, at least two chains in three put a write of that region before
/// another region's, and each such chain shows the loss; 30 ordered writes (15 chains over three regions) leave
/// under one chance in ten million of seeing none. Below it, the check has not looked enough to pass.
pub const ORDERED_WRITES_MIN: u64 = 30;

/// An acknowledged write that lost to a write which had ended before it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealtimeViolation {
    /// The key.
    pub key: String,
    /// The acknowledged write that lost.
    pub lost: WriteRef,
    /// The acknowledged write every region holds.
    pub winner: WriteRef,
    /// How long after the winner's completion the lost write was invoked, in nanoseconds; above the tolerance.
    pub after_ns: u64,
}

impl RealtimeViolation {
    /// One sentence: which write lost, where, and how long after the winner ended it began.
    pub fn describe(&self) -> String {
        format!(
            "acknowledged write {} in region {} began {:.1} ms after the winning write {} (region {}) ended, yet lost",
            value_of(&self.lost),
            self.lost.region,
            self.after_ns as f64 / 1e6,
            value_of(&self.winner),
            self.winner.region
        )
    }
}

/// A write's value as the findings name it: quoted, or `delete`.
fn value_of(w: &WriteRef) -> String {
    w.value.as_ref().map_or_else(|| "delete".to_string(), |v| format!("{v:?}"))
}

/// Why no write of the history explains the record every region holds for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnexplainedKind {
    /// Every region lacks the key, although a write of it was acknowledged.
    Missing,
    /// The record is a write that certainly failed.
    FailedWrite,
    /// No write of the history has this value and version (a phantom, or an acknowledged version with another
    /// value).
    NoSuchWrite,
}

/// A key every region agrees on, holding what no acknowledged or unknown write explains: its winner cannot be
/// judged, and the record is wrong in itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnexplainedKey {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub kind: UnexplainedKind,
    /// What every region holds; `None` when the key is absent.
    pub held: Option<Held>,
}

/// Result of `check_lww_realtime`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RealtimeCheck {
    /// What was looked at.
    pub counts: Counts,
    /// A write lost only if it began more than this after the winner ended, in nanoseconds.
    pub tolerance_ns: u64,
    /// Keys every region holds the same acknowledged write of: the keys judged.
    pub keys_judged: u64,
    /// Keys every region holds a write of unknown outcome of: it may have taken effect at any time up to now, so
    /// no write is judged against it.
    pub keys_unknown_winner: u64,
    /// Keys the regions disagree on: not judged here (`check_convergence` names them).
    pub keys_divergent: u64,
    /// Acknowledged writes of judged keys that began more than the tolerance after an acknowledged write of the
    /// same key in another region ended: each was a chance to see real-time order broken, so this is the
    /// evidence a pass rests on.
    pub ordered_writes: u64,
    /// Acknowledged writes that lost to a write that had ended before they began; findings.
    pub violations: Vec<RealtimeViolation>,
    /// Keys whose agreed record no write explains; findings.
    pub unexplained: Vec<UnexplainedKey>,
}

impl RealtimeCheck {
    /// True when no acknowledged write lost to an earlier one and every agreed record is explained. Whether there
    /// was enough evidence (`ordered_writes`) is the caller's judgement.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.unexplained.is_empty()
    }

    /// True when at least `ORDERED_WRITES_MIN` writes were judged against an earlier one.
    pub fn enough_evidence(&self) -> bool {
        self.ordered_writes >= ORDERED_WRITES_MIN
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        self.counts.metrics(&mut m);
        m.insert("tolerance_ms".into(), self.tolerance_ns as f64 / 1e6);
        m.insert("keys_judged".into(), self.keys_judged as f64);
        m.insert("keys_unknown_winner".into(), self.keys_unknown_winner as f64);
        m.insert("divergent_keys".into(), self.keys_divergent as f64);
        m.insert("ordered_writes".into(), self.ordered_writes as f64);
        m.insert("lost_in_real_time".into(), self.violations.len() as f64);
        m.insert("unexplained_keys".into(), self.unexplained.len() as f64);
        let worst_ns = self.violations.iter().map(|v| v.after_ns).max().unwrap_or(0);
        m.insert("lost_after_ms_max".into(), worst_ns as f64 / 1e6);
        m
    }

    /// Every violation, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn violations_table(&self) -> Table {
        let rows = self
            .violations
            .iter()
            .map(|v| {
                vec![v.key.clone(), v.lost.to_string(), format!("{:.1}", v.after_ns as f64 / 1e6), v.winner.to_string()]
            })
            .collect();
        let columns =
            ["key", "lost acknowledged write", "began after the winner ended (ms)", "winning write"].map(String::from);
        bounded_table("Acknowledged writes lost to an earlier write", columns.to_vec(), rows)
    }

    /// Every unexplained key, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn unexplained_table(&self) -> Table {
        let rows = self
            .unexplained
            .iter()
            .map(|u| {
                let kind = match u.kind {
                    UnexplainedKind::Missing => "missing",
                    UnexplainedKind::FailedWrite => "failed write",
                    UnexplainedKind::NoSuchWrite => "no such write",
                };
                vec![kind.to_string(), u.key.clone(), show(u.held.as_ref())]
            })
            .collect();
        let columns = ["problem", "key", "every region holds"].map(String::from).to_vec();
        bounded_table("Records no write explains", columns, rows)
    }
}

/// When a write ended: its completion, or never (a write without one may still take effect).
fn ended_ns(w: &Write) -> u64 {
    w.completed_ns.unwrap_or(u64::MAX)
}

/// Judges every key of `history` and `final_states` for writes lost against real-time order, with `tolerance`
/// (clock resolution plus measuring tolerance); see the module doc and the parent module's rules.
pub fn check_lww_realtime(
    history: &[Event],
    final_states: &FinalStates,
    tolerance: Duration,
) -> Result<RealtimeCheck, CheckError> {
    validate_states(final_states)?;
    let writes = collect_writes(history)?;
    let keys = keys_in_scope(&writes, final_states);
    let tolerance_ns = u64::try_from(tolerance.as_nanos()).unwrap_or(u64::MAX);
    let mut out = RealtimeCheck { counts: counts(&writes, &keys, final_states), tolerance_ns, ..Default::default() };
    let empty = KeyWrites::default();
    for key in keys {
        let kw = writes.get(key).unwrap_or(&empty);
        let mut holdings = final_states.values().map(|state| state.get(key).map(Held::of));
        let held = holdings.next().flatten();
        if holdings.any(|h| h != held) {
            out.keys_divergent += 1;
            continue;
        }
        let unexplained = |kind| UnexplainedKey { key: key.clone(), kind, held: held.clone() };
        let Some(h) = &held else {
            // Absent everywhere: fine only if no write of the key was acknowledged.
            if !kw.acked.is_empty() {
                out.unexplained.push(unexplained(UnexplainedKind::Missing));
            }
            continue;
        };
        let winner = kw.acked.iter().find(|w| *acked_version(w) == h.version && w.value == h.value);
        let Some(winner) = winner else {
            if kw.unknown.iter().any(|w| w.matches(h)) {
                out.keys_unknown_winner += 1;
            } else if kw.failed.iter().any(|w| w.matches(h)) {
                out.unexplained.push(unexplained(UnexplainedKind::FailedWrite));
            } else {
                out.unexplained.push(unexplained(UnexplainedKind::NoSuchWrite));
            }
            continue;
        };
        out.keys_judged += 1;
        let winner_end_ns = ended_ns(winner);
        for w in &kw.acked {
            let after_other_region =
                |p: &Write| p.region != w.region && w.invoked_ns > ended_ns(p).saturating_add(tolerance_ns);
            if kw.acked.iter().any(after_other_region) {
                out.ordered_writes += 1;
            }
            if w.invoke_index == winner.invoke_index {
                continue;
            }
            let after_ns = w.invoked_ns.saturating_sub(winner_end_ns);
            if after_ns > tolerance_ns {
                out.violations.push(RealtimeViolation {
                    key: key.clone(),
                    lost: w.to_ref(),
                    winner: winner.to_ref(),
                    after_ns,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xregion_model::Version;
    use xregion_model::history::{EventType, OpFn};
    use xregion_model::wire::Record;

    /// The tolerance of these tests: 1 ms of clock resolution plus 1 ms of measuring tolerance.
    const TOLERANCE: Duration = Duration::from_millis(2);

    const REGIONS: [&str; 3] = ["a", "b", "c"];

    /// A write of `value` to key `k` in `region`: invoked at `start_us`, completed `outcome` at `end_us` (never,
    /// when `None`), and stamped `wall_ms` by the region.
    #[derive(Clone, Copy)]
    struct W {
        region: &'static str,
        value: &'static str,
        start_us: u64,
        end_us: Option<u64>,
        outcome: EventType,
        wall_ms: u64,
    }

    /// An acknowledged write.
    fn ack(region: &'static str, value: &'static str, start_us: u64, end_us: u64, wall_ms: u64) -> W {
        W { region, value, start_us, end_us: Some(end_us), outcome: EventType::Ok, wall_ms }
    }

    /// The same write with another outcome (`end_us` `None`: it never completed).
    fn with(w: W, outcome: EventType, end_us: Option<u64>) -> W {
        W { outcome, end_us, ..w }
    }

    fn version(w: &W) -> Version {
        Version { wall_ms: w.wall_ms, logical: 0, origin: w.region.to_string() }
    }

    /// The events of `writes`, each its own process, in time order as the recorder appends them.
    fn history(writes: &[W]) -> Vec<Event> {
        let mut events: Vec<Event> = Vec::new();
        for (p, w) in writes.iter().enumerate() {
            let event = |kind, time_us: u64| Event {
                index: 0,
                process: p as u32,
                kind,
                f: OpFn::Write,
                region: w.region.to_string(),
                key: "k".to_string(),
                value: Some(w.value.to_string()),
                version: (kind == EventType::Ok).then(|| version(w)),
                time_ns: time_us * 1_000,
                error: None,
            };
            events.push(event(EventType::Invoke, w.start_us));
            events.extend(w.end_us.map(|end_us| event(w.outcome, end_us)));
        }
        events.sort_by_key(|e| e.time_ns);
        for (i, e) in events.iter_mut().enumerate() {
            e.index = i as u64;
        }
        events
    }

    /// What each region holds for key `k`: the write of the same position in `held`, or nothing.
    fn holding(held: [Option<&W>; 3]) -> FinalStates {
        let record = |w: &W| Record {
            key: "k".to_string(),
            value: Some(w.value.to_string()),
            version: version(w),
            region: String::new(),
            residency: None,
        };
        REGIONS
            .iter()
            .zip(held)
            .map(|(r, w)| (r.to_string(), w.map(|w| ("k".to_string(), record(w))).into_iter().collect()))
            .collect()
    }

    /// Every region holds `w`.
    fn everywhere(w: &W) -> FinalStates {
        holding([Some(w), Some(w), Some(w)])
    }

    fn check(writes: &[W], states: &FinalStates) -> RealtimeCheck {
        check_lww_realtime(&history(writes), states, TOLERANCE).unwrap()
    }

    /// Goal: a chain whose last write wins passes, and every write that followed another region's counts as
    /// evidence. Method: a, then b 5 ms after a ended, then c; the clocks agree, so c has the highest stamp.
    #[test]
    fn the_last_write_of_a_chain_wins() {
        let chain = [ack("a", "1", 0, 3_000, 1), ack("b", "2", 8_000, 11_000, 9), ack("c", "3", 16_000, 19_000, 17)];
        let r = check(&chain, &everywhere(&chain[2]));
        assert!(r.passed(), "{r:?}");
        assert_eq!((r.keys_judged, r.ordered_writes, r.counts.acked_writes), (1, 2, 3));
        assert_eq!(r.metrics()["tolerance_ms"], 2.0);
    }

    /// Goal: the skewed-clock anomaly fails, naming each lost write and the gap. Method: a's clock runs 400 ms
    /// ahead, so its write outranks b's and c's, which began 5 and 13 ms after it ended.
    #[test]
    fn a_clock_ahead_loses_the_later_writes() {
        let chain = [ack("a", "1", 0, 3_000, 401), ack("b", "2", 8_000, 11_000, 9), ack("c", "3", 16_000, 19_000, 17)];
        let r = check(&chain, &everywhere(&chain[0]));
        assert!(!r.passed());
        let lost: Vec<(&str, u64)> = r.violations.iter().map(|v| (v.lost.region.as_str(), v.after_ns)).collect();
        assert_eq!(lost, [("b", 5_000_000), ("c", 13_000_000)]);
        assert!(r.violations.iter().all(|v| v.winner.region == "a"));
        assert_eq!(
            r.violations[0].describe(),
            "acknowledged write \"2\" in region b began 5.0 ms after the winning write \"1\" (region a) ended, yet lost"
        );
        assert_eq!(r.metrics()["lost_after_ms_max"], 13.0);
        assert_eq!(r.violations_table().rows.len(), 2);
    }

    /// Goal: a clock behind fails the same way. Method: b's clock runs 400 ms behind; its write, begun 5 ms after
    /// a's ended, loses to it.
    #[test]
    fn a_clock_behind_loses_its_own_later_write() {
        let chain = [ack("a", "1", 0, 3_000, 1_000), ack("b", "2", 8_000, 11_000, 608)];
        let r = check(&chain, &everywhere(&chain[0]));
        assert_eq!(r.violations.iter().map(|v| v.lost.region.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    /// Goal: writes that overlap in real time, or follow within the tolerance, may lose either way. Method: b
    /// begins before a ends, and c begins 1.5 ms after a ended (under 2 ms); both lose to a without a finding.
    #[test]
    fn overlapping_or_close_writes_may_lose() {
        let chain = [ack("a", "1", 0, 10_000, 20), ack("b", "2", 5_000, 12_000, 6), ack("c", "3", 11_500, 14_000, 12)];
        let r = check(&chain, &everywhere(&chain[0]));
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.ordered_writes, 0, "nothing began more than 2 ms after another region's write ended");
    }

    /// Goal: a write of unknown outcome is never counted as lost, nor is any write judged against it. Method: b
    /// times out and loses to an earlier write; then c times out and wins, although a ended before c began.
    #[test]
    fn writes_of_unknown_outcome_are_neither_lost_nor_judged_by() {
        let lost_in_doubt =
            [ack("a", "1", 0, 3_000, 401), with(ack("b", "2", 8_000, 0, 9), EventType::Info, Some(1_008_000))];
        let r = check(&lost_in_doubt, &everywhere(&lost_in_doubt[0]));
        assert!(r.passed() && r.keys_judged == 1 && r.ordered_writes == 0, "{r:?}");

        let won_in_doubt = [ack("a", "1", 0, 3_000, 1), with(ack("c", "3", 8_000, 0, 9), EventType::Info, None)];
        let r = check(&won_in_doubt, &everywhere(&won_in_doubt[1]));
        assert!(r.passed(), "{r:?}");
        assert_eq!((r.keys_judged, r.keys_unknown_winner), (0, 1));
    }

    /// Goal: a refused write certainly did not happen: it is not lost, but it must never be what the regions hold.
    /// Method: b's write fails; a's write stays (pass); then every region holds b's value (a finding).
    #[test]
    fn a_failed_write_is_ignored_unless_it_shows() {
        let writes = [ack("a", "1", 0, 3_000, 1), with(ack("b", "2", 8_000, 0, 9), EventType::Fail, Some(9_000))];
        let r = check(&writes, &everywhere(&writes[0]));
        assert!(r.passed() && r.keys_judged == 1, "{r:?}");
        let r = check(&writes, &everywhere(&writes[1]));
        assert_eq!(r.unexplained.iter().map(|u| u.kind).collect::<Vec<_>>(), [UnexplainedKind::FailedWrite]);
        assert!(!r.passed());
    }

    /// Goal: a key the regions disagree on is not judged here; a key absent everywhere after an acknowledged
    /// write, or holding a value no write made, is a finding.
    #[test]
    fn divergent_missing_and_phantom_keys() {
        let chain = [ack("a", "1", 0, 3_000, 401), ack("b", "2", 8_000, 11_000, 9)];
        let r = check(&chain, &holding([Some(&chain[0]), Some(&chain[0]), Some(&chain[1])]));
        assert!(r.passed() && r.keys_divergent == 1 && r.keys_judged == 0, "{r:?}");

        let r = check(&chain, &holding([None, None, None]));
        assert_eq!(r.unexplained.iter().map(|u| u.kind).collect::<Vec<_>>(), [UnexplainedKind::Missing]);

        let phantom = ack("a", "never-written", 0, 3_000, 1);
        let r = check(&chain, &everywhere(&phantom));
        assert_eq!(r.unexplained.iter().map(|u| u.kind).collect::<Vec<_>>(), [UnexplainedKind::NoSuchWrite]);
        assert_eq!(r.unexplained_table().rows[0][0], "no such write");
    }

    /// Goal: a malformed history gives no verdict.
    #[test]
    fn a_malformed_history_is_an_error() {
        let w = ack("a", "1", 0, 3_000, 1);
        let mut events = history(&[w]);
        events.remove(0);
        assert!(matches!(
            check_lww_realtime(&events, &everywhere(&w), TOLERANCE),
            Err(CheckError::MalformedHistory(_))
        ));
    }
}
