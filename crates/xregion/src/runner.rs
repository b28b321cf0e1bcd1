//! The runner: selects checks, prepares the deployment, runs the checks in order and assembles the report.
//!
//! The runner knows the catalogue of suites and checks; each check is an async function over a `Ctx` that
//! returns a `CheckResult`. Checks see the deployment only through `Ctx::probes` (the probe contract).

use crate::config::Config;
use crate::history::HistoryLog;
use crate::probe::{Probe, ProbeError};
use crate::progress::Progress;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xregion_model::report::{CheckResult, Distribution, Table, Verdict};

/// A suite: its name and what it covers.
#[derive(Debug, Clone, Copy)]
pub struct SuiteDef {
    /// Name used with `--suite`.
    pub name: &'static str,
    /// What the suite proves.
    pub about: &'static str,
}

/// The suites, in run order.
pub const SUITES: &[SuiteDef] = &[
    SuiteDef { name: "cross-region", about: "replication, convergence and conflict resolution across regions" },
    SuiteDef { name: "performance", about: "load, latency and CDN figures under concurrent users" },
    SuiteDef { name: "disaster-recovery", about: "region failure, RTO and RPO" },
    SuiteDef { name: "security", about: "TLS, access control, encryption, audit, residency and erasure" },
];

/// A check: its id and how to describe its target.
#[derive(Debug, Clone, Copy)]
pub struct CheckDef {
    /// Stable id, `suite.area.name`.
    pub id: &'static str,
    /// What it verifies.
    pub title: &'static str,
    /// The promise, in words, from the configured targets.
    pub target: fn(&Config) -> String,
}

impl CheckDef {
    /// The suite: the first part of the id.
    pub fn suite(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }
}

/// Every check, in run order.
pub fn catalogue() -> Vec<CheckDef> {
    use crate::suites::{compliance, cross_region, failover, latency, performance, routing, security};
    [
        cross_region::CHECKS,
        routing::CHECKS,
        failover::CHECKS,
        performance::CHECKS,
        latency::CHECKS,
        failover::DR_CHECKS,
        security::CHECKS,
        compliance::CHECKS,
    ]
    .concat()
}

/// Everything a check needs.
pub struct Ctx {
    /// The effective configuration.
    pub config: Config,
    /// One probe per region, in configuration order.
    pub probes: Vec<Probe>,
    /// The run's history.
    pub history: Arc<HistoryLog>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Prefix of every key this run writes, unique per run so that runs never see each other's data.
    pub key_prefix: String,
    /// Progress display.
    pub progress: Progress,
    /// Routing records and CDN, when the deployment has them.
    pub traffic: Option<crate::config::Traffic>,
    /// How faults reach the deployment.
    pub faults: crate::faults::FaultInjector,
    /// Size of the performance suite's load.
    pub profile: crate::suites::performance::Profile,
    /// Failover scenarios already run, shared by the checks that judge them.
    pub scenarios: crate::suites::failover::ScenarioCache,
}

impl Ctx {
    /// Key prefix of one check: the run prefix plus a short name.
    pub fn prefix(&self, check: &str) -> String {
        format!("{}/{check}/", self.key_prefix)
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
                duration_s: 0.0,
            },
            started: Instant::now(),
        }
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
    pub fn chart(&mut self, c: xregion_model::report::Chart) -> &mut Self {
        self.result.charts.push(c);
        self
    }

    /// Adds a heatmap.
    pub fn heatmap(&mut self, h: xregion_model::report::Heatmap) -> &mut Self {
        self.result.heatmaps.push(h);
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

/// Checks every region's health concurrently; returns the problems, each naming the region and endpoint.
pub async fn preflight(probes: &[Probe]) -> Vec<String> {
    let results = futures::future::join_all(probes.iter().map(|p| async move { (p, p.health().await) })).await;
    let mut problems = Vec::new();
    for (p, r) in results {
        match r {
            Ok(h) if h.status == "ok" => {}
            Ok(h) => problems.push(format!("region {} at {} reports health {:?}", p.region, p.endpoint, h.status)),
            Err(e) => problems.push(format!("region {}: {e}", p.region)),
        }
    }
    problems
}

/// Runs one check by id.
pub async fn run_check(def: &CheckDef, ctx: &Ctx) -> CheckResult {
    use crate::suites::{cross_region, failover, latency, performance, routing, security};
    if def.suite() == "security" {
        security::run(def, ctx).await
    } else if def.id.starts_with("cross-region.routing.") {
        routing::run(def, ctx).await
    } else if def.id.starts_with("cross-region.failover.") || def.suite() == "disaster-recovery" {
        failover::run(def, ctx).await
    } else if def.id.starts_with("performance.latency.") {
        latency::run(def, ctx).await
    } else if def.suite() == "performance" {
        performance::run(def, ctx).await
    } else {
        cross_region::run(def, ctx).await
    }
}

/// Whether a check can only run on a deployment that passed the preflight. On an HTTPS deployment the TLS checks
/// probe the listeners' handshakes themselves, so they run (and say what is wrong) even when the preflight's
/// clients cannot get in, for example because a certificate has expired; the compliance checks then judge
/// whatever ran.
fn needs_preflight(def: &CheckDef, https: bool) -> bool {
    !(https && (def.id.starts_with("security.tls.") || def.id.starts_with("security.compliance.")))
}

/// Runs `defs` in order, or marks them `error` when the preflight found the deployment unusable and they need a
/// usable one.
pub async fn run_checks(defs: &[CheckDef], ctx: &Ctx) -> Vec<CheckResult> {
    let problems = preflight(&ctx.probes).await;
    let https = !ctx.probes.is_empty() && ctx.probes.iter().all(|p| p.endpoint.starts_with("https://"));
    let mut results = Vec::new();
    for def in defs {
        let r = if problems.is_empty() || !needs_preflight(def, https) {
            ctx.progress.start_check(def.id);
            // Compliance checks judge the results of the checks that ran before them.
            let r = if def.id.starts_with("security.compliance.") {
                crate::suites::compliance::judge(def, &ctx.config, &results)
            } else {
                run_check(def, ctx).await
            };
            ctx.progress.finish_check(&r);
            r
        } else {
            let r = ResultBuilder::new(def, &ctx.config)
                .finish(Verdict::Error, format!("deployment not usable: {}", problems.join("; ")));
            ctx.progress.finish_check(&r);
            r
        };
        results.push(r);
    }
    results
}

/// Milliseconds of a duration as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
