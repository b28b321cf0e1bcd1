//! The writer loops, once each: random writers over a shared key set (closed loop: concurrent-writes and chaos),
//! and paced writers through the one pacing loop (`pace::open_model`): sequenced writes into one region, unwatched
//! background writes, and conflicting writes of the same keys on two sides; and chains of writes of one key from
//! every region in turn, each sent once the previous one has completed.
//!
//! Every write a check judges goes through the history (`HistoryLog::put`/`delete`), so that the checkers see
//! invoke and completion. Keys, values and the put/delete choice come from the run's seeded family (`seed`).

use crate::drive::lock;
use crate::drive::pace::{Pace, open_model};
use crate::drive::seed;
use crate::history::HistoryLog;
use crate::probe::{Probe, ProbeError};
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Most operations one random writer issues, whatever the duration.
const OPS_PER_WRITER_MAX: u64 = 1_000_000;

/// Operations by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpCounts {
    /// Acknowledged.
    pub ok: u64,
    /// Certainly not applied.
    pub fail: u64,
    /// Outcome unknown (a timeout, a lost connection).
    pub info: u64,
}

impl OpCounts {
    fn add(&mut self, o: OpCounts) {
        self.ok += o.ok;
        self.fail += o.fail;
        self.info += o.info;
    }
}

/// Random writers: `per_region` in every region, each writing keys `k000…` drawn from `keys` under `prefix`, a
/// share `delete_ratio` of them deletes, until `deadline`.
#[derive(Debug, Clone)]
pub struct RandomWriters {
    /// Key prefix of every write.
    pub prefix: String,
    /// Writers per region.
    pub per_region: u32,
    /// Size of the shared key set.
    pub keys: u32,
    /// Share of operations that are deletes, from 0 to 1.
    pub delete_ratio: f64,
    /// The run seed.
    pub seed: u64,
    /// Name of the writers' random streams (one per writer under it).
    pub stream: String,
    /// Put before every value (`p{process}-{n}` follows), so that values are unique across a campaign.
    pub value_tag: String,
    /// Pause after an acknowledged operation.
    pub pause: Duration,
    /// After a failed operation: pause this long and go on; `None`: a writer stops at an unreachable region and
    /// the run reports it (the deployment is not measurable).
    pub backoff: Option<Duration>,
    /// No operation starts after this.
    pub deadline: Instant,
}

/// Runs `w`'s writers against every probe; returns their operations by outcome, or the first unreachable region
/// when `w.backoff` is `None`.
pub async fn random_writers(
    w: &RandomWriters,
    probes: &[Probe],
    history: &Arc<HistoryLog>,
) -> Result<OpCounts, ProbeError> {
    let mut tasks = tokio::task::JoinSet::new();
    for probe in probes {
        for i in 0..w.per_region {
            let (w, probe, history) = (w.clone(), probe.clone(), history.clone());
            let process = history.new_process();
            let mut rng = seed::rng(w.seed, &format!("{}/{}/{i}", w.stream, probe.region));
            tasks.spawn(async move {
                let mut counts = OpCounts::default();
                for n in 0..OPS_PER_WRITER_MAX {
                    let now = Instant::now();
                    if now >= w.deadline {
                        break;
                    }
                    let key = format!("{}k{:03}", w.prefix, rng.random_range(0..w.keys));
                    let result = if rng.random_bool(w.delete_ratio) {
                        history.delete(process, &probe, &key).await
                    } else {
                        history.put(process, &probe, &key, &format!("{}p{process}-{n}", w.value_tag)).await
                    };
                    let pause = match result {
                        Ok(_) => {
                            counts.ok += 1;
                            w.pause
                        }
                        Err(e) => {
                            if e.is_definite_failure() {
                                counts.fail += 1;
                            } else {
                                counts.info += 1;
                            }
                            match (w.backoff, e) {
                                (None, e @ ProbeError::Unreachable { .. }) => return Err(e),
                                (backoff, _) => backoff.unwrap_or_default(),
                            }
                        }
                    };
                    if !pause.is_zero() {
                        tokio::time::sleep_until((now + pause).min(w.deadline).into()).await;
                    }
                }
                Ok(counts)
            });
        }
    }
    let mut total = OpCounts::default();
    let mut unreachable = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(n)) => total.add(n),
            Ok(Err(e)) => {
                unreachable.get_or_insert(e);
            }
            Err(_) => {}
        }
    }
    unreachable.map_or(Ok(total), Err)
}

/// One write of a sequenced writer: its sequence number, key, and when (ms since `t0`) it was acknowledged.
#[derive(Debug, Clone)]
pub struct Sequenced {
    /// Sequence number (the open model's operation index).
    pub seq: u64,
    /// The key written.
    pub key: String,
    /// When it was acknowledged, in ms since `t0`; `None` when it was not.
    pub acked_ms: Option<f64>,
    /// The region whose store acknowledged it (its version's origin): the probe's region, or another one when the
    /// client followed the writer elsewhere.
    pub acked_by: Option<String>,
}

/// Sequenced writes `{prefix}{seq:08}` straight into `probe` on `pace` until `stop`, recorded in the history and
/// in `out`. A write skipped because too many are in flight leaves a gap in the sequence, never counted as
/// acknowledged.
pub async fn sequenced(
    history: Arc<HistoryLog>,
    probe: Probe,
    prefix: String,
    pace: Pace,
    t0: Instant,
    stop: &CancellationToken,
    out: Arc<Mutex<Vec<Sequenced>>>,
) {
    let op = |seq: u64, _due: Instant| {
        let (probe, history, out) = (probe.clone(), history.clone(), out.clone());
        let key = format!("{prefix}{seq:08}");
        async move {
            let process = history.new_process();
            let r = history.put(process, &probe, &key, &format!("w-{seq}")).await;
            let acked_ms = r.as_ref().ok().map(|_| t0.elapsed().as_secs_f64() * 1000.0);
            let acked_by = r.ok().map(|rec| rec.version.origin);
            lock(&out).push(Sequenced { seq, key, acked_ms, acked_by });
        }
    };
    open_model(pace, stop, op, |_, _| {}).await;
}

/// Unwatched writes `{prefix}{region}/{i:08}` into `probe` on `pace` (load only: not in the history); returns
/// (acknowledged, failed, not sent because too many were in flight).
pub async fn background(probe: Probe, prefix: String, pace: Pace) -> (u64, u64, u64) {
    let counts: Arc<Mutex<(u64, u64, u64)>> = Arc::default();
    let c = counts.clone();
    let op = |i: u64, _due: Instant| {
        let (probe, counts) = (probe.clone(), counts.clone());
        let key = format!("{prefix}{}/{i:08}", probe.region);
        async move {
            let ok = probe.put(&key, "bg").await.is_ok();
            let mut c = lock(&counts);
            if ok { c.0 += 1 } else { c.1 += 1 }
        }
    };
    open_model(pace, &CancellationToken::new(), op, |_, _| lock(&c).2 += 1).await;
    *lock(&counts)
}

/// Writes the same key on every side at once on `pace`, cycling through `keys` keys `{prefix}k{nn}`, until `stop`:
/// each round is a true conflict for the last-write-wins check.
pub async fn conflicting(
    history: Arc<HistoryLog>,
    sides: Vec<Probe>,
    prefix: String,
    keys: u64,
    pace: Pace,
    stop: &CancellationToken,
) {
    let processes: Arc<Vec<u32>> = Arc::new(sides.iter().map(|_| history.new_process()).collect());
    let sides = Arc::new(sides);
    let op = |n: u64, _due: Instant| {
        let (history, sides, processes) = (history.clone(), sides.clone(), processes.clone());
        let key = format!("{prefix}k{:02}", n % keys);
        async move {
            let writes = sides.iter().zip(processes.iter()).map(|(p, &process)| {
                let (history, key) = (history.clone(), key.clone());
                async move { history.put(process, p, &key, &format!("{}-{n}", p.region)).await }
            });
            futures::future::join_all(writes).await;
        }
    };
    open_model(pace, stop, op, |_, _| {}).await;
}

/// Chains of writes: for each of `keys` keys `{prefix}k{nnnn}`, one write from every probe in turn (key k starts at
/// probe k mod n, so every region takes every place in a chain), each sent `pause` after the previous one
/// completed, whatever its outcome: soon enough that the next region has usually not received the previous write
/// yet. `in_flight` chains run at once. Returns the writes by outcome, or the first unreachable region.
pub async fn chained(
    history: &Arc<HistoryLog>,
    probes: &[Probe],
    prefix: &str,
    keys: u32,
    pause: Duration,
    in_flight: usize,
) -> Result<OpCounts, ProbeError> {
    use futures::StreamExt;
    let chain = |k: u32| async move {
        // One process per chain: its writes are sequential, one in flight at a time.
        let process = history.new_process();
        let key = format!("{prefix}k{k:04}");
        let mut counts = OpCounts::default();
        for j in 0..probes.len() {
            if j > 0 {
                tokio::time::sleep(pause).await;
            }
            let probe = &probes[(k as usize + j) % probes.len()];
            match history.put(process, probe, &key, &format!("chain{k}-{j}")).await {
                Ok(_) => counts.ok += 1,
                Err(e @ ProbeError::Unreachable { .. }) => return Err(e),
                Err(e) if e.is_definite_failure() => counts.fail += 1,
                Err(_) => counts.info += 1,
            }
        }
        Ok(counts)
    };
    let results: Vec<Result<OpCounts, ProbeError>> =
        futures::stream::iter(0..keys).map(chain).buffer_unordered(in_flight.max(1)).collect().await;
    let mut total = OpCounts::default();
    for r in results {
        total.add(r?);
    }
    Ok(total)
}
