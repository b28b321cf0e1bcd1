//! The version of a stored value: a hybrid logical clock timestamp plus the region that wrote it.
//!
//! Last-write-wins compares versions as the tuple `(wall_ms, logical, origin)`. The origin region breaks ties
//! between two regions that produced the same timestamp, so the order is total and every region picks the same
//! winner. Deriving `Ord` on the fields in this order gives exactly that comparison.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical clock timestamp with the writing region as tie-break.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Physical part: milliseconds since the Unix epoch, never behind the largest timestamp the region has seen.
    pub wall_ms: u64,
    /// Logical part: orders events that share `wall_ms`.
    pub logical: u32,
    /// The region that accepted the write; breaks ties between regions.
    pub origin: String,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.logical, self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(wall_ms: u64, logical: u32, origin: &str) -> Version {
        Version { wall_ms, logical, origin: origin.to_string() }
    }

    /// Goal: the derived order is the LWW order (wall, then logical, then origin).
    #[test]
    fn order_is_wall_then_logical_then_origin() {
        assert!(v(2, 0, "a") > v(1, 9, "z"));
        assert!(v(1, 2, "a") > v(1, 1, "z"));
        assert!(v(1, 1, "b") > v(1, 1, "a"));
        assert_eq!(v(1, 1, "a"), v(1, 1, "a"));
    }
}
