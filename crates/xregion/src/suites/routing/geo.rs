//! `cross-region.routing.geo`: every client location is served by its nearest region. Locations are named in the
//! location header, or, for a run placed at a location (`--location`), sent without it for the deployment to
//! place by address; `xregion merge` judges the located shards' observations together.

use super::{CONCURRENCY, by_region, client, finish_with, pct, record, route};
use crate::check::{Ctx, ResultBuilder};
use crate::drive::routed::{Sample, fire};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_model::report::{CheckResult, Table, Verdict};

/// Requests sent per client location by the geo check.
const GEO_REQUESTS_PER_LOCATION: usize = 200;
/// Locations the geo check sends from at once.
const GEO_LOCATIONS_AT_ONCE: usize = 4;

/// Key of the geo check's observations in `Ctx::shared`: a located shard keeps them for `xregion merge`, which
/// puts the union of the shards' there before it runs the check.
pub const GEO_SHARED: &str = "geo";

/// What one client location reached through one routing record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GeoObservation {
    /// The record (`latency` or `geolocation`).
    pub record: String,
    /// The client location.
    pub location: String,
    /// The region the record must pick for it.
    pub expected: String,
    /// Sent from the location itself (`--location`, no header), for the deployment to place by address; else
    /// the location was named in the location header.
    pub located: bool,
    /// The requests.
    pub samples: Vec<Sample>,
}

/// One run's geo measurement, as a shard keeps it: its observations, or why it has none.
pub type GeoMeasured = Result<Vec<GeoObservation>, String>;

/// What the geo check judges (under `GEO_SHARED`): what the locations reached, and the located runs that could
/// not measure theirs.
#[derive(Debug, Clone, Default)]
pub struct GeoEvidence {
    /// What each location reached through each record.
    pub observations: Vec<GeoObservation>,
    /// Sent from runs placed at their locations (`--location`, no header); else the header named them.
    pub located: bool,
    /// Located runs that measured nothing: each one's location, and why.
    pub unmeasured: Vec<(String, String)>,
}

/// Sends `GEO_REQUESTS_PER_LOCATION` requests per location through the latency and geolocation records: from
/// every configured location by header, or, for a located run, from its own location without the header.
async fn measure_geo(ctx: &Ctx) -> GeoMeasured {
    let traffic = ctx.traffic();
    let client = client(ctx, CONCURRENCY * GEO_LOCATIONS_AT_ONCE);
    let mut observations = Vec::new();
    for (record_name, expected_map) in [("latency", &traffic.nearest), ("geolocation", &traffic.geolocation)] {
        let locations: Vec<(&String, &String)> = match &ctx.location {
            Some(here) => expected_map.get_key_value(here).into_iter().collect(),
            None => expected_map.iter().collect(),
        };
        if locations.is_empty() {
            continue;
        }
        let url = match record(traffic, record_name) {
            Ok(u) => format!("{u}{}", traffic.probe_path),
            Err(e) if record_name == "latency" => return Err(e),
            Err(_) => continue,
        };
        ctx.progress.phase(&match &ctx.location {
            Some(here) => format!("{record_name} record from here ({here})"),
            None => format!("{record_name} record from {} locations", locations.len()),
        });
        // A few locations at once: which region serves a request depends on its location alone.
        let located = ctx.location.is_some();
        let batches: Vec<_> = futures::stream::iter(locations.into_iter().map(|(location, expected)| {
            let route = route(traffic, &url, (!located).then_some(location.as_str()));
            let client = &client;
            async move { (location, expected, fire(client, &route, GEO_REQUESTS_PER_LOCATION, CONCURRENCY).await) }
        }))
        .buffered(GEO_LOCATIONS_AT_ONCE)
        .collect()
        .await;
        for (location, expected, samples) in batches {
            if samples.iter().all(|s| s.status.is_none()) {
                let e = samples.first().and_then(|s| s.error.clone()).unwrap_or_default();
                return Err(format!("the {record_name} record at {url}: {e}"));
            }
            observations.push(GeoObservation {
                record: record_name.to_string(),
                location: location.clone(),
                expected: expected.clone(),
                located,
                samples,
            });
        }
    }
    Ok(observations)
}

pub(super) async fn geo(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let traffic = ctx.traffic();
    let target = ctx.config.targets.routing_share_min_pct;
    if traffic.nearest.is_empty() {
        return rb.finish(Verdict::Skipped, "no client locations: set [deployment.traffic.nearest]");
    }
    // Measured here, or (in `xregion merge`) the located shards' observations, put there before.
    let measure = async {
        let located = ctx.location.is_some();
        measure_geo(ctx).await.map(|observations| GeoEvidence { observations, located, unmeasured: Vec::new() })
    };
    let (measured, _) = ctx.shared.get_or_compute(GEO_SHARED, measure).await;
    let GeoEvidence { observations, located, unmeasured } = match measured.as_ref() {
        Ok(e) => e,
        Err(e) => return rb.finish(Verdict::Error, e.clone()),
    };
    let located = *located;
    let mut rows = Vec::new();
    let mut worst: Option<(String, f64)> = None;
    let mut all = Vec::new();
    // Two runs at one location add up.
    let mut merged: BTreeMap<(&str, &str), (&str, Vec<&Sample>)> = BTreeMap::new();
    for o in observations {
        let entry = merged.entry((o.record.as_str(), o.location.as_str())).or_insert((o.expected.as_str(), Vec::new()));
        entry.1.extend(&o.samples);
    }
    for ((record_name, location), (expected, samples)) in &merged {
        let samples: Vec<Sample> = samples.iter().map(|s| (*s).clone()).collect();
        let counts = by_region(&samples);
        let share = pct(counts.get(*expected).copied().unwrap_or(0), samples.len());
        rb.metric(&format!("share_pct.{record_name}.{location}"), share);
        if worst.as_ref().is_none_or(|w| share < w.1) {
            worst = Some((format!("{location} via {record_name}"), share));
        }
        let served = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
        rows.push(vec![
            record_name.to_string(),
            location.to_string(),
            expected.to_string(),
            format!("{share:.1}"),
            served,
            samples.len().to_string(),
        ]);
        all.extend(samples);
    }
    rb.table(Table {
        title: "Share of requests served by the expected region".into(),
        columns: vec![
            "record".into(),
            "location".into(),
            "expected".into(),
            "share %".into(),
            "served by".into(),
            "requests".into(),
        ],
        rows,
    });
    if located {
        let reached: std::collections::BTreeSet<&str> = merged.keys().map(|(_, l)| *l).collect();
        rb.note(format!(
            "{GEO_REQUESTS_PER_LOCATION} requests per record from each run placed at a location (--location), with \
             no location header: the deployment placed them by where they came from. Locations reached: {}",
            reached.iter().copied().collect::<Vec<_>>().join(", ")
        ));
        let configured: std::collections::BTreeSet<&String> =
            traffic.nearest.keys().chain(traffic.geolocation.keys()).collect();
        let tried = |l: &str| reached.contains(l) || unmeasured.iter().any(|(u, _)| u == l);
        let missing: Vec<&str> = configured.into_iter().map(String::as_str).filter(|l| !tried(l)).collect();
        if !missing.is_empty() {
            rb.metric("locations_not_reached", missing.len() as f64);
            rb.note(format!(
                "not judged, as no run was placed there: {} (run a shard at each with --location)",
                missing.join(", ")
            ));
        }
    } else {
        rb.note(format!(
            "{GEO_REQUESTS_PER_LOCATION} requests per location and record, {CONCURRENCY} at a time from each of \
             {GEO_LOCATIONS_AT_ONCE} locations at once, with the location in the {} header; the serving region is \
             read from {}. A router that places clients by their address (as DNS latency and geolocation records \
             do) ignores the header: run shards at real locations with --location to judge it",
            traffic.location_header, traffic.served_by_header
        ));
    }
    let unmeasured = unmeasured.iter().map(|(l, why)| format!("{l} {why}")).collect::<Vec<_>>().join("; ");
    if !unmeasured.is_empty() {
        rb.note(format!("located runs that measured nothing: {unmeasured}"));
    }
    let Some((where_, share)) = worst else {
        if !unmeasured.is_empty() {
            return rb.finish(Verdict::Error, format!("no located run measured its location: {unmeasured}"));
        }
        let why = if located {
            "no location to test: this run's location has no record to test (a geolocation-only location needs \
             the geolocation record)"
        } else {
            "no location to test"
        };
        return rb.finish(Verdict::Skipped, why);
    };
    rb.metric("share_pct_min", share).measured(format!("worst {share:.1}% ({where_})"));
    if share <= target {
        return rb.finish(
            Verdict::Fail,
            format!("{where_}: only {share:.1}% served by the expected region (target > {target}%)"),
        );
    }
    if !unmeasured.is_empty() {
        return rb.finish(
            Verdict::Error,
            format!(
                "the locations measured reached their regions (worst {share:.1}%), but not every located run \
                 measured: {unmeasured}"
            ),
        );
    }
    finish_with(
        rb,
        ctx,
        &all,
        Duration::ZERO,
        format!(
            "every location {} reached its expected region; worst {share:.1}% ({where_})",
            if located { "a run was placed at" } else { "named by header" }
        ),
    )
}
