//! Judging the partial-failure scenario: few client errors, reads still served by the degraded region, its health
//! not ok, and its users' writes served elsewhere.

use super::report::{failure_table, finish, history_findings, recovery_metrics, scenario_notes, timeline};
use super::scenario::{CanaryRecord, Outcome};
use crate::check::{Ctx, ResultBuilder};
use std::collections::BTreeSet;
use xregion_model::report::CheckResult;

pub(super) fn judge_partial(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    let errors_pct = 100.0 - o.recovery.availability_pct();
    let max = ctx.config.targets.error_rate_max_pct;
    let mut problems = Vec::new();
    if errors_pct >= max {
        problems.push(format!("{errors_pct:.2}% of client requests failed during the partial failure (limit {max}%)"));
        rb.table(failure_table(o));
    }
    // Reads straight at the degraded region.
    let reads = o.direct_reads.len();
    let reads_ok = o.direct_reads.iter().filter(|a| a.ok).count();
    let reads_pct = if reads == 0 { 0.0 } else { reads_ok as f64 * 100.0 / reads as f64 };
    rb.metric("direct_reads", reads as f64);
    rb.metric("direct_reads_ok_pct", reads_pct);
    if reads_pct < o.rule.threshold_pct {
        problems.push(format!("only {reads_pct:.1}% of {reads} reads straight at {} were served", o.victim));
    }
    // Health must say something is wrong.
    let statuses: BTreeSet<&str> = o.victim_health.iter().map(|(_, s)| s.as_str()).collect();
    if statuses.iter().all(|s| *s == "ok") {
        problems.push(format!("{}'s health check kept answering ok while its store failed", o.victim));
    }
    rb.note(format!(
        "health answers of {} during the fault: {}",
        o.victim,
        statuses.into_iter().collect::<Vec<_>>().join(", ")
    ));
    // The affected traffic: writes from the region's nearest locations.
    let affected: Vec<&CanaryRecord> = o
        .canary
        .iter()
        .filter(|c| {
            c.write
                && o.victim_locations.contains(&c.location)
                && c.attempt.t_ms >= o.fault_ms
                && c.attempt.t_ms < o.restore_ms
        })
        .collect();
    let moved =
        affected.iter().filter(|c| c.attempt.ok && c.attempt.region.as_deref() != Some(o.victim.as_str())).count();
    let affected_ok = affected.iter().filter(|c| c.attempt.ok).count();
    rb.metric("affected_writes", affected.len() as f64);
    rb.metric("affected_writes_moved", moved as f64);
    if !affected.is_empty() && (affected_ok as f64) * 100.0 < (100.0 - max) * affected.len() as f64 {
        problems.push(format!(
            "only {affected_ok} of {} writes from {}'s nearest locations succeeded",
            affected.len(),
            o.victim
        ));
    }
    let (found, _) = history_findings(&mut rb, o);
    problems.extend(found);
    rb.measured(format!("errors {errors_pct:.2}%, reads {reads_pct:.1}% served"));
    let pass = format!(
        "{} ({}): {errors_pct:.2}% client errors, {reads_pct:.1}% of direct reads served, {moved} of {} affected writes \
         served by other regions",
        o.victim,
        o.spec.describe(),
        affected.len()
    );
    finish(rb, o, problems, pass)
}
