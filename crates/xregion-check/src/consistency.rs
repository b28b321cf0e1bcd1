//! Consistency checkers: a recorded history against the final state read from every region, and (for
//! `check_lww_realtime`) against the real-time order of its writes.
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
//! # `check_lww_realtime` rules, for every key
//! Real time is the history's `time_ns`: a write *began* at its invoke and *ended* at its completion (never, without
//! one). The tolerance is the store's stated clock resolution plus the measuring tolerance.
//! - A key the regions disagree on is not judged (`check_convergence` reports it).
//! - The *winner* is the record every region holds, attributed to an acked write with its version and value. When
//!   it is an unknown write (same value), the key is not judged: that write may have taken effect at any moment,
//!   so no write is held against it. When it is a failed write, no write at all, or the key is absent although a
//!   write was acked, the key is *unexplained*, a finding.
//! - Every other acked write that *began more than the tolerance after the winner ended* is a violation: it came
//!   later in real time, yet lost. Unknown and failed writes are never violations.
//! - The evidence is the number of *ordered* acked writes of judged keys: those that began more than the
//!   tolerance after an acked write of the key in another region ended.
//!
//! # `check_convergence`
//! A key is divergent when the regions do not all hold the same (value, version), or it is present (tombstones
//! included) in some regions and absent in others.
//!
//! # `check_sessions`
//! Read your writes and monotonic reads, per session (one history process); see the `session` module's doc.
//!
//! # Stores without tombstones
//! etcd forgets a deleted key. For such a store the caller first runs [`absent_as_latest_delete`], which reads an
//! absent key as the tombstone of the latest delete that can explain it; the rules above then apply unchanged.

mod convergence;
mod error;
mod lww;
mod model;
mod realtime;
mod session;
mod table;
mod writes;

pub use convergence::{Convergence, DivergentKey, check_convergence};
pub use error::CheckError;
pub use lww::{LwwCheck, LwwViolation, LwwViolationKind, check_lww};
pub use model::{Counts, FinalStates, Held, WriteRef, absent_as_latest_delete};
pub use realtime::{
    ORDERED_WRITES_MIN, RealtimeCheck, RealtimeViolation, UnexplainedKey, UnexplainedKind, check_lww_realtime,
};
pub use session::{Guarantee, OBSERVATIONS_MIN, SessionCheck, SessionOp, SessionViolation, Tally, check_sessions};
pub use table::TABLE_ROWS_MAX;
pub use writes::{BadFinal, LostWrite, VersionConflict, WriteCheck, check_writes};
pub use xregion_model::history::Event;

#[cfg(test)]
mod tests;
