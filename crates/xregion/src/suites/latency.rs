//! The `performance` suite's latency checks: the region-to-region round-trip matrix, and API latency from every
//! client location to every region.
//!
//! Round trips are measured by each region itself over the path replication uses (`GET /v1/peers/rtt`), the
//! way a probe agent inside each region would measure them; xregion only collects the samples. API latency is
//! measured by xregion through the latency record, forcing each region in turn with `X-Route-To`, so that the
//! client-location latency of each path is included.

use crate::check::{CheckDef, Ctx, Needs, PerRegion, ResultBuilder};
use crate::config::Config;
use crate::drive::routed::{self, Route, fire};
use crate::measure;
use futures::StreamExt;
use std::collections::BTreeMap;
use xregion_check::evidence;
use xregion_check::stats::{LatencyRecorder, percentile_table};
use xregion_model::report::{CheckResult, Heatmap, Verdict};
use xregion_model::wire::PeersRtt;

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "performance.latency.region-matrix",
        title: "round trips between every pair of regions are short",
        target: |c: &Config| format!("round-trip P95 < {} ms for every region pair", c.targets.max_latency_ms),
        needs: Needs { regions_min: 2, ..Needs::NONE },
        run: measure!(region_matrix),
    },
    CheckDef {
        id: "performance.latency.api",
        title: "API requests from every client location to every region are fast",
        target: |c: &Config| format!("API P95 < {} ms from every location to every region", c.targets.max_latency_ms),
        needs: Needs::NONE,
        run: measure!(api),
    },
];

/// Round trips each region measures to each peer per request.
const RTT_SAMPLES: u32 = 25;
/// Requests for round trips sent to each region at once: 4 x 25 = 100 round trips per pair, the fewest that
/// estimate a P95 (`evidence::samples_to_estimate`), in the time of 25. A region runs at most 8 peer
/// measurements at once, so 4 requests fit with two peers each.
const RTT_REQUESTS: usize = 4;
/// Requests per (location, region) pair for the API check: the fewest that estimate a P95.
const API_REQUESTS_PER_PAIR: usize = 100;
/// Paths measured at once by the API check.
const API_PATHS_AT_ONCE: usize = 10;
/// Concurrency per pair for the API check.
const API_CONCURRENCY: usize = 8;
/// Path requested by the API check: a small read every region serves.
const API_PATH: &str = "/v1/catalog/api-latency-probe";

/// One measured path: client location, region, and the route.
type ApiPath = (String, String, Route);

/// A heatmap of `f(recorder)` over `rows` x `columns`.
fn heatmap(
    title: &str,
    rows: &[String],
    columns: &[String],
    cells: &BTreeMap<(String, String), LatencyRecorder>,
    pct: f64,
) -> Heatmap {
    Heatmap {
        title: title.to_string(),
        unit: "ms".into(),
        rows: rows.to_vec(),
        columns: columns.to_vec(),
        values: rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| cells.get(&(r.clone(), c.clone())).filter(|x| x.count() > 0).map(|x| x.value_ms_at(pct)))
                    .collect()
            })
            .collect(),
    }
}

async fn region_matrix(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let limit = ctx.config.targets.max_latency_ms;
    let total = RTT_SAMPLES as usize * RTT_REQUESTS;
    ctx.progress.phase(&format!("{total} round trips from every region to every peer"));
    let path = format!("/v1/peers/rtt?count={RTT_SAMPLES}");
    // Each region needs count x its longest round trip; allow for 1 s links before calling it a hang.
    let timeout = Some(std::time::Duration::from_secs(5 + u64::from(RTT_SAMPLES)));
    // Each region's requests at once; a region's answers are merged, and its first failure stands for it.
    let path = &path;
    let answers = futures::future::join_all(ctx.probes.iter().map(|p| async move {
        let all = futures::future::join_all((0..RTT_REQUESTS).map(|_| p.get_optional::<PeersRtt>(path, timeout))).await;
        let mut merged: Option<PeersRtt> = None;
        for a in all {
            match (a?, &mut merged) {
                (None, _) => return Ok(None),
                (Some(a), None) => merged = Some(a),
                (Some(a), Some(m)) => {
                    for peer in a.peers {
                        match m.peers.iter_mut().find(|x| x.region == peer.region) {
                            Some(x) if x.error.is_none() => {
                                x.samples_ms.extend(peer.samples_ms);
                                x.error = peer.error;
                            }
                            Some(_) => {}
                            None => m.peers.push(peer),
                        }
                    }
                }
            }
        }
        Ok::<_, crate::probe::ProbeError>(merged)
    }))
    .await;
    let mut cells: BTreeMap<(String, String), LatencyRecorder> = BTreeMap::new();
    // Each region is judged on its own: one that cannot be asked is an error row, and the others still count.
    let mut per = PerRegion::new();
    let mut unreachable_peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (probe, answer) in ctx.probes.iter().zip(answers) {
        let answer = match answer {
            Ok(Some(a)) => a,
            Ok(None) => {
                return rb.finish(
                    Verdict::Skipped,
                    format!("{} does not offer GET /v1/peers/rtt (optional in the probe contract)", probe.endpoint),
                );
            }
            Err(e) => {
                per.error(&probe.region, format!("could not ask for its round trips: {}", e.detail()));
                continue;
            }
        };
        for peer in answer.peers {
            if let Some(e) = peer.error {
                unreachable_peers.entry(probe.region.clone()).or_default().push(format!("{}: {e}", peer.region));
                continue;
            }
            let rec = cells.entry((probe.region.clone(), peer.region.clone())).or_default();
            for s in peer.samples_ms {
                rec.record_us((s * 1000.0).max(0.0) as u64);
            }
        }
    }
    let names: Vec<String> = ctx.probes.iter().map(|p| p.region.clone()).collect();
    let by_pair: BTreeMap<String, LatencyRecorder> =
        cells.iter().map(|((a, b), r)| (format!("{a} -> {b}"), r.clone())).collect();
    rb.heatmap(heatmap("Round-trip P95 by region pair (row: from, column: to)", &names, &names, &cells, 95.0));
    rb.table(percentile_table("Round trips by region pair (ms)", &by_pair));
    for (pair, r) in &by_pair {
        rb.metric(&format!("p95_ms.{}", pair.replace(" -> ", "_to_")), r.value_ms_at(95.0));
    }
    rb.note(format!(
        "each region measured {total} round trips to each peer ({RTT_REQUESTS} sequences of {RTT_SAMPLES} at once) \
         over its replication path (in the lab, through the WAN emulator), as a probe agent inside the region \
         would; xregion only collects them. A pair's P95 is judged from at least {} round trips",
        evidence::samples_to_estimate(0.95)
    ));
    for name in &names {
        let judged: Vec<(&String, evidence::QuantileJudgement)> = cells
            .iter()
            .filter(|((from, _), r)| from == name && r.count() > 0)
            .map(|((_, to), r)| (to, r.judge_below(0.95, limit)))
            .collect();
        if let Some(peers) = unreachable_peers.get(name) {
            per.fail(name, format!("could not reach {}", peers.join("; ")));
        }
        let worst = judged.iter().max_by(|a, b| a.1.estimate.total_cmp(&b.1.estimate));
        match worst {
            Some((to, j)) if j.below == Some(false) => {
                per.fail(name, format!("round-trip {} to {to} is not below {limit} ms", j.describe("ms")));
            }
            Some((to, _)) if let Some((thin, j)) = judged.iter().find(|x| x.1.below.is_none()) => {
                per.error(name, format!("not enough evidence ({} round trips to {thin}, worst is to {to})", j.n));
            }
            Some((to, j)) => {
                per.pass(name, format!("worst round-trip {} (to {to})", j.describe("ms")));
            }
            None if !per.judged(name) => {
                per.error(name, "reported no round trip to any peer");
            }
            None => {}
        }
    }
    let worst = by_pair.iter().map(|(k, r)| (k.clone(), r.value_ms_at(95.0))).max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((pair, p95)) = &worst {
        rb.metric("p95_ms", *p95).measured(format!("worst P95 {p95:.1} ms ({pair})"));
    }
    let pass = worst
        .map_or_else(String::new, |(pair, p95)| format!("every pair below {limit} ms; worst P95 {p95:.1} ms ({pair})"));
    per.finish(rb, pass)
}

async fn api(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let limit = ctx.config.targets.max_latency_ms;
    let client = routed::client(ctx, API_CONCURRENCY * API_PATHS_AT_ONCE, std::time::Duration::ZERO);
    let regions: Vec<String> = ctx.probes.iter().map(|p| p.region.clone()).collect();
    // With routing records, every (location, region) path through the router; without, this machine to each
    // region's own endpoint.
    let mut paths: Vec<ApiPath> = Vec::new();
    match ctx.traffic.as_ref().and_then(|t| t.records.get("latency").map(|u| (t, u))) {
        Some((t, base)) => {
            for loc in t.nearest.keys() {
                for r in &regions {
                    let headers = vec![(t.location_header.clone(), loc.clone()), ("X-Route-To".into(), r.clone())];
                    let route = Route { url: format!("{base}{API_PATH}"), headers, served_by: "x-served-by".into() };
                    paths.push((loc.clone(), r.clone(), route));
                }
            }
        }
        None => {
            for p in &ctx.probes {
                let url = format!("{}{API_PATH}", p.endpoint);
                let route = Route { url, headers: Vec::new(), served_by: "x-served-by".into() };
                paths.push(("this machine".into(), p.region.clone(), route));
            }
        }
    }
    ctx.progress.phase(&format!("{API_REQUESTS_PER_PAIR} requests on each of {} location-region paths", paths.len()));
    let mut cells: BTreeMap<(String, String), LatencyRecorder> = BTreeMap::new();
    let mut errors = 0usize;
    let mut total = 0usize;
    let mut first_error = None;
    // A few paths at once, each with its own few requests in flight: the paths' latencies are the router's emulated
    // client latencies plus a small share of two cores, so they do not disturb one another.
    let all: Vec<_> = futures::stream::iter(
        paths.iter().map(|(_, _, route)| fire(&client, route, API_REQUESTS_PER_PAIR, API_CONCURRENCY)),
    )
    .buffered(API_PATHS_AT_ONCE)
    .collect()
    .await;
    for ((loc, region, _), samples) in paths.iter().zip(all) {
        total += samples.len();
        let rec = cells.entry((loc.clone(), region.clone())).or_default();
        for s in &samples {
            let served_right = s.served_by.as_deref().is_none_or(|b| b == region);
            if s.status.is_some_and(|c| (200..400).contains(&c)) && served_right {
                rec.record(s.latency);
            } else {
                errors += 1;
                if first_error.is_none() {
                    first_error = Some(format!(
                        "{loc} -> {region}: {}",
                        s.error.clone().unwrap_or_else(|| format!(
                            "status {}, served by {}",
                            s.status.map_or_else(|| "none".to_string(), |c| c.to_string()),
                            s.served_by.as_deref().unwrap_or("an unnamed region")
                        ))
                    ));
                }
            }
        }
    }
    let locations: Vec<String> = {
        let mut v: Vec<String> = paths.iter().map(|p| p.0.clone()).collect();
        v.dedup();
        v
    };
    rb.heatmap(heatmap("API latency P95 (row: client location, column: region)", &locations, &regions, &cells, 95.0));
    let by_pair: BTreeMap<String, LatencyRecorder> =
        cells.iter().map(|((a, b), r)| (format!("{a} -> {b}"), r.clone())).collect();
    rb.table(percentile_table("API latency by location and region (ms)", &by_pair));
    let error_pct = if total == 0 { 0.0 } else { 100.0 * errors as f64 / total as f64 };
    rb.metric("error_rate_pct", error_pct).metric("requests", total as f64);
    rb.note(format!(
        "{API_REQUESTS_PER_PAIR} requests per path, {API_CONCURRENCY} at a time on each path, {API_PATHS_AT_ONCE} paths at once; through the latency record with the \
         client location and `X-Route-To` naming the region, so each figure includes that location's network path; a \
         request served by another region than the one asked for counts as an error"
    ));
    let worst = by_pair.iter().map(|(k, r)| (k.clone(), r.value_ms_at(95.0))).max_by(|a, b| a.1.total_cmp(&b.1));
    let Some((pair, p95)) = worst.filter(|w| w.1 > 0.0 || errors < total) else {
        return rb.finish(
            Verdict::Error,
            format!("no API request succeeded: {}", first_error.unwrap_or_else(|| "nothing sent".into())),
        );
    };
    rb.metric("p95_ms", p95).measured(format!("worst P95 {p95:.1} ms ({pair})"));
    let judged: Vec<(&String, evidence::QuantileJudgement)> =
        by_pair.iter().map(|(k, r)| (k, r.judge_below(0.95, limit))).collect();
    if let Some((path, j)) = judged.iter().find(|x| x.1.below == Some(false)) {
        rb.finish(Verdict::Fail, format!("{path}: API {} is not below {limit} ms", j.describe("ms")))
    } else if let Some((path, j)) = judged.iter().find(|x| x.1.below.is_none()) {
        rb.finish(
            Verdict::Error,
            format!(
                "not enough evidence ({path}: {} of {} answered requests for a P95)",
                j.n,
                evidence::samples_to_estimate(0.95)
            ),
        )
    } else if error_pct >= ctx.config.targets.error_rate_max_pct {
        rb.finish(
            Verdict::Fail,
            format!("{error_pct:.2}% of API requests failed (first: {})", first_error.unwrap_or_default()),
        )
    } else {
        let n_min = judged.iter().map(|x| x.1.n).min().unwrap_or(0);
        rb.finish(
            Verdict::Pass,
            format!("every path below {limit} ms; worst P95 {p95:.1} ms ({pair}), at least {n_min} requests per path"),
        )
    }
}
