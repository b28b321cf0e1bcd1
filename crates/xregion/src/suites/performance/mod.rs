//! The `performance` suite: concurrent users through the global router, store latency at each region, and the
//! CDN's hit rate and edge latency.
//!
//! Load comes from `xregion-load`, run in a child process (`xregion load-worker`) so that the generator's
//! connections never share this process's descriptor budget. Verdicts come from thresholds evaluated by the
//! engine on the recorded histograms, plus the figures the specification names (users reached, hit rate).
//!
//! One module per area: `load` (users through the router: ramp-up, sustained, spike), `database` (store latency,
//! replication under write load, store acquisition) and `cdn` (hit rate and edge latency, one shared load run).

mod cdn;
mod database;
pub mod load;

pub use load::timeline_text;

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder};
use crate::config::Config;
use crate::measure;
use xregion_load::plan::{Executor, Plan, RequestSpec};
use xregion_load::result::{LoadResult, Percentiles};
use xregion_model::report::{Chart, Series, Table};

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: load::RAMP_UP,
        title: "users ramping up to the target keep response times and errors low",
        target: load_target,
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(load::ramp_up),
    },
    CheckDef {
        id: load::SUSTAINED,
        title: "the target number of users held for a while keeps response times and errors low",
        target: load_target,
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(load::sustained),
    },
    CheckDef {
        id: load::SPIKE,
        title: "a sudden spike of users keeps response times and errors low",
        target: load_target,
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(load::spike),
    },
    CheckDef {
        id: load::AVAILABILITY,
        title: "steady-state availability under the target users, with enough requests to show it",
        target: |c: &Config| {
            format!("availability >= {}% (95% lower confidence bound)", c.targets.steady_availability_min_pct)
        },
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(load::availability),
    },
    CheckDef {
        id: "performance.database.read",
        title: "reads at every region's store are fast",
        target: |c: &Config| format!("read P95 < {} ms at every region", c.targets.db_p95_ms),
        needs: Needs { contract: false, ..Needs::NONE },
        run: measure!(database::database_read),
    },
    CheckDef {
        id: "performance.database.write-replicate",
        title: "durable writes at every region's store are fast and replicate quickly under write load",
        target: |c: &Config| {
            format!(
                "write P95 < {} ms at every region, replication P99 < {} ms under load",
                c.targets.db_p95_ms, c.targets.replication_p99_ms
            )
        },
        needs: Needs { contract: false, ..Needs::NONE },
        run: measure!(database::database_write),
    },
    CheckDef {
        id: "performance.database.pool",
        title: "requests get the store (the lab's store, or a database client's connection pool) without waiting",
        target: |c: &Config| {
            format!(
                "store acquisition P95 < {} ms at every region; on databases, >= {}% of acquisitions reuse a connection",
                c.targets.pool_acquire_p95_ms, c.targets.pool_reuse_min_pct
            )
        },
        needs: Needs { contract: false, ..Needs::NONE },
        run: measure!(database::pool),
    },
    CheckDef {
        id: "performance.cdn.hit-rate",
        title: "the CDN serves cacheable content from its edges",
        target: |c: &Config| format!("hit rate > {}% of cacheable GETs", c.targets.cdn_hit_rate_min_pct),
        needs: Needs { cdn: true, ..Needs::NONE },
        run: measure!(cdn::cdn_hit_rate),
    },
    CheckDef {
        id: "performance.cdn.edge-latency",
        title: "the CDN's edges answer quickly from every client location",
        target: |c: &Config| format!("edge P95 < {} ms", c.targets.cdn_p95_ms),
        needs: Needs { cdn: true, ..Needs::NONE },
        run: measure!(cdn::cdn_edge_latency),
    },
];

fn load_target(c: &Config) -> String {
    format!("P95 < {} ms, errors < {}%, target users reached", c.targets.load_p95_ms, c.targets.error_rate_max_pct)
}

/// Length of the CDN and store checks' load, in milliseconds.
const SHORT_LOAD_MS: u64 = 8_000;
/// Runs a plan in the load-worker child process.
pub(super) async fn run_load(ctx: &Ctx, plan: &Plan) -> Result<LoadResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the xregion executable: {e}"))?;
    xregion_load::run_in_child_streaming(&exe, plan, |w| ctx.progress.load_window(&w))
        .await
        .map_err(|e| e.to_string())
        .inspect(|_| ctx.progress.phase("done"))
}

/// A plan with the defaults every check shares.
pub(super) fn plan(
    ctx: &Ctx,
    targets: Vec<RequestSpec>,
    executor: Executor,
    thresholds: &[String],
) -> Result<Plan, String> {
    let thresholds = thresholds
        .iter()
        .map(|t| t.parse().map_err(|e| format!("threshold {t:?}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    // Every request carries the writer token (the load reads and writes); the plan reaches the load-worker
    // child on its stdin, never in its arguments.
    let mut targets = targets;
    if let Some(t) = crate::net::token(&ctx.config.deployment, crate::net::Role::Write) {
        for spec in &mut targets {
            if !spec.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
                spec.headers.push(("authorization".into(), format!("Bearer {}", t.expose())));
            }
        }
    }
    Ok(Plan {
        targets,
        executor,
        request_timeout_ms: ctx.config.deployment.request_timeout_ms.max(5_000),
        connections_max: None,
        window_ms: 1_000,
        capture_headers: vec!["x-served-by".into(), "x-cache".into()],
        thresholds,
        seed: ctx.seed,
        workers: None,
        allow_remote: ctx.config.deployment.kind == crate::config::DeploymentKind::Http,
        ca_file: ctx.config.deployment.tls.ca_file.clone(),
        phases: Vec::new(),
        no_connection_abort_ms: None,
        local_address: ctx.config.deployment.source_address,
    })
}

/// Charts of a load run: latency percentiles, throughput, users and errors over time.
pub(super) fn charts(r: &LoadResult) -> Vec<Chart> {
    let series = |name: &str, f: &dyn Fn(&xregion_load::result::Window) -> f64| Series {
        name: name.to_string(),
        points: r.windows.iter().map(|w| (w.start_s, f(w))).collect(),
    };
    vec![
        Chart {
            title: "Latency percentiles over time".into(),
            y_unit: "ms".into(),
            series: vec![
                series("p50", &|w| w.latency_ms_p50),
                series("p95", &|w| w.latency_ms_p95),
                series("p99", &|w| w.latency_ms_p99),
            ],
            markers: Vec::new(),
        },
        Chart {
            title: "Throughput over time".into(),
            y_unit: "req/s".into(),
            series: vec![series("completed", &|w| w.throughput_per_s)],
            markers: Vec::new(),
        },
        Chart {
            title: "Active users over time".into(),
            y_unit: "users".into(),
            series: vec![series("active", &|w| w.active_max as f64)],
            markers: Vec::new(),
        },
        Chart {
            title: "Errors over time".into(),
            y_unit: "errors/s".into(),
            series: vec![series("errors", &|w| w.errors as f64 * 1000.0 / r.window_ms.max(1) as f64)],
            markers: Vec::new(),
        },
    ]
}

/// Records the figures every load-based check reports.
pub(super) fn common_metrics(rb: &mut ResultBuilder, r: &LoadResult, p: &Percentiles, error_pct: f64) {
    latency_metrics(rb, r.requests, r.rps(), error_pct, p);
    rb.metric("reconnects", r.reconnects as f64);
    for (code, n) in &r.statuses {
        rb.metric(&format!("status.{code}"), *n as f64);
    }
}

/// Records the figures of a set of requests: count, rate, errors and latency percentiles.
pub(super) fn latency_metrics(rb: &mut ResultBuilder, requests: u64, rps: f64, error_pct: f64, p: &Percentiles) {
    rb.metric("requests", requests as f64)
        .metric("rps", rps)
        .metric("error_rate_pct", error_pct)
        .metric("p50_ms", p.p50)
        .metric("p95_ms", p.p95)
        .metric("p99_ms", p.p99)
        .metric("max_ms", p.max);
}

pub(super) fn error_pct(r: &LoadResult) -> f64 {
    if r.requests == 0 { 0.0 } else { 100.0 * r.errors.total() as f64 / r.requests as f64 }
}

/// Table of the thresholds the engine evaluated.
pub(super) fn threshold_table(r: &LoadResult) -> Table {
    Table {
        title: "Thresholds".into(),
        columns: vec!["threshold".into(), "measured".into(), "verdict".into()],
        rows: r
            .thresholds
            .iter()
            .map(|t| {
                let measured = match (t.measured, t.unit.as_str()) {
                    (Some(v), "ratio") => format!("{:.3}%", v * 100.0),
                    (Some(v), u) => format!("{v:.1} {u}"),
                    (None, _) => t.detail.clone().unwrap_or_else(|| "-".into()),
                };
                vec![t.threshold.clone(), measured, if t.pass { "pass" } else { "FAIL" }.into()]
            })
            .collect(),
    }
}
