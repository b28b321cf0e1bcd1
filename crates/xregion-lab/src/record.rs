//! Stored records and the last-writer-wins merge.
//!
//! A key's record is its value (or `None` for a tombstone) and the `Version` that wrote it. Merging a remote
//! record keeps whichever version is greater in `Version`'s derived order `(wall_ms, logical, origin)`, so every
//! region picks the same winner whatever the arrival order, a tombstone keeps an older write from coming back,
//! and applying the same entry twice changes nothing.

use serde::{Deserialize, Serialize};
use xregion_model::Version;

/// What the `kv` table stores for a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The value; `None` is a tombstone.
    pub value: Option<String>,
    /// The version that won for this key here.
    pub version: Version,
    /// The residency tag it was written with (`None`: untagged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<String>,
}

/// How a remote entry is merged into the local record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergePolicy {
    /// Last-writer-wins by version: the correct behavior.
    Lww,
    /// Defect: the entry that arrives last wins, whatever its version.
    ArrivalOrder,
}

/// Whether `incoming` should replace `current` under `policy`.
pub fn should_replace(current: Option<&StoredRecord>, incoming: &StoredRecord, policy: MergePolicy) -> bool {
    match (current, policy) {
        (None, _) => true,
        (Some(_), MergePolicy::ArrivalOrder) => true,
        (Some(cur), MergePolicy::Lww) => incoming.version > cur.version,
    }
}

/// What is stored in the clear beside a sealed value: everything but the value.
#[derive(Serialize, Deserialize)]
struct Meta {
    version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    residency: Option<String>,
    /// Whether a sealed value follows (false: a tombstone).
    has_value: bool,
}

/// Why a stored record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The clear part is not valid.
    #[error("bad record metadata: {0}")]
    Meta(#[from] serde_json::Error),
    /// The value does not open (wrong key, tampered, truncated) or is not UTF-8.
    #[error("the value cannot be opened: {0}")]
    Value(String),
}

/// Encodes a record for the `kv` table: its metadata as one line of JSON, then the value sealed by `sealer`
/// with the key as associated data (so a sealed value moved to another key does not open). The value never
/// appears in the clear unless `sealer` is the plaintext one (the `plaintext_at_rest` defect).
pub fn encode(record: &StoredRecord, key: &str, sealer: &crate::crypto::Sealer) -> Vec<u8> {
    let meta = Meta {
        version: record.version.clone(),
        residency: record.residency.clone(),
        has_value: record.value.is_some(),
    };
    // Compact JSON of strings and integers: it cannot fail, and it holds no raw newline.
    let mut out = serde_json::to_vec(&meta).unwrap_or_default();
    out.push(b'\n');
    if let Some(v) = &record.value {
        out.extend_from_slice(&sealer.seal(v.as_bytes(), key.as_bytes()));
    }
    out
}

/// Decodes a record of `key` from the `kv` table (see `encode`).
pub fn decode(bytes: &[u8], key: &str, sealer: &crate::crypto::Sealer) -> Result<StoredRecord, DecodeError> {
    let split = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len());
    let meta: Meta = serde_json::from_slice(&bytes[..split])?;
    let value = if meta.has_value {
        let sealed = bytes.get(split + 1..).unwrap_or_default();
        let plain = sealer.open(sealed, key.as_bytes()).map_err(|e| DecodeError::Value(e.to_string()))?;
        Some(String::from_utf8(plain).map_err(|e| DecodeError::Value(e.to_string()))?)
    } else {
        None
    };
    Ok(StoredRecord { value, version: meta.version, residency: meta.residency })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rec(value: Option<&str>, wall_ms: u64, logical: u32, origin: &str) -> StoredRecord {
        StoredRecord {
            residency: None,
            value: value.map(str::to_string),
            version: Version { wall_ms, logical, origin: origin.to_string() },
        }
    }

    /// Applies entries to an in-memory map the way the store does.
    fn apply(map: &mut BTreeMap<String, StoredRecord>, key: &str, r: &StoredRecord, policy: MergePolicy) {
        if should_replace(map.get(key), r, policy) {
            map.insert(key.to_string(), r.clone());
        }
    }

    /// Goal: the higher version wins whatever the arrival order; ties on the clock are broken by origin.
    #[test]
    fn higher_version_wins_in_any_order() {
        let a = rec(Some("a"), 10, 0, "us-east-1");
        let b = rec(Some("b"), 10, 0, "us-west-2"); // same stamp, greater origin
        let c = rec(Some("c"), 9, 5, "eu-west-1");
        let orders = [[&a, &b, &c], [&c, &b, &a], [&b, &a, &c], [&c, &a, &b]];
        for order in orders {
            let mut m = BTreeMap::new();
            for r in order {
                apply(&mut m, "k", r, MergePolicy::Lww);
            }
            assert_eq!(m["k"], b);
        }
    }

    /// Goal: a tombstone keeps an older write from resurrecting the key.
    #[test]
    fn tombstone_not_resurrected() {
        let mut m = BTreeMap::new();
        apply(&mut m, "k", &rec(None, 20, 0, "us-east-1"), MergePolicy::Lww);
        apply(&mut m, "k", &rec(Some("old"), 15, 0, "eu-west-1"), MergePolicy::Lww);
        assert_eq!(m["k"].value, None);
        // A newer write does replace the tombstone.
        apply(&mut m, "k", &rec(Some("new"), 21, 0, "eu-west-1"), MergePolicy::Lww);
        assert_eq!(m["k"].value.as_deref(), Some("new"));
    }

    /// Goal: applying the same entry twice changes nothing.
    #[test]
    fn apply_twice_is_no_change() {
        let mut m = BTreeMap::new();
        let r = rec(Some("v"), 5, 1, "us-west-2");
        apply(&mut m, "k", &r, MergePolicy::Lww);
        let once = m.clone();
        assert!(!should_replace(m.get("k"), &r, MergePolicy::Lww));
        apply(&mut m, "k", &r, MergePolicy::Lww);
        assert_eq!(m, once);
    }

    /// Goal: the arrival-order defect really breaks LWW (so a checker can catch it).
    #[test]
    fn arrival_order_defect_lets_older_win() {
        let mut m = BTreeMap::new();
        apply(&mut m, "k", &rec(Some("new"), 20, 0, "a"), MergePolicy::ArrivalOrder);
        apply(&mut m, "k", &rec(Some("old"), 10, 0, "b"), MergePolicy::ArrivalOrder);
        assert_eq!(m["k"].value.as_deref(), Some("old"));
    }

    /// Goal: the table encoding round-trips tombstones, values and tags, sealed and in plaintext; a sealed
    /// value's bytes are not in the encoding and it does not open under another key (the key is the AAD).
    #[test]
    fn encode_round_trip() {
        let lab = std::env::temp_dir().join(format!("xregion-lab-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&lab);
        crate::crypto::ensure_kek(&lab).unwrap();
        let sealed = crate::crypto::DataKey::load_or_create(&lab, "a").unwrap();
        let plain = crate::crypto::Sealer::plaintext();
        let mut tagged = rec(Some("canary-7f3a"), 5, 0, "z");
        tagged.residency = Some("eu".into());
        for r in [rec(None, 1, 2, "x"), rec(Some("v"), 3, 4, "y"), tagged.clone()] {
            for s in [&sealed, &plain] {
                assert_eq!(decode(&encode(&r, "k", s), "k", s).unwrap(), r);
            }
        }
        let bytes = encode(&tagged, "k", &sealed);
        assert!(!bytes.windows(11).any(|w| w == b"canary-7f3a"), "the value is sealed");
        assert!(decode(&bytes, "other", &sealed).is_err(), "a sealed value is bound to its key");
        assert!(encode(&tagged, "k", &plain).windows(11).any(|w| w == b"canary-7f3a"), "the defect stores it clear");
        let _ = std::fs::remove_dir_all(&lab);
    }
}
