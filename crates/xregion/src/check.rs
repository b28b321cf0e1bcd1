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
use xregion_model::report::{Chart, CheckResult, Distribution, Heatmap, Table, Verdict};

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
    /// Fewest regions it can judge.
    pub regions_min: usize,
    /// Whether it needs a deployment that passed the preflight. Checks that probe listeners themselves (TLS) or
    /// judge other checks' results run, and say what is wrong, even when the probe clients cannot get in.
    pub usable: bool,
}

impl Needs {
    /// Nothing beyond one usable region.
    pub const NONE: Needs =
        Needs { traffic: false, records: &[], cdn: false, injector: false, fault: None, regions_min: 1, usable: true };

    /// Why the check cannot run against `ctx`'s deployment, if it cannot.
    pub fn unmet(&self, ctx: &Ctx) -> Option<String> {
        if (self.injector || self.fault.is_some())
            && let Some(why) = ctx.faults.unavailable()
        {
            return Some(format!("needs a fault injector: {why}"));
        }
        let traffic = ctx.traffic.as_ref();
        if (self.traffic || !self.records.is_empty() || self.cdn) && traffic.is_none() {
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

/// Milliseconds of a duration as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
