//! The store checks: read and durable-write latency at every region under one open-model load of both (with
//! replication measured under it), and the time requests wait to get the store.

use super::{SHORT_LOAD_MS, charts, error_pct, latency_metrics, plan, run_load, threshold_table};
use crate::check::{Ctx, ResultBuilder};
use crate::drive::direct::{self, DirectOp, DirectSpec};
use crate::probe::ProbeError;
use std::time::Duration;
use xregion_load::plan::{Executor, RequestSpec};
use xregion_load::result::{LoadResult, Percentiles};
use xregion_model::report::{CheckResult, Table, Verdict};

/// Watched probe writes per region while the write load runs.
const REPLICATION_PROBES_PER_REGION: u64 = 600;
/// Requests per second per region for the store checks.
const DB_RATE_PER_REGION: f64 = 200.0;
/// Most requests of one stream in flight when the load goes through the region clients (databases): as many as a
/// pool holds connections, since beyond this a request would only wait for one.
const DIRECT_IN_FLIGHT_MAX: usize = crate::db::pool::POOL_MAX;

/// Whether a region is a database, which the HTTP load generator cannot reach: the load then goes through the
/// region clients (`drive::direct`), measured the same way.
fn databases(ctx: &Ctx) -> bool {
    ctx.probes.iter().any(|p| !p.capabilities().http_contract)
}

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
    /// Each region's store statistics over the run (`GET /v1/stats/store`, reset just before it): what
    /// `performance.database.pool` judges. `Err` says why there are none (a database, or a deployment without the
    /// optional route).
    store_stats: Result<Vec<(String, xregion_model::wire::StoreStats)>, StatsMissing>,
}

/// Why the shared run has no store statistics.
#[derive(Debug, Clone)]
enum StatsMissing {
    /// The deployment does not offer them: the check is skipped, with this reason.
    NotOffered(String),
    /// Reading them failed: the check is an error.
    Failed(String),
}

/// Resets every region's store statistics, so that they cover the shared run only.
async fn reset_store_stats(ctx: &Ctx) -> Result<(), StatsMissing> {
    if databases(ctx) {
        return Err(StatsMissing::NotOffered("the regions are databases".into()));
    }
    for p in &ctx.probes {
        match p.get_optional::<serde_json::Value>("/v1/stats/store?reset=true", None).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(StatsMissing::NotOffered(format!(
                    "{} does not offer GET /v1/stats/store (optional in the probe contract)",
                    p.endpoint
                )));
            }
            Err(e) => return Err(StatsMissing::Failed(e.to_string())),
        }
    }
    Ok(())
}

/// Every region's store statistics since the reset.
async fn read_store_stats(ctx: &Ctx) -> Result<Vec<(String, xregion_model::wire::StoreStats)>, StatsMissing> {
    let mut all = Vec::new();
    for p in &ctx.probes {
        match p.get_optional::<xregion_model::wire::StoreStats>("/v1/stats/store", None).await {
            Ok(Some(s)) => all.push((p.region.clone(), s)),
            Ok(None) => {
                return Err(StatsMissing::Failed(format!("{} no longer offers /v1/stats/store", p.endpoint)));
            }
            Err(e) => return Err(StatsMissing::Failed(e.to_string())),
        }
    }
    Ok(all)
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
    let mut direct = Vec::new();
    for p in &ctx.probes {
        p.put(&format!("{prefix}r/{}", p.region), "read me").await.map_err(|e| format!("could not measure: {e}"))?;
        direct.push(DirectSpec {
            name: name(false, &p.region),
            probe: p.clone(),
            op: DirectOp::Read(format!("{prefix}r/{}", p.region)),
            rate_per_s: DB_RATE_PER_REGION,
        });
        direct.push(DirectSpec {
            name: name(true, &p.region),
            probe: p.clone(),
            op: DirectOp::Write(format!("{prefix}w/{}", p.region), "durable".into()),
            rate_per_s: DB_RATE_PER_REGION,
        });
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
    ctx.progress.phase(&format!("{rate:.0} reads and durable writes/s spread over the regions, open model"));
    let probe_cfg = replication_probes(ctx);
    let probe_prefix = ctx.prefix("db-repl");
    let reset = reset_store_stats(ctx).await;
    let load = async {
        if databases(ctx) {
            let duration = Duration::from_millis(SHORT_LOAD_MS);
            direct::run(direct, duration, DIRECT_IN_FLIGHT_MAX, &thresholds).await
        } else {
            let executor =
                Executor::ConstantArrivalRate { rate_per_s: rate, duration_ms: SHORT_LOAD_MS, max_in_flight: 1024 };
            run_load(ctx, &plan(ctx, specs, executor, &thresholds)?)
                .await
                .map_err(|e| format!("the load generator failed: {e}"))
        }
    };
    let (loaded, replication) =
        tokio::join!(load, crate::suites::cross_region::measure_replication(ctx, &probe_cfg, &probe_prefix));
    let result = loaded?;
    let replication =
        replication.map(|m| crate::suites::cross_region::judge_replication(ResultBuilder::blank(), ctx, &probe_cfg, m));
    let store_stats = match reset {
        Ok(()) => read_store_stats(ctx).await,
        Err(e) => Err(e),
    };
    Ok(DbRun { result, replication, store_stats })
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
    let DbRun { result: r, replication, .. } = match run.as_ref() {
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
    let (through, durable) = if databases(ctx) {
        (
            format!(
                "through each region's database client (its own connection pool; writes go where the store accepts \
                 them), at most {DIRECT_IN_FLIGHT_MAX} of a stream in flight"
            ),
            "; every write is acknowledged by the database's commit",
        )
    } else {
        (
            "straight to each region's probe endpoint (no client latency)".to_string(),
            "; every write is acknowledged only after a durable commit",
        )
    };
    rb.note(format!(
        "open model at {DB_RATE_PER_REGION} reads and {DB_RATE_PER_REGION} durable writes per second per region at \
         once, {through}; the read and write checks judge this one run, reads under write load and writes under \
         read load; latency runs from each request's intended send time, so a stall cannot hide (coordinated \
         omission); the uncorrected P99 is shown beside it{}",
        if write { durable } else { "" }
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

/// Connection acquisition and reuse of each region's own database client under load (3 reads to 1 write), from
/// the pool's meter: the seed's "connection acquisition and efficiency".
async fn pool_of_databases(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    for p in &ctx.probes {
        if p.database().and_then(|d| d.pool_report()).is_none() {
            let c = p.capabilities();
            return rb.finish(
                Verdict::Skipped,
                format!(
                    "region {} ({}, {}) is reached through a client with no connection pool xregion can observe",
                    p.region, c.kind, p.endpoint
                ),
            );
        }
    }
    let prefix = ctx.prefix("pool");
    let mut specs = Vec::new();
    for p in &ctx.probes {
        let key = format!("{prefix}{}", p.region);
        if let Err(e) = p.put(&key, "pool").await {
            return rb.error(&e);
        }
        let (read, write) = (name(false, &p.region), name(true, &p.region));
        let rate = DB_RATE_PER_REGION / 4.0;
        specs.push(DirectSpec {
            name: write,
            probe: p.clone(),
            op: DirectOp::Write(key.clone(), "pool".into()),
            rate_per_s: rate,
        });
        specs.push(DirectSpec { name: read, probe: p.clone(), op: DirectOp::Read(key), rate_per_s: 3.0 * rate });
    }
    // Read every meter once more after the setup writes, so the figures cover this check's load only.
    for p in &ctx.probes {
        let _ = p.database().and_then(|d| d.pool_report());
    }
    ctx.progress.phase(&format!(
        "{:.0} reads and writes/s spread over the regions, through each region's connection pool",
        DB_RATE_PER_REGION * ctx.probes.len() as f64
    ));
    let r = match direct::run(specs, Duration::from_millis(SHORT_LOAD_MS), DIRECT_IN_FLIGHT_MAX, &[]).await {
        Ok(r) => r,
        Err(e) => return rb.finish(Verdict::Error, e),
    };
    let reports: Vec<_> =
        ctx.probes.iter().filter_map(|p| Some((p, p.database().and_then(|d| d.pool_report())?))).collect();
    let mut rows = Vec::new();
    let mut worst: Option<(String, f64)> = None;
    let mut least_reuse: Option<(String, f64, u64, u64)> = None;
    let mut thin = Vec::new();
    let needed = xregion_check::evidence::samples_to_estimate(0.95);
    for (p, rep) in &reports {
        let a = &rep.acquire;
        let (n, p95) = (rep.acquisitions(), a.value_ms_at(95.0));
        rb.metric(&format!("acquire_ms_p95.{}", p.region), p95);
        rb.metric(&format!("reuse_pct.{}", p.region), rep.reuse_pct());
        rb.metric(&format!("opened.{}", p.region), rep.opened as f64);
        rows.push(vec![
            p.region.clone(),
            n.to_string(),
            format!("{:.3}", a.value_ms_at(50.0)),
            format!("{p95:.3}"),
            format!("{:.3}", a.value_ms_at(99.0)),
            format!("{:.3}", a.max_ms()),
            rep.opened.to_string(),
            format!("{:.2}", rep.reuse_pct()),
            rep.max_size.to_string(),
        ]);
        if n < needed {
            thin.push(format!("{}: {n} acquisitions", p.region));
            continue;
        }
        if worst.as_ref().is_none_or(|w| p95 > w.1) {
            worst = Some((p.region.clone(), p95));
        }
        if least_reuse.as_ref().is_none_or(|w| rep.reuse_pct() < w.1) {
            least_reuse = Some((p.region.clone(), rep.reuse_pct(), rep.opened, n));
        }
    }
    rb.table(Table {
        title: "Connection pools by region, as xregion's clients measured them".into(),
        columns: [
            "region",
            "acquisitions",
            "acquire p50 (ms)",
            "acquire p95 (ms)",
            "acquire p99 (ms)",
            "acquire max (ms)",
            "connections opened",
            "reuse %",
            "pool size",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    });
    let errors = error_pct(&r);
    rb.metric("requests", r.requests as f64).metric("error_rate_pct", errors);
    rb.note(format!(
        "open model at {DB_RATE_PER_REGION} requests/s per region (3 reads to 1 write) through each region's \
         database client; acquisition is the time an operation waits for a pooled connection (opening one when \
         none is idle), reuse the share of acquisitions that got an open connection; a region's pool also carries \
         the writes other regions send to it when it is the one that accepts writes"
    ));
    let (Some((region, p95)), Some((reuse_region, reuse, opened, n))) = (worst, least_reuse) else {
        return rb.finish(
            Verdict::Error,
            format!("not enough evidence: {} (at least {needed} per region for a P95)", thin.join(", ")),
        );
    };
    let (limit, reuse_min) = (ctx.config.targets.pool_acquire_p95_ms, ctx.config.targets.pool_reuse_min_pct);
    rb.metric("acquire_ms_p95", p95).metric("reuse_pct_min", reuse);
    rb.measured(format!("worst acquisition P95 {p95:.2} ms ({region}), least reuse {reuse:.1}% ({reuse_region})"));
    if p95 >= limit {
        rb.finish(Verdict::Fail, format!("{region}: connection acquisition P95 {p95:.2} ms is not below {limit} ms"))
    } else if reuse < reuse_min {
        rb.finish(
            Verdict::Fail,
            format!(
                "{reuse_region}: the pool opened {opened} connections for {n} acquisitions, reusing {reuse:.1}% \
                 (at least {reuse_min}% wanted): connections are being dropped and reopened"
            ),
        )
    } else if errors >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{errors:.2}% of requests failed"))
    } else if !thin.is_empty() {
        rb.finish(
            Verdict::Error,
            format!("not enough evidence: {} (at least {needed} per region for a P95)", thin.join(", ")),
        )
    } else {
        rb.finish(
            Verdict::Pass,
            format!(
                "worst connection acquisition P95 {p95:.2} ms ({region}), least reuse {reuse:.1}% ({reuse_region}) \
                 over {} requests",
                r.requests
            ),
        )
    }
}

pub(super) async fn pool(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    if databases(ctx) {
        return pool_of_databases(rb, ctx).await;
    }
    let (run, reused) = ctx.shared.get_or_compute("db-load", db_run(ctx)).await;
    if reused {
        ctx.progress.phase("judging this run's earlier store load");
    }
    let (r, all_stats) = match run.as_ref() {
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
        Ok(DbRun { store_stats: Err(StatsMissing::NotOffered(why)), .. }) => {
            return rb.finish(Verdict::Skipped, why.clone());
        }
        Ok(DbRun { store_stats: Err(StatsMissing::Failed(why)), .. }) => {
            return rb.finish(Verdict::Error, format!("could not read the store statistics: {why}"));
        }
        Ok(DbRun { result, store_stats: Ok(stats), .. }) => (result, stats),
    };
    let mut rows = Vec::new();
    // The worst P95: (region, what, P95). Where a region reports writes' and reads' waits apart, each is judged
    // on its own: reads that never wait outnumber writes (replication watchers poll), so a P95 over all waits
    // would hide writes that wait long.
    let mut worst: Option<(String, &str, f64)> = None;
    let cell = |l: Option<&xregion_model::wire::LatencySummary>| {
        l.map_or_else(|| "-".to_string(), |l| format!("{:.3}", l.p95))
    };
    for (region, stats) in all_stats {
        let a = &stats.acquire_ms;
        let kinds: Vec<(&str, &xregion_model::wire::LatencySummary)> =
            match (&stats.write_acquire_ms, &stats.read_acquire_ms) {
                (Some(w), Some(rd)) => vec![("writes", w), ("reads", rd)],
                _ => vec![("all requests", a)],
            };
        let mut region_worst: Option<f64> = None;
        for (what, l) in kinds.into_iter().filter(|(_, l)| l.count > 0) {
            region_worst = Some(region_worst.map_or(l.p95, |w: f64| w.max(l.p95)));
            if worst.as_ref().is_none_or(|w| l.p95 > w.2) {
                worst = Some((region.clone(), what, l.p95));
            }
        }
        if let Some(p95) = region_worst {
            rb.metric(&format!("acquire_ms_p95.{region}"), p95);
        }
        rows.push(vec![
            region.clone(),
            a.count.to_string(),
            format!("{:.3}", a.p50),
            format!("{:.3}", a.p95),
            cell(stats.write_acquire_ms.as_ref()),
            cell(stats.read_acquire_ms.as_ref()),
            format!("{:.3}", a.p99),
            format!("{:.3}", a.max),
            format!("{:.3}", stats.commit_ms.p95),
            format!("{:.3}", stats.read_ms.p95),
        ]);
    }
    rb.table(Table {
        title: "Store acquisition by region (ms), as each region measured it".into(),
        columns: vec![
            "region".into(),
            "samples".into(),
            "acquire p50".into(),
            "acquire p95".into(),
            "writes' acquire p95".into(),
            "reads' acquire p95".into(),
            "acquire p99".into(),
            "acquire max".into(),
            "commit p95".into(),
            "read p95".into(),
        ],
        rows,
    });
    let errors = error_pct(r);
    rb.metric("requests", r.requests as f64).metric("error_rate_pct", errors);
    rb.note(format!(
        "the store checks' run: open model at {DB_RATE_PER_REGION} reads and {DB_RATE_PER_REGION} durable writes/s \
         per region, straight to each region, with replication probes; acquisition is the time a request waits to \
         get the store (the group-commit queue for writes, the start of a read transaction for reads), reported by \
         the region itself through GET /v1/stats/store, writes' and reads' waits judged apart where the region reports \
         them apart"
    ));
    let Some((region, what, p95)) = worst else {
        return rb.finish(Verdict::Error, "no region reported a store acquisition");
    };
    let limit = ctx.config.targets.pool_acquire_p95_ms;
    rb.metric("acquire_ms_p95", p95).measured(format!("worst P95 {p95:.2} ms ({region}, {what})"));
    if p95 >= limit {
        rb.finish(
            Verdict::Fail,
            format!("{region}: store acquisition P95 of {what} {p95:.2} ms is not below {limit} ms"),
        )
    } else if errors >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{errors:.2}% of requests failed"))
    } else {
        rb.finish(
            Verdict::Pass,
            format!("worst store acquisition P95 {p95:.2} ms ({region}, {what}) over {} requests", r.requests),
        )
    }
}
