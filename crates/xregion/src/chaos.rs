//! `xregion chaos`: a randomized fault campaign, Jepsen-style.
//!
//! Each schedule is a seeded, random list of faults (kill a region, partition it from every peer, cut one
//! directed link, slow a region's links) laid over a fixed duration, while concurrent writers in every region
//! write a small shared key set straight at each region's probe. Every fault is lifted at its end, and whatever
//! may still be in force is lifted when the schedule ends, on every path. Then the command waits (bounded) for
//! every region to be healthy and for the regions to agree, and judges the schedule's history with the same
//! checkers as the concurrent-writes check: lost acknowledged writes, corrupt or phantom values, wrong
//! last-write-wins winners, divergence.
//!
//! Schedule `i` of a campaign with seed `S` uses seed `S + i`, for its faults and its writers alike, so
//! `--seed <S+i> --schedules 1 --duration D` replays it. Its draws come from the run's seeded family
//! (`drive::seed`: ChaCha8, whose output for a seed is fixed across releases). The schedule generator is pure; `run_campaign` does the I/O.

use crate::check::{CheckDef, Needs, ResultBuilder, Run, ms};
use crate::config::{self, Config};
use crate::drive::converge::await_convergence;
use crate::drive::health::await_all_healthy;
use crate::drive::seed;
use crate::drive::write::{RandomWriters, random_writers};
use crate::error::{Error, Result};
use crate::faults::FaultInjector;
use crate::history::HistoryLog;
use crate::probe::Probe;
use crate::target::{Target, interrupted};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xregion_model::fault::{Direction, FaultKind, FaultSpec};
use xregion_model::report::{CheckResult, Table, Verdict};

/// Shortest schedule `--duration` accepts.
const DURATION_MIN: Duration = Duration::from_millis(500);
/// Longest schedule `--duration` accepts.
const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Most schedules one campaign runs.
const SCHEDULES_MAX: u32 = 10_000;
/// Most fault events one schedule holds, whatever its duration.
const EVENTS_MAX: usize = 32;
/// Draws the generator makes per wanted event before it settles for fewer.
const DRAWS_PER_EVENT: usize = 20;
/// Least time between two faults of one region, so that a restore has a moment before the next fault.
const SAME_REGION_GAP: Duration = Duration::from_millis(250);
/// Extra one-way delay of a latency spike, in ms (inclusive).
const LATENCY_EXTRA_MS: (u64, u64) = (100, 800);
/// Least time between two operations of one writer: bounds the history and leaves the lab CPU on 2 cores.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// Pause of a writer after a failed operation, so that a dead region is not hammered with refused connections.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait, after the schedule, for every region to report health `ok`.
const HEALTHY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Longest wait, once every region is healthy, for the regions to agree on every key.
const CONVERGENCE_WAIT_MAX: Duration = Duration::from_secs(30);
/// Pause before the second attempt of a restore that failed.
const RESTORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The check every schedule's result is built from; its id gets the schedule's number.
const SCHEDULE_CHECK: CheckDef = CheckDef {
    id: "chaos.schedule",
    title: "a random fault schedule loses no acknowledged write and the regions converge",
    target: |_| {
        format!(
            "after the faults: every region healthy within {} s, converged within {} s, 0 lost acknowledged \
             writes, 0 corrupt or phantom values, 0 wrong last-write-wins winners",
            HEALTHY_WAIT_MAX.as_secs(),
            CONVERGENCE_WAIT_MAX.as_secs()
        )
    },
    needs: Needs::NONE,
    // Schedules are run by the campaign, not by the runner.
    run: Run::Judge(|rb, _, _| rb.finish(Verdict::Error, "a chaos schedule runs only in `xregion chaos`")),
};

/// Arguments of `xregion chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// TOML config file (deployment, faults, check tuning); without it the lab runs with the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How many schedules to run.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=i64::from(SCHEDULES_MAX)))]
    pub schedules: u32,
    /// Seed of the campaign; schedule i uses seed + i (default: from the clock, and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Length of each schedule, for example 500ms, 10s or 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Output directory for report.json, junit.xml, report.html and history.jsonl.
    #[arg(long, default_value = "xregion-out")]
    pub out: PathBuf,
}

/// Parses `--duration`: humantime syntax, between `DURATION_MIN` and `DURATION_MAX`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration such as 500ms, 10s or 2m: {e}"))?;
    if !(DURATION_MIN..=DURATION_MAX).contains(&d) {
        return Err(format!("{s} is outside {} to {}", show_duration(DURATION_MIN), show_duration(DURATION_MAX)));
    }
    Ok(d)
}

/// A duration the way `--duration` takes it: `500ms`, `4s`, `2m`.
fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

// ---------------------------------------------------------------------------------------------------------------
// Schedules (pure)

/// The kinds of fault event a schedule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ActionKind {
    /// Kill the region.
    Kill,
    /// Partition the region from every peer, both ways.
    Partition,
    /// Cut one directed link from the region to one peer.
    OneWay,
    /// Extra latency on the region's links.
    Latency,
}

impl ActionKind {
    /// Every kind.
    pub const ALL: [ActionKind; 4] = [ActionKind::Kill, ActionKind::Partition, ActionKind::OneWay, ActionKind::Latency];

    /// The fault kind the injector must support.
    pub fn fault_kind(self) -> FaultKind {
        match self {
            ActionKind::Kill => FaultKind::Complete,
            ActionKind::Partition | ActionKind::OneWay => FaultKind::Network,
            ActionKind::Latency => FaultKind::Latency,
        }
    }
}

/// What one fault event does to its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Kill the region (`complete`).
    Kill,
    /// Partition the region from every peer, both ways (`network`).
    Partition,
    /// Blackhole what the region sends to `to` (`network`, outbound, one peer).
    OneWay {
        /// The peer the region can no longer reach.
        to: String,
    },
    /// Add this one-way delay to every link of the region, both ways (`latency`).
    Latency {
        /// Extra one-way delay in ms.
        extra_ms: u64,
    },
}

impl Action {
    /// The kind of the action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Kill => ActionKind::Kill,
            Action::Partition => ActionKind::Partition,
            Action::OneWay { .. } => ActionKind::OneWay,
            Action::Latency { .. } => ActionKind::Latency,
        }
    }

    /// The fault to ask the injector for.
    pub fn spec(&self) -> FaultSpec {
        match self {
            Action::Kill => FaultSpec::new(FaultKind::Complete),
            Action::Partition => FaultSpec::new(FaultKind::Network),
            Action::OneWay { to } => FaultSpec {
                direction: Direction::Outbound,
                peers: vec![to.clone()],
                ..FaultSpec::new(FaultKind::Network)
            },
            Action::Latency { extra_ms } => {
                FaultSpec { extra_delay_ms: *extra_ms as f64, ..FaultSpec::new(FaultKind::Latency) }
            }
        }
    }

    /// Words for tables and logs.
    pub fn describe(&self) -> String {
        match self {
            Action::Kill => "kill".into(),
            Action::Partition => "partition from every peer".into(),
            Action::OneWay { to } => format!("one-way partition to {to}"),
            Action::Latency { extra_ms } => format!("latency +{extra_ms} ms"),
        }
    }
}

/// One fault: a region, what happens to it, and when, relative to the start of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// The faulted region.
    pub region: String,
    /// What happens to it.
    pub action: Action,
    /// When the fault is injected.
    pub start: Duration,
    /// How long it lasts.
    pub length: Duration,
}

impl FaultEvent {
    /// When the fault is lifted.
    pub fn end(&self) -> Duration {
        self.start + self.length
    }

    /// Whether the two events' times overlap once each is widened by `gap` at its end.
    fn overlaps(&self, other: &FaultEvent, gap: Duration) -> bool {
        self.start < other.end() + gap && other.start < self.end() + gap
    }
}

/// A seeded list of fault events over a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from (also the seed of the schedule's writers).
    pub seed: u64,
    /// Its length.
    pub duration: Duration,
    /// The events, by start time.
    pub events: Vec<FaultEvent>,
}

impl Schedule {
    /// One line per event, for the console: `+0.50 s .. +2.10 s  us-east-1  kill`.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| {
                format!(
                    "+{:.2} s .. +{:.2} s  {}  {}",
                    e.start.as_secs_f64(),
                    e.end().as_secs_f64(),
                    e.region,
                    e.action.describe()
                )
            })
            .collect()
    }
}

/// Draws the schedule of `seed` over `regions` (in configuration order) and `duration`, from the action `kinds`.
///
/// About one event per two seconds (at least one, at most `EVENTS_MAX`), each lasting an eighth to a half of the
/// duration and ending within it. A region has at most one fault at a time (with `SAME_REGION_GAP` between two),
/// and at most one region is killed at a time; events of different regions may overlap. The same arguments
/// always give the same schedule.
pub fn generate(seed: u64, regions: &[String], duration: Duration, kinds: &[ActionKind]) -> Schedule {
    let mut rng = seed::rng(seed, "chaos-schedule");
    let mut kinds: Vec<ActionKind> = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    if regions.len() < 2 {
        kinds.retain(|k| !matches!(k, ActionKind::OneWay | ActionKind::Partition));
    }
    let mut events: Vec<FaultEvent> = Vec::new();
    let total = duration.as_millis() as u64;
    if kinds.is_empty() || regions.is_empty() || total == 0 {
        return Schedule { seed, duration, events };
    }
    let wanted = ((1 + total / 2000) as usize).min(EVENTS_MAX);
    let min_len = (total / 8).max(1);
    let max_len = (total / 2).max(min_len);
    for _ in 0..wanted * DRAWS_PER_EVENT {
        if events.len() >= wanted {
            break;
        }
        let region = &regions[rng.random_range(0..regions.len())];
        let kind = kinds[rng.random_range(0..kinds.len())];
        let length = rng.random_range(min_len..=max_len);
        let start = rng.random_range(0..=total - length);
        let action = match kind {
            ActionKind::Kill => Action::Kill,
            ActionKind::Partition => Action::Partition,
            ActionKind::OneWay => {
                let peers: Vec<&String> = regions.iter().filter(|r| *r != region).collect();
                Action::OneWay { to: peers[rng.random_range(0..peers.len())].clone() }
            }
            ActionKind::Latency => {
                Action::Latency { extra_ms: rng.random_range(LATENCY_EXTRA_MS.0..=LATENCY_EXTRA_MS.1) }
            }
        };
        let event = FaultEvent {
            region: region.clone(),
            action,
            start: Duration::from_millis(start),
            length: Duration::from_millis(length),
        };
        let clash = events.iter().any(|e| {
            (e.region == event.region && e.overlaps(&event, SAME_REGION_GAP))
                || (e.action == Action::Kill && event.action == Action::Kill && e.overlaps(&event, Duration::ZERO))
        });
        if !clash {
            events.push(event);
        }
    }
    events.sort_by(|a, b| (a.start, &a.region).cmp(&(b.start, &b.region)));
    Schedule { seed, duration, events }
}

// ---------------------------------------------------------------------------------------------------------------
// Running a campaign

/// What happened to one event when it ran, relative to the start of the schedule.
#[derive(Debug, Clone, Default)]
struct EventRun {
    /// When the injector confirmed the fault.
    injected_at: Option<Duration>,
    /// When the injector confirmed the restore.
    restored_at: Option<Duration>,
    /// Why the event did not run as planned.
    problem: Option<String>,
}

/// A schedule's result, and whether the campaign can go on after it.
struct ScheduleOutcome {
    /// The check result.
    result: CheckResult,
    /// Why the deployment cannot be trusted for another schedule (a fault could not be lifted, a region did not
    /// come back).
    stop: Option<String>,
}

/// What a campaign needs from the target.
struct Campaign<'a> {
    config: &'a Config,
    probes: Vec<Probe>,
    faults: FaultInjector,
    history: Arc<HistoryLog>,
    kinds: Vec<ActionKind>,
    duration: Duration,
    /// Prefix of every key of the campaign; each schedule adds its own part.
    key_prefix: String,
    /// The replay command without `--seed`.
    replay_base: String,
}

/// Runs `xregion chaos`.
pub async fn run(args: ChaosArgs) -> Result<ExitCode> {
    let config = config::load(args.config.as_deref(), &config::process_env())?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::Target(format!("cannot create {}: {e}", args.out.display())))?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let seed = args.seed.unwrap_or_else(crate::runner::clock_seed);
    let progress = crate::progress::Progress::new(false);
    let start = Instant::now();
    eprintln!(
        "[chaos] seed {seed}: {} schedules of {} (seeds {seed}..={})",
        args.schedules,
        show_duration(args.duration),
        seed.wrapping_add(u64::from(args.schedules) - 1)
    );

    // The lab (inside its control API server, which the injector calls) lives until `close`, on every path.
    let target = Target::open(&config, &args.out, &progress).await?;
    let faults = target.faults.clone();
    let kinds: Vec<ActionKind> =
        ActionKind::ALL.into_iter().filter(|k| faults.supports(k.fault_kind()).is_ok()).collect();
    let unusable = match faults.unavailable() {
        Some(why) => Some(format!("xregion chaos needs a fault injector: {why}")),
        None if kinds.is_empty() => Some(format!(
            "the fault injector supports none of the kinds a schedule draws from (complete, network, latency): {}",
            faults.supports(FaultKind::Complete).err().unwrap_or_default()
        )),
        None => None,
    };
    if let Some(why) = unusable {
        target.close(&progress).await;
        return Err(Error::Usage(why));
    }
    for k in ActionKind::ALL.into_iter().filter(|k| !kinds.contains(k)) {
        if let Err(why) = faults.supports(k.fault_kind()) {
            eprintln!("[chaos] schedules leave out {k:?} events: {why}");
        }
    }
    let mut replay_base = "xregion chaos".to_string();
    if let Some(c) = &args.config {
        replay_base.push_str(&format!(" --config {}", c.display()));
    }
    let campaign = Campaign {
        config: &config,
        probes: target.probes.clone(),
        faults: faults.clone(),
        history: Arc::new(HistoryLog::new(start)),
        kinds,
        duration: args.duration,
        key_prefix: crate::runner::key_prefix(seed, false),
        replay_base,
    };
    let outcome = tokio::select! {
        checks = run_campaign(&campaign, seed, args.schedules) => Some(checks),
        _ = interrupted() => None,
    };
    let regions = target.regions.clone();
    // Faults left in force by an interrupted schedule are lifted here (the lab lifts its own when it stops).
    target.close(&progress).await;
    let Some(checks) = outcome else {
        return Err(Error::Interrupted("every fault was lifted, the lab was stopped and no report was written".into()));
    };
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| format!("{} ({}): {}", c.id, c.verdict.as_str(), replay_from_notes(c).unwrap_or_default()))
        .collect();
    let report = crate::output::new_report(&config, seed, started_at, start.elapsed(), regions, checks);
    crate::output::write_outputs(&report, &[], &campaign.history, &args.out)?;
    if !failing.is_empty() {
        println!("replay a schedule that did not pass with:");
        for f in &failing {
            println!("  {f}");
        }
    }
    println!("reports: {}", args.out.join("report.html").display());
    Ok(ExitCode::from(report.exit_code()))
}

/// The replay note of a schedule's result, without its label.
fn replay_from_notes(c: &CheckResult) -> Option<String> {
    c.notes.iter().find_map(|n| n.strip_prefix("replay: ").map(str::to_string))
}

/// Runs the schedules in order; stops early when the deployment cannot be trusted any more.
async fn run_campaign(c: &Campaign<'_>, seed: u64, schedules: u32) -> Vec<CheckResult> {
    let names: Vec<String> = c.probes.iter().map(|p| p.region.clone()).collect();
    let mut results = Vec::new();
    for i in 0..schedules {
        let schedule = generate(seed.wrapping_add(u64::from(i)), &names, c.duration, &c.kinds);
        eprintln!(
            "[chaos] schedule {:02}/{schedules:02} (seed {}): {} events over {}",
            i + 1,
            schedule.seed,
            schedule.events.len(),
            show_duration(c.duration)
        );
        let outcome = run_schedule(c, i, &schedule).await;
        let r = &outcome.result;
        eprintln!(
            "[chaos] schedule {:02}/{schedules:02} (seed {}): {} ({:.1} s) {}",
            i + 1,
            schedule.seed,
            r.verdict.as_str(),
            r.duration_s,
            r.summary
        );
        if r.verdict != Verdict::Pass {
            println!("{} {} with seed {}; its schedule:", r.id, r.verdict.as_str(), schedule.seed);
            for line in schedule.lines() {
                println!("  {line}");
            }
            println!("  replay: {}", replay_command(c, schedule.seed));
        }
        results.push(outcome.result);
        if let Some(why) = outcome.stop {
            eprintln!("[chaos] stopping the campaign after {} schedules: {why}", i + 1);
            break;
        }
    }
    results
}

/// The command that runs schedule `seed` again, alone.
fn replay_command(c: &Campaign<'_>, seed: u64) -> String {
    format!("{} --seed {seed} --schedules 1 --duration {}", c.replay_base, show_duration(c.duration))
}

/// Runs one schedule: writers and faults together, then the restore of everything, the waits, and the verdict.
async fn run_schedule(c: &Campaign<'_>, index: u32, schedule: &Schedule) -> ScheduleOutcome {
    let mut rb = ResultBuilder::new(&SCHEDULE_CHECK, c.config);
    let prefix = format!("{}/chaos-{index:02}/", c.key_prefix);
    let t0 = Instant::now();
    let deadline = t0 + schedule.duration;
    let touched: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let cfg = &c.config.checks.concurrent_writes;
    let writers = RandomWriters {
        prefix: prefix.clone(),
        per_region: cfg.writers_per_region,
        keys: cfg.keys,
        delete_ratio: cfg.delete_ratio,
        seed: schedule.seed,
        stream: "chaos-writers".into(),
        value_tag: format!("c{index}-"),
        pause: WRITE_INTERVAL,
        backoff: Some(ERROR_BACKOFF),
        deadline,
    };
    let (counts, runs) =
        tokio::join!(random_writers(&writers, &c.probes, &c.history), drive_faults(c, schedule, t0, &touched));
    // With a backoff, writers never stop at an unreachable region: every outcome is counted.
    let counts = counts.unwrap_or_default();
    // Lift whatever may still be in force, whatever happened above.
    let touched = std::mem::take(&mut *touched.lock().unwrap_or_else(|p| p.into_inner()));
    let cleanup = restore_all(&c.faults, &touched).await;
    let healthy = await_all_healthy(&c.probes, HEALTHY_WAIT_MAX).await.map_err(|problems| {
        format!(
            "not every region was healthy {} s after the faults were lifted: {}",
            HEALTHY_WAIT_MAX.as_secs(),
            problems.join("; ")
        )
    });

    let problems: Vec<String> = runs
        .iter()
        .zip(&schedule.events)
        .filter_map(|(r, e)| Some(format!("{}: {}", e.region, r.problem.as_ref()?)))
        .collect();
    rb.table(schedule_table(schedule, &runs));
    let kinds = |k: ActionKind| schedule.events.iter().filter(|e| e.action.kind() == k).count() as f64;
    rb.metric("events", schedule.events.len() as f64)
        .metric("kills", kinds(ActionKind::Kill))
        .metric("partitions", kinds(ActionKind::Partition))
        .metric("one_way_partitions", kinds(ActionKind::OneWay))
        .metric("latency_spikes", kinds(ActionKind::Latency))
        .metric("ops_ok", counts.ok as f64)
        .metric("ops_failed", counts.fail as f64)
        .metric("ops_unknown", counts.info as f64)
        .metric("schedule_s", schedule.duration.as_secs_f64())
        .metric("healthy_after_ms", healthy.as_ref().map_or(-1.0, |d| ms(*d)));
    rb.note(format!("seed {}; schedule {} of the campaign", schedule.seed, index + 1));
    rb.note(format!("replay: {}", replay_command(c, schedule.seed)));
    rb.note(
        "writers in every region write a small shared key set straight at the region's probe endpoint, with a unique \
         value per write and some deletes; requests to a faulted region fail or time out and are recorded as fail \
         (certainly not applied) or info (unknown outcome)",
    );

    let mut stop = cleanup.as_ref().err().cloned();
    let mut result = match &healthy {
        Err(why) => {
            stop.get_or_insert_with(|| why.clone());
            rb.finish(Verdict::Fail, "the deployment did not recover after the faults were lifted")
        }
        Ok(_) => match await_convergence(&c.probes, &prefix, CONVERGENCE_WAIT_MAX).await {
            Ok((states, converged_after)) => {
                let history = c.history.events_with_prefix(&prefix);
                let quiet_ms = CONVERGENCE_WAIT_MAX.as_millis() as u64;
                let states = crate::drive::converge::as_judged(&c.probes, &history, states);
                let order = crate::drive::converge::store_order(&c.probes);
                crate::suites::cross_region::judge_history(
                    rb,
                    &history,
                    &states,
                    converged_after,
                    quiet_ms,
                    false,
                    order,
                )
            }
            Err(e) => rb.error(&e),
        },
    };
    result.id = format!("chaos.schedule-{index:02}");
    let mut trouble = Vec::new();
    if let Err(why) = &healthy {
        trouble.push(why.clone());
    }
    if let Err(why) = &cleanup {
        trouble.push(why.clone());
    }
    if !problems.is_empty() {
        trouble.push(format!("fault injection failed: {}", problems.join("; ")));
    }
    if !trouble.is_empty() {
        // A fault that could not be injected or lifted means the schedule did not run as drawn: no verdict.
        let verdict = if cleanup.is_err() || !problems.is_empty() { Verdict::Error } else { Verdict::Fail };
        result.verdict = result.verdict.max(verdict);
        result.summary = format!("{}; {}", trouble.join("; "), result.summary);
    }
    result.summary = format!("seed {}, {} events: {}", schedule.seed, schedule.events.len(), result.summary);
    ScheduleOutcome { result, stop }
}

/// When to lift `event`'s fault, injected at `injected_at`: at its planned end, or later when it was injected
/// late (the injector was busy, for example restarting a killed region, or a kill waited for another), so that it
/// still lasts its planned length as far as the schedule's end allows.
fn lift_at(event: &FaultEvent, injected_at: Duration, duration: Duration) -> Duration {
    event.end().max((injected_at + event.length).min(duration))
}

/// Runs the schedule's faults: each region's events in order, at most one kill at a time. Every region whose
/// fault may be in force is in `touched` until its restore succeeds. After a failed injector call no new fault is
/// injected, but faults in force are still lifted at their end.
async fn drive_faults(
    c: &Campaign<'_>,
    schedule: &Schedule,
    t0: Instant,
    touched: &Mutex<BTreeSet<String>>,
) -> Vec<EventRun> {
    let runs: Mutex<Vec<EventRun>> = Mutex::new(vec![EventRun::default(); schedule.events.len()]);
    let aborted = std::sync::atomic::AtomicBool::new(false);
    let kill = tokio::sync::Semaphore::new(1);
    let by_region: BTreeMap<&str, Vec<usize>> =
        schedule.events.iter().enumerate().fold(BTreeMap::new(), |mut m, (i, e)| {
            m.entry(e.region.as_str()).or_insert_with(Vec::new).push(i);
            m
        });
    let set = |i: usize, f: &dyn Fn(&mut EventRun)| f(&mut runs.lock().unwrap_or_else(|p| p.into_inner())[i]);
    let regions = by_region.into_iter().map(|(region, indices)| {
        let (runs_set, aborted, kill) = (&set, &aborted, &kill);
        async move {
            for i in indices {
                let e = &schedule.events[i];
                tokio::time::sleep_until((t0 + e.start).into()).await;
                if aborted.load(std::sync::atomic::Ordering::SeqCst) {
                    runs_set(i, &|r| r.problem = Some("not injected: an earlier fault operation failed".into()));
                    continue;
                }
                let _permit = match e.action {
                    Action::Kill => kill.acquire().await.ok(),
                    _ => None,
                };
                touched.lock().unwrap_or_else(|p| p.into_inner()).insert(region.to_string());
                if let Err(err) = c.faults.fail(region, &e.action.spec()).await {
                    aborted.store(true, std::sync::atomic::Ordering::SeqCst);
                    runs_set(i, &|r| r.problem = Some(format!("inject {}: {err}", e.action.describe())));
                    continue;
                }
                let at = t0.elapsed();
                runs_set(i, &|r| r.injected_at = Some(at));
                tokio::time::sleep_until((t0 + lift_at(e, at, schedule.duration)).into()).await;
                match c.faults.restore(region).await {
                    Ok(()) => {
                        touched.lock().unwrap_or_else(|p| p.into_inner()).remove(region);
                        let at = t0.elapsed();
                        runs_set(i, &|r| r.restored_at = Some(at));
                    }
                    Err(err) => {
                        aborted.store(true, std::sync::atomic::Ordering::SeqCst);
                        runs_set(i, &|r| r.problem = Some(format!("restore: {err}")));
                    }
                }
            }
        }
    });
    futures::future::join_all(regions).await;
    runs.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Lifts the faults of `touched` regions (each tried twice), then any other fault the injector still reports.
async fn restore_all(faults: &FaultInjector, touched: &BTreeSet<String>) -> Result<(), String> {
    let mut regions = touched.clone();
    if let Ok(status) = faults.status().await {
        regions.extend(status.regions.into_iter().filter(|r| r.fault.is_some()).map(|r| r.name));
    }
    let mut failed = Vec::new();
    for region in &regions {
        if faults.restore(region).await.is_ok() {
            continue;
        }
        tokio::time::sleep(RESTORE_RETRY_AFTER).await;
        if let Err(e) = faults.restore(region).await {
            failed.push(format!("{region}: {e}"));
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(format!("could not lift every fault: {}", failed.join("; "))) }
}

/// The schedule as drawn and as it ran.
fn schedule_table(schedule: &Schedule, runs: &[EventRun]) -> Table {
    let at = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    Table {
        title: format!("Fault schedule (seed {}, {})", schedule.seed, show_duration(schedule.duration)),
        columns: ["#", "start", "end", "region", "fault", "injected at", "restored at", "problem"]
            .map(String::from)
            .to_vec(),
        rows: schedule
            .events
            .iter()
            .zip(runs)
            .enumerate()
            .map(|(i, (e, r))| {
                vec![
                    (i + 1).to_string(),
                    format!("{:.2} s", e.start.as_secs_f64()),
                    format!("{:.2} s", e.end().as_secs_f64()),
                    e.region.clone(),
                    e.action.describe(),
                    at(r.injected_at),
                    at(r.restored_at),
                    r.problem.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        ["us-east-1", "us-west-2", "eu-west-1"].map(String::from).to_vec()
    }

    /// Goal: the same seed gives the same schedule, and different seeds give different ones.
    #[test]
    fn same_seed_same_schedule() {
        let d = Duration::from_secs(10);
        let a = generate(42, &regions(), d, &ActionKind::ALL);
        assert_eq!(a, generate(42, &regions(), d, &ActionKind::ALL));
        assert!(!a.events.is_empty());
        let distinct: BTreeSet<Vec<String>> =
            (0..20).map(|s| generate(s, &regions(), d, &ActionKind::ALL).lines()).collect();
        assert!(distinct.len() > 15, "{distinct:?}");
    }

    /// Goal: over many seeds and durations, every schedule keeps the rules: events within the duration, one
    /// fault per region at a time, one kill at a time, one-way targets are other regions, latency in range;
    /// and every kind shows up.
    #[test]
    fn schedules_keep_the_rules() {
        let names = regions();
        let mut seen = BTreeSet::new();
        for seed in 0..500u64 {
            let d = Duration::from_millis([500, 4_000, 10_000, 120_000][seed as usize % 4]);
            let s = generate(seed, &names, d, &ActionKind::ALL);
            assert!(!s.events.is_empty() && s.events.len() <= EVENTS_MAX, "{s:?}");
            assert!(s.events.windows(2).all(|w| w[0].start <= w[1].start), "sorted: {s:?}");
            for (i, e) in s.events.iter().enumerate() {
                seen.insert(e.action.kind());
                assert!(e.length > Duration::ZERO && e.end() <= d, "{e:?} in {d:?}");
                assert!(names.contains(&e.region));
                match &e.action {
                    Action::OneWay { to } => assert!(names.contains(to) && *to != e.region, "{e:?}"),
                    Action::Latency { extra_ms } => assert!((100..=800).contains(extra_ms), "{e:?}"),
                    Action::Kill | Action::Partition => {}
                }
                for o in &s.events[i + 1..] {
                    let overlap = e.overlaps(o, Duration::ZERO);
                    assert!(!(overlap && o.region == e.region), "two faults on one region: {e:?} {o:?}");
                    assert!(
                        !(overlap && o.action == Action::Kill && e.action == Action::Kill),
                        "two kills: {e:?} {o:?}"
                    );
                }
            }
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    /// Goal: only the kinds given are drawn; one region gets no partitions; no kind gives no events.
    #[test]
    fn kinds_are_respected() {
        let d = Duration::from_secs(10);
        for seed in 0..50 {
            let s = generate(seed, &regions(), d, &[ActionKind::Latency]);
            assert!(s.events.iter().all(|e| e.action.kind() == ActionKind::Latency), "{s:?}");
            let one = generate(seed, &regions()[..1], d, &ActionKind::ALL);
            assert!(one.events.iter().all(|e| matches!(e.action.kind(), ActionKind::Kill | ActionKind::Latency)));
        }
        assert!(generate(1, &regions(), d, &[]).events.is_empty());
    }

    /// Goal: a fault injected late keeps its planned length up to the schedule's end, and never ends early.
    #[test]
    fn late_faults_keep_their_length() {
        let ms = Duration::from_millis;
        let e = FaultEvent { region: "a".into(), action: Action::Kill, start: ms(1000), length: ms(1000) };
        assert_eq!(lift_at(&e, ms(1000), ms(6000)), ms(2000));
        assert_eq!(lift_at(&e, ms(3000), ms(6000)), ms(4000));
        assert_eq!(lift_at(&e, ms(5500), ms(6000)), ms(6000));
        // Injected past the end: the time has passed, so it is lifted at once.
        assert_eq!(lift_at(&e, ms(6500), ms(6000)), ms(6000));
    }

    /// Goal: the specs are the faults the command promises, and durations print the way --duration reads them.
    #[test]
    fn specs_and_durations() {
        let one = Action::OneWay { to: "b".into() }.spec();
        assert_eq!(
            (one.kind, one.direction, one.peers.clone()),
            (FaultKind::Network, Direction::Outbound, vec!["b".into()])
        );
        let part = Action::Partition.spec();
        assert_eq!((part.direction, part.peers.len(), part.clients), (Direction::Both, 0, false));
        assert!(Action::Latency { extra_ms: 300 }.spec().problem().is_none());
        assert_eq!(Action::Kill.spec().kind, FaultKind::Complete);
        for s in ["500ms", "4s", "2m", "1m 30s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&show_duration(d)), Ok(d), "{s}");
        }
        assert_eq!(show_duration(Duration::from_secs(4)), "4s");
        assert!(parse_duration("10ms").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
