//! Recording: each worker owns a `Recorder` (per-request histograms, status and error counts, captured header
//! values, and the histogram of its current window). At every window boundary a worker hands its window to the
//! shared `WindowMerger`, which adds the workers' windows together and keeps only a summary once all have
//! reported, so memory stays constant however long the run is. Worker recorders merge at the end.

use crate::result::{ErrorCounts, Latency, RequestStats, Window, new_histogram};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An open-model iteration sent later than this after its intended start counts as `late`: above the timer's
/// 1 ms granularity and scheduling jitter, below any lag worth reporting.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(5);
/// Distinct values counted per captured header and request name; the rest count as `other`.
pub const HEADER_VALUES_MAX: usize = 64;
/// Highest status code counted individually; anything above counts as 999.
const STATUS_MAX: usize = 999;
/// Windows a merger keeps open waiting for slow workers before closing the oldest regardless.
const PENDING_WINDOWS_MAX: usize = 16;

/// The counts of one captured header for one request name.
#[derive(Debug, Default)]
struct HeaderCounts {
    values: BTreeMap<String, u64>,
    other: u64,
}

/// What a worker records for one request name.
#[derive(Debug)]
pub(crate) struct ReqRec {
    count: u64,
    errors: u64,
    /// Every completed request, answered or failed (corrected in the open model).
    latency: Histogram<u64>,
    latency_uncorrected: Histogram<u64>,
    /// The failed ones: 4xx/5xx responses, and requests without a response (connect, timeout, protocol).
    latency_errors: Histogram<u64>,
    headers: Vec<HeaderCounts>,
}

/// What a worker records for one phase of the plan.
#[derive(Debug)]
struct PhaseRec {
    /// Start, µs after the run's start.
    from_us: u64,
    /// End (excluded), µs after the run's start.
    to_us: u64,
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// What a worker records for its current window.
#[derive(Debug)]
struct WinRec {
    index: u64,
    requests: u64,
    errors: u64,
    active_max: u32,
    latency: Histogram<u64>,
}

/// A worker's recorder.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    window_us: u64,
    open_model: bool,
    capture: Arc<[String]>,
    per_req: Vec<ReqRec>,
    statuses: Box<[u64]>,
    pub errors: ErrorCounts,
    win: WinRec,
    /// The plan's phases, in plan order.
    phases: Vec<PhaseRec>,
    merger: Arc<Mutex<WindowMerger>>,
    /// Current active VUs (closed) or iterations in flight (open).
    gauge: u32,
    pub gauge_max: u32,
    pub late: u64,
    pub late_lag_us_max: u64,
    pub dropped: u64,
    pub interrupted: u64,
    pub reconnects: u64,
    pub connections_opened: u64,
    pub last_completion: Option<Instant>,
}

impl Recorder {
    pub(crate) fn new(
        start: Instant,
        window: Duration,
        open_model: bool,
        requests: usize,
        capture: Arc<[String]>,
        merger: Arc<Mutex<WindowMerger>>,
        phases: &[crate::plan::Phase],
    ) -> Recorder {
        let per_req = (0..requests)
            .map(|_| ReqRec {
                count: 0,
                errors: 0,
                latency: new_histogram(),
                // The closed model has no intended start, so its uncorrected latency is the latency.
                latency_uncorrected: if open_model { new_histogram() } else { Histogram::new(1).expect("valid") },
                latency_errors: new_histogram(),
                headers: capture.iter().map(|_| HeaderCounts::default()).collect(),
            })
            .collect();
        Recorder {
            start,
            window_us: window.as_micros().max(1) as u64,
            open_model,
            capture,
            per_req,
            statuses: vec![0; STATUS_MAX + 1].into_boxed_slice(),
            errors: ErrorCounts::default(),
            win: WinRec { index: 0, requests: 0, errors: 0, active_max: 0, latency: new_histogram() },
            phases: phases
                .iter()
                .map(|p| PhaseRec {
                    from_us: p.from_ms.saturating_mul(1000),
                    to_us: p.to_ms.saturating_mul(1000),
                    requests: 0,
                    errors: 0,
                    latency: new_histogram(),
                })
                .collect(),
            merger,
            gauge: 0,
            gauge_max: 0,
            late: 0,
            late_lag_us_max: 0,
            dropped: 0,
            interrupted: 0,
            reconnects: 0,
            connections_opened: 0,
            last_completion: None,
        }
    }

    /// Moves the current window forward to the one holding `now`, handing finished ones to the merger.
    pub(crate) fn roll(&mut self, now: Instant) {
        let index = (now.saturating_duration_since(self.start).as_micros() as u64 / self.window_us)
            .min(crate::plan::WINDOWS_MAX - 1);
        while self.win.index < index {
            self.flush_window();
            self.win.index += 1;
            self.win.active_max = self.gauge;
        }
    }

    fn flush_window(&mut self) {
        let w = &mut self.win;
        self.merger.lock().expect("window merger lock").add(w.index, w.requests, w.errors, w.active_max, &w.latency);
        w.requests = 0;
        w.errors = 0;
        w.latency.reset();
    }

    /// Flushes the current window at the end of the run.
    pub(crate) fn finish(&mut self, now: Instant) {
        self.roll(now);
        self.flush_window();
    }

    /// Sets the gauge (active VUs or iterations in flight).
    pub(crate) fn set_gauge(&mut self, v: u32) {
        self.gauge = v;
        self.gauge_max = self.gauge_max.max(v);
        self.win.active_max = self.win.active_max.max(v);
    }

    /// Current gauge.
    pub(crate) fn gauge(&self) -> u32 {
        self.gauge
    }

    /// Counts the captured headers of a response head.
    pub(crate) fn on_head(&mut self, req: usize, headers: &[httparse::Header<'_>]) {
        if self.capture.is_empty() {
            return;
        }
        let rec = &mut self.per_req[req];
        for h in headers {
            for (i, name) in self.capture.iter().enumerate() {
                if !h.name.eq_ignore_ascii_case(name) {
                    continue;
                }
                let counts = &mut rec.headers[i];
                let value = std::str::from_utf8(h.value).unwrap_or("<not utf-8>").trim();
                if let Some(c) = counts.values.get_mut(value) {
                    *c += 1;
                } else if counts.values.len() < HEADER_VALUES_MAX {
                    counts.values.insert(value.to_string(), 1);
                } else {
                    counts.other += 1;
                }
            }
        }
    }

    /// Records a response. `corrected_us` is from the intended start (open model), `uncorrected_us` from the send.
    pub(crate) fn response(&mut self, req: usize, now: Instant, status: u16, corrected_us: u64, uncorrected_us: u64) {
        self.roll(now);
        self.last_completion = Some(now);
        self.statuses[usize::from(status).min(STATUS_MAX)] += 1;
        let is_error = status >= 400;
        let rec = &mut self.per_req[req];
        rec.count += 1;
        rec.latency.saturating_record(corrected_us.max(1));
        if self.open_model {
            rec.latency_uncorrected.saturating_record(uncorrected_us.max(1));
        }
        self.win.requests += 1;
        self.win.latency.saturating_record(corrected_us.max(1));
        if is_error {
            rec.errors += 1;
            rec.latency_errors.saturating_record(corrected_us.max(1));
            self.errors.status += 1;
            self.win.errors += 1;
        }
        self.in_phases(now, is_error, Some(corrected_us));
    }

    /// Counts a completed request and its latency in every phase that holds `now`.
    fn in_phases(&mut self, now: Instant, is_error: bool, latency_us: Option<u64>) {
        let t_us = now.saturating_duration_since(self.start).as_micros() as u64;
        for p in self.phases.iter_mut().filter(|p| p.from_us <= t_us && t_us < p.to_us) {
            p.requests += 1;
            p.errors += u64::from(is_error);
            if let Some(us) = latency_us {
                p.latency.saturating_record(us.max(1));
            }
        }
    }

    /// Records a request that got no response. It keeps its latency, in the histogram of every request (so a
    /// timeout raises the percentiles, as in k6's `http_req_duration`) and in the error histogram.
    pub(crate) fn failure(
        &mut self,
        req: usize,
        now: Instant,
        f: crate::http::Failure,
        corrected_us: u64,
        uncorrected_us: u64,
    ) {
        self.roll(now);
        self.last_completion = Some(now);
        match f {
            crate::http::Failure::Connect => self.errors.connect += 1,
            crate::http::Failure::Timeout => self.errors.timeout += 1,
            crate::http::Failure::Protocol => self.errors.protocol += 1,
        }
        let rec = &mut self.per_req[req];
        rec.count += 1;
        rec.errors += 1;
        rec.latency.saturating_record(corrected_us.max(1));
        rec.latency_errors.saturating_record(corrected_us.max(1));
        if self.open_model {
            rec.latency_uncorrected.saturating_record(uncorrected_us.max(1));
        }
        self.win.requests += 1;
        self.win.errors += 1;
        self.win.latency.saturating_record(corrected_us.max(1));
        self.in_phases(now, true, Some(corrected_us));
    }

    /// Records the lag of an iteration sent after its intended start.
    pub(crate) fn lag(&mut self, lag: Duration) {
        if lag > LATE_THRESHOLD {
            self.late += 1;
            self.late_lag_us_max = self.late_lag_us_max.max(lag.as_micros() as u64);
        }
    }

    /// Adds another worker's totals into this one (windows were merged already).
    pub(crate) fn merge(&mut self, o: Recorder) {
        for (a, b) in self.per_req.iter_mut().zip(o.per_req) {
            a.count += b.count;
            a.errors += b.errors;
            a.latency.add(&b.latency).expect("same bounds");
            a.latency_errors.add(&b.latency_errors).expect("same bounds");
            if self.open_model {
                a.latency_uncorrected.add(&b.latency_uncorrected).expect("same bounds");
            }
            for (ha, hb) in a.headers.iter_mut().zip(b.headers) {
                ha.other += hb.other;
                for (v, c) in hb.values {
                    if let Some(x) = ha.values.get_mut(&v) {
                        *x += c;
                    } else if ha.values.len() < HEADER_VALUES_MAX {
                        ha.values.insert(v, c);
                    } else {
                        ha.other += c;
                    }
                }
            }
        }
        for (a, b) in self.statuses.iter_mut().zip(o.statuses.iter()) {
            *a += b;
        }
        for (a, b) in self.phases.iter_mut().zip(o.phases) {
            a.requests += b.requests;
            a.errors += b.errors;
            a.latency.add(&b.latency).expect("same bounds");
        }
        self.errors.add(&o.errors);
        self.gauge_max += o.gauge_max;
        self.late += o.late;
        self.late_lag_us_max = self.late_lag_us_max.max(o.late_lag_us_max);
        self.dropped += o.dropped;
        self.interrupted += o.interrupted;
        self.reconnects += o.reconnects;
        self.connections_opened += o.connections_opened;
        self.last_completion = self.last_completion.max(o.last_completion);
    }

    /// The phases' statistics by name (`names` in plan order).
    pub(crate) fn phase_stats(&self, names: &[crate::plan::Phase]) -> BTreeMap<String, crate::result::PhaseStats> {
        names
            .iter()
            .zip(&self.phases)
            .map(|(n, p)| {
                let stats = crate::result::PhaseStats {
                    requests: p.requests,
                    errors: p.errors,
                    latency: Latency(p.latency.clone()),
                };
                (n.name.clone(), stats)
            })
            .collect()
    }

    /// Status counts, per-request statistics, and total requests.
    pub(crate) fn into_stats(self, names: &[String]) -> (BTreeMap<u16, u64>, BTreeMap<String, RequestStats>, u64) {
        let statuses: BTreeMap<u16, u64> =
            self.statuses.iter().enumerate().filter(|(_, c)| **c > 0).map(|(s, c)| (s as u16, *c)).collect();
        let mut total = 0;
        let mut per = BTreeMap::new();
        for (name, r) in names.iter().zip(self.per_req) {
            total += r.count;
            let header_counts = self
                .capture
                .iter()
                .zip(r.headers)
                .map(|(h, mut c)| {
                    if c.other > 0 {
                        *c.values.entry("other".into()).or_default() += c.other;
                    }
                    (h.clone(), c.values)
                })
                .collect();
            let latency_uncorrected =
                if self.open_model { Latency(r.latency_uncorrected) } else { Latency(r.latency.clone()) };
            per.insert(
                name.clone(),
                RequestStats {
                    count: r.count,
                    errors: r.errors,
                    latency: Latency(r.latency),
                    latency_uncorrected,
                    latency_errors: Latency(r.latency_errors),
                    header_counts,
                },
            );
        }
        (statuses, per, total)
    }
}

/// A window being added up from the workers.
#[derive(Debug)]
struct PendingWindow {
    requests: u64,
    errors: u64,
    active_max: u32,
    reported: usize,
    latency: Option<Histogram<u64>>,
}

/// Adds the workers' windows together and keeps a summary of each.
#[derive(Debug)]
pub(crate) struct WindowMerger {
    workers: usize,
    window: Duration,
    pending: BTreeMap<u64, PendingWindow>,
    done: BTreeMap<u64, Window>,
    /// Told of each window as it closes (a late part of a window is told as a window of its own), while the run
    /// runs.
    sink: Option<std::sync::mpsc::Sender<Window>>,
}

impl WindowMerger {
    pub(crate) fn new(workers: usize, window: Duration, sink: Option<std::sync::mpsc::Sender<Window>>) -> WindowMerger {
        WindowMerger { workers, window, pending: BTreeMap::new(), done: BTreeMap::new(), sink }
    }

    fn add(&mut self, index: u64, requests: u64, errors: u64, active_max: u32, latency: &Histogram<u64>) {
        let p = self.pending.entry(index).or_insert(PendingWindow {
            requests: 0,
            errors: 0,
            active_max: 0,
            reported: 0,
            latency: None,
        });
        p.requests += requests;
        p.errors += errors;
        p.active_max += active_max;
        p.reported += 1;
        if !latency.is_empty() {
            p.latency.get_or_insert_with(new_histogram).add(latency).expect("same bounds");
        }
        if p.reported >= self.workers {
            self.close(index);
        }
        while self.pending.len() > PENDING_WINDOWS_MAX {
            let oldest = *self.pending.keys().next().expect("not empty");
            self.close(oldest);
        }
    }

    fn close(&mut self, index: u64) {
        let Some(p) = self.pending.remove(&index) else { return };
        let width_s = self.window.as_secs_f64();
        let q = |q: f64| p.latency.as_ref().map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0);
        let part = Window {
            start_s: index as f64 * width_s,
            requests: p.requests,
            errors: p.errors,
            throughput_per_s: p.requests as f64 / width_s,
            latency_ms_p50: q(0.5),
            latency_ms_p95: q(0.95),
            latency_ms_p99: q(0.99),
            active_max: p.active_max,
            rate_scheduled_per_s: None,
        };
        // The sink gets this part alone, so that a receiver adding the parts up counts each request once; a
        // receiver that went away stops being told.
        if let Some(sink) = &self.sink
            && sink.send(part.clone()).is_err()
        {
            self.sink = None;
        }
        match self.done.entry(index) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(part);
            }
            // A window closed early (a slow worker) may get a late part; counts add, percentiles keep the first
            // part that had requests.
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let w = e.get_mut();
                if w.requests == 0 {
                    (w.latency_ms_p50, w.latency_ms_p95, w.latency_ms_p99) =
                        (part.latency_ms_p50, part.latency_ms_p95, part.latency_ms_p99);
                }
                w.requests += part.requests;
                w.errors += part.errors;
                w.active_max = w.active_max.max(part.active_max);
                w.throughput_per_s = w.requests as f64 / width_s;
            }
        }
    }

    /// Closes every window and returns them in order, up to `last` included.
    pub(crate) fn finish(&mut self, last: u64) -> Vec<Window> {
        let open: Vec<u64> = self.pending.keys().copied().collect();
        for i in open {
            self.close(i);
        }
        // The run is over: its receiver sees the end of the stream.
        self.sink = None;
        std::mem::take(&mut self.done).into_iter().filter(|(i, _)| *i <= last).map(|(_, w)| w).collect()
    }
}
