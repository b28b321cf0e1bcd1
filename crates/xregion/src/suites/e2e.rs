//! The `cross-region.e2e.*` checks: the seed's business flows (registration and order, fulfillment, payment) as
//! journeys from the configured journey file (`[e2e] journeys`), judged by the seed's criteria (every step
//! succeeds, every journey completes within its deadline, 30 s by default) and by the file's invariants over what
//! every region holds afterwards (`xregion_check::invariant`).
//!
//! A step refused with an expected status (409 for a taken e-mail, say) ends its journey without failing it only
//! where an invariant judges that step, so that its liveness side decides whether the refusal was right.

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder};
use crate::journey::fault;
use crate::journey::run::{self, End, Outcome, Run, Target};
use crate::journey::spec::{Invariant, Journey};
use crate::measure;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_check::invariant::{Judged, Kind, Subject};
use xregion_check::stats::LatencyRecorder;
use xregion_model::report::{CheckResult, Table, Verdict, Waterfall, WaterfallStep};

/// Violations listed in the report, at most, per check.
const VIOLATIONS_LISTED_MAX: usize = 50;

/// Failed runs listed in the report, at most.
const FAILED_LISTED_MAX: usize = 20;

const NEEDS: Needs = Needs { regions_min: 2, contract: false, keys: false, ..Needs::NONE };

/// The promise every e2e check holds the journeys to.
fn target(_: &crate::config::Config) -> String {
    "every step succeeds, every invariant holds, each journey within its deadline (30 s)".to_string()
}

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "cross-region.e2e.registration-order",
        title: "customers register and order in every region: every step succeeds and every region agrees",
        target,
        needs: NEEDS,
        run: measure!(registration_order),
    },
    CheckDef {
        id: "cross-region.e2e.fulfillment",
        title: "concurrent orders from every region for scarce stock: never oversold, refused only when sold out",
        target,
        needs: NEEDS,
        run: measure!(fulfillment),
    },
    CheckDef {
        id: "cross-region.e2e.payment",
        title: "payments retried across regions: every paid order charged exactly once",
        target,
        needs: NEEDS,
        run: measure!(payment),
    },
];

async fn registration_order(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    journeys(rb, ctx, "registration-order").await
}

async fn fulfillment(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    journeys(rb, ctx, "fulfillment").await
}

async fn payment(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    journeys(rb, ctx, "payment").await
}

/// Where journeys go: each region's `app`, else its endpoint; a region with neither cannot take journeys.
pub(crate) fn app_target(ctx: &Ctx) -> Result<Target, String> {
    let mut regions = Vec::new();
    for probe in &ctx.probes {
        let configured = ctx.config.deployment.regions.iter().find(|r| r.name == probe.region);
        let url = match configured.and_then(|r| r.app.clone()) {
            Some(app) => app,
            None if probe.capabilities().http_contract || !probe.capabilities().keys => probe.endpoint.clone(),
            None => {
                return Err(format!(
                    "region {} has only a database; journeys need its application API: set app for it",
                    probe.region
                ));
            }
        };
        regions.push((probe.region.clone(), url.trim_end_matches('/').to_string()));
    }
    let d = &ctx.config.deployment;
    let client = crate::net::client_builder(d, crate::net::Role::Write)
        .connect_timeout(Duration::from_millis(d.connect_timeout_ms))
        .timeout(Duration::from_millis(d.request_timeout_ms))
        .build()
        .map_err(|e| format!("cannot build the journeys' HTTP client: {e}"))?;
    let run: String = ctx.key_prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let router =
        ctx.traffic.as_ref().and_then(|t| t.records.get("latency")).map(|u| u.trim_end_matches('/').to_string());
    Ok(Target { regions, client, run, seed: ctx.seed, router })
}

/// Runs check `check`'s journeys: setup ones first, then the rest at once; then judges every invariant on them.
async fn journeys(mut rb: ResultBuilder, ctx: &Ctx, check: &str) -> CheckResult {
    let Some(loaded) = &ctx.config.journeys else {
        return rb
            .finish(Verdict::Skipped, "no journeys to run: set [e2e] journeys to a journey file (docs/journeys.md)");
    };
    let file = &loaded.file;
    let all: Vec<&Journey> = file.journeys_of(check).collect();
    if all.iter().all(|j| j.setup) {
        return rb.finish(Verdict::Skipped, format!("{} has no journey for {check}", loaded.path.display()));
    }
    let target = match app_target(ctx) {
        Ok(t) => t,
        Err(why) => return rb.finish(Verdict::Skipped, why),
    };
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    for j in all.iter().filter(|j| j.setup) {
        ctx.progress.phase(&format!("setup journey {} ({} runs)", j.name, j.instances));
        let runs = run::run_journey(&target, j, &cancel, None).await;
        if let Some(r) = runs.iter().find(|r| r.end != End::Completed) {
            return rb.finish(Verdict::Error, format!("setup journey {} did not complete: {}", j.name, end_text(r)));
        }
    }
    let main: Vec<&Journey> = all.iter().copied().filter(|j| !j.setup).collect();
    let invariants: Vec<&Invariant> =
        file.invariants.iter().filter(|i| main.iter().any(|j| j.name == i.journey)).collect();
    let mut before: BTreeMap<usize, Vec<Subject>> = BTreeMap::new();
    for (n, inv) in invariants.iter().enumerate().filter(|(_, i)| i.kind() == Kind::Conservation) {
        ctx.progress.phase(&format!("invariant {}: reading every region before the journeys", inv.name));
        let Some(j) = file.journey(&inv.journey) else { continue };
        let mut subjects: Vec<Subject> = run::planned_keys(&target, j, &inv.per)
            .into_iter()
            .map(|key| Subject { key, ..Subject::default() })
            .collect();
        run::read_before(&target, inv, &mut subjects).await;
        before.insert(n, subjects);
    }
    let runs_total: u32 = main.iter().map(|j| j.instances).sum();
    ctx.progress.phase(&format!(
        "{runs_total} runs of {} across {} regions",
        main.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(", "),
        target.regions.len()
    ));
    let regions: Vec<String> = target.regions.iter().map(|(r, _)| r.clone()).collect();
    let mut planned = None;
    let mut fault_log = None;
    if let Some((j, f)) = main.iter().find_map(|j| j.fault.as_ref().map(|f| (*j, f))) {
        match fault::plan(j, f, &ctx.faults, &regions) {
            Ok(p) => planned = Some((j.name.clone(), p)),
            Err(why) => {
                fault_log = Some(fault::Log { error: Some(format!("not injected: {why}")), ..fault::Log::default() })
            }
        }
    }
    let gate_of = |j: &Journey| planned.as_ref().filter(|(n, _)| *n == j.name).map(|(_, p)| p.gate.clone());
    let started = Instant::now();
    let done = CancellationToken::new();
    let journeys = async {
        let runs =
            futures::future::join_all(main.iter().map(|j| run::run_journey(&target, j, &cancel, gate_of(j)))).await;
        done.cancel();
        runs.concat()
    };
    let driver = async {
        match &planned {
            Some((_, p)) => Some(fault::drive(&ctx.faults, p, started, &done).await),
            None => None,
        }
    };
    let (runs, driven): (Vec<Run>, _) = tokio::join!(journeys, driver);
    fault_log = driven.or(fault_log);
    let journeys_s = started.elapsed().as_secs_f64();
    let mut judged: Vec<(&Invariant, Judged)> = Vec::new();
    for (n, inv) in invariants.iter().enumerate() {
        ctx.progress.phase(&format!("invariant {}: reading every region", inv.name));
        let mut subjects = run::subjects(inv, &runs);
        if let Some(b) = before.get(&n) {
            for s in &mut subjects {
                if let Some(x) = b.iter().find(|x| x.key == s.key) {
                    s.before = x.before.clone();
                }
            }
        }
        run::read_after(&target, inv, &mut subjects).await;
        judged.push((inv, inv.kind().judge(&subjects)));
    }
    report(&mut rb, &main, &runs, &judged, journeys_s);
    let fault_text = fault_log.as_ref().map(|l| fault_report(&mut rb, l));
    if let (Some(l), Some(_)) = (&fault_log, &planned) {
        if let Some(e) = &l.error {
            return rb.finish(Verdict::Error, format!("the {} was not injected: {e}", l.what));
        }
        if let Some(e) = &l.restore_error {
            return rb.finish(Verdict::Error, format!("the {} could not be lifted: {e}", l.what));
        }
    }
    let mut result = verdict(rb, &main, &invariants, &runs, &judged);
    if let Some(t) = fault_text {
        result.summary = format!("{}; {t}", result.summary);
    }
    result
}

/// Records the journey fault's figures and returns what the summary says of it.
fn fault_report(rb: &mut ResultBuilder, l: &fault::Log) -> String {
    match (l.injected_at_s, &l.error) {
        (Some(at), None) => {
            rb.metric("fault_injected_at_s", at).metric("fault_s", l.lasted_s);
            format!("under a {} for {:.1} s", l.what, l.lasted_s)
        }
        (_, Some(e)) => {
            rb.note(format!("the journeys ran without their fault: {e}"));
            format!("without their fault ({e})")
        }
        (None, None) => String::new(),
    }
}

/// `refused at charge with 409`, `failed at pay: …`, `completed`.
fn end_text(r: &Run) -> String {
    match &r.end {
        End::Completed => "completed".into(),
        End::Refused { step, status } => format!("{} refused at {step} with {status}", r.id()),
        End::Failed { step, why } => format!("{} failed at {step}: {why}", r.id()),
    }
}

/// Whether `r` went wrong: it failed, or was refused at a step no invariant judges, or ran past its deadline.
fn wrong(r: &Run, j: &Journey, judged_steps: &BTreeSet<(&str, &str)>) -> Option<String> {
    match &r.end {
        End::Failed { .. } => Some(end_text(r)),
        End::Refused { step, .. } if !judged_steps.contains(&(r.journey.as_str(), step.as_str())) => {
            Some(format!("{}, and no invariant judges that step", end_text(r)))
        }
        _ if r.total_ms > j.deadline_ms as f64 => Some(format!(
            "{} took {:.1} s, over its {:.0} s deadline",
            r.id(),
            r.total_ms / 1000.0,
            j.deadline_ms as f64 / 1000.0
        )),
        _ => None,
    }
}

/// Per-step and per-journey figures, the invariants and their violations.
fn report(rb: &mut ResultBuilder, main: &[&Journey], runs: &[Run], judged: &[(&Invariant, Judged)], journeys_s: f64) {
    let mut steps = Table {
        title: "Steps (every attempt, retries included)".into(),
        columns: ["journey", "step", "attempts", "ok", "refused", "failed", "unknown", "p50 ms", "p95 ms", "p99 ms"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    let mut per_journey = Table {
        title: "Journeys".into(),
        columns: ["journey", "runs", "completed", "refused", "failed", "p50 s", "p95 s", "max s"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    let mut completion = LatencyRecorder::new();
    for j in main {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.journey == j.name).collect();
        let mut fall = Waterfall {
            title: format!("Journey {}: each step's attempts at P50 and P95, one after the other", j.name),
            unit: "ms".into(),
            steps: Vec::new(),
        };
        let mut at = 0.0;
        for step in &j.steps {
            let mut rec = LatencyRecorder::new();
            let mut counts: BTreeMap<Outcome, u64> = BTreeMap::new();
            for a in mine.iter().flat_map(|r| r.steps.iter().filter(|s| s.step == step.name)).flat_map(|s| &s.attempts)
            {
                rec.record(Duration::from_secs_f64(a.ms / 1000.0));
                *counts.entry(a.outcome).or_default() += 1;
            }
            let c = |o: Outcome| counts.get(&o).copied().unwrap_or(0).to_string();
            let mut row = vec![j.name.clone(), step.name.clone(), rec.count().to_string()];
            row.extend([c(Outcome::Ok), c(Outcome::Refused), c(Outcome::Failed), c(Outcome::Unknown)]);
            row.extend([50.0, 95.0, 99.0].map(|p| format!("{:.1}", rec.value_ms_at(p))));
            steps.rows.push(row);
            if rec.count() > 0 {
                let (p50, p95) = (rec.value_ms_at(50.0), rec.value_ms_at(95.0));
                fall.steps.push(WaterfallStep { label: step.name.clone(), start: at, p50, p95, count: rec.count() });
                at += p50 + step.think_ms as f64;
            }
        }
        rb.waterfall(fall);
        let mut rec = LatencyRecorder::new();
        for r in mine.iter().filter(|r| r.end == End::Completed) {
            rec.record(Duration::from_secs_f64(r.total_ms / 1000.0));
        }
        completion.merge(&rec);
        let count = |f: fn(&End) -> bool| mine.iter().filter(|r| f(&r.end)).count().to_string();
        per_journey.rows.push(vec![
            j.name.clone(),
            mine.len().to_string(),
            count(|e| matches!(e, End::Completed)),
            count(|e| matches!(e, End::Refused { .. })),
            count(|e| matches!(e, End::Failed { .. })),
            format!("{:.2}", rec.value_ms_at(50.0) / 1000.0),
            format!("{:.2}", rec.value_ms_at(95.0) / 1000.0),
            format!("{:.2}", rec.max_ms() / 1000.0),
        ]);
    }
    rb.table(per_journey).table(steps);
    if completion.count() > 0 {
        rb.distribution(completion.to_distribution("journey completion"));
    }
    let completed = runs.iter().filter(|r| r.end == End::Completed).count();
    rb.metric("runs", runs.len() as f64)
        .metric("completed", completed as f64)
        .metric("refused", runs.iter().filter(|r| matches!(r.end, End::Refused { .. })).count() as f64)
        .metric("failed", runs.iter().filter(|r| matches!(r.end, End::Failed { .. })).count() as f64)
        .metric("completion_p50_s", completion.value_ms_at(50.0) / 1000.0)
        .metric("completion_p95_s", completion.value_ms_at(95.0) / 1000.0)
        .metric("completion_max_s", completion.max_ms() / 1000.0)
        .metric("journeys_s", journeys_s)
        .metric("violations", judged.iter().map(|(_, j)| j.violations.len()).sum::<usize>() as f64);
    let mut inv_table = Table {
        title: "Invariants".into(),
        columns: [
            "invariant",
            "kind",
            "subjects",
            "readable",
            "safety violations",
            "liveness violations",
            "failed reads",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut violations = Table {
        title: format!("Violations (first {VIOLATIONS_LISTED_MAX})"),
        columns: ["invariant", "subject", "what", "journeys"].map(String::from).to_vec(),
        rows: Vec::new(),
    };
    for (inv, j) in judged {
        let live = j.violations.iter().filter(|v| v.liveness).count();
        inv_table.rows.push(vec![
            inv.name.clone(),
            inv.kind.clone(),
            j.subjects.to_string(),
            j.readable.to_string(),
            (j.violations.len() - live).to_string(),
            live.to_string(),
            j.unreadable.len().to_string(),
        ]);
        for v in &j.violations {
            if violations.rows.len() < VIOLATIONS_LISTED_MAX {
                let mut ids = v.journeys.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                if v.journeys.len() > 5 {
                    ids.push_str(&format!(" and {} more", v.journeys.len() - 5));
                }
                let what = if v.liveness { format!("liveness: {}", v.what) } else { v.what.clone() };
                violations.rows.push(vec![inv.name.clone(), v.key.clone(), what, ids]);
            }
        }
    }
    if !judged.is_empty() {
        rb.table(inv_table);
    }
    if !violations.rows.is_empty() {
        rb.table(violations);
    }
}

/// The verdict: fail on a run gone wrong or a violated invariant; error without evidence; else pass.
fn verdict(
    mut rb: ResultBuilder,
    main: &[&Journey],
    invariants: &[&Invariant],
    runs: &[Run],
    judged: &[(&Invariant, Judged)],
) -> CheckResult {
    let judged_steps: BTreeSet<(&str, &str)> =
        invariants.iter().filter_map(|i| i.step.as_deref().map(|s| (i.journey.as_str(), s))).collect();
    let mut wrongs = Vec::new();
    for r in runs {
        if let Some(j) = main.iter().find(|j| j.name == r.journey)
            && let Some(w) = wrong(r, j, &judged_steps)
        {
            wrongs.push((r, w));
        }
    }
    if !wrongs.is_empty() {
        rb.table(Table {
            title: format!("Runs gone wrong (first {FAILED_LISTED_MAX})"),
            columns: ["run", "home", "what"].map(String::from).to_vec(),
            rows: wrongs.iter().take(FAILED_LISTED_MAX).map(|(r, w)| vec![r.id(), r.home.clone(), w.clone()]).collect(),
        });
    }
    let violated: Vec<String> = judged
        .iter()
        .filter(|(_, j)| !j.holds())
        .map(|(i, j)| format!("{} ({}): {} {}", i.name, i.kind, j.violations[0].key, j.violations[0].what))
        .collect();
    let completed = runs.iter().filter(|r| r.end == End::Completed).count();
    rb.measured(format!(
        "{completed} of {} runs completed, {} gone wrong, {} invariant violations",
        runs.len(),
        wrongs.len(),
        judged.iter().map(|(_, j)| j.violations.len()).sum::<usize>()
    ));
    let mut problems = Vec::new();
    if let Some((_, w)) = wrongs.first() {
        problems.push(format!("{} of {} runs went wrong, e.g. {w}", wrongs.len(), runs.len()));
    }
    if !violated.is_empty() {
        problems.push(format!("{} invariants violated: {}", violated.len(), violated.join("; ")));
    }
    if !problems.is_empty() {
        return rb.finish(Verdict::Fail, problems.join("; "));
    }
    if let Some(j) = main.iter().find(|j| !runs.iter().any(|r| r.journey == j.name && r.end == End::Completed)) {
        return rb.finish(Verdict::Error, format!("not enough evidence: no run of journey {} completed", j.name));
    }
    if let Some((i, _)) = judged.iter().find(|(_, j)| j.readable == 0) {
        return rb.finish(
            Verdict::Error,
            format!("not enough evidence: invariant {} could read none of its subjects in any region", i.name),
        );
    }
    let names: Vec<&str> = judged.iter().map(|(i, _)| i.name.as_str()).collect();
    let rest = if completed < runs.len() { " (the rest refused where an invariant allows it)" } else { "" };
    rb.finish(
        Verdict::Pass,
        format!(
            "{completed} of {} runs completed{rest}, each within its deadline; {}",
            runs.len(),
            if names.is_empty() {
                "no invariant judged".to_string()
            } else {
                format!("invariants held: {}", names.join(", "))
            }
        ),
    )
}
