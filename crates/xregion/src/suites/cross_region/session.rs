//! The session-guarantees check: clients that move between regions, the way a user does whose requests land in
//! another region, judged by `xregion_check::consistency::check_sessions` for read your writes and monotonic reads.
//!
//! Two kinds of sessions run at once, each one history process issuing one operation at a time, every operation
//! right after the previous one completed:
//! - writing sessions write a key of their own in one region, then read it in every other region in turn;
//! - reading sessions read a key that another client keeps writing in one region, every read in the next region.
//!
//! A guarantee is judged only where the deployment promises it: `[targets] session_guarantees`, or what its kind of
//! store keeps by default (`Capabilities::promises`). Where nothing is promised, the check is `skipped` and its
//! summary still gives the measured figures.

use crate::check::{Ctx, ResultBuilder};
use crate::history::HistoryLog;
use crate::probe::{Probe, ProbeError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use xregion_check::consistency::{self, Guarantee, SessionCheck};
use xregion_model::report::{CheckResult, Verdict};

/// Most writes the client behind a reading session makes: a bound on the loop, far above what `reads` reads take.
const KEPT_WRITES_PER_READ_MAX: u32 = 20;

/// What the check holds the deployment to, as its `target` states it.
pub(super) fn target(c: &crate::config::Config) -> String {
    match &c.targets.session_guarantees {
        Some(g) if g.is_empty() => "none promised ([targets] session_guarantees = []): figures only".to_string(),
        Some(g) => format!("0 reads that break {}", names(g)),
        None => "0 reads that break what the store promises by default (etcd, and Galera whose reads wait \
                 (wsrep_sync_wait): read-your-writes and monotonic-reads; others: none, figures only)"
            .to_string(),
    }
}

/// Guarantees as `a and b`.
fn names(g: &[Guarantee]) -> String {
    let v: Vec<&str> = g.iter().map(|g| g.name()).collect();
    if v.is_empty() { "none".to_string() } else { v.join(" and ") }
}

/// The guarantees to judge, and where that promise comes from.
fn promised(ctx: &Ctx) -> (Vec<Guarantee>, String) {
    if let Some(g) = &ctx.config.targets.session_guarantees {
        let mut g = g.clone();
        g.sort_unstable();
        g.dedup();
        return (g, "as [targets] session_guarantees declares".to_string());
    }
    let g = Guarantee::ALL
        .into_iter()
        .filter(|g| ctx.probes.iter().all(|p| p.capabilities().promises.contains(g)))
        .collect();
    let mut why: Vec<String> = Vec::new();
    for p in &ctx.probes {
        let c = p.capabilities();
        let line = format!("{}: {}", c.kind, c.promises_why);
        if !why.contains(&line) {
            why.push(line);
        }
    }
    (g, format!("by default ({})", why.join("; ")))
}

/// An operation's result as a session sees it: only an unreachable region ends the session; a refused or uncertain
/// operation is in the history, and the checker judges it there.
fn fatal<T>(r: Result<T, ProbeError>) -> Result<(), ProbeError> {
    match r {
        Err(e @ ProbeError::Unreachable { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// A writing session: `writes` times, write its key in one region and read it in every other.
async fn writing_session(
    history: &HistoryLog,
    probes: &[Probe],
    key: String,
    first: usize,
    writes: u32,
) -> Result<(), ProbeError> {
    let process = history.new_process();
    let n = probes.len();
    for i in 0..writes as usize {
        let home = (first + i) % n;
        // A refused write sets no expectation; the reads still count for monotonic reads.
        fatal(history.put(process, &probes[home], &key, &format!("w{i}")).await)?;
        for j in 1..n {
            fatal(history.get(process, &probes[(home + j) % n], &key).await)?;
        }
    }
    Ok(())
}

/// A reading session over a key another client keeps writing in region `home`: `reads` reads, each in the next
/// region.
async fn reading_session(
    history: &HistoryLog,
    probes: &[Probe],
    key: String,
    home: usize,
    reads: u32,
    interval: Duration,
) -> Result<(), ProbeError> {
    let n = probes.len();
    let (writer, reader) = (history.new_process(), history.new_process());
    let stop = CancellationToken::new();
    let keep_writing = async {
        for i in 0..reads * KEPT_WRITES_PER_READ_MAX {
            fatal(history.put(writer, &probes[home], &key, &format!("m{i}")).await)?;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
        Ok(())
    };
    let read = async {
        let _stop = stop.clone().drop_guard();
        // The first write goes first, so that the first read has something to see.
        tokio::time::sleep(interval).await;
        for i in 0..reads as usize {
            fatal(history.get(reader, &probes[(home + 1 + i) % n], &key).await)?;
        }
        Ok(())
    };
    let (w, r) = tokio::join!(keep_writing, read);
    w.and(r)
}

/// Runs both kinds of sessions, judges their history, and holds the deployment to the guarantees it promises.
pub(super) async fn session_guarantees(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let cfg = ctx.config.checks.session_guarantees.clone();
    let prefix = ctx.prefix("session");
    let (history, probes) = (&ctx.history, &ctx.probes[..]);
    ctx.progress.phase(&format!(
        "{} sessions write and read their own keys across regions, {} read keys others write",
        cfg.sessions, cfg.readers
    ));
    let interval = Duration::from_millis(cfg.write_interval_ms);
    let writing = (0..cfg.sessions)
        .map(|s| writing_session(history, probes, format!("{prefix}w{s:03}"), s as usize % probes.len(), cfg.writes));
    let reading = (0..cfg.readers).map(|r| {
        reading_session(history, probes, format!("{prefix}r{r:03}"), r as usize % probes.len(), cfg.reads, interval)
    });
    let (w, r) = tokio::join!(futures::future::join_all(writing), futures::future::join_all(reading));
    if let Some(Err(e)) = w.into_iter().chain(r).find(Result::is_err) {
        return rb.error(&e);
    }
    let events = history.events_with_prefix(&prefix);
    let result = match consistency::check_sessions(&events) {
        Ok(r) => r,
        Err(e) => return rb.finish(Verdict::Error, e.to_string()),
    };
    judge(rb, ctx, &result)
}

/// The verdict on `r`: fail when a promised guarantee was broken, error when one was kept on too little evidence,
/// pass when every promised one was kept, skipped (with the figures) when none is promised.
fn judge(mut rb: ResultBuilder, ctx: &Ctx, r: &SessionCheck) -> CheckResult {
    for (k, v) in r.metrics() {
        rb.metric(&k, v);
    }
    let (promised, source) = promised(ctx);
    let figure = |g: Guarantee| {
        let t = r.tally(g);
        format!("{g} broken in {} of {} reads ({:.1}%)", t.violated, t.observed, t.violated_pct())
    };
    let figures = Guarantee::ALL.map(figure).join(", ");
    rb.measured(figures.clone());
    rb.note(format!(
        "{} operations in {} sessions ({} reads ok, {} reads failed or of unknown outcome, {} writes acknowledged); \
         every operation of a session starts when its previous one completed, and versions are compared in the \
         store's own order ({})",
        r.reads_ok + r.reads_not_ok + r.writes_acked,
        r.sessions,
        r.reads_ok,
        r.reads_not_ok,
        r.writes_acked,
        crate::drive::converge::store_order(&ctx.probes)
    ));
    rb.note(format!("promised: {} ({source})", names(&promised)));
    rb.table(r.pairs_table());
    if !r.violations.is_empty() {
        rb.table(r.violations_table());
    }
    let not_promised: Vec<String> = Guarantee::ALL.into_iter().filter(|g| !promised.contains(g)).map(figure).collect();
    let also = if not_promised.is_empty() {
        String::new()
    } else {
        format!("; not promised, so not judged: {}", not_promised.join(", "))
    };
    if promised.is_empty() {
        return rb.finish(
            Verdict::Skipped,
            format!(
                "nothing to judge: no session guarantee is promised {source}; measured: {figures}; declare [targets] \
                 session_guarantees to hold the deployment to them"
            ),
        );
    }
    let broken: Vec<String> = promised
        .iter()
        .filter_map(|&g| r.first(g).map(|v| format!("{}; first: {}", figure(g), v.describe())))
        .collect();
    if !broken.is_empty() {
        return rb.finish(Verdict::Fail, format!("promised but broken: {}{also}", broken.join("; ")));
    }
    let thin: Vec<String> = promised
        .iter()
        .filter(|&&g| !r.tally(g).enough_evidence())
        .map(|&g| format!("{g}: {} reads in another region", r.tally(g).cross_region))
        .collect();
    if !thin.is_empty() {
        return rb.finish(
            Verdict::Error,
            format!(
                "not enough evidence: {} (at least {} needed; {} reads failed or of unknown outcome); raise \
                 checks.session-guarantees sessions or readers",
                thin.join(", "),
                consistency::OBSERVATIONS_MIN,
                r.reads_not_ok
            ),
        );
    }
    let kept: Vec<String> = promised
        .iter()
        .map(|&g| {
            format!("{g} kept in all {} reads ({} in another region)", r.tally(g).observed, r.tally(g).cross_region)
        })
        .collect();
    rb.finish(Verdict::Pass, format!("{}{also}", kept.join(", ")))
}
