//! The store's redb tables and how their rows are encoded: a record through `record::encode` (its value sealed), an
//! outbox entry as one line of JSON metadata followed by its value sealed with the key as associated data. Also the
//! two table-wide operations the writer needs: scrubbing a key's older values from the outbox (an erasure) and the
//! lowest durable cursor of a set of peers.

use super::{StoreError, db_err};
use crate::crypto::Sealer;
use crate::proto::Entry;
use crate::record::{self, StoredRecord};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use xregion_model::Version;

/// Key -> `StoredRecord` (the value sealed).
pub(super) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// Seq -> this region's own write to ship (`encode_outbox`).
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// Peer -> the highest seq it acknowledged, durable.
pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// The HLC high-water mark and the head seq, under the keys below.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `META` key of the HLC mark's wall clock.
pub(super) const META_HLC_WALL_MS: &str = "hlc_wall_ms";

/// `META` key of the HLC mark's logical counter.
pub(super) const META_HLC_LOGICAL: &str = "hlc_logical";

/// `META` key of the highest outbox seq.
pub(super) const META_HEAD_SEQ: &str = "head_seq";

/// The clear part of an outbox entry (the seq is the table key); the value follows it, sealed (see
/// `encode_outbox`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutboxMeta {
    /// The key written.
    key: String,
    /// The version stamped at commit.
    version: Version,
    /// The residency tag, if the write had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    residency: Option<String>,
    /// Whether the entry is an erasure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    erase: bool,
    /// Whether a sealed value follows.
    has_value: bool,
}

/// An outbox entry as stored: one line of JSON metadata, then the value sealed with the key as associated data.
pub(super) fn encode_outbox(e: &Entry, sealer: &Sealer) -> Vec<u8> {
    let meta = OutboxMeta {
        key: e.key.clone(),
        version: e.version.clone(),
        residency: e.residency.clone(),
        erase: e.erase,
        has_value: e.value.is_some(),
    };
    let mut out = serde_json::to_vec(&meta).unwrap_or_default();
    out.push(b'\n');
    if let Some(v) = &e.value {
        out.extend_from_slice(&sealer.seal(v.as_bytes(), e.key.as_bytes()));
    }
    out
}

/// An outbox entry from its stored bytes (`encode_outbox`), its value opened.
pub(super) fn decode_outbox(seq: u64, bytes: &[u8], sealer: &Sealer) -> Result<Entry, StoreError> {
    let corrupt = |source: String| StoreError::Corrupt { what: format!("outbox seq {seq}"), problem: source };
    let split = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len());
    let m: OutboxMeta = serde_json::from_slice(&bytes[..split]).map_err(|e| corrupt(e.to_string()))?;
    let value = if m.has_value {
        let plain = sealer
            .open(bytes.get(split + 1..).unwrap_or_default(), m.key.as_bytes())
            .map_err(|e| corrupt(e.to_string()))?;
        Some(String::from_utf8(plain).map_err(|e| corrupt(e.to_string()))?)
    } else {
        None
    };
    Ok(Entry { seq, key: m.key, value, version: m.version, residency: m.residency, erase: m.erase })
}

/// A record from its stored bytes, its value opened.
pub(super) fn decode_kv(key: &str, bytes: &[u8], sealer: &Sealer) -> Result<StoredRecord, StoreError> {
    record::decode(bytes, key, sealer)
        .map_err(|e| StoreError::Corrupt { what: key.to_string(), problem: e.to_string() })
}

/// Removes the value of every outbox entry of `key` whose version is below `below` (rewritten as tombstones
/// that still replicate). Scans the whole outbox: it holds only what some peer has not acknowledged yet.
pub(super) fn scrub_outbox(
    outbox: &mut redb::Table<u64, &[u8]>,
    key: &str,
    below: &Version,
    sealer: &Sealer,
) -> Result<u64, StoreError> {
    let mut rewrite = Vec::new();
    for item in outbox.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let e = decode_outbox(k.value(), v.value(), sealer)?;
        if e.key == key && e.value.is_some() && e.version < *below {
            rewrite.push(Entry { value: None, ..e });
        }
    }
    for e in &rewrite {
        outbox.insert(e.seq, encode_outbox(e, sealer).as_slice()).map_err(db_err)?;
    }
    Ok(rewrite.len() as u64)
}

/// The lowest durable cursor of `peers` (0 for a peer without one); `u64::MAX` when `peers` is empty.
pub(super) fn lowest_cursor(cursors: &redb::Table<&str, u64>, peers: &[String]) -> Result<u64, StoreError> {
    let mut min = u64::MAX;
    for p in peers {
        min = min.min(cursors.get(p.as_str()).map_err(db_err)?.map_or(0, |g| g.value()));
    }
    Ok(min)
}
