//! `xregion run` and `xregion list`: select checks from the catalogue, open the target, run the checks in order,
//! and write the report.
//!
//! The runner knows no check by name: it reads each definition's `needs` to skip what the deployment cannot
//! support, and calls its `run`. Ctrl-C stops the check in progress; what was measured is kept and written. A
//! second Ctrl-C skips the reports, and the target is still torn down.

use crate::catalogue::{self, SUITES};
use crate::check::{CheckDef, Ctx, ResultBuilder, Run, Shard, Shared};
use crate::config::{self, DeploymentKind, Profile};
use crate::error::{Error, Result};
use crate::history::HistoryLog;
use crate::live::Live;
use crate::progress::Progress;
use crate::target::{Target, interrupted};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use xregion_model::report::{CheckResult, Verdict};

/// Arguments of `xregion run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML config file (deployment, targets, check tuning); without it the lab runs with the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Suite to run; repeat for several. Default: every suite.
    #[arg(long = "suite")]
    pub suites: Vec<String>,
    /// Run only the checks whose id starts with this; repeat for several.
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Output directory for report.json, junit.xml, report.html and history.jsonl (default `xregion-out`); or,
    /// as `prometheus-rw=URL`, a Prometheus remote-write receiver to push live metrics to while the run runs
    /// (repeat `--out` for both).
    #[arg(long = "out", value_name = "DIR | prometheus-rw=URL")]
    pub outs: Vec<String>,
    /// Seed of every workload choice (default: derived from the clock, and recorded in the report). The same
    /// seed writes the same keys and values in the same order on a fresh deployment.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Size of the performance suite's load: `quick` (default against the lab: at least 2,000 users, a few
    /// minutes) or `spec` (the specification's: MAX_CONCURRENT_USERS users, ramp 5 min, hold 10 min; default
    /// against a real deployment).
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Print only the final table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Drive share I of N of the load (users split evenly, each shard with its own sub-seed and keys), for
    /// `xregion merge`: every shard runs the load checks first; shard 0 then runs the other checks. Without it,
    /// `JOB_COMPLETION_INDEX` (set by a Kubernetes Indexed Job) with `XREGION_SHARD_COUNT` give I and N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// When the checks start (RFC 3339, for example 2026-12-06T23:40:00Z), so that the shards' ramps line up; at
    /// most an hour ahead.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// The client location this run is at (a name of `[deployment.traffic] nearest` or `geolocation`), for a
    /// deployment you describe: the geo-routing check then sends its requests without the location header and
    /// judges where the deployment placed them, for this location only. A sharded run's located shards each
    /// judge theirs, and `xregion merge` judges every location a shard reached.
    #[arg(long, value_name = "NAME", env = "XREGION_LOCATION")]
    pub location: Option<String>,
    /// Send every HTTP request (checks and load generator) from this local address, like curl's `--interface`:
    /// for a router that places clients by their address.
    #[arg(long, value_name = "ADDR", env = "XREGION_SOURCE_ADDRESS")]
    pub source_address: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub history: crate::output::HistoryArgs,
}

/// `--location`, checked: a client location of the deployment's traffic, on a deployment the user describes.
fn location_of(args: &RunArgs, config: &config::Config) -> Result<Option<String>> {
    let Some(l) = &args.location else { return Ok(None) };
    if config.deployment.kind == DeploymentKind::Lab {
        return Err(Error::Usage(format!(
            "--location {l}: the embedded lab emulates its client locations with a header; --location places a run \
             at a location of a deployment you describe (kind = \"http\", for example one from `xregion lab up`)"
        )));
    }
    let traffic = config.deployment.traffic.clone().unwrap_or_default();
    let known: std::collections::BTreeSet<&String> = traffic.nearest.keys().chain(traffic.geolocation.keys()).collect();
    if !known.contains(l) {
        let known = known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Error::Usage(format!(
            "--location {l} is not a client location of [deployment.traffic] nearest or geolocation (known: {})",
            if known.is_empty() { "none" } else { &known }
        )));
    }
    Ok(Some(l.clone()))
}

/// The shard of this run: `--shard I/N`, or `JOB_COMPLETION_INDEX` (plus `XREGION_SHARD_OFFSET`, for the Jobs of
/// several clusters that make one run) with `XREGION_SHARD_COUNT`.
fn shard_of(args: &RunArgs) -> Result<Shard> {
    if let Some(s) = &args.shard {
        return Shard::parse(s).map_err(Error::Usage);
    }
    match (std::env::var("JOB_COMPLETION_INDEX"), std::env::var("XREGION_SHARD_COUNT")) {
        (Ok(i), Ok(n)) => {
            let offset = std::env::var("XREGION_SHARD_OFFSET").unwrap_or_else(|_| "0".into());
            let index = match (i.trim().parse::<u32>(), offset.trim().parse::<u32>()) {
                (Ok(i), Ok(o)) => i.checked_add(o).map(|x| x.to_string()),
                _ => None,
            };
            let index = index.ok_or_else(|| {
                Error::Usage(format!(
                    "JOB_COMPLETION_INDEX={i} with XREGION_SHARD_OFFSET={offset}: expected whole numbers from 0"
                ))
            })?;
            Shard::parse(&format!("{index}/{n}")).map_err(|e| {
                Error::Usage(format!("JOB_COMPLETION_INDEX={i} (offset {offset}) with XREGION_SHARD_COUNT={n}: {e}"))
            })
        }
        (Ok(_), Err(_)) => Err(Error::Usage(
            "JOB_COMPLETION_INDEX is set but XREGION_SHARD_COUNT is not: set it to the shards of the whole run (the Job's completions, summed over the clusters of a run in several)".into(),
        )),
        _ => Ok(Shard::default()),
    }
}

/// `--start-at`, read: at most an hour ahead (a time already past starts at once).
fn start_at(args: &RunArgs) -> Result<Option<std::time::SystemTime>> {
    let Some(t) = &args.start_at else { return Ok(None) };
    let at = humantime::parse_rfc3339(t)
        .map_err(|e| Error::Usage(format!("--start-at {t}: {e} (expected RFC 3339, such as 2026-12-06T23:40:00Z)")))?;
    let ahead = at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    if ahead > std::time::Duration::from_secs(3600) {
        return Err(Error::Usage(format!("--start-at {t} is more than an hour ahead")));
    }
    Ok(Some(at))
}

/// Waits until `at`, if given.
async fn wait_for_start(at: Option<std::time::SystemTime>, progress: &Progress) {
    let Some(at) = at else { return };
    let wait = at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    progress.line(&format!(
        "[xregion] waiting {:.1} s for --start-at {}",
        wait.as_secs_f64(),
        humantime::format_rfc3339_seconds(at)
    ));
    tokio::time::sleep(wait).await;
}

/// `xregion run`.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let mut config = config::load(args.config.as_deref(), &config::process_env())?;
    // An IPv4-mapped address binds as the IPv4 address it is, for IPv4 targets.
    config.deployment.source_address = args.source_address.map(|a| a.to_canonical());
    let mut defs = catalogue::select(&args.suites, &args.checks).map_err(Error::Usage)?;
    let shard = shard_of(&args)?;
    let location = location_of(&args, &config)?;
    if shard.is_sharded() {
        if config.deployment.kind == DeploymentKind::Lab {
            return Err(Error::Usage(
                "--shard needs one deployment that every shard reaches, and each run of the embedded lab is its own: \
                 start one with `xregion lab up` and describe it in the config (kind = \"http\"), or use yours"
                    .into(),
            ));
        }
        let load_selected = defs.iter().any(|d| crate::suites::performance::load::is_shardable(d.id));
        if load_selected && !config.checks.load.journeys.is_empty() {
            return Err(Error::Usage(
                "--shard splits request load, and [checks.load] journeys drive journeys, which do not shard yet: \
                 run the journeys' load unsharded, or shard without them"
                    .into(),
            ));
        }
        // Every shard runs the load first, from --start-at; the other checks run once, on shard 0, afterwards.
        defs.sort_by_key(|d| !crate::suites::performance::load::is_shardable(d.id));
        // A located shard also judges its own location's routing.
        if shard.index > 0 {
            defs.retain(|d| {
                crate::suites::performance::load::is_shardable(d.id)
                    || (location.is_some() && crate::suites::routing::is_per_location(d.id))
            });
        }
    }
    let (out, receivers) = crate::live::split_outs(&args.outs).map_err(Error::Usage)?;
    std::fs::create_dir_all(&out).map_err(|e| Error::Target(format!("cannot create {}: {e}", out.display())))?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // The shards of one run share its seed: --seed, or one derived from --start-at, which they share too.
    let start_at = start_at(&args)?;
    let seed = match (args.seed, start_at) {
        (Some(s), _) => s,
        (None, Some(at)) if shard.is_sharded() => {
            sub_seed(at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()), u32::MAX)
        }
        (None, None) if shard.is_sharded() => {
            return Err(Error::Usage(
                "a sharded run needs --seed or --start-at, so that its shards share one seed".into(),
            ));
        }
        (None, _) => clock_seed(),
    };
    // Each shard's workload comes from its own sub-seed; the report keeps the run's seed.
    let workload_seed = if shard.is_sharded() { sub_seed(seed, shard.index) } else { seed };
    let progress = Progress::new(args.quiet);
    let start = Instant::now();

    // The lab (inside its control API server, which the fault injector calls) lives until `close`, on every path.
    let target = Target::open(&config, &out, &progress).await?;
    let mut prefix = key_prefix(workload_seed, args.seed.is_some());
    if args.seed.is_some() && holds_keys(&target, &prefix).await {
        eprintln!(
            "warning: the deployment holds keys of an earlier run with seed {seed}; this run writes under a fresh \
             prefix, so that old data cannot be mistaken for this run's"
        );
        prefix = key_prefix(workload_seed, false);
    }
    let ctx = Ctx {
        config: target.config.clone(),
        probes: target.probes.clone(),
        history: Arc::new(HistoryLog::new(start)),
        seed: workload_seed,
        traffic: target.traffic.clone(),
        profile: args.profile.unwrap_or(match config.deployment.kind {
            DeploymentKind::Lab => Profile::Quick,
            DeploymentKind::Http => Profile::Spec,
        }),
        faults: target.faults.clone(),
        key_prefix: prefix,
        progress,
        shared: Shared::default(),
        selected: defs.iter().map(|d| d.id).collect(),
        shard,
        location,
    };
    if let Some(t) = crate::suites::performance::timeline_text(&ctx.config, ctx.profile, &ctx.selected) {
        ctx.progress.line(&format!("[xregion] load checks: {t}"));
    }
    let live: Vec<Arc<Live>> =
        receivers.iter().map(|url| Live::new(url, &ctx.key_prefix, ctx.history.clone(), ctx.probes.clone())).collect();
    let stop_live = CancellationToken::new();
    let pushers: Vec<_> = live.iter().map(|l| tokio::spawn(l.clone().run(stop_live.clone()))).collect();
    ctx.progress.observe(live.iter().map(|l| {
        let l = l.clone();
        Box::new(move |e: crate::progress::Event<'_>| l.observe(e)) as crate::progress::Observer
    }));
    wait_for_start(start_at, &ctx.progress).await;
    let (checks, was_interrupted) = run_checks(&defs, &ctx, interrupted()).await;
    // The last push goes out while the target still answers (replication lag is read from it).
    stop_live.cancel();
    for p in pushers {
        let _ = p.await;
    }
    for l in &live {
        ctx.progress.line(&format!("[xregion] {}", l.summary()));
    }
    let regions = target.regions.clone();
    let config = target.config.clone();
    // After an interrupt, a second one skips the reports; the teardown below still runs to its end.
    let again = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if was_interrupted {
        let again = again.clone();
        tokio::spawn(async move {
            interrupted().await;
            again.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("interrupted again: tearing down without writing the reports");
        });
    }
    // Faults a check left in force (an interrupted run, a check that failed before restoring) are lifted here.
    target.close(&ctx.progress).await;
    if again.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::Interrupted("interrupted twice: the target was torn down and no report was written".into()));
    }
    let mut report = crate::output::new_report(&config, seed, started_at, start.elapsed(), regions, checks);
    // A shard's load verdicts judge its share only: `xregion merge` gives theirs, so they do not set its exit code.
    let mut code = report.exit_code();
    if shard.is_sharded() {
        crate::merge_cmd::write_part(&ctx, &report, &out).await?;
        code = crate::merge_cmd::mark_provisional(&mut report, shard, ctx.location.is_some());
    }
    let earlier = crate::output::trend(&args.history, &report, !was_interrupted && !shard.is_sharded());
    crate::output::write_outputs(&report, &earlier, &ctx.history, &out)?;
    println!("reports: {}", out.join("report.html").display());
    if was_interrupted {
        return Err(Error::Interrupted(format!(
            "the lab was stopped and what was measured is in {}",
            out.join("report.json").display()
        )));
    }
    Ok(ExitCode::from(code))
}

/// The seed of shard `index`'s workload: the run's seed mixed with the index (SplitMix64's finalizer), so that
/// shards never write the same keys and a rerun of one shard repeats it.
pub fn sub_seed(seed: u64, index: u32) -> u64 {
    let mut z = seed.wrapping_add(u64::from(index).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed from the clock, for a run without `--seed`.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Prefix of every key a run writes. With `--seed` it depends on the seed alone, so that a replay writes the same
/// keys (on a fresh deployment, such as the lab); without, it also holds the start time, so that runs against
/// one long-lived deployment never see each other's data.
pub fn key_prefix(seed: u64, replay: bool) -> String {
    if replay {
        format!("xr/{seed:016x}")
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("xr/{seed:016x}-{now}")
    }
}

/// Whether the first region holds keys under `prefix` (an unreachable region holds none: the preflight says why).
async fn holds_keys(target: &Target, prefix: &str) -> bool {
    match target.probes.first() {
        Some(p) => p.scan(&format!("{prefix}/")).await.is_ok_and(|r| !r.is_empty()),
        None => false,
    }
}

/// `xregion list`: every suite and check with its target.
pub fn list(config: Option<&Path>) -> Result<ExitCode> {
    let config = config::load(config, &config::process_env())?;
    let all = catalogue::catalogue();
    let mut text = String::new();
    for suite in SUITES {
        text.push_str(&format!("{}  ({})\n", suite.name, suite.about));
        for c in all.iter().filter(|c| c.suite() == suite.name) {
            text.push_str(&format!("  {:<45} {}\n  {:<45} ({})\n", c.id, (c.target)(&config), "", c.title));
        }
    }
    // A reader that stops early (`xregion list | head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// Runs `defs` in order against `ctx`'s deployment. A check the deployment cannot support is `skipped` with the
/// reason; when the preflight found the deployment unusable, a check that needs a usable one is `error`. When
/// `interrupt` resolves, the check in progress ends as `error` and the rest are not run; the results so far are
/// returned with `true`.
pub async fn run_checks(defs: &[CheckDef], ctx: &Ctx, interrupt: impl Future<Output = ()>) -> (Vec<CheckResult>, bool) {
    tokio::pin!(interrupt);
    let problems = tokio::select! {
        p = crate::drive::health::problems(&ctx.probes) => p,
        _ = &mut interrupt => return (Vec::new(), true),
    };
    // On an all-HTTPS deployment, checks that probe the listeners themselves (TLS) or judge others still run when
    // the probe clients cannot get in, for example because a certificate has expired.
    let https = !ctx.probes.is_empty() && ctx.probes.iter().all(|p| p.endpoint.starts_with("https://"));
    let watch = crate::drive::watch::SelfWatch::start();
    let mut results: Vec<CheckResult> = Vec::new();
    for def in defs {
        ctx.progress.start_check(def.id);
        let rb = ResultBuilder::new(def, &ctx.config);
        let r = if !problems.is_empty() && (def.needs.usable || !https) {
            rb.finish(Verdict::Error, format!("deployment not usable: {}", problems.join("; ")))
        } else if let Some(why) = def.needs.unmet(ctx) {
            rb.finish(Verdict::Skipped, why)
        } else {
            match def.run {
                Run::Judge(judge) => judge(rb, &ctx.config, &results),
                Run::Measure(measure) => tokio::select! {
                    r = async {
                        let mark = watch.mark();
                        let mut r = measure(rb, ctx).await;
                        judge_own_load(&mut r, &watch.since(&mark));
                        r
                    } => r,
                    _ = &mut interrupt => {
                        let r = ResultBuilder::new(def, &ctx.config)
                            .finish(Verdict::Error, "interrupted (Ctrl-C or SIGTERM) before the check finished");
                        ctx.progress.finish_check(&r);
                        results.push(r);
                        return (results, true);
                    }
                },
            }
        };
        ctx.progress.finish_check(&r);
        results.push(r);
    }
    (results, false)
}

/// Attaches the measuring side's own load during a check to its result; a check that failed while the measuring
/// side was overloaded becomes `error: measurement overloaded (…)`, with the failure it saw kept in its notes.
fn judge_own_load(r: &mut CheckResult, load: &crate::drive::watch::Load) {
    r.metrics.insert("measurement.lag_ms_p99".into(), load.lag_p99_ms);
    r.metrics.insert("measurement.lag_ms_max".into(), load.lag_max_ms);
    r.metrics.insert("measurement.cpu_pct".into(), load.cpu_pct);
    if let Some(why) = load.overloaded() {
        r.notes.push(format!("the measuring side was overloaded during this check: {why}"));
        if r.verdict == Verdict::Fail {
            r.notes.push(format!("the failure seen while overloaded: {}", r.summary));
            r.summary =
                format!("measurement overloaded ({why}); the failure it saw may be the client's: {}", r.summary);
            r.verdict = Verdict::Error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Needs;
    use crate::measure;

    /// A check added for this test: one catalogue entry (below) plus this one function.
    async fn answers_42(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
        rb.metric("answer", 42.0).measured(format!("42 over {} regions", ctx.probes.len()));
        rb.finish(Verdict::Pass, "the answer is 42")
    }

    /// The catalogue entry of the check above.
    const ANSWER: CheckDef = CheckDef {
        id: "example.answer",
        title: "the answer is 42",
        target: |_| "42".into(),
        needs: Needs { regions_min: 0, ..Needs::NONE },
        run: measure!(answers_42),
    };

    /// A check that needs what the deployment below lacks: a fault injector.
    const NEEDS_FAULTS: CheckDef = CheckDef {
        id: "example.faults",
        title: "needs a fault injector",
        target: |_| String::new(),
        needs: Needs { injector: true, regions_min: 0, ..Needs::NONE },
        run: measure!(answers_42),
    };

    fn ctx() -> Ctx {
        let config = crate::config::Config::default();
        Ctx {
            faults: crate::faults::FaultInjector::None("no injector in this test".into()),
            probes: Vec::new(),
            history: Arc::new(HistoryLog::new(Instant::now())),
            seed: 1,
            key_prefix: key_prefix(1, true),
            progress: Progress::new(true),
            traffic: None,
            profile: Profile::Quick,
            shared: Shared::default(),
            selected: Vec::new(),
            shard: Shard::default(),
            location: None,
            config,
        }
    }

    /// Goal: a new check is one catalogue entry plus one function: the runner runs it with nothing else added,
    /// and skips, with the reason, a check whose needs the deployment does not meet.
    #[tokio::test]
    async fn a_new_check_is_one_entry_and_one_function() {
        let (results, interrupted) = run_checks(&[ANSWER, NEEDS_FAULTS], &ctx(), std::future::pending()).await;
        assert!(!interrupted);
        assert_eq!(results[0].id, "example.answer");
        assert_eq!(results[0].verdict, Verdict::Pass, "{}", results[0].summary);
        assert_eq!(results[0].metrics["answer"], 42.0);
        assert_eq!(results[1].verdict, Verdict::Skipped);
        assert!(results[1].summary.contains("needs a fault injector"), "{}", results[1].summary);
        assert!(results[0].metrics.contains_key("measurement.lag_ms_p99"), "{:?}", results[0].metrics);
    }

    /// Goal: against a deployment whose fault commands cannot fail a health check (no `health_down`), the checks
    /// that need one are skipped with the reason, not errors.
    #[tokio::test]
    async fn a_missing_health_command_skips_the_health_checks() {
        let mut ctx = ctx();
        let commands = crate::config::FaultCommands {
            fail: Some("true".into()),
            restore: Some("true".into()),
            ..Default::default()
        };
        ctx.faults = crate::faults::FaultInjector::Command(crate::faults::CommandInjector::new(
            commands,
            std::time::Duration::from_secs(5),
            Vec::<(String, String)>::new(),
        ));
        ctx.traffic = Some(crate::config::Traffic {
            records: [("latency", "https://127.0.0.1:9"), ("failover", "https://127.0.0.1:9")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            ..Default::default()
        });
        let defs: Vec<CheckDef> = crate::catalogue::catalogue().into_iter().filter(|d| d.needs.health_fault).collect();
        assert!(defs.len() >= 2, "the health and failover-record checks need health faults");
        let (results, _) = run_checks(&defs, &ctx, std::future::pending()).await;
        for r in &results {
            assert_eq!(r.verdict, Verdict::Skipped, "{}: {}", r.id, r.summary);
            assert!(r.summary.contains("faults.command.health_down"), "{}", r.summary);
        }
    }

    /// Goal: a failure seen while the measuring side was overloaded is `error: measurement overloaded`, a pass
    /// stays a pass, and a failure on a calm client stays a failure.
    #[test]
    fn a_failure_on_an_overloaded_client_is_an_error() {
        use crate::drive::watch::Load;
        let busy = Load { ticks: 100, lag_p99_ms: 40.0, lag_max_ms: 300.0, cpu_pct: 190.0 };
        let calm = Load { ticks: 100, lag_p99_ms: 0.5, lag_max_ms: 2.0, cpu_pct: 20.0 };
        let result =
            |v: Verdict| ResultBuilder::new(&ANSWER, &crate::config::Config::default()).finish(v, "P99 too high");
        let mut r = result(Verdict::Fail);
        judge_own_load(&mut r, &busy);
        assert_eq!(r.verdict, Verdict::Error);
        assert!(r.summary.starts_with("measurement overloaded (scheduler lag") && r.summary.contains("P99 too high"));
        let mut r = result(Verdict::Pass);
        judge_own_load(&mut r, &busy);
        assert_eq!(r.verdict, Verdict::Pass);
        let mut r = result(Verdict::Fail);
        judge_own_load(&mut r, &calm);
        assert_eq!(r.verdict, Verdict::Fail);
    }

    /// Goal: an interrupt ends the run with the results so far, the check in progress as an error.
    #[tokio::test]
    async fn an_interrupt_keeps_what_was_measured() {
        async fn forever(_: ResultBuilder, _: &Ctx) -> CheckResult {
            std::future::pending().await
        }
        const FOREVER: CheckDef = CheckDef { id: "example.forever", run: measure!(forever), ..ANSWER };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let interrupt = async move {
            let _ = rx.await;
        };
        let ctx = ctx();
        let run = run_checks(&[ANSWER, FOREVER, ANSWER], &ctx, interrupt);
        let ((results, interrupted), ()) = tokio::join!(run, async move {
            tokio::task::yield_now().await;
            let _ = tx.send(());
        });
        assert!(interrupted);
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].verdict, Verdict::Pass);
        assert_eq!(results[1].verdict, Verdict::Error);
        assert!(results[1].summary.contains("interrupted"));
    }

    /// Goal: a run placed at a location (`--location`) sends its users from there alone, with no location header,
    /// where an unplaced run names every nearest location in the header; placed where `nearest` has no region,
    /// the health and capacity checks are skipped saying so, rather than draining another location's region.
    #[tokio::test]
    async fn a_located_run_sends_from_its_location_alone() {
        let mut ctx = ctx();
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ctx.traffic = Some(crate::config::Traffic {
            records: pairs(&[("latency", "https://127.0.0.1:9")]),
            nearest: pairs(&[("london", "eu-west-1"), ("seattle", "us-west-2")]),
            capacity: [("eu-west-1".to_string(), 10)].into(),
            ..Default::default()
        });
        let header = |l: &str| vec![("X-Client-Location".to_string(), l.to_string())];
        let everywhere = vec![("london".to_string(), header("london")), ("seattle".to_string(), header("seattle"))];
        assert_eq!(ctx.client_locations(), everywhere);
        ctx.location = Some("seattle".into());
        assert_eq!(ctx.client_locations(), vec![("seattle".to_string(), Vec::new())]);
        let ids = ["cross-region.routing.health", "cross-region.routing.capacity"];
        // No probes here: the routing checks need none, only requests through the records.
        let defs: Vec<CheckDef> = crate::catalogue::catalogue()
            .into_iter()
            .filter(|d| ids.contains(&d.id))
            .map(|d| CheckDef { needs: crate::check::Needs { regions_min: 0, ..d.needs }, ..d })
            .collect();
        assert_eq!(defs.len(), 2);
        // Seattle's nearest region has no capacity limit (the capacity check would otherwise fill London's).
        let (results, _) = run_checks(&defs[1..], &ctx, std::future::pending()).await;
        assert_eq!(results[0].verdict, Verdict::Skipped, "{}", results[0].summary);
        let s = &results[0].summary;
        assert!(s.contains("placed at seattle") && s.contains("us-west-2"), "{s}");
        // Dublin has no nearest region (it may be a geolocation location only).
        ctx.location = Some("dublin".into());
        ctx.faults = crate::faults::FaultInjector::Command(crate::faults::CommandInjector::new(
            crate::config::FaultCommands {
                health_down: Some("true".into()),
                health_up: Some("true".into()),
                ..Default::default()
            },
            std::time::Duration::from_secs(5),
            Vec::<(String, String)>::new(),
        ));
        let (results, _) = run_checks(&defs, &ctx, std::future::pending()).await;
        for r in &results {
            assert_eq!(r.verdict, Verdict::Skipped, "{}: {}", r.id, r.summary);
            assert!(r.summary.contains("placed at dublin (--location), which has no nearest region"), "{}", r.summary);
        }
    }

    /// Goal: with `--seed` the key prefix depends on the seed alone; without, two runs differ.
    #[test]
    fn key_prefix_replays_with_a_seed() {
        assert_eq!(key_prefix(7, true), key_prefix(7, true));
        assert!(key_prefix(7, false).starts_with("xr/0000000000000007-"));
    }
}
