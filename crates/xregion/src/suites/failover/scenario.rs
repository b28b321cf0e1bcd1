//! The failover scenario: steady canary and writer traffic, a fault in one region, observation until clients have
//! recovered and stayed recovered, the restore, the fail-back, and the history checks after convergence.

use super::{
    CANARY_IN_FLIGHT_MAX, CONFLICT_KEYS, CONFLICT_ROUNDS_PER_S, DIRECT_READS_IN_FLIGHT_MAX, DIRECT_READS_PER_S,
    FENCE_S_DEFAULT, HEALTHY_WAIT_MAX, OBSERVE_TICK, SURVIVOR_SETTLE_MAX, Scenario, WINDOW_SAMPLES_MIN,
    WRITER_IN_FLIGHT_MAX, fence_s,
};
use crate::check::{Ctx, ms};
use crate::config::{Profile, Traffic};
use crate::drive::converge::{States, await_convergence};
use crate::drive::health::await_all_healthy;
use crate::drive::lock;
use crate::drive::pace::{Pace, open_model};
use crate::drive::routed::router_probe;
use crate::drive::write::{self, Sequenced};
use crate::history::HistoryLog;
use crate::probe::Probe;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_check::consistency::{self, Convergence, LwwCheck, WriteCheck};
use xregion_check::recovery::{self, Attempt, Recovery, SequencedWrite, WindowRule};
use xregion_model::fault::FaultSpec;

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
    /// Problems with the injector or the observation that are not the deployment's fault.
    pub errors: Vec<String>,
    /// The routing record's behaviour is unknown to xregion; this records what the clients were told.
    pub canary_rate: f64,
    /// The canaries were the surviving regions' own clients, not clients at locations through a routing record.
    pub canaries_in_regions: bool,
}

/// Shared, appendable records of running tasks.
#[derive(Default)]
struct Recorder {
    /// Every canary request.
    canary: Mutex<Vec<CanaryRecord>>,
    /// The sequenced writer's writes.
    writer: Arc<Mutex<Vec<Sequenced>>>,
    /// Reads straight at the failing region.
    direct: Mutex<Vec<Attempt>>,
    /// Due times (µs since the start) of the canary requests in flight, with how many are due then.
    in_flight: Mutex<BTreeMap<u64, u32>>,
}

/// Latest time (ms since the start) up to which every canary request due is recorded: a request due earlier
/// than the oldest one in flight has its outcome, so windows ending there can be judged. `PACING_LAG_MS` covers
/// a request that is due but not yet started.
fn known_until_ms(rec: &Recorder, now_ms: f64) -> f64 {
    let oldest = lock(&rec.in_flight).keys().next().map(|us| *us as f64 / 1000.0);
    oldest.map_or(now_ms, |o| o.min(now_ms)) - PACING_LAG_MS
}

/// Most time between a request's due time and its start by the pacing loop, in ms.
const PACING_LAG_MS: f64 = 100.0;

fn since(t0: Instant) -> f64 {
    ms(t0.elapsed())
}

/// Runs `scenario`: steady canary and writer traffic, the fault, observation until clients recovered and stayed
/// recovered, the restore, the fail-back, and the convergence and history checks.
pub(super) async fn run(ctx: &Ctx, traffic: &Traffic, scenario: Scenario) -> Result<Outcome, String> {
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
    let prefix = ctx.prefix(scenario.name());
    ctx.progress.phase("waiting for every region to be healthy");
    await_all_healthy(&ctx.probes, HEALTHY_WAIT_MAX)
        .await
        .map_err(|p| format!("not every region is healthy before the fault: {}", p.join("; ")))?;

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
    let victim_locations: Vec<String> =
        traffic.nearest.iter().filter(|(_, r)| **r == victim).map(|(l, _)| l.clone()).collect();

    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let rec = Arc::new(Recorder::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (location, probe) in canary_clients(ctx, traffic, &survivors)? {
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
    {
        let (history, probe, prefix, stop, out) =
            (ctx.history.clone(), victim_probe.clone(), format!("{prefix}w/"), stop.clone(), rec.writer.clone());
        let pace = Pace::new(cfg.rpo_writes_per_s, WRITER_IN_FLIGHT_MAX);
        tasks.spawn(async move { write::sequenced(history, probe, prefix, pace, t0, &stop, out).await });
    }

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
        let (history, sides, prefix, stop) = (
            ctx.history.clone(),
            vec![victim_probe.clone(), survivors[0].clone()],
            format!("{prefix}lww/"),
            phase_stop.clone(),
        );
        // One round at a time: each side's writes come from one process.
        let pace = Pace::new(CONFLICT_ROUNDS_PER_S, 1);
        tasks.spawn(async move { write::conflicting(history, sides, prefix, CONFLICT_KEYS, pace, &stop).await });
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
    let stop_watch = super::stop::StopWatch::start(ctx);
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
        // Only windows whose every request has its outcome are judged.
        let judged_end = known_until_ms(&rec, since(t0));
        let canary = attempts(&lock(&rec.canary));
        if let Some(why) = stop_watch.holds(&canary, fault_ms, judged_end) {
            ctx.progress.phase(&format!("stop condition: {why}"));
            errors.push(format!("stopped by condition: {why}; the fault was lifted at once"));
            break;
        }
        let r = recovery::recovery(&canary, fault_ms, judged_end, &rule);
        let stable = r.recovered_at_ms.is_some_and(|at| judged_end - at >= cfg.stable_ms as f64);
        if (now >= min_observe && stable) || now >= observe_max {
            break;
        }
    }
    drop(stop_watch);
    phase_stop.cancel();

    ctx.progress.phase(&format!("restoring {victim}"));
    let restore_ms = since(t0);
    let restored = ctx.faults.restore(&victim).await;
    if let Err(e) = &restored {
        errors.push(format!("the region could not be restored: {e}"));
    }
    let (healthy_again_ms, caught_up_ms, users_back_ms, caught_up_unknown) = if restored.is_ok() {
        let users = if scenario.judges_users_back() { victim_locations.as_slice() } else { &[] };
        observe_failback(ctx, &victim_probe, users, t0, restore_ms, &rec, &cfg).await
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
    let final_states = crate::drive::converge::as_judged(&ctx.probes, &history, final_states);
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
    let mut writer: Vec<WriterRecord> = std::mem::take(&mut *lock(&rec.writer))
        .into_iter()
        .map(|w| {
            // Only a write another region's store took (a client that followed the writer) was never at risk; an
            // origin that names no region (etcd's is the cluster) may have been the failing region's.
            let moved = w.acked_by.as_ref().is_some_and(|r| *r != victim && survivors.iter().any(|p| &p.region == r));
            let by_failing = !moved;
            WriterRecord { write: SequencedWrite { seq: w.seq, acked_ms: w.acked_ms, by_failing }, key: w.key }
        })
        .collect();
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
        errors,
        canary_rate: rate,
        canaries_in_regions: canaries_in_regions(ctx, traffic),
    })
}

/// Who the canaries are: a client at every location the traffic names, through the latency record; or, for
/// regions that are databases (which have no routing records), a client in every surviving region, using that
/// region's own client (which reads its database and follows the writer), as an application in that region would.
fn canary_clients(ctx: &Ctx, traffic: &Traffic, survivors: &[Probe]) -> Result<Vec<(String, Probe)>, String> {
    if canaries_in_regions(ctx, traffic) {
        return Ok(survivors.iter().map(|p| (p.region.clone(), p.clone())).collect());
    }
    let locations = canary_locations(traffic);
    if locations.is_empty() {
        return Err("no client locations for the canaries: set [deployment.traffic.nearest]".into());
    }
    locations.into_iter().map(|l| router_probe(ctx, traffic, &l, CANARY_IN_FLIGHT_MAX).map(|p| (l, p))).collect()
}

/// Whether the canaries are the surviving regions' own clients (databases, which have no routing records).
fn canaries_in_regions(ctx: &Ctx, traffic: &Traffic) -> bool {
    traffic.records.is_empty() && ctx.probes.iter().any(|p| !p.capabilities().http_contract)
}

/// The client locations the canaries send from: every location the deployment's traffic names (its nearest
/// regions, its geolocation answers, its latency table), so that an http deployment gets the same canaries as the lab.
pub(super) fn canary_locations(traffic: &Traffic) -> Vec<String> {
    let names = traffic.nearest.keys().chain(traffic.geolocation.keys()).chain(traffic.locations.keys());
    names.cloned().collect::<BTreeSet<String>>().into_iter().collect()
}

pub(super) fn attempts(records: &[CanaryRecord]) -> Vec<Attempt> {
    records.iter().map(|c| c.attempt.clone()).collect()
}

/// Open-model canary of one location: alternating writes of fresh keys and reads of the last acknowledged one.
#[allow(clippy::too_many_arguments)]
async fn canary(
    history: Arc<HistoryLog>,
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
        // Registered when the pacing loop starts it, so that no due request is missing from `in_flight`.
        let due_us = (due - t0).as_micros() as u64;
        *lock(&rec.in_flight).entry(due_us).or_default() += 1;
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
            let mut in_flight = lock(&rec.in_flight);
            if let Some(n) = in_flight.get_mut(&due_us) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&due_us);
                }
            }
        }
    };
    let skipped = |i: u64, due: Instant| {
        let attempt = Attempt { t_ms: ms(due - t0), ok: false, latency_ms: 0.0, region: None };
        let error = Some("client in-flight limit reached".to_string());
        let record = CanaryRecord { location: skipped_location.clone(), write: i.is_multiple_of(2), attempt, error };
        lock(&skipped_rec.canary).push(record);
    };
    open_model(Pace::new(rate, CANARY_IN_FLIGHT_MAX), &stop, op, skipped).await;
}

/// Reads straight at the failing region during a partial failure: are reads still served?
async fn direct_reader(probe: Probe, prefix: String, t0: Instant, stop: CancellationToken, rec: Arc<Recorder>) {
    let op = |i: u64, due: Instant| {
        let (probe, rec) = (probe.clone(), rec.clone());
        let key = format!("{prefix}{:08}", i % 50);
        async move {
            let ok = probe.get(&key).await.is_ok();
            let attempt =
                Attempt { t_ms: ms(due - t0), ok, latency_ms: ms(due.elapsed()), region: Some(probe.region.clone()) };
            lock(&rec.direct).push(attempt);
        }
    };
    open_model(Pace::new(DIRECT_READS_PER_S, DIRECT_READS_IN_FLIGHT_MAX), &stop, op, |_, _| {}).await;
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

pub(super) fn short(s: &str) -> String {
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
        if healthy.is_some() && caught_up.is_none() && unknown.is_none() && !victim.capabilities().http_contract {
            // A database reports no outbox: whether the region caught up is judged by its data instead.
            unknown = Some(format!(
                "judged by its data ({} reports no replication status): every acknowledged write must be in it",
                victim.capabilities().kind
            ));
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
                known_until_ms(rec, since(t0)),
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
