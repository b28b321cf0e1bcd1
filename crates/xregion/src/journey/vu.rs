//! Journeys as virtual users' scripts (`xregion load --journey`), as k6 runs a script's groups: each VU runs one
//! journey instance after another until the run's duration is over, and every request of every step is recorded
//! under the name `journey/step`, so that a step has its own count, errors and percentiles, and thresholds can be
//! scoped to it (`register-and-order/order: p95 < 500ms`). Each journey also gets its iterations: how many
//! started, completed, were refused or failed, and the completed ones' durations.
//!
//! The result is the load engine's `LoadResult` (closed model), so thresholds, JSON and reports read it as they
//! read any load run. What differs from a single-request run: an expected refusal (a step's `expect` listing a
//! 4xx, such as a 409 for an e-mail already taken) is no error, as k6's `expected_statuses` makes it none; a
//! step's retries are requests of their own; and an instance ends at its first step that is not `Ok`.
//!
//! Setup journeys run once, all their instances, before the VUs start; a setup that does not complete ends the run
//! with an error. A journey's `[journey.fault]` is not injected here: faults belong to `xregion run`.

use super::run::{End, Outcome, Run, StepRecord, Target, run_instance, run_journey};
use super::spec::Journey;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_load::plan::Phase;
use xregion_load::result::PhaseStats;
use xregion_load::result::{Latency, new_histogram};
use xregion_load::{Executor, LoadResult, RequestStats, Threshold, Window};

/// How long instances still running when the duration ends may go on before they are abandoned (k6's
/// `gracefulStop` default).
pub const GRACEFUL_STOP: Duration = Duration::from_secs(30);

/// How often the number of scheduled VUs is updated while it ramps.
const SCHEDULE_TICK: Duration = Duration::from_millis(50);

/// Most chart windows; longer runs get wider windows (as the load engine's `WINDOWS_MAX`).
const WINDOWS_MAX: u64 = xregion_load::plan::WINDOWS_MAX;

/// A journey load run.
#[derive(Debug, Clone)]
pub struct VuPlan {
    /// The closed model's schedule: `ConstantVus` or `RampingVus` (the VUs' think time is the pause between two
    /// instances).
    pub executor: Executor,
    /// Named time ranges with their own counts and latency histogram, as the load engine's.
    pub phases: Vec<Phase>,
    /// Width of a chart window.
    pub window: Duration,
    /// Pass/fail criteria over the result.
    pub thresholds: Vec<Threshold>,
    /// Recorded in the result.
    pub seed: u64,
}

impl VuPlan {
    /// `vus` VUs for `duration`, `think_time` between instances.
    pub fn constant(vus: u32, duration: Duration, think_time: Duration) -> VuPlan {
        VuPlan {
            executor: Executor::ConstantVus {
                vus,
                duration_ms: duration.as_millis() as u64,
                think_time_ms: think_time.as_millis() as u64,
            },
            phases: Vec::new(),
            window: Duration::from_secs(1),
            thresholds: Vec::new(),
            seed: 0,
        }
    }
}

/// What one journey's iterations did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Iterations {
    /// Instances started (interrupted ones included).
    pub started: u64,
    /// Of which every step succeeded.
    pub completed: u64,
    /// Of which a step was refused with an expected status (the application said no).
    pub refused: u64,
    /// Of which a step failed, had an unknown outcome, or the instance ran out of time.
    pub failed: u64,
    /// Instances still running when the graceful stop ran out (or at Ctrl-C), abandoned; the steps they ended
    /// are recorded.
    pub interrupted: u64,
    /// Completed instances' durations, first request to last answer, µs.
    pub duration: Latency,
}

/// A journey load run's result; as JSON, a load run's result with `iterations` and `stopped_early` beside.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyLoad {
    /// The requests, per step (`journey/step`), with the thresholds' outcomes.
    #[serde(flatten)]
    pub result: LoadResult,
    /// Per journey.
    pub iterations: BTreeMap<String, Iterations>,
    /// Ctrl-C stopped the run before its duration was over; what was measured until then is here.
    pub stopped_early: bool,
}

/// What the VUs record as they go.
struct Acc {
    start: Instant,
    window_us: u64,
    per_request: BTreeMap<String, RequestStats>,
    statuses: BTreeMap<u16, u64>,
    errors: xregion_load::ErrorCounts,
    windows: Vec<WindowAcc>,
    iterations: BTreeMap<String, Iterations>,
    last: Instant,
    /// VUs running instances now (not parked by the schedule).
    vus_on: u32,
    vus_max: u32,
    /// Instances running now, per journey.
    running: BTreeMap<String, u32>,
    phases: Vec<(Phase, PhaseStats)>,
}

/// One chart window being filled.
struct WindowAcc {
    requests: u64,
    errors: u64,
    latency: hdrhistogram::Histogram<u64>,
    active_max: u32,
}

impl Acc {
    /// The window holding `at`; a new window starts with the VUs on now, as the load engine's do, so that a
    /// window in which no VU starts or stops still shows them.
    fn window(&mut self, at: Instant) -> &mut WindowAcc {
        let i = (at.saturating_duration_since(self.start).as_micros() as u64 / self.window_us).min(WINDOWS_MAX - 1);
        let on = self.vus_on;
        while self.windows.len() <= i as usize {
            self.windows.push(WindowAcc { requests: 0, errors: 0, latency: new_histogram(), active_max: on });
        }
        &mut self.windows[i as usize]
    }

    fn new(start: Instant, window_us: u64, scripts: &[Journey], phases: &[Phase]) -> Acc {
        Acc {
            start,
            window_us,
            per_request: BTreeMap::new(),
            statuses: BTreeMap::new(),
            errors: Default::default(),
            windows: Vec::new(),
            iterations: scripts.iter().map(|j| (j.name.clone(), Iterations::default())).collect(),
            last: start,
            vus_on: 0,
            vus_max: 0,
            running: BTreeMap::new(),
            phases: phases.iter().map(|p| (p.clone(), PhaseStats::default())).collect(),
        }
    }

    /// A VU started (+1) or ended (-1) an instance of `journey`.
    fn running(&mut self, journey: &str, delta: i32) {
        if delta > 0 {
            self.iterations.entry(journey.to_string()).or_default().started += 1;
        }
        let n = self.running.entry(journey.to_string()).or_default();
        *n = n.saturating_add_signed(delta);
    }

    /// A VU was let go by the schedule (+1), or parked or stopped (-1).
    fn vu(&mut self, delta: i32) {
        self.vus_on = self.vus_on.saturating_add_signed(delta);
        self.vus_max = self.vus_max.max(self.vus_on);
        let on = self.vus_on;
        let w = self.window(Instant::now());
        w.active_max = w.active_max.max(on);
    }

    /// How an instance ended (its steps were recorded as they ended).
    fn ended(&mut self, run: &Run) {
        let it = self.iterations.entry(run.journey.clone()).or_default();
        match &run.end {
            End::Completed => {
                it.completed += 1;
                it.duration.0.saturating_record((run.total_ms * 1000.0) as u64);
            }
            End::Refused { .. } => it.refused += 1,
            End::Failed { .. } => it.failed += 1,
        }
    }

    /// Every request of a step of `journey` that just ended. An attempt that was never sent (a template or a
    /// region that does not resolve) is no request: it fails its instance, which `ended` counts.
    fn step(&mut self, journey: &str, step: &StepRecord) {
        let name = format!("{journey}/{}", step.step);
        for a in step.attempts.iter().filter(|a| !a.region.is_empty()) {
            let us = (a.ms * 1000.0) as u64;
            let error = matches!(a.outcome, Outcome::Failed | Outcome::Unknown);
            let stats = self.per_request.entry(name.clone()).or_default();
            stats.count += 1;
            stats.latency.0.saturating_record(us);
            stats.latency_uncorrected.0.saturating_record(us);
            if error {
                stats.errors += 1;
                stats.latency_errors.0.saturating_record(us);
                match a.status {
                    Some(s) if s >= 400 => self.errors.status += 1,
                    // An answer that is not what the step expects: a failed assertion, a body that is not JSON.
                    Some(_) => self.errors.protocol += 1,
                    None if a.timed_out => self.errors.timeout += 1,
                    None if a.outcome == Outcome::Failed => self.errors.connect += 1,
                    None => self.errors.protocol += 1,
                }
            }
            if let Some(s) = a.status {
                *self.statuses.entry(s).or_default() += 1;
            }
            self.last = self.last.max(a.ended);
            let w = self.window(a.ended);
            w.requests += 1;
            w.errors += u64::from(error);
            w.latency.saturating_record(us);
            let at_ms = a.ended.saturating_duration_since(self.start).as_millis() as u64;
            for (p, st) in &mut self.phases {
                if (p.from_ms..p.to_ms).contains(&at_ms) {
                    st.requests += 1;
                    st.errors += u64::from(error);
                    st.latency.0.saturating_record(us);
                }
            }
        }
    }

    /// The result so far; instances still running count as interrupted.
    fn result(&mut self, plan: &VuPlan) -> JourneyLoad {
        for (journey, n) in std::mem::take(&mut self.running) {
            if let Some(it) = self.iterations.get_mut(&journey) {
                it.interrupted += u64::from(n);
            }
        }
        let duration_s = self.last.saturating_duration_since(self.start).as_secs_f64().max(1e-9);
        let requests: u64 = self.per_request.values().map(|s| s.count).sum();
        let failed: u64 = self.per_request.values().map(|s| s.errors).sum();
        let window_s = self.window_us as f64 / 1e6;
        let q = |h: &hdrhistogram::Histogram<u64>, p: f64| {
            if h.is_empty() { 0.0 } else { h.value_at_quantile(p) as f64 / 1000.0 }
        };
        let windows = self
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window {
                start_s: i as f64 * window_s,
                requests: w.requests,
                errors: w.errors,
                throughput_per_s: w.requests as f64 / window_s,
                latency_ms_p50: q(&w.latency, 0.50),
                latency_ms_p95: q(&w.latency, 0.95),
                latency_ms_p99: q(&w.latency, 0.99),
                active_max: w.active_max,
                rate_scheduled_per_s: None,
            })
            .collect();
        let interrupted = self.iterations.values().map(|i| i.interrupted).sum();
        let mut result = LoadResult {
            duration_s,
            model: "closed".into(),
            seed: plan.seed,
            workers: 1,
            requests,
            requests_per_s: xregion_load::RequestRates {
                ok: (requests - failed) as f64 / duration_s,
                total: requests as f64 / duration_s,
            },
            errors: self.errors,
            statuses: std::mem::take(&mut self.statuses),
            per_request: std::mem::take(&mut self.per_request),
            window_ms: self.window_us / 1000,
            windows,
            vus_max: self.vus_max,
            interrupted,
            phases: std::mem::take(&mut self.phases).into_iter().map(|(p, st)| (p.name, st)).collect(),
            ..LoadResult::default()
        };
        result.thresholds = plan.thresholds.iter().map(|t| t.evaluate(&result)).collect();
        JourneyLoad { result, iterations: std::mem::take(&mut self.iterations), stopped_early: false }
    }
}

/// Runs `journeys` as the virtual users of `plan.executor`: first every setup journey, then the others, VU `v`'s
/// `k`th iteration running journey `(v + k) mod n`. VU `v` runs while the schedule has more than `v` VUs; when the
/// schedule drops below, it finishes its instance and waits. `cancel` (Ctrl-C) stops new instances; what was
/// measured is kept.
pub async fn drive(
    target: &Target,
    journeys: &[&Journey],
    plan: &VuPlan,
    cancel: &CancellationToken,
) -> Result<JourneyLoad, String> {
    if plan.executor.is_open() {
        return Err("journeys run in the closed model only (virtual users), not at an arrival rate".into());
    }
    if plan.executor.concurrency_max() == 0 || plan.executor.duration().is_zero() {
        return Err("a journey load run needs at least one virtual user and a duration above 0".into());
    }
    if plan.executor.duration() > Duration::from_millis(xregion_load::plan::DURATION_MS_MAX) {
        return Err(format!("a journey load run lasts at most {} h", xregion_load::plan::DURATION_MS_MAX / 3_600_000));
    }
    for j in journeys.iter().filter(|j| j.setup) {
        for run in run_journey(target, j, cancel, None).await {
            let why = match &run.end {
                End::Completed => continue,
                End::Refused { step, status } => format!("{step} was refused with {status}"),
                End::Failed { step, why } => format!("{step} failed: {why}"),
            };
            return Err(format!("setup journey {}: {why}", run.id()));
        }
    }
    let scripts: Vec<Journey> = journeys.iter().filter(|j| !j.setup).map(|j| (*j).clone()).collect();
    if scripts.is_empty() {
        return Err("no journey to run as a virtual user: every journey chosen is a setup journey".into());
    }
    let start = Instant::now();
    let duration = plan.executor.duration();
    let window_us = window_us(plan);
    let acc = Arc::new(Mutex::new(Acc::new(start, window_us, &scripts, &plan.phases)));
    let counters: Arc<Vec<AtomicU32>> = Arc::new(scripts.iter().map(|_| AtomicU32::new(0)).collect());
    let scripts = Arc::new(scripts);
    let deadline = tokio::time::Instant::from_std(start + duration);
    let schedule = Arc::new(tokio::sync::watch::channel(plan.executor.vus_at(Duration::ZERO)).0);
    let think = plan.executor.think_time();
    let mut vus = tokio::task::JoinSet::new();
    for v in 0..plan.executor.concurrency_max() {
        let (target, scripts, counters, acc, cancel) =
            (target.clone(), scripts.clone(), counters.clone(), acc.clone(), cancel.clone());
        let mut scheduled = schedule.subscribe();
        vus.spawn(async move {
            let (mut k, mut on) = (0usize, false);
            loop {
                if v >= *scheduled.borrow_and_update() {
                    if on {
                        lock(&acc).vu(-1);
                        on = false;
                    }
                    tokio::select! {
                        r = scheduled.wait_for(|n| v < *n) => if r.is_err() { break },
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = cancel.cancelled() => break,
                    }
                }
                if tokio::time::Instant::now() >= deadline || cancel.is_cancelled() {
                    break;
                }
                if !on {
                    lock(&acc).vu(1);
                    on = true;
                }
                let which = (v as usize + k) % scripts.len();
                k += 1;
                let j = &scripts[which];
                let instance = counters[which].fetch_add(1, Ordering::Relaxed);
                lock(&acc).running(&j.name, 1);
                let on_step = |rec: &StepRecord| lock(&acc).step(&j.name, rec);
                let run = run_instance(&target, j, instance, None, Some(&on_step)).await;
                {
                    let mut a = lock(&acc);
                    a.running(&j.name, -1);
                    a.ended(&run);
                }
                if !think.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep_until((tokio::time::Instant::now() + think).min(deadline)) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            }
            if on {
                lock(&acc).vu(-1);
            }
        });
    }
    // The schedule: every tick, the VUs it wants now; at its end, none, then the graceful stop for the instances
    // still running. Ctrl-C ends the schedule and abandons the running instances at once (their ended steps are
    // recorded), so that an interrupted run prints what it measured without waiting.
    let stopped_early = std::sync::atomic::AtomicBool::new(false);
    let ticks = async {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SCHEDULE_TICK) => {}
                _ = cancel.cancelled() => {
                    stopped_early.store(start.elapsed() < duration, Ordering::Relaxed);
                    schedule.send_replace(0);
                    return;
                }
            }
            let elapsed = start.elapsed();
            schedule.send_replace(plan.executor.vus_at(elapsed));
            if elapsed >= duration {
                break;
            }
        }
        schedule.send_replace(0);
        tokio::select! {
            _ = tokio::time::sleep(GRACEFUL_STOP) => {}
            _ = cancel.cancelled() => {}
        }
    };
    tokio::pin!(ticks);
    loop {
        tokio::select! {
            joined = vus.join_next() => if joined.is_none() { break },
            _ = &mut ticks => break,
        }
    }
    vus.shutdown().await;
    let mut result = lock(&acc).result(plan);
    result.stopped_early = stopped_early.load(Ordering::Relaxed);
    Ok(result)
}

/// The accumulator, whatever a panicking VU left (a record is only ever added whole).
fn lock(a: &Mutex<Acc>) -> std::sync::MutexGuard<'_, Acc> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

/// The window width: the plan's, widened so the run has at most `WINDOWS_MAX` windows.
fn window_us(plan: &VuPlan) -> u64 {
    let width = plan.window.as_micros().max(1) as u64;
    let run = plan.executor.duration().as_micros() as u64 + GRACEFUL_STOP.as_micros() as u64;
    width.max(run.div_ceil(WINDOWS_MAX))
}
