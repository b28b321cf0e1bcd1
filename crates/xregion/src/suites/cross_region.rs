//! The `cross-region` suite's consistency checks: replication delay, convergence under concurrent writes,
//! last-write-wins conflict resolution, and whether last-write-wins keeps real-time order.
//!
//! Each check drives the deployment through the probe contract, records what clients saw, and leaves the verdict
//! to the pure checkers in `xregion-check`.

mod poll;
mod realtime;
mod session;

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder, ms};
use crate::config::Config;
use crate::config::Observe;
use crate::drive::converge::{States, as_judged, await_convergence, store_order};
use crate::drive::lock;
use crate::drive::pace::{Pace, open_model};
use crate::drive::write::{RandomWriters, background, random_writers};
use crate::measure;
use crate::probe::ProbeError;
use poll::{poll_by_read, poll_by_scan};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_check::consistency;
use xregion_check::evidence;
use xregion_check::stats::{LatencyRecorder, percentile_table};
use xregion_model::report::{CheckResult, Verdict};

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "cross-region.consistency.write-replicate",
        title: "a write in one region is visible in every other region quickly",
        target: |c: &Config| format!("replication P99 < {} ms for every region pair", c.targets.replication_p99_ms),
        needs: Needs { regions_min: 2, contract: false, ..Needs::NONE },
        run: measure!(write_replicate),
    },
    CheckDef {
        id: "cross-region.consistency.concurrent-writes",
        title: "concurrent writers in every region converge with no acknowledged write lost",
        target: |_| "0 lost acknowledged writes, all regions converge".to_string(),
        needs: Needs { contract: false, ..Needs::NONE },
        run: measure!(concurrent_writes),
    },
    CheckDef {
        id: "cross-region.consistency.conflict-lww",
        title: "simultaneous writes of one key resolve to the highest version everywhere",
        target: |_| "0 wrong last-write-wins winners, all regions converge".to_string(),
        needs: Needs { contract: false, ..Needs::NONE },
        run: measure!(conflict_lww),
    },
    CheckDef {
        id: "cross-region.consistency.lww-realtime",
        title: "no acknowledged write loses to a write that ended before it began",
        target: |c: &Config| {
            let r = &c.checks.lww_realtime;
            format!(
                "0 acknowledged writes lost to a write that ended over {} ms before they began",
                r.clock_resolution_ms + r.measuring_tolerance_ms
            )
        },
        needs: Needs { regions_min: 2, contract: false, ..Needs::NONE },
        run: measure!(realtime::lww_realtime),
    },
    CheckDef {
        id: "cross-region.consistency.session-guarantees",
        title: "a client moving between regions reads its own writes and never goes back in time",
        target: session::target,
        needs: Needs { regions_min: 2, contract: false, ..Needs::NONE },
        run: measure!(session::session_guarantees),
    },
];

/// Most probe requests one observer has in flight while polling.
const POLL_IN_FLIGHT_MAX: usize = 64;
/// Most background writes in flight per region; beyond it a scheduled write is counted as dropped.
const BACKGROUND_IN_FLIGHT_MAX: usize = 256;
/// Most probe writes one origin has in flight.
const PROBE_WRITES_IN_FLIGHT_MAX: usize = 64;

/// A write waiting to become visible in one observer region.
struct Pending {
    /// The key written.
    key: String,
    /// Index of the origin region.
    origin: usize,
    /// When the origin acknowledged the write.
    acked_at: Instant,
    /// When the last poll that did not see it was sent; visibility happened after this.
    last_miss_sent: Option<Instant>,
}

/// What the observers measured.
#[derive(Default)]
struct Observed {
    /// Delay upper bounds per (origin, observer).
    delays: BTreeMap<(usize, usize), LatencyRecorder>,
    /// Width of the interval in which each write became visible (resolution), all pairs.
    resolution: LatencyRecorder,
    /// Writes never seen within the visibility timeout, per (origin, observer).
    never_visible: BTreeMap<(usize, usize), u64>,
    /// Poll requests that failed.
    poll_errors: u64,
    /// The first probe error that made measuring impossible.
    fatal: Option<ProbeError>,
    /// The slowest deliveries, slowest first (at most `SLOWEST_KEPT`), so that a failing P99 shows when its
    /// outliers happened and whether they cluster.
    slowest: Vec<Slow>,
}

/// Slowest deliveries kept for the report.
const SLOWEST_KEPT: usize = 8;

/// One delivery among the slowest.
#[derive(Clone, Copy)]
struct Slow {
    origin: usize,
    observer: usize,
    /// When the origin acknowledged the write, from the start of the measurement.
    acked_s: f64,
    /// The delay's upper bound.
    delay: Duration,
    /// How much earlier it may have become visible (the measuring resolution of this delivery).
    resolution: Duration,
}

impl Observed {
    fn keep_if_slow(&mut self, slow: Slow) {
        let at = self.slowest.partition_point(|s| s.delay >= slow.delay);
        if at < SLOWEST_KEPT {
            self.slowest.insert(at, slow);
            self.slowest.truncate(SLOWEST_KEPT);
        }
    }
}

/// What a replication measurement recorded.
pub struct ReplicationMeasurement {
    /// What the observers saw.
    observed: Observed,
    /// Probe writes acknowledged.
    acked: u64,
    /// Probe writes that failed.
    failed: u64,
    /// Acknowledgement latency of the probe writes.
    ack_latency: LatencyRecorder,
    /// Background writes: ok, failed, not sent.
    background: (u64, u64, u64),
    /// Whether the observers scanned (else they read key by key).
    scanned: bool,
}

async fn write_replicate(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let cfg = ctx.config.checks.write_replicate.clone();
    match measure_replication(ctx, &cfg, &ctx.prefix("wr")).await {
        Ok(m) => judge_replication(rb, ctx, &cfg, m),
        Err(e) => rb.error(&e),
    }
}

/// Writes probe keys in every region on schedule (plus optional background load) and measures when each becomes
/// visible in every other region.
pub async fn measure_replication(
    ctx: &Ctx,
    cfg: &crate::config::WriteReplicate,
    prefix: &str,
) -> Result<ReplicationMeasurement, ProbeError> {
    let n = ctx.probes.len();
    let prefix = prefix.to_string();
    let pending: Vec<Arc<Mutex<Vec<Pending>>>> = (0..n).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let observed = Arc::new(Mutex::new(Observed::default()));
    let writers_left = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / cfg.rate_per_s);
    let visibility_timeout = Duration::from_millis(cfg.visibility_timeout_ms);
    ctx.progress.phase(&format!(
        "{} probe writes per region at {}/s, polling every {} ms",
        cfg.writes_per_region, cfg.rate_per_s, cfg.poll_interval_ms
    ));

    // Writers: one per origin region, open model (each write is sent on its schedule).
    let mut writer_tasks = Vec::new();
    let mut write_stats: Vec<Arc<Mutex<(u64, u64, LatencyRecorder)>>> = Vec::new();
    for origin in 0..n {
        let probe = ctx.probes[origin].clone();
        let history = ctx.history.clone();
        let pending = pending.clone();
        let observed = observed.clone();
        let writers_left = writers_left.clone();
        let stats = Arc::new(Mutex::new((0u64, 0u64, LatencyRecorder::new())));
        write_stats.push(stats.clone());
        let prefix = prefix.clone();
        // Stagger origins so that they do not all write at the same instant.
        let offset = period.mul_f64(origin as f64 / n as f64);
        let pace =
            Pace::new(cfg.rate_per_s, PROBE_WRITES_IN_FLIGHT_MAX).starting(start + offset).count(cfg.writes_per_region);
        writer_tasks.push(tokio::spawn(async move {
            let stop = CancellationToken::new();
            let op = |i: u64, _due: Instant| {
                let (probe, history, pending, observed, stats, stop) =
                    (probe.clone(), history.clone(), pending.clone(), observed.clone(), stats.clone(), stop.clone());
                let key = format!("{prefix}{}/{i:09}", probe.region);
                async move {
                    // A process per write: a process has one operation open at a time, and writes may overlap.
                    let process = history.new_process();
                    let value = format!("wr-{i}");
                    let sent = Instant::now();
                    match history.put(process, &probe, &key, &value).await {
                        Ok(_) => {
                            let acked_at = Instant::now();
                            {
                                let mut s = lock(&stats);
                                s.0 += 1;
                                s.2.record(acked_at - sent);
                            }
                            for (obs, list) in pending.iter().enumerate() {
                                if obs != origin {
                                    lock(list).push(Pending {
                                        key: key.clone(),
                                        origin,
                                        acked_at,
                                        last_miss_sent: None,
                                    });
                                }
                            }
                        }
                        Err(e) => {
                            lock(&stats).1 += 1;
                            if matches!(e, ProbeError::Unreachable { .. }) {
                                lock(&observed).fatal.get_or_insert(e);
                                stop.cancel();
                            }
                        }
                    }
                }
            };
            open_model(pace, &stop, op, |_, _| {}).await;
            writers_left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }

    // Background load: unwatched writes, to measure replication under write load.
    let background_deadline = start + period.mul_f64(cfg.writes_per_region as f64);
    let mut background_tasks = Vec::new();
    if cfg.background_writes_per_s > 0.0 {
        for probe in &ctx.probes {
            let pace = Pace::new(cfg.background_writes_per_s, BACKGROUND_IN_FLIGHT_MAX).until(background_deadline);
            background_tasks.push(tokio::spawn(background(probe.clone(), ctx.prefix("bg"), pace)));
        }
    }

    // Observers: each polls its pending keys every poll interval, by scan (one ordered page per origin) or by
    // one read per key.
    let scan = match cfg.observe {
        Observe::Scan => true,
        Observe::Read => false,
        Observe::Auto => ctx.probes.iter().all(|p| p.database().is_none()),
    };
    let mut observer_tasks = Vec::new();
    for (obs, list) in pending.iter().enumerate() {
        let probe = ctx.probes[obs].clone();
        let list = list.clone();
        let observed = observed.clone();
        let writers_left = writers_left.clone();
        let interval = Duration::from_millis(cfg.poll_interval_ms);
        let origin_prefixes: Vec<String> = ctx.probes.iter().map(|p| format!("{prefix}{}/", p.region)).collect();
        observer_tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let keys: Vec<(usize, String)> = lock(&list).iter().map(|p| (p.origin, p.key.clone())).collect();
                if keys.is_empty() {
                    if writers_left.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                        break;
                    }
                    continue;
                }
                let results = if scan {
                    poll_by_scan(&probe, &origin_prefixes, keys).await
                } else {
                    poll_by_read(&probe, keys).await
                };
                let mut l = lock(&list);
                let mut o = lock(&observed);
                for (key, sent, received, r) in results {
                    let Some(pos) = l.iter().position(|p| p.key == key) else { continue };
                    match r {
                        Ok(true) => {
                            let p = l.swap_remove(pos);
                            let delay = received.saturating_duration_since(p.acked_at);
                            o.delays.entry((p.origin, obs)).or_default().record(delay);
                            let lower = p.last_miss_sent.unwrap_or(sent).max(p.acked_at);
                            let resolution = received.saturating_duration_since(lower);
                            o.resolution.record(resolution);
                            o.keep_if_slow(Slow {
                                origin: p.origin,
                                observer: obs,
                                acked_s: p.acked_at.saturating_duration_since(start).as_secs_f64(),
                                delay,
                                resolution,
                            });
                        }
                        Ok(false) => {
                            let p = &mut l[pos];
                            p.last_miss_sent = Some(sent);
                            if received.saturating_duration_since(p.acked_at) > visibility_timeout {
                                let p = l.swap_remove(pos);
                                *o.never_visible.entry((p.origin, obs)).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            if let Some(e) = e {
                                o.poll_errors += 1;
                                if matches!(e, ProbeError::Unreachable { .. }) {
                                    o.fatal.get_or_insert(e);
                                    return;
                                }
                            }
                            if received.saturating_duration_since(l[pos].acked_at) > visibility_timeout {
                                let p = l.swap_remove(pos);
                                *o.never_visible.entry((p.origin, obs)).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }));
    }
    for t in writer_tasks.into_iter().chain(observer_tasks) {
        let _ = t.await;
    }
    let mut background = (0u64, 0u64, 0u64);
    for t in background_tasks {
        if let Ok((ok, failed, dropped)) = t.await {
            background = (background.0 + ok, background.1 + failed, background.2 + dropped);
        }
    }

    let o = std::mem::take(&mut *lock(&observed));
    if let Some(e) = o.fatal.clone() {
        return Err(e);
    }
    let (mut acked, mut failed) = (0u64, 0u64);
    let mut ack_latency = LatencyRecorder::new();
    for s in &write_stats {
        let s = lock(s);
        acked += s.0;
        failed += s.1;
        ack_latency.merge(&s.2);
    }
    Ok(ReplicationMeasurement { observed: o, acked, failed, ack_latency, background, scanned: scan })
}

/// Turns a replication measurement into a verdict against `targets.replication_p99_ms`.
pub fn judge_replication(
    mut rb: ResultBuilder,
    ctx: &Ctx,
    cfg: &crate::config::WriteReplicate,
    m: ReplicationMeasurement,
) -> CheckResult {
    let target_ms = ctx.config.targets.replication_p99_ms;
    let ReplicationMeasurement { observed: o, acked, failed, ack_latency, background: bg, scanned } = m;
    let names: Vec<&str> = ctx.probes.iter().map(|p| p.region.as_str()).collect();
    let pair_name = |(a, b): (usize, usize)| format!("{} -> {}", names[a], names[b]);
    let by_pair: BTreeMap<String, LatencyRecorder> = o.delays.iter().map(|(k, v)| (pair_name(*k), v.clone())).collect();
    let never_visible: u64 = o.never_visible.values().sum();
    let worst =
        by_pair.iter().map(|(k, r)| (k.clone(), r.value_ms_at(99.0))).fold(None::<(String, f64)>, |acc, x| match acc {
            Some(a) if a.1 >= x.1 => Some(a),
            _ => Some(x),
        });
    let all = xregion_check::stats::merged(by_pair.values());
    rb.metric("p50_ms", all.value_ms_at(50.0))
        .metric("p95_ms", all.value_ms_at(95.0))
        .metric("p99_ms", worst.as_ref().map_or(0.0, |w| w.1))
        .metric("max_ms", all.max_ms())
        .metric("writes_acked", acked as f64)
        .metric("writes_failed", failed as f64)
        .metric("never_visible", never_visible as f64)
        .metric("poll_errors", o.poll_errors as f64)
        .metric("poll_interval_ms", cfg.poll_interval_ms as f64)
        .metric("resolution_ms_p50", o.resolution.value_ms_at(50.0))
        .metric("resolution_ms_p99", o.resolution.value_ms_at(99.0))
        .metric("write_ack_ms_p99", ack_latency.value_ms_at(99.0));
    for (pair, r) in &by_pair {
        let slug = pair.replace(" -> ", "_to_");
        rb.metric(&format!("p99_ms.{slug}"), r.value_ms_at(99.0));
    }
    if cfg.background_writes_per_s > 0.0 {
        rb.metric("background_writes_ok", bg.0 as f64)
            .metric("background_writes_failed", bg.1 as f64)
            .metric("background_writes_dropped", bg.2 as f64)
            .note(format!(
                "background load: {} unwatched writes/s per region; {} ok, {} failed, {} not sent because {} were in flight",
                cfg.background_writes_per_s, bg.0, bg.1, bg.2, BACKGROUND_IN_FLIGHT_MAX
            ));
    }
    rb.note(format!(
        "each delay runs from the origin's acknowledgement to the answer of the first read in the observer that saw the \
         write, so it is an upper bound; the write became visible at most {:.1} ms (median; P99 {:.1} ms) earlier, \
         which is the measuring resolution (poll interval {} ms plus one read's round trip); each observer {}",
        o.resolution.value_ms_at(50.0),
        o.resolution.value_ms_at(99.0),
        cfg.poll_interval_ms,
        if scanned {
            "scanned, every poll, from the least write it awaited of each origin (observe = scan)"
        } else {
            "read every key it awaited, every poll (observe = read)"
        }
    ));
    rb.note(
        "xregion polls every region directly, as a probe agent inside each region would, so client-side network \
         latency does not enter the figure",
    );
    if let Some(slowest) = o.slowest.first() {
        let list: Vec<String> = o
            .slowest
            .iter()
            .map(|s| {
                format!(
                    "{:.1} ms on {} (acknowledged {:.2} s in, visible within its last {:.1} ms)",
                    s.delay.as_secs_f64() * 1e3,
                    pair_name((s.origin, s.observer)),
                    s.acked_s,
                    s.resolution.as_secs_f64() * 1e3
                )
            })
            .collect();
        rb.metric("slowest_ms", slowest.delay.as_secs_f64() * 1e3);
        rb.note(format!("the {} slowest deliveries: {}", list.len(), list.join("; ")));
    }
    let mut table = percentile_table("Replication delay by region pair (ms)", &by_pair);
    if !o.never_visible.is_empty() {
        table.columns.push("never visible".into());
        for row in &mut table.rows {
            let n = o.never_visible.iter().find(|(k, _)| pair_name(**k) == row[0]).map_or(0, |(_, v)| *v);
            row.push(n.to_string());
        }
    }
    rb.table(table);
    for (pair, r) in &by_pair {
        rb.distribution(r.to_distribution(pair.clone()));
    }
    let Some((worst_pair, worst_p99)) = worst else {
        return rb.finish(Verdict::Fail, format!("no write became visible in another region ({failed} writes failed)"));
    };
    rb.measured(format!("P99 {worst_p99:.1} ms ({worst_pair})"));
    // Each pair's P99 is judged only from a sample large enough to estimate it; its confidence bounds are
    // reported beside it.
    let mut problems = Vec::new();
    let mut thin = Vec::new();
    let samples_min = by_pair.values().map(LatencyRecorder::count).min().unwrap_or(0);
    let mut bounds = Vec::new();
    for (pair, r) in &by_pair {
        let j = r.judge_below(0.99, target_ms);
        bounds.push(format!("{pair}: {}", j.describe("ms")));
        match j.below {
            Some(true) => {}
            Some(false) => problems.push(format!("{} on {pair} is not below {target_ms} ms", j.describe("ms"))),
            None => thin.push(format!("{pair} ({} samples)", r.count())),
        }
    }
    rb.metric("samples_per_pair_min", samples_min as f64);
    rb.note(format!(
        "each pair's P99 is judged from at least {} samples (five expected above it), so that one hiccup cannot \
         decide it; {}",
        evidence::samples_to_estimate(0.99),
        bounds.join("; ")
    ));
    if never_visible > 0 {
        let mut pairs: Vec<String> =
            o.never_visible.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{n} on {}", pair_name(*k))).collect();
        pairs.sort();
        problems.push(format!(
            "{never_visible} replications never became visible within {} ms ({})",
            cfg.visibility_timeout_ms,
            pairs.join(", ")
        ));
    }
    if failed > 0 {
        problems.push(format!("{failed} of {} probe writes failed", acked + failed));
    }
    if !problems.is_empty() {
        rb.finish(Verdict::Fail, problems.join("; "))
    } else if !thin.is_empty() {
        rb.finish(
            Verdict::Error,
            format!(
                "not enough evidence ({}): a P99 needs at least {} samples per pair",
                thin.join(", "),
                evidence::samples_to_estimate(0.99)
            ),
        )
    } else {
        rb.finish(
            Verdict::Pass,
            format!(
                "worst pair P99 {worst_p99:.1} ms ({worst_pair}), at least {samples_min} samples per pair, \
                 all visible in every region"
            ),
        )
    }
}

async fn concurrent_writes(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let cfg = ctx.config.checks.concurrent_writes.clone();
    let prefix = ctx.prefix("cw");
    let deadline = Instant::now() + Duration::from_millis(cfg.duration_ms);
    ctx.progress.phase(&format!(
        "{} writers per region over {} shared keys for {} ms",
        cfg.writers_per_region, cfg.keys, cfg.duration_ms
    ));
    let writers = RandomWriters {
        prefix: prefix.clone(),
        per_region: cfg.writers_per_region,
        keys: cfg.keys,
        delete_ratio: cfg.delete_ratio,
        seed: ctx.seed,
        stream: "concurrent-writes".into(),
        value_tag: String::new(),
        pause: Duration::ZERO,
        backoff: None,
        deadline,
    };
    if let Err(e) = random_writers(&writers, &ctx.probes, &ctx.history).await {
        return rb.error(&e);
    }
    settle_and_judge(rb, ctx, &prefix, cfg.quiet_timeout_ms, false).await
}

async fn conflict_lww(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let cfg = ctx.config.checks.conflict_lww.clone();
    let prefix = ctx.prefix("lww");
    ctx.progress.phase(&format!("{} keys written from every region at once", cfg.keys));
    let processes: Vec<u32> = ctx.probes.iter().map(|_| ctx.history.new_process()).collect();
    for k in 0..cfg.keys {
        let key = format!("{prefix}k{k:04}");
        // All regions write the key at the same moment; replication takes far longer than the spread, so every
        // round is a true conflict.
        let writes = ctx.probes.iter().zip(&processes).map(|(probe, &process)| {
            let key = key.clone();
            let history = ctx.history.clone();
            async move { history.put(process, probe, &key, &format!("{}-{k}", probe.region)).await }
        });
        for r in futures::future::join_all(writes).await {
            if let Err(e @ ProbeError::Unreachable { .. }) = r {
                return rb.error(&e);
            }
        }
    }
    settle_and_judge(rb, ctx, &prefix, cfg.quiet_timeout_ms, true).await
}

/// Waits for the regions to agree on every key under `prefix`, then judges this prefix's history against what
/// every region holds.
async fn settle_and_judge(rb: ResultBuilder, ctx: &Ctx, prefix: &str, quiet_timeout_ms: u64, lww: bool) -> CheckResult {
    ctx.progress.phase("waiting for the regions to converge");
    let (states, converged_after) =
        match await_convergence(&ctx.probes, prefix, Duration::from_millis(quiet_timeout_ms)).await {
            Ok(x) => x,
            Err(e) => return rb.error(&e),
        };
    let history = ctx.history.events_with_prefix(prefix);
    let states = as_judged(&ctx.probes, &history, states);
    judge_history(rb, &history, &states, converged_after, quiet_timeout_ms, lww, store_order(&ctx.probes))
}

/// Turns the checkers' findings over `history` and `states` into a verdict. Both consistency checks run all
/// three checkers; `lww` only selects which figure is the headline.
pub(crate) fn judge_history(
    mut rb: ResultBuilder,
    history: &[xregion_model::history::Event],
    states: &States,
    converged_after: Option<Duration>,
    quiet_timeout_ms: u64,
    lww: bool,
    order: &str,
) -> CheckResult {
    let checked = consistency::check_convergence(states).and_then(|c| {
        let w = consistency::check_writes(history, states)?;
        let l = consistency::check_lww(history, states)?;
        Ok((c, w, l))
    });
    let (convergence, writes, winners) = match checked {
        Ok(x) => x,
        Err(e) => return rb.finish(Verdict::Error, e.to_string()),
    };
    for (k, v) in convergence.metrics().into_iter().chain(writes.metrics()).chain(winners.metrics()) {
        rb.metric(&k, v);
    }
    let divergent = convergence.divergent.len();
    let lost = writes.lost.len();
    let wrong = winners.violations.len();
    let other = writes.findings() - lost;
    rb.metric("convergence_ms", converged_after.map_or(-1.0, ms));
    rb.note(
        "a write counts as lost in a region when the region's final version of its key is lower than the version the \
         deployment acknowledged for it, or the key is missing; unknown-outcome writes are never counted as lost",
    );
    rb.note(format!(
        "the expected last-write-wins winner of a key is the acknowledged (or observed unknown-outcome) write that is \
         last in the store's own order: {order}"
    ));
    rb.note(format!(
        "final states are read from every region once they agree, or after {quiet_timeout_ms} ms of waiting"
    ));
    if !writes.passed() {
        rb.table(writes.to_table());
    }
    if !winners.passed() {
        rb.table(winners.to_table());
    }
    if !convergence.passed() {
        rb.table(convergence.to_table());
    }
    let acked = writes.counts.acked_writes;
    let conv = match converged_after {
        Some(d) => format!("converged {:.0} ms after the last write", ms(d)),
        None => format!("did NOT converge within {quiet_timeout_ms} ms"),
    };
    rb.measured(if lww {
        format!("{wrong} wrong winners, {divergent} divergent keys")
    } else {
        format!("{lost} lost of {acked} acked, {divergent} divergent")
    });
    let mut problems = Vec::new();
    if lost > 0 {
        problems.push(format!("{lost} acknowledged writes lost"));
    }
    if wrong > 0 {
        problems.push(format!("{wrong} wrong last-write-wins winners"));
    }
    if divergent > 0 {
        problems.push(format!("{divergent} keys differ between regions"));
    }
    if other > 0 {
        problems.push(format!("{other} corrupt, phantom or failed-but-visible values"));
    }
    if acked == 0 {
        problems.push("no write was acknowledged".into());
    }
    if problems.is_empty() {
        rb.finish(
            Verdict::Pass,
            format!(
                "{acked} acknowledged writes over {} keys: none lost, every winner right, {conv}",
                writes.counts.keys_checked
            ),
        )
    } else {
        rb.finish(Verdict::Fail, format!("{}; {conv}", problems.join("; ")))
    }
}
