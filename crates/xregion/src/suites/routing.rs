//! The `cross-region` suite's routing checks: nearest-region routing, weights, health and capacity.
//!
//! They send requests through the deployment's routing records (`[deployment.traffic]`, which the lab fills in
//! itself) with a client-location header, and count which region served each request from the served-by
//! response header. They need no internals: only the health check needs a fault injector, to make a region
//! unhealthy while it keeps serving.

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder, ms};
use crate::config::{Config, Traffic};
use crate::drive::routed::{self, Route, Sample, fire, paced};
use crate::measure;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_model::report::{Chart, CheckResult, Marker, Series, Table, Verdict};

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "cross-region.routing.geo",
        title: "every client location is served by its nearest healthy region",
        target: |c: &Config| {
            format!("> {}% of each location's requests at its nearest region", c.targets.routing_share_min_pct)
        },
        needs: Needs { traffic: true, ..Needs::NONE },
        run: measure!(geo),
    },
    CheckDef {
        id: "cross-region.routing.weighted",
        title: "the weighted record splits traffic as configured",
        target: |_| "each region's share within 4 sigma of its weight".to_string(),
        needs: Needs { traffic: true, ..Needs::NONE },
        run: measure!(weighted),
    },
    CheckDef {
        id: "cross-region.routing.health",
        title: "an unhealthy region stops receiving new requests",
        target: |c: &Config| format!("no new requests to an unhealthy region after {} s", c.targets.health_detection_s),
        needs: Needs { traffic: true, injector: true, ..Needs::NONE },
        run: measure!(health),
    },
    CheckDef {
        id: "cross-region.routing.capacity",
        title: "a region at capacity overflows to the next nearest region without errors",
        target: |c: &Config| format!("overflow to the next nearest region, errors < {}%", c.targets.error_rate_max_pct),
        needs: Needs { traffic: true, ..Needs::NONE },
        run: measure!(capacity),
    },
];

/// Requests sent per client location by the geo check.
const GEO_REQUESTS_PER_LOCATION: usize = 200;
/// Requests sent by the weighted check.
const WEIGHTED_REQUESTS: usize = 3000;
/// Concurrency of the geo check, per location.
const CONCURRENCY: usize = 16;
/// Locations the geo check sends from at once.
const GEO_LOCATIONS_AT_ONCE: usize = 4;
/// Concurrency of the weighted check: the record draws a region per request, whatever is in flight.
const WEIGHTED_CONCURRENCY: usize = 64;
/// Request rate of the health check's steady traffic.
const HEALTH_RATE_PER_S: f64 = 100.0;
/// Traffic before the fault, to see the region serving.
const HEALTH_BEFORE: Duration = Duration::from_secs(1);
/// Clean traffic required after the region's last request, to show it gets none afterwards.
const HEALTH_TAIL: Duration = Duration::from_secs(3);
/// Longest wait for a restored region to be routed to again before the next check.
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Service time each capacity request asks for, so that requests overlap and fill the capacity.
const CAPACITY_WORK_MS: u64 = 200;
/// How long the capacity check keeps demand above the capacity.
const CAPACITY_DURATION: Duration = Duration::from_secs(3);
/// Path requested through the routing records: a cacheable catalogue read every region serves.
const PROBE_PATH: &str = "/v1/catalog/routing-probe";

/// A client with a pool big enough for `concurrency`, allowing for the longest service time a check asks for.
pub fn client(ctx: &Ctx, concurrency: usize) -> reqwest::Client {
    routed::client(ctx, concurrency, Duration::from_millis(CAPACITY_WORK_MS))
}

/// Requests to `url` as a client at `location` (none: no location header), served-by read from the traffic's
/// header.
pub fn route(traffic: &Traffic, url: &str, location: Option<&str>) -> Route {
    Route {
        url: url.to_string(),
        headers: location.map(|l| vec![(traffic.location_header.clone(), l.to_string())]).unwrap_or_default(),
        served_by: traffic.served_by_header.clone(),
    }
}

/// Counts of samples by serving region (`error` for failed requests, `unknown` without the header).
fn by_region(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in samples {
        let k =
            if !s.ok() { "error".to_string() } else { s.served_by.clone().unwrap_or_else(|| "unknown".to_string()) };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn pct(part: u64, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// The URL of a routing record, or the finished result explaining that it is missing.
fn record<'a>(traffic: &'a Traffic, name: &str) -> Result<&'a str, String> {
    traffic
        .records
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("no `{name}` routing record: set [deployment.traffic] records.{name} to its URL"))
}

/// Regions ordered from nearest to farthest for a location.
fn nearest_order(traffic: &Traffic, location: &str) -> Vec<String> {
    let mut v: Vec<(String, f64)> =
        traffic.locations.get(location).map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().map(|(k, _)| k).collect()
}

async fn geo(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let target = ctx.config.targets.routing_share_min_pct;
    if traffic.nearest.is_empty() {
        return rb.finish(Verdict::Skipped, "no client locations: set [deployment.traffic.nearest]");
    }
    let client = client(ctx, CONCURRENCY * GEO_LOCATIONS_AT_ONCE);
    let mut rows = Vec::new();
    let mut worst: Option<(String, f64)> = None;
    let mut errors = 0u64;
    let mut total = 0usize;
    for (record_name, expected_map) in [("latency", &traffic.nearest), ("geolocation", &traffic.geolocation)] {
        if expected_map.is_empty() {
            continue;
        }
        let url = match record(traffic, record_name) {
            Ok(u) => format!("{u}{PROBE_PATH}"),
            Err(e) if record_name == "latency" => return rb.finish(Verdict::Error, e),
            Err(_) => continue,
        };
        ctx.progress.phase(&format!("{record_name} record from {} locations", expected_map.len()));
        // A few locations at once: which region serves a request depends on its location header alone.
        let batches: Vec<_> = futures::stream::iter(expected_map.iter().map(|(location, expected)| {
            let route = route(traffic, &url, Some(location));
            let client = &client;
            async move { (location, expected, fire(client, &route, GEO_REQUESTS_PER_LOCATION, CONCURRENCY).await) }
        }))
        .buffered(GEO_LOCATIONS_AT_ONCE)
        .collect()
        .await;
        for (location, expected, samples) in batches {
            if samples.iter().all(|s| s.status.is_none()) {
                let e = samples.first().and_then(|s| s.error.clone()).unwrap_or_default();
                return rb.finish(Verdict::Error, format!("the {record_name} record at {url} is unreachable: {e}"));
            }
            let counts = by_region(&samples);
            let share = pct(counts.get(expected).copied().unwrap_or(0), samples.len());
            errors += counts.get("error").copied().unwrap_or(0);
            total += samples.len();
            rb.metric(&format!("share_pct.{record_name}.{location}"), share);
            if worst.as_ref().is_none_or(|w| share < w.1) {
                worst = Some((format!("{location} via {record_name}"), share));
            }
            let served = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
            rows.push(vec![record_name.to_string(), location.clone(), expected.clone(), format!("{share:.1}"), served]);
        }
    }
    rb.table(Table {
        title: "Share of requests served by the expected region".into(),
        columns: vec!["record".into(), "location".into(), "expected".into(), "share %".into(), "served by".into()],
        rows,
    });
    rb.note(format!(
        "{GEO_REQUESTS_PER_LOCATION} requests per location and record, {CONCURRENCY} at a time from each of \
         {GEO_LOCATIONS_AT_ONCE} locations at once, with the location in \
         the {} header; the serving region is read from {}",
        traffic.location_header, traffic.served_by_header
    ));
    let error_pct = pct(errors, total);
    rb.metric("error_rate_pct", error_pct);
    let Some((where_, share)) = worst else {
        return rb.finish(Verdict::Skipped, "no location to test");
    };
    rb.metric("share_pct_min", share).measured(format!("worst {share:.1}% ({where_})"));
    if share > target && error_pct < ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Pass, format!("every location reached its expected region; worst {share:.1}% ({where_})"))
    } else if share <= target {
        rb.finish(
            Verdict::Fail,
            format!("{where_}: only {share:.1}% served by the expected region (target > {target}%)"),
        )
    } else {
        rb.finish(Verdict::Fail, format!("{error_pct:.2}% of routed requests failed"))
    }
}

async fn weighted(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let url = match record(traffic, "weighted") {
        Ok(u) => format!("{u}{PROBE_PATH}"),
        Err(e) => return rb.finish(Verdict::Skipped, e),
    };
    let total_weight: f64 = traffic.weights.values().sum();
    if traffic.weights.is_empty() || total_weight <= 0.0 {
        return rb.finish(Verdict::Skipped, "no weights: set [deployment.traffic.weights]");
    }
    ctx.progress.phase(&format!("{WEIGHTED_REQUESTS} requests to the weighted record"));
    let client = client(ctx, WEIGHTED_CONCURRENCY);
    let samples = fire(&client, &route(traffic, &url, None), WEIGHTED_REQUESTS, WEIGHTED_CONCURRENCY).await;
    let counts = by_region(&samples);
    let errors = counts.get("error").copied().unwrap_or(0);
    if errors as usize == samples.len() {
        let e = samples.first().and_then(|s| s.error.clone()).unwrap_or_default();
        return rb.finish(Verdict::Error, format!("the weighted record at {url} failed every request: {e}"));
    }
    let served = (samples.len() as u64 - errors) as f64;
    let mut rows = Vec::new();
    let mut worst: Option<(String, f64, f64)> = None; // region, deviation in sigmas, deviation in points
    for (region, w) in &traffic.weights {
        let expected = w / total_weight;
        let observed = counts.get(region).copied().unwrap_or(0) as f64 / served;
        let sigma = (expected * (1.0 - expected) / served).sqrt().max(1e-9);
        let z = (observed - expected).abs() / sigma;
        rb.metric(&format!("share_pct.{region}"), observed * 100.0);
        rows.push(vec![
            region.clone(),
            format!("{:.1}", expected * 100.0),
            format!("{:.1}", observed * 100.0),
            format!("±{:.1}", 4.0 * sigma * 100.0),
            format!("{z:.1}"),
        ]);
        if worst.as_ref().is_none_or(|x| z > x.1) {
            worst = Some((region.clone(), z, (observed - expected) * 100.0));
        }
    }
    rb.table(Table {
        title: "Observed split against configured weights".into(),
        columns: vec!["region".into(), "weight %".into(), "observed %".into(), "tolerance (4σ)".into(), "σ off".into()],
        rows,
    });
    rb.note(format!(
        "{WEIGHTED_REQUESTS} requests; a region's share passes when it lies within 4 standard deviations of the \
         binomial share its weight implies (a false alarm about once in 16,000 regions)"
    ));
    let error_pct = pct(errors, samples.len());
    rb.metric("error_rate_pct", error_pct);
    let (region, z, off) = worst.unwrap_or_default();
    rb.metric("deviation_sigma_max", z).measured(format!("worst {region} {off:+.1} pts ({z:.1} σ)"));
    if z > 4.0 {
        rb.finish(Verdict::Fail, format!("{region} got {off:+.1} percentage points off its weight ({z:.1} σ > 4 σ)"))
    } else if error_pct >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{error_pct:.2}% of requests failed"))
    } else {
        rb.finish(Verdict::Pass, format!("split follows the weights; worst {region} {off:+.1} pts ({z:.1} σ)"))
    }
}

async fn health(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let url = match record(traffic, "latency") {
        Ok(u) => format!("{u}{PROBE_PATH}"),
        Err(e) => return rb.finish(Verdict::Skipped, e),
    };
    let Some((location, victim)) = traffic.nearest.iter().next().map(|(l, r)| (l.clone(), r.clone())) else {
        return rb.finish(Verdict::Skipped, "no client locations: set [deployment.traffic.nearest]");
    };
    let limit_s = ctx.config.targets.health_detection_s;
    let limit = HEALTH_BEFORE + Duration::from_secs_f64(limit_s) + HEALTH_TAIL + Duration::from_secs(2);
    let route = route(traffic, &url, Some(&location));
    let client = client(ctx, 64);
    ctx.progress.phase(&format!("marking {victim} unhealthy under traffic from {location}"));
    let faults = ctx.faults.clone();
    let mut fault_at: Option<Duration> = None;
    let mut fault_error: Option<String> = None;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(), String>>(1);
    let samples = paced(&client, &route, HEALTH_RATE_PER_S, limit, |t, s| {
        if fault_at.is_none() && t >= HEALTH_BEFORE {
            fault_at = Some(t);
            let faults = faults.clone();
            let victim = victim.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(faults.set_health(&victim, false).await).await;
            });
        }
        if let Ok(Err(e)) = rx.try_recv() {
            fault_error = Some(e);
            return true;
        }
        // Stop once the victim has had no request for the whole tail.
        let Some(f) = fault_at else { return false };
        let last_victim = s.iter().rev().find(|x| x.served_by.as_deref() == Some(victim.as_str())).map(|x| x.sent);
        let quiet_since = last_victim.map_or(f, |l| l.max(f));
        t > quiet_since + HEALTH_TAIL
    })
    .await;
    let restored = ctx.faults.set_health(&victim, true).await;
    if let Some(e) = fault_error {
        return rb.finish(Verdict::Error, format!("could not make {victim} unhealthy: {e}"));
    }
    // Leave the deployment as found: wait until the region serves this location again, so that the next check
    // does not start with a region still drained.
    match restored {
        Err(e) => {
            rb.note(format!("restoring the health of {victim} failed: {e}"));
        }
        Ok(()) => {
            ctx.progress.phase(&format!("waiting for {victim} to be routed to again"));
            let back = paced(&client, &route, 20.0, RECOVERY_WAIT_MAX, |_, s| {
                s.iter().any(|x| x.served_by.as_deref() == Some(victim.as_str()))
            })
            .await;
            match back.iter().find(|x| x.served_by.as_deref() == Some(victim.as_str())) {
                Some(first) => {
                    rb.metric("recovery_s", first.sent.as_secs_f64());
                }
                None => {
                    rb.note(format!(
                        "{victim} was not routed to again within {} s of its health check passing",
                        RECOVERY_WAIT_MAX.as_secs()
                    ));
                }
            }
        }
    }
    let fault_at = fault_at.unwrap_or(HEALTH_BEFORE);
    let end = samples.last().map_or(fault_at, |s| s.sent);
    let before = samples.iter().filter(|s| s.sent < fault_at).collect::<Vec<_>>();
    let before_victim = before.iter().filter(|s| s.served_by.as_deref() == Some(victim.as_str())).count();
    let last_victim = samples
        .iter()
        .filter(|s| s.sent >= fault_at && s.served_by.as_deref() == Some(victim.as_str()))
        .map(|s| s.sent)
        .max();
    let detection = last_victim.map_or(Duration::ZERO, |l| l - fault_at);
    let errors = samples.iter().filter(|s| !s.ok()).count();
    let error_pct = pct(errors as u64, samples.len());
    rb.metric("detection_s", detection.as_secs_f64())
        .metric("requests", samples.len() as f64)
        .metric("error_rate_pct", error_pct)
        .metric("victim_share_before_pct", pct(before_victim as u64, before.len()));
    rb.chart(served_chart(&samples, fault_at, &victim));
    rb.note(format!(
        "steady traffic at {HEALTH_RATE_PER_S} requests/s from {location} (nearest: {victim}) through the latency \
         record; {victim}'s health check was made to fail at t = {:.1} s while it kept serving; detection is the time \
         from then to the last request {victim} served",
        fault_at.as_secs_f64()
    ));
    rb.measured(format!("{:.2} s", detection.as_secs_f64()));
    // The loop stops as soon as the tail is long enough, so allow for the last request's spacing.
    let tail = end.saturating_sub(last_victim.unwrap_or(fault_at)) + Duration::from_secs_f64(2.0 / HEALTH_RATE_PER_S);
    if before_victim == 0 {
        rb.finish(Verdict::Error, format!("{victim} served none of {location}'s requests even before the fault"))
    } else if detection.as_secs_f64() > limit_s || tail < HEALTH_TAIL {
        rb.finish(
            Verdict::Fail,
            format!(
                "{victim} still received requests {:.1} s after it turned unhealthy (limit {limit_s} s)",
                detection.as_secs_f64()
            ),
        )
    } else if error_pct >= ctx.config.targets.error_rate_max_pct {
        rb.finish(Verdict::Fail, format!("{error_pct:.2}% of requests failed while {victim} was drained"))
    } else {
        rb.finish(
            Verdict::Pass,
            format!(
                "{victim} got no new requests {:.2} s after turning unhealthy, and none in the next {:.1} s",
                detection.as_secs_f64(),
                tail.as_secs_f64()
            ),
        )
    }
}

/// Requests per second served by each region over time, with the fault marked.
fn served_chart(samples: &[Sample], fault_at: Duration, victim: &str) -> Chart {
    let mut per: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let buckets = samples.last().map_or(0, |s| s.sent.as_millis() as u64 / 250 + 1);
    for s in samples {
        let k = if s.ok() { s.served_by.clone().unwrap_or_else(|| "unknown".into()) } else { "error".into() };
        *per.entry(k).or_default().entry(s.sent.as_millis() as u64 / 250).or_insert(0.0) += 4.0;
    }
    Chart {
        title: "Requests per second by serving region".into(),
        y_unit: "req/s".into(),
        series: per
            .into_iter()
            .map(|(name, m)| Series {
                name,
                points: (0..buckets).map(|b| (b as f64 * 0.25, m.get(&b).copied().unwrap_or(0.0))).collect(),
            })
            .collect(),
        markers: vec![Marker { t_s: fault_at.as_secs_f64(), label: format!("{victim} unhealthy") }],
    }
}

async fn capacity(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let url = match record(traffic, "latency") {
        Ok(u) => format!("{u}{PROBE_PATH}?work_ms={CAPACITY_WORK_MS}"),
        Err(e) => return rb.finish(Verdict::Skipped, e),
    };
    // The location whose nearest region has the smallest capacity: the cheapest to fill.
    let pick = traffic
        .nearest
        .iter()
        .filter_map(|(l, r)| traffic.capacity.get(r).map(|c| (l.clone(), r.clone(), *c)))
        .min_by_key(|x| x.2);
    let Some((location, region, cap)) = pick else {
        return rb.finish(Verdict::Skipped, "no capacity limits: set [deployment.traffic.capacity]");
    };
    let order = nearest_order(traffic, &location);
    let Some(next) = order.iter().find(|r| **r != region).cloned() else {
        return rb.finish(Verdict::Skipped, format!("no latency table for {location}: cannot tell the next nearest"));
    };
    // 1.5 times the capacity: a third of the demand must overflow, and it fits in the next region's capacity
    // (the lab gives every region the same), so all of it should land there.
    let concurrency = (3 * cap as usize / 2).clamp(2, 3_000);
    let n = (concurrency as f64 * CAPACITY_DURATION.as_secs_f64() * 1000.0 / CAPACITY_WORK_MS as f64) as usize;
    ctx.progress
        .phase(&format!("{concurrency} requests in flight from {location}: 1.5 times {region}'s capacity {cap}"));
    let client = client(ctx, concurrency);
    let samples = fire(&client, &route(traffic, &url, Some(&location)), n, concurrency).await;
    let counts = by_region(&samples);
    let errors = counts.get("error").copied().unwrap_or(0);
    if errors as usize == samples.len() {
        let e = samples.first().and_then(|s| s.error.clone()).unwrap_or_default();
        return rb.finish(Verdict::Error, format!("every request to {url} failed: {e}"));
    }
    let at_region = counts.get(&region).copied().unwrap_or(0);
    let at_next = counts.get(&next).copied().unwrap_or(0);
    let overflow = samples.len() as u64 - at_region - errors;
    let error_pct = pct(errors, samples.len());
    let next_pct_of_overflow = if overflow == 0 { 0.0 } else { 100.0 * at_next as f64 / overflow as f64 };
    let lat: Vec<f64> = samples.iter().map(|s| ms(s.latency)).collect();
    rb.metric("capacity", cap as f64)
        .metric("concurrency", concurrency as f64)
        .metric("requests", samples.len() as f64)
        .metric("error_rate_pct", error_pct)
        .metric("overflow_pct", pct(overflow, samples.len()))
        .metric("overflow_to_next_nearest_pct", next_pct_of_overflow)
        .metric("latency_ms_max", lat.iter().copied().fold(0.0, f64::max));
    rb.table(Table {
        title: format!("Where {location}'s requests went"),
        columns: vec!["served by".into(), "requests".into(), "share %".into()],
        rows: counts
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string(), format!("{:.1}", pct(*v, samples.len()))])
            .collect(),
    });
    rb.note(format!(
        "{n} requests, each holding the server {CAPACITY_WORK_MS} ms, {concurrency} at a time from {location}; \
         {region} (nearest) has capacity {cap}, so about a third must overflow, to {next} (next nearest)"
    ));
    rb.measured(format!("{:.0}% overflow, {error_pct:.2}% errors", pct(overflow, samples.len())));
    let max_err = ctx.config.targets.error_rate_max_pct;
    if overflow == 0 {
        rb.finish(
            Verdict::Fail,
            format!("no request overflowed although demand was 1.5 times {region}'s capacity {cap}"),
        )
    } else if error_pct >= max_err {
        rb.finish(
            Verdict::Fail,
            format!("{error_pct:.2}% of requests failed at 1.5 times the capacity (limit {max_err}%)"),
        )
    } else if next_pct_of_overflow < ctx.config.targets.routing_share_min_pct {
        rb.finish(
            Verdict::Fail,
            format!("only {next_pct_of_overflow:.1}% of the overflow went to the next nearest region {next}"),
        )
    } else {
        rb.finish(
            Verdict::Pass,
            format!(
                "{:.0}% overflowed, {next_pct_of_overflow:.0}% of it to {next}; {error_pct:.2}% errors",
                pct(overflow, samples.len())
            ),
        )
    }
}
