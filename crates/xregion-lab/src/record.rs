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

/// Encodes a record for the `kv` table.
pub fn encode(record: &StoredRecord) -> Vec<u8> {
    // Serializing a struct of strings and integers cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Decodes a record from the `kv` table.
pub fn decode(bytes: &[u8]) -> Result<StoredRecord, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rec(value: Option<&str>, wall_ms: u64, logical: u32, origin: &str) -> StoredRecord {
        StoredRecord {
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

    /// Goal: the table encoding round-trips tombstones and values.
    #[test]
    fn encode_round_trip() {
        for r in [rec(None, 1, 2, "x"), rec(Some("v"), 3, 4, "y")] {
            assert_eq!(decode(&encode(&r)).unwrap(), r);
        }
    }
}
