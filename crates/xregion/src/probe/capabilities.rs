//! What a region's client can do and how its store orders writes: a leaf module, so that each kind of database
//! (`db`) can declare its own without importing the probe.

use xregion_check::consistency::Guarantee;

/// What a region's client can do, for the checks' `Needs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// It speaks the whole HTTP probe contract: routes beyond the key-value operations (stats, audit, erase,
    /// residency, replication status), TLS listeners to scan, and URLs the load generator can request.
    pub http_contract: bool,
    /// It reads and writes xregion's keys (the probe contract's key-value routes, or xregion's table in a
    /// database); a region known only by its application API does not.
    pub keys: bool,
    /// What it is, for a skip reason: `HTTP probe contract`, `postgres database`, `etcd member`.
    pub kind: &'static str,
    /// A delete leaves a versioned tombstone; otherwise an absent key stands for the latest known delete.
    pub tombstones: bool,
    /// The order the store resolves concurrent writes by, as the last-write-wins checker names it.
    pub order: &'static str,
    /// The session guarantees this kind of store keeps across regions by default, when the configuration declares
    /// none (`[targets] session_guarantees`): only what it keeps in its default setup, so that a default is never a
    /// promise the store does not make.
    pub promises: &'static [Guarantee],
    /// Why it keeps those and not the others, for the session-guarantees check's note.
    pub promises_why: &'static str,
}
