//! A region's durable store: one redb file with the data, the outbox, the peer cursors and the clock mark.
//!
//! All writes go through one writer thread that does group commit: it takes every request queued on a bounded
//! channel (up to `GROUP_COMMIT_MAX`), stamps local writes with the HLC, writes the `kv` record and its `outbox`
//! entry, merges remote entries by last-writer-wins, saves the HLC high-water mark, and commits them all in ONE
//! transaction with `Durability::Immediate`. Only then is each request answered, so an acknowledged write is on
//! disk. Reads use read transactions directly and never wait for the writer.
//!
//! Tables: `kv` (key -> `StoredRecord`), `outbox` (seq -> own write to ship), `cursors` (peer -> highest seq
//! it acknowledged, durable), `meta` (HLC mark and head seq); their definitions and row encodings are in `tables`,
//! the writer thread in `writer`.
//!
//! `StoreTimings` keeps what `GET /v1/stats/store` reports, the lab's equivalent of connection-pool statistics:
//! how long each request waited to get the store (a write from enqueueing until the writer thread took it, a
//! read until it began on a blocking thread), how long each group commit took, and how long each read used the
//! store. Every user of the store counts (client requests, replication applies, cursor saves, outbox
//! collection, the shippers' outbox reads), as every user of a real pool contends for its connections.

mod tables;
pub mod timings;
mod writer;

use crate::crypto::Sealer;
use crate::hlc::{Hlc, Stamp, WallClock};
use crate::proto::Entry;
use crate::record::{MergePolicy, StoredRecord};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tables::{CURSORS, KV, META, META_HEAD_SEQ, META_HLC_LOGICAL, META_HLC_WALL_MS, OUTBOX, decode_kv, decode_outbox};
use timings::StoreTimings;
use tokio::sync::{mpsc, oneshot, watch};
use writer::Writer;

/// Most requests one group commit takes: bounds the transaction size and the latency a batch adds.
pub const GROUP_COMMIT_MAX: usize = 512;

/// Depth of the writer's request queue; a full queue makes callers wait (backpressure), never grows.
pub const WRITE_QUEUE_DEPTH: usize = 4096;

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

/// A redb error as a `StoreError`.
pub(super) fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(Box::new(e.into()))
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
    /// A read-modify-write (the application's transactions): the writer reads `keys` (tombstones and absent
    /// keys as `None`), calls `decide` with their values, and makes the writes it returns as local writes, in
    /// the same transaction. Nothing else writes between the read and the writes, so it is serializable.
    Update {
        /// The keys `decide` sees, in this order.
        keys: Vec<String>,
        /// What to write, and what to answer.
        decide: Decide,
    },
}

/// What an `Update` decides from the values it read: local writes (key, value) and an answer for the caller.
pub type Decision = (Vec<(String, String)>, serde_json::Value);

/// What an `Update` calls with the values it read.
pub type DecideFn = dyn Fn(&[Option<String>]) -> Decision + Send + Sync;

/// The decision function of an `Update`; it runs on the writer thread, so it must be quick and pure.
#[derive(Clone)]
pub struct Decide(pub Arc<DecideFn>);

impl std::fmt::Debug for Decide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decide(..)")
    }
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
    /// An update committed (its writes, if any) with this answer.
    Updated(serde_json::Value),
}

/// A write request as the writer thread gets it.
struct WriteReq {
    /// What to write.
    op: WriteOp,
    /// Where the outcome goes, once the group commit that holds it is durable.
    reply: oneshot::Sender<Result<WriteOutcome, Arc<StoreError>>>,
    /// When the caller started to enqueue it (waiting for room on a full queue counts as waiting for the store).
    enqueued: Instant,
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
    /// The wall clock the writer's HLC reads (skewed by the `clock_offset_ms` defect), shared with the writer.
    clock: WallClock,
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
        let clock = WallClock::default();
        let writer = Writer {
            db: db.clone(),
            region: region.to_string(),
            hlc: Hlc::resume(hlc_mark),
            head_seq,
            head_tx,
            timings: timings.clone(),
            commit_delay_ms: commit_delay_ms.clone(),
            clock: clock.clone(),
            sealer: sealer.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("store-writer-{region}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        tracing::info!(region, head_seq, hlc_wall_ms = hlc_mark.wall_ms, peers = cursors.len(), "store opened");
        let store = Store { db, tx, head: head_rx, region: Arc::from(region), timings, commit_delay_ms, clock, sealer };
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

    /// Skews the wall clock this region's HLC reads by `offset_ms` (defect knob `clock_offset_ms`; 0 turns it off).
    pub fn set_clock_offset(&self, offset_ms: i64) {
        self.clock.set_offset_ms(offset_ms);
    }

    /// Now, in milliseconds since the Unix epoch, on the clock that stamps this region's versions.
    pub fn wall_now_ms(&self) -> u64 {
        self.clock.read_ms()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::wall_now_ms;
    use xregion_model::Version;

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

    /// Goal: the `clock_offset_ms` defect does what a skewed clock does to timestamp LWW. Method: region a's clock
    /// runs 400 ms ahead; a writes a key, then b writes it later in real time, before a's write reaches it; when
    /// a's entry arrives, b keeps a's earlier write and the later one is lost.
    #[tokio::test]
    async fn a_clock_ahead_makes_an_earlier_write_win() {
        let (a, _, _ha) = Store::open(&temp_path("skew-a"), "a", Sealer::plaintext()).unwrap();
        let (b, _, _hb) = Store::open(&temp_path("skew-b"), "b", Sealer::plaintext()).unwrap();
        a.set_clock_offset(400);
        assert!(a.wall_now_ms() >= b.wall_now_ms() + 390);
        let local = |v: &str| WriteOp::Local { key: "k".into(), value: Some(v.into()), residency: None };
        let WriteOutcome::Written(first) = a.write(local("first")).await.unwrap() else { panic!("not written") };
        let WriteOutcome::Written(second) = b.write(local("second")).await.unwrap() else { panic!("not written") };
        assert!(first.version > second.version, "{} vs {}", first.version, second.version);
        let entries = a.outbox_after(0, 10, usize::MAX).unwrap();
        let apply = WriteOp::Apply { from: "a".into(), entries, policy: MergePolicy::Lww };
        assert_eq!(b.write(apply).await.unwrap(), WriteOutcome::Applied(1));
        assert_eq!(b.get("k").unwrap().unwrap().value.as_deref(), Some("first"));
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
