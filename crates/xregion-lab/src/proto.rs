//! The replication protocol between regions: length-delimited JSON frames over one TCP connection per
//! directed link.
//!
//! The sender opens with `Hello{from}` and then streams `Batch`es of its own outbox entries without waiting for
//! acknowledgements (pipelining); the receiver answers each applied batch with `Ack{seq}` for its highest
//! sequence number. A receiver checks a whole batch with `validate_batch` before applying any of it, so a
//! malformed frame is rejected with no partial apply.
//!
//! Right after `Hello`, and whenever it has sent nothing for the heartbeat interval, the sender sends
//! `Heartbeat{head, acked}`: its outbox head and the highest seq this receiver acknowledged (on this connection
//! or an earlier one). So an idle but healthy link is told apart from a dead one, and the receiver knows how far
//! behind the sender it is, even right after its own restart. Heartbeats are not acknowledged.
//!
//! The same listener also answers round-trip probes (`GET /v1/peers/rtt`), so that they cross the WAN exactly as
//! replication does: a prober opens a fresh connection with `Probe{from}` instead of `Hello`, then sends up to
//! `PROBE_PINGS_MAX` sequential `Ping{nonce}`s, each answered by `Pong{nonce}`. A probe connection never carries
//! batches, and anything but a ping on it closes it.
//!
//! The lab's commerce application calls another region the same way (`Call{from, call}`, answered by one
//! `Answer{answer}`), so that its calls cross the WAN, and its faults, exactly as replication does.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;
use xregion_model::Version;
use xregion_model::wire::{BODY_BYTES_MAX, key_problem};

/// Largest frame either side accepts, in bytes: a full batch of the largest values plus JSON overhead fits.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most entries in one batch: bounds the receiver's transaction size and memory.
pub const BATCH_ENTRIES_MAX: usize = 512;
/// A sender stops adding entries to a batch once it holds about this many bytes of keys and values.
pub const BATCH_BYTES_TARGET: usize = 1024 * 1024;
/// Most pings one probe connection may carry (the most round trips one `GET /v1/peers/rtt` asks for); a
/// prober that sends more is cut off, so a probe connection cannot be held open forever.
pub const PROBE_PINGS_MAX: u32 = xregion_model::wire::RTT_COUNT_MAX;

/// One outbox entry on the wire: a write (or tombstone) made in the sending region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The sender's outbox sequence number; strictly increasing within a batch.
    pub seq: u64,
    /// The key.
    pub key: String,
    /// The value; `None` for a tombstone.
    pub value: Option<String>,
    /// The version the origin region stamped; its origin must be the sender.
    pub version: Version,
    /// The residency tag of the write (`None`: untagged, it goes everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<String>,
    /// An erasure: the receiver replaces the key's value with this tombstone (value `None`) and removes the key's
    /// value from its own outbox too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erase: bool,
}

/// A replication frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// First frame from the sender: who it is.
    Hello {
        /// The sending region.
        from: String,
    },
    /// Entries from the sender's outbox, in sequence order.
    Batch {
        /// The batch covers the outbox seqs after this one: it follows the previous batch on the connection,
        /// whose `through` this equals. A receiver that sees a different value on the same connection knows
        /// frames were lost on the link.
        after: u64,
        /// The entries.
        entries: Vec<Entry>,
        /// Every outbox entry up to this seq is covered: sent here or earlier, or skipped because the peer may
        /// not hold it (residency). At least the last entry's seq, and above `after`. The receiver
        /// acknowledges it, so skipped entries still advance the sender's cursor.
        through: u64,
    },
    /// From the sender, when it has nothing else to send: it is alive, and how far its outbox goes.
    Heartbeat {
        /// The sender's highest outbox seq.
        head: u64,
        /// The highest seq the receiver acknowledged to the sender (the sender's cursor for the receiver).
        acked: u64,
    },
    /// From the receiver: every entry up to and including `seq` is applied durably.
    Ack {
        /// Highest applied sequence number.
        seq: u64,
    },
    /// First frame of a round-trip probe connection (instead of `Hello`): who is measuring.
    Probe {
        /// The measuring region.
        from: String,
    },
    /// From the prober: answer with `Pong` carrying the same nonce.
    Ping {
        /// Distinguishes the round trips of one connection.
        nonce: u64,
    },
    /// From the probed region: the answer to `Ping`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// First and only frame of an application call (instead of `Hello`): the lab's commerce application asking
    /// another region to do something only that region may do (`node::app::rpc`).
    Call {
        /// The calling region.
        from: String,
        /// The call (`node::app::rpc::Call` as JSON).
        call: serde_json::Value,
    },
    /// The called region's answer to `Call`; then the connection closes.
    Answer {
        /// The answer (`node::app::rpc::Answer` as JSON).
        answer: serde_json::Value,
    },
}

/// Why a frame or batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// An entry is tagged for a residency that does not allow the receiving region.
    #[error("entry seq {seq} is tagged {tag:?}, which {region} may not hold")]
    Residency {
        /// The entry.
        seq: u64,
        /// Its residency tag.
        tag: String,
        /// The receiving region.
        region: String,
    },
    /// The frame is not valid JSON for `Frame`.
    #[error("frame is not a valid replication frame: {0}")]
    Decode(String),
    /// The batch has no entries.
    #[error("batch is empty")]
    Empty,
    /// The batch has more than `BATCH_ENTRIES_MAX` entries.
    #[error("batch has {0} entries; the limit is {BATCH_ENTRIES_MAX}")]
    TooMany(usize),
    /// An entry's version names a region other than the sender.
    #[error("entry seq {seq} has origin {origin:?} but the sender is {from:?}")]
    WrongOrigin {
        /// The entry.
        seq: u64,
        /// Its origin.
        origin: String,
        /// The sender from Hello.
        from: String,
    },
    /// An entry's key breaks the key rules.
    #[error("entry seq {seq}: {problem}")]
    BadKey {
        /// The entry.
        seq: u64,
        /// What is wrong with the key.
        problem: String,
    },
    /// An entry's value is larger than the contract allows.
    #[error("entry seq {seq}: value is {len} bytes; the limit is {BODY_BYTES_MAX}")]
    ValueTooLong {
        /// The entry.
        seq: u64,
        /// Its length.
        len: usize,
    },
    /// The batch's range (`after`, `through`] is empty or does not hold its entries.
    #[error("batch says it covers seqs after {after} through {through} but its entries run from seq {first} to {last}")]
    BadRange {
        /// The batch's `after`.
        after: u64,
        /// The batch's `through`.
        through: u64,
        /// Its first entry's seq (`after + 1` with no entries).
        first: u64,
        /// Its last entry's seq (`through` with no entries).
        last: u64,
    },
    /// Sequence numbers are not strictly increasing.
    #[error("entry seq {seq} follows seq {prev}; sequence numbers must increase")]
    SeqNotIncreasing {
        /// The previous entry's seq.
        prev: u64,
        /// This entry's seq.
        seq: u64,
    },
}

/// The framing codec both sides use, with the frame size bounded.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(FRAME_BYTES_MAX).new_codec()
}

/// Encodes a frame as JSON.
pub fn encode(frame: &Frame) -> Bytes {
    // A frame of strings and integers always serializes.
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}

/// Decodes a frame.
pub fn decode(bytes: &[u8]) -> Result<Frame, BatchError> {
    serde_json::from_slice(bytes).map_err(|e| BatchError::Decode(e.to_string()))
}

/// Checks a whole `Batch` frame from `from` before any of it is applied: `validate_batch` for its entries (an
/// empty list is allowed only as a skip of entries the receiver may not hold) and a range (`after`, `through`]
/// that is not empty and holds every entry.
pub fn validate_batch_frame(from: &str, after: u64, entries: &[Entry], through: u64) -> Result<(), BatchError> {
    let first = entries.first().map_or(after.saturating_add(1), |e| e.seq);
    let last = entries.last().map_or(through, |e| e.seq);
    if through <= after || first <= after || last > through {
        return Err(BatchError::BadRange { after, through, first, last });
    }
    if entries.is_empty() { Ok(()) } else { validate_batch(from, entries) }
}

/// Checks a whole batch from `from` before any of it is applied.
pub fn validate_batch(from: &str, entries: &[Entry]) -> Result<(), BatchError> {
    if entries.is_empty() {
        return Err(BatchError::Empty);
    }
    if entries.len() > BATCH_ENTRIES_MAX {
        return Err(BatchError::TooMany(entries.len()));
    }
    let mut prev: Option<u64> = None;
    for e in entries {
        if e.version.origin != from {
            return Err(BatchError::WrongOrigin {
                seq: e.seq,
                origin: e.version.origin.clone(),
                from: from.to_string(),
            });
        }
        if let Some(problem) = key_problem(&e.key) {
            return Err(BatchError::BadKey { seq: e.seq, problem });
        }
        if let Some(v) = &e.value
            && v.len() > BODY_BYTES_MAX
        {
            return Err(BatchError::ValueTooLong { seq: e.seq, len: v.len() });
        }
        if let Some(p) = prev
            && e.seq <= p
        {
            return Err(BatchError::SeqNotIncreasing { prev: p, seq: e.seq });
        }
        prev = Some(e.seq);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, key: &str, origin: &str) -> Entry {
        Entry {
            seq,
            key: key.to_string(),
            value: Some("v".to_string()),
            version: Version { wall_ms: 1, logical: seq as u32, origin: origin.to_string() },
            residency: None,
            erase: false,
        }
    }

    /// Goal: a good batch passes and each kind of malformed batch is rejected with its reason.
    #[test]
    fn validation_rejects_malformed_batches() {
        let good = vec![entry(1, "a", "us-east-1"), entry(2, "b", "us-east-1")];
        assert_eq!(validate_batch("us-east-1", &good), Ok(()));
        assert_eq!(validate_batch("us-east-1", &[]), Err(BatchError::Empty));
        assert!(matches!(validate_batch("us-west-2", &good), Err(BatchError::WrongOrigin { seq: 1, .. })));
        let bad_key = vec![entry(1, "a", "x"), entry(2, "no spaces", "x")];
        assert!(matches!(validate_batch("x", &bad_key), Err(BatchError::BadKey { seq: 2, .. })));
        let backwards = vec![entry(5, "a", "x"), entry(5, "b", "x")];
        assert_eq!(validate_batch("x", &backwards), Err(BatchError::SeqNotIncreasing { prev: 5, seq: 5 }));
        let mut big = entry(1, "a", "x");
        big.value = Some("x".repeat(BODY_BYTES_MAX + 1));
        assert!(matches!(validate_batch("x", &[big]), Err(BatchError::ValueTooLong { .. })));
        let many: Vec<Entry> = (1..=BATCH_ENTRIES_MAX as u64 + 1).map(|s| entry(s, "k", "x")).collect();
        assert!(matches!(validate_batch("x", &many), Err(BatchError::TooMany(_))));
        let one = [entry(4, "k", "x")];
        assert_eq!(validate_batch_frame("x", 3, &one, 4), Ok(()));
        assert_eq!(validate_batch_frame("x", 0, &one, 9), Ok(()), "entries 1 to 3 and 5 to 9 skipped");
        let range = |after, through, first, last| Err(BatchError::BadRange { after, through, first, last });
        assert_eq!(validate_batch_frame("x", 0, &one, 3), range(0, 3, 4, 4), "through below the last entry");
        assert_eq!(validate_batch_frame("x", 4, &one, 5), range(4, 5, 4, 4), "an entry at or before after");
        assert_eq!(validate_batch_frame("x", 2, &[], 7), Ok(()), "a skip-only batch");
        assert_eq!(validate_batch_frame("x", 7, &[], 7), range(7, 7, 8, 7), "an empty range");
        assert!(matches!(validate_batch_frame("y", 0, &one, 4), Err(BatchError::WrongOrigin { .. })));
    }

    /// Goal: frames round-trip and junk or unknown fields are rejected.
    #[test]
    fn frames_round_trip_and_reject_junk() {
        for f in [
            Frame::Hello { from: "a".into() },
            Frame::Batch { after: 0, entries: vec![entry(1, "k", "a")], through: 3 },
            Frame::Batch { after: 1, entries: vec![], through: 3 },
            Frame::Ack { seq: 9 },
            Frame::Heartbeat { head: 12, acked: 10 },
            Frame::Probe { from: "a".into() },
            Frame::Ping { nonce: 7 },
            Frame::Pong { nonce: 7 },
        ] {
            assert_eq!(decode(&encode(&f)).unwrap(), f);
        }
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"type":"ack","seq":1,"extra":2}"#).is_err());
        assert!(decode(br#"{"type":"nope"}"#).is_err());
        assert_eq!(decode(br#"{"type":"ping","nonce":3}"#), Ok(Frame::Ping { nonce: 3 }));
        assert!(decode(br#"{"type":"ping"}"#).is_err(), "a ping needs its nonce");
        assert!(decode(br#"{"type":"pong","nonce":-1}"#).is_err());
        assert!(decode(br#"{"type":"probe","from":"a","seq":1}"#).is_err());
        assert_eq!(decode(br#"{"type":"heartbeat","head":4,"acked":2}"#), Ok(Frame::Heartbeat { head: 4, acked: 2 }));
        assert!(decode(br#"{"type":"heartbeat","head":4}"#).is_err(), "a heartbeat needs its cursor");
        assert!(decode(br#"{"type":"heartbeat","head":4,"acked":2,"x":1}"#).is_err());
    }
}
