//! The engine: one std thread per worker, each with its own current-thread tokio runtime, its own connections and
//! its own `Recorder`, so the request path never crosses threads or takes a lock. Workers split the VUs (closed
//! model) or the schedule (open model) round-robin, and their recorders merge when all have finished.

use crate::error::LoadError;
use crate::http::Conn;
use crate::plan::{CompiledTarget, Executor, Plan};
use crate::record::{Recorder, WindowMerger};
use crate::result::LoadResult;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

// What counts as late is the recorder's rule; this path is kept for callers that name it here.
pub use crate::record::LATE_THRESHOLD;

/// How early the open-model scheduler aims: tokio's timer rounds a deadline up to its next millisecond tick and the
/// runtime may park up to another millisecond past it, so aiming two ticks early keeps timer lag out of the
/// corrected latency (a send up to this early is measured from the send).
const TIMER_GRANULE: Duration = Duration::from_millis(2);
/// How often a closed-model worker compares its active VUs with the ramp.
const CONTROL_TICK: Duration = Duration::from_millis(10);
/// Delay between spawning the workers and the start of the schedule, so all runtimes are up at time zero.
const START_DELAY: Duration = Duration::from_millis(20);
/// Most worker threads, whatever the machine says.
const WORKERS_MAX: u32 = 256;

/// What every worker shares, read-only.
struct Shared {
    plan: Plan,
    targets: Vec<CompiledTarget>,
    names: Vec<String>,
    /// Cumulative weights, for the weighted choice.
    weights_cum: Vec<u64>,
    start: Instant,
    window: Duration,
    workers: u32,
    merger: Arc<Mutex<WindowMerger>>,
    capture: Arc<[String]>,
    /// Whether any connection of any worker has opened.
    connected_any: AtomicBool,
    /// Set when no connection opened within `plan.no_connection_abort_ms`: every worker stops.
    aborted: AtomicBool,
    /// The target and reason of the last failed connect while none had opened yet.
    never_connected: Mutex<Option<(SocketAddr, String)>>,
}

/// Runs a plan to completion on worker threads of this process. Blocks.
pub fn run_plan(plan: &Plan) -> Result<LoadResult, LoadError> {
    run_plan_streaming(plan, None)
}

/// `run_plan`, telling `windows` of each chart window as it closes, while the run runs (the stream ends when the
/// run does).
pub fn run_plan_streaming(
    plan: &Plan,
    windows: Option<std::sync::mpsc::Sender<crate::result::Window>>,
) -> Result<LoadResult, LoadError> {
    plan.validate()?;
    let targets = crate::plan::compile_targets(plan)?;
    crate::fdlimit::check(u64::from(plan.connections_needed()))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    // No worker without a connection (or a VU) of its own.
    let workers = plan.workers.unwrap_or(cpus).clamp(1, WORKERS_MAX).min(plan.connections_needed().max(1));
    let window = plan.window();
    let merger = Arc::new(Mutex::new(WindowMerger::new(workers as usize, window, windows)));
    let mut acc = 0;
    let weights_cum = plan
        .targets
        .iter()
        .map(|t| {
            acc += u64::from(t.weight);
            acc
        })
        .collect();
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        names: targets.iter().map(|t| t.name.clone()).collect(),
        targets,
        weights_cum,
        start: Instant::now() + START_DELAY,
        window,
        workers,
        merger: merger.clone(),
        capture: plan.capture_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        connected_any: AtomicBool::new(false),
        aborted: AtomicBool::new(false),
        never_connected: Mutex::new(None),
    });
    let mut handles = Vec::with_capacity(workers as usize);
    for w in 0..workers {
        let shared = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("xregion-load-{w}"))
            .spawn(move || -> Result<Recorder, LoadError> {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LoadError::Runtime)?;
                let local = tokio::task::LocalSet::new();
                let rec = Rc::new(RefCell::new(Recorder::new(
                    shared.start,
                    shared.window,
                    shared.plan.executor.is_open(),
                    shared.targets.len(),
                    shared.capture.clone(),
                    shared.merger.clone(),
                    &shared.plan.phases,
                )));
                let r2 = rec.clone();
                local.block_on(&rt, async move {
                    let ticker = tokio::task::spawn_local(window_ticker(shared.clone(), r2.clone()));
                    if shared.plan.executor.is_open() {
                        open_worker(shared.clone(), w, r2.clone()).await;
                    } else {
                        closed_worker(shared.clone(), w, r2.clone()).await;
                    }
                    ticker.abort();
                    r2.borrow_mut().finish(Instant::now());
                });
                // Dropping the LocalSet aborts tasks that outlived the drain; they hold clones of the recorder.
                drop(local);
                drop(rt);
                let rec = Rc::try_unwrap(rec).map_err(|_| LoadError::WorkerPanicked("recorder still shared".into()))?;
                Ok(rec.into_inner())
            })
            .map_err(LoadError::Runtime)?;
        handles.push(h);
    }
    let mut total: Option<Recorder> = None;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => match &mut total {
                Some(t) => t.merge(r),
                None => total = Some(r),
            },
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(p) => {
                let msg =
                    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
                first_err = first_err.or(Some(LoadError::WorkerPanicked(msg.unwrap_or_default())));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let total = total.expect("at least one worker");
    // A run that never reached its target measured nothing: say so rather than report a result of errors only.
    if let Some(limit_ms) = plan.no_connection_abort_ms
        && !shared.connected_any.load(Ordering::Relaxed)
        && let Some((addr, reason)) = shared.never_connected.lock().expect("never_connected lock").take()
    {
        let tried_ms = limit_ms.min(plan.executor.duration().as_millis() as u64);
        return Err(LoadError::NoConnection { addr, within_s: tried_ms as f64 / 1000.0, reason });
    }
    let end = total.last_completion.unwrap_or(shared.start).max(shared.start + plan.executor.duration());
    let duration = end.saturating_duration_since(shared.start);
    let last_window = (duration.as_micros() / window.as_micros().max(1)) as u64;
    let mut windows = merger.lock().expect("window merger lock").finish(last_window);
    if plan.executor.is_open() {
        for w in &mut windows {
            let mid = Duration::from_secs_f64(w.start_s + window.as_secs_f64() / 2.0);
            w.rate_scheduled_per_s = Some(plan.executor.rate_at(mid));
        }
    }
    let mut result = LoadResult {
        duration_s: duration.as_secs_f64(),
        model: if plan.executor.is_open() { "open" } else { "closed" }.into(),
        seed: plan.seed,
        workers,
        errors: total.errors,
        window_ms: window.as_millis() as u64,
        windows,
        vus_max: total.gauge_max,
        late: total.late,
        late_lag_ms_max: total.late_lag_us_max as f64 / 1000.0,
        dropped: total.dropped,
        interrupted: total.interrupted,
        reconnects: total.reconnects,
        connections_opened: total.connections_opened,
        ..LoadResult::default()
    };
    result.phases = total.phase_stats(&plan.phases);
    let (statuses, per_request, requests) = total.into_stats(&shared.names);
    result.statuses = statuses;
    result.per_request = per_request;
    result.requests = requests;
    result.requests_per_s = crate::result::RequestRates { ok: result.rps_ok(), total: result.rps() };
    result.thresholds = plan.thresholds.iter().map(|t| t.evaluate(&result)).collect();
    Ok(result)
}

/// Rolls the worker's window at each boundary, so quiet workers still report every window.
async fn window_ticker(shared: Arc<Shared>, rec: Rc<RefCell<Recorder>>) {
    let mut next = shared.start + shared.window;
    loop {
        tokio::time::sleep_until(next.into()).await;
        rec.borrow_mut().roll(Instant::now());
        next += shared.window;
    }
}

/// A small, fast, seeded generator (SplitMix64) for the weighted request choice.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Shared {
    fn pick(&self, rng: &mut Rng) -> usize {
        if self.weights_cum.len() == 1 {
            return 0;
        }
        let total = *self.weights_cum.last().expect("validated non-empty");
        let r = rng.next() % total;
        self.weights_cum.iter().position(|c| r < *c).expect("r is below the total")
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.plan.request_timeout_ms)
    }

    /// Whether the run was given up because no connection ever opened.
    fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// After a failed request while no connection has opened anywhere: remembers why, and gives the run up once
    /// `no_connection_abort_ms` has passed.
    fn note_never_connected(&self, conn: &Conn, req: usize) {
        if self.connected_any.load(Ordering::Relaxed) {
            return;
        }
        let reason = conn.last_connect_error.clone().unwrap_or_else(|| "no response within the request timeout".into());
        *self.never_connected.lock().expect("never_connected lock") = Some((self.targets[req].addr, reason));
        if let Some(ms) = self.plan.no_connection_abort_ms
            && self.start.elapsed() >= Duration::from_millis(ms)
        {
            self.aborted.store(true, Ordering::Relaxed);
        }
    }

    /// Runs one request on `conn` and records it; `intended` is the open model's scheduled start.
    async fn iteration(&self, rec: &RefCell<Recorder>, conn: &mut Conn, req: usize, intended: Option<Instant>) {
        let sent = Instant::now();
        if let Some(i) = intended {
            rec.borrow_mut().lag(sent.saturating_duration_since(i));
        }
        let target = &self.targets[req];
        let outcome =
            conn.request(target, sent + self.timeout(), &mut |_, headers| rec.borrow_mut().on_head(req, headers)).await;
        let done = Instant::now();
        let mut r = rec.borrow_mut();
        if conn.opened > 0 {
            r.connections_opened += u64::from(std::mem::take(&mut conn.opened));
            r.reconnects += u64::from(std::mem::take(&mut conn.reconnects));
            self.connected_any.store(true, Ordering::Relaxed);
        }
        let uncorrected = done.saturating_duration_since(sent).as_micros() as u64;
        // From the intended start when the send was late (the coordinated-omission correction), from the send when
        // it was early. A failed request keeps its latency too (a timeout counts its full wait).
        let corrected =
            intended.map_or(uncorrected, |i| done.saturating_duration_since(i.min(sent)).as_micros() as u64);
        match outcome {
            Ok(status) => r.response(req, done, status, corrected, uncorrected),
            Err(f) => {
                r.failure(req, done, f, corrected, uncorrected);
                drop(r);
                self.note_never_connected(conn, req);
            }
        }
    }
}

/// Per-worker state of the closed model.
struct ClosedState {
    /// Active VUs the ramp asks for now (global ids below it run).
    target: Cell<u32>,
    stop: Cell<bool>,
    /// Whether each local VU runs.
    running: RefCell<Vec<bool>>,
}

async fn closed_worker(shared: Arc<Shared>, w: u32, rec: Rc<RefCell<Recorder>>) {
    let ex = &shared.plan.executor;
    let vus_max = ex.concurrency_max();
    let owned: Vec<u32> = (w..vus_max).step_by(shared.workers as usize).collect();
    let state = Rc::new(ClosedState {
        target: Cell::new(0),
        stop: Cell::new(false),
        running: RefCell::new(vec![false; owned.len()]),
    });
    let duration = ex.duration();
    tokio::time::sleep_until(shared.start.into()).await;
    let mut tick = tokio::time::interval_at(shared.start.into(), CONTROL_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_target = None;
    loop {
        tick.tick().await;
        let t = shared.start.elapsed();
        if t >= duration || shared.aborted() {
            break;
        }
        let target = ex.vus_at(t);
        state.target.set(target);
        if last_target == Some(target) {
            continue;
        }
        last_target = Some(target);
        for (li, id) in owned.iter().copied().enumerate().take_while(|(_, id)| *id < target) {
            let mut running = state.running.borrow_mut();
            if !running[li] {
                running[li] = true;
                let mut r = rec.borrow_mut();
                let g = r.gauge() + 1;
                r.set_gauge(g);
                tokio::task::spawn_local(vu(shared.clone(), state.clone(), rec.clone(), id, li));
            }
        }
    }
    state.stop.set(true);
    state.target.set(0);
    // In-flight requests finish within the request timeout; think times are cut short by `stop`.
    let drain_until = Instant::now() + shared.timeout() + CONTROL_TICK;
    while rec.borrow().gauge() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(CONTROL_TICK).await;
    }
    let mut r = rec.borrow_mut();
    r.interrupted += u64::from(r.gauge());
}

/// One closed-model VU: its own connection, one request at a time, think time between.
async fn vu(shared: Arc<Shared>, state: Rc<ClosedState>, rec: Rc<RefCell<Recorder>>, id: u32, li: usize) {
    let mut conn = Conn::new();
    let mut rng = Rng::new(shared.plan.seed, u64::from(id));
    let think = shared.plan.executor.think_time();
    let end = shared.start + shared.plan.executor.duration();
    while !state.stop.get() && id < state.target.get() && !shared.aborted() {
        // After a failed connect, wait out the backoff (not part of any request's latency: no request is due).
        if let Some(at) = conn.backoff_until() {
            tokio::time::sleep_until(at.min(end).into()).await;
            if Instant::now() >= end {
                break;
            }
            continue;
        }
        let req = shared.pick(&mut rng);
        shared.iteration(&rec, &mut conn, req, None).await;
        if !think.is_zero() && !state.stop.get() {
            let until = (Instant::now() + think).min(shared.start + shared.plan.executor.duration());
            tokio::time::sleep_until(until.into()).await;
        }
    }
    state.running.borrow_mut()[li] = false;
    let mut r = rec.borrow_mut();
    let g = r.gauge().saturating_sub(1);
    r.set_gauge(g);
}

/// Per-worker state of the open model.
struct OpenState {
    /// Intended starts of admitted iterations waiting for a connection.
    queue: RefCell<VecDeque<Instant>>,
    ready: Notify,
    done: Cell<bool>,
    /// Admitted iterations not yet finished (queued plus on the wire).
    in_flight: Cell<u32>,
}

/// Share `n` of `total` split over `workers` round-robin.
fn share(total: u32, workers: u32, w: u32) -> u32 {
    total / workers + u32::from(w < total % workers)
}

async fn open_worker(shared: Arc<Shared>, w: u32, rec: Rc<RefCell<Recorder>>) {
    let ex = &shared.plan.executor;
    let cap = share(ex.concurrency_max(), shared.workers, w).max(1);
    let conns = share(shared.plan.connections_needed(), shared.workers, w).max(1);
    let state = Rc::new(OpenState {
        queue: RefCell::new(VecDeque::with_capacity(cap as usize)),
        ready: Notify::new(),
        done: Cell::new(false),
        in_flight: Cell::new(0),
    });
    let runners: Vec<_> = (0..conns)
        .map(|i| tokio::task::spawn_local(runner(shared.clone(), state.clone(), rec.clone(), w, i)))
        .collect();
    let mut sched = RateSchedule::new(ex);
    let duration_s = ex.duration().as_secs_f64();
    let mut k = u64::from(w);
    while let Some(at_s) = sched.time_of(k) {
        if at_s >= duration_s || shared.aborted() {
            break;
        }
        k += u64::from(shared.workers);
        let intended = shared.start + Duration::from_secs_f64(at_s);
        // The timer fires on the first millisecond tick at or after its deadline, so aiming one granule early
        // keeps its rounding out of the corrected latency; an early send is measured from the send.
        if intended > Instant::now() + TIMER_GRANULE {
            tokio::time::sleep_until((intended - TIMER_GRANULE).into()).await;
        }
        if state.in_flight.get() >= cap {
            rec.borrow_mut().dropped += 1;
            continue;
        }
        state.in_flight.set(state.in_flight.get() + 1);
        rec.borrow_mut().set_gauge(state.in_flight.get());
        state.queue.borrow_mut().push_back(intended);
        state.ready.notify_one();
    }
    state.done.set(true);
    state.ready.notify_waiters();
    let drain_until = Instant::now() + shared.timeout() + CONTROL_TICK;
    while state.in_flight.get() > 0 && Instant::now() < drain_until && !shared.aborted() {
        tokio::time::sleep(CONTROL_TICK).await;
    }
    for r in runners {
        r.abort();
    }
    rec.borrow_mut().interrupted += u64::from(state.in_flight.get());
}

/// One open-model connection: takes admitted iterations from the queue in order.
async fn runner(shared: Arc<Shared>, state: Rc<OpenState>, rec: Rc<RefCell<Recorder>>, w: u32, i: u32) {
    let mut conn = Conn::new();
    let mut rng = Rng::new(shared.plan.seed, (u64::from(w) << 32) | u64::from(i));
    loop {
        // After a failed connect, wait out the backoff; queued iterations keep their intended start, so the wait
        // is in their corrected latency.
        if let Some(at) = conn.backoff_until() {
            tokio::time::sleep_until(at.into()).await;
        }
        let next = state.queue.borrow_mut().pop_front();
        let Some(intended) = next else {
            if state.done.get() {
                return;
            }
            state.ready.notified().await;
            continue;
        };
        let req = shared.pick(&mut rng);
        shared.iteration(&rec, &mut conn, req, Some(intended)).await;
        state.in_flight.set(state.in_flight.get() - 1);
        rec.borrow_mut().set_gauge(state.in_flight.get());
    }
}

/// Intended start times of the open model: iteration `k` starts when the integral of the rate reaches `k`.
pub(crate) struct RateSchedule {
    /// `(start_s, length_s, rate_start, rate_end, iterations before the segment)`.
    segments: Vec<(f64, f64, f64, f64, f64)>,
    cursor: usize,
}

impl RateSchedule {
    pub(crate) fn new(ex: &Executor) -> RateSchedule {
        let mut before = 0.0;
        let segments = ex
            .rate_segments()
            .into_iter()
            .map(|(t0, d, r0, r1)| {
                let s = (t0, d, r0, r1, before);
                before += (r0 + r1) / 2.0 * d;
                s
            })
            .collect();
        RateSchedule { segments, cursor: 0 }
    }

    /// Seconds after the start at which iteration `k` is due; `None` past the schedule. `k` must not decrease.
    pub(crate) fn time_of(&mut self, k: u64) -> Option<f64> {
        let k = k as f64;
        while let Some(&(t0, d, r0, r1, before)) = self.segments.get(self.cursor) {
            let count = (r0 + r1) / 2.0 * d;
            if k < before + count {
                // Solve r0·τ + (r1 - r0)·τ²/(2d) = x for τ, in the form that stays exact when r1 = r0.
                let x = k - before;
                let disc = (r0 * r0 + 2.0 * (r1 - r0) / d * x).max(0.0);
                let denom = r0 + disc.sqrt();
                let tau = if denom > 0.0 { 2.0 * x / denom } else { 0.0 };
                return Some(t0 + tau.min(d));
            }
            self.cursor += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Stage;

    // Goal: the open schedule places iterations where the integral of the rate says, for flat and ramped rates.
    #[test]
    fn schedule_follows_the_rate() {
        let ex = Executor::ConstantArrivalRate { rate_per_s: 100.0, duration_ms: 1000, max_in_flight: 1 };
        let mut s = RateSchedule::new(&ex);
        assert_eq!(s.time_of(0), Some(0.0));
        assert!((s.time_of(50).unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(s.time_of(100), None);
        // 0 -> 100/s over 1 s then flat 100/s for 1 s: 50 iterations in the ramp, 150 in all.
        let ex = Executor::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![Stage { duration_ms: 1000, target: 100.0 }, Stage { duration_ms: 1000, target: 100.0 }],
            max_in_flight: 1,
        };
        let mut s = RateSchedule::new(&ex);
        // N(t) = 50 t² in the ramp, so iteration 12.5 is at t = 0.5.
        assert!((s.time_of(8).unwrap() - (8.0f64 / 50.0).sqrt()).abs() < 1e-9);
        assert!((s.time_of(50).unwrap() - 1.0).abs() < 1e-9);
        assert!((s.time_of(100).unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(s.time_of(150), None);
    }

    // Goal: the weighted choice follows the weights.
    #[test]
    fn weighted_choice() {
        let mut rng = Rng::new(7, 0);
        let cum = [1u64, 4];
        let mut hits = [0u32; 2];
        for _ in 0..10_000 {
            let r = rng.next() % 4;
            hits[cum.iter().position(|c| r < *c).unwrap()] += 1;
        }
        assert!((2_200..2_800).contains(&hits[0]), "{hits:?}");
    }
}
