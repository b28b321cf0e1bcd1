//! Live metrics: `xregion run --out prometheus-rw=URL` pushes the run's metrics while it runs, as k6's Prometheus
//! remote-write output does, every `PUSH_INTERVAL` and once more when the last check has landed.
//!
//! What it sends (Prometheus remote-write 1.0: protobuf `WriteRequest`, snappy block-compressed), each series
//! labelled `job="xregion"` and `run` (the run's key prefix, unique per run):
//! - `xregion_run_elapsed_seconds`: at every push, so that a run shows from its first push;
//! - `xregion_operations_total{region, op, outcome}`: the history's completed operations so far (`op` read,
//!   write or delete; `outcome` ok, fail or info), so `rate()` is the request rate and the error rate;
//! - `xregion_operations_per_second{region}` and `xregion_operation_latency_ms{region, quantile}` (0.5, 0.95,
//!   0.99) over the last interval, from each operation's invoke and completion;
//! - the load generator's requests, from its chart windows as its process closes them (about every second):
//!   `xregion_load_requests_total` and `xregion_load_errors_total` over the run, and over the windows closed since
//!   the last push `xregion_load_requests_per_second`, `xregion_load_error_rate_pct`,
//!   `xregion_load_latency_ms{quantile}` (the latest window's corrected P50/P95/P99) and
//!   `xregion_load_active_users`;
//! - `xregion_replication_lag_ms{from, to}` and `xregion_replication_pending_entries{from, to}`: each region's
//!   `GET /v1/replication` read at every push (regions without it are left out);
//! - `xregion_check_verdict{check, verdict}` (1), `xregion_check_duration_seconds{check}` and
//!   `xregion_check_metric{check, metric}` for every check that has landed, and `xregion_checks{verdict}`.
//!
//! A push that fails (unreachable receiver, non-2xx) never fails the run: the first error is printed once, and
//! the run ends with a line counting pushes and failures.

use crate::history::HistoryLog;
use crate::probe::Probe;
use crate::progress::Event;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use xregion_check::stats::LatencyRecorder;
use xregion_model::history::{EventType, OpFn};
use xregion_model::report::CheckResult;

/// How often metrics are pushed while the run runs (k6's default too).
pub const PUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest one push (or one region's replication read) may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The `--out` prefix that names a remote-write receiver.
pub const PROMETHEUS_RW: &str = "prometheus-rw=";

/// Remote-write 1.0 messages (prometheus/prompb/types.proto, remote.proto).
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// One series' value at one push: its name, its labels, its value.
type Point = (&'static str, Vec<(&'static str, String)>, f64);

/// What has been counted from the history so far.
#[derive(Default)]
struct Tally {
    /// Index of the next history event to read.
    cursor: usize,
    /// Invoke time of each process's open operation, in ns from the run's start.
    open: HashMap<u32, u64>,
    /// Completed operations by (region, op, outcome).
    totals: BTreeMap<(String, &'static str, &'static str), u64>,
    /// When the last interval began.
    since: Option<Instant>,
}

/// What the load generator has told of its windows so far.
#[derive(Default)]
struct LoadTally {
    /// Requests completed, and of which failed, over the run.
    requests: u64,
    errors: u64,
    /// Windows closed since the last push.
    fresh: Vec<xregion_load::result::Window>,
}

/// The live metrics of one run, pushed to one receiver.
pub struct Live {
    url: String,
    client: reqwest::Client,
    run: String,
    history: Arc<HistoryLog>,
    probes: Vec<Probe>,
    tally: Mutex<Tally>,
    load: Mutex<LoadTally>,
    /// The series of every check that has landed, and the checks by verdict.
    landed: Mutex<(Vec<Point>, BTreeMap<&'static str, u64>)>,
    /// Pushes sent, pushes failed, and the first failure.
    outcome: Mutex<(u64, u64, Option<String>)>,
    /// When the live metrics started (the run's checks are about to start).
    started: Instant,
}

impl Live {
    /// Live metrics for the run `run` (its key prefix), read from `history` and `probes`, pushed to `url`.
    pub fn new(url: &str, run: &str, history: Arc<HistoryLog>, probes: Vec<Probe>) -> Arc<Live> {
        let client = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .user_agent(concat!("xregion/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Live {
            url: url.to_string(),
            client,
            run: run.to_string(),
            history,
            probes,
            tally: Mutex::new(Tally::default()),
            load: Mutex::new(LoadTally::default()),
            landed: Mutex::new((Vec::new(), BTreeMap::new())),
            outcome: Mutex::new((0, 0, None)),
            started: Instant::now(),
        })
    }

    /// An event of the run: a check that landed, or a load window that closed.
    pub fn observe(&self, e: Event<'_>) {
        match e {
            Event::Landed(r) => self.landed(r),
            Event::LoadWindow(w) => {
                let mut l = crate::drive::lock(&self.load);
                l.requests += w.requests;
                l.errors += w.errors;
                l.fresh.push(w.clone());
            }
        }
    }

    /// A check has landed: its verdict and metrics go out with the next push.
    fn landed(&self, r: &CheckResult) {
        let verdict = r.verdict.as_str();
        let check = || ("check", r.id.clone());
        let mut l = crate::drive::lock(&self.landed);
        *l.1.entry(verdict).or_default() += 1;
        l.0.push(("xregion_check_verdict", vec![check(), ("verdict", verdict.to_string())], 1.0));
        l.0.push(("xregion_check_duration_seconds", vec![check()], r.duration_s));
        for (metric, v) in r.metrics.iter().filter(|(_, v)| v.is_finite()) {
            l.0.push(("xregion_check_metric", vec![check(), ("metric", metric.clone())], *v));
        }
    }

    /// Pushes every `PUSH_INTERVAL` until `stop`, then once more.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.push().await,
                _ = stop.cancelled() => break,
            }
        }
        self.push().await;
    }

    /// One line for the console: where the metrics went and how many pushes failed.
    pub fn summary(&self) -> String {
        let (sent, failed, first) = crate::drive::lock(&self.outcome).clone();
        match first {
            Some(e) => format!("live metrics: {sent} pushes to {}, {failed} failed (first: {e})", self.url),
            None => format!("live metrics: {sent} pushes to {}, none failed", self.url),
        }
    }

    /// Collects every series and sends one write request.
    async fn push(&self) {
        let mut points: Vec<Point> =
            vec![("xregion_run_elapsed_seconds", Vec::new(), self.started.elapsed().as_secs_f64())];
        points.extend(self.operations());
        points.extend(self.load());
        points.extend(self.replication().await);
        points.extend(self.checks());
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let body = encode(&points, &[("job", "xregion".to_string()), ("run", self.run.clone())], now_ms);
        let result = match body {
            Ok(body) => self.send(body).await,
            Err(e) => Err(format!("cannot compress the write request: {e}")),
        };
        let mut o = crate::drive::lock(&self.outcome);
        o.0 += 1;
        if let Err(e) = result {
            o.1 += 1;
            if o.2.is_none() {
                eprintln!("warning: live metrics: a push to {} failed: {e}; the run goes on", self.url);
                o.2 = Some(e);
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|e| crate::faults::root_cause(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(format!("HTTP {status}: {}", text.trim().chars().take(200).collect::<String>()))
    }

    /// The history's operations since the last push.
    fn operations(&self) -> Vec<Point> {
        let mut t = crate::drive::lock(&self.tally);
        let now = Instant::now();
        let elapsed = t.since.map_or(PUSH_INTERVAL, |s| now - s).as_secs_f64().max(1e-3);
        t.since = Some(now);
        let mut latency: BTreeMap<String, LatencyRecorder> = BTreeMap::new();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let Tally { cursor, open, totals, .. } = &mut *t;
        *cursor = self.history.visit_since(*cursor, |e| {
            if e.kind == EventType::Invoke {
                open.insert(e.process, e.time_ns);
                return;
            }
            let op = match e.f {
                OpFn::Read => "read",
                OpFn::Write => "write",
                OpFn::Delete => "delete",
            };
            let outcome = match e.kind {
                EventType::Ok => "ok",
                EventType::Fail => "fail",
                EventType::Info | EventType::Invoke => "info",
            };
            *totals.entry((e.region.clone(), op, outcome)).or_default() += 1;
            *counts.entry(e.region.clone()).or_default() += 1;
            if let Some(t0) = open.remove(&e.process) {
                let took = Duration::from_nanos(e.time_ns.saturating_sub(t0));
                latency.entry(e.region.clone()).or_default().record(took);
            }
        });
        let mut points: Vec<Point> = totals
            .iter()
            .map(|((region, op, outcome), n)| {
                let labels = vec![("region", region.clone()), ("op", op.to_string()), ("outcome", outcome.to_string())];
                ("xregion_operations_total", labels, *n as f64)
            })
            .collect();
        for (region, n) in &counts {
            points.push(("xregion_operations_per_second", vec![("region", region.clone())], *n as f64 / elapsed));
        }
        for (region, h) in latency {
            for q in [0.5, 0.95, 0.99] {
                let labels = vec![("region", region.clone()), ("quantile", q.to_string())];
                points.push(("xregion_operation_latency_ms", labels, h.value_ms_at(q * 100.0)));
            }
        }
        points
    }

    /// The load generator's requests: totals over the run, and the windows closed since the last push (their
    /// rate, the latest one's percentiles, their most active users).
    fn load(&self) -> Vec<Point> {
        let mut l = crate::drive::lock(&self.load);
        if l.requests == 0 && l.fresh.is_empty() {
            return Vec::new();
        }
        let mut points = vec![
            ("xregion_load_requests_total", Vec::new(), l.requests as f64),
            ("xregion_load_errors_total", Vec::new(), l.errors as f64),
        ];
        let fresh = std::mem::take(&mut l.fresh);
        // Parts of one window (a late part) share its start: the rate is over the distinct windows.
        let windows: std::collections::BTreeSet<u64> = fresh.iter().map(|w| w.start_s.to_bits()).collect();
        if let Some(last) = fresh.iter().rev().find(|w| w.requests > 0).or(fresh.last()) {
            let per_window_s: f64 = fresh.iter().map(|w| w.throughput_per_s).sum::<f64>() / windows.len() as f64;
            points.push(("xregion_load_requests_per_second", Vec::new(), per_window_s));
            let errors: u64 = fresh.iter().map(|w| w.errors).sum();
            let requests: u64 = fresh.iter().map(|w| w.requests).sum();
            let error_pct = if requests == 0 { 0.0 } else { 100.0 * errors as f64 / requests as f64 };
            points.push(("xregion_load_error_rate_pct", Vec::new(), error_pct));
            for (q, v) in [("0.5", last.latency_ms_p50), ("0.95", last.latency_ms_p95), ("0.99", last.latency_ms_p99)] {
                points.push(("xregion_load_latency_ms", vec![("quantile", q.to_string())], v));
            }
            let active = fresh.iter().map(|w| w.active_max).max().unwrap_or(0);
            points.push(("xregion_load_active_users", Vec::new(), f64::from(active)));
        }
        points
    }

    /// Each region's replication lag and backlog to each peer, where the region reports them.
    async fn replication(&self) -> Vec<Point> {
        let reads = self.probes.iter().filter(|p| p.capabilities().http_contract).map(|p| async move {
            tokio::time::timeout(PUSH_TIMEOUT, p.replication()).await.ok().and_then(|r| r.ok())
        });
        let mut points = Vec::new();
        for status in futures::future::join_all(reads).await.into_iter().flatten() {
            for peer in &status.peers {
                let labels = vec![("from", status.region.clone()), ("to", peer.region.clone())];
                points.push(("xregion_replication_lag_ms", labels.clone(), peer.lag_ms as f64));
                points.push(("xregion_replication_pending_entries", labels, peer.pending_entries as f64));
            }
        }
        points
    }

    /// Every landed check's verdict, duration and metrics, and the checks by verdict.
    fn checks(&self) -> Vec<Point> {
        let l = crate::drive::lock(&self.landed);
        let mut points = l.0.clone();
        for (verdict, n) in &l.1 {
            points.push(("xregion_checks", vec![("verdict", verdict.to_string())], *n as f64));
        }
        points
    }
}

/// The snappy-compressed `WriteRequest` of `points`, each with `common` labels, at `timestamp_ms`.
fn encode(points: &[Point], common: &[(&str, String)], timestamp_ms: i64) -> Result<Vec<u8>, snap::Error> {
    use prost::Message;
    let timeseries = points
        .iter()
        .map(|(name, labels, value)| {
            let mut l: Vec<prompb::Label> = std::iter::once(("__name__", name.to_string()))
                .chain(common.iter().map(|(k, v)| (*k, v.clone())))
                .chain(labels.iter().map(|(k, v)| (*k, v.clone())))
                .map(|(name, value)| prompb::Label { name: name.to_string(), value })
                .collect();
            // The specification asks for labels sorted by name.
            l.sort_by(|a, b| a.name.cmp(&b.name));
            prompb::TimeSeries { labels: l, samples: vec![prompb::Sample { value: *value, timestamp: timestamp_ms }] }
        })
        .collect();
    snap::raw::Encoder::new().compress_vec(&prompb::WriteRequest { timeseries }.encode_to_vec())
}

/// Splits `--out` values into the report directory (the one value that names no receiver; `xregion-out` when
/// none does) and the remote-write receivers' URLs.
pub fn split_outs(outs: &[String]) -> Result<(std::path::PathBuf, Vec<String>), String> {
    let mut dirs = Vec::new();
    let mut receivers = Vec::new();
    for o in outs {
        match o.strip_prefix(PROMETHEUS_RW) {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => receivers.push(url.to_string()),
            Some(url) => {
                return Err(format!("--out {o}: the receiver must be an http:// or https:// URL, not {url:?}"));
            }
            None => dirs.push(std::path::PathBuf::from(o)),
        }
    }
    match dirs.len() {
        0 => Ok((std::path::PathBuf::from("xregion-out"), receivers)),
        1 => Ok((dirs.remove(0), receivers)),
        _ => Err("--out names more than one report directory; give one, plus any prometheus-rw=URL".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Goal: a write request decodes back to its series, labels sorted with `__name__` first, one sample each.
    #[test]
    fn write_requests_round_trip_through_snappy_and_protobuf() {
        let points: Vec<Point> =
            vec![("xregion_replication_lag_ms", vec![("to", "b".into()), ("from", "a".into())], 42.0)];
        let body = encode(&points, &[("job", "xregion".into())], 1_700_000_000_000).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = prompb::WriteRequest::decode(raw.as_slice()).unwrap();
        let names: Vec<&str> = req.timeseries[0].labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "from", "job", "to"]);
        assert_eq!(req.timeseries[0].samples, [prompb::Sample { value: 42.0, timestamp: 1_700_000_000_000 }]);
    }

    /// Goal: `--out` takes one directory and any number of receivers; a receiver must be a URL.
    #[test]
    fn outs_split_into_a_directory_and_receivers() {
        let (dir, rw) = split_outs(&["prometheus-rw=http://127.0.0.1:9090/api/v1/write".into()]).unwrap();
        assert_eq!((dir.to_str().unwrap(), rw.len()), ("xregion-out", 1));
        let (dir, rw) = split_outs(&["out".into()]).unwrap();
        assert_eq!((dir.to_str().unwrap(), rw.len()), ("out", 0));
        assert!(split_outs(&["a".into(), "b".into()]).is_err());
        assert!(split_outs(&["prometheus-rw=localhost:9090".into()]).unwrap_err().contains("http://"));
    }
}
