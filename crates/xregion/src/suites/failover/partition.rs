//! Judging the network-partition scenario: no write acknowledged by the cut-off region after its fence time (no
//! split brain), and convergence with every winner right after healing.

use super::report::{finish, history_findings, recovery_metrics, scenario_notes, secs, timeline};
use super::scenario::{Outcome, WriterRecord};
use super::{FENCE_S_DEFAULT, fence_s};
use crate::check::{Ctx, ResultBuilder};
use xregion_model::report::CheckResult;

pub(super) fn judge_partition(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    let fence = fence_s(&ctx.config).unwrap_or(FENCE_S_DEFAULT);
    let limit_ms = o.fault_ms + fence * 1000.0;
    let late: Vec<&WriterRecord> =
        o.writer.iter().filter(|w| w.write.acked_ms.is_some_and(|t| t > limit_ms && t < o.restore_ms)).collect();
    let acked_in_minority =
        o.writer.iter().filter(|w| w.write.acked_ms.is_some_and(|t| t > o.fault_ms && t < o.restore_ms)).count();
    rb.metric("minority_acks_after_fence", late.len() as f64);
    rb.metric("minority_acks_during_partition", acked_in_minority as f64);
    rb.metric("fenced_after_s", o.fenced_ms.map_or(-1.0, |t| secs(t - o.fault_ms)));
    rb.note(format!(
        "a writer sent writes straight into {} during the partition; a write it acknowledged more than {fence:.1} s \
         after the partition began is a split brain: both sides accepted writes",
        o.victim
    ));
    let mut problems = Vec::new();
    if let Some(first) = late.first() {
        problems.push(format!(
            "split brain: {} acknowledged {} writes more than {fence:.1} s after it was partitioned (first {} at +{:.1} s)",
            o.victim,
            late.len(),
            first.key,
            secs(first.write.acked_ms.unwrap_or(0.0) - o.fault_ms)
        ));
    }
    let (found, acked) = history_findings(&mut rb, o);
    problems.extend(found);
    let fenced = o.fenced_ms.map_or("never said it was fenced".to_string(), |t| {
        format!("fenced itself after {:.1} s", secs(t - o.fault_ms))
    });
    rb.measured(format!("{} acks after the fence time", late.len()));
    let pass = format!(
        "{} {fenced} and acknowledged no write after {fence:.1} s; after healing {acked} acknowledged writes all present \
         everywhere, every winner right; client availability {:.2}%",
        o.victim,
        o.recovery.availability_pct()
    );
    finish(rb, o, problems, pass)
}
