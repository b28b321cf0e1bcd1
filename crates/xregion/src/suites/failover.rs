//! Failover and disaster recovery: a region fails under steady traffic, and what clients saw is turned into RTO,
//! availability, RPO, split-brain and fail-back figures.
//!
//! Each scenario (complete, partial, network) runs once per run and feeds several checks:
//! - **canaries** send open-model reads and writes through the routing record from every client location, with no
//!   client-side retries, so RTO and availability are what users saw;
//! - a **writer** streams sequenced writes straight into the failing region: their acknowledgement times give the
//!   RPO, and, during a partition, any acknowledgement after the fence time is a split brain;
//! - during a partition, a **conflict writer** writes the same keys on both sides, for the LWW check after healing;
//! - after the restore, the region must be healthy, caught up, serving its users again, and every acknowledged
//!   write (canaries and writer) must be in every region: the history checkers judge that.
//!
//! Faults go through the `FaultInjector`, never into the deployment's internals. The fault is always restored,
//! whatever happens to the check.

use crate::config::{Config, DeploymentKind, Traffic};
use crate::probe::Probe;
use crate::runner::{CheckDef, Ctx, ResultBuilder, ms};
use crate::suites::cross_region::{States, await_convergence};
use crate::suites::performance::Profile;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_check::consistency::{self, Convergence, LwwCheck, WriteCheck};
use xregion_check::recovery::{self, Attempt, Recovery, SequencedWrite, WindowRule};
use xregion_check::stats::LatencyRecorder;
use xregion_model::fault::{FaultKind, FaultSpec};
use xregion_model::report::{Chart, CheckResult, Marker, Series, Table, Verdict};

/// The failover checks of the `cross-region` suite.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "cross-region.failover.complete-region",
        title: "a whole region fails and traffic recovers with no acknowledged write lost",
        target: |c: &Config| {
            format!(
                "RTO <= {} s, availability >= {}%, 0 writes lost for good",
                c.targets.rto_s, c.targets.availability_min_pct
            )
        },
    },
    CheckDef {
        id: "cross-region.failover.partial-service",
        title: "a region whose store fails degrades gracefully: reads served, writes move, few errors",
        target: |c: &Config| {
            format!("client errors < {}%, reads still served, health not ok", c.targets.error_rate_max_pct)
        },
    },
    CheckDef {
        id: "cross-region.failover.network-partition",
        title: "a partitioned region fences itself (no split brain) and converges after healing",
        target: |c: &Config| {
            let fence = fence_s(c).map_or_else(|| "its fence time".to_string(), |f| format!("{f:.1} s"));
            format!("no write acknowledged in the minority after {fence}; 0 lost, 0 wrong winners after healing")
        },
    },
    CheckDef {
        id: "cross-region.failover.auto-recovery",
        title: "a restored region is healthy, caught up and serving its users again, with nothing lost",
        target: |c: &Config| {
            format!("healthy, caught up and users back within {} s of the restore", c.targets.failback_s)
        },
    },
];

/// The checks of the `disaster-recovery` suite.
pub const DR_CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "disaster-recovery.rto",
        title: "recovery time objective after a complete region failure",
        target: |c: &Config| format!("RTO <= {} s", c.targets.rto_s),
    },
    CheckDef {
        id: "disaster-recovery.rpo",
        title: "recovery point objective after a complete region failure, and no permanent loss",
        target: |c: &Config| format!("RPO <= {} s, 0 acknowledged writes lost for good", c.targets.rpo_s),
    },
];

/// Canary requests in flight per client location; beyond it a scheduled request counts as failed.
const CANARY_IN_FLIGHT_MAX: usize = 512;
/// Writer requests in flight; beyond it a scheduled write is skipped.
const WRITER_IN_FLIGHT_MAX: usize = 128;
/// How often the scenario looks at the figures and at the failing region.
const OBSERVE_TICK: Duration = Duration::from_millis(250);
/// Fewest requests a window must hold to be judged.
const WINDOW_SAMPLES_MIN: usize = 20;
/// Longest wait for every region to be healthy before a scenario starts.
const HEALTHY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Interval of the conflict writer during a partition.
const CONFLICT_INTERVAL: Duration = Duration::from_millis(200);
/// Keys the conflict writer cycles through.
const CONFLICT_KEYS: u64 = 10;
/// Longest wait for the survivors' view of the writer's keys to settle after the fault.
const SURVIVOR_SETTLE_MAX: Duration = Duration::from_secs(5);
/// Grace on top of the lab's contact and fence timeouts: the fence is evaluated periodically, and a write admitted
/// just before it may be answered just after.
const FENCE_GRACE_S: f64 = 1.0;
/// Fence time assumed for deployments other than the lab, in seconds.
const FENCE_S_DEFAULT: f64 = 10.0;
/// Reads per second sent straight to the failing region during a partial failure.
const DIRECT_READS_PER_S: f64 = 20.0;

/// Which scenario a check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// The region is killed.
    Complete,
    /// The region's store fails writes.
    Partial,
    /// The region is cut off from its peers.
    Network,
}

impl Scenario {
    fn kind(self) -> FaultKind {
        match self {
            Scenario::Complete => FaultKind::Complete,
            Scenario::Partial => FaultKind::Partial,
            Scenario::Network => FaultKind::Network,
        }
    }
}

/// Scenario outcomes of this run, so that several checks share one fault.
pub type ScenarioCache = tokio::sync::Mutex<BTreeMap<Scenario, Arc<Result<Outcome, String>>>>;

/// The fence time a partition check allows: the configured one, or the lab's.
fn fence_s(c: &Config) -> Option<f64> {
    c.targets.fence_s.or(match c.deployment.kind {
        DeploymentKind::Lab => {
            Some((c.lab.node.contact_timeout_ms + c.lab.node.fence_timeout_ms) as f64 / 1000.0 + FENCE_GRACE_S)
        }
        DeploymentKind::Http => Some(FENCE_S_DEFAULT),
    })
}

/// Runs the check `def`.
pub async fn run(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    let rb = ResultBuilder::new(def, &ctx.config);
    if let Some(why) = ctx.faults.unavailable() {
        return rb.finish(Verdict::Skipped, format!("needs a fault injector: {why}"));
    }
    let Some(traffic) = ctx.traffic.as_ref().filter(|t| t.records.contains_key("latency")) else {
        return rb.finish(
            Verdict::Skipped,
            "needs a latency routing record in [deployment.traffic] for the canary clients (the lab provides one)",
        );
    };
    if ctx.probes.len() < 2 {
        return rb.finish(Verdict::Skipped, "needs at least two regions");
    }
    let scenario = match def.id {
        "cross-region.failover.partial-service" => Scenario::Partial,
        "cross-region.failover.network-partition" => Scenario::Network,
        _ => Scenario::Complete,
    };
    if let Err(why) = ctx.faults.supports(scenario.kind()) {
        return rb.finish(Verdict::Skipped, why);
    }
    let outcome = {
        let mut cache = ctx.scenarios.lock().await;
        match cache.get(&scenario) {
            Some(o) => {
                ctx.progress.phase("using this run's earlier scenario");
                o.clone()
            }
            None => {
                let o = Arc::new(run_scenario(ctx, traffic, scenario).await);
                cache.insert(scenario, o.clone());
                o
            }
        }
    };
    let o = match outcome.as_ref() {
        Ok(o) => o,
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
    };
    match def.id {
        "cross-region.failover.complete-region" => judge_complete(rb, ctx, o),
        "cross-region.failover.partial-service" => judge_partial(rb, ctx, o),
        "cross-region.failover.network-partition" => judge_partition(rb, ctx, o),
        "cross-region.failover.auto-recovery" => judge_recovery(rb, ctx, o),
        "disaster-recovery.rto" => judge_rto(rb, ctx, o),
        "disaster-recovery.rpo" => judge_rpo(rb, ctx, o),
        other => rb.finish(Verdict::Error, format!("no implementation for check {other}")),
    }
}

/// One canary request.
#[derive(Debug, Clone)]
pub struct CanaryRecord {
    /// Client location.
    pub location: String,
    /// Whether it was a write.
    pub write: bool,
    /// What the client saw.
    pub attempt: Attempt,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One write of the writer into the failing region.
#[derive(Debug, Clone)]
pub struct WriterRecord {
    /// Sequence and acknowledgement time.
    pub write: SequencedWrite,
    /// The key.
    pub key: String,
}

/// Everything one scenario recorded.
#[derive(Debug)]
pub struct Outcome {
    /// The failing region.
    pub victim: String,
    /// The fault injected.
    pub spec: FaultSpec,
    /// Key prefix of the scenario.
    pub prefix: String,
    /// Fault time, in ms since the scenario started (xregion's side: just before the injector was called).
    pub fault_ms: f64,
    /// How long the injector took to inject it.
    pub inject_ms: f64,
    /// Restore time, in ms since the scenario started.
    pub restore_ms: f64,
    /// End of the observation, in ms since the scenario started.
    pub end_ms: f64,
    /// Every canary request.
    pub canary: Vec<CanaryRecord>,
    /// Reads straight at the failing region during the fault (partial scenario).
    pub direct_reads: Vec<Attempt>,
    /// The writer's writes into the failing region.
    pub writer: Vec<WriterRecord>,
    /// Per surviving region, the writer's sequence numbers it held after the fault (complete scenario).
    pub held_at_failover: BTreeMap<String, BTreeSet<u64>>,
    /// Health answers of the failing region during the fault: (ms, status or error).
    pub victim_health: Vec<(f64, String)>,
    /// First time the failing region said it was fenced, in ms.
    pub fenced_ms: Option<f64>,
    /// After the restore: when the region was healthy again, in ms.
    pub healthy_again_ms: Option<f64>,
    /// After the restore: when replication had caught up both ways, in ms.
    pub caught_up_ms: Option<f64>,
    /// After the restore: when the region's nearest locations were served by it again, in ms.
    pub users_back_ms: Option<f64>,
    /// Locations whose nearest region is the failing one.
    pub victim_locations: Vec<String>,
    /// Why caught-up could not be measured, if it could not.
    pub caught_up_unknown: Option<String>,
    /// RTO and availability, from the fault to the restore.
    pub recovery: Recovery,
    /// The window rule used.
    pub rule: WindowRule,
    /// History checkers over every write of the scenario, after convergence.
    pub judged: Result<(Convergence, WriteCheck, LwwCheck), String>,
    /// How long after the end the regions agreed; `None` if they did not.
    pub converged_after: Option<Duration>,
    /// Final states, for the writer's keys.
    pub final_states: States,
    /// Problems with the injector or the observation that are not the deployment's fault.
    pub errors: Vec<String>,
    /// The routing record's behaviour is unknown to xregion; this records what the clients were told.
    pub canary_rate: f64,
}

/// Shared, appendable records of running tasks.
#[derive(Default)]
struct Recorder {
    canary: Mutex<Vec<CanaryRecord>>,
    writer: Mutex<Vec<WriterRecord>>,
    direct: Mutex<Vec<Attempt>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn since(t0: Instant) -> f64 {
    ms(t0.elapsed())
}

async fn run_scenario(ctx: &Ctx, traffic: &Traffic, scenario: Scenario) -> Result<Outcome, String> {
    let cfg = ctx.config.checks.failover.clone();
    let victim = cfg.region.clone().unwrap_or_else(|| ctx.probes[0].region.clone());
    let Some(victim_probe) = ctx.probes.iter().find(|p| p.region == victim).cloned() else {
        return Err(format!("checks.failover.region {victim} is not one of the regions"));
    };
    let survivors: Vec<Probe> = ctx.probes.iter().filter(|p| p.region != victim).cloned().collect();
    let mut spec = FaultSpec::new(scenario.kind());
    if scenario == Scenario::Partial {
        spec.error_share = cfg.partial_error_share;
    }
    let prefix = ctx.prefix(match scenario {
        Scenario::Complete => "fo-complete",
        Scenario::Partial => "fo-partial",
        Scenario::Network => "fo-network",
    });
    ctx.progress.phase("waiting for every region to be healthy");
    await_all_healthy(&ctx.probes).await?;

    let rate = cfg.canary_rate_per_location.unwrap_or(match ctx.profile {
        Profile::Quick => 50.0,
        Profile::Spec => 100.0,
    });
    let rule = WindowRule {
        window_ms: cfg.window_ms as f64,
        step_ms: cfg.step_ms as f64,
        threshold_pct: cfg.success_threshold_pct,
        min_samples: WINDOW_SAMPLES_MIN,
    };
    let observe_max =
        Duration::from_millis(cfg.observe_max_ms.unwrap_or((ctx.config.targets.rto_s * 1000.0) as u64 + cfg.stable_ms));
    let timeout = Duration::from_millis(ctx.config.deployment.request_timeout_ms);
    let victim_locations: Vec<String> =
        traffic.nearest.iter().filter(|(_, r)| **r == victim).map(|(l, _)| l.clone()).collect();

    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let rec = Arc::new(Recorder::default());
    let mut tasks = tokio::task::JoinSet::new();
    for location in traffic.locations.keys() {
        let probe = router_probe(ctx, traffic, location)?;
        tasks.spawn(canary(
            ctx.history.clone(),
            probe,
            location.clone(),
            prefix.clone(),
            rate,
            t0,
            stop.clone(),
            rec.clone(),
        ));
    }
    tasks.spawn(writer(
        ctx.history.clone(),
        victim_probe.clone(),
        format!("{prefix}w/"),
        cfg.rpo_writes_per_s,
        t0,
        stop.clone(),
        rec.clone(),
    ));

    ctx.progress.phase(&format!("steady traffic for {} ms before the fault", cfg.warmup_ms));
    tokio::time::sleep(Duration::from_millis(cfg.warmup_ms)).await;

    ctx.progress.phase(&format!("{victim}: {}", spec.describe()));
    let fault_ms = since(t0);
    let fault_at = Instant::now();
    let injected = ctx.faults.fail(&victim, &spec).await;
    let inject_ms = ms(fault_at.elapsed());
    let mut errors = Vec::new();
    if let Err(e) = &injected {
        errors.push(format!("the fault could not be injected: {e}"));
    }
    let phase_stop = CancellationToken::new();
    if scenario == Scenario::Partial {
        tasks.spawn(direct_reader(victim_probe.clone(), format!("{prefix}w/"), t0, phase_stop.clone(), rec.clone()));
    }
    if scenario == Scenario::Network {
        let other = survivors[0].clone();
        tasks.spawn(conflict_writer(
            ctx.history.clone(),
            [victim_probe.clone(), other],
            format!("{prefix}lww/"),
            phase_stop.clone(),
        ));
    }

    // Observe until the clients have recovered and stayed recovered, or the observation limit.
    let min_observe = match scenario {
        Scenario::Network => {
            Duration::from_secs_f64(fence_s(&ctx.config).unwrap_or(FENCE_S_DEFAULT)) + Duration::from_secs(1)
        }
        _ => Duration::from_secs(1),
    };
    let mut victim_health = Vec::new();
    let mut fenced_ms = None;
    let mut held_at_failover = BTreeMap::new();
    let mut survivors_read = scenario != Scenario::Complete || injected.is_err();
    loop {
        tokio::time::sleep(OBSERVE_TICK).await;
        let now = fault_at.elapsed();
        let (status, fenced) = victim_state(&victim_probe).await;
        victim_health.push((since(t0), status));
        if fenced && fenced_ms.is_none() {
            fenced_ms = Some(since(t0));
        }
        if !survivors_read {
            ctx.progress.phase("reading what the surviving regions hold");
            held_at_failover = survivors_hold(&survivors, &format!("{prefix}w/")).await;
            survivors_read = true;
        }
        // Only requests whose outcome is surely known (older than one timeout) are judged.
        let judged_end = since(t0) - ms(timeout) - 100.0;
        let canary = attempts(&lock(&rec.canary));
        let r = recovery::recovery(&canary, fault_ms, judged_end, &rule);
        let stable = r.recovered_at_ms.is_some_and(|at| judged_end - at >= cfg.stable_ms as f64);
        if (now >= min_observe && stable) || now >= observe_max {
            break;
        }
    }
    phase_stop.cancel();

    ctx.progress.phase(&format!("restoring {victim}"));
    let restore_ms = since(t0);
    let restored = ctx.faults.restore(&victim).await;
    if let Err(e) = &restored {
        errors.push(format!("the region could not be restored: {e}"));
    }
    let (healthy_again_ms, caught_up_ms, users_back_ms, caught_up_unknown) = if restored.is_ok() {
        observe_failback(ctx, &victim_probe, &victim_locations, t0, restore_ms, &rec, &cfg).await
    } else {
        (None, None, None, Some("the region was not restored".to_string()))
    };
    let end_ms = since(t0);
    stop.cancel();
    phase_stop.cancel();
    while tasks.join_next().await.is_some() {}

    ctx.progress.phase("waiting for the regions to converge");
    let settle = Duration::from_millis(cfg.settle_timeout_ms);
    let (final_states, converged_after) = match await_convergence(&ctx.probes, &prefix, settle).await {
        Ok(x) => x,
        Err(e) => {
            errors.push(format!("cannot read the final states: {e}"));
            (States::new(), None)
        }
    };
    let history = ctx.history.events_with_prefix(&prefix);
    let judged = consistency::check_convergence(&final_states)
        .and_then(|c| {
            Ok((
                c,
                consistency::check_writes(&history, &final_states)?,
                consistency::check_lww(&history, &final_states)?,
            ))
        })
        .map_err(|e| e.to_string());
    let canary = std::mem::take(&mut *lock(&rec.canary));
    let all: Vec<Attempt> = attempts(&canary);
    let recovery = recovery::recovery(&all, fault_ms, restore_ms, &rule);
    let mut writer = std::mem::take(&mut *lock(&rec.writer));
    writer.sort_by_key(|w| w.write.seq);
    Ok(Outcome {
        victim,
        spec,
        prefix,
        fault_ms,
        inject_ms,
        restore_ms,
        end_ms,
        canary,
        direct_reads: std::mem::take(&mut *lock(&rec.direct)),
        writer,
        held_at_failover,
        victim_health,
        fenced_ms,
        healthy_again_ms,
        caught_up_ms,
        users_back_ms,
        victim_locations,
        caught_up_unknown,
        recovery,
        rule,
        judged,
        converged_after,
        final_states,
        errors,
        canary_rate: rate,
    })
}

fn attempts(records: &[CanaryRecord]) -> Vec<Attempt> {
    records.iter().map(|c| c.attempt.clone()).collect()
}

/// Waits (bounded) until every region answers its health check with `ok`.
async fn await_all_healthy(probes: &[Probe]) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let checks = futures::future::join_all(probes.iter().map(|p| p.health())).await;
        let bad: Vec<String> = probes
            .iter()
            .zip(checks)
            .filter_map(|(p, h)| match h {
                Ok(h) if h.status == "ok" => None,
                Ok(h) => Some(format!("{} is {}", p.region, h.status)),
                Err(e) => Some(e.to_string()),
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= HEALTHY_WAIT_MAX {
            return Err(format!("not every region is healthy before the fault: {}", bad.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A probe that sends through the latency routing record as a client at `location`.
fn router_probe(ctx: &Ctx, traffic: &Traffic, location: &str) -> Result<Probe, String> {
    let url = traffic.records.get("latency").ok_or("no latency record")?;
    let mut headers = crate::net::token(&ctx.config.deployment, crate::net::Role::Admin)
        .map(crate::net::auth_headers)
        .unwrap_or_default();
    let name = reqwest::header::HeaderName::from_bytes(traffic.location_header.as_bytes())
        .map_err(|e| format!("bad location header {}: {e}", traffic.location_header))?;
    let value =
        reqwest::header::HeaderValue::from_str(location).map_err(|e| format!("bad location {location}: {e}"))?;
    headers.insert(name, value);
    let timeout = Duration::from_millis(ctx.config.deployment.request_timeout_ms);
    let client = crate::net::client_builder(&ctx.config.deployment, crate::net::Role::Admin)
        .connect_timeout(Duration::from_millis(ctx.config.deployment.connect_timeout_ms))
        .timeout(timeout)
        .default_headers(headers)
        .pool_max_idle_per_host(CANARY_IN_FLIGHT_MAX)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the canary client: {e}"))?;
    Ok(Probe::new(&format!("router@{location}"), url, client, timeout))
}

/// Open model: starts `op(i, due)` at `rate` per second (the i-th at `due`) until `stop`, with at most `in_flight`
/// running; a start that finds them all busy calls `skipped(i, due)` instead. Returns once every started op ended.
async fn open_model<F, Fut>(
    rate: f64,
    in_flight: usize,
    stop: &CancellationToken,
    mut op: F,
    mut skipped: impl FnMut(u64, Instant),
) where
    F: FnMut(u64, Instant) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut running = tokio::task::JoinSet::new();
    for i in 0u64.. {
        let due = start + period.mul_f64(i as f64);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            skipped(i, due);
            continue;
        };
        let work = op(i, due);
        running.spawn(async move {
            work.await;
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// Open-model canary of one location: alternating writes of fresh keys and reads of the last acknowledged one.
#[allow(clippy::too_many_arguments)]
async fn canary(
    history: Arc<crate::history::HistoryLog>,
    probe: Probe,
    location: String,
    prefix: String,
    rate: f64,
    t0: Instant,
    stop: CancellationToken,
    rec: Arc<Recorder>,
) {
    let last_key: Arc<Mutex<Option<String>>> = Arc::default();
    let skipped_rec = rec.clone();
    let skipped_location = location.clone();
    let op = |i: u64, due: Instant| {
        let (probe, history, rec, location, last_key) =
            (probe.clone(), history.clone(), rec.clone(), location.clone(), last_key.clone());
        let key = format!("{prefix}c/{location}/{i:08}");
        async move {
            let write = i.is_multiple_of(2);
            let (ok, region, error) = if write {
                let process = history.new_process();
                match history.put(process, &probe, &key, &format!("{location}-{i}")).await {
                    Ok(r) => {
                        *lock(&last_key) = Some(key);
                        (true, Some(r.region), None)
                    }
                    Err(e) => (false, None, Some(e.to_string())),
                }
            } else {
                let read_key = lock(&last_key).clone().unwrap_or(key);
                match probe.get(&read_key).await {
                    Ok(r) => (true, r.map(|r| r.region), None),
                    Err(e) => (false, None, Some(e.to_string())),
                }
            };
            let attempt = Attempt { t_ms: ms(due - t0), ok, latency_ms: ms(due.elapsed()), region };
            lock(&rec.canary).push(CanaryRecord { location, write, attempt, error });
        }
    };
    let skipped = |i: u64, due: Instant| {
        let attempt = Attempt { t_ms: ms(due - t0), ok: false, latency_ms: 0.0, region: None };
        let error = Some("client in-flight limit reached".to_string());
        let record = CanaryRecord { location: skipped_location.clone(), write: i.is_multiple_of(2), attempt, error };
        lock(&skipped_rec.canary).push(record);
    };
    open_model(rate, CANARY_IN_FLIGHT_MAX, &stop, op, skipped).await;
}

/// Sequenced writes straight into one region, at `rate` per second, recorded in the history. A write skipped
/// because too many are in flight leaves a gap in the sequence, which is never counted as acknowledged.
async fn writer(
    history: Arc<crate::history::HistoryLog>,
    probe: Probe,
    prefix: String,
    rate: f64,
    t0: Instant,
    stop: CancellationToken,
    rec: Arc<Recorder>,
) {
    let op = |seq: u64, _due: Instant| {
        let (probe, history, rec) = (probe.clone(), history.clone(), rec.clone());
        let key = format!("{prefix}{seq:08}");
        async move {
            let process = history.new_process();
            let acked_ms = history.put(process, &probe, &key, &format!("w-{seq}")).await.ok().map(|_| since(t0));
            lock(&rec.writer).push(WriterRecord { write: SequencedWrite { seq, acked_ms }, key });
        }
    };
    open_model(rate, WRITER_IN_FLIGHT_MAX, &stop, op, |_, _| {}).await;
}

/// Reads straight at the failing region during a partial failure: are reads still served?
async fn direct_reader(probe: Probe, prefix: String, t0: Instant, stop: CancellationToken, rec: Arc<Recorder>) {
    let period = Duration::from_secs_f64(1.0 / DIRECT_READS_PER_S);
    let start = Instant::now();
    for i in 0u64.. {
        let due = start + period.mul_f64(i as f64);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let key = format!("{prefix}{:08}", i % 50);
        let ok = probe.get(&key).await.is_ok();
        lock(&rec.direct).push(Attempt {
            t_ms: ms(due - t0),
            ok,
            latency_ms: ms(due.elapsed()),
            region: Some(probe.region.clone()),
        });
    }
}

/// Writes the same keys on both sides of a partition, for the LWW check after healing.
async fn conflict_writer(
    history: Arc<crate::history::HistoryLog>,
    sides: [Probe; 2],
    prefix: String,
    stop: CancellationToken,
) {
    let processes = [history.new_process(), history.new_process()];
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(CONFLICT_INTERVAL) => {}
        }
        let key = format!("{prefix}k{:02}", n % CONFLICT_KEYS);
        let writes = sides.iter().zip(processes).map(|(p, process)| {
            let (history, key) = (history.clone(), key.clone());
            async move { history.put(process, p, &key, &format!("{}-{n}", p.region)).await }
        });
        futures::future::join_all(writes).await;
    }
}

/// The failing region's health status (or why it gave none) and whether it says it is fenced.
async fn victim_state(probe: &Probe) -> (String, bool) {
    let status = match probe.health().await {
        Ok(h) => h.status,
        Err(crate::probe::ProbeError::Status { status, message, .. }) => {
            // A 503 health answer still names the state in its body when the deployment follows the contract.
            if message.contains("fenced") {
                "fenced".into()
            } else if message.contains("degraded") {
                "degraded".into()
            } else {
                format!("http {status}")
            }
        }
        Err(e) => format!("unreachable ({})", short(&e.to_string())),
    };
    let fenced = status == "fenced" || probe.replication().await.is_ok_and(|r| r.fenced == Some(true));
    (status, fenced)
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Which of the writer's sequence numbers each survivor holds, once its view stops changing (bounded).
async fn survivors_hold(survivors: &[Probe], prefix: &str) -> BTreeMap<String, BTreeSet<u64>> {
    let start = Instant::now();
    let mut last: Option<BTreeMap<String, BTreeSet<u64>>> = None;
    loop {
        let scans = futures::future::join_all(survivors.iter().map(|p| p.scan(prefix))).await;
        let now: BTreeMap<String, BTreeSet<u64>> = survivors
            .iter()
            .zip(scans)
            .map(|(p, s)| {
                let seqs = s
                    .unwrap_or_default()
                    .iter()
                    .filter(|r| r.value.is_some())
                    .filter_map(|r| r.key.strip_prefix(prefix).and_then(|k| k.parse().ok()))
                    .collect();
                (p.region.clone(), seqs)
            })
            .collect();
        if last.as_ref() == Some(&now) || start.elapsed() >= SURVIVOR_SETTLE_MAX {
            return now;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// After the restore: when the region is healthy again, when replication has caught up both ways, and when its
/// nearest locations are served by it again.
async fn observe_failback(
    ctx: &Ctx,
    victim: &Probe,
    victim_locations: &[String],
    t0: Instant,
    restore_ms: f64,
    rec: &Recorder,
    cfg: &crate::config::Failover,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<String>) {
    let deadline = Instant::now() + Duration::from_millis(cfg.restore_observe_max_ms);
    let (mut healthy, mut caught_up, mut users_back, mut unknown) = (None, None, None, None);
    let mut heads: Option<BTreeMap<String, u64>> = None;
    while Instant::now() < deadline {
        tokio::time::sleep(OBSERVE_TICK).await;
        if healthy.is_none() && victim.health().await.is_ok_and(|h| h.status == "ok") {
            healthy = Some(since(t0));
        }
        if healthy.is_some() && caught_up.is_none() && unknown.is_none() {
            let statuses = futures::future::join_all(ctx.probes.iter().map(|p| p.replication())).await;
            match statuses.into_iter().collect::<Result<Vec<_>, _>>() {
                Err(e) => unknown = Some(format!("replication status unavailable: {e}")),
                Ok(s) => {
                    // The heads when the region was back are what must reach every peer.
                    let h = heads.get_or_insert_with(|| s.iter().map(|r| (r.region.clone(), r.head_seq)).collect());
                    let done = s.iter().all(|r| {
                        let head = h.get(&r.region).copied().unwrap_or(0);
                        r.peers.iter().all(|p| p.acked_seq >= head)
                    });
                    if done {
                        caught_up = Some(since(t0));
                    }
                }
            }
        }
        if users_back.is_none() {
            users_back = users_back_at(
                &lock(&rec.canary),
                victim_locations,
                &victim.region,
                restore_ms,
                ctx.config.targets.routing_share_min_pct,
                since(t0) - ms(Duration::from_millis(ctx.config.deployment.request_timeout_ms)),
            );
        }
        if healthy.is_some()
            && (caught_up.is_some() || unknown.is_some())
            && (users_back.is_some() || victim_locations.is_empty())
        {
            break;
        }
    }
    (healthy, caught_up, users_back, unknown)
}

/// The start of the first 1 s window after the restore in which the region's nearest locations had at least
/// `share_pct` of their successful requests served by it.
fn users_back_at(
    canary: &[CanaryRecord],
    locations: &[String],
    region: &str,
    from_ms: f64,
    share_pct: f64,
    until_ms: f64,
) -> Option<f64> {
    let mut start = from_ms;
    while start + 1000.0 <= until_ms {
        let (mut mine, mut total) = (0usize, 0usize);
        for c in canary.iter().filter(|c| c.attempt.ok && locations.contains(&c.location)) {
            if c.attempt.t_ms >= start && c.attempt.t_ms < start + 1000.0 {
                total += 1;
                mine += usize::from(c.attempt.region.as_deref() == Some(region));
            }
        }
        if total >= 10 && mine as f64 * 100.0 >= share_pct * total as f64 {
            return Some(start);
        }
        start += 100.0;
    }
    None
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting

fn secs(ms: f64) -> f64 {
    ms / 1000.0
}

/// The timeline charts of a scenario: success rate, latency and per-region traffic, with the fault and the
/// recovery marked.
fn timeline(rb: &mut ResultBuilder, o: &Outcome) {
    let all = attempts(&o.canary);
    let mut markers = vec![Marker { t_s: secs(o.fault_ms), label: format!("{} {}", o.victim, o.spec.kind) }];
    if let Some(at) = o.recovery.recovered_at_ms.filter(|at| *at > o.fault_ms) {
        markers.push(Marker { t_s: secs(at), label: "clients recovered".into() });
    }
    markers.push(Marker { t_s: secs(o.restore_ms), label: "restored".into() });
    if let Some(at) = o.users_back_ms {
        markers.push(Marker { t_s: secs(at), label: "users back".into() });
    }
    let window_rule = WindowRule { step_ms: o.rule.window_ms.min(250.0).max(o.rule.step_ms), ..o.rule };
    let ws = recovery::windows(&all, 0.0, o.end_ms, &window_rule);
    let success: Vec<(f64, f64)> =
        ws.iter().filter(|w| w.total > 0).map(|w| (secs(w.start_ms + o.rule.window_ms), w.success_pct())).collect();
    rb.chart(Chart {
        title: format!("Client success rate ({} ms sliding window)", o.rule.window_ms),
        y_unit: "%".into(),
        series: vec![Series { name: "success".into(), points: success }],
        markers: markers.clone(),
    });
    // Latency per second of successful requests.
    let mut by_second: BTreeMap<u64, LatencyRecorder> = BTreeMap::new();
    for a in all.iter().filter(|a| a.ok) {
        by_second
            .entry((a.t_ms / 1000.0) as u64)
            .or_default()
            .record(Duration::from_secs_f64(a.latency_ms.max(0.0) / 1000.0));
    }
    let pick = |p: f64| by_second.iter().map(|(s, r)| (*s as f64 + 0.5, r.value_ms_at(p))).collect::<Vec<_>>();
    rb.chart(Chart {
        title: "Latency of successful client requests".into(),
        y_unit: "ms".into(),
        series: vec![
            Series { name: "p50".into(), points: pick(50.0) },
            Series { name: "p99".into(), points: pick(99.0) },
        ],
        markers: markers.clone(),
    });
    let per_region = recovery::per_region_rate(&all, 0.0, o.end_ms, 500.0);
    rb.chart(Chart {
        title: "Successful requests per serving region".into(),
        y_unit: "req/s".into(),
        series: per_region
            .into_iter()
            .map(|(name, pts)| Series { name, points: pts.into_iter().map(|(t, v)| (secs(t), v)).collect() })
            .collect(),
        markers,
    });
}

fn scenario_notes(rb: &mut ResultBuilder, o: &Outcome) {
    rb.note(format!(
        "canary clients sent {:.0} requests/s from each client location through the latency routing record (half \
         writes of fresh keys, half reads), open model, no client-side retries; a request counts as failed on any \
         non-2xx answer other than 404 or on a transport error",
        o.canary_rate
    ));
    rb.note(format!(
        "the fault was timed on xregion's side just before the injector was called; injecting took {:.0} ms",
        o.inject_ms
    ));
    rb.note(format!(
        "RTO: {} ms windows every {} ms, judged when they hold at least {} requests; a window recovers at {}% \
         success; RTO runs from the fault to the start of the first window after the last bad one",
        o.rule.window_ms, o.rule.step_ms, o.rule.min_samples, o.rule.threshold_pct
    ));
    for e in &o.errors {
        rb.note(e.clone());
    }
}

/// Findings of the history checkers, with their tables; returns (problems, acked writes).
fn history_findings(rb: &mut ResultBuilder, o: &Outcome) -> (Vec<String>, u64) {
    let mut problems = Vec::new();
    let (c, w, l) = match &o.judged {
        Ok(x) => x,
        Err(e) => return (vec![format!("the history could not be judged: {e}")], 0),
    };
    for (k, v) in c.metrics().into_iter().chain(w.metrics()).chain(l.metrics()) {
        rb.metric(&k, v);
    }
    if !w.lost.is_empty() {
        problems.push(format!("{} acknowledged writes lost for good", w.lost.len()));
        rb.table(w.to_table());
    }
    if !l.passed() {
        problems.push(format!("{} wrong last-write-wins winners", l.violations.len()));
        rb.table(l.to_table());
    }
    if !c.passed() {
        problems.push(format!("{} keys differ between regions", c.divergent.len()));
        rb.table(c.to_table());
    }
    let other = w.findings() - w.lost.len();
    if other > 0 {
        problems.push(format!("{other} corrupt, phantom or failed-but-visible values"));
    }
    if o.converged_after.is_none() {
        problems.push("the regions did not converge after the restore".into());
    }
    (problems, w.counts.acked_writes)
}

fn finish(rb: ResultBuilder, o: &Outcome, problems: Vec<String>, pass: String) -> CheckResult {
    if !o.errors.is_empty() {
        return rb.finish(Verdict::Error, o.errors.join("; "));
    }
    if problems.is_empty() { rb.finish(Verdict::Pass, pass) } else { rb.finish(Verdict::Fail, problems.join("; ")) }
}

fn rto_text(o: &Outcome) -> String {
    match o.recovery.rto_ms {
        Some(r) => format!("RTO {:.1} s", secs(r)),
        None => format!("not recovered within the {:.0} s observed", secs(o.restore_ms - o.fault_ms)),
    }
}

fn rto_problem(ctx: &Ctx, o: &Outcome) -> Option<String> {
    let target = ctx.config.targets.rto_s;
    match o.recovery.rto_ms {
        Some(r) if secs(r) <= target => None,
        Some(r) => Some(format!("RTO {:.1} s is above {target} s", secs(r))),
        None => Some(format!(
            "clients had not recovered when the observation ended {:.0} s after the fault (target {target} s)",
            secs(o.restore_ms - o.fault_ms)
        )),
    }
}

fn recovery_metrics(rb: &mut ResultBuilder, o: &Outcome) {
    let r = &o.recovery;
    rb.metric("rto_ms", r.rto_ms.unwrap_or(-1.0));
    rb.metric("availability_pct", r.availability_pct());
    rb.metric("requests_during_fault", r.total as f64);
    rb.metric("failed_during_fault", r.failed as f64);
    rb.metric("bad_windows", r.bad_windows as f64);
    rb.metric("worst_window_pct", r.worst_window_pct);
    rb.metric("observed_after_fault_ms", o.restore_ms - o.fault_ms);
}

fn failure_table(o: &Outcome) -> Table {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for c in o.canary.iter().filter(|c| !c.attempt.ok && c.attempt.t_ms >= o.fault_ms && c.attempt.t_ms < o.restore_ms)
    {
        let e = c.error.clone().unwrap_or_default();
        *by.entry(format!("{} {}: {}", c.location, if c.write { "write" } else { "read" }, short(&e))).or_default() +=
            1;
    }
    Table {
        title: "Failed client requests during the fault".into(),
        columns: vec!["location, operation and error".into(), "requests".into()],
        rows: by.into_iter().map(|(k, n)| vec![k, n.to_string()]).collect(),
    }
}

fn judge_complete(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    let mut problems: Vec<String> = rto_problem(ctx, o).into_iter().collect();
    let avail = o.recovery.availability_pct();
    let min = ctx.config.targets.availability_min_pct;
    if avail < min {
        problems.push(format!("availability {avail:.2}% during the failover is below {min}%"));
        rb.table(failure_table(o));
    }
    let (found, acked) = history_findings(&mut rb, o);
    problems.extend(found);
    rb.measured(format!("{}, availability {avail:.2}%", rto_text(o)));
    let pass = format!(
        "{} killed: {}, availability {avail:.2}% over {} requests, {acked} acknowledged writes all present everywhere after the restore",
        o.victim,
        rto_text(o),
        o.recovery.total
    );
    finish(rb, o, problems, pass)
}

fn judge_rto(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    rb.measured(rto_text(o));
    let problems: Vec<String> = rto_problem(ctx, o).into_iter().collect();
    let pass = format!(
        "{} after a complete failure of {} (target {} s); worst {} ms window {:.1}% successful",
        rto_text(o),
        o.victim,
        ctx.config.targets.rto_s,
        o.rule.window_ms,
        o.recovery.worst_window_pct
    );
    finish(rb, o, problems, pass)
}

fn judge_rpo(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    let writes: Vec<SequencedWrite> = o.writer.iter().map(|w| w.write.clone()).collect();
    let mut table = Table {
        title: format!("What the surviving regions held after {} failed", o.victim),
        columns: vec!["region".into(), "acked before the fault".into(), "missing".into(), "RPO (ms)".into()],
        rows: Vec::new(),
    };
    let mut worst: Option<(String, recovery::Rpo)> = None;
    for (region, held) in &o.held_at_failover {
        let r = recovery::rpo(&writes, held, o.fault_ms);
        table.rows.push(vec![
            region.clone(),
            r.acked_before_fault.to_string(),
            r.missing.len().to_string(),
            format!("{:.1}", r.rpo_ms),
        ]);
        if worst.as_ref().is_none_or(|(_, w)| r.rpo_ms > w.rpo_ms) {
            worst = Some((region.clone(), r));
        }
    }
    rb.table(table);
    let Some((worst_region, worst)) = worst else {
        return rb.finish(Verdict::Error, "no surviving region could be read after the fault");
    };
    if !worst.missing.is_empty() {
        let keys: Vec<String> = worst.missing.iter().take(20).map(|s| format!("{}w/{s:08}", o.prefix)).collect();
        rb.table(Table {
            title: format!("Writes missing in {worst_region} at failover (first 20)"),
            columns: vec!["key".into()],
            rows: keys.into_iter().map(|k| vec![k]).collect(),
        });
    }
    rb.metric("rpo_ms", worst.rpo_ms);
    rb.metric("missing_at_failover", worst.missing.len() as f64);
    rb.metric("acked_before_fault", worst.acked_before_fault as f64);
    rb.note(format!(
        "a writer sent {} sequenced writes/s straight into {}; after the fault xregion read what every surviving region \
         held; RPO is the time from the last write before the first missing one to the fault (0 when nothing is \
         missing), worst survivor shown",
        ctx.config.checks.failover.rpo_writes_per_s, o.victim
    ));
    // Permanent loss: the writer's acknowledged writes still missing after the restore and convergence.
    let writer_prefix = format!("{}w/", o.prefix);
    let lost: Vec<&consistency::LostWrite> = match &o.judged {
        Ok((_, w, _)) => w.lost.iter().filter(|l| l.key.starts_with(&writer_prefix)).collect(),
        Err(e) => return rb.finish(Verdict::Error, format!("the history could not be judged: {e}")),
    };
    rb.metric("lost_for_good", lost.len() as f64);
    let mut problems = Vec::new();
    let target_ms = ctx.config.targets.rpo_s * 1000.0;
    if worst.rpo_ms > target_ms {
        problems.push(format!("RPO {:.0} ms in {worst_region} is above {target_ms:.0} ms", worst.rpo_ms));
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged writes never reached every region after the restore (permanent loss), e.g. {}",
            lost.len(),
            lost[0].key
        ));
    }
    if o.converged_after.is_none() {
        problems.push("the regions did not converge after the restore".into());
    }
    rb.measured(format!("RPO {:.0} ms, {} lost for good", worst.rpo_ms, lost.len()));
    let pass = format!(
        "RPO {:.0} ms ({} of {} writes acknowledged before the fault missing in {worst_region} at failover); after the \
         restore every acknowledged write is in every region",
        worst.rpo_ms,
        worst.missing.len(),
        worst.acked_before_fault
    );
    finish(rb, o, problems, pass)
}

fn judge_recovery(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    let limit = ctx.config.targets.failback_s;
    let after = |t: Option<f64>| t.map(|t| secs(t - o.restore_ms));
    let healthy = after(o.healthy_again_ms);
    let caught = after(o.caught_up_ms);
    let users = after(o.users_back_ms);
    let show = |x: Option<f64>| x.map_or("never".to_string(), |s| format!("{s:.1} s"));
    rb.metric("healthy_after_restore_s", healthy.unwrap_or(-1.0));
    rb.metric("caught_up_after_restore_s", caught.unwrap_or(-1.0));
    rb.metric("users_back_after_restore_s", users.unwrap_or(-1.0));
    rb.table(Table {
        title: format!("{} after its restore", o.victim),
        columns: vec!["milestone".into(), "after the restore".into()],
        rows: vec![
            vec!["health check ok".into(), show(healthy)],
            vec!["replication caught up both ways".into(), o.caught_up_unknown.clone().unwrap_or_else(|| show(caught))],
            vec![format!("nearest locations ({}) served by it", o.victim_locations.join(", ")), show(users)],
        ],
    });
    rb.note(format!(
        "caught up: every region's peers acknowledged its outbox up to the head it had when {} was healthy again; users \
         back: the first 1 s window in which at least {}% of the successful requests of its nearest locations were \
         served by it",
        o.victim, ctx.config.targets.routing_share_min_pct
    ));
    let mut problems = Vec::new();
    for (what, t) in [("healthy again", healthy), ("caught up", caught), ("serving its users again", users)] {
        if what == "caught up" && o.caught_up_unknown.is_some() {
            continue;
        }
        if what == "serving its users again" && o.victim_locations.is_empty() {
            continue;
        }
        match t {
            Some(s) if s <= limit => {}
            Some(s) => problems.push(format!("{} {what} only {s:.1} s after the restore (limit {limit} s)", o.victim)),
            None => problems.push(format!(
                "{} not {what} within {:.0} s of the restore",
                o.victim,
                secs(o.end_ms - o.restore_ms)
            )),
        }
    }
    let (found, acked) = history_findings(&mut rb, o);
    problems.extend(found);
    let worst = [healthy, caught, users].into_iter().flatten().fold(0.0, f64::max);
    rb.measured(format!("back in {worst:.1} s"));
    let pass = format!(
        "{} healthy {}, caught up {}, users back {} after the restore; {acked} acknowledged writes all present everywhere",
        o.victim,
        show(healthy),
        o.caught_up_unknown.clone().unwrap_or_else(|| show(caught)),
        show(users)
    );
    finish(rb, o, problems, pass)
}

fn judge_partial(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    let errors_pct = 100.0 - o.recovery.availability_pct();
    let max = ctx.config.targets.error_rate_max_pct;
    let mut problems = Vec::new();
    if errors_pct >= max {
        problems.push(format!("{errors_pct:.2}% of client requests failed during the partial failure (limit {max}%)"));
        rb.table(failure_table(o));
    }
    // Reads straight at the degraded region.
    let reads = o.direct_reads.len();
    let reads_ok = o.direct_reads.iter().filter(|a| a.ok).count();
    let reads_pct = if reads == 0 { 0.0 } else { reads_ok as f64 * 100.0 / reads as f64 };
    rb.metric("direct_reads", reads as f64);
    rb.metric("direct_reads_ok_pct", reads_pct);
    if reads_pct < o.rule.threshold_pct {
        problems.push(format!("only {reads_pct:.1}% of {reads} reads straight at {} were served", o.victim));
    }
    // Health must say something is wrong.
    let statuses: BTreeSet<&str> = o.victim_health.iter().map(|(_, s)| s.as_str()).collect();
    if statuses.iter().all(|s| *s == "ok") {
        problems.push(format!("{}'s health check kept answering ok while its store failed", o.victim));
    }
    rb.note(format!(
        "health answers of {} during the fault: {}",
        o.victim,
        statuses.into_iter().collect::<Vec<_>>().join(", ")
    ));
    // The affected traffic: writes from the region's nearest locations.
    let affected: Vec<&CanaryRecord> = o
        .canary
        .iter()
        .filter(|c| {
            c.write
                && o.victim_locations.contains(&c.location)
                && c.attempt.t_ms >= o.fault_ms
                && c.attempt.t_ms < o.restore_ms
        })
        .collect();
    let moved =
        affected.iter().filter(|c| c.attempt.ok && c.attempt.region.as_deref() != Some(o.victim.as_str())).count();
    let affected_ok = affected.iter().filter(|c| c.attempt.ok).count();
    rb.metric("affected_writes", affected.len() as f64);
    rb.metric("affected_writes_moved", moved as f64);
    if !affected.is_empty() && (affected_ok as f64) * 100.0 < (100.0 - max) * affected.len() as f64 {
        problems.push(format!(
            "only {affected_ok} of {} writes from {}'s nearest locations succeeded",
            affected.len(),
            o.victim
        ));
    }
    let (found, _) = history_findings(&mut rb, o);
    problems.extend(found);
    rb.measured(format!("errors {errors_pct:.2}%, reads {reads_pct:.1}% served"));
    let pass = format!(
        "{} ({}): {errors_pct:.2}% client errors, {reads_pct:.1}% of direct reads served, {moved} of {} affected writes \
         served by other regions",
        o.victim,
        o.spec.describe(),
        affected.len()
    );
    finish(rb, o, problems, pass)
}

fn judge_partition(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    let fence = fence_s(&ctx.config).unwrap_or(FENCE_S_DEFAULT);
    let limit_ms = o.fault_ms + fence * 1000.0;
    let late: Vec<&WriterRecord> =
        o.writer.iter().filter(|w| w.write.acked_ms.is_some_and(|t| t > limit_ms && t < o.restore_ms)).collect();
    let acked_in_minority =
        o.writer.iter().filter(|w| w.write.acked_ms.is_some_and(|t| t > o.fault_ms && t < o.restore_ms)).count();
    rb.metric("minority_acks_after_fence", late.len() as f64);
    rb.metric("minority_acks_during_partition", acked_in_minority as f64);
    rb.metric("fenced_after_s", o.fenced_ms.map_or(-1.0, |t| secs(t - o.fault_ms)));
    rb.note(format!(
        "a writer sent writes straight into {} during the partition; a write it acknowledged more than {fence:.1} s \
         after the partition began is a split brain: both sides accepted writes",
        o.victim
    ));
    let mut problems = Vec::new();
    if let Some(first) = late.first() {
        problems.push(format!(
            "split brain: {} acknowledged {} writes more than {fence:.1} s after it was partitioned (first {} at +{:.1} s)",
            o.victim,
            late.len(),
            first.key,
            secs(first.write.acked_ms.unwrap_or(0.0) - o.fault_ms)
        ));
    }
    let (found, acked) = history_findings(&mut rb, o);
    problems.extend(found);
    let fenced = o.fenced_ms.map_or("never said it was fenced".to_string(), |t| {
        format!("fenced itself after {:.1} s", secs(t - o.fault_ms))
    });
    rb.measured(format!("{} acks after the fence time", late.len()));
    let pass = format!(
        "{} {fenced} and acknowledged no write after {fence:.1} s; after healing {acked} acknowledged writes all present \
         everywhere, every winner right; client availability {:.2}%",
        o.victim,
        o.recovery.availability_pct()
    );
    finish(rb, o, problems, pass)
}
