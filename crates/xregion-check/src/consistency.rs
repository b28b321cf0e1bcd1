//! Consistency checkers: a recorded history against the final state read from every region.
//!
//! The runner records a Jepsen-style history (`history::Event`s), lets replication settle, then reads every
//! in-scope key from every region, tombstones included. These functions judge that data; they never talk to a
//! deployment. Each returns a structured, serializable result with counts and findings; the runner turns an empty
//! list of findings into a pass. A malformed history is an error, never a pass.
//!
//! # Terms
//! - A *write* is a `write` or `delete` operation; a delete writes a tombstone (value `None`) and follows every
//!   rule below exactly like a write.
//! - *Acked*: the completion is `ok`. Its version is the one the `ok` completion carries; an acked write without
//!   a version is an error ([`CheckError::AckWithoutVersion`]), because nothing could be checked against it.
//! - *Unknown*: the completion is `info`, or missing. Such a write may or may not have taken effect.
//! - *Failed*: the completion is `fail`. Such a write certainly did not take effect.
//! - *Final*: the record a region holds for a key at the end (`None` when the key is absent). `final_states`
//!   must be restricted by the caller to the keys in scope (for example the run's key prefix): every key in it is
//!   checked, and every key a history write touched is checked in every region.
//! - Unknown and failed writes have no trustworthy version, so they are identified by their *value*: the
//!   generator must write a value that is unique per key (a delete's tombstone matches any tombstone). When their
//!   completion does carry a version, it must match too.
//!
//! # `check_writes` rules, for every key and every region
//! For each acked write W, compared with the region's final F:
//! - *lost* if F is absent, or `F.version < W.version`;
//! - *corrupt* if `F.version == W.version` but `F.value != W.value`;
//! - *survived* if F is W (same version and value);
//! - *superseded* (fine) if `F.version > W.version`. Whether the newer F is legitimate is judged once, on F:
//!
//! The final F itself is attributed, in this order:
//! 1. to an acked write with the same version (fine, or corrupt as above);
//! 2. to an unknown write with the same value (fine: an unknown write may take effect);
//! 3. to a failed write with the same value: *failed-visible*, a finding (a failed write must never show);
//! 4. otherwise F is a *phantom*: a (value, version) no write of the history produced. A finding.
//!
//! So a write superseded by a phantom is not reported as lost as well: the phantom is the one root cause and
//! already fails the check. Unknown writes are never lost.
//!
//! # `check_lww` rules, for every key and every region
//! The candidates are every acked write (at its acked version) and every unknown write that was *observed*: its
//! value is held by some region's final state, or returned by an `ok` read of the key, at the version seen there.
//! The *expected winner* E is the candidate with the highest version (`Version`'s order is the LWW order). Then:
//! - no candidates and F absent: fine; no candidates and F present: *unexplained*;
//! - F absent while E exists: *missing*;
//! - `F.version < E.version`: *stale*, the wrong winner: a write with a higher version lost;
//! - `F.version == E.version` and the values differ: *value mismatch*;
//! - `F.version > E.version`: *unexplained*: F beats every write the history knows (a phantom or failed write).
//!
//! # `check_convergence`
//! A key is divergent when the regions do not all hold the same (value, version), or it is present (tombstones
//! included) in some regions and absent in others.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use xregion_model::Version;
use xregion_model::history::{self, EventType, OpFn, Operation};
use xregion_model::report::Table;
use xregion_model::wire::Record;

pub use xregion_model::history::Event;

/// Final states: region name to key to the record that region holds (tombstones included).
pub type FinalStates = BTreeMap<String, BTreeMap<String, Record>>;

/// Most findings a table shows; the rest are summed in a last row so a badly broken run keeps a readable report.
pub const TABLE_ROWS_MAX: usize = 50;

/// Why a history or a set of final states cannot be checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// The events do not pair into operations.
    #[error("the history is malformed: {0}; fix the recorder, no verdict can be drawn from this history")]
    MalformedHistory(String),
    /// An acknowledged write carries no version.
    #[error(
        "acknowledged {op} of key {key:?} (event {index}) carries no version; the deployment must return the version of every write it acknowledges"
    )]
    AckWithoutVersion {
        /// Index of the completion event.
        index: u64,
        /// The key written.
        key: String,
        /// `write` or `delete`.
        op: &'static str,
    },
    /// A write invoke has no value.
    #[error("write of key {key:?} (event {index}) has no value; record deletes as `delete`, not as a write of nothing")]
    WriteWithoutValue {
        /// Index of the invoke event.
        index: u64,
        /// The key written.
        key: String,
    },
    /// A completion names a different key or operation than its invoke.
    #[error(
        "completion event {completion_index} does not match its invoke event {invoke_index} (key or operation differs)"
    )]
    CompletionMismatch {
        /// Index of the invoke event.
        invoke_index: u64,
        /// Index of the completion event.
        completion_index: u64,
    },
    /// No region's final state was given.
    #[error("no final state was read from any region; read every region before checking")]
    NoRegions,
    /// A record is filed under another key than its own.
    #[error("region {region} returned a record for key {record_key:?} when asked for {key:?}")]
    StateKeyMismatch {
        /// The region.
        region: String,
        /// The key it was filed under.
        key: String,
        /// The key in the record.
        record_key: String,
    },
}

/// What a region holds for a key: value (`None` for a tombstone) and version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Held {
    /// The value; `None` for a tombstone.
    pub value: Option<String>,
    /// The version that won in the region.
    pub version: Version,
}

impl Held {
    fn of(r: &Record) -> Self {
        Held { value: r.value.clone(), version: r.version.clone() }
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{v:?} @ {}", self.version),
            None => write!(f, "tombstone @ {}", self.version),
        }
    }
}

fn show(h: Option<&Held>) -> String {
    h.map_or_else(|| "absent".to_string(), Held::to_string)
}

/// One write or delete from the history, as the findings name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteRef {
    /// Index of the invoke event, to find the operation in `history.jsonl`.
    pub invoke_index: u64,
    /// The region the operation was sent to.
    pub region: String,
    /// The value written; `None` for a delete.
    pub value: Option<String>,
    /// The version the deployment reported; always set for acked writes, often absent otherwise.
    pub version: Option<Version>,
}

impl std::fmt::Display for WriteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "write {v:?}")?,
            None => write!(f, "delete")?,
        }
        if let Some(v) = &self.version {
            write!(f, " @ {v}")?;
        }
        write!(f, " (event {} via {})", self.invoke_index, self.region)
    }
}

/// How much data a check looked at, so that a pass over nothing is visible as such.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Writes and deletes completed `ok`.
    pub acked_writes: u64,
    /// Writes and deletes completed `info` or never completed.
    pub unknown_writes: u64,
    /// Writes and deletes completed `fail`.
    pub failed_writes: u64,
    /// Distinct keys checked: written in the history or present in some final state.
    pub keys_checked: u64,
    /// Regions whose final state was read.
    pub regions_checked: u64,
}

impl Counts {
    fn metrics(&self, m: &mut BTreeMap<String, f64>) {
        m.insert("acked_writes".into(), self.acked_writes as f64);
        m.insert("unknown_writes".into(), self.unknown_writes as f64);
        m.insert("failed_writes".into(), self.failed_writes as f64);
        m.insert("keys_checked".into(), self.keys_checked as f64);
        m.insert("regions_checked".into(), self.regions_checked as f64);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Convergence

/// A key the regions disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DivergentKey {
    /// The key.
    pub key: String,
    /// What every region holds; `None` when the key is absent there.
    pub holdings: BTreeMap<String, Option<Held>>,
}

/// Result of `check_convergence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Convergence {
    /// Distinct keys present in at least one region.
    pub keys_checked: u64,
    /// Regions compared.
    pub regions_checked: u64,
    /// Keys whose (value, version) differ between regions or that are missing in some; in key order.
    pub divergent: Vec<DivergentKey>,
}

impl Convergence {
    /// True when every region holds the same thing for every key.
    pub fn passed(&self) -> bool {
        self.divergent.is_empty()
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("keys_checked".into(), self.keys_checked as f64),
            ("regions_checked".into(), self.regions_checked as f64),
            ("divergent_keys".into(), self.divergent.len() as f64),
        ])
    }

    /// The divergent keys, one row per key with a column per region, at most `TABLE_ROWS_MAX` rows.
    pub fn to_table(&self) -> Table {
        let regions: BTreeSet<&String> = self.divergent.iter().flat_map(|d| d.holdings.keys()).collect();
        let mut columns = vec!["key".to_string()];
        columns.extend(regions.iter().map(|r| r.to_string()));
        let rows = self
            .divergent
            .iter()
            .map(|d| {
                let mut row = vec![d.key.clone()];
                row.extend(regions.iter().map(|r| show(d.holdings.get(*r).and_then(Option::as_ref))));
                row
            })
            .collect();
        bounded_table("Divergent keys", columns, rows)
    }
}

/// Compares the final states of all regions key by key.
pub fn check_convergence(final_states: &FinalStates) -> Result<Convergence, CheckError> {
    validate_states(final_states)?;
    let keys: BTreeSet<&String> = final_states.values().flat_map(|m| m.keys()).collect();
    let mut divergent = Vec::new();
    for key in &keys {
        let holdings: BTreeMap<String, Option<Held>> =
            final_states.iter().map(|(region, m)| (region.clone(), m.get(*key).map(Held::of))).collect();
        let mut distinct = holdings.values();
        let first = distinct.next();
        if distinct.any(|h| Some(h) != first) {
            divergent.push(DivergentKey { key: key.to_string(), holdings });
        }
    }
    Ok(Convergence { keys_checked: keys.len() as u64, regions_checked: final_states.len() as u64, divergent })
}

// ---------------------------------------------------------------------------------------------------------------
// Writes

/// An acked write a region does not hold, nor anything newer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    /// The key.
    pub key: String,
    /// The region that lost it.
    pub region: String,
    /// The acked write.
    pub write: WriteRef,
    /// What the region holds instead; `None` when the key is absent.
    pub actual: Option<Held>,
}

/// A final record that is not explained by an acked or unknown write: a phantom, a failed write that shows, or
/// a record with an acked write's version but another value (corrupt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadFinal {
    /// The key.
    pub key: String,
    /// The region holding it.
    pub region: String,
    /// What the region holds.
    pub actual: Held,
    /// The write it was matched to: the acked write whose version it has (corrupt) or the failed write whose
    /// value it has (failed-visible); `None` for a phantom.
    pub write: Option<WriteRef>,
}

/// Two acked writes of one key that the deployment gave the same version, which makes LWW ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionConflict {
    /// The key.
    pub key: String,
    /// The shared version.
    pub version: Version,
    /// The writes that share it.
    pub writes: Vec<WriteRef>,
}

/// Result of `check_writes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteCheck {
    /// What was looked at.
    pub counts: Counts,
    /// (acked write, region) pairs where the region holds that write.
    pub survived: u64,
    /// (acked write, region) pairs where the region holds something newer.
    pub superseded: u64,
    /// (key, region) pairs whose final is an unknown-outcome write, which did take effect.
    pub unknown_applied: u64,
    /// Acked writes a region lost; findings.
    pub lost: Vec<LostWrite>,
    /// Finals with an acked write's version but another value; findings.
    pub corrupt: Vec<BadFinal>,
    /// Finals that are a failed write; findings.
    pub failed_visible: Vec<BadFinal>,
    /// Finals no write of the history produced; findings.
    pub phantoms: Vec<BadFinal>,
    /// Acked writes sharing a version; findings.
    pub version_conflicts: Vec<VersionConflict>,
}

impl WriteCheck {
    /// Number of findings of every kind.
    pub fn findings(&self) -> usize {
        self.lost.len()
            + self.corrupt.len()
            + self.failed_visible.len()
            + self.phantoms.len()
            + self.version_conflicts.len()
    }

    /// True when nothing was lost, corrupted, invented or shown despite failing.
    pub fn passed(&self) -> bool {
        self.findings() == 0
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        self.counts.metrics(&mut m);
        m.insert("survived".into(), self.survived as f64);
        m.insert("superseded".into(), self.superseded as f64);
        m.insert("unknown_applied".into(), self.unknown_applied as f64);
        m.insert("lost_writes".into(), self.lost.len() as f64);
        m.insert("corrupt_finals".into(), self.corrupt.len() as f64);
        m.insert("failed_visible".into(), self.failed_visible.len() as f64);
        m.insert("phantoms".into(), self.phantoms.len() as f64);
        m.insert("version_conflicts".into(), self.version_conflicts.len() as f64);
        m
    }

    /// Every finding, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn to_table(&self) -> Table {
        let mut rows = Vec::new();
        for l in &self.lost {
            rows.push(vec![
                "lost".into(),
                l.key.clone(),
                l.region.clone(),
                l.write.to_string(),
                show(l.actual.as_ref()),
            ]);
        }
        for (kind, list) in
            [("corrupt", &self.corrupt), ("failed-visible", &self.failed_visible), ("phantom", &self.phantoms)]
        {
            for b in list {
                let write = b.write.as_ref().map_or_else(|| "none".to_string(), WriteRef::to_string);
                rows.push(vec![kind.into(), b.key.clone(), b.region.clone(), write, b.actual.to_string()]);
            }
        }
        for c in &self.version_conflicts {
            let writes = c.writes.iter().map(WriteRef::to_string).collect::<Vec<_>>().join("; ");
            rows.push(vec!["version-conflict".into(), c.key.clone(), "-".into(), writes, c.version.to_string()]);
        }
        let columns = ["finding", "key", "region", "write", "region holds"].map(String::from).to_vec();
        bounded_table("Write findings", columns, rows)
    }
}

/// Checks every acknowledged write against every region's final state; see the module doc for the rules.
pub fn check_writes(history: &[Event], final_states: &FinalStates) -> Result<WriteCheck, CheckError> {
    validate_states(final_states)?;
    let writes = collect_writes(history)?;
    let keys = keys_in_scope(&writes, final_states);
    let mut out = WriteCheck { counts: counts(&writes, &keys, final_states), ..WriteCheck::default() };

    for (key, kw) in &writes {
        let mut by_version: BTreeMap<&Version, Vec<&Write>> = BTreeMap::new();
        for w in &kw.acked {
            by_version.entry(acked_version(w)).or_default().push(w);
        }
        for (version, ws) in by_version {
            if ws.iter().any(|w| w.value != ws[0].value) {
                out.version_conflicts.push(VersionConflict {
                    key: key.clone(),
                    version: version.clone(),
                    writes: ws.iter().map(|w| w.to_ref()).collect(),
                });
            }
        }
    }

    let empty = KeyWrites::default();
    for key in &keys {
        let kw = writes.get(*key).unwrap_or(&empty);
        for (region, state) in final_states {
            let fin = state.get(*key).map(Held::of);
            for w in &kw.acked {
                let wv = acked_version(w);
                match &fin {
                    Some(f) if f.version > *wv => out.superseded += 1,
                    Some(f) if f.version == *wv && f.value == w.value => out.survived += 1,
                    // Same version, other value: reported once as corrupt when the final is attributed below.
                    Some(f) if f.version == *wv => {}
                    _ => out.lost.push(LostWrite {
                        key: key.to_string(),
                        region: region.clone(),
                        write: w.to_ref(),
                        actual: fin.clone(),
                    }),
                }
            }
            let Some(f) = fin else { continue };
            let bad = |write: Option<&Write>| BadFinal {
                key: key.to_string(),
                region: region.clone(),
                actual: f.clone(),
                write: write.map(Write::to_ref),
            };
            match attribute(kw, &f) {
                Attribution::Acked => {}
                Attribution::Corrupt(w) => out.corrupt.push(bad(Some(w))),
                Attribution::Unknown => out.unknown_applied += 1,
                Attribution::Failed(w) => out.failed_visible.push(bad(Some(w))),
                Attribution::Phantom => out.phantoms.push(bad(None)),
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------------
// LWW

/// What is wrong with a region's final record under last-write-wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LwwViolationKind {
    /// The key is absent although a write of it is known.
    Missing,
    /// A known write has a higher version than the final: the wrong write won.
    Stale,
    /// The final has the winner's version but another value.
    ValueMismatch,
    /// The final has a higher version than every known write: no write of the history explains it.
    Unexplained,
}

/// One region holding the wrong winner for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LwwViolation {
    /// The key.
    pub key: String,
    /// The region.
    pub region: String,
    /// What is wrong.
    pub kind: LwwViolationKind,
    /// The expected winner: the known write with the highest version; `None` when no write is known.
    pub expected: Option<Held>,
    /// What the region holds; `None` when the key is absent.
    pub actual: Option<Held>,
}

/// Result of `check_lww`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LwwCheck {
    /// What was looked at.
    pub counts: Counts,
    /// Unknown-outcome writes that were observed (in a final state or an ok read) and so were candidates.
    pub unknown_observed: u64,
    /// (key, region) pairs holding the expected winner.
    pub correct: u64,
    /// Regions holding the wrong winner; findings.
    pub violations: Vec<LwwViolation>,
}

impl LwwCheck {
    /// True when every region holds the highest-versioned known write of every key.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        self.counts.metrics(&mut m);
        m.insert("unknown_observed".into(), self.unknown_observed as f64);
        m.insert("correct_winners".into(), self.correct as f64);
        m.insert("wrong_winners".into(), self.violations.len() as f64);
        m
    }

    /// Every violation, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn to_table(&self) -> Table {
        let rows = self
            .violations
            .iter()
            .map(|v| {
                let kind = match v.kind {
                    LwwViolationKind::Missing => "missing",
                    LwwViolationKind::Stale => "stale",
                    LwwViolationKind::ValueMismatch => "value-mismatch",
                    LwwViolationKind::Unexplained => "unexplained",
                };
                let expected = v.expected.as_ref().map_or_else(|| "no known write".to_string(), Held::to_string);
                vec![kind.into(), v.key.clone(), v.region.clone(), expected, show(v.actual.as_ref())]
            })
            .collect();
        let columns = ["violation", "key", "region", "expected winner", "region holds"].map(String::from).to_vec();
        bounded_table("Wrong LWW winners", columns, rows)
    }
}

/// Checks that every region holds the highest-versioned known write of every key; see the module doc.
pub fn check_lww(history: &[Event], final_states: &FinalStates) -> Result<LwwCheck, CheckError> {
    validate_states(final_states)?;
    let ops = pair(history)?;
    let writes = collect_from_ops(&ops)?;
    let keys = keys_in_scope(&writes, final_states);
    let mut out = LwwCheck { counts: counts(&writes, &keys, final_states), ..LwwCheck::default() };

    // Where a value of a key was seen, with its version: final states and ok reads.
    let mut seen: BTreeMap<&str, BTreeSet<Held>> = BTreeMap::new();
    for state in final_states.values() {
        for (key, r) in state {
            seen.entry(key.as_str()).or_default().insert(Held::of(r));
        }
    }
    for op in &ops {
        if let (OpFn::Read, Some(c)) = (op.invoke.f, &op.completion)
            && c.kind == EventType::Ok
            && let Some(version) = &c.version
        {
            seen.entry(op.invoke.key.as_str())
                .or_default()
                .insert(Held { value: c.value.clone(), version: version.clone() });
        }
    }

    let empty = KeyWrites::default();
    for key in &keys {
        let kw = writes.get(*key).unwrap_or(&empty);
        let mut candidates: Vec<Held> =
            kw.acked.iter().map(|w| Held { value: w.value.clone(), version: acked_version(w).clone() }).collect();
        for w in &kw.unknown {
            let observed: Vec<&Held> = seen.get(key.as_str()).into_iter().flatten().filter(|h| w.matches(h)).collect();
            if !observed.is_empty() {
                out.unknown_observed += 1;
            }
            candidates.extend(observed.into_iter().cloned());
        }
        // Highest version wins; on a tie of versions with different values (a version conflict, which
        // check_writes reports), the smallest value is taken so the choice is deterministic.
        let expected = candidates.into_iter().max_by(|a, b| a.version.cmp(&b.version).then(b.value.cmp(&a.value)));
        for (region, state) in final_states {
            let actual = state.get(*key).map(Held::of);
            let kind = match (&expected, &actual) {
                (None, None) => None,
                (None, Some(_)) => Some(LwwViolationKind::Unexplained),
                (Some(_), None) => Some(LwwViolationKind::Missing),
                (Some(e), Some(a)) if a.version < e.version => Some(LwwViolationKind::Stale),
                (Some(e), Some(a)) if a.version > e.version => Some(LwwViolationKind::Unexplained),
                (Some(e), Some(a)) if a.value != e.value => Some(LwwViolationKind::ValueMismatch),
                (Some(_), Some(_)) => None,
            };
            match kind {
                None if expected.is_some() => out.correct += 1,
                None => {}
                Some(kind) => out.violations.push(LwwViolation {
                    key: key.to_string(),
                    region: region.clone(),
                    kind,
                    expected: expected.clone(),
                    actual,
                }),
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------------
// Shared

/// A write or delete with its outcome, as the checkers see it.
#[derive(Debug, Clone)]
struct Write {
    /// Invoke index, to name it.
    invoke_index: u64,
    /// Region it was sent to.
    region: String,
    /// Value written; `None` for a delete.
    value: Option<String>,
    /// Version from the completion, if any; always set for acked writes.
    version: Option<Version>,
}

impl Write {
    fn to_ref(&self) -> WriteRef {
        WriteRef {
            invoke_index: self.invoke_index,
            region: self.region.clone(),
            value: self.value.clone(),
            version: self.version.clone(),
        }
    }

    /// Whether `h` could be this (unknown or failed) write: same value, and same version if one is known.
    fn matches(&self, h: &Held) -> bool {
        self.value == h.value && self.version.as_ref().is_none_or(|v| *v == h.version)
    }
}

/// The writes of one key, by outcome.
#[derive(Debug, Default)]
struct KeyWrites {
    /// Completed `ok`, each with a version.
    acked: Vec<Write>,
    /// Completed `info` or never completed.
    unknown: Vec<Write>,
    /// Completed `fail`.
    failed: Vec<Write>,
}

/// The version of an acked write; `collect_from_ops` guarantees it is set.
fn acked_version(w: &Write) -> &Version {
    w.version.as_ref().expect("collect_from_ops rejects acked writes without a version")
}

enum Attribution<'a> {
    Acked,
    Corrupt(&'a Write),
    Unknown,
    Failed(&'a Write),
    Phantom,
}

/// Which write of the history a final record comes from, in the order the module doc gives.
fn attribute<'a>(kw: &'a KeyWrites, f: &Held) -> Attribution<'a> {
    let same_version: Vec<&Write> = kw.acked.iter().filter(|w| *acked_version(w) == f.version).collect();
    if same_version.iter().any(|w| w.value == f.value) {
        return Attribution::Acked;
    }
    if let Some(w) = same_version.first() {
        return Attribution::Corrupt(w);
    }
    if kw.unknown.iter().any(|w| w.matches(f)) {
        return Attribution::Unknown;
    }
    if let Some(w) = kw.failed.iter().find(|w| w.matches(f)) {
        return Attribution::Failed(w);
    }
    Attribution::Phantom
}

fn pair(history: &[Event]) -> Result<Vec<Operation>, CheckError> {
    history::pair(history).map_err(CheckError::MalformedHistory)
}

fn collect_writes(history: &[Event]) -> Result<BTreeMap<String, KeyWrites>, CheckError> {
    collect_from_ops(&pair(history)?)
}

fn collect_from_ops(ops: &[Operation]) -> Result<BTreeMap<String, KeyWrites>, CheckError> {
    let mut writes: BTreeMap<String, KeyWrites> = BTreeMap::new();
    for op in ops {
        let inv = &op.invoke;
        if let Some(c) = &op.completion
            && (c.key != inv.key || c.f != inv.f)
        {
            return Err(CheckError::CompletionMismatch { invoke_index: inv.index, completion_index: c.index });
        }
        let value = match inv.f {
            OpFn::Read => continue,
            OpFn::Delete => None,
            OpFn::Write => match &inv.value {
                Some(v) => Some(v.clone()),
                None => {
                    return Err(CheckError::WriteWithoutValue { index: inv.index, key: inv.key.clone() });
                }
            },
        };
        let version = op.completion.as_ref().and_then(|c| c.version.clone());
        let outcome = op.outcome();
        if outcome == EventType::Ok && version.is_none() {
            let op_name = if inv.f == OpFn::Delete { "delete" } else { "write" };
            let index = op.completion.as_ref().map_or(inv.index, |c| c.index);
            return Err(CheckError::AckWithoutVersion { index, key: inv.key.clone(), op: op_name });
        }
        let w = Write { invoke_index: inv.index, region: inv.region.clone(), value, version };
        let kw = writes.entry(inv.key.clone()).or_default();
        match outcome {
            EventType::Ok => kw.acked.push(w),
            EventType::Fail => kw.failed.push(w),
            // `outcome()` never returns Invoke; treating it as unknown is the safe reading.
            EventType::Info | EventType::Invoke => kw.unknown.push(w),
        }
    }
    Ok(writes)
}

fn keys_in_scope<'a>(writes: &'a BTreeMap<String, KeyWrites>, final_states: &'a FinalStates) -> BTreeSet<&'a String> {
    writes.keys().chain(final_states.values().flat_map(|m| m.keys())).collect()
}

fn counts(writes: &BTreeMap<String, KeyWrites>, keys: &BTreeSet<&String>, final_states: &FinalStates) -> Counts {
    Counts {
        acked_writes: writes.values().map(|k| k.acked.len() as u64).sum(),
        unknown_writes: writes.values().map(|k| k.unknown.len() as u64).sum(),
        failed_writes: writes.values().map(|k| k.failed.len() as u64).sum(),
        keys_checked: keys.len() as u64,
        regions_checked: final_states.len() as u64,
    }
}

fn validate_states(final_states: &FinalStates) -> Result<(), CheckError> {
    if final_states.is_empty() {
        return Err(CheckError::NoRegions);
    }
    for (region, state) in final_states {
        for (key, r) in state {
            if r.key != *key {
                return Err(CheckError::StateKeyMismatch {
                    region: region.clone(),
                    key: key.clone(),
                    record_key: r.key.clone(),
                });
            }
        }
    }
    Ok(())
}

fn bounded_table(title: &str, columns: Vec<String>, mut rows: Vec<Vec<String>>) -> Table {
    if rows.len() > TABLE_ROWS_MAX {
        let more = rows.len() - TABLE_ROWS_MAX;
        rows.truncate(TABLE_ROWS_MAX);
        let mut last = vec![String::new(); columns.len()];
        last[0] = format!("... and {more} more");
        rows.push(last);
    }
    Table { title: title.to_string(), columns, rows }
}

#[cfg(test)]
mod tests;
