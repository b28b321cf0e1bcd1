//! `check_sessions`: the session guarantees of Terry et al. (1994) that a client moving between regions relies on,
//! judged on a history in which every process is one session that issues its operations one at a time.
//!
//! - *Read your writes*: a read sees the session's own latest acknowledged write of the key, or a later one. It is
//!   broken when the read returns nothing, or a version lower in the store's own order than that write's.
//! - *Monotonic reads*: a read never returns an older state than an earlier read of the same session did. It is
//!   broken when the read returns nothing, or a lower version, after an earlier read returned a version.
//!
//! Versions are compared in the store's own order (`Version`'s order: HLC stamps in the lab, a Postgres writer stamp,
//! Galera's per-key commit counter, etcd's `mod_revision`), per key. Only `ok` operations count: a write of
//! unknown outcome sets no expectation, and a failed or unknown read shows nothing. Each read that had something to
//! see is one *observation* of the guarantee, tallied by the pair of regions (where the earlier operation ran, where
//! the read ran), so that a report shows which way a guarantee breaks.

use super::error::CheckError;
use super::table::bounded_table;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use xregion_model::Version;
use xregion_model::history::{self, Event, EventType, OpFn};
use xregion_model::report::Table;

/// Fewest cross-region observations of a guarantee that a pass rests on. A store that breaks a guarantee at all
/// under this workload breaks it on a good share of reads that follow a write or read elsewhere within milliseconds
/// (asynchronous replication takes at least one network delay); one in ten would leave under one chance in a
/// hundred of seeing none in 50 reads.
pub const OBSERVATIONS_MIN: u64 = 50;

/// A session guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// A read sees the session's own latest acknowledged write, or a later one.
    ReadYourWrites,
    /// A read never returns an older state than an earlier read of the session.
    MonotonicReads,
}

impl Guarantee {
    /// Every guarantee, in report order.
    pub const ALL: [Guarantee; 2] = [Guarantee::ReadYourWrites, Guarantee::MonotonicReads];

    /// Its name in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::ReadYourWrites => "read-your-writes",
            Guarantee::MonotonicReads => "monotonic-reads",
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One operation of a session, as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionOp {
    /// Index of the invoke event, to find the operation in `history.jsonl`.
    pub invoke_index: u64,
    /// The region it ran in.
    pub region: String,
    /// The version written or returned; `None` for a read that found nothing.
    pub version: Option<Version>,
    /// When it was invoked, in nanoseconds of the history's clock.
    pub invoked_ns: u64,
    /// When it completed, in nanoseconds of the history's clock.
    pub completed_ns: u64,
}

impl std::fmt::Display for SessionOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{v}")?,
            None => f.write_str("nothing")?,
        }
        write!(f, " (event {} in {})", self.invoke_index, self.region)
    }
}

/// A read that broke a guarantee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionViolation {
    /// The guarantee broken.
    pub guarantee: Guarantee,
    /// The session (history process).
    pub session: u32,
    /// The key.
    pub key: String,
    /// What the read had to include: the session's write (read your writes) or its earlier read (monotonic reads).
    pub earlier: SessionOp,
    /// The read that did not include it.
    pub read: SessionOp,
}

impl SessionViolation {
    /// One sentence: what the read returned, where, and how long after the operation it had to include.
    pub fn describe(&self) -> String {
        let what = match self.guarantee {
            Guarantee::ReadYourWrites => "its own write",
            Guarantee::MonotonicReads => "its earlier read of",
        };
        format!(
            "session {} read {} of key {:?} in {}, {:.1} ms after {what} {} in {}",
            self.session,
            self.read.version.as_ref().map_or_else(|| "nothing".to_string(), |v| format!("version {v}")),
            self.key,
            self.read.region,
            self.read.invoked_ns.saturating_sub(self.earlier.completed_ns) as f64 / 1e6,
            self.earlier.version.as_ref().map_or_else(|| "nothing".to_string(), ToString::to_string),
            self.earlier.region
        )
    }
}

/// Observations and violations of one guarantee.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Reads that had something to include: after an acknowledged write of the session (read your writes), or after
    /// an earlier read of the session that returned a version (monotonic reads).
    pub observed: u64,
    /// Of those, the reads in another region than the earlier operation.
    pub cross_region: u64,
    /// Of the observed reads, those that broke the guarantee.
    pub violated: u64,
    /// Per (earlier operation's region, read's region): observed, violated.
    pub by_pair: BTreeMap<(String, String), (u64, u64)>,
}

impl Tally {
    /// Violated share of the observed reads, in percent (0 when nothing was observed).
    pub fn violated_pct(&self) -> f64 {
        if self.observed == 0 { 0.0 } else { self.violated as f64 * 100.0 / self.observed as f64 }
    }

    /// True when at least `OBSERVATIONS_MIN` reads in another region than the earlier operation were judged.
    pub fn enough_evidence(&self) -> bool {
        self.cross_region >= OBSERVATIONS_MIN
    }

    fn observe(&mut self, from: &str, to: &str, violated: bool) {
        self.observed += 1;
        self.cross_region += u64::from(from != to);
        self.violated += u64::from(violated);
        let cell = self.by_pair.entry((from.to_string(), to.to_string())).or_default();
        cell.0 += 1;
        cell.1 += u64::from(violated);
    }
}

/// Result of `check_sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionCheck {
    /// Sessions (processes) that completed at least one operation.
    pub sessions: u64,
    /// Reads completed `ok`.
    pub reads_ok: u64,
    /// Reads that failed or whose outcome is unknown: they show nothing and are not judged.
    pub reads_not_ok: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Read your writes.
    pub read_your_writes: Tally,
    /// Monotonic reads.
    pub monotonic_reads: Tally,
    /// Every read that broke a guarantee, in history order.
    pub violations: Vec<SessionViolation>,
}

impl SessionCheck {
    /// The tally of `g`.
    pub fn tally(&self, g: Guarantee) -> &Tally {
        match g {
            Guarantee::ReadYourWrites => &self.read_your_writes,
            Guarantee::MonotonicReads => &self.monotonic_reads,
        }
    }

    /// The first violation of `g`, if any.
    pub fn first(&self, g: Guarantee) -> Option<&SessionViolation> {
        self.violations.iter().find(|v| v.guarantee == g)
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("sessions".into(), self.sessions as f64);
        m.insert("reads_ok".into(), self.reads_ok as f64);
        m.insert("reads_not_ok".into(), self.reads_not_ok as f64);
        m.insert("writes_acked".into(), self.writes_acked as f64);
        for g in Guarantee::ALL {
            let t = self.tally(g);
            let n = g.name().replace('-', "_");
            m.insert(format!("{n}_observed"), t.observed as f64);
            m.insert(format!("{n}_cross_region"), t.cross_region as f64);
            m.insert(format!("{n}_violated"), t.violated as f64);
            m.insert(format!("{n}_violated_pct"), t.violated_pct());
        }
        m
    }

    /// Observed and violated reads of both guarantees per region pair.
    pub fn pairs_table(&self) -> Table {
        let mut rows = Vec::new();
        for g in Guarantee::ALL {
            for ((from, to), (observed, violated)) in &self.tally(g).by_pair {
                let pct = *violated as f64 * 100.0 / (*observed).max(1) as f64;
                rows.push(vec![
                    g.name().to_string(),
                    from.clone(),
                    to.clone(),
                    observed.to_string(),
                    violated.to_string(),
                    format!("{pct:.1}"),
                ]);
            }
        }
        let columns = ["guarantee", "earlier operation in", "read in", "reads", "violated", "violated %"];
        bounded_table("Session guarantees per region pair", columns.map(String::from).to_vec(), rows)
    }

    /// Every violation, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn violations_table(&self) -> Table {
        let rows = self
            .violations
            .iter()
            .map(|v| {
                vec![
                    v.guarantee.name().to_string(),
                    v.session.to_string(),
                    v.key.clone(),
                    v.earlier.to_string(),
                    v.read.to_string(),
                    format!("{:.1}", v.read.invoked_ns.saturating_sub(v.earlier.completed_ns) as f64 / 1e6),
                ]
            })
            .collect();
        let columns = ["guarantee", "session", "key", "had to include", "read returned", "read began after (ms)"];
        bounded_table("Reads that broke a session guarantee", columns.map(String::from).to_vec(), rows)
    }
}

/// What a session has done so far, per key: its latest acknowledged write, and its read that returned the highest
/// version.
#[derive(Default)]
struct SessionState {
    /// Key to the session's acknowledged write with the highest version.
    written: BTreeMap<String, SessionOp>,
    /// Key to the session's read that returned the highest version.
    seen: BTreeMap<String, SessionOp>,
}

/// Keeps in `slot` whichever of its op and `op` has the higher version.
fn keep_highest(slot: &mut BTreeMap<String, SessionOp>, key: &str, op: &SessionOp) {
    match slot.get(key) {
        Some(old) if old.version >= op.version => {}
        _ => {
            slot.insert(key.to_string(), op.clone());
        }
    }
}

/// Judges every session of `history` (one process is one session) for read your writes and monotonic reads; see
/// the module doc. Deletes are writes of a tombstone: reading the tombstone includes the delete.
pub fn check_sessions(history: &[Event]) -> Result<SessionCheck, CheckError> {
    let ops = history::pair(history).map_err(CheckError::MalformedHistory)?;
    let mut out = SessionCheck::default();
    let mut sessions: BTreeMap<u32, SessionState> = BTreeMap::new();
    for op in &ops {
        let inv = &op.invoke;
        let Some(c) = op.completion.as_ref().filter(|c| c.kind == EventType::Ok) else {
            if inv.f == OpFn::Read {
                out.reads_not_ok += 1;
            }
            continue;
        };
        if c.key != inv.key || c.f != inv.f {
            return Err(CheckError::CompletionMismatch { invoke_index: inv.index, completion_index: c.index });
        }
        let this = SessionOp {
            invoke_index: inv.index,
            region: inv.region.clone(),
            version: c.version.clone(),
            invoked_ns: inv.time_ns,
            completed_ns: c.time_ns,
        };
        let state = sessions.entry(inv.process).or_default();
        match inv.f {
            OpFn::Write | OpFn::Delete => {
                if this.version.is_none() {
                    let op = if inv.f == OpFn::Write { "write" } else { "delete" };
                    return Err(CheckError::AckWithoutVersion { index: c.index, key: inv.key.clone(), op });
                }
                out.writes_acked += 1;
                keep_highest(&mut state.written, &inv.key, &this);
            }
            OpFn::Read => {
                out.reads_ok += 1;
                let checks = [
                    (Guarantee::ReadYourWrites, state.written.get(&inv.key)),
                    (Guarantee::MonotonicReads, state.seen.get(&inv.key)),
                ];
                for (g, earlier) in checks {
                    let Some(earlier) = earlier.filter(|e| e.version.is_some()) else { continue };
                    let violated = this.version < earlier.version;
                    let tally = match g {
                        Guarantee::ReadYourWrites => &mut out.read_your_writes,
                        Guarantee::MonotonicReads => &mut out.monotonic_reads,
                    };
                    tally.observe(&earlier.region, &this.region, violated);
                    if violated {
                        out.violations.push(SessionViolation {
                            guarantee: g,
                            session: inv.process,
                            key: inv.key.clone(),
                            earlier: earlier.clone(),
                            read: this.clone(),
                        });
                    }
                }
                keep_highest(&mut state.seen, &inv.key, &this);
            }
        }
    }
    out.sessions = sessions.len() as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds histories one sequential operation at a time.
    #[derive(Default)]
    struct H {
        events: Vec<Event>,
        t: u64,
    }

    impl H {
        fn op(&mut self, process: u32, f: OpFn, region: &str, key: &str, kind: EventType, version: Option<u64>) {
            let mk = |h: &mut H, kind, version: Option<u64>| {
                h.t += 1_000_000;
                h.events.push(Event {
                    index: h.events.len() as u64,
                    process,
                    kind,
                    f,
                    region: region.into(),
                    key: key.into(),
                    value: version.map(|v| format!("v{v}")),
                    version: version.map(|v| Version { wall_ms: v, logical: 0, origin: "x".into() }),
                    time_ns: h.t,
                    error: None,
                });
            };
            mk(self, EventType::Invoke, None);
            mk(self, kind, version);
        }
        fn write(&mut self, p: u32, region: &str, v: u64) {
            self.op(p, OpFn::Write, region, "k", EventType::Ok, Some(v));
        }
        fn read(&mut self, p: u32, region: &str, v: Option<u64>) {
            self.op(p, OpFn::Read, region, "k", EventType::Ok, v);
        }
    }

    /// Goal: a session that reads its own write, or a later one, everywhere keeps both guarantees; the evidence is
    /// counted per pair.
    #[test]
    fn fresh_reads_keep_both_guarantees() {
        let mut h = H::default();
        h.write(1, "a", 5);
        h.read(1, "b", Some(5));
        h.write(2, "c", 7);
        h.read(1, "c", Some(7));
        let r = check_sessions(&h.events).unwrap();
        assert!(r.violations.is_empty(), "{r:?}");
        assert_eq!((r.read_your_writes.observed, r.read_your_writes.cross_region), (2, 2));
        assert_eq!(r.monotonic_reads.observed, 1);
        assert_eq!(r.read_your_writes.by_pair[&("a".to_string(), "c".to_string())], (1, 0));
        assert_eq!((r.sessions, r.reads_ok, r.writes_acked), (2, 2, 2));
    }

    /// Goal: a read that misses the session's own write breaks read your writes (absent or older), and one that goes
    /// back from an earlier read breaks monotonic reads; each finding names both operations.
    #[test]
    fn stale_reads_break_the_guarantees() {
        let mut h = H::default();
        h.write(1, "a", 5);
        h.read(1, "b", None);
        h.write(2, "a", 9);
        h.read(3, "a", Some(9));
        h.read(3, "b", Some(5));
        let r = check_sessions(&h.events).unwrap();
        assert_eq!(r.read_your_writes.violated, 1);
        assert_eq!(r.monotonic_reads.violated, 1);
        let ryw = r.first(Guarantee::ReadYourWrites).unwrap();
        assert_eq!((ryw.earlier.region.as_str(), ryw.read.version.clone()), ("a", None));
        assert!(ryw.describe().contains("read nothing of key \"k\" in b"), "{}", ryw.describe());
        let mr = r.first(Guarantee::MonotonicReads).unwrap();
        assert_eq!(mr.earlier.version.as_ref().map(|v| v.wall_ms), Some(9));
        assert_eq!(r.violations_table().rows.len(), 2);
        assert!(r.metrics()["monotonic_reads_violated_pct"] == 100.0);
    }

    /// Goal: only what certainly happened sets an expectation: an unknown write, a failed read and a read that found
    /// nothing before anything was seen are not judged.
    #[test]
    fn uncertain_operations_set_no_expectation() {
        let mut h = H::default();
        h.op(1, OpFn::Write, "a", "k", EventType::Info, None);
        h.read(1, "b", None);
        h.op(1, OpFn::Read, "b", "k", EventType::Fail, None);
        let r = check_sessions(&h.events).unwrap();
        assert_eq!((r.read_your_writes.observed, r.monotonic_reads.observed, r.reads_not_ok), (0, 0, 1));
        assert!(!r.read_your_writes.enough_evidence());
    }

    /// Goal: a history that does not pair, or an acknowledged write without a version, is an error, never a pass.
    #[test]
    fn malformed_histories_are_refused() {
        let mut h = H::default();
        h.write(1, "a", 1);
        let mut broken = h.events.clone();
        broken.remove(0);
        assert!(matches!(check_sessions(&broken), Err(CheckError::MalformedHistory(_))));
        let mut h = H::default();
        h.op(1, OpFn::Write, "a", "k", EventType::Ok, None);
        assert!(matches!(check_sessions(&h.events), Err(CheckError::AckWithoutVersion { .. })));
    }
}
