//! The parts of a failover check's report that every judgement shares: the timeline charts, the notes on
//! method, the history findings, the RTO figures and the verdict.

use super::scenario::{Outcome, attempts, short};
use super::{FAULT_REQUESTS_MIN, WINDOW_SAMPLES_MIN};
use crate::check::{Ctx, ResultBuilder};
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_check::recovery::{self, Recovery, WindowRule};
use xregion_check::stats::LatencyRecorder;
use xregion_model::report::{Chart, CheckResult, Marker, Series, Table, Verdict};

pub(super) fn secs(ms: f64) -> f64 {
    ms / 1000.0
}

/// The timeline charts of a scenario: success rate, latency and per-region traffic, with the fault and the
/// recovery marked.
pub(super) fn timeline(rb: &mut ResultBuilder, o: &Outcome) {
    let all = attempts(&o.canary);
    let mut markers = vec![Marker { t_s: secs(o.fault_ms), label: format!("{} {}", o.victim, o.spec.kind) }];
    if let Some(at) = o.recovery.recovered_at_ms.filter(|at| *at > o.fault_ms) {
        markers.push(Marker { t_s: secs(at), label: "clients recovered".into() });
    }
    markers.push(Marker { t_s: secs(o.restore_ms), label: "restored".into() });
    if let Some(at) = o.users_back_ms {
        markers.push(Marker { t_s: secs(at), label: "users back".into() });
    }
    let window_rule = WindowRule { step_ms: o.rule.window_ms.min(250.0).max(o.rule.step_ms), ..o.rule };
    let ws = recovery::windows(&all, 0.0, o.end_ms, &window_rule);
    let success: Vec<(f64, f64)> =
        ws.iter().filter(|w| w.total > 0).map(|w| (secs(w.start_ms + o.rule.window_ms), w.success_pct())).collect();
    rb.chart(Chart {
        title: format!("Client success rate ({} ms sliding window)", o.rule.window_ms),
        y_unit: "%".into(),
        series: vec![Series { name: "success".into(), points: success }],
        markers: markers.clone(),
    });
    // Latency per second of successful requests.
    let mut by_second: BTreeMap<u64, LatencyRecorder> = BTreeMap::new();
    for a in all.iter().filter(|a| a.ok) {
        by_second
            .entry((a.t_ms / 1000.0) as u64)
            .or_default()
            .record(Duration::from_secs_f64(a.latency_ms.max(0.0) / 1000.0));
    }
    let pick = |p: f64| by_second.iter().map(|(s, r)| (*s as f64 + 0.5, r.value_ms_at(p))).collect::<Vec<_>>();
    rb.chart(Chart {
        title: "Latency of successful client requests".into(),
        y_unit: "ms".into(),
        series: vec![
            Series { name: "p50".into(), points: pick(50.0) },
            Series { name: "p99".into(), points: pick(99.0) },
        ],
        markers: markers.clone(),
    });
    let per_region = recovery::per_region_rate(&all, 0.0, o.end_ms, 500.0);
    rb.chart(Chart {
        title: "Successful requests per serving region".into(),
        y_unit: "req/s".into(),
        series: per_region
            .into_iter()
            .map(|(name, pts)| Series { name, points: pts.into_iter().map(|(t, v)| (secs(t), v)).collect() })
            .collect(),
        markers,
    });
}

pub(super) fn scenario_notes(rb: &mut ResultBuilder, o: &Outcome) {
    let from = if o.canaries_in_regions {
        "in each surviving region through that region's own database client (which follows the writer)"
    } else {
        "from each client location through the latency routing record"
    };
    rb.note(format!(
        "canary clients sent {:.0} requests/s {from} (half writes of fresh keys, half reads), open model, no \
         client-side retries; a request counts as failed on any non-2xx answer other than 404, a database error, or \
         a transport error",
        o.canary_rate
    ));
    rb.note(format!(
        "the fault was timed on xregion's side just before the injector was called; injecting took {:.0} ms",
        o.inject_ms
    ));
    rb.note(format!(
        "RTO: {} ms windows every {} ms, judged when they hold at least {} requests; a window recovers at {}% \
         success; RTO runs from the fault to the start of the first window after the last bad one",
        o.rule.window_ms, o.rule.step_ms, o.rule.min_samples, o.rule.threshold_pct
    ));
    for e in &o.errors {
        rb.note(e.clone());
    }
}

/// Findings of the history checkers, with their tables; returns (problems, acked writes).
pub(super) fn history_findings(rb: &mut ResultBuilder, o: &Outcome) -> (Vec<String>, u64) {
    let mut problems = Vec::new();
    let (c, w, l) = match &o.judged {
        Ok(x) => x,
        Err(e) => return (vec![format!("the history could not be judged: {e}")], 0),
    };
    for (k, v) in c.metrics().into_iter().chain(w.metrics()).chain(l.metrics()) {
        rb.metric(&k, v);
    }
    if !w.lost.is_empty() {
        problems.push(format!(
            "{} acknowledged writes lost for good (missing from {} region copies)",
            w.lost_writes(),
            w.lost.len()
        ));
        rb.table(w.to_table());
    }
    if !l.passed() {
        problems.push(format!("{} wrong last-write-wins winners", l.violations.len()));
        rb.table(l.to_table());
    }
    if !c.passed() {
        problems.push(format!("{} keys differ between regions", c.divergent.len()));
        rb.table(c.to_table());
    }
    let other = w.findings() - w.lost.len();
    if other > 0 {
        problems.push(format!("{other} corrupt, phantom or failed-but-visible values"));
    }
    if o.converged_after.is_none() {
        problems.push("the regions did not converge after the restore".into());
    }
    (problems, w.counts.acked_writes)
}

pub(super) fn finish(mut rb: ResultBuilder, o: &Outcome, problems: Vec<String>, pass: String) -> CheckResult {
    if !o.errors.is_empty() {
        return rb.finish(Verdict::Error, o.errors.join("; "));
    }
    rb.metric("evidence_min_requests", FAULT_REQUESTS_MIN as f64);
    if let Some(thin) = thin_evidence(&o.recovery) {
        return rb.finish(Verdict::Error, thin);
    }
    if problems.is_empty() { rb.finish(Verdict::Pass, pass) } else { rb.finish(Verdict::Fail, problems.join("; ")) }
}

/// Why the canaries during the fault are too few to judge, if they are: fewer than `FAULT_REQUESTS_MIN` requests
/// from the fault to the restore, or no window with enough requests to judge. A scenario without them has no
/// evidence of what clients saw, so it never passes.
pub(super) fn thin_evidence(r: &Recovery) -> Option<String> {
    if r.total < FAULT_REQUESTS_MIN {
        return Some(format!(
            "not enough evidence ({} of {FAULT_REQUESTS_MIN} canary requests during the fault): check that the \
             latency record answers from the configured client locations",
            r.total
        ));
    }
    if r.judged_windows == 0 {
        return Some(format!(
            "not enough evidence (no window of the fault held {} requests; {} windows were too thin)",
            WINDOW_SAMPLES_MIN, r.thin_windows
        ));
    }
    None
}

pub(super) fn rto_text(o: &Outcome) -> String {
    match o.recovery.rto_ms {
        Some(r) => format!("RTO {:.1} s", secs(r)),
        None => format!("not recovered within the {:.0} s observed", secs(o.restore_ms - o.fault_ms)),
    }
}

pub(super) fn rto_problem(ctx: &Ctx, o: &Outcome) -> Option<String> {
    let target = ctx.config.targets.rto_s;
    match o.recovery.rto_ms {
        Some(r) if secs(r) <= target => None,
        Some(r) => Some(format!("RTO {:.1} s is above {target} s", secs(r))),
        None => Some(format!(
            "clients had not recovered when the observation ended {:.0} s after the fault (target {target} s)",
            secs(o.restore_ms - o.fault_ms)
        )),
    }
}

pub(super) fn recovery_metrics(rb: &mut ResultBuilder, o: &Outcome) {
    let r = &o.recovery;
    rb.metric("rto_ms", r.rto_ms.unwrap_or(-1.0));
    rb.metric("availability_pct", r.availability_pct());
    rb.metric("requests_during_fault", r.total as f64);
    rb.metric("failed_during_fault", r.failed as f64);
    rb.metric("bad_windows", r.bad_windows as f64);
    rb.metric("judged_windows", r.judged_windows as f64);
    rb.metric("thin_windows", r.thin_windows as f64);
    rb.metric("worst_window_pct", r.worst_window_pct);
    rb.metric("observed_after_fault_ms", o.restore_ms - o.fault_ms);
}

pub(super) fn failure_table(o: &Outcome) -> Table {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for c in o.canary.iter().filter(|c| !c.attempt.ok && c.attempt.t_ms >= o.fault_ms && c.attempt.t_ms < o.restore_ms)
    {
        let e = c.error.clone().unwrap_or_default();
        *by.entry(format!("{} {}: {}", c.location, if c.write { "write" } else { "read" }, short(&e))).or_default() +=
            1;
    }
    Table {
        title: "Failed client requests during the fault".into(),
        columns: vec!["location, operation and error".into(), "requests".into()],
        rows: by.into_iter().map(|(k, n)| vec![k, n.to_string()]).collect(),
    }
}
