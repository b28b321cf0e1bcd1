//! Operation histories, recorded the way Jepsen records them.
//!
//! Every client operation is two events: an `invoke` when it is sent, and one completion: `ok` (it happened),
//! `fail` (it certainly did not happen) or `info` (the outcome is unknown, for example a timeout). The checkers in
//! `xregion-check` read these events; the runner writes them to `history.jsonl`, one event per line.

use crate::Version;
use serde::{Deserialize, Serialize};

/// The phase of an operation an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client is about to send the operation.
    Invoke,
    /// The operation certainly took effect.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// The outcome is unknown: the operation may or may not have taken effect.
    Info,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpFn {
    /// Store a value under a key.
    Write,
    /// Read a key.
    Read,
    /// Delete a key (stores a tombstone).
    Delete,
}

/// One event of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, from 0.
    pub index: u64,
    /// The logical client that issued the operation; one client has at most one operation in flight.
    pub process: u32,
    /// Invoke or a completion.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation.
    pub f: OpFn,
    /// The region the operation was sent to.
    pub region: String,
    /// The key.
    pub key: String,
    /// The value written (on invoke and ok of a write) or read (on ok of a read); `None` for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The version the deployment reported on completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Nanoseconds since the start of the run, from the runner's monotonic clock.
    pub time_ns: u64,
    /// Why the operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A complete operation: an invoke paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The invoke event.
    pub invoke: Event,
    /// The completion; `None` when the history ended before the operation completed, which counts as `info`.
    pub completion: Option<Event>,
}

impl Operation {
    /// The outcome: `Ok`, `Fail` or `Info` (unknown, including a missing completion).
    pub fn outcome(&self) -> EventType {
        self.completion.as_ref().map_or(EventType::Info, |c| c.kind)
    }
}

/// Pairs each invoke with the next completion of the same process.
///
/// A completion with no open invoke is returned as an error naming its index, because it means the history was
/// recorded wrongly and no verdict drawn from it could be trusted.
pub fn pair(events: &[Event]) -> Result<Vec<Operation>, String> {
    let mut open: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
    let mut ops: Vec<Operation> = Vec::new();
    for e in events {
        match e.kind {
            EventType::Invoke => {
                if let Some(prev) = open.insert(e.process, ops.len()) {
                    return Err(format!(
                        "process {} invoked event {} while event {} was still open",
                        e.process, e.index, ops[prev].invoke.index
                    ));
                }
                ops.push(Operation { invoke: e.clone(), completion: None });
            }
            _ => {
                let Some(i) = open.remove(&e.process) else {
                    return Err(format!(
                        "event {} completes nothing: process {} has no open invoke",
                        e.index, e.process
                    ));
                };
                ops[i].completion = Some(e.clone());
            }
        }
    }
    Ok(ops)
}
