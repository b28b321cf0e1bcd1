//! The CDN checks: the hit rate of cacheable GETs and the edges' latency from every client location, both judged
//! on one load run.

use super::{SHORT_LOAD_MS, charts, common_metrics, error_pct, plan, run_load, threshold_table};
use crate::check::{Ctx, ResultBuilder};
use std::collections::BTreeMap;
use xregion_load::plan::{Executor, RequestSpec};
use xregion_load::result::LoadResult;
use xregion_model::report::{CheckResult, Table, Verdict};

/// Catalogue items the CDN checks request, with Zipf-like popularity.
const CDN_ITEMS: usize = 40;
/// Virtual users of the CDN checks.
const CDN_VUS: u32 = 32;
pub(super) async fn cdn_hit_rate(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    cdn(rb, ctx, true).await
}

pub(super) async fn cdn_edge_latency(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    cdn(rb, ctx, false).await
}

/// The CDN checks' load: `CDN_VUS` users reading catalogue items through the CDN from every client location
/// (`Ctx::client_locations`). Both CDN checks judge one run of it (the edge P95 threshold is evaluated on every
/// run; the hit-rate check ignores it).
async fn cdn_load(ctx: &Ctx) -> Result<LoadResult, String> {
    let traffic = ctx.traffic();
    let cdn = traffic.cdn.as_deref().unwrap_or_default();
    // Zipf-like popularity: item i gets weight ~ 1/i.
    let mut specs = Vec::new();
    for (loc, headers) in ctx.client_locations() {
        for i in 1..=CDN_ITEMS {
            specs.push(RequestSpec {
                name: format!("{loc}/item-{i}"),
                url: format!("{cdn}{}", traffic.cdn_path.replace("{i}", &i.to_string())),
                method: "GET".into(),
                headers: headers.clone(),
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
    if ctx.client_locations().is_empty() {
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
         {}; the hit rate counts responses whose X-Cache says Hit (revalidated hits included) over all cacheable \
         GETs, cold misses included",
        SHORT_LOAD_MS / 1000,
        ctx.client_locations_text()
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
        let needed = xregion_check::evidence::samples_to_estimate(0.95);
        if r.requests < needed {
            rb.finish(Verdict::Error, format!("not enough evidence ({} of {needed} requests for a P95)", r.requests))
        } else if !r.thresholds_pass() {
            rb.finish(
                Verdict::Fail,
                format!("edge P95 {:.1} ms over {} requests is not below {} ms", p.p95, r.requests, t.cdn_p95_ms),
            )
        } else if errors >= t.error_rate_max_pct {
            rb.finish(Verdict::Fail, format!("{errors:.2}% of edge requests failed"))
        } else {
            rb.finish(Verdict::Pass, format!("edge P95 {:.1} ms over {} requests", p.p95, r.requests))
        }
    }
}
