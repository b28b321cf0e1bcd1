//! The load checks: virtual users through the latency record from every client location, ramping up, held, and
//! spiking, judged on P95, errors and the users reached.
//!
//! The three checks share one run of the load generator: a ramp to the target users, a hold, then a drop to a
//! tenth of them and a spike back. Each check judges its own phase of that run, with the exact histogram of the
//! requests completed in it (`Plan::phases`); a run that selects only some of them builds only their part.

use super::{charts, latency_metrics, plan, run_load};
use crate::check::{Ctx, ResultBuilder};
use crate::config::Profile;
use xregion_load::plan::{Executor, Phase, RequestSpec, Stage};
use xregion_load::result::{LoadResult, Percentiles, PhaseStats};
use xregion_model::report::{CheckResult, Verdict};

/// Think time of a virtual user between iterations, as in the specification's user model.
const THINK_TIME_MS: u64 = 1_000;
/// Users of the quick profile.
const QUICK_USERS: u32 = 2_000;
/// Id of the ramp-up check.
pub(super) const RAMP_UP: &str = "performance.load.ramp-up";
/// Id of the sustained check.
pub(super) const SUSTAINED: &str = "performance.load.sustained";
/// Id of the steady-state availability check, judged on the sustained phase.
pub(super) const AVAILABILITY: &str = "performance.availability";
/// Id of the spike check.
pub(super) const SPIKE: &str = "performance.load.spike";

/// Lengths of the parts of the shared run, in seconds, before `time_scale`.
struct Timeline {
    /// From 0 to the target users.
    ramp_s: f64,
    /// Held after the ramp within the ramp-up phase.
    ramp_hold_s: f64,
    /// The sustained phase: the target users held.
    hold_s: f64,
    /// From the target users down to the spike's base, between the phases (0: at once, as a 1 ms stage).
    drop_s: f64,
    /// The spike's base before and after it.
    base_s: f64,
    /// The spike's rise and fall.
    edge_s: f64,
    /// The spike's peak.
    peak_s: f64,
}

impl Timeline {
    fn of(profile: Profile) -> Timeline {
        match profile {
            Profile::Quick => Timeline {
                ramp_s: 20.0,
                ramp_hold_s: 5.0,
                hold_s: 30.0,
                drop_s: 0.0,
                base_s: 5.0,
                edge_s: 2.0,
                peak_s: 8.0,
            },
            Profile::Spec => Timeline {
                ramp_s: 300.0,
                ramp_hold_s: 10.0,
                hold_s: 600.0,
                drop_s: 0.0,
                base_s: 30.0,
                edge_s: 10.0,
                peak_s: 60.0,
            },
        }
    }
}

/// The executor and phases of the shared run for the selected checks: `(start users, stages, phases)`.
fn shape(
    t: &Timeline,
    users: u32,
    scale: f64,
    ramp_up: bool,
    sustained: bool,
    spike: bool,
) -> (u32, Vec<Stage>, Vec<Phase>) {
    let ms = |secs: f64| ((secs * scale * 1000.0) as u64).max(1);
    let base = (users / 10).max(1);
    let (mut stages, mut phases) = (Vec::new(), Vec::new());
    let mut now = 0u64;
    let mut stage = |secs: f64, target: u32, now: &mut u64| {
        stages.push(Stage { duration_ms: ms(secs), target: f64::from(target) });
        *now += ms(secs);
    };
    let mut start_users = 0;
    if ramp_up || sustained {
        stage(t.ramp_s, users, &mut now);
        let hold_from = now;
        stage(if sustained { t.hold_s } else { t.ramp_hold_s }, users, &mut now);
        if ramp_up {
            phases.push(Phase { name: RAMP_UP.into(), from_ms: 0, to_ms: hold_from + ms(t.ramp_hold_s) });
        }
        if sustained {
            phases.push(Phase { name: SUSTAINED.into(), from_ms: hold_from, to_ms: now });
        }
        if spike {
            stage(t.drop_s, base, &mut now);
        }
    } else {
        start_users = base;
    }
    if spike {
        let from = now;
        for (secs, target) in
            [(t.base_s, base), (t.edge_s, users), (t.peak_s, users), (t.edge_s, base), (t.base_s, base)]
        {
            stage(secs, target, &mut now);
        }
        phases.push(Phase { name: SPIKE.into(), from_ms: from, to_ms: now });
    }
    (start_users, stages, phases)
}

/// The target users of the load checks.
fn target_users(ctx: &Ctx) -> u32 {
    ctx.shard.share(ctx.config.checks.load.users.unwrap_or(match ctx.profile {
        Profile::Quick => QUICK_USERS.min(ctx.config.targets.max_concurrent_users as u32).max(1),
        Profile::Spec => ctx.config.targets.max_concurrent_users as u32,
    }))
}

/// Whether check `id` judges the shared load run, which a sharded run splits between its shards.
pub fn is_shardable(id: &str) -> bool {
    [RAMP_UP, SUSTAINED, SPIKE, AVAILABILITY].contains(&id)
}

/// What a shard keeps of the shared load run for `xregion merge`: everything the load checks judge.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadPart {
    /// What the shard's generator measured, histograms included.
    pub result: LoadResult,
    /// The stages it ran (its share of the users).
    pub stages: Vec<Stage>,
    /// The phases, one per selected load check.
    pub phases: Vec<Phase>,
}

/// The shared load run of this process, if it ran (and drove requests, not journeys, which do not shard yet).
pub async fn load_part(ctx: &Ctx) -> Option<LoadPart> {
    let shared = ctx.shared.get::<Result<Shared, String>>("load").await?;
    let s = shared.as_ref().as_ref().ok()?;
    s.iterations.is_none().then(|| LoadPart {
        result: s.result.clone(),
        stages: s.stages.clone(),
        phases: s.phases.clone(),
    })
}

/// Makes the union of `parts` (the shards' load runs, which ran at the same time) this context's shared load run,
/// so that the load checks judge it as they would one run.
pub async fn adopt_merged(ctx: &Ctx, parts: &[LoadPart]) -> Result<(), String> {
    let results: Vec<LoadResult> = parts.iter().map(|p| p.result.clone()).collect();
    let result = LoadResult::merge(&results)?;
    let first = parts.first().ok_or("no shard ran the load")?;
    let mut stages = first.stages.clone();
    for (i, st) in stages.iter_mut().enumerate() {
        st.target = parts.iter().map(|p| p.stages.get(i).map_or(0.0, |s| s.target)).sum();
    }
    let merged = Shared { result, iterations: None, stages, phases: first.phases.clone() };
    let (_, reused) = ctx.shared.get_or_compute::<Result<Shared, String>, _>("load", async { Ok(merged) }).await;
    if reused {
        return Err("the load run was computed before the merge".into());
    }
    Ok(())
}

/// The shared run, with its stages and phases.
struct Shared {
    /// What the generator measured.
    result: LoadResult,
    /// With `[checks.load] journeys`: each journey's iterations.
    iterations: Option<std::collections::BTreeMap<String, crate::journey::vu::Iterations>>,
    /// The stages it ran.
    stages: Vec<Stage>,
    /// Its phases, one per selected load check.
    phases: Vec<Phase>,
}

/// What the load checks among `selected` will run, for the console before the run starts: the users, each part
/// of the timeline and the total, for example `10000 users (spec profile): ramp 5 min 0 s, hold 10 min 0 s, spike
/// 2 min 20 s; 17 min 20 s of load`. `None` when no load check is selected.
pub fn timeline_text(config: &crate::config::Config, profile: Profile, selected: &[&str]) -> Option<String> {
    let has = |id: &str| selected.contains(&id);
    let (ramp_up, sustained, spike) = (has(RAMP_UP), has(SUSTAINED) || has(AVAILABILITY), has(SPIKE));
    if !(ramp_up || sustained || spike) {
        return None;
    }
    let users = config.checks.load.users.unwrap_or(match profile {
        Profile::Quick => QUICK_USERS.min(config.targets.max_concurrent_users as u32).max(1),
        Profile::Spec => config.targets.max_concurrent_users as u32,
    });
    let t = Timeline::of(profile);
    let scale = config.checks.load.time_scale;
    let (_, stages, _) = shape(&t, users, scale, ramp_up, sustained, spike);
    let total_s: f64 = stages.iter().map(|s| s.duration_ms as f64 / 1000.0).sum();
    let mut parts = Vec::new();
    if ramp_up || sustained {
        parts.push(format!("ramp {}", minutes(t.ramp_s * scale)));
        parts.push(format!("hold {}", minutes((if sustained { t.hold_s } else { t.ramp_hold_s }) * scale)));
    }
    if spike {
        parts.push(format!("spike {}", minutes((2.0 * (t.base_s + t.edge_s) + t.peak_s) * scale)));
    }
    Some(format!("{users} users ({} profile): {}; {} of load", profile.name(), parts.join(", "), minutes(total_s)))
}

/// `5 min 0 s`, `42 s`.
fn minutes(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 { format!("{} min {} s", s / 60, s % 60) } else { format!("{s} s") }
}

/// Runs the load checks' shared run: the parts of the timeline the selected load checks need.
async fn shared_run(ctx: &Ctx) -> Result<Shared, String> {
    let users = target_users(ctx);
    let selected = |id: &str| ctx.selected.contains(&id);
    let (start_vus, stages, phases) = shape(
        &Timeline::of(ctx.profile),
        users,
        ctx.config.checks.load.time_scale,
        selected(RAMP_UP),
        selected(SUSTAINED) || selected(AVAILABILITY),
        selected(SPIKE),
    );
    let executor = Executor::RampingVus { start_vus, stages: stages.clone(), think_time_ms: THINK_TIME_MS };
    let secs: f64 = stages.iter().map(|s| s.duration_ms as f64 / 1000.0).sum();
    if !ctx.config.checks.load.journeys.is_empty() {
        return journeys_run(ctx, executor, stages, phases, users, secs).await;
    }
    let traffic = ctx.traffic();
    let base = traffic.records.get("latency").cloned().unwrap_or_default();
    if ctx.client_locations().is_empty() {
        return Err("no client locations: set [deployment.traffic.nearest]".into());
    }
    let prefix = ctx.prefix("load");
    // Seed the hot key in every region so reads find it wherever they land.
    for p in &ctx.probes {
        p.put(&format!("{prefix}hot"), "hot value").await.map_err(|e| format!("could not measure: {e}"))?;
    }
    let mut plan = plan(ctx, user_mix(ctx, &base, &prefix), executor, &[])?;
    plan.phases = phases.clone();
    ctx.progress.phase(&format!(
        "{users} users ({} profile) for {secs:.0} s through {base} from {}",
        ctx.profile.name(),
        ctx.client_locations_text()
    ));
    let result = run_load(ctx, &plan).await.map_err(|e| format!("the load generator failed: {e}"))?;
    Ok(Shared { result, iterations: None, stages, phases })
}

/// The shared run with `[checks.load] journeys` as the users' script: the same stages and phases, the journeys
/// sent to each region's application API (`journey::vu`).
async fn journeys_run(
    ctx: &Ctx,
    executor: Executor,
    stages: Vec<Stage>,
    phases: Vec<Phase>,
    users: u32,
    secs: f64,
) -> Result<Shared, String> {
    let Some(loaded) = &ctx.config.journeys else {
        return Err("checks.load.journeys needs a journey file: set [e2e] journeys".into());
    };
    let chosen = loaded.file.for_load(&ctx.config.checks.load.journeys)?;
    let mut target = crate::suites::e2e::app_target(ctx)?;
    // Its own token, so that its instances are not the e2e checks' instances again (the same e-mails, the same
    // idempotency keys).
    target.run.push_str("-load");
    let names = ctx.config.checks.load.journeys.join(", ");
    ctx.progress.phase(&format!("{users} users running journeys {names} for {secs:.0} s"));
    let plan = crate::journey::vu::VuPlan {
        executor,
        phases: phases.clone(),
        window: std::time::Duration::from_secs(1),
        thresholds: Vec::new(),
        seed: ctx.seed,
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let done = crate::journey::vu::drive(&target, &chosen, &plan, &cancel).await?;
    Ok(Shared { result: done.result, iterations: Some(done.iterations), stages, phases })
}

pub(super) async fn ramp_up(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    load(rb, ctx, RAMP_UP).await
}

pub(super) async fn sustained(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    load(rb, ctx, SUSTAINED).await
}

pub(super) async fn spike(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    load(rb, ctx, SPIKE).await
}

/// The steady-state availability: the share of successful requests in the sustained phase (the target users
/// held), judged on its exact 95% confidence bounds. It passes only if the lower bound reaches the target, fails
/// only if the upper bound is below it, and otherwise the sample cannot tell.
pub(super) async fn availability(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let (shared, _) = ctx.shared.get_or_compute("load", shared_run(ctx)).await;
    let s = match shared.as_ref() {
        Ok(s) => s,
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
    };
    let Some(phase) = s.result.phases.get(SUSTAINED) else {
        return rb.finish(Verdict::Error, format!("the shared load run has no phase {SUSTAINED}"));
    };
    let failed_is = if s.iterations.is_some() {
        "a request failed when its journey step did not get what it expects (an unexpected status, a failed \
         assertion, a transport error); an expected refusal is no failure"
    } else {
        "a request failed on a transport error or a non-2xx answer other than 404"
    };
    judge_availability(rb, phase.requests, phase.errors, ctx.config.targets.steady_availability_min_pct, failed_is)
}

/// The availability verdict from `n` requests of which `failed` failed, against `min_pct`.
fn judge_availability(mut rb: ResultBuilder, n: u64, failed: u64, min_pct: f64, failed_is: &str) -> CheckResult {
    use xregion_check::evidence::{self, Decision};
    if min_pct >= 100.0 {
        return rb
            .finish(Verdict::Error, "targets.steady_availability_min_pct must be below 100: no sample shows 100%");
    }
    let ok = n - failed.min(n);
    let (lower, upper) = evidence::proportion_bounds(ok, n, evidence::CONFIDENCE);
    let needed = evidence::trials_needed(min_pct / 100.0);
    let observed = if n == 0 { 0.0 } else { ok as f64 * 100.0 / n as f64 };
    rb.metric("requests", n as f64)
        .metric("failed", failed as f64)
        .metric("availability_pct", observed)
        .metric("lower_bound_pct", lower * 100.0)
        .metric("upper_bound_pct", upper * 100.0)
        .metric("evidence_min_requests", needed as f64);
    rb.note(format!(
        "the requests of the sustained phase of the shared load run (the target users held, no fault injected), \
         so this check costs no time of its own; {failed_is}; bounds: one-sided 95% Clopper-Pearson; a pass takes \
         at least {needed} requests with none failed"
    ));
    rb.measured(format!("{observed:.4}% of {n} requests"));
    let bounds = format!("95% bounds {:.4}%..{:.4}%", lower * 100.0, upper * 100.0);
    match evidence::judge_proportion_at_least(ok, n, min_pct / 100.0) {
        Decision::Met => rb.finish(
            Verdict::Pass,
            format!("{observed:.4}% of {n} requests succeeded ({failed} failed); {bounds}, at least {min_pct}%"),
        ),
        Decision::Missed => rb.finish(
            Verdict::Fail,
            format!("{failed} of {n} requests failed: availability {observed:.4}% ({bounds}) is below {min_pct}%"),
        ),
        Decision::Undecided => rb.finish(
            Verdict::Error,
            format!(
                "too few requests to tell: {failed} of {n} failed ({observed:.4}%, {bounds}); showing {min_pct}% \
                 takes at least {needed} requests with none failed"
            ),
        ),
    }
}

/// The request mix of a user: reads of a hot key, writes of the user's location key, and catalogue reads, from
/// every client location (`Ctx::client_locations`) through the latency record.
fn user_mix(ctx: &Ctx, base: &str, prefix: &str) -> Vec<RequestSpec> {
    let mut specs = Vec::new();
    for (loc, h) in ctx.client_locations() {
        specs.push(RequestSpec {
            name: format!("read@{loc}"),
            url: format!("{base}/v1/kv/{prefix}hot"),
            method: "GET".into(),
            headers: h.clone(),
            body: None,
            weight: 6,
        });
        let mut wh = h.clone();
        wh.push(("content-type".into(), "application/json".into()));
        specs.push(RequestSpec {
            name: format!("write@{loc}"),
            url: format!("{base}/v1/kv/{prefix}user-{loc}"),
            method: "PUT".into(),
            headers: wh,
            body: Some(format!("{{\"value\":\"load from {loc}\"}}")),
            weight: 2,
        });
        specs.push(RequestSpec {
            name: format!("catalog@{loc}"),
            url: format!("{base}/v1/catalog/item-1"),
            method: "GET".into(),
            headers: h,
            body: None,
            weight: 2,
        });
    }
    specs
}

/// Most users active in any chart window that starts in `[from_ms, to_ms)`.
fn users_max_in(r: &LoadResult, from_ms: u64, to_ms: u64) -> u32 {
    let (from_s, to_s) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
    r.windows.iter().filter(|w| w.start_s >= from_s && w.start_s < to_s).map(|w| w.active_max).max().unwrap_or(0)
}

/// Judges the phase `id` of the shared run.
async fn load(mut rb: ResultBuilder, ctx: &Ctx, id: &str) -> CheckResult {
    let (shared, reused) = ctx.shared.get_or_compute("load", shared_run(ctx)).await;
    if reused {
        ctx.progress.phase("judging this run's earlier load, phase by phase");
    }
    let Shared { result: r, stages, phases, iterations } = match shared.as_ref() {
        Ok(s) => s,
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
    };
    let range = phases.iter().find(|p| p.name == id).map(|p| (p.from_ms, p.to_ms));
    let (Some(phase), Some(range)) = (r.phases.get(id), range) else {
        return rb.finish(Verdict::Error, format!("the shared load run has no phase {id}"));
    };
    let users = target_users(ctx);
    let PhaseStats { requests, errors, latency } = phase;
    let p = Percentiles::of(&latency.0);
    let error_pct = phase.error_pct();
    let users_max = users_max_in(r, range.0, range.1);
    let secs = (range.1 - range.0) as f64 / 1000.0;
    latency_metrics(&mut rb, *requests, *requests as f64 / secs.max(1e-3), error_pct, &p);
    rb.metric("errors", *errors as f64)
        .metric("users_target", users as f64)
        .metric("users_max", users_max as f64)
        .metric("phase_from_s", range.0 as f64 / 1000.0)
        .metric("phase_to_s", range.1 as f64 / 1000.0)
        .metric("run_requests", r.requests as f64)
        .metric("reconnects", r.reconnects as f64);
    if let Some(rss) = r.rss_bytes_peak {
        rb.metric("generator_rss_mb_peak", rss as f64 / 1_048_576.0)
            .metric("generator_rss_kb_per_user", rss as f64 / 1024.0 / f64::from(r.vus_max.max(1)));
    }
    for c in charts(r) {
        rb.chart(c);
    }
    rb.distribution(xregion_load::result::distribution(&format!("requests completed in {id}'s phase"), &latency.0));
    let stages_text = stages
        .iter()
        .map(|s| format!("{} users over {} s", s.target, s.duration_ms as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(", ");
    match iterations {
        None => {
            rb.note(format!(
                "closed model: each virtual user has its own keep-alive connection and waits {THINK_TIME_MS} ms \
                 between requests; the mix per user is 60% reads of a hot key, 20% durable writes, 20% catalogue \
                 reads, from {} through the latency record; stages of the shared run: {stages_text}",
                ctx.client_locations_text(),
            ));
        }
        Some(its) => {
            rb.note(format!(
                "closed model: each virtual user runs one journey instance after another ({}), waiting \
                 {THINK_TIME_MS} ms between them, against each region's application API as the journeys say; \
                 every request of every step counts, retries included, and an expected refusal is no error; \
                 stages of the shared run: {stages_text}",
                ctx.config.checks.load.journeys.join(", ")
            ));
            let (its, steps) = journey_tables(r, its);
            rb.table(its).table(steps);
        }
    }
    rb.note(format!(
        "this check judges the requests completed from {:.0} s to {:.0} s of the shared run (its phase), with their \
         own latency histogram; the charts show the whole run",
        range.0 as f64 / 1000.0,
        range.1 as f64 / 1000.0
    ));
    rb.note(if iterations.is_some() {
        "the journeys run in xregion's process, separate from the deployment's"
    } else {
        "the load generator runs in its own process (xregion load-worker), separate from the lab"
    });
    rb.measured(format!("P95 {:.0} ms, {error_pct:.2}% errors, {users_max} users", p.p95));
    let t = &ctx.config.targets;
    let mut problems = Vec::new();
    let needed = xregion_check::evidence::samples_to_estimate(0.95);
    let hist = &latency.0;
    let j = xregion_check::evidence::judge_quantile(*requests, 0.95, t.load_p95_ms, |r| {
        hist.value_at_quantile(r as f64 / (*requests).max(1) as f64) as f64 / 1000.0
    });
    match j.below {
        Some(false) => problems.push(format!("{} is not below {} ms", j.describe("ms"), t.load_p95_ms)),
        Some(true) => {}
        None => {
            return rb.finish(
                Verdict::Error,
                format!("not enough evidence ({requests} of {needed} requests completed in the phase for a P95)"),
            );
        }
    }
    if error_pct >= t.error_rate_max_pct {
        problems.push(format!("{error_pct:.2}% errors is not below {}%", t.error_rate_max_pct));
    }
    if users_max < users {
        problems.push(format!("only {users_max} of {users} users were reached"));
    }
    if problems.is_empty() {
        rb.finish(
            Verdict::Pass,
            format!(
                "{users_max} users: P95 {:.0} ms, {error_pct:.2}% errors over {requests} requests ({:.0} req/s)",
                p.p95,
                *requests as f64 / secs.max(1e-3)
            ),
        )
    } else {
        rb.finish(Verdict::Fail, format!("{} (P95 {:.0} ms, {error_pct:.2}% errors)", problems.join("; "), p.p95))
    }
}

/// The journeys' iterations by outcome, and every step's requests over the whole run.
fn journey_tables(
    r: &LoadResult,
    its: &std::collections::BTreeMap<String, crate::journey::vu::Iterations>,
) -> (xregion_model::report::Table, xregion_model::report::Table) {
    let ms = |v: f64| format!("{v:.1}");
    let iterations = its
        .iter()
        .map(|(name, it)| {
            let p = Percentiles::of(&it.duration.0);
            vec![
                name.clone(),
                it.started.to_string(),
                it.completed.to_string(),
                it.refused.to_string(),
                it.failed.to_string(),
                it.interrupted.to_string(),
                ms(p.p50),
                ms(p.p95),
                ms(p.max),
            ]
        })
        .collect();
    let steps = r
        .per_request
        .iter()
        .map(|(name, st)| {
            let p = Percentiles::of(&st.latency.0);
            vec![name.clone(), st.count.to_string(), st.errors.to_string(), ms(p.p50), ms(p.p95), ms(p.p99), ms(p.max)]
        })
        .collect();
    let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    (
        xregion_model::report::Table {
            title: "Journey iterations over the whole run (completed ones' durations, ms)".into(),
            columns: cols(&[
                "journey",
                "started",
                "completed",
                "refused",
                "failed",
                "interrupted",
                "p50",
                "p95",
                "max",
            ]),
            rows: iterations,
        },
        xregion_model::report::Table {
            title: "Journey steps over the whole run (ms)".into(),
            columns: cols(&["step", "requests", "errors", "p50", "p95", "p99", "max"]),
            rows: steps,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the shared run lays the phases out as the three separate runs did: the ramp-up phase is the ramp plus
    /// a short hold, the sustained phase the whole hold, the spike phase starts at its base; and a selection of
    /// one check builds only its part.
    #[test]
    fn phases_of_the_shared_run() {
        let t = Timeline::of(Profile::Quick);
        let (start, stages, phases) = shape(&t, 2000, 1.0, true, true, true);
        assert_eq!(start, 0);
        let total: u64 = stages.iter().map(|s| s.duration_ms).sum();
        assert_eq!(total, 72_001, "the drop to the spike's base is a 1 ms stage");
        let range = |n: &str| phases.iter().find(|p| p.name == n).map(|p| (p.from_ms, p.to_ms)).unwrap();
        assert_eq!(range(RAMP_UP), (0, 25_000));
        assert_eq!(range(SUSTAINED), (20_000, 50_000));
        assert_eq!(range(SPIKE), (50_001, 72_001));
        assert_eq!(stages[2].target, 200.0, "down to the spike's base before it");
        let (start, stages, phases) = shape(&t, 2000, 1.0, false, false, true);
        assert_eq!((start, phases.len()), (200, 1));
        assert_eq!(stages.iter().map(|s| s.duration_ms).sum::<u64>(), 22_000);
        let (_, stages, _) = shape(&t, 2000, 1.0, true, false, false);
        assert_eq!(stages.iter().map(|s| s.duration_ms).sum::<u64>(), 25_000);
    }

    /// Goal: the availability check's three outcomes: 60,000 requests without a failure pass 99.99%, 100 failed
    /// of 60,000 fail it, and 10,000 without a failure cannot tell (a pass takes about 30,000).
    #[test]
    fn availability_has_three_outcomes() {
        let def = super::super::CHECKS.iter().find(|d| d.id == AVAILABILITY).expect("the availability check");
        let config = crate::config::Config::default();
        let judge = |n, failed| judge_availability(ResultBuilder::new(def, &config), n, failed, 99.99, "failed");
        let pass = judge(60_000, 0);
        assert_eq!(pass.verdict, Verdict::Pass, "{}", pass.summary);
        let fail = judge(60_000, 100);
        assert_eq!(fail.verdict, Verdict::Fail, "{}", fail.summary);
        assert!(fail.summary.contains("100 of 60000 requests failed"), "{}", fail.summary);
        let thin = judge(10_000, 0);
        assert_eq!(thin.verdict, Verdict::Error, "{}", thin.summary);
        assert!(thin.summary.contains("too few requests to tell"), "{}", thin.summary);
    }

    /// Goal: `--profile spec` is the seed's plan (a 5 min ramp to 10,000 users, 10 min held, a spike), and the
    /// text printed before the run says so with the total; without a load check there is nothing to print.
    #[test]
    fn the_spec_timeline_is_printed_up_front() {
        let config = crate::config::Config::default();
        let all = [RAMP_UP, SUSTAINED, SPIKE];
        assert_eq!(
            timeline_text(&config, Profile::Spec, &all).as_deref(),
            Some("10000 users (spec profile): ramp 5 min 0 s, hold 10 min 0 s, spike 2 min 20 s; 17 min 20 s of load")
        );
        assert_eq!(timeline_text(&config, Profile::Spec, &["security.erasure"]), None);
    }
}
