//! The store checks: read and durable-write latency at every region under one open-model load of both (with
//! replication measured under it), and the time requests wait to get the store.

use super::{SHORT_LOAD_MS, charts, error_pct, latency_metrics, plan, run_load, threshold_table};
use crate::check::{Ctx, ResultBuilder};
use crate::probe::ProbeError;
use xregion_load::plan::{Executor, RequestSpec};
use xregion_load::result::{LoadResult, Percentiles};
use xregion_model::report::{CheckResult, Table, Verdict};

/// Watched probe writes per region while the write load runs.
const REPLICATION_PROBES_PER_REGION: u64 = 600;
/// Requests per second per region for the store checks.
const DB_RATE_PER_REGION: f64 = 200.0;

pub(super) async fn database_read(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    database(rb, ctx, false).await
}

pub(super) async fn database_write(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    database(rb, ctx, true).await
}

/// The store checks' shared run: reads and durable writes at every region at once, with replication watched.
struct DbRun {
    /// What the generator measured; requests are named `read@REGION` and `write@REGION`.
    result: LoadResult,
    /// Replication under the write load, judged as the write-replicate check would judge it.
    replication: Result<CheckResult, ProbeError>,
}

/// Name of the requests of `region` of one kind in the shared run.
fn name(write: bool, region: &str) -> String {
    format!("{}@{region}", if write { "write" } else { "read" })
}

/// Runs the store checks' shared load: `DB_RATE_PER_REGION` reads and as many durable writes per second at every
/// region, open model, while probe writes measure replication as clients see it. Both store checks judge this
/// one run: reads are measured under write load, writes under read load.
async fn db_run(ctx: &Ctx) -> Result<DbRun, String> {
    let prefix = ctx.prefix("db");
    let mut specs = Vec::new();
    for p in &ctx.probes {
        p.put(&format!("{prefix}r/{}", p.region), "read me").await.map_err(|e| format!("could not measure: {e}"))?;
        specs.push(RequestSpec {
            name: name(false, &p.region),
            url: format!("{}/v1/kv/{prefix}r/{}", p.endpoint, p.region),
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            weight: 1,
        });
        specs.push(RequestSpec {
            name: name(true, &p.region),
            url: format!("{}/v1/kv/{prefix}w/{}", p.endpoint, p.region),
            method: "PUT".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some("{\"value\":\"durable\"}".to_string()),
            weight: 1,
        });
    }
    let limit = ctx.config.targets.db_p95_ms;
    let thresholds: Vec<String> = specs.iter().map(|s| format!("{}: p95 < {limit}ms", s.name)).collect();
    let rate = 2.0 * DB_RATE_PER_REGION * ctx.probes.len() as f64;
    let plan = plan(
        ctx,
        specs,
        Executor::ConstantArrivalRate { rate_per_s: rate, duration_ms: SHORT_LOAD_MS, max_in_flight: 1024 },
        &thresholds,
    )?;
    ctx.progress.phase(&format!("{rate:.0} reads and durable writes/s spread over the regions, open model"));
    let probe_cfg = replication_probes(ctx);
    let probe_prefix = ctx.prefix("db-repl");
    let (loaded, replication) = tokio::join!(
        run_load(ctx, &plan),
        crate::suites::cross_region::measure_replication(ctx, &probe_cfg, &probe_prefix)
    );
    let result = loaded.map_err(|e| format!("the load generator failed: {e}"))?;
    let replication =
        replication.map(|m| crate::suites::cross_region::judge_replication(ResultBuilder::blank(), ctx, &probe_cfg, m));
    Ok(DbRun { result, replication })
}

/// The replication probes of the shared run: `REPLICATION_PROBES_PER_REGION` writes per region spread over it.
fn replication_probes(ctx: &Ctx) -> crate::config::WriteReplicate {
    crate::config::WriteReplicate {
        writes_per_region: REPLICATION_PROBES_PER_REGION,
        rate_per_s: REPLICATION_PROBES_PER_REGION as f64 * 1000.0 / SHORT_LOAD_MS as f64,
        background_writes_per_s: 0.0,
        ..ctx.config.checks.write_replicate.clone()
    }
}

async fn database(mut rb: ResultBuilder, ctx: &Ctx, write: bool) -> CheckResult {
    let (run, reused) = ctx.shared.get_or_compute("db-load", db_run(ctx)).await;
    if reused {
        ctx.progress.phase("judging this run's earlier store load");
    }
    let DbRun { result: r, replication } = match run.as_ref() {
        Ok(x) => x,
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
    };
    let what = if write { "durable writes" } else { "reads" };
    let names: Vec<String> = ctx.probes.iter().map(|p| name(write, &p.region)).collect();
    let mut all = xregion_load::result::new_histogram();
    let (mut requests, mut errors) = (0u64, 0u64);
    for n in &names {
        if let Some(s) = r.per_request.get(n) {
            let _ = all.add(&s.latency.0);
            requests += s.count;
            errors += s.errors;
        }
    }
    let p = Percentiles::of(&all);
    let error_pct = if requests == 0 { 0.0 } else { 100.0 * errors as f64 / requests as f64 };
    latency_metrics(&mut rb, requests, requests as f64 * 1000.0 / SHORT_LOAD_MS as f64, error_pct, &p);
    rb.metric("run_requests", r.requests as f64);
    let mut replication_problem = None;
    if write {
        let judged = match replication {
            Ok(j) => j,
            Err(e) => return rb.error(e),
        };
        for (k, v) in &judged.metrics {
            rb.metric(&format!("replication_{k}"), *v);
        }
        for t in &judged.tables {
            rb.table(t.clone());
        }
        for d in &judged.distributions {
            rb.distribution(d.clone());
        }
        rb.note(format!("replication under load: {}", judged.summary));
        if judged.verdict != Verdict::Pass {
            replication_problem = Some((judged.verdict, judged.summary.clone()));
        }
    }
    let mut worst: Option<(String, f64)> = None;
    let mut rows = Vec::new();
    for (probe, n) in ctx.probes.iter().zip(&names) {
        let (Some(c), Some(u)) = (r.percentiles(Some(n)), r.percentiles_uncorrected(Some(n))) else {
            continue;
        };
        rb.metric(&format!("p95_ms.{}", probe.region), c.p95);
        rows.push(vec![
            probe.region.clone(),
            c.count.to_string(),
            format!("{:.2}", c.p50),
            format!("{:.2}", c.p95),
            format!("{:.2}", c.p99),
            format!("{:.2}", u.p99),
            format!("{:.2}", c.max),
        ]);
        if worst.as_ref().is_none_or(|w| c.p95 > w.1) {
            worst = Some((probe.region.clone(), c.p95));
        }
        if let Some(d) = r.to_distribution(n) {
            rb.distribution(d);
        }
    }
    rb.table(Table {
        title: format!("{} latency by region (ms)", if write { "Write" } else { "Read" }),
        columns: vec![
            "region".into(),
            "requests".into(),
            "p50".into(),
            "p95".into(),
            "p99".into(),
            "p99 uncorrected".into(),
            "max".into(),
        ],
        rows,
    });
    let mine = |t: &&xregion_load::result::ThresholdResult| names.iter().any(|n| t.threshold.starts_with(n.as_str()));
    let mut thresholds = threshold_table(r);
    thresholds.rows.retain(|row| names.iter().any(|n| row.first().is_some_and(|c| c.starts_with(n.as_str()))));
    rb.table(thresholds);
    for c in charts(r).into_iter().take(2) {
        rb.chart(c);
    }
    rb.note(format!(
        "open model at {DB_RATE_PER_REGION} reads and {DB_RATE_PER_REGION} durable writes per second per region at \
         once, straight to each region's probe endpoint (no client latency); the read and write checks judge this one \
         run, reads under write load and writes under read load; latency runs from each request's intended send \
         time, so a stall cannot hide (coordinated omission); the uncorrected P99 is shown beside it{}",
        if write { "; every write is acknowledged only after a durable commit" } else { "" }
    ));
    rb.metric("late", r.late as f64).metric("dropped", r.dropped as f64);
    let (region, p95) = worst.unwrap_or_default();
    rb.measured(format!("worst P95 {p95:.1} ms ({region})"));
    let failed: Vec<String> =
        r.thresholds.iter().filter(mine).filter(|t| !t.pass).map(|t| t.threshold.clone()).collect();
    let needed = xregion_check::evidence::samples_to_estimate(0.95) * ctx.probes.len() as u64;
    if requests < needed {
        rb.finish(Verdict::Error, format!("not enough evidence ({requests} of {needed} {what} for a P95 per region)"))
    } else if !failed.is_empty() {
        rb.finish(Verdict::Fail, format!("{} failed (worst P95 {p95:.1} ms at {region})", failed.join(", ")))
    } else if let Some((verdict, problem)) = replication_problem {
        // A replication figure too thin to judge is an error, not a failure.
        rb.finish(verdict, format!("replication under write load: {problem}"))
    } else if error_pct >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{error_pct:.2}% of {what} failed"))
    } else {
        rb.finish(Verdict::Pass, format!("worst P95 {p95:.1} ms ({region}) over {requests} {what}"))
    }
}

pub(super) async fn pool(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    // Reset the counters, so the figures cover this check's load only.
    for p in &ctx.probes {
        match p.get_optional::<serde_json::Value>("/v1/stats/store?reset=true", None).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return rb.finish(
                    Verdict::Skipped,
                    format!("{} does not offer GET /v1/stats/store (optional in the probe contract)", p.endpoint),
                );
            }
            Err(e) => return rb.error(&e),
        }
    }
    let prefix = ctx.prefix("pool");
    let mut specs = Vec::new();
    for p in &ctx.probes {
        specs.push(RequestSpec {
            name: format!("write@{}", p.region),
            url: format!("{}/v1/kv/{prefix}{}", p.endpoint, p.region),
            method: "PUT".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some("{\"value\":\"pool\"}".into()),
            weight: 1,
        });
        specs.push(RequestSpec {
            name: format!("read@{}", p.region),
            url: format!("{}/v1/kv/{prefix}{}", p.endpoint, p.region),
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            weight: 3,
        });
    }
    let rate = DB_RATE_PER_REGION * ctx.probes.len() as f64;
    let plan = match plan(
        ctx,
        specs,
        Executor::ConstantArrivalRate { rate_per_s: rate, duration_ms: SHORT_LOAD_MS, max_in_flight: 512 },
        &[],
    ) {
        Ok(p) => p,
        Err(e) => return rb.finish(Verdict::Error, e),
    };
    ctx.progress.phase(&format!("{rate:.0} reads and writes/s spread over the regions"));
    let r = match run_load(ctx, &plan).await {
        Ok(r) => r,
        Err(e) => return rb.finish(Verdict::Error, format!("the load generator failed: {e}")),
    };
    let mut rows = Vec::new();
    let mut worst: Option<(String, f64)> = None;
    for p in &ctx.probes {
        let stats = match p.get_optional::<xregion_model::wire::StoreStats>("/v1/stats/store", None).await {
            Ok(Some(s)) => s,
            Ok(None) => return rb.finish(Verdict::Error, format!("{} stopped offering /v1/stats/store", p.endpoint)),
            Err(e) => return rb.error(&e),
        };
        let a = &stats.acquire_ms;
        rb.metric(&format!("acquire_ms_p95.{}", p.region), a.p95);
        rows.push(vec![
            p.region.clone(),
            a.count.to_string(),
            format!("{:.3}", a.p50),
            format!("{:.3}", a.p95),
            format!("{:.3}", a.p99),
            format!("{:.3}", a.max),
            format!("{:.3}", stats.commit_ms.p95),
            format!("{:.3}", stats.read_ms.p95),
        ]);
        if a.count > 0 && worst.as_ref().is_none_or(|w| a.p95 > w.1) {
            worst = Some((p.region.clone(), a.p95));
        }
    }
    rb.table(Table {
        title: "Store acquisition by region (ms), as each region measured it".into(),
        columns: vec![
            "region".into(),
            "samples".into(),
            "acquire p50".into(),
            "acquire p95".into(),
            "acquire p99".into(),
            "acquire max".into(),
            "commit p95".into(),
            "read p95".into(),
        ],
        rows,
    });
    let errors = error_pct(&r);
    rb.metric("requests", r.requests as f64).metric("error_rate_pct", errors);
    rb.note(format!(
        "open model at {DB_RATE_PER_REGION} requests/s per region (3 reads to 1 durable write), straight to each \
         region; acquisition is the time a request waits to get the store (the group-commit queue for writes, the \
         start of a read transaction for reads), reported by the region itself through GET /v1/stats/store"
    ));
    let Some((region, p95)) = worst else {
        return rb.finish(Verdict::Error, "no region reported a store acquisition");
    };
    let limit = ctx.config.targets.pool_acquire_p95_ms;
    rb.metric("acquire_ms_p95", p95).measured(format!("worst P95 {p95:.2} ms ({region})"));
    if p95 >= limit {
        rb.finish(Verdict::Fail, format!("{region}: store acquisition P95 {p95:.2} ms is not below {limit} ms"))
    } else if errors >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{errors:.2}% of requests failed"))
    } else {
        rb.finish(
            Verdict::Pass,
            format!("worst store acquisition P95 {p95:.2} ms ({region}) over {} requests", r.requests),
        )
    }
}
