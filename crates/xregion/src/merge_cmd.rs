//! Sharded runs: each shard of `xregion run --shard I/N` writes `OUT/shard.json` beside its report, and
//! `xregion merge DIR…` merges the shards exactly and judges the load checks on the union.
//!
//! `shard.json` keeps everything the load checks judge: the shard's `LoadResult` with its HDR histograms (per
//! request name and per phase, as value/count pairs), its counters and chart windows, and the stages and phases it
//! ran; its history slice is its own `history.jsonl`. The merge checks that the shards belong together (the same
//! count, each index once, the same revision, seed, profile and config), adds their results
//! (`LoadResult::merge`), and runs the load checks' own judgement on the sum, against the whole run's users. The
//! geo-routing check of located shards (`--location`) is judged again on every located shard's observations.
//! The other checks ran once, on shard 0, and are taken from its report as they are.

use crate::check::{Ctx, ResultBuilder, Run, Shard, Shared};
use crate::config::{Config, Profile};
use crate::error::{Error, Result};
use crate::suites::performance::load::{LoadPart, adopt_merged, is_shardable, load_part};
use crate::suites::routing::{GEO, GEO_SHARED, GeoEvidence, GeoMeasured, is_per_location};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use xregion_model::report::Report;

/// `OUT/shard.json`.
const PART_FILE: &str = "shard.json";

/// What one shard keeps for the merge.
#[derive(Debug, Serialize, Deserialize)]
pub struct Part {
    /// Which shard this is.
    pub shard: Shard,
    /// The run's seed (each shard's workload used a sub-seed of it).
    pub seed: u64,
    /// The git revision of the xregion that ran it.
    pub git_revision: String,
    /// The profile of the load.
    pub profile: Profile,
    /// Client locations of the deployment's traffic.
    pub traffic: Option<crate::config::Traffic>,
    /// The shard's load run, if a load check ran.
    pub load: Option<LoadPart>,
    /// Where the shard ran (`--location`), if it was placed.
    #[serde(default)]
    pub location: Option<String>,
    /// A located shard's geo-routing observations of its own location, or why it has none.
    #[serde(default)]
    pub geo: Option<GeoMeasured>,
}

/// Writes the shard's part beside its report.
pub async fn write_part(ctx: &Ctx, report: &Report, out: &Path) -> Result<()> {
    let part = Part {
        shard: ctx.shard,
        seed: report.seed,
        git_revision: report.git_revision.clone(),
        profile: ctx.profile,
        traffic: ctx.traffic.clone(),
        load: load_part(ctx).await,
        location: ctx.location.clone(),
        geo: match &ctx.location {
            Some(_) => ctx
                .shared
                .get::<Result<GeoEvidence, String>>(GEO_SHARED)
                .await
                .map(|g| g.as_ref().clone().map(|e| e.observations)),
            None => None,
        },
    };
    let path = out.join(PART_FILE);
    let text = serde_json::to_string(&part).map_err(|e| Error::Other(e.into()))?;
    std::fs::write(&path, text).map_err(|e| Error::Target(format!("cannot write {}: {e}", path.display())))
}

/// Marks a shard's load verdicts (each judged its share of the users) and, for a located shard, its geo-routing
/// verdict (its own location) as provisional, and returns the shard's exit code, which the other checks alone set.
pub fn mark_provisional(report: &mut Report, shard: Shard, located: bool) -> u8 {
    let provisional = |id: &str| is_shardable(id) || (located && is_per_location(id));
    for c in report.checks.iter_mut().filter(|c| provisional(&c.id)) {
        let share = if is_shardable(&c.id) { "this shard's share of the users" } else { "this shard's location" };
        c.summary = format!(
            "shard {} of {}, provisional until `xregion merge` ({share}): {}",
            shard.index, shard.count, c.summary
        );
    }
    xregion_model::report::exit_code_of(report.checks.iter().filter(|c| !provisional(&c.id)).map(|c| c.verdict))
}

/// The located shards' geo evidence together, when the run judged geo routing and a shard was placed at a
/// location: every located shard's observations, and those that measured nothing, named with why.
fn located_geo(shards: &[(PathBuf, Report, Part)]) -> Option<GeoEvidence> {
    let judged = shards.iter().any(|(_, r, _)| r.checks.iter().any(|c| c.id == GEO));
    let mut evidence = GeoEvidence { located: true, ..GeoEvidence::default() };
    let mut any = false;
    for (dir, _, p) in shards {
        let Some(location) = &p.location else { continue };
        any = true;
        let why = match &p.geo {
            Some(Ok(o)) => {
                evidence.observations.extend(o.iter().cloned());
                continue;
            }
            Some(Err(e)) => e.clone(),
            None => "it kept no observations (its geo check did not run)".to_string(),
        };
        evidence.unmeasured.push((location.clone(), format!("(the shard in {}): {why}", dir.display())));
    }
    (judged && any).then_some(evidence)
}

/// Arguments of `xregion merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' output directories (each with report.json and shard.json), every shard of one run once.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the merged reports.
    #[arg(long, default_value = "xregion-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub history: crate::output::HistoryArgs,
}

/// Reads one shard's report and part.
fn read(dir: &Path) -> Result<(Report, Part)> {
    let report = crate::output::read_report(&dir.join("report.json"))?;
    let path = dir.join(PART_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    let part: Part = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{} is not a shard's part: {e}", path.display())))?;
    Ok((report, part))
}

/// Checks that the shards are every shard of one run, once each, or says what differs.
fn check_together(shards: &[(PathBuf, Report, Part)]) -> Result<()> {
    let (dir0, r0, p0) = &shards[0];
    let n = p0.shard.count as usize;
    let mut seen = vec![None; n];
    for (dir, r, p) in shards {
        let differs = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            Error::Usage(format!(
                "{} ran with another {what} than {} ({a} vs {b}): shards of one run share it",
                dir.display(),
                dir0.display()
            ))
        };
        if p.shard.count as usize != n {
            return Err(differs("shard count", &p.shard.count, &n));
        }
        if r.git_revision != r0.git_revision {
            return Err(differs("xregion revision", &r.git_revision, &r0.git_revision));
        }
        if p.seed != p0.seed {
            return Err(differs("seed", &p.seed, &p0.seed));
        }
        if p.profile != p0.profile {
            return Err(differs("profile", &p.profile.name(), &p0.profile.name()));
        }
        if r.config != r0.config {
            return Err(differs("config", &"its report.json's config", &"shard 0's"));
        }
        let Some(slot) = seen.get_mut(p.shard.index as usize) else {
            return Err(Error::Usage(format!("{} says it is shard {} of {n}", dir.display(), p.shard.index)));
        };
        if let Some(other) = slot.replace(dir.clone()) {
            return Err(Error::Usage(format!(
                "{} and {} are both shard {} of {n}",
                other.display(),
                dir.display(),
                p.shard.index
            )));
        }
    }
    if let Some(i) = seen.iter().position(Option::is_none) {
        return Err(Error::Usage(format!("shard {i} of {n} is missing: give every shard's directory once")));
    }
    Ok(())
}

/// `xregion merge`: the merged report, with the exit code of a run.
pub async fn run(args: &MergeArgs) -> Result<ExitCode> {
    let mut shards = Vec::new();
    for dir in &args.dirs {
        let (r, p) = read(dir)?;
        shards.push((dir.clone(), r, p));
    }
    shards.sort_by_key(|(_, _, p)| p.shard.index);
    check_together(&shards)?;
    let (_, r0, p0) = &shards[0];
    let config: Config = serde_json::from_value(r0.config.clone())
        .map_err(|e| Error::Usage(format!("shard 0's report holds a config this xregion cannot read: {e}")))?;
    let parts: Vec<LoadPart> = shards.iter().filter_map(|(_, _, p)| p.load.clone()).collect();
    let known = crate::catalogue::catalogue();
    let def_of = |id: &str| known.iter().find(|d| d.id == id);
    let ctx = Ctx {
        config: config.clone(),
        probes: Vec::new(),
        history: Arc::new(crate::history::HistoryLog::new(std::time::Instant::now())),
        seed: r0.seed,
        key_prefix: String::new(),
        progress: crate::progress::Progress::new(true),
        traffic: p0.traffic.clone(),
        faults: crate::faults::FaultInjector::None("a merge injects no fault".into()),
        profile: p0.profile,
        shared: Shared::default(),
        selected: r0.checks.iter().filter_map(|c| def_of(&c.id)).map(|d| d.id).collect(),
        shard: Shard::default(),
        location: None,
    };
    let load_checks = r0.checks.iter().filter(|c| is_shardable(&c.id)).count();
    if load_checks > 0 && parts.len() != shards.len() {
        return Err(Error::Usage(format!(
            "{} of {} shards kept a load run; every shard must run the load checks",
            parts.len(),
            shards.len()
        )));
    }
    if !parts.is_empty() {
        adopt_merged(&ctx, &parts).await.map_err(|e| Error::Usage(format!("cannot merge the shards' load: {e}")))?;
    }
    // The geo check is judged on what the located shards reached, which the check then finds measured.
    let geo = located_geo(&shards);
    if let Some(g) = geo.clone() {
        ctx.shared.get_or_compute::<Result<GeoEvidence, String>, _>(GEO_SHARED, async { Ok(g) }).await;
    }
    let rejudged = |id: &str| is_shardable(id) || (geo.is_some() && is_per_location(id));
    let located: Vec<String> =
        shards.iter().filter_map(|(d, _, p)| p.location.as_ref().map(|l| format!("{} at {l}", d.display()))).collect();
    let mut checks = Vec::new();
    for c in &r0.checks {
        match def_of(&c.id).filter(|d| rejudged(d.id)).map(|d| (d, d.run)) {
            Some((def, Run::Measure(measure))) => {
                let mut r = measure(ResultBuilder::new(def, &config), &ctx).await;
                r.notes.push(if is_shardable(def.id) {
                    format!(
                        "judged on the union of {} shards' load ({}), merged exactly: counts add up and the latency \
                         histograms are summed",
                        shards.len(),
                        shards.iter().map(|(d, _, _)| d.display().to_string()).collect::<Vec<_>>().join(", ")
                    )
                } else {
                    let mut n = format!("judged on what the located shards reached: {}", located.join(", "));
                    if p0.location.is_none() {
                        n.push_str(
                            "; shard 0 was not placed at a location, and its result (locations named by header) \
                             is replaced",
                        );
                    }
                    n
                });
                checks.push(r);
            }
            _ => checks.push(c.clone()),
        }
    }
    let duration = std::time::Duration::from_secs_f64(shards.iter().map(|(_, r, _)| r.duration_s).fold(0.0, f64::max));
    let report =
        crate::output::new_report(&config, r0.seed, r0.started_at.clone(), duration, r0.regions.clone(), checks);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::Target(format!("cannot create {}: {e}", args.out.display())))?;
    let earlier = crate::output::trend(&args.history, &report, true);
    crate::output::write_outputs(&report, &earlier, &ctx.history, &args.out)?;
    println!("reports: {}", args.out.join("report.html").display());
    Ok(ExitCode::from(report.exit_code()))
}
