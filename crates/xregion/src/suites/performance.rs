//! The `performance` suite: concurrent users through the global router, store latency at each region, and the
//! CDN's hit rate and edge latency.
//!
//! Load comes from `xregion-load`, run in a child process (`xregion load-worker`) so that the generator's
//! connections never share this process's descriptor budget. Verdicts come from thresholds evaluated by the
//! engine on the recorded histograms, plus the figures the specification names (users reached, hit rate).

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder};
use crate::config::{Config, Profile, Traffic};
use crate::measure;
use std::collections::BTreeMap;
use xregion_load::plan::{Executor, Plan, RequestSpec, Stage};
use xregion_load::result::{LoadResult, Percentiles};
use xregion_model::report::{Chart, CheckResult, Series, Table, Verdict};

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "performance.load.ramp-up",
        title: "users ramping up to the target keep response times and errors low",
        target: load_target,
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(ramp_up),
    },
    CheckDef {
        id: "performance.load.sustained",
        title: "the target number of users held for a while keeps response times and errors low",
        target: load_target,
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(sustained),
    },
    CheckDef {
        id: "performance.load.spike",
        title: "a sudden spike of users keeps response times and errors low",
        target: load_target,
        needs: Needs { records: &["latency"], ..Needs::NONE },
        run: measure!(spike),
    },
    CheckDef {
        id: "performance.database.read",
        title: "reads at every region's store are fast",
        target: |c: &Config| format!("read P95 < {} ms at every region", c.targets.db_p95_ms),
        needs: Needs::NONE,
        run: measure!(database_read),
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
        needs: Needs::NONE,
        run: measure!(database_write),
    },
    CheckDef {
        id: "performance.database.pool",
        title: "requests get the store (the lab's connection pool) without waiting under load",
        target: |c: &Config| format!("store acquisition P95 < {} ms at every region", c.targets.pool_acquire_p95_ms),
        needs: Needs::NONE,
        run: measure!(pool),
    },
    CheckDef {
        id: "performance.cdn.hit-rate",
        title: "the CDN serves cacheable content from its edges",
        target: |c: &Config| format!("hit rate > {}% of cacheable GETs", c.targets.cdn_hit_rate_min_pct),
        needs: Needs { cdn: true, ..Needs::NONE },
        run: measure!(cdn_hit_rate),
    },
    CheckDef {
        id: "performance.cdn.edge-latency",
        title: "the CDN's edges answer quickly from every client location",
        target: |c: &Config| format!("edge P95 < {} ms", c.targets.cdn_p95_ms),
        needs: Needs { cdn: true, ..Needs::NONE },
        run: measure!(cdn_edge_latency),
    },
];

fn load_target(c: &Config) -> String {
    format!("P95 < {} ms, errors < {}%, target users reached", c.targets.load_p95_ms, c.targets.error_rate_max_pct)
}

/// Think time of a virtual user between iterations, as in the specification's user model.
const THINK_TIME_MS: u64 = 1_000;
/// Users of the quick profile.
const QUICK_USERS: u32 = 2_000;
/// Catalogue items the CDN checks request, with Zipf-like popularity.
const CDN_ITEMS: usize = 40;
/// Virtual users of the CDN checks.
const CDN_VUS: u32 = 32;
/// Length of the CDN and store checks' load, in milliseconds.
const SHORT_LOAD_MS: u64 = 8_000;
/// Watched probe writes per region while the write load runs.
const REPLICATION_PROBES_PER_REGION: u64 = 40;
/// Requests per second per region for the store checks.
const DB_RATE_PER_REGION: f64 = 200.0;

/// The shape of a load check's users over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// From 0 to the target users, then a short hold.
    RampUp,
    /// A short ramp, then the target users held.
    Sustained,
    /// A tenth of the users, a sudden jump to all of them, and back.
    Spike,
}

async fn ramp_up(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    load(rb, ctx, Shape::RampUp).await
}

async fn sustained(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    load(rb, ctx, Shape::Sustained).await
}

async fn spike(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    load(rb, ctx, Shape::Spike).await
}

async fn database_read(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    database(rb, ctx, false).await
}

async fn database_write(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    database(rb, ctx, true).await
}

async fn cdn_hit_rate(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    cdn(rb, ctx, true).await
}

async fn cdn_edge_latency(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    cdn(rb, ctx, false).await
}

/// Runs a plan in the load-worker child process.
async fn run_load(ctx: &Ctx, plan: &Plan) -> Result<LoadResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the xregion executable: {e}"))?;
    xregion_load::run_in_child(&exe, plan).await.map_err(|e| e.to_string()).inspect(|_| ctx.progress.phase("done"))
}

/// The users, stages and duration of a load check under a profile.
fn stages(shape: Shape, profile: Profile, users: u32) -> (u32, Vec<Stage>) {
    let s = |secs: f64, target: u32| Stage { duration_ms: (secs * 1000.0) as u64, target: target as f64 };
    let base = (users / 10).max(1);
    match (shape, profile) {
        (Shape::RampUp, Profile::Quick) => (0, vec![s(30.0, users), s(5.0, users)]),
        (Shape::Sustained, Profile::Quick) => (0, vec![s(5.0, users), s(30.0, users)]),
        (Shape::Spike, Profile::Quick) => {
            (base, vec![s(5.0, base), s(2.0, users), s(8.0, users), s(2.0, base), s(5.0, base)])
        }
        (Shape::RampUp, Profile::Spec) => (0, vec![s(300.0, users), s(10.0, users)]),
        (Shape::Sustained, Profile::Spec) => (0, vec![s(60.0, users), s(600.0, users)]),
        (Shape::Spike, Profile::Spec) => {
            (base, vec![s(30.0, base), s(10.0, users), s(60.0, users), s(10.0, base), s(30.0, base)])
        }
    }
}

/// The request mix of a user: reads of a hot key, writes of the user's location key, and catalogue reads, from
/// every client location through the latency record.
fn user_mix(traffic: &Traffic, base: &str, prefix: &str) -> Vec<RequestSpec> {
    let mut specs = Vec::new();
    let locations: Vec<&String> = traffic.nearest.keys().collect();
    for loc in locations {
        let h = vec![(traffic.location_header.clone(), loc.clone())];
        specs.push(RequestSpec {
            name: format!("read@{loc}"),
            url: format!("{base}/v1/kv/{prefix}hot"),
            method: "GET".into(),
            headers: h.clone(),
            body: None,
            weight: 6,
        });
        let mut wh = h.clone();
        wh.push(("content-type".into(), "application/json".into()));
        specs.push(RequestSpec {
            name: format!("write@{loc}"),
            url: format!("{base}/v1/kv/{prefix}user-{loc}"),
            method: "PUT".into(),
            headers: wh,
            body: Some(format!("{{\"value\":\"load from {loc}\"}}")),
            weight: 2,
        });
        specs.push(RequestSpec {
            name: format!("catalog@{loc}"),
            url: format!("{base}/v1/catalog/item-1"),
            method: "GET".into(),
            headers: h,
            body: None,
            weight: 2,
        });
    }
    specs
}

/// A plan with the defaults every check shares.
fn plan(ctx: &Ctx, targets: Vec<RequestSpec>, executor: Executor, thresholds: &[String]) -> Result<Plan, String> {
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
    })
}

/// Charts of a load run: latency percentiles, throughput, users and errors over time.
fn charts(r: &LoadResult) -> Vec<Chart> {
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
fn common_metrics(rb: &mut ResultBuilder, r: &LoadResult, p: &Percentiles, error_pct: f64) {
    rb.metric("requests", r.requests as f64)
        .metric("rps", r.rps())
        .metric("error_rate_pct", error_pct)
        .metric("p50_ms", p.p50)
        .metric("p95_ms", p.p95)
        .metric("p99_ms", p.p99)
        .metric("max_ms", p.max)
        .metric("reconnects", r.reconnects as f64);
    for (code, n) in &r.statuses {
        rb.metric(&format!("status.{code}"), *n as f64);
    }
}

fn error_pct(r: &LoadResult) -> f64 {
    if r.requests == 0 { 0.0 } else { 100.0 * r.errors.total() as f64 / r.requests as f64 }
}

/// Table of the thresholds the engine evaluated.
fn threshold_table(r: &LoadResult) -> Table {
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

async fn load(mut rb: ResultBuilder, ctx: &Ctx, shape: Shape) -> CheckResult {
    let Some(traffic) = ctx.traffic.as_ref() else {
        return rb.finish(Verdict::Skipped, "no routing records configured: set [deployment.traffic]");
    };
    let Some(base) = traffic.records.get("latency") else {
        return rb.finish(Verdict::Skipped, "no `latency` routing record: set [deployment.traffic] records.latency");
    };
    if traffic.nearest.is_empty() {
        return rb.finish(Verdict::Skipped, "no client locations: set [deployment.traffic.nearest]");
    }
    let users = ctx.config.checks.load.users.unwrap_or(match ctx.profile {
        Profile::Quick => QUICK_USERS.min(ctx.config.targets.max_concurrent_users as u32).max(1),
        Profile::Spec => ctx.config.targets.max_concurrent_users as u32,
    });
    let prefix = ctx.prefix("load");
    // Seed the hot key in every region so reads find it wherever they land.
    for p in &ctx.probes {
        if let Err(e) = p.put(&format!("{prefix}hot"), "hot value").await {
            return rb.error(&e);
        }
    }
    let (start_vus, mut stages) = stages(shape, ctx.profile, users);
    for s in &mut stages {
        s.duration_ms = ((s.duration_ms as f64 * ctx.config.checks.load.time_scale) as u64).max(1);
    }
    let t = &ctx.config.targets;
    let thresholds = [format!("p95 < {}ms", t.load_p95_ms), format!("error_rate < {}%", t.error_rate_max_pct)];
    let plan = match plan(
        ctx,
        user_mix(traffic, base, &prefix),
        Executor::RampingVus { start_vus, stages: stages.clone(), think_time_ms: THINK_TIME_MS },
        &thresholds,
    ) {
        Ok(p) => p,
        Err(e) => return rb.finish(Verdict::Error, e),
    };
    let secs: f64 = stages.iter().map(|s| s.duration_ms as f64 / 1000.0).sum();
    ctx.progress.phase(&format!("{users} users ({:?} profile) for {secs:.0} s through {base}", ctx.profile));
    let r = match run_load(ctx, &plan).await {
        Ok(r) => r,
        Err(e) => return rb.finish(Verdict::Error, format!("the load generator failed: {e}")),
    };
    let p = r.percentiles(None).unwrap_or_default();
    let errors = error_pct(&r);
    common_metrics(&mut rb, &r, &p, errors);
    rb.metric("users_target", users as f64).metric("users_max", r.vus_max as f64);
    if let Some(rss) = r.rss_bytes_peak {
        rb.metric("generator_rss_mb_peak", rss as f64 / 1_048_576.0)
            .metric("generator_rss_kb_per_user", rss as f64 / 1024.0 / f64::from(r.vus_max.max(1)));
    }
    rb.table(threshold_table(&r));
    for c in charts(&r) {
        rb.chart(c);
    }
    rb.distribution(xregion_load::result::distribution("all requests", &r.latency_all()));
    rb.note(format!(
        "closed model: each virtual user has its own keep-alive connection and waits {THINK_TIME_MS} ms between \
         requests; the mix per user is 60% reads of a hot key, 20% durable writes, 20% catalogue reads, from {} \
         client locations through the latency record; stages: {}",
        traffic.nearest.len(),
        stages
            .iter()
            .map(|s| format!("{} users over {} s", s.target, s.duration_ms / 1000))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    rb.note("the load generator runs in its own process (xregion load-worker), separate from the lab");
    rb.measured(format!("P95 {:.0} ms, {errors:.2}% errors, {} users", p.p95, r.vus_max));
    let mut problems: Vec<String> =
        r.thresholds.iter().filter(|t| !t.pass).map(|t| format!("threshold `{}` failed", t.threshold)).collect();
    if r.vus_max < users {
        problems.push(format!("only {} of {users} users were reached", r.vus_max));
    }
    if problems.is_empty() {
        rb.finish(
            Verdict::Pass,
            format!(
                "{} users: P95 {:.0} ms, {errors:.2}% errors over {} requests ({:.0} req/s)",
                r.vus_max,
                p.p95,
                r.requests,
                r.rps()
            ),
        )
    } else {
        rb.finish(Verdict::Fail, format!("{} (P95 {:.0} ms, {errors:.2}% errors)", problems.join("; "), p.p95))
    }
}

async fn database(mut rb: ResultBuilder, ctx: &Ctx, write: bool) -> CheckResult {
    let prefix = ctx.prefix(if write { "dbw" } else { "dbr" });
    let mut specs = Vec::new();
    for p in &ctx.probes {
        if !write && let Err(e) = p.put(&format!("{prefix}{}", p.region), "read me").await {
            return rb.error(&e);
        }
        specs.push(RequestSpec {
            name: p.region.clone(),
            url: format!("{}/v1/kv/{prefix}{}", p.endpoint, p.region),
            method: if write { "PUT" } else { "GET" }.into(),
            headers: if write { vec![("content-type".into(), "application/json".into())] } else { Vec::new() },
            body: write.then(|| "{\"value\":\"durable\"}".to_string()),
            weight: 1,
        });
    }
    let limit = ctx.config.targets.db_p95_ms;
    let thresholds: Vec<String> = ctx.probes.iter().map(|p| format!("{}: p95 < {limit}ms", p.region)).collect();
    let rate = DB_RATE_PER_REGION * ctx.probes.len() as f64;
    let plan = match plan(
        ctx,
        specs,
        Executor::ConstantArrivalRate { rate_per_s: rate, duration_ms: SHORT_LOAD_MS, max_in_flight: 512 },
        &thresholds,
    ) {
        Ok(p) => p,
        Err(e) => return rb.finish(Verdict::Error, e),
    };
    let what = if write { "durable writes" } else { "reads" };
    ctx.progress.phase(&format!("{rate:.0} {what}/s spread over the regions, open model"));
    // Under write load, probe writes watched in every other region measure replication as clients see it.
    let probe_cfg = crate::config::WriteReplicate {
        writes_per_region: REPLICATION_PROBES_PER_REGION,
        rate_per_s: REPLICATION_PROBES_PER_REGION as f64 * 1000.0 / SHORT_LOAD_MS as f64,
        background_writes_per_s: 0.0,
        ..ctx.config.checks.write_replicate.clone()
    };
    let replication_prefix = ctx.prefix("dbw-repl");
    let (loaded, replication) = if write {
        let (l, m) = tokio::join!(
            run_load(ctx, &plan),
            crate::suites::cross_region::measure_replication(ctx, &probe_cfg, &replication_prefix)
        );
        (l, Some(m))
    } else {
        (run_load(ctx, &plan).await, None)
    };
    let r = match loaded {
        Ok(r) => r,
        Err(e) => return rb.finish(Verdict::Error, format!("the load generator failed: {e}")),
    };
    let p = r.percentiles(None).unwrap_or_default();
    let errors = error_pct(&r);
    common_metrics(&mut rb, &r, &p, errors);
    let mut replication_problem = None;
    if let Some(m) = replication {
        let m = match m {
            Ok(m) => m,
            Err(e) => return rb.error(&e),
        };
        let judged = crate::suites::cross_region::judge_replication(ResultBuilder::blank(), ctx, &probe_cfg, m);
        for (k, v) in &judged.metrics {
            rb.metric(&format!("replication_{k}"), *v);
        }
        for t in judged.tables {
            rb.table(t);
        }
        for d in judged.distributions {
            rb.distribution(d);
        }
        rb.note(format!("replication under load: {}", judged.summary));
        if judged.verdict != Verdict::Pass {
            replication_problem = Some(judged.summary);
        }
    }
    let mut worst: Option<(String, f64)> = None;
    let mut rows = Vec::new();
    for probe in &ctx.probes {
        let (Some(c), Some(u)) = (r.percentiles(Some(&probe.region)), r.percentiles_uncorrected(Some(&probe.region)))
        else {
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
        if let Some(d) = r.to_distribution(&probe.region) {
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
    rb.table(threshold_table(&r));
    for c in charts(&r).into_iter().take(2) {
        rb.chart(c);
    }
    rb.note(format!(
        "open model at {DB_RATE_PER_REGION} requests/s per region, straight to each region's probe endpoint (no client \
         latency); latency runs from each request's intended send time, so a stall cannot hide (coordinated \
         omission); the uncorrected P99 is shown beside it{}",
        if write { "; every write is acknowledged only after a durable commit" } else { "" }
    ));
    rb.metric("late", r.late as f64).metric("dropped", r.dropped as f64);
    let (region, p95) = worst.unwrap_or_default();
    rb.measured(format!("worst P95 {p95:.1} ms ({region})"));
    let failed: Vec<String> = r.thresholds.iter().filter(|t| !t.pass).map(|t| t.threshold.clone()).collect();
    if r.requests == 0 {
        rb.finish(Verdict::Error, "no request completed")
    } else if !failed.is_empty() {
        rb.finish(Verdict::Fail, format!("{} failed (worst P95 {p95:.1} ms at {region})", failed.join(", ")))
    } else if let Some(problem) = replication_problem {
        rb.finish(Verdict::Fail, format!("replication under write load: {problem}"))
    } else if errors >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{errors:.2}% of requests failed"))
    } else {
        rb.finish(Verdict::Pass, format!("worst P95 {p95:.1} ms ({region}) over {} {what}", r.requests))
    }
}

/// The CDN checks' load: `CDN_VUS` users reading catalogue items through the CDN from every client location. Both
/// CDN checks judge one run of it (the edge P95 threshold is evaluated on every run; the hit-rate check ignores it).
async fn cdn_load(ctx: &Ctx) -> Result<LoadResult, String> {
    let traffic = ctx.traffic();
    let cdn = traffic.cdn.as_deref().unwrap_or_default();
    // Zipf-like popularity: item i gets weight ~ 1/i.
    let mut specs = Vec::new();
    for loc in traffic.nearest.keys() {
        for i in 1..=CDN_ITEMS {
            specs.push(RequestSpec {
                name: format!("{loc}/item-{i}"),
                url: format!("{cdn}/v1/catalog/item-{i}"),
                method: "GET".into(),
                headers: vec![(traffic.location_header.clone(), loc.clone())],
                body: None,
                weight: (1000 / i) as u32,
            });
        }
    }
    let thresholds = [format!("p95 < {}ms", ctx.config.targets.cdn_p95_ms)];
    let plan = plan(
        ctx,
        specs,
        Executor::ConstantVus { vus: CDN_VUS, duration_ms: SHORT_LOAD_MS, think_time_ms: 0 },
        &thresholds,
    )?;
    ctx.progress.phase(&format!("{CDN_VUS} users reading {CDN_ITEMS} catalogue items through {cdn}"));
    run_load(ctx, &plan).await.map_err(|e| format!("the load generator failed: {e}"))
}

async fn cdn(mut rb: ResultBuilder, ctx: &Ctx, hit_rate: bool) -> CheckResult {
    let traffic = ctx.traffic();
    if traffic.nearest.is_empty() {
        return rb.finish(Verdict::Skipped, "no client locations: set [deployment.traffic.nearest]");
    }
    let t = &ctx.config.targets;
    let (loaded, reused) = ctx.shared.get_or_compute("cdn-load", cdn_load(ctx)).await;
    if reused {
        ctx.progress.phase("judging this run's earlier CDN load");
    }
    let r = match loaded.as_ref() {
        Ok(r) => r,
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
    };
    let p = r.percentiles(None).unwrap_or_default();
    let errors = error_pct(r);
    common_metrics(&mut rb, r, &p, errors);
    // Hits over cacheable GETs: every request here is a cacheable GET; a revalidated hit counts as a hit.
    let mut cache: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_location: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (name, s) in &r.per_request {
        let loc = name.split('/').next().unwrap_or(name).to_string();
        for (value, n) in s.header_counts.get("x-cache").into_iter().flatten() {
            *cache.entry(value.clone()).or_default() += n;
            let e = by_location.entry(loc.clone()).or_default();
            e.1 += n;
            if value.to_ascii_lowercase().contains("hit") {
                e.0 += n;
            }
        }
    }
    let answered: u64 = cache.values().sum();
    let hits: u64 = cache.iter().filter(|(k, _)| k.to_ascii_lowercase().contains("hit")).map(|(_, v)| v).sum();
    let rate = if answered == 0 { 0.0 } else { 100.0 * hits as f64 / answered as f64 };
    rb.metric("hit_rate_pct", rate).metric("hits", hits as f64).metric("cache_answers", answered as f64);
    for (k, v) in &cache {
        rb.metric(&format!("x_cache.{k}"), *v as f64);
    }
    rb.table(Table {
        title: "By client location".into(),
        columns: vec!["location".into(), "requests".into(), "hit rate %".into()],
        rows: by_location
            .iter()
            .map(|(l, (h, n))| vec![l.clone(), n.to_string(), format!("{:.1}", 100.0 * *h as f64 / (*n).max(1) as f64)])
            .collect(),
    });
    rb.distribution(xregion_load::result::distribution("edge latency, all locations", &r.latency_all()));
    rb.note("both CDN checks judge one run of this load");
    rb.note(format!(
        "{CDN_VUS} users without think time for {} s request {CDN_ITEMS} catalogue items with popularity ~ 1/rank from \
         {} client locations; the hit rate counts responses whose X-Cache says Hit (revalidated hits included) \
         over all cacheable GETs, cold misses included",
        SHORT_LOAD_MS / 1000,
        traffic.nearest.len()
    ));
    if hit_rate {
        let min = t.cdn_hit_rate_min_pct;
        rb.measured(format!("{rate:.1}% hits"));
        if answered == 0 {
            rb.finish(Verdict::Fail, format!("no response carried an X-Cache header ({} requests)", r.requests))
        } else if rate > min {
            rb.finish(Verdict::Pass, format!("{rate:.1}% of {answered} cacheable GETs were hits"))
        } else {
            rb.finish(
                Verdict::Fail,
                format!("only {rate:.1}% of {answered} cacheable GETs were hits (target > {min}%)"),
            )
        }
    } else {
        rb.table(threshold_table(r));
        for c in charts(r).into_iter().take(1) {
            rb.chart(c);
        }
        rb.measured(format!("P95 {:.1} ms", p.p95));
        if r.requests == 0 {
            rb.finish(Verdict::Error, "no request completed")
        } else if !r.thresholds_pass() {
            rb.finish(Verdict::Fail, format!("edge P95 {:.1} ms is not below {} ms", p.p95, t.cdn_p95_ms))
        } else if errors >= t.error_rate_max_pct {
            rb.finish(Verdict::Fail, format!("{errors:.2}% of edge requests failed"))
        } else {
            rb.finish(Verdict::Pass, format!("edge P95 {:.1} ms over {} requests", p.p95, r.requests))
        }
    }
}

async fn pool(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
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
