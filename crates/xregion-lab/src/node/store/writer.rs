//! The store's writer thread: group commit. It takes every request queued on the bounded channel (up to
//! `GROUP_COMMIT_MAX`), applies them all in one redb transaction committed with `Durability::Immediate`, and only
//! then answers each; on a failed commit it rolls its in-memory state back and fails them all.

use super::tables::{
    CURSORS, KV, META, META_HEAD_SEQ, META_HLC_LOGICAL, META_HLC_WALL_MS, OUTBOX, decode_kv, encode_outbox,
    lowest_cursor, scrub_outbox,
};
use super::timings::{StoreTimings, micros};
use super::{GROUP_COMMIT_MAX, StoreError, WriteOp, WriteOutcome, WriteReq, db_err};
use crate::crypto::Sealer;
use crate::hlc::{Hlc, Stamp, WallClock};
use crate::proto::Entry;
use crate::record::{self, StoredRecord};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use xregion_model::Version;

/// The writer thread's state.
pub(super) struct Writer {
    /// The database.
    pub(super) db: Arc<Database>,
    /// This region.
    pub(super) region: String,
    /// The clock; only this thread stamps versions.
    pub(super) hlc: Hlc,
    /// Highest outbox seq committed.
    pub(super) head_seq: u64,
    /// Publishes `head_seq` after each commit.
    pub(super) head_tx: watch::Sender<u64>,
    /// Where each commit and each request's wait are recorded.
    pub(super) timings: Arc<StoreTimings>,
    /// Defect knob: milliseconds to hold every commit (a slow disk).
    pub(super) commit_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The wall clock `hlc` reads; the `clock_offset_ms` defect skews it.
    pub(super) clock: WallClock,
    /// Seals values at rest.
    pub(super) sealer: Arc<Sealer>,
}

impl Writer {
    /// Takes requests until every `Store` handle is dropped, committing them in groups.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriteReq>) {
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

    /// One local write inside the group's transaction: stamps a version, writes the record and its outbox entry.
    fn local_write(
        &mut self,
        kv: &mut redb::Table<&str, &[u8]>,
        outbox: &mut redb::Table<u64, &[u8]>,
        key: &str,
        value: &Option<String>,
        residency: &Option<String>,
    ) -> Result<StoredRecord, StoreError> {
        let s = self.hlc.tick(self.clock.read_ms());
        let version = Version { wall_ms: s.wall_ms, logical: s.logical, origin: self.region.clone() };
        let rec = StoredRecord { value: value.clone(), version: version.clone(), residency: residency.clone() };
        kv.insert(key, record::encode(&rec, key, &self.sealer).as_slice()).map_err(db_err)?;
        self.head_seq += 1;
        let e = Entry {
            seq: self.head_seq,
            key: key.to_string(),
            value: value.clone(),
            version,
            residency: residency.clone(),
            erase: false,
        };
        outbox.insert(self.head_seq, encode_outbox(&e, &self.sealer).as_slice()).map_err(db_err)?;
        Ok(rec)
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
                        local_writes += 1;
                        WriteOutcome::Written(self.local_write(&mut kv, &mut outbox, key, value, residency)?)
                    }
                    WriteOp::Update { keys, decide } => {
                        let mut values = Vec::with_capacity(keys.len());
                        for key in keys {
                            let current = match kv.get(key.as_str()).map_err(db_err)? {
                                Some(g) => decode_kv(key, g.value(), &self.sealer)?.value,
                                None => None,
                            };
                            values.push(current);
                        }
                        let (writes, answer) = (decide.0)(&values);
                        for (key, value) in writes {
                            local_writes += 1;
                            self.local_write(&mut kv, &mut outbox, &key, &Some(value), &None)?;
                        }
                        WriteOutcome::Updated(answer)
                    }
                    WriteOp::Erase { key, replicate } => {
                        // Limitation: redb is copy-on-write, so the pages that held the old record and outbox
                        // entries are freed, not overwritten, and may keep the old bytes until reused. Sealed at
                        // rest these are ciphertext under the region's data key; with `plaintext_at_rest` the old
                        // value may still be found in the file. (Compacting needs `&mut Database`, which the
                        // shared handle cannot give while readers run; not done.)
                        let s = self.hlc.tick(self.clock.read_ms());
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
                        let now_ms = self.clock.read_ms();
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
