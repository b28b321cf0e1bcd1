//! Judging the complete-failure scenario: the complete-region check (RTO, availability, nothing lost), and the
//! disaster-recovery RTO and RPO checks.

use super::report::{
    failure_table, finish, history_findings, recovery_metrics, rto_problem, rto_text, scenario_notes, timeline,
};
use super::scenario::Outcome;
use crate::check::{Ctx, ResultBuilder};
use xregion_check::consistency;
use xregion_check::recovery::{self, SequencedWrite};
use xregion_model::report::{CheckResult, Table, Verdict};

pub(super) fn judge_complete(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    let mut problems: Vec<String> = rto_problem(ctx, o).into_iter().collect();
    let avail = o.recovery.availability_pct();
    let min = ctx.config.targets.availability_min_pct;
    if avail < min {
        problems.push(format!("availability {avail:.2}% during the failover is below {min}%"));
        rb.table(failure_table(o));
    }
    let (found, acked) = history_findings(&mut rb, o);
    problems.extend(found);
    rb.measured(format!("{}, availability {avail:.2}%", rto_text(o)));
    let pass = format!(
        "{} killed: {}, availability {avail:.2}% over {} requests, {acked} acknowledged writes all present everywhere after the restore",
        o.victim,
        rto_text(o),
        o.recovery.total
    );
    finish(rb, o, problems, pass)
}

pub(super) fn judge_rto(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    scenario_notes(&mut rb, o);
    recovery_metrics(&mut rb, o);
    rb.measured(rto_text(o));
    let problems: Vec<String> = rto_problem(ctx, o).into_iter().collect();
    let pass = format!(
        "{} after a complete failure of {} (target {} s); worst {} ms window {:.1}% successful",
        rto_text(o),
        o.victim,
        ctx.config.targets.rto_s,
        o.rule.window_ms,
        o.recovery.worst_window_pct
    );
    finish(rb, o, problems, pass)
}

/// Fewest writes acknowledged by the failing region before the fault for an RPO verdict.
const RPO_WRITES_MIN: usize = 50;

pub(super) fn judge_rpo(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    let writes: Vec<SequencedWrite> = o.writer.iter().map(|w| w.write.clone()).collect();
    let mut table = Table {
        title: format!("What the surviving regions held after {} failed", o.victim),
        columns: vec!["region".into(), "acked before the fault".into(), "missing".into(), "RPO (ms)".into()],
        rows: Vec::new(),
    };
    let mut worst: Option<(String, recovery::Rpo)> = None;
    for (region, held) in &o.held_at_failover {
        let r = recovery::rpo(
            &writes,
            held,
            recovery::FaultWindow { from_ms: o.fault_ms, to_ms: o.fault_ms + o.inject_ms },
        );
        table.rows.push(vec![
            region.clone(),
            r.acked_before_fault.to_string(),
            r.missing.len().to_string(),
            format!("{:.1}", r.rpo_ms),
        ]);
        if worst.as_ref().is_none_or(|(_, w)| r.rpo_ms > w.rpo_ms) {
            worst = Some((region.clone(), r));
        }
    }
    rb.table(table);
    let Some((worst_region, worst)) = worst else {
        return rb.finish(Verdict::Error, "no surviving region could be read after the fault");
    };
    if !worst.missing.is_empty() {
        let keys: Vec<String> = worst.missing.iter().take(20).map(|s| format!("{}w/{s:08}", o.prefix)).collect();
        rb.table(Table {
            title: format!("Writes missing in {worst_region} at failover (first 20)"),
            columns: vec!["key".into()],
            rows: keys.into_iter().map(|k| vec![k]).collect(),
        });
    }
    rb.metric("evidence_min_writes", RPO_WRITES_MIN as f64);
    if worst.acked_before_fault < RPO_WRITES_MIN {
        return rb.finish(
            Verdict::Error,
            format!(
                "not enough evidence ({} of {RPO_WRITES_MIN} writes acknowledged by {} before the fault)",
                worst.acked_before_fault, o.victim
            ),
        );
    }
    rb.metric("rpo_ms", worst.rpo_ms);
    rb.metric("missing_at_failover", worst.missing.len() as f64);
    rb.metric("acked_before_fault", worst.acked_before_fault as f64);
    rb.note(format!(
        "a writer sent {} sequenced writes/s straight into {}; after the fault xregion read what every surviving region \
         held; every write it acknowledged before the injection ended ({:.0} ms) was at risk; RPO is the time from the last \
         write before the first missing one to the failure (the last acknowledgement during the injection; 0 when \
         nothing is missing), worst survivor shown",
        ctx.config.checks.failover.rpo_writes_per_s, o.victim, o.inject_ms
    ));
    // Permanent loss: the writer's acknowledged writes still missing after the restore and convergence.
    let writer_prefix = format!("{}w/", o.prefix);
    // One per write, not per region that lost it.
    let lost: Vec<&consistency::LostWrite> = match &o.judged {
        Ok((_, w, _)) => {
            let mut seen = std::collections::BTreeSet::new();
            w.lost.iter().filter(|l| l.key.starts_with(&writer_prefix) && seen.insert(&l.key)).collect()
        }
        Err(e) => return rb.finish(Verdict::Error, format!("the history could not be judged: {e}")),
    };
    rb.metric("lost_for_good", lost.len() as f64);
    let mut problems = Vec::new();
    let target_ms = ctx.config.targets.rpo_s * 1000.0;
    if worst.rpo_ms > target_ms {
        problems.push(format!("RPO {:.0} ms in {worst_region} is above {target_ms:.0} ms", worst.rpo_ms));
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged writes never reached every region after the restore (permanent loss), e.g. {}",
            lost.len(),
            lost[0].key
        ));
    }
    if o.converged_after.is_none() {
        problems.push("the regions did not converge after the restore".into());
    }
    rb.measured(format!("RPO {:.0} ms, {} lost for good", worst.rpo_ms, lost.len()));
    let pass = format!(
        "RPO {:.0} ms ({} of {} writes acknowledged before the fault missing in {worst_region} at failover); after the \
         restore every acknowledged write is in every region",
        worst.rpo_ms,
        worst.missing.len(),
        worst.acked_before_fault
    );
    finish(rb, o, problems, pass)
}
