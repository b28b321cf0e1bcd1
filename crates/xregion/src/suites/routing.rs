//! The `cross-region` suite's routing checks: nearest-region routing, weights, health, the failover record and
//! capacity.
//!
//! They send requests through the deployment's routing records (`[deployment.traffic]`, which the lab fills in
//! itself) with a client-location header, and count which region served each request from the served-by
//! response header. A run placed at a location (`--location`) sends the geo, health and capacity checks' requests
//! from there without the header, for the deployment to place them by address. They need no internals: only the health and failover checks need a fault injector, to make a
//! region's health check fail while it keeps serving.
//!
//! Each also judges the seed's load-balancing criteria over its own requests (`criteria`): P95 below
//! `targets.routing_p95_ms` and errors below `error_rate_max_pct`, from at least `REQUESTS_MIN` requests.

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder, ms};
use crate::config::{Config, Traffic};
use crate::drive::routed::{self, Route, Sample, fire, paced};
use crate::measure;
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_check::evidence;
use xregion_model::report::{Chart, CheckResult, Marker, Series, Table, Verdict};

mod geo;

use geo::geo;
pub use geo::{GEO_SHARED, GeoEvidence, GeoMeasured};

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: GEO,
        title: "every client location is served by its nearest healthy region",
        target: |c: &Config| {
            format!(
                "> {}% of each location's requests at its nearest region; {}",
                c.targets.routing_share_min_pct,
                lb(c)
            )
        },
        needs: Needs { traffic: true, ..Needs::NONE },
        run: measure!(geo),
    },
    CheckDef {
        id: "cross-region.routing.weighted",
        title: "the weighted record splits traffic as configured",
        target: |c: &Config| format!("each region's share within 4 sigma of its weight; {}", lb(c)),
        needs: Needs { traffic: true, ..Needs::NONE },
        run: measure!(weighted),
    },
    CheckDef {
        id: "cross-region.routing.health",
        title: "an unhealthy region stops receiving new requests",
        target: |c: &Config| {
            format!("no new requests to an unhealthy region after {} s; {}", c.targets.health_detection_s, lb(c))
        },
        needs: Needs { traffic: true, health_fault: true, ..Needs::NONE },
        run: measure!(health),
    },
    CheckDef {
        id: "cross-region.routing.failover",
        title: "the failover record serves from the primary and moves to the secondary when the primary is unhealthy",
        target: |c: &Config| {
            format!(
                "> {}% at the primary while healthy, at the secondary after {} s unhealthy; {}",
                c.targets.routing_share_min_pct,
                c.targets.health_detection_s,
                lb(c)
            )
        },
        needs: Needs { traffic: true, records: &["failover"], health_fault: true, ..Needs::NONE },
        run: measure!(failover),
    },
    CheckDef {
        id: "cross-region.routing.capacity",
        title: "a region at capacity overflows to the next nearest region without errors",
        target: |c: &Config| {
            format!(
                "overflow to the next preferred region; P95 < {} ms beyond the requested service time, errors < {}%",
                c.targets.routing_p95_ms, c.targets.error_rate_max_pct
            )
        },
        needs: Needs { traffic: true, ..Needs::NONE },
        run: measure!(capacity),
    },
];

/// Requests sent by the weighted check.
const WEIGHTED_REQUESTS: usize = 3000;
/// Concurrency of the geo check, per location.
const CONCURRENCY: usize = 16;
/// Concurrency of the weighted check: the record draws a region per request, whatever is in flight.
const WEIGHTED_CONCURRENCY: usize = 64;
/// Request rate of the health check's steady traffic.
const HEALTH_RATE_PER_S: f64 = 100.0;
/// Traffic before the fault, to see the region serving.
const HEALTH_BEFORE: Duration = Duration::from_secs(1);
/// Clean traffic required after the region's last request, to show it gets none afterwards.
const HEALTH_TAIL: Duration = Duration::from_secs(2);
/// Longest wait for a restored region to be routed to again before the next check.
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Service time each capacity request asks for, so that requests overlap and fill the capacity.
const CAPACITY_WORK_MS: u64 = 1000;
/// How long the capacity check keeps demand above the capacity.
const CAPACITY_DURATION: Duration = Duration::from_secs(3);
/// Fewest requests a routing check judges its latency and errors from: an error rate of 1% needs about 100
/// requests to show at all, and a P95 needs 100 to be estimated (`evidence::samples_to_estimate`).
const REQUESTS_MIN: usize = 100;

/// The seed's load-balancing criteria, as a target text.
fn lb(c: &Config) -> String {
    format!("P95 < {} ms, errors < {}%", c.targets.routing_p95_ms, c.targets.error_rate_max_pct)
}

/// What a check's requests say about the load-balancing criteria.
enum Criteria {
    /// P95 and errors below their limits.
    Met,
    /// What is over its limit.
    Missed(Vec<String>),
    /// Too few requests to judge; why.
    Thin(String),
}

/// Judges the seed's load-balancing criteria over `samples`: P95 latency (less `service`, the time the requests
/// asked the server to spend) below `routing_p95_ms` on its 95% confidence bounds, and the error rate below
/// `error_rate_max_pct`, from at least `REQUESTS_MIN` requests. Records the figures as metrics.
fn criteria(rb: &mut ResultBuilder, ctx: &Ctx, samples: &[Sample], service: Duration) -> Criteria {
    let n = samples.len();
    let mut lat: Vec<f64> = samples.iter().map(|s| ms(s.latency.saturating_sub(service))).collect();
    lat.sort_by(f64::total_cmp);
    let errors = samples.iter().filter(|s| !s.ok()).count() as u64;
    let error_pct = pct(errors, n);
    let limit = ctx.config.targets.routing_p95_ms;
    let max_err = ctx.config.targets.error_rate_max_pct;
    let p95 = if n == 0 { 0.0 } else { lat[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1] };
    rb.metric("requests", n as f64).metric("p95_ms", p95).metric("error_rate_pct", error_pct);
    rb.note(format!(
        "load-balancing criteria over all {n} requests of the check{}: P95 {p95:.1} ms (limit {limit} ms), \
         {error_pct:.2}% errors (limit {max_err}%)",
        if service.is_zero() {
            String::new()
        } else {
            format!(", less the {} ms of service time each asked for", service.as_millis())
        }
    ));
    if n < REQUESTS_MIN {
        return Criteria::Thin(format!("not enough evidence ({n} of {REQUESTS_MIN} requests)"));
    }
    let j = evidence::judge_quantile(n as u64, 0.95, limit, |r| lat[(r - 1) as usize]);
    rb.note(format!("routed latency {}", j.describe("ms")));
    let mut problems = Vec::new();
    if j.below == Some(false) {
        problems.push(format!("{} is not below {limit} ms", j.describe("ms")));
    }
    if error_pct >= max_err {
        problems.push(format!("{error_pct:.2}% of {n} requests failed (limit {max_err}%)"));
    }
    if problems.is_empty() { Criteria::Met } else { Criteria::Missed(problems) }
}

/// Finishes a check whose own criterion passed with `pass`, unless the load-balancing criteria say otherwise.
fn finish_with(mut rb: ResultBuilder, ctx: &Ctx, samples: &[Sample], service: Duration, pass: String) -> CheckResult {
    match criteria(&mut rb, ctx, samples, service) {
        Criteria::Met => rb.finish(Verdict::Pass, pass),
        Criteria::Missed(p) => rb.finish(Verdict::Fail, p.join("; ")),
        Criteria::Thin(why) => rb.finish(Verdict::Error, why),
    }
}

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

/// Regions ordered from most to least preferred for a location: its `preferences`, else nearest to farthest by
/// its latency table.
fn nearest_order(traffic: &Traffic, location: &str) -> Vec<String> {
    if let Some(p) = traffic.preferences.get(location) {
        return p.clone();
    }
    let mut v: Vec<(String, f64)> =
        traffic.locations.get(location).map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().map(|(k, _)| k).collect()
}

/// The geo check's id: the routing check a located run judges for its own location.
pub const GEO: &str = "cross-region.routing.geo";

/// Whether check `id` judges each located run's own location, so that every located shard runs it.
pub fn is_per_location(id: &str) -> bool {
    id == GEO
}

async fn weighted(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let url = match record(traffic, "weighted") {
        Ok(u) => format!("{u}{}", traffic.probe_path),
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
    let (region, z, off) = worst.unwrap_or_default();
    rb.metric("deviation_sigma_max", z).measured(format!("worst {region} {off:+.1} pts ({z:.1} σ)"));
    if z > 4.0 {
        return rb.finish(
            Verdict::Fail,
            format!("{region} got {off:+.1} percentage points off its weight ({z:.1} σ > 4 σ)"),
        );
    }
    finish_with(
        rb,
        ctx,
        &samples,
        Duration::ZERO,
        format!("split follows the weights; worst {region} {off:+.1} pts ({z:.1} σ)"),
    )
}

async fn health(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let url = match record(traffic, "latency") {
        Ok(u) => format!("{u}{}", traffic.probe_path),
        Err(e) => return rb.finish(Verdict::Skipped, e),
    };
    // A located run drains its own location's nearest region; else the first configured location, by header.
    let picked = match &ctx.location {
        Some(here) => match traffic.nearest.get(here) {
            Some(r) => Some((here.clone(), r.clone())),
            None => return rb.finish(Verdict::Skipped, not_nearest(here)),
        },
        None => traffic.nearest.iter().next().map(|(l, r)| (l.clone(), r.clone())),
    };
    let Some((location, victim)) = picked else {
        return rb.finish(Verdict::Skipped, "no client locations: set [deployment.traffic.nearest]");
    };
    let from = Some(Origin { location, located: ctx.location.is_some() });
    drain(rb, ctx, Drain { record: "latency", url, from, victim, next: None }).await
}

/// Why a routing check that needs its location's nearest region cannot run at a located run's `here`.
fn not_nearest(here: &str) -> String {
    format!(
        "this run is placed at {here} (--location), which has no nearest region: add it to [deployment.traffic] \
         nearest"
    )
}

/// Where a routing check's requests come from: a location named in the location header, or, for a run placed
/// there (`--location`), the run itself, sending without the header for the deployment to place by address.
struct Origin {
    location: String,
    located: bool,
}

impl Origin {
    /// The location to name in the header: none for a located run.
    fn header(&self) -> Option<&str> {
        (!self.located).then_some(self.location.as_str())
    }

    /// For a located run whose location's region served none of its requests: that the run may be elsewhere.
    fn placement_hint(&self) -> String {
        match self.located {
            true => format!("; this run may not be placed at {} (see cross-region.routing.geo)", self.location),
            false => String::new(),
        }
    }

    /// " from LOCATION", for messages; a located run says that it sent no header.
    fn describe(&self) -> String {
        match self.located {
            true => format!(" from {} (this run's location, no location header)", self.location),
            false => format!(" from {}", self.location),
        }
    }
}

async fn failover(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let url = match record(traffic, "failover") {
        Ok(u) => format!("{u}{}", traffic.probe_path),
        Err(e) => return rb.finish(Verdict::Skipped, e),
    };
    let [primary, secondary, ..] = traffic.failover_order.as_slice() else {
        return rb.finish(
            Verdict::Skipped,
            "no failover order: set [deployment.traffic] failover_order = [\"PRIMARY\", \"SECONDARY\"]",
        );
    };
    let (victim, next) = (primary.clone(), Some(secondary.clone()));
    drain(rb, ctx, Drain { record: "failover", url, from: None, victim, next }).await
}

/// What a drain measures: steady traffic through a routing record while one region's health check fails.
struct Drain {
    /// The record's name, for messages.
    record: &'static str,
    /// The URL requested.
    url: String,
    /// Where the requests come from, if the record routes by location.
    from: Option<Origin>,
    /// The region made unhealthy: the one the record prefers.
    victim: String,
    /// Where the record must send the traffic instead, when it names one (the failover record's secondary); the
    /// victim must then also have served nearly all traffic before its health check failed.
    next: Option<String>,
}

/// Makes `d.victim`'s health check fail under steady traffic through `d.url`, measures how long it keeps getting
/// new requests (and, with `d.next`, where the rest went), then makes it healthy again and waits until it is
/// routed to again.
async fn drain(mut rb: ResultBuilder, ctx: &Ctx, d: Drain) -> CheckResult {
    let traffic = ctx.traffic();
    let Drain { record, url, from: origin, victim, next } = d;
    let from = origin.as_ref().map_or(String::new(), Origin::describe);
    let limit_s = ctx.config.targets.health_detection_s;
    let limit = HEALTH_BEFORE + Duration::from_secs_f64(limit_s) + HEALTH_TAIL + Duration::from_secs(2);
    let route = route(traffic, &url, origin.as_ref().and_then(Origin::header));
    let client = client(ctx, 64);
    ctx.progress.phase(&format!("marking {victim} unhealthy under traffic{from} through the {record} record"));
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
    // A victim that served nothing before the fault will not be routed to again either: no wait for it.
    let served_before = samples.iter().any(|x| Some(x.sent) < fault_at && x.served_by.as_deref() == Some(&victim));
    match restored {
        Err(e) => {
            rb.note(format!("restoring the health of {victim} failed: {e}"));
        }
        Ok(()) if !served_before => {}
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
    let victim_share_before = pct(before_victim as u64, before.len());
    rb.metric("detection_s", detection.as_secs_f64()).metric("victim_share_before_pct", victim_share_before);
    // Where the traffic went once the victim was drained: the requests sent after its last one.
    let drained_from = last_victim.unwrap_or(fault_at);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent > drained_from && s.ok()).collect();
    let next_share = next.as_ref().map(|n| {
        let share =
            pct(after.iter().filter(|s| s.served_by.as_deref() == Some(n.as_str())).count() as u64, after.len());
        rb.metric("next_share_after_pct", share);
        (n.clone(), share)
    });
    rb.chart(served_chart(&samples, fault_at, &victim));
    rb.note(format!(
        "steady traffic at {HEALTH_RATE_PER_S} requests/s{from} through the {record} record (preferred region: \
         {victim}); {victim}'s health check was made to fail at t = {:.1} s while it kept serving; detection is the \
         time from then to the last request {victim} served",
        fault_at.as_secs_f64()
    ));
    rb.measured(format!("{:.2} s", detection.as_secs_f64()));
    // The loop stops as soon as the tail is long enough, so allow for the last request's spacing.
    let tail = end.saturating_sub(last_victim.unwrap_or(fault_at)) + Duration::from_secs_f64(2.0 / HEALTH_RATE_PER_S);
    let share_min = ctx.config.targets.routing_share_min_pct;
    if before_victim == 0 && next.is_none() {
        let hint = origin.as_ref().map_or(String::new(), Origin::placement_hint);
        return rb
            .finish(Verdict::Error, format!("{victim} served none of the requests{from} even before the fault{hint}"));
    }
    if next.is_some() && victim_share_before <= share_min {
        return rb.finish(
            Verdict::Fail,
            format!(
                "the {record} record sent only {victim_share_before:.1}% of requests to {victim} while it was \
                 healthy (target > {share_min}%)"
            ),
        );
    }
    if detection.as_secs_f64() > limit_s || tail < HEALTH_TAIL {
        return rb.finish(
            Verdict::Fail,
            format!(
                "{victim} still received requests {:.1} s after it turned unhealthy (limit {limit_s} s)",
                detection.as_secs_f64()
            ),
        );
    }
    if let Some((n, share)) = &next_share
        && *share <= share_min
    {
        return rb.finish(
            Verdict::Fail,
            format!(
                "after {victim} turned unhealthy only {share:.1}% of the requests went to {n} (target > {share_min}%)"
            ),
        );
    }
    let moved = next_share.map_or(String::new(), |(n, share)| format!(", {share:.1}% went to {n}"));
    let pass = format!(
        "{victim} got no new requests {:.2} s after turning unhealthy, and none in the next {:.1} s{moved}",
        detection.as_secs_f64(),
        tail.as_secs_f64()
    );
    finish_with(rb, ctx, &samples, Duration::ZERO, pass)
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
        Ok(u) => format!("{u}{}?work_ms={CAPACITY_WORK_MS}", traffic.probe_path),
        Err(e) => return rb.finish(Verdict::Skipped, e),
    };
    // A located run fills its own location's nearest region; else the location whose nearest region has the
    // smallest capacity, the cheapest to fill, named by header.
    let limited = |(l, r): (&String, &String)| traffic.capacity.get(r).map(|c| (l.clone(), r.clone(), *c));
    let pick = match &ctx.location {
        Some(here) => match traffic.nearest.get_key_value(here) {
            None => return rb.finish(Verdict::Skipped, not_nearest(here)),
            Some((l, r)) if !traffic.capacity.contains_key(r) => {
                return rb.finish(
                    Verdict::Skipped,
                    format!(
                        "this run is placed at {l} (--location), whose nearest region {r} has no capacity limit: \
                         set [deployment.traffic.capacity] {r}"
                    ),
                );
            }
            Some(lr) => limited(lr),
        },
        None => traffic.nearest.iter().filter_map(limited).min_by_key(|x| x.2),
    };
    let Some((location, region, cap)) = pick else {
        return rb.finish(Verdict::Skipped, "no capacity limits: set [deployment.traffic.capacity]");
    };
    let origin = Origin { location: location.clone(), located: ctx.location.is_some() };
    let order = nearest_order(traffic, &location);
    let Some(next) = order.iter().find(|r| **r != region).cloned() else {
        return rb.finish(
            Verdict::Skipped,
            format!(
                "no order of preferred regions for {location}: set [deployment.traffic] preferences.{location} = \
                 [\"{region}\", \"NEXT\"] (or a latency table in locations.{location})"
            ),
        );
    };
    // 1.5 times the capacity: a third of the demand must overflow, and it fits in the next region's capacity
    // (the lab gives every region the same), so all of it should land there.
    let concurrency = (3 * cap as usize / 2).clamp(2, 3_000);
    let n = (concurrency as f64 * CAPACITY_DURATION.as_secs_f64() * 1000.0 / CAPACITY_WORK_MS as f64) as usize;
    ctx.progress
        .phase(&format!("{concurrency} requests in flight from {location}: 1.5 times {region}'s capacity {cap}"));
    let client = client(ctx, concurrency);
    let route = route(traffic, &url, origin.header());
    // One unmeasured round first opens the connections, so that the measured rounds judge routing under
    // capacity, not a storm of TLS handshakes (the load checks measure those).
    let _ = fire(&client, &route, concurrency, concurrency).await;
    let samples = fire(&client, &route, n, concurrency).await;
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
        "{n} requests, each holding the server {CAPACITY_WORK_MS} ms, {concurrency} at a time{}, after \
         one unmeasured round that opened the connections; \
         {region} (nearest) has capacity {cap}, so about a third must overflow, to {next} (next preferred)",
        origin.describe()
    ));
    rb.measured(format!("{:.0}% overflow, {error_pct:.2}% errors", pct(overflow, samples.len())));
    let max_err = ctx.config.targets.error_rate_max_pct;
    if at_region == 0 {
        // Every request "overflowed": the record never sent this location to its nearest region at all, which is
        // a routing failure, not overflow (a run that is not where it says it is shows this too).
        let hint = origin.placement_hint();
        rb.finish(
            Verdict::Fail,
            format!("{region}, {location}'s nearest region, served none of the {} requests{hint}", samples.len()),
        )
    } else if overflow == 0 {
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
            format!("only {next_pct_of_overflow:.1}% of the overflow went to the next preferred region {next}"),
        )
    } else {
        let pass = format!(
            "{:.0}% overflowed, {next_pct_of_overflow:.0}% of it to {next}; {error_pct:.2}% errors",
            pct(overflow, samples.len())
        );
        finish_with(rb, ctx, &samples, Duration::from_millis(CAPACITY_WORK_MS), pass)
    }
}
