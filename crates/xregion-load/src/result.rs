//! The result of a run, as data: totals, errors by kind, status counts, per-request latency histograms (corrected
//! and uncorrected), captured header values, per-window series for charts, and threshold outcomes.
//!
//! Histograms serialize as a compact list of `[value_us, count]` pairs (each value the top of its bucket), which
//! rebuilds the same histogram on reading and stays readable in the JSON.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use xregion_model::report::Distribution;

/// Largest latency a histogram holds, in µs (one hour); larger values are clamped to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits of every latency histogram.
pub const LATENCY_SIGFIG: u8 = 3;

/// A new, empty latency histogram (µs).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG).expect("constant histogram bounds are valid")
}

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency(pub Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(new_histogram())
    }
}

impl PartialEq for Latency {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

#[derive(Serialize, Deserialize)]
struct LatencyRepr {
    unit: String,
    counts: Vec<(u64, u64)>,
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let counts = self.0.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        LatencyRepr { unit: "us".into(), counts }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr = LatencyRepr::deserialize(d)?;
        if repr.unit != "us" {
            return Err(serde::de::Error::custom(format!("latency unit {:?}, expected \"us\"", repr.unit)));
        }
        let mut h = new_histogram();
        for (v, c) in repr.counts {
            h.saturating_record_n(v, c);
        }
        Ok(Latency(h))
    }
}

/// Failed requests by kind. A request that got a 4xx or 5xx response counts as `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// The connection could not be made (refused, reset, unreachable).
    pub connect: u64,
    /// No complete response within the request timeout.
    pub timeout: u64,
    /// A 4xx or 5xx response (`statuses` has them by code).
    pub status: u64,
    /// A malformed response, or the server closed the connection mid-response.
    pub protocol: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.status + self.protocol
    }

    pub(crate) fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.status += o.status;
        self.protocol += o.protocol;
    }
}

/// Everything about one request name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    /// Requests completed (answered or failed).
    pub count: u64,
    /// Of which failed.
    pub errors: u64,
    /// Latency of every completed request, answered or failed (like k6's `http_req_duration`: a timed-out request
    /// counts its full wait, so timeouts raise the percentiles), µs. Open model: from the intended start
    /// (corrected); closed model: from the send. The headline percentiles and latency thresholds use it.
    pub latency: Latency,
    /// Latency from the actual send, µs; equal to `latency` in the closed model.
    pub latency_uncorrected: Latency,
    /// The failed requests of `latency` alone (4xx/5xx responses, connect errors, timeouts, protocol errors), µs.
    #[serde(default)]
    pub latency_errors: Latency,
    /// For each captured header, the count of each value (`other` past the distinct-value bound).
    pub header_counts: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One chart window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start, in seconds after the run's start.
    pub start_s: f64,
    /// Requests completed in the window.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Completed requests per second.
    pub throughput_per_s: f64,
    /// Corrected latency percentiles of the requests completed in the window, failed ones included, ms (0 without
    /// requests).
    pub latency_ms_p50: f64,
    /// 95th percentile, ms.
    pub latency_ms_p95: f64,
    /// 99th percentile, ms.
    pub latency_ms_p99: f64,
    /// Closed model: most active VUs; open model: most iterations in flight.
    pub active_max: u32,
    /// Open model: the scheduled rate at the middle of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_scheduled_per_s: Option<f64>,
}

/// What one phase of a run recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// Requests completed in the phase.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Latency of the requests completed in the phase, failed ones included (corrected in the open model), µs.
    pub latency: Latency,
}

impl PhaseStats {
    /// Percentage of the phase's requests that failed.
    pub fn error_pct(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { 100.0 * self.errors as f64 / self.requests as f64 }
    }
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// Wall time from the start to the last response, seconds.
    pub duration_s: f64,
    /// `closed` or `open`.
    pub model: String,
    /// Seed of the weighted request choice.
    pub seed: u64,
    /// Worker threads used.
    pub workers: u32,
    /// Requests completed (answered or failed).
    pub requests: u64,
    /// Requests per second over `duration_s`.
    #[serde(default)]
    pub requests_per_s: RequestRates,
    /// Failed requests by kind.
    pub errors: ErrorCounts,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Per request name.
    pub per_request: BTreeMap<String, RequestStats>,
    /// Effective window width, ms.
    pub window_ms: u64,
    /// Per-window series, in order.
    pub windows: Vec<Window>,
    /// Closed model: most active VUs; open model: most iterations in flight.
    pub vus_max: u32,
    /// Open model: iterations sent more than `LATE_THRESHOLD` after their intended start.
    pub late: u64,
    /// The largest such lag, ms.
    pub late_lag_ms_max: f64,
    /// Open model: iterations not started because `max_in_flight` was reached.
    pub dropped: u64,
    /// Iterations still in progress when the drain after the schedule ended (request timeout) ran out.
    pub interrupted: u64,
    /// Connections opened again after the server closed one, or after an error.
    pub reconnects: u64,
    /// Connections opened in all.
    pub connections_opened: u64,
    /// Outcome of each threshold of the plan.
    pub thresholds: Vec<ThresholdResult>,
    /// Peak resident memory of the generator process, when it ran in its own process (`load-worker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes_peak: Option<u64>,
    /// The plan's phases by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<String, PhaseStats>,
}

/// Requests per second, of successful requests and of all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRates {
    /// Successful requests (a response below 400) per second.
    pub ok: f64,
    /// Completed requests, successful or failed, per second (what `rps` thresholds judge).
    pub total: f64,
}

/// The outcome of one threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The threshold as written.
    pub threshold: String,
    /// Whether it held.
    pub pass: bool,
    /// The measured value, in `unit`; absent when there was nothing to measure (which fails).
    pub measured: Option<f64>,
    /// Unit of `measured`: `ms`, `ratio`, `per_s` or `count`.
    pub unit: String,
    /// Why there was nothing to measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Latency percentiles in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// 50th percentile.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of a µs histogram, in ms.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

impl LoadResult {
    /// Corrected latency of every request name together, failed requests included.
    pub fn latency_all(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for s in self.per_request.values() {
            h.add(&s.latency.0).expect("histograms share bounds");
        }
        h
    }

    /// Uncorrected latency of every request name together.
    pub fn latency_uncorrected_all(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for s in self.per_request.values() {
            h.add(&s.latency_uncorrected.0).expect("histograms share bounds");
        }
        h
    }

    /// Corrected percentiles of one request name, or of all when `name` is `None`.
    pub fn percentiles(&self, name: Option<&str>) -> Option<Percentiles> {
        match name {
            None => Some(Percentiles::of(&self.latency_all())),
            Some(n) => self.per_request.get(n).map(|s| Percentiles::of(&s.latency.0)),
        }
    }

    /// Uncorrected percentiles of one request name, or of all when `name` is `None`.
    pub fn percentiles_uncorrected(&self, name: Option<&str>) -> Option<Percentiles> {
        match name {
            None => Some(Percentiles::of(&self.latency_uncorrected_all())),
            Some(n) => self.per_request.get(n).map(|s| Percentiles::of(&s.latency_uncorrected.0)),
        }
    }

    /// Requests per second over the run, failed ones included.
    pub fn rps(&self) -> f64 {
        if self.duration_s > 0.0 { self.requests as f64 / self.duration_s } else { 0.0 }
    }

    /// Successful requests (a response below 400) per second over the run.
    pub fn rps_ok(&self) -> f64 {
        let ok = self.requests.saturating_sub(self.errors.total());
        if self.duration_s > 0.0 { ok as f64 / self.duration_s } else { 0.0 }
    }

    /// Failed requests of every request name together (their latencies).
    pub fn latency_errors_all(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for s in self.per_request.values() {
            h.add(&s.latency_errors.0).expect("histograms share bounds");
        }
        h
    }

    /// Whether every threshold passed (true without thresholds).
    pub fn thresholds_pass(&self) -> bool {
        self.thresholds.iter().all(|t| t.pass)
    }

    /// The corrected latency of `name` (or of all requests for `*`) as a report distribution in ms.
    pub fn to_distribution(&self, name: &str) -> Option<Distribution> {
        let h = if name == "*" { self.latency_all() } else { self.per_request.get(name)?.latency.0.clone() };
        Some(distribution(name, &h))
    }
}

/// A µs histogram as a report distribution in ms, with buckets doubling from 100 µs.
pub fn distribution(name: &str, h: &Histogram<u64>) -> Distribution {
    let mut percentiles = Vec::new();
    let mut buckets = Vec::new();
    if !h.is_empty() {
        for q in [50.0, 90.0, 95.0, 99.0, 99.9] {
            percentiles.push((q, h.value_at_quantile(q / 100.0) as f64 / 1000.0));
        }
        percentiles.push((100.0, h.max() as f64 / 1000.0));
        for v in h.iter_log(100, 2.0) {
            buckets.push((v.value_iterated_to() as f64 / 1000.0, v.count_since_last_iteration()));
        }
    }
    Distribution { name: name.to_string(), count: h.len(), unit: "ms".into(), percentiles, buckets }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a result survives a JSON round trip with its histograms intact, status keys included.
    #[test]
    fn json_round_trip() {
        let mut h = new_histogram();
        for v in [1u64, 999, 1_000, 1_234_567, LATENCY_US_MAX] {
            h.record(v).unwrap();
        }
        let mut r = LoadResult { duration_s: 1.5, requests: 5, model: "open".into(), ..Default::default() };
        r.statuses.insert(200, 4);
        r.statuses.insert(503, 1);
        r.per_request.insert(
            "a".into(),
            RequestStats {
                count: 5,
                latency: Latency(h.clone()),
                latency_uncorrected: Latency(h),
                ..Default::default()
            },
        );
        let json = serde_json::to_string(&r).unwrap();
        let back: LoadResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let p = back.percentiles(Some("a")).unwrap();
        assert_eq!(p.count, 5);
        let d = back.to_distribution("a").unwrap();
        assert_eq!(d.count, 5);
        assert_eq!(d.buckets.iter().map(|b| b.1).sum::<u64>(), 5);
    }
}
