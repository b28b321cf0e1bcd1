//! What a check is: its definition (id, target, requirements and the function that runs it), the context it runs
//! in, and the builder of its result.
//!
//! A new check is one `CheckDef` in its suite module's `CHECKS` plus one function. The runner reads `needs` to skip
//! a check whose deployment lacks something, and calls `run`; nothing in the crate branches on a check's id.

use crate::config::{Config, Profile, Traffic};
use crate::faults::FaultInjector;
use crate::history::HistoryLog;
use crate::probe::{Probe, ProbeError};
use crate::progress::Progress;
use futures::future::LocalBoxFuture;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xregion_model::fault::FaultKind;
use xregion_model::report::{Chart, CheckResult, Distribution, Heatmap, RegionVerdict, Table, Verdict};

/// A check that measures the deployment: starts from an empty result and returns it finished.
pub type MeasureFn = for<'a> fn(ResultBuilder, &'a Ctx) -> LocalBoxFuture<'a, CheckResult>;

/// A check that judges the results of the checks that ran before it (the compliance frameworks).
pub type JudgeFn = fn(ResultBuilder, &Config, &[CheckResult]) -> CheckResult;

/// How a check runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// It measures the deployment.
    Measure(MeasureFn),
    /// It judges earlier results and touches nothing.
    Judge(JudgeFn),
}

/// `Run::Measure` of an `async fn(ResultBuilder, &Ctx) -> CheckResult`.
#[macro_export]
macro_rules! measure {
    ($f:path) => {
        $crate::check::Run::Measure(|rb, ctx| Box::pin($f(rb, ctx)))
    };
}

/// What a check needs from the deployment; the runner skips it, with the reason, when something is missing.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// Routing records and client locations (`[deployment.traffic]`).
    pub traffic: bool,
    /// Named routing records it sends traffic through.
    pub records: &'static [&'static str],
    /// A CDN entry point.
    pub cdn: bool,
    /// A fault injector.
    pub injector: bool,
    /// The kind of fault it injects, which the injector must support.
    pub fault: Option<FaultKind>,
    /// Health-check faults (a region's health check fails while it keeps serving), which the injector must
    /// support.
    pub health_fault: bool,
    /// Fewest regions it can judge.
    pub regions_min: usize,
    /// Whether it needs a deployment that passed the preflight. Checks that probe listeners themselves (TLS) or
    /// judge other checks' results run, and say what is wrong, even when the probe clients cannot get in.
    /// So do checks that judge each region on its own (`PerRegion`): a region the probes cannot reach is their
    /// `error` row, and the other regions are still judged.
    pub usable: bool,
    /// Whether it needs every region's HTTP probe contract (routes beyond the key-value operations, listeners,
    /// URLs for the load generator). Checks that only write, read and scan keys run on databases too.
    pub contract: bool,
    /// Whether it reads or writes xregion's keys (every check but the journeys, which call the application's own
    /// API).
    pub keys: bool,
}

impl Needs {
    /// Nothing beyond one usable region.
    pub const NONE: Needs = Needs {
        traffic: false,
        records: &[],
        cdn: false,
        injector: false,
        fault: None,
        health_fault: false,
        regions_min: 1,
        usable: true,
        contract: true,
        keys: true,
    };

    /// Why the check cannot run against `ctx`'s deployment, if it cannot.
    pub fn unmet(&self, ctx: &Ctx) -> Option<String> {
        if (self.injector || self.fault.is_some() || self.health_fault)
            && let Some(why) = ctx.faults.unavailable()
        {
            return Some(format!("needs a fault injector: {why}"));
        }
        if self.health_fault
            && let Err(why) = ctx.faults.supports_health()
        {
            return Some(why);
        }
        if self.keys
            && let Some(p) = ctx.probes.iter().find(|p| !p.capabilities().keys)
        {
            return Some(format!(
                "needs the HTTP probe contract or a database in every region, and region {} has only an application \
                 API ({}): give it an endpoint or a database",
                p.region, p.endpoint
            ));
        }
        if self.contract
            && let Some(p) = ctx.probes.iter().find(|p| !p.capabilities().http_contract)
        {
            return Some(format!(
                "needs the HTTP probe contract, and region {} is a {} ({}): give the region an endpoint to test its API",
                p.region,
                p.capabilities().kind,
                p.endpoint
            ));
        }
        // A check that runs on databases needs no routing records there: its clients are in the regions.
        let databases = !self.contract && ctx.probes.iter().any(|p| !p.capabilities().http_contract);
        let traffic = ctx.traffic.as_ref();
        if (self.traffic || !self.records.is_empty() || self.cdn) && traffic.is_none() && !databases {
            return Some(
                "no routing records configured: set [deployment.traffic] records (the lab provides them itself)".into(),
            );
        }
        if let Some(t) = traffic {
            if let Some(r) = self.records.iter().find(|r| !t.records.contains_key(**r)) {
                return Some(format!(
                    "needs a `{r}` routing record: set [deployment.traffic] records.{r} (the lab provides one)"
                ));
            }
            if self.cdn && t.cdn.is_none() {
                return Some("no CDN configured: set [deployment.traffic] cdn".into());
            }
        }
        if ctx.probes.len() < self.regions_min {
            return Some(match self.regions_min {
                2 => "needs at least two regions".into(),
                n => format!("needs at least {n} regions"),
            });
        }
        if let Some(kind) = self.fault
            && let Err(why) = ctx.faults.supports(kind)
        {
            return Some(why);
        }
        None
    }
}

/// A check: its id, what it promises, what it needs and how it runs.
#[derive(Clone, Copy)]
pub struct CheckDef {
    /// Stable id, `suite.area.name`.
    pub id: &'static str,
    /// What it verifies.
    pub title: &'static str,
    /// The promise, in words, from the configured targets.
    pub target: fn(&Config) -> String,
    /// What it needs from the deployment.
    pub needs: Needs,
    /// The function that runs it.
    pub run: Run,
}

impl std::fmt::Debug for CheckDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckDef").field("id", &self.id).finish_non_exhaustive()
    }
}

impl CheckDef {
    /// The suite: the first part of the id.
    pub fn suite(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }
}

/// Results that several checks share, computed once per run by the first check that needs them (one failover
/// scenario feeds four checks): keyed by a name, of any type.
#[derive(Default)]
pub struct Shared {
    /// Computed values by key.
    cells: tokio::sync::Mutex<BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>>,
}

impl Shared {
    /// The value under `key`, computed by `compute` the first time; `true` when it was computed earlier.
    pub async fn get_or_compute<T, F>(&self, key: &'static str, compute: F) -> (Arc<T>, bool)
    where
        T: Send + Sync + 'static,
        F: std::future::Future<Output = T>,
    {
        let mut cells = self.cells.lock().await;
        if let Some(v) = cells.get(key).cloned().and_then(|v| v.downcast::<T>().ok()) {
            return (v, true);
        }
        let v = Arc::new(compute.await);
        cells.insert(key, v.clone());
        (v, false)
    }

    /// The value under `key`, if one was computed.
    pub async fn get<T: Send + Sync + 'static>(&self, key: &'static str) -> Option<Arc<T>> {
        self.cells.lock().await.get(key).cloned().and_then(|v| v.downcast::<T>().ok())
    }
}

/// Everything a check needs.
pub struct Ctx {
    /// The effective configuration.
    pub config: Config,
    /// One probe per region, in configuration order.
    pub probes: Vec<Probe>,
    /// The run's history.
    pub history: Arc<HistoryLog>,
    /// Seed of every workload choice.
    pub seed: u64,
    /// Prefix of every key this run writes.
    pub key_prefix: String,
    /// Progress display.
    pub progress: Progress,
    /// Routing records and CDN, when the deployment has them.
    pub traffic: Option<Traffic>,
    /// How faults reach the deployment.
    pub faults: FaultInjector,
    /// Size of the performance suite's load.
    pub profile: Profile,
    /// Results shared between checks of this run.
    pub shared: Shared,
    /// Ids of the checks this run selected, so that a shared measurement runs only the parts they judge.
    pub selected: Vec<&'static str>,
    /// Which share of a sharded run this process drives (`--shard I/N`); 0 of 1 when not sharded.
    pub shard: Shard,
    /// Where this process runs (`--location NAME`): the client location whose requests it sends without a
    /// location header, for the deployment to place by their address. None: locations are emulated by header.
    pub location: Option<String>,
}

/// One share of a sharded run: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// This shard's share of `total` (users, say): an even split, the first `total % count` shards taking one more.
    pub fn share(&self, total: u32) -> u32 {
        total / self.count + u32::from(self.index < total % self.count)
    }

    /// Whether the run is split at all.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }

    /// Parses `I/N` (0 <= I < N).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s}: expected I/N with 0 <= I < N, for example 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Ctx {
    /// Key prefix of one check: the run prefix plus a short name.
    pub fn prefix(&self, check: &str) -> String {
        format!("{}/{check}/", self.key_prefix)
    }

    /// The routing records and CDN; a check whose `needs` asked for them is only run when they are there.
    pub fn traffic(&self) -> &Traffic {
        static NONE: std::sync::OnceLock<Traffic> = std::sync::OnceLock::new();
        self.traffic.as_ref().unwrap_or_else(|| NONE.get_or_init(Traffic::default))
    }

    /// Where the load checks' users are, each with the request headers that place them there: a run placed at a
    /// location (`--location`) sends from there alone, with no location header, for the deployment to place its
    /// requests by address; else every location of `[deployment.traffic] nearest`, named in the location header.
    pub fn client_locations(&self) -> Vec<(String, Vec<(String, String)>)> {
        let traffic = self.traffic();
        match &self.location {
            Some(here) => vec![(here.clone(), Vec::new())],
            None => traffic
                .nearest
                .keys()
                .map(|l| (l.clone(), vec![(traffic.location_header.clone(), l.clone())]))
                .collect(),
        }
    }

    /// Where `client_locations` are, for notes: "N client locations", or this run's own location.
    pub fn client_locations_text(&self) -> String {
        match &self.location {
            Some(here) => format!("{here} alone (this run's location, no location header)"),
            None => format!("{} client locations", self.traffic().nearest.len()),
        }
    }
}

/// Builds a check result; `metrics` are named numbers with units in their names.
pub struct ResultBuilder {
    /// The result so far.
    result: CheckResult,
    /// When the check started.
    started: Instant,
}

impl ResultBuilder {
    /// Starts a result for `def`.
    pub fn new(def: &CheckDef, config: &Config) -> ResultBuilder {
        ResultBuilder {
            result: CheckResult {
                id: def.id.to_string(),
                suite: def.suite().to_string(),
                verdict: Verdict::Error,
                summary: String::new(),
                target: (def.target)(config),
                measured: "-".to_string(),
                metrics: BTreeMap::new(),
                notes: Vec::new(),
                distributions: Vec::new(),
                tables: Vec::new(),
                charts: Vec::new(),
                heatmaps: Vec::new(),
                waterfalls: Vec::new(),
                regions: Vec::new(),
                duration_s: 0.0,
            },
            started: Instant::now(),
        }
    }

    /// A result that belongs to no check, to collect the parts of a measurement that another check reports.
    pub fn blank() -> ResultBuilder {
        const BLANK: CheckDef = CheckDef {
            id: "",
            title: "",
            target: |_| String::new(),
            needs: Needs::NONE,
            run: Run::Judge(|rb, _, _| rb.finish(Verdict::Error, "")),
        };
        ResultBuilder::new(&BLANK, &Config::default())
    }

    /// Records a metric.
    pub fn metric(&mut self, name: &str, value: f64) -> &mut Self {
        self.result.metrics.insert(name.to_string(), value);
        self
    }

    /// Adds a note on method or accuracy.
    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.result.notes.push(note.into());
        self
    }

    /// Adds a distribution to draw.
    pub fn distribution(&mut self, d: Distribution) -> &mut Self {
        self.result.distributions.push(d);
        self
    }

    /// Adds a table.
    pub fn table(&mut self, t: Table) -> &mut Self {
        self.result.tables.push(t);
        self
    }

    /// Adds a time chart.
    pub fn chart(&mut self, c: Chart) -> &mut Self {
        self.result.charts.push(c);
        self
    }

    /// Adds a heatmap.
    pub fn heatmap(&mut self, h: Heatmap) -> &mut Self {
        self.result.heatmaps.push(h);
        self
    }

    /// Adds a waterfall.
    pub fn waterfall(&mut self, w: xregion_model::report::Waterfall) -> &mut Self {
        self.result.waterfalls.push(w);
        self
    }

    /// Sets the headline figure.
    pub fn measured(&mut self, m: impl Into<String>) -> &mut Self {
        self.result.measured = m.into();
        self
    }

    /// Finishes with a verdict and one-line summary.
    pub fn finish(mut self, verdict: Verdict, summary: impl Into<String>) -> CheckResult {
        self.result.verdict = verdict;
        self.result.summary = summary.into();
        self.result.duration_s = self.started.elapsed().as_secs_f64();
        self.result
    }

    /// Finishes with `error` because the deployment could not be measured.
    pub fn error(self, e: &ProbeError) -> CheckResult {
        self.finish(Verdict::Error, format!("could not measure: {e}"))
    }
}

/// The judgement of a check that measures regions (or endpoints) one by one: each region gets its own verdict and
/// reason, and the check's verdict folds them. One region that cannot be reached or verified is an `error` row
/// that names it and the cause, while the other regions are still measured and judged: the check fails when any
/// region fails, is `error` only when none failed and some could not be measured, and passes only when every
/// region passed (and at least one was judged: no evidence is never a pass).
#[derive(Debug, Default)]
pub struct PerRegion {
    /// Rows in the order regions were first judged; a region judged twice keeps its worst verdict and every reason.
    rows: Vec<RegionVerdict>,
}

impl PerRegion {
    /// No region judged yet.
    pub fn new() -> PerRegion {
        PerRegion::default()
    }

    /// Records `region`'s `verdict` with `reason` (one sentence). A second finding for the same region keeps the
    /// worse verdict (fail over error over pass) and adds its reason.
    pub fn judge(&mut self, region: &str, verdict: Verdict, reason: impl Into<String>) -> &mut Self {
        let reason = reason.into();
        match self.rows.iter_mut().find(|r| r.region == region) {
            Some(row) => {
                if severity(verdict) > severity(row.verdict) {
                    // The worse finding leads, so the reason shown first explains the verdict.
                    row.reason =
                        if row.verdict == Verdict::Pass { reason } else { format!("{reason}; {}", row.reason) };
                    row.verdict = verdict;
                } else if verdict != Verdict::Pass && !reason.is_empty() {
                    row.reason = format!("{}; {reason}", row.reason);
                }
            }
            None => self.rows.push(RegionVerdict { region: region.to_string(), verdict, reason }),
        }
        self
    }

    /// `region` kept its promise: `reason` says what was measured.
    pub fn pass(&mut self, region: &str, reason: impl Into<String>) -> &mut Self {
        self.judge(region, Verdict::Pass, reason)
    }

    /// `region` broke its promise: `reason` says how.
    pub fn fail(&mut self, region: &str, reason: impl Into<String>) -> &mut Self {
        self.judge(region, Verdict::Fail, reason)
    }

    /// `region` could not be reached or verified: `reason` names the cause and what to do.
    pub fn error(&mut self, region: &str, reason: impl Into<String>) -> &mut Self {
        self.judge(region, Verdict::Error, reason)
    }

    /// Whether `region` has a verdict yet.
    pub fn judged(&self, region: &str) -> bool {
        self.rows.iter().any(|r| r.region == region)
    }

    /// The check's verdict: fail when a region failed; error when none failed and one could not be measured (or
    /// none was judged); pass when every region passed.
    pub fn verdict(&self) -> Verdict {
        if self.rows.iter().any(|r| r.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if self.rows.is_empty() || self.rows.iter().any(|r| r.verdict != Verdict::Pass) {
            Verdict::Error
        } else {
            Verdict::Pass
        }
    }

    /// The one-line summary for `verdict()`: the failing regions' reasons (then how many could not be measured),
    /// or the regions that could not be measured, or `pass` when every region passed.
    pub fn summary(&self, pass: &str) -> String {
        let of = |v: Verdict| self.rows.iter().filter(move |r| r.verdict == v);
        let listed = |v: Verdict| {
            let shown: Vec<String> =
                of(v).take(SUMMARY_REGIONS_MAX).map(|r| format!("{}: {}", r.region, r.reason)).collect();
            let more = of(v).count().saturating_sub(SUMMARY_REGIONS_MAX);
            if more > 0 { format!("{}; and {more} more", shown.join("; ")) } else { shown.join("; ") }
        };
        match self.verdict() {
            Verdict::Fail => {
                let errors = of(Verdict::Error).count();
                let failed = of(Verdict::Fail).count();
                let mut s = format!("{failed} of {} failed: {}", self.rows.len(), listed(Verdict::Fail));
                if errors > 0 {
                    s.push_str(&format!(" ({errors} could not be measured)"));
                }
                s
            }
            Verdict::Error if self.rows.is_empty() => "not enough evidence: no region was measured".to_string(),
            Verdict::Error => format!("could not measure {}", listed(Verdict::Error)),
            _ => pass.to_string(),
        }
    }

    /// Finishes `rb` with the folded verdict, the summary (`pass` when every region passed) and the rows.
    pub fn finish(self, mut rb: ResultBuilder, pass: impl Into<String>) -> CheckResult {
        let verdict = self.verdict();
        let summary = self.summary(&pass.into());
        rb.result.regions = self.rows;
        rb.finish(verdict, summary)
    }
}

/// Regions named in a per-region summary; the rest are counted ("and N more") and listed in the report.
const SUMMARY_REGIONS_MAX: usize = 4;

/// How bad a verdict is, for folding several findings of one region.
fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Pass | Verdict::Skipped => 0,
        Verdict::Error => 1,
        Verdict::Fail => 2,
    }
}

/// Milliseconds of a duration as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: shards split the users evenly, the first ones taking the remainder, and `I/N` is checked.
    #[test]
    fn shards_split_users_and_parse() {
        let shares: Vec<u32> = (0..4).map(|index| Shard { index, count: 4 }.share(10)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!(Shard::default().share(10), 10);
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    /// Goal: the per-region fold. One failing region fails the check even when another could not be measured, and
    /// the summary names the failure first; errors alone give `error`; every region passing gives `pass`; no
    /// region judged is never a pass. Method: hand-made outcomes.
    #[test]
    fn per_region_verdicts_fold_into_the_check() {
        let mut p = PerRegion::new();
        p.pass("us-east-1", "TLS 1.3 only").error("eu-west-1", "https://x refused the connection");
        p.fail("us-west-2", "TLS 1.2 accepted").pass("us-west-2", "TLS 1.3 accepted");
        assert_eq!(p.verdict(), Verdict::Fail);
        assert_eq!(p.summary("all good"), "1 of 3 failed: us-west-2: TLS 1.2 accepted (1 could not be measured)");
        let r = p.finish(ResultBuilder::blank(), "all good");
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.regions.len(), 3);
        assert_eq!(r.regions[2].reason, "TLS 1.2 accepted", "a pass after a failure does not dilute the reason");

        let mut p = PerRegion::new();
        p.pass("a", "ok").error("b", "cannot resolve b.example");
        assert_eq!(p.verdict(), Verdict::Error);
        assert_eq!(p.summary("x"), "could not measure b: cannot resolve b.example");
        p.fail("b", "expired");
        assert_eq!(p.rows[1].reason, "expired; cannot resolve b.example");

        let mut p = PerRegion::new();
        p.pass("a", "ok").pass("b", "ok");
        assert_eq!((p.verdict(), p.summary("both fine")), (Verdict::Pass, "both fine".to_string()));
        assert_eq!(PerRegion::new().verdict(), Verdict::Error);
    }
}
