//! Judging fail-back after the complete-failure scenario: the restored region is healthy, caught up and serving
//! its users again within `failback_s`, with nothing lost.

use super::report::{finish, history_findings, secs, timeline};
use super::scenario::Outcome;
use crate::check::{Ctx, ResultBuilder};
use xregion_model::report::{CheckResult, Table};

pub(super) fn judge_recovery(mut rb: ResultBuilder, ctx: &Ctx, o: &Outcome) -> CheckResult {
    timeline(&mut rb, o);
    let limit = ctx.config.targets.failback_s;
    let after = |t: Option<f64>| t.map(|t| secs(t - o.restore_ms));
    let healthy = after(o.healthy_again_ms);
    let caught = after(o.caught_up_ms);
    let users = after(o.users_back_ms);
    let show = |x: Option<f64>| x.map_or("never".to_string(), |s| format!("{s:.1} s"));
    rb.metric("healthy_after_restore_s", healthy.unwrap_or(-1.0));
    rb.metric("caught_up_after_restore_s", caught.unwrap_or(-1.0));
    rb.metric("users_back_after_restore_s", users.unwrap_or(-1.0));
    rb.table(Table {
        title: format!("{} after its restore", o.victim),
        columns: vec!["milestone".into(), "after the restore".into()],
        rows: vec![
            vec!["health check ok".into(), show(healthy)],
            vec!["replication caught up both ways".into(), o.caught_up_unknown.clone().unwrap_or_else(|| show(caught))],
            vec![format!("nearest locations ({}) served by it", o.victim_locations.join(", ")), show(users)],
        ],
    });
    rb.note(format!(
        "caught up: every region's peers acknowledged its outbox up to the head it had when {} was healthy again; users \
         back: the first 1 s window in which at least {}% of the successful requests of its nearest locations were \
         served by it",
        o.victim, ctx.config.targets.routing_share_min_pct
    ));
    let mut problems = Vec::new();
    for (what, t) in [("healthy again", healthy), ("caught up", caught), ("serving its users again", users)] {
        if what == "caught up" && o.caught_up_unknown.is_some() {
            continue;
        }
        if what == "serving its users again" && o.victim_locations.is_empty() {
            continue;
        }
        match t {
            Some(s) if s <= limit => {}
            Some(s) => problems.push(format!("{} {what} only {s:.1} s after the restore (limit {limit} s)", o.victim)),
            None => problems.push(format!(
                "{} not {what} within {:.0} s of the restore",
                o.victim,
                secs(o.end_ms - o.restore_ms)
            )),
        }
    }
    let (found, acked) = history_findings(&mut rb, o);
    problems.extend(found);
    // Back when every judged milestone is reached: one that never was is not hidden behind the others' times.
    let judged = [
        Some(healthy),
        o.caught_up_unknown.is_none().then_some(caught),
        (!o.victim_locations.is_empty()).then_some(users),
    ];
    let judged: Vec<Option<f64>> = judged.into_iter().flatten().collect();
    if judged.iter().all(Option::is_some) {
        let worst = judged.into_iter().flatten().fold(0.0, f64::max);
        rb.measured(format!("back in {worst:.1} s"));
    } else {
        rb.measured(format!("not back within {:.0} s", secs(o.end_ms - o.restore_ms)));
    }
    let users = if o.victim_locations.is_empty() {
        "not judged (no client location routes to it)".to_string()
    } else {
        format!("{} after the restore", show(users))
    };
    let pass = format!(
        "{} healthy {} after the restore, caught up {}, users back {users}; {acked} acknowledged writes all present \
         everywhere",
        o.victim,
        show(healthy),
        o.caught_up_unknown.clone().unwrap_or_else(|| format!("{} after the restore", show(caught))),
    );
    finish(rb, o, problems, pass)
}
