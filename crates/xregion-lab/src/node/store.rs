//! A region's durable store: one redb file with the data, the outbox, the peer cursors and the clock mark.
//!
//! All writes go through one writer thread that does group commit: it takes every request queued on a bounded
//! channel (up to `GROUP_COMMIT_MAX`), stamps local writes with the HLC, writes the `kv` record and its `outbox`
//! entry, merges remote entries by last-writer-wins, saves the HLC high-water mark, and commits them all in ONE
//! transaction with `Durability::Immediate`. Only then is each request answered, so an acknowledged write is on
//! disk. Reads use read transactions directly and never wait for the writer.
//!
//! Tables: `kv` (key -> `StoredRecord`), `outbox` (seq -> own write to ship), `cursors` (peer -> highest seq
//! it acknowledged, durable), `meta` (HLC mark and head seq).
//!
//! `StoreTimings` keeps what `GET /v1/stats/store` reports, the lab's equivalent of connection-pool statistics:
//! how long each request waited to get the store (a write from enqueueing until the writer thread took it, a
//! read until it began on a blocking thread), how long each group commit took, and how long each read used the
//! store. Every user of the store counts (client requests, replication applies, cursor saves, outbox
//! collection, the shippers' outbox reads), as every user of a real pool contends for its connections.

use crate::crypto::Sealer;
use crate::hlc::{Hlc, Stamp, wall_now_ms};
use crate::proto::Entry;
use crate::record::{self, MergePolicy, StoredRecord};
use hdrhistogram::Histogram;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use xregion_model::Version;
use xregion_model::wire::LatencySummary;

/// Most requests one group commit takes: bounds the transaction size and the latency a batch adds.
pub const GROUP_COMMIT_MAX: usize = 512;
/// Depth of the writer's request queue; a full queue makes callers wait (backpressure), never grows.
pub const WRITE_QUEUE_DEPTH: usize = 4096;

/// Largest duration the timing histograms track, in microseconds (one hour); longer ones are clamped to it,
/// which keeps each histogram's memory fixed.
pub const TIMING_US_MAX: u64 = 3_600 * 1_000_000;
/// Significant digits of the timing histograms: a relative error below 0.1%.
const TIMING_SIGFIG: u8 = 3;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_HLC_WALL_MS: &str = "hlc_wall_ms";
const META_HLC_LOGICAL: &str = "hlc_logical";
const META_HEAD_SEQ: &str = "head_seq";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, ...).
    #[error("storage failed: {0}")]
    Db(#[from] Box<redb::Error>),
    /// A stored record could not be decoded (or its value could not be opened).
    #[error("stored record for {what} is corrupt: {problem}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decode error.
        problem: String,
    },
    /// The writer thread is gone (the node is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// A blocking read task failed.
    #[error("store task failed: {0}")]
    Task(String),
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// The clear part of an outbox entry (the seq is the table key); the value follows it, sealed (see
/// `encode_outbox`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutboxMeta {
    /// The key written.
    key: String,
    /// The version stamped at commit.
    version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    residency: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    erase: bool,
    /// Whether a sealed value follows.
    has_value: bool,
}

/// An outbox entry as stored: one line of JSON metadata, then the value sealed with the key as associated data.
fn encode_outbox(e: &Entry, sealer: &Sealer) -> Vec<u8> {
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

fn decode_outbox(seq: u64, bytes: &[u8], sealer: &Sealer) -> Result<Entry, StoreError> {
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

fn decode_kv(key: &str, bytes: &[u8], sealer: &Sealer) -> Result<StoredRecord, StoreError> {
    record::decode(bytes, key, sealer)
        .map_err(|e| StoreError::Corrupt { what: key.to_string(), problem: e.to_string() })
}

/// Removes the value of every outbox entry of `key` whose version is below `below` (rewritten as tombstones
/// that still replicate). Scans the whole outbox: it holds only what some peer has not acknowledged yet.
fn scrub_outbox(
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

/// One write request to the writer thread.
#[derive(Debug)]
pub enum WriteOp {
    /// A local write; `value: None` is a delete (tombstone).
    Local {
        /// The key.
        key: String,
        /// The value or `None`.
        value: Option<String>,
        /// The residency tag, already checked against the policy.
        residency: Option<String>,
    },
    /// An erasure (`POST /v1/erase/{key}`): the key's value is replaced by a tombstone with a new version, and
    /// the value is removed from every outbox entry of the key; with `replicate`, an erase entry is added to the
    /// outbox (not with the `erasure_local_only` defect).
    Erase {
        /// The key.
        key: String,
        /// Whether the erasure is shipped to the peers.
        replicate: bool,
    },
    /// Remote entries from `from`, already validated, merged with `policy`.
    Apply {
        /// The sending region.
        from: String,
        /// The entries.
        entries: Vec<Entry>,
        /// LWW, or the arrival-order defect.
        policy: MergePolicy,
    },
    /// Persist the acknowledged cursors of peers.
    SaveCursors(BTreeMap<String, u64>),
    /// Delete outbox entries every listed peer has durably acknowledged.
    Gc {
        /// Every peer region.
        peers: Vec<String>,
    },
    /// The `lose_unreplicated_on_kill` defect: delete every outbox entry above the lowest durable cursor of the
    /// listed peers and move each of their cursors up to the head, so those entries are never shipped.
    ForgetUnacked {
        /// Every peer region.
        peers: Vec<String>,
    },
}

/// What a write request produced.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// A local write committed with this record.
    Written(StoredRecord),
    /// Remote entries merged: how many replaced the local record.
    Applied(usize),
    /// Cursor save, GC or forgetting done (GC and forgetting: how many outbox entries were removed).
    Done(u64),
}

struct WriteReq {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, Arc<StoreError>>>,
    /// When the caller started to enqueue it (waiting for room on a full queue counts as waiting for the store).
    enqueued: Instant,
}

/// The three timing histograms, in microseconds.
struct Timings {
    /// Waits to get the store, writes and reads.
    acquire_us: Histogram<u64>,
    /// Group commits, fsync included.
    commit_us: Histogram<u64>,
    /// Reads' time in the store.
    read_us: Histogram<u64>,
}

impl Timings {
    fn new() -> Timings {
        // The bounds are constants that satisfy hdrhistogram's preconditions (low >= 1, high >= 2 * low,
        // sigfig <= 5), so construction cannot fail.
        let h = || {
            Histogram::new_with_bounds(1, TIMING_US_MAX, TIMING_SIGFIG).expect("constant histogram bounds are valid")
        };
        Timings { acquire_us: h(), commit_us: h(), read_us: h() }
    }
}

/// How long requests waited for the store and used it; shared by every `Store` handle and the writer thread.
///
/// One mutex guards the histograms: the writer takes it once per group commit and a read once when it ends,
/// each for a few hundred nanoseconds, so it stays off the critical path of the fsync.
pub struct StoreTimings {
    /// The histograms since the store opened or since the last reset.
    inner: Mutex<Timings>,
}

/// A duration in whole microseconds, clamped to the histograms' range.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(TIMING_US_MAX)
}

impl StoreTimings {
    /// Empty histograms.
    pub fn new() -> StoreTimings {
        StoreTimings { inner: Mutex::new(Timings::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timings> {
        // A panic while recording cannot leave a histogram half-updated in a way that matters for statistics.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One group commit of `commit`, and the wait of each request in it (microseconds).
    fn record_commit(&self, waits_us: &[u64], commit: Duration) {
        let mut t = self.lock();
        for w in waits_us {
            t.acquire_us.saturating_record(*w);
        }
        t.commit_us.saturating_record(micros(commit));
    }

    /// One read that waited `acquire` to begin and then used the store for `read`.
    fn record_read(&self, acquire: Duration, read: Duration) {
        let mut t = self.lock();
        t.acquire_us.saturating_record(micros(acquire));
        t.read_us.saturating_record(micros(read));
    }

    /// The summaries of `(acquire, commit, read)` in milliseconds; with `reset`, the histograms are emptied in
    /// the same critical section, so no sample is lost or counted twice between two resets.
    pub fn summaries(&self, reset: bool) -> (LatencySummary, LatencySummary, LatencySummary) {
        let mut t = self.lock();
        let out = (summary(&t.acquire_us), summary(&t.commit_us), summary(&t.read_us));
        if reset {
            t.acquire_us.reset();
            t.commit_us.reset();
            t.read_us.reset();
        }
        out
    }
}

impl Default for StoreTimings {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram of microseconds as a summary in milliseconds (all zero when it is empty).
pub fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

/// Handle to a region's store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The database, for read transactions.
    db: Arc<Database>,
    /// Requests to the writer thread (bounded).
    tx: mpsc::Sender<WriteReq>,
    /// Highest outbox seq committed; shippers wait on it.
    head: watch::Receiver<u64>,
    /// This region's name, stamped on local versions.
    region: Arc<str>,
    /// Waits and durations for `GET /v1/stats/store`.
    timings: Arc<StoreTimings>,
    /// Defect knob `store_commit_delay_ms`: extra time the writer holds every commit, shared with the writer.
    commit_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Seals values at rest (record values and outbox values).
    sealer: Arc<Sealer>,
}

/// The state loaded at open, for the node to resume from.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Durable acknowledged cursors per peer.
    pub cursors: BTreeMap<String, u64>,
    /// Highest outbox seq.
    pub head_seq: u64,
    /// Whether the store held any record or outbox entry (a restart rather than a first start).
    pub had_data: bool,
}

impl Store {
    /// Opens (or creates) the store at `path` and starts its writer thread.
    ///
    /// The writer thread stops when every `Store` handle is dropped; the returned join handle lets the owner
    /// wait for the last commit.
    pub fn open(
        path: &Path,
        region: &str,
        sealer: Sealer,
    ) -> Result<(Store, Recovered, std::thread::JoinHandle<()>), StoreError> {
        let sealer = Arc::new(sealer);
        let db = Database::create(path).map_err(db_err)?;
        // Create every table up front so read transactions never see a missing table.
        let (hlc_mark, head_seq, cursors, had_data) = {
            let txn = db.begin_write().map_err(db_err)?;
            let (mark, head, cursors, had_data) = {
                let had_records = !txn.open_table(KV).map_err(db_err)?.is_empty().map_err(db_err)?;
                txn.open_table(OUTBOX).map_err(db_err)?;
                let cursors_t = txn.open_table(CURSORS).map_err(db_err)?;
                let meta = txn.open_table(META).map_err(db_err)?;
                let get =
                    |k: &str| -> Result<u64, StoreError> { Ok(meta.get(k).map_err(db_err)?.map_or(0, |g| g.value())) };
                let mark = Stamp {
                    wall_ms: get(META_HLC_WALL_MS)?,
                    logical: u32::try_from(get(META_HLC_LOGICAL)?).unwrap_or(u32::MAX),
                };
                let head = get(META_HEAD_SEQ)?;
                let mut cursors = BTreeMap::new();
                for item in cursors_t.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    cursors.insert(k.value().to_string(), v.value());
                }
                (mark, head, cursors, had_records || head > 0)
            };
            txn.commit().map_err(db_err)?;
            (mark, head, cursors, had_data)
        };
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let (head_tx, head_rx) = watch::channel(head_seq);
        let timings = Arc::new(StoreTimings::new());
        let commit_delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            region: region.to_string(),
            hlc: Hlc::resume(hlc_mark),
            head_seq,
            head_tx,
            timings: timings.clone(),
            commit_delay_ms: commit_delay_ms.clone(),
            sealer: sealer.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("store-writer-{region}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        tracing::info!(region, head_seq, hlc_wall_ms = hlc_mark.wall_ms, peers = cursors.len(), "store opened");
        let store = Store { db, tx, head: head_rx, region: Arc::from(region), timings, commit_delay_ms, sealer };
        Ok((store, Recovered { cursors, head_seq, had_data }, handle))
    }

    /// This region's name.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Holds every later commit `delay_ms` longer (defect knob `store_commit_delay_ms`; 0 turns it off).
    pub fn set_commit_delay(&self, delay_ms: u64) {
        self.commit_delay_ms.store(delay_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The highest committed outbox seq, as a watch that changes after every commit.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// How long requests waited for the store and used it.
    pub fn timings(&self) -> &StoreTimings {
        &self.timings
    }

    /// Sends a request to the writer and waits for its commit.
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        let req = WriteReq { op, reply, enqueued: Instant::now() };
        self.tx.send(req).await.map_err(|_| Arc::new(StoreError::Closed))?;
        rx.await.map_err(|_| Arc::new(StoreError::Closed))?
    }

    /// Runs a read on the blocking pool so redb's file I/O never stalls the async workers. The wait for a
    /// blocking thread is the read's acquire time, and `f`'s run its read time.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        let called = Instant::now();
        tokio::task::spawn_blocking(move || {
            let began = Instant::now();
            let result = f(&me);
            me.timings.record_read(began.duration_since(called), began.elapsed());
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The record of `key`, tombstones included.
    pub fn get(&self, key: &str) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(KV).map_err(db_err)?;
        let Some(g) = t.get(key).map_err(db_err)? else { return Ok(None) };
        decode_kv(key, g.value(), &self.sealer).map(Some)
    }

    /// Up to `limit` records whose key starts with `prefix` and is greater than `after`, in key order, and
    /// whether more follow.
    pub fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, StoredRecord)>, bool), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(KV).map_err(db_err)?;
        let start: Bound<&str> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for item in t.range::<&str>((start, Bound::Unbounded)).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            let rec = decode_kv(key, v.value(), &self.sealer)?;
            out.push((key.to_string(), rec));
        }
        Ok((out, false))
    }

    /// Outbox entries after `after_seq`, at most `entries_max` and about `bytes_target` bytes.
    pub fn outbox_after(
        &self,
        after_seq: u64,
        entries_max: usize,
        bytes_target: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(OUTBOX).map_err(db_err)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let start = after_seq.saturating_add(1);
        for item in t.range(start..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let seq = k.value();
            let e = decode_outbox(seq, v.value(), &self.sealer)?;
            bytes += e.key.len() + e.value.as_ref().map_or(0, String::len);
            out.push(e);
            if out.len() >= entries_max || bytes >= bytes_target {
                break;
            }
        }
        Ok(out)
    }

    /// The wall-clock stamp of the oldest outbox entry after `after_seq`, if any.
    pub fn oldest_after_wall_ms(&self, after_seq: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.outbox_after(after_seq, 1, usize::MAX)?.first().map(|e| e.version.wall_ms))
    }
}

/// The lowest durable cursor of `peers` (0 for a peer without one); `u64::MAX` when `peers` is empty.
fn lowest_cursor(cursors: &redb::Table<&str, u64>, peers: &[String]) -> Result<u64, StoreError> {
    let mut min = u64::MAX;
    for p in peers {
        min = min.min(cursors.get(p.as_str()).map_err(db_err)?.map_or(0, |g| g.value()));
    }
    Ok(min)
}

/// The writer thread's state.
struct Writer {
    /// The database.
    db: Arc<Database>,
    /// This region.
    region: String,
    /// The clock; only this thread stamps versions.
    hlc: Hlc,
    /// Highest outbox seq committed.
    head_seq: u64,
    /// Publishes `head_seq` after each commit.
    head_tx: watch::Sender<u64>,
    /// Where each commit and each request's wait are recorded.
    timings: Arc<StoreTimings>,
    /// Defect knob: milliseconds to hold every commit (a slow disk).
    commit_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Seals values at rest.
    sealer: Arc<Sealer>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteReq>) {
        let mut batch: Vec<WriteReq> = Vec::with_capacity(GROUP_COMMIT_MAX);
        // Each request's wait from enqueueing until this thread took it, in microseconds.
        let mut waits_us: Vec<u64> = Vec::with_capacity(GROUP_COMMIT_MAX);
        while let Some(first) = rx.blocking_recv() {
            waits_us.push(micros(first.enqueued.elapsed()));
            batch.push(first);
            while batch.len() < GROUP_COMMIT_MAX {
                match rx.try_recv() {
                    Ok(r) => {
                        waits_us.push(micros(r.enqueued.elapsed()));
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let ops: Vec<&WriteOp> = batch.iter().map(|r| &r.op).collect();
            let saved = (self.hlc.clone(), self.head_seq);
            let started = Instant::now();
            let committed = self.commit(&ops);
            self.timings.record_commit(&waits_us, started.elapsed());
            waits_us.clear();
            match committed {
                Ok(outcomes) => {
                    metrics::histogram!("xregion_group_commit_batch_size").record(batch.len() as f64);
                    let _ = self.head_tx.send_if_modified(|h| {
                        let changed = *h != self.head_seq;
                        *h = self.head_seq;
                        changed
                    });
                    for (req, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = req.reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    // Nothing was committed: roll the in-memory state back so no seq is skipped. The clock
                    // may stay ahead (harmless: stamps only need to grow).
                    let (hlc, head) = saved;
                    self.hlc.observe(hlc.high_water());
                    self.head_seq = head;
                    tracing::error!(region = %self.region, error = %e, requests = batch.len(), "group commit failed");
                    let e = Arc::new(e);
                    for req in batch.drain(..) {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
        tracing::info!(region = %self.region, "store writer stopped");
    }

    /// Applies every op in one transaction and commits it durably.
    fn commit(&mut self, ops: &[&WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(Durability::Immediate).map_err(db_err)?;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut local_writes = 0u64;
        let mut applied_delays: Vec<(String, u64)> = Vec::new();
        {
            let mut kv = txn.open_table(KV).map_err(db_err)?;
            let mut outbox = txn.open_table(OUTBOX).map_err(db_err)?;
            let mut cursors = txn.open_table(CURSORS).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            for op in ops {
                let outcome = match op {
                    WriteOp::Local { key, value, residency } => {
                        let s = self.hlc.tick(wall_now_ms());
                        let version = Version { wall_ms: s.wall_ms, logical: s.logical, origin: self.region.clone() };
                        let rec = StoredRecord {
                            value: value.clone(),
                            version: version.clone(),
                            residency: residency.clone(),
                        };
                        kv.insert(key.as_str(), record::encode(&rec, key, &self.sealer).as_slice()).map_err(db_err)?;
                        self.head_seq += 1;
                        let e = Entry {
                            seq: self.head_seq,
                            key: key.clone(),
                            value: value.clone(),
                            version,
                            residency: residency.clone(),
                            erase: false,
                        };
                        outbox.insert(self.head_seq, encode_outbox(&e, &self.sealer).as_slice()).map_err(db_err)?;
                        local_writes += 1;
                        WriteOutcome::Written(rec)
                    }
                    WriteOp::Erase { key, replicate } => {
                        // Limitation: redb is copy-on-write, so the pages that held the old record and outbox
                        // entries are freed, not overwritten, and may keep the old bytes until reused. Sealed at
                        // rest these are ciphertext under the region's data key; with `plaintext_at_rest` the old
                        // value may still be found in the file. (Compacting needs `&mut Database`, which the
                        // shared handle cannot give while readers run; not done.)
                        let s = self.hlc.tick(wall_now_ms());
                        let version = Version { wall_ms: s.wall_ms, logical: s.logical, origin: self.region.clone() };
                        let rec = StoredRecord { value: None, version: version.clone(), residency: None };
                        kv.insert(key.as_str(), record::encode(&rec, key, &self.sealer).as_slice()).map_err(db_err)?;
                        scrub_outbox(&mut outbox, key, &version, &self.sealer)?;
                        if *replicate {
                            self.head_seq += 1;
                            let e = Entry {
                                seq: self.head_seq,
                                key: key.clone(),
                                value: None,
                                version,
                                residency: None,
                                erase: true,
                            };
                            outbox.insert(self.head_seq, encode_outbox(&e, &self.sealer).as_slice()).map_err(db_err)?;
                        }
                        WriteOutcome::Written(rec)
                    }
                    WriteOp::Apply { from, entries, policy } => {
                        let mut replaced = 0usize;
                        let now_ms = wall_now_ms();
                        for e in entries {
                            self.hlc.observe(Stamp { wall_ms: e.version.wall_ms, logical: e.version.logical });
                            let incoming = StoredRecord {
                                value: if e.erase { None } else { e.value.clone() },
                                version: e.version.clone(),
                                residency: e.residency.clone(),
                            };
                            let current = match kv.get(e.key.as_str()).map_err(db_err)? {
                                Some(g) => Some(decode_kv(&e.key, g.value(), &self.sealer)?),
                                None => None,
                            };
                            let replace = record::should_replace(current.as_ref(), &incoming, *policy);
                            if replace {
                                let bytes = record::encode(&incoming, &e.key, &self.sealer);
                                kv.insert(e.key.as_str(), bytes.as_slice()).map_err(db_err)?;
                                replaced += 1;
                            }
                            if e.erase {
                                // The erasure reaches this region's own older writes of the key too, in the
                                // store (above, when it wins) and in the outbox.
                                scrub_outbox(&mut outbox, &e.key, &e.version, &self.sealer)?;
                            }
                            applied_delays.push((from.clone(), now_ms.saturating_sub(e.version.wall_ms)));
                        }
                        WriteOutcome::Applied(replaced)
                    }
                    WriteOp::SaveCursors(map) => {
                        for (peer, seq) in map {
                            let cur = cursors.get(peer.as_str()).map_err(db_err)?.map_or(0, |g| g.value());
                            // A durable cursor never moves back (acks can arrive out of order across reconnects).
                            if *seq > cur {
                                cursors.insert(peer.as_str(), *seq).map_err(db_err)?;
                            }
                        }
                        WriteOutcome::Done(0)
                    }
                    WriteOp::Gc { peers } => {
                        let min = lowest_cursor(&cursors, peers)?;
                        let removed = if min == u64::MAX || min == 0 {
                            0
                        } else {
                            let before = outbox.len().map_err(db_err)?;
                            outbox.retain_in(..=min, |_, _| false).map_err(db_err)?;
                            before - outbox.len().map_err(db_err)?
                        };
                        WriteOutcome::Done(removed)
                    }
                    WriteOp::ForgetUnacked { peers } => {
                        let min = lowest_cursor(&cursors, peers)?;
                        let before = outbox.len().map_err(db_err)?;
                        outbox.retain_in(min.saturating_add(1).., |_, _| false).map_err(db_err)?;
                        let removed = before - outbox.len().map_err(db_err)?;
                        for p in peers {
                            let cur = cursors.get(p.as_str()).map_err(db_err)?.map_or(0, |g| g.value());
                            if self.head_seq > cur {
                                cursors.insert(p.as_str(), self.head_seq).map_err(db_err)?;
                            }
                        }
                        WriteOutcome::Done(removed)
                    }
                };
                outcomes.push(outcome);
            }
            let mark = self.hlc.high_water();
            meta.insert(META_HLC_WALL_MS, mark.wall_ms).map_err(db_err)?;
            meta.insert(META_HLC_LOGICAL, u64::from(mark.logical)).map_err(db_err)?;
            meta.insert(META_HEAD_SEQ, self.head_seq).map_err(db_err)?;
        }
        let delay_ms = self.commit_delay_ms.load(std::sync::atomic::Ordering::Relaxed);
        if delay_ms > 0 {
            // A slow disk: this is the writer thread, so every queued request waits behind it.
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
        txn.commit().map_err(db_err)?;
        if local_writes > 0 {
            metrics::counter!("xregion_writes_committed_total").increment(local_writes);
        }
        for (origin, delay_ms) in applied_delays {
            metrics::histogram!("xregion_replication_apply_delay_ms", "origin" => origin).record(delay_ms as f64);
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xregion-lab-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("store.redb")
    }

    fn entry(seq: u64, key: &str, value: Option<&str>, wall_ms: u64, origin: &str) -> Entry {
        Entry {
            seq,
            key: key.into(),
            value: value.map(Into::into),
            version: Version { wall_ms, logical: 0, origin: origin.into() },
            residency: None,
            erase: false,
        }
    }

    /// Goal: a summary is in milliseconds, its percentiles follow the samples within the histogram's 0.1%, an
    /// empty one is all zero, and `summaries(true)` answers before it resets. Method: 100 reads of 1..=100 ms.
    #[test]
    fn timings_summarize_in_ms_and_reset_after_answering() {
        let t = StoreTimings::new();
        assert_eq!(t.summaries(false).2, LatencySummary::default());
        for ms in 1..=100u64 {
            t.record_read(Duration::from_micros(10), Duration::from_millis(ms));
        }
        t.record_commit(&[5, 7], Duration::from_millis(2));
        let (acquire, commit, read) = t.summaries(true);
        assert_eq!((acquire.count, commit.count, read.count), (102, 1, 100));
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(read.p50, 50.0) && near(read.p95, 95.0) && near(read.p99, 99.0), "{read:?}");
        assert!(near(read.max, 100.0) && near(commit.max, 2.0) && near(acquire.max, 0.010), "{read:?} {commit:?}");
        let (acquire, commit, read) = t.summaries(false);
        assert_eq!((acquire.count, commit.count, read.count), (0, 0, 0), "reset after answering");
    }

    /// Goal: local writes get increasing versions and outbox seqs, survive reopen, and the clock resumes past
    /// them. Method: write, drop the store, reopen, write again.
    #[tokio::test]
    async fn writes_persist_and_clock_resumes() {
        let path = temp_path("persist");
        let (s, rec, h) = Store::open(&path, "a", Sealer::plaintext()).unwrap();
        assert_eq!(rec.head_seq, 0);
        let w1 = s.write(WriteOp::Local { key: "k".into(), value: Some("1".into()), residency: None }).await.unwrap();
        let w2 = s.write(WriteOp::Local { key: "k".into(), value: None, residency: None }).await.unwrap();
        let (WriteOutcome::Written(r1), WriteOutcome::Written(r2)) = (w1, w2) else { panic!("not written") };
        assert!(r2.version > r1.version);
        assert_eq!(*s.head().borrow(), 2);
        drop(s);
        h.join().unwrap();
        let (s, rec, _h) = Store::open(&path, "a", Sealer::plaintext()).unwrap();
        assert_eq!(rec.head_seq, 2);
        assert_eq!(s.get("k").unwrap(), Some(r2.clone()));
        let WriteOutcome::Written(r3) =
            s.write(WriteOp::Local { key: "j".into(), value: Some("x".into()), residency: None }).await.unwrap()
        else {
            panic!("not written")
        };
        assert!(r3.version > r2.version);
        let out = s.outbox_after(0, 10, usize::MAX).unwrap();
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    /// Goal: remote entries merge by LWW, a second apply changes nothing, and observing a remote version
    /// pushes the local clock past it.
    #[tokio::test]
    async fn apply_is_lww_and_idempotent() {
        let path = temp_path("apply");
        let (s, _, _h) = Store::open(&path, "a", Sealer::plaintext()).unwrap();
        let future_ms = wall_now_ms() + 60_000;
        let batch = vec![entry(1, "k", Some("new"), future_ms, "b"), entry(2, "k2", None, 5, "b")];
        let op = || WriteOp::Apply { from: "b".into(), entries: batch.clone(), policy: MergePolicy::Lww };
        assert_eq!(s.write(op()).await.unwrap(), WriteOutcome::Applied(2));
        assert_eq!(s.write(op()).await.unwrap(), WriteOutcome::Applied(0));
        let older = vec![entry(3, "k", Some("old"), 10, "b")];
        let older_op = WriteOp::Apply { from: "b".into(), entries: older, policy: MergePolicy::Lww };
        assert_eq!(s.write(older_op).await.unwrap(), WriteOutcome::Applied(0));
        assert_eq!(s.get("k").unwrap().unwrap().value.as_deref(), Some("new"));
        // A local write now orders after the remote one from the future.
        let WriteOutcome::Written(r) =
            s.write(WriteOp::Local { key: "k".into(), value: Some("mine".into()), residency: None }).await.unwrap()
        else {
            panic!("not written")
        };
        assert!(r.version.wall_ms >= future_ms);
        // Remote applies do not enter the outbox: each region ships only its own writes.
        assert_eq!(s.outbox_after(0, 10, usize::MAX).unwrap().len(), 1);
    }

    /// Goal: scans return keys in order with the prefix, page with `after`, and include tombstones.
    #[tokio::test]
    async fn scan_pages_in_key_order() {
        let path = temp_path("scan");
        let (s, _, _h) = Store::open(&path, "a", Sealer::plaintext()).unwrap();
        for k in ["p/3", "p/1", "q/1", "p/2", "o/9"] {
            s.write(WriteOp::Local { key: k.into(), value: Some(k.into()), residency: None }).await.unwrap();
        }
        s.write(WriteOp::Local { key: "p/2".into(), value: None, residency: None }).await.unwrap();
        let (page, more) = s.scan("p/", None, 2).unwrap();
        assert_eq!(page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["p/1", "p/2"]);
        assert!(more);
        assert_eq!(page[1].1.value, None);
        let (page, more) = s.scan("p/", Some("p/2"), 2).unwrap();
        assert_eq!(page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["p/3"]);
        assert!(!more);
    }

    /// Goal: cursors are durable, never move back, and GC removes only entries every peer acknowledged.
    #[tokio::test]
    async fn cursors_and_gc() {
        let path = temp_path("gc");
        let (s, _, h) = Store::open(&path, "a", Sealer::plaintext()).unwrap();
        for i in 0..5 {
            s.write(WriteOp::Local { key: format!("k{i}"), value: Some("v".into()), residency: None }).await.unwrap();
        }
        let peers = vec!["b".to_string(), "c".to_string()];
        s.write(WriteOp::SaveCursors([("b".into(), 4), ("c".into(), 2)].into())).await.unwrap();
        s.write(WriteOp::SaveCursors([("b".into(), 3)].into())).await.unwrap();
        assert_eq!(s.write(WriteOp::Gc { peers: peers.clone() }).await.unwrap(), WriteOutcome::Done(2));
        assert_eq!(s.outbox_after(0, 10, usize::MAX).unwrap().first().map(|e| e.seq), Some(3));
        drop(s);
        h.join().unwrap();
        let (_s, rec, _h) = Store::open(&path, "a", Sealer::plaintext()).unwrap();
        assert_eq!(rec.cursors, [("b".to_string(), 4), ("c".to_string(), 2)].into());
        assert_eq!(rec.head_seq, 5);
    }
}
