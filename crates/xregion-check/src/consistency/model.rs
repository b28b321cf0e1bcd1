//! The history model the three checkers share: the final states read from the regions, what a region holds for a
//! key (`Held`), and every write and delete of the history grouped by key and outcome (acked, unknown, failed), as
//! the parent module's doc defines those terms. Collecting checks the history's shape, so a checker only ever sees
//! writes that can be judged.

use super::error::CheckError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use xregion_model::Version;
use xregion_model::history::{self, Event, EventType, OpFn, Operation};
use xregion_model::wire::Record;

/// Final states: region name to key to the record that region holds (tombstones included).
pub type FinalStates = BTreeMap<String, BTreeMap<String, Record>>;

/// What a region holds for a key: value (`None` for a tombstone) and version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Held {
    /// The value; `None` for a tombstone.
    pub value: Option<String>,
    /// The version that won in the region.
    pub version: Version,
}

impl Held {
    pub(super) fn of(r: &Record) -> Self {
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
    pub(super) fn metrics(&self, m: &mut BTreeMap<String, f64>) {
        m.insert("acked_writes".into(), self.acked_writes as f64);
        m.insert("unknown_writes".into(), self.unknown_writes as f64);
        m.insert("failed_writes".into(), self.failed_writes as f64);
        m.insert("keys_checked".into(), self.keys_checked as f64);
        m.insert("regions_checked".into(), self.regions_checked as f64);
    }
}

/// A write or delete with its outcome, as the checkers see it.
#[derive(Debug, Clone)]
pub(super) struct Write {
    /// Invoke index, to name it.
    pub(super) invoke_index: u64,
    /// Region it was sent to.
    pub(super) region: String,
    /// Value written; `None` for a delete.
    pub(super) value: Option<String>,
    /// Version from the completion, if any; always set for acked writes.
    pub(super) version: Option<Version>,
    /// When the client invoked it (`time_ns` of the invoke): it cannot have taken effect before.
    pub(super) invoked_ns: u64,
    /// When its completion was recorded; `None` when it never completed.
    pub(super) completed_ns: Option<u64>,
}

impl Write {
    pub(super) fn to_ref(&self) -> WriteRef {
        WriteRef {
            invoke_index: self.invoke_index,
            region: self.region.clone(),
            value: self.value.clone(),
            version: self.version.clone(),
        }
    }

    /// Whether `h` could be this (unknown or failed) write: same value, and same version if one is known.
    pub(super) fn matches(&self, h: &Held) -> bool {
        self.value == h.value && self.version.as_ref().is_none_or(|v| *v == h.version)
    }
}

/// The writes of one key, by outcome.
#[derive(Debug, Default)]
pub(super) struct KeyWrites {
    /// Completed `ok`, each with a version.
    pub(super) acked: Vec<Write>,
    /// Completed `info` or never completed.
    pub(super) unknown: Vec<Write>,
    /// Completed `fail`.
    pub(super) failed: Vec<Write>,
}

/// The version of an acked write; `collect_from_ops` guarantees it is set.
pub(super) fn acked_version(w: &Write) -> &Version {
    w.version.as_ref().expect("collect_from_ops rejects acked writes without a version")
}

pub(super) fn pair(history: &[Event]) -> Result<Vec<Operation>, CheckError> {
    history::pair(history).map_err(CheckError::MalformedHistory)
}

pub(super) fn collect_writes(history: &[Event]) -> Result<BTreeMap<String, KeyWrites>, CheckError> {
    collect_from_ops(&pair(history)?)
}

pub(super) fn collect_from_ops(ops: &[Operation]) -> Result<BTreeMap<String, KeyWrites>, CheckError> {
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
        let w = Write {
            invoke_index: inv.index,
            region: inv.region.clone(),
            value,
            version,
            invoked_ns: inv.time_ns,
            completed_ns: op.completion.as_ref().map(|c| c.time_ns),
        };
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

/// For a store that keeps no tombstones (etcd): gives every key absent from a region's final state the tombstone
/// of the latest delete that can explain its absence, so that the checkers judge the delete as they judge a
/// tombstone. The latest delete is the highest-versioned acked (or unknown-outcome, versioned) delete of the key;
/// an unknown-outcome delete without a version may have taken effect after every write, so it explains the
/// absence at a version just above every known write. A key with no delete in the history stays absent, and a
/// write acked after the latest delete is still lost. Returns how many absences were filled.
pub fn absent_as_latest_delete(history: &[Event], final_states: &mut FinalStates) -> Result<u64, CheckError> {
    let writes = collect_writes(history)?;
    let mut filled = 0;
    for (key, kw) in &writes {
        let deletes = kw.acked.iter().chain(&kw.unknown).filter(|w| w.value.is_none());
        let latest_versioned = deletes.clone().filter_map(|w| w.version.clone()).max();
        let unversioned = deletes.clone().any(|w| w.version.is_none());
        let version = if unversioned {
            let top = kw.acked.iter().chain(&kw.unknown).filter_map(|w| w.version.clone()).max();
            match top {
                Some(t) => Some(Version { logical: t.logical.saturating_add(1), ..t }),
                None => latest_versioned,
            }
        } else {
            latest_versioned
        };
        let Some(version) = version else { continue };
        for (region, state) in final_states.iter_mut() {
            if !state.contains_key(key) {
                let tombstone = Record {
                    key: key.clone(),
                    value: None,
                    version: version.clone(),
                    region: region.clone(),
                    residency: None,
                };
                state.insert(key.clone(), tombstone);
                filled += 1;
            }
        }
    }
    Ok(filled)
}

pub(super) fn keys_in_scope<'a>(
    writes: &'a BTreeMap<String, KeyWrites>,
    final_states: &'a FinalStates,
) -> BTreeSet<&'a String> {
    writes.keys().chain(final_states.values().flat_map(|m| m.keys())).collect()
}

pub(super) fn counts(
    writes: &BTreeMap<String, KeyWrites>,
    keys: &BTreeSet<&String>,
    final_states: &FinalStates,
) -> Counts {
    Counts {
        acked_writes: writes.values().map(|k| k.acked.len() as u64).sum(),
        unknown_writes: writes.values().map(|k| k.unknown.len() as u64).sum(),
        failed_writes: writes.values().map(|k| k.failed.len() as u64).sum(),
        keys_checked: keys.len() as u64,
        regions_checked: final_states.len() as u64,
    }
}

pub(super) fn validate_states(final_states: &FinalStates) -> Result<(), CheckError> {
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
