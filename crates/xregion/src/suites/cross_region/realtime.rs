//! The lww-realtime check: chains of writes of one key from every region in turn, each sent right after the
//! previous one completed, then judged by `xregion_check::consistency::check_lww_realtime`: no acknowledged write
//! may lose to a write that had ended, in real time, before it began, by more than the stated clock resolution
//! plus the measuring tolerance. Timestamp last-write-wins on a skewed clock fails it.
//!
//! With `clock_fault_ms`, the chains are written under a clock fault: one region's clock set that far off through
//! the fault injector, and restored before the regions are read.

use crate::check::{Ctx, ResultBuilder, ms};
use crate::drive::converge::{as_judged, await_convergence, store_order};
use crate::drive::write::chained;
use std::time::Duration;
use xregion_check::consistency;
use xregion_model::fault::{FaultKind, FaultSpec};
use xregion_model::report::{CheckResult, Verdict};

/// Most write chains in flight at once: enough to keep the check near a second, few enough that no region queues
/// them.
const CHAINS_IN_FLIGHT_MAX: usize = 8;

/// What a chained write waits after the previous one completed, beyond the tolerance, so that the two are ordered
/// in real time by more than the tolerance however the timer rounds.
const CHAIN_PAUSE_MARGIN: Duration = Duration::from_millis(2);

/// Writes the chains, waits for convergence, and judges the history against what every region holds.
pub(super) async fn lww_realtime(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let cfg = ctx.config.checks.lww_realtime.clone();
    let prefix = ctx.prefix("lwwrt");
    let tolerance = cfg.tolerance();
    let pause = tolerance + CHAIN_PAUSE_MARGIN;
    ctx.progress.phase(&format!(
        "{} keys, each written from every region in turn, {:.0} ms after the previous write completed",
        cfg.keys,
        ms(pause)
    ));
    let skewed = match clock_fault(&mut rb, ctx, &cfg).await {
        Ok(s) => s,
        Err((verdict, why)) => return rb.finish(verdict, why),
    };
    let written = chained(&ctx.history, &ctx.probes, &prefix, cfg.keys, pause, CHAINS_IN_FLIGHT_MAX).await;
    if let Some(region) = &skewed {
        ctx.progress.phase(&format!("restoring {region}'s clock"));
        if let Err(e) = ctx.faults.restore(region).await {
            return rb.finish(Verdict::Error, format!("{region}'s clock could not be restored: {e}"));
        }
    }
    let ops = match written {
        Ok(ops) => ops,
        Err(e) => return rb.error(&e),
    };
    ctx.progress.phase("waiting for the regions to converge");
    let quiet = Duration::from_millis(cfg.quiet_timeout_ms);
    let (states, converged_after) = match await_convergence(&ctx.probes, &prefix, quiet).await {
        Ok(x) => x,
        Err(e) => return rb.error(&e),
    };
    let history = ctx.history.events_with_prefix(&prefix);
    let states = as_judged(&ctx.probes, &history, states);
    // How the store resolves a conflict, as the summary states it: the order its region clients report.
    let order = store_order(&ctx.probes);
    let checked = consistency::check_convergence(&states)
        .and_then(|c| Ok((c, consistency::check_lww_realtime(&history, &states, tolerance)?)));
    let (convergence, r) = match checked {
        Ok(x) => x,
        Err(e) => return rb.finish(Verdict::Error, e.to_string()),
    };
    for (k, v) in r.metrics() {
        rb.metric(&k, v);
    }
    rb.metric("convergence_ms", converged_after.map_or(-1.0, ms)).metric("chain_pause_ms", ms(pause));
    let tol = format!(
        "{} ms (clock resolution {} ms + measuring tolerance {} ms)",
        cfg.clock_resolution_ms + cfg.measuring_tolerance_ms,
        cfg.clock_resolution_ms,
        cfg.measuring_tolerance_ms
    );
    rb.note(format!(
        "each key is written once from every region in turn, each write sent {:.0} ms after the previous one \
         completed, before replication can usually carry it; {} writes acknowledged, {} failed, {} of unknown outcome",
        ms(pause),
        ops.ok,
        ops.fail,
        ops.info
    ));
    rb.note(format!(
        "a write that began more than {tol} after the winning write ended came later in real time and must not lose; \
         start and end are xregion's own monotonic times around each request, so a measured gap is never longer than \
         the real one; writes of unknown outcome are neither counted as lost nor judged against"
    ));
    rb.note(format!(
        "the store resolves conflicts by {order}, highest wins; where that order comes from clocks, a clock ahead \
         makes an earlier write win"
    ));
    rb.measured(format!(
        "{} lost of {} ordered writes, {} divergent",
        r.violations.len(),
        r.ordered_writes,
        convergence.divergent.len()
    ));
    if !r.violations.is_empty() {
        rb.table(r.violations_table());
    }
    if !r.unexplained.is_empty() {
        rb.table(r.unexplained_table());
    }
    if !convergence.passed() {
        rb.table(convergence.to_table());
    }
    let mut problems = Vec::new();
    if let Some(first) = r.violations.first() {
        problems.push(format!(
            "{} acknowledged writes lost to a write that had ended before they began; {}",
            r.violations.len(),
            first.describe()
        ));
    }
    if !r.unexplained.is_empty() {
        problems.push(format!(
            "{} keys hold what no write explains (absent, a failed write, or no such write)",
            r.unexplained.len()
        ));
    }
    if !convergence.passed() {
        problems.push(format!(
            "{} keys differ between regions after {} ms",
            convergence.divergent.len(),
            cfg.quiet_timeout_ms
        ));
    }
    let under =
        skewed.as_ref().map_or(String::new(), |r| format!(" under a {:+} ms clock fault in {r}", cfg.clock_fault_ms));
    if !problems.is_empty() {
        rb.finish(
            Verdict::Fail,
            format!("{}{under}; tolerance {tol}; the store resolves by {order}", problems.join("; ")),
        )
    } else if !r.enough_evidence() {
        rb.finish(
            Verdict::Error,
            format!(
                "not enough evidence: {} writes followed another region's by more than the tolerance (at least {} \
                 needed; {} writes failed, {} of unknown outcome); raise checks.lww-realtime.keys",
                r.ordered_writes,
                consistency::ORDERED_WRITES_MIN,
                ops.fail,
                ops.info
            ),
        )
    } else {
        rb.finish(
            Verdict::Pass,
            format!(
                "none of {} writes that began over {tol} after another region's write ended lost to it, over {} \
                 keys{under}; the store resolves by {order}",
                r.ordered_writes, r.keys_judged
            ),
        )
    }
}

/// Injects the configured clock fault, if any: `Ok(Some(region))` once it is in force, `Ok(None)` when none is
/// configured, and the check's verdict (skipped or error) with the reason when it cannot be.
async fn clock_fault(
    rb: &mut ResultBuilder,
    ctx: &Ctx,
    cfg: &crate::config::LwwRealtime,
) -> Result<Option<String>, (Verdict, String)> {
    if cfg.clock_fault_ms == 0 {
        return Ok(None);
    }
    if let Err(why) = ctx.faults.supports(FaultKind::Clock) {
        return Err((Verdict::Skipped, format!("clock_fault_ms is set, but no clock fault can be injected: {why}")));
    }
    let region = match &cfg.clock_fault_region {
        Some(r) => r.clone(),
        None => ctx.probes[0].region.clone(),
    };
    let spec = FaultSpec { clock_offset_ms: cfg.clock_fault_ms, ..FaultSpec::new(FaultKind::Clock) };
    ctx.progress.phase(&format!("{region}: {}", spec.describe()));
    if let Err(e) = ctx.faults.fail(&region, &spec).await {
        return Err((Verdict::Error, format!("the clock fault could not be injected into {region}: {e}")));
    }
    rb.metric("clock_fault_ms", cfg.clock_fault_ms as f64);
    rb.note(format!(
        "written under a clock fault: {region}'s clock set {:+} ms off through the fault injector before the first \
         write, and restored after the last",
        cfg.clock_fault_ms
    ));
    Ok(Some(region))
}
