//! Open-model load through the region clients, for regions the HTTP load generator cannot reach (databases),
//! recorded exactly as the generator records its own runs: a `LoadResult`, so the checks judge both alike.
//!
//! Every request stream is paced by `pace::open_model` (request `i` due at `start + i / rate`, whatever happened
//! to the ones before it); latency runs from the due time (corrected for coordinated omission), with the latency
//! from the actual send kept beside it. A request that finds `in_flight_max` of its stream still running is not
//! sent: it is counted as dropped and as a failed request of its stream, since a user would have waited on it.
//! The load runs in xregion's process, and what it loads (the databases) runs in theirs.

use crate::drive::pace::{Pace, open_model};
use crate::probe::{Probe, ProbeError};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_load::result::{ErrorCounts, LoadResult, RequestRates, RequestStats, Window, new_histogram};

/// Width of a chart window, ms.
const WINDOW_MS: u64 = 1_000;

/// What one request stream does.
#[derive(Debug, Clone)]
pub enum DirectOp {
    /// Read this key.
    Read(String),
    /// Write this value under this key.
    Write(String, String),
}

/// One request stream: its name in the result, the region client it goes through, and its rate.
#[derive(Debug, Clone)]
pub struct DirectSpec {
    /// Request name, as `LoadResult::per_request` keys it.
    pub name: String,
    /// The region's client.
    pub probe: Probe,
    /// What each request does.
    pub op: DirectOp,
    /// Requests per second.
    pub rate_per_s: f64,
}

/// Everything recorded so far.
#[derive(Default)]
struct Acc {
    per_request: BTreeMap<String, RequestStats>,
    errors: ErrorCounts,
    /// Window index to (corrected latency, requests, errors).
    windows: BTreeMap<u64, (Histogram<u64>, u64, u64)>,
    late: u64,
    late_lag_ms_max: f64,
    dropped: u64,
}

impl Acc {
    /// Records one request of `name` that was due at `due`, sent at `sent` and ended at `ended`.
    fn record(
        &mut self,
        t0: Instant,
        name: &str,
        due: Instant,
        sent: Instant,
        ended: Instant,
        error: Option<&ProbeError>,
    ) {
        let us = |d: Duration| (d.as_micros() as u64).max(1);
        let s = self.per_request.entry(name.to_string()).or_default();
        s.count += 1;
        s.latency.0.saturating_record(us(ended - due));
        s.latency_uncorrected.0.saturating_record(us(ended - sent));
        let lag = sent.saturating_duration_since(due);
        if lag > xregion_load::engine::LATE_THRESHOLD {
            self.late += 1;
            self.late_lag_ms_max = self.late_lag_ms_max.max(lag.as_secs_f64() * 1000.0);
        }
        if let Some(e) = error {
            s.errors += 1;
            s.latency_errors.0.saturating_record(us(ended - due));
            match e {
                ProbeError::Unreachable { .. } => self.errors.connect += 1,
                ProbeError::Timeout { .. } => self.errors.timeout += 1,
                ProbeError::Status { .. } | ProbeError::Refused { .. } => self.errors.status += 1,
                _ => self.errors.protocol += 1,
            }
        }
        let w =
            self.windows.entry((ended - t0).as_millis() as u64 / WINDOW_MS).or_insert_with(|| (new_histogram(), 0, 0));
        w.0.saturating_record(us(ended - due));
        w.1 += 1;
        w.2 += u64::from(error.is_some());
    }
}

/// Runs every stream of `specs` at its rate for `duration`, at most `in_flight_max` requests of a stream at once,
/// and evaluates `thresholds` (the generator's syntax) on the result.
pub async fn run(
    specs: Vec<DirectSpec>,
    duration: Duration,
    in_flight_max: usize,
    thresholds: &[String],
) -> Result<LoadResult, String> {
    let thresholds = thresholds
        .iter()
        .map(|t| t.parse::<xregion_load::threshold::Threshold>().map_err(|e| format!("threshold {t:?}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    let acc = Arc::new(Mutex::new(Acc::default()));
    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let streams = specs.into_iter().map(|spec| {
        let (acc, stop) = (acc.clone(), stop.clone());
        async move {
            let pace = Pace::new(spec.rate_per_s, in_flight_max).starting(t0).until(t0 + duration);
            let op = |_, due: Instant| {
                let (acc, spec) = (acc.clone(), spec.clone());
                async move {
                    let sent = Instant::now();
                    let result = match &spec.op {
                        DirectOp::Read(key) => spec.probe.get(key).await.map(|_| ()),
                        DirectOp::Write(key, value) => spec.probe.put(key, value).await.map(|_| ()),
                    };
                    let ended = Instant::now();
                    let mut acc = acc.lock().unwrap_or_else(|p| p.into_inner());
                    acc.record(t0, &spec.name, due, sent, ended, result.as_ref().err());
                }
            };
            let dropped = |_, _| {
                let mut acc = acc.lock().unwrap_or_else(|p| p.into_inner());
                acc.dropped += 1;
                let s = acc.per_request.entry(spec.name.clone()).or_default();
                s.count += 1;
                s.errors += 1;
            };
            open_model(pace, &stop, op, dropped).await;
        }
    });
    futures::future::join_all(streams).await;
    let duration_s = t0.elapsed().as_secs_f64();
    let acc = std::mem::take(&mut *acc.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(result(acc, duration_s, &thresholds))
}

/// The `LoadResult` of what `acc` recorded over `duration_s`.
fn result(acc: Acc, duration_s: f64, thresholds: &[xregion_load::threshold::Threshold]) -> LoadResult {
    let requests: u64 = acc.per_request.values().map(|s| s.count).sum();
    let failed: u64 = acc.per_request.values().map(|s| s.errors).sum();
    let q = |h: &Histogram<u64>, p: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(p) as f64 / 1000.0 };
    let windows = acc
        .windows
        .iter()
        .map(|(i, (h, n, e))| Window {
            start_s: (*i * WINDOW_MS) as f64 / 1000.0,
            requests: *n,
            errors: *e,
            throughput_per_s: *n as f64 * 1000.0 / WINDOW_MS as f64,
            latency_ms_p50: q(h, 0.50),
            latency_ms_p95: q(h, 0.95),
            latency_ms_p99: q(h, 0.99),
            active_max: 0,
            rate_scheduled_per_s: None,
        })
        .collect();
    let mut errors = acc.errors;
    // Dropped requests were never sent; they count as failed, as connect errors of the client side.
    errors.connect += acc.dropped;
    let mut r = LoadResult {
        duration_s,
        model: "open (through the region clients)".into(),
        requests,
        requests_per_s: RequestRates {
            ok: (requests - failed) as f64 / duration_s.max(1e-9),
            total: requests as f64 / duration_s.max(1e-9),
        },
        errors,
        per_request: acc.per_request,
        window_ms: WINDOW_MS,
        windows,
        late: acc.late,
        late_lag_ms_max: acc.late_lag_ms_max,
        dropped: acc.dropped,
        ..LoadResult::default()
    };
    r.thresholds = thresholds.iter().map(|t| t.evaluate(&r)).collect();
    r
}
