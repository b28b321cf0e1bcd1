//! The probe contract's wire format: the JSON bodies xregion sends to and reads from a deployment.
//!
//! `docs/probe-contract.md` describes the routes; this module is the only place that defines the bodies, so the
//! lab's server and xregion's client cannot drift apart.

use crate::Version;
use serde::{Deserialize, Serialize};

/// Longest key the contract accepts, in bytes. Keys are also restricted to `[A-Za-z0-9._:/-]`.
pub const KEY_LEN_MAX: usize = 256;
/// Largest request body the contract accepts, in bytes; larger bodies get 413.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Most records one scan page returns.
pub const SCAN_LIMIT_MAX: usize = 1000;
/// Round trips per peer that `GET /v1/peers/rtt` measures when the query gives no `count`.
pub const RTT_COUNT_DEFAULT: u32 = 20;
/// Most round trips per peer one `GET /v1/peers/rtt` may ask for: bounds how long the request takes.
pub const RTT_COUNT_MAX: u32 = 100;

/// Returns why `key` is not a valid contract key, or `None` when it is valid.
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("key is empty".to_string());
    }
    if key.len() > KEY_LEN_MAX {
        return Some(format!("key is {} bytes long; the limit is {KEY_LEN_MAX}", key.len()));
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))) {
        return Some(format!("key contains {c:?}; allowed are A-Z a-z 0-9 . _ : / -"));
    }
    None
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, `degraded`, `fenced` or `down`.
    pub status: String,
    /// The region answering.
    pub region: String,
}

/// `PUT /v1/kv/{key}` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    /// The value to store.
    pub value: String,
    /// Data-residency tag (for example `eu`): the record may be stored and replicated only in the regions the
    /// deployment's residency policy allows for the tag. Absent: no restriction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<String>,
}

/// A stored record as returned by reads, writes, deletes and scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub key: String,
    /// The value; `None` for a tombstone (a deleted key).
    pub value: Option<String>,
    /// The version that won for this key in the answering region.
    pub version: Version,
    /// The region that answered.
    pub region: String,
    /// The record's data-residency tag, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<String>,
}

/// `GET /v1/kv?prefix=P&after=K&limit=N`: one page of records in key order, tombstones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanPage {
    /// Records with keys greater than `after` and starting with `prefix`, in key order.
    pub records: Vec<Record>,
    /// The key to pass as `after` for the next page, or `None` when this was the last page.
    pub next_after: Option<String>,
}

/// Replication state towards one peer, as seen by the sending region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer region.
    pub region: String,
    /// Highest outbox sequence number the peer acknowledged.
    pub acked_seq: u64,
    /// Entries written locally but not yet acknowledged by this peer.
    pub pending_entries: u64,
    /// Age of the oldest unacknowledged entry, in milliseconds (0 when nothing is pending).
    pub lag_ms: u64,
    /// Whether the replication stream to this peer is connected now.
    pub connected: bool,
    /// Whether this region heard from the peer recently (any frame, either direction); absent when the
    /// deployment does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_contact: Option<bool>,
    /// Milliseconds since this region last heard from the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_ms_ago: Option<u64>,
    /// Highest sequence number of the peer's outbox applied here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_seq: Option<u64>,
    /// The peer's outbox head as it last advertised it (heartbeats); applied_seq below it means this region is
    /// still catching up with the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_head_seq: Option<u64>,
}

/// `GET /v1/replication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The region answering.
    pub region: String,
    /// Highest sequence number in the local outbox.
    pub head_seq: u64,
    /// One entry per peer region.
    pub peers: Vec<PeerStatus>,
    /// Whether the region has fenced itself off (split-brain prevention: it lost contact with a majority and
    /// refuses writes); absent when the deployment does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<bool>,
}

/// Round trips from the answering region to one peer, over the path its replication uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRtt {
    /// The peer region.
    pub region: String,
    /// One round trip per sample, in milliseconds, in the order measured; empty when `error` is set.
    #[serde(default)]
    pub samples_ms: Vec<f64>,
    /// Why the peer could not be measured (unreachable, timed out, protocol error); absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/peers/rtt?count=N` (optional route): region-to-region round trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersRtt {
    /// The region answering (the one that measured).
    pub region: String,
    /// One entry per peer region, in name order.
    pub peers: Vec<PeerRtt>,
}

/// A latency distribution in milliseconds. Every field is 0 when `count` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// `GET /v1/stats/store` (optional route): how long requests waited for the store and used it, since the
/// region started or since the last `?reset=true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// The region answering.
    pub region: String,
    /// Waiting to get the store (the equivalent of acquiring a pooled database connection).
    pub acquire_ms: LatencySummary,
    /// Of which the writes' waits (optional): where reads never wait and outnumber writes, a P95 over all waits
    /// hides writes that wait long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_acquire_ms: Option<LatencySummary>,
    /// Of which the reads' waits (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_acquire_ms: Option<LatencySummary>,
    /// Each durable commit (group commit, fsync included).
    pub commit_ms: LatencySummary,
    /// Each read's time in the store.
    pub read_ms: LatencySummary,
}

/// Body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, for example `invalid_key`, `payload_too_large`, `not_found`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

/// One audit-log entry: who did what to which key, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the region's audit log, from 1, without gaps.
    pub seq: u64,
    /// When, in ms since the Unix epoch.
    pub time_ms: u64,
    /// The authenticated principal (a name, never a credential); `anonymous` when none was given.
    pub principal: String,
    /// `put`, `delete`, `erase`, or `denied` for a request refused with 401 or 403.
    pub action: String,
    /// The key acted on (or the path, for a denied request).
    pub key: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// `GET /v1/audit?after=SEQ&limit=N` (admin scope): one page of a region's audit log, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The region answering.
    pub region: String,
    /// Entries with `seq` greater than `after`.
    pub entries: Vec<AuditEntry>,
    /// The `after` of the next page, or `None` when this was the last page.
    pub next_after: Option<u64>,
}

/// `POST /v1/erase/{key}` (write scope): the key's value is erased in this region, and the erasure replicates to
/// every region, which also remove it from their replication logs and old versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EraseReceipt {
    /// The key.
    pub key: String,
    /// The region that accepted the erasure.
    pub region: String,
    /// The version of the tombstone that replaces the value (it carries no value).
    pub version: Version,
}
