//! The audit trail: every write the check made appears in its region's audit log with principal, action, key and
//! time.

use super::{AUDIT_PAGES_MAX, canary, list, table, writer_probes};
use crate::check::{Ctx, PerRegion, ResultBuilder};
use crate::drive::clock::{clock, now_ms};
use crate::probe::{Probe, ProbeError};
use std::collections::BTreeMap;
use xregion_model::report::{CheckResult, Verdict};

/// Every entry of a region's audit log.
pub(super) async fn audit_log(p: &Probe) -> Result<Vec<xregion_model::wire::AuditEntry>, ProbeError> {
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..AUDIT_PAGES_MAX {
        let page = p.audit(after, 1000).await?;
        out.extend(page.entries);
        match page.next_after {
            Some(n) if Some(n) != after => after = Some(n),
            _ => break,
        }
    }
    Ok(out)
}

pub(super) async fn audit_trail(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    if ctx.config.deployment.auth.write_token.is_none() {
        rb.note("no write token configured: writes go with the probes' token");
    }
    let writers = writer_probes(ctx);
    let prefix = ctx.prefix("audit-trail");
    let start_ms = now_ms();
    let mut per = PerRegion::new();
    // (region index, action, key)
    let mut ops: Vec<(usize, &str, String)> = Vec::new();
    for (i, p) in writers.iter().enumerate() {
        let key = format!("{prefix}{}", p.region);
        let wrote = match p.put(&key, &canary(ctx, &key, "audit")).await {
            Ok(_) => p.delete(&key).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match wrote {
            Ok(()) => {
                ops.push((i, "put", key.clone()));
                ops.push((i, "delete", key));
            }
            Err(e) => {
                per.error(&p.region, format!("could not write: {}", e.detail()));
            }
        }
    }
    let mut rows = Vec::new();
    let mut unaudited = 0usize;
    let end_ms = now_ms() + 60_000;
    let mut logs: BTreeMap<usize, Vec<xregion_model::wire::AuditEntry>> = BTreeMap::new();
    for (i, p) in ctx.probes.iter().enumerate() {
        if !ops.iter().any(|(j, _, _)| *j == i) {
            continue;
        }
        match audit_log(p).await {
            Ok(l) => {
                logs.insert(i, l);
            }
            Err(ProbeError::Status { status: 404, .. }) => {
                return rb.finish(Verdict::Skipped, format!("{} has no /v1/audit route", p.region));
            }
            Err(e) => {
                per.error(&p.region, format!("could not read the audit log: {}", e.detail()));
            }
        }
    }
    let writer = ctx.config.deployment.security.writer_principal.as_deref();
    let mut by_region: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, action, key) in &ops {
        let region = &ctx.probes[*i].region;
        let Some(log) = logs.get(i) else { continue };
        let entry =
            log.iter().find(|e| e.key == *key && e.action.to_ascii_lowercase().contains(action) && e.status < 400);
        let problem = match entry {
            None => Some(format!("{action} of {key} missing from the audit log")),
            Some(e) if e.principal.is_empty() || e.principal == "anonymous" => {
                Some(format!("{action} of {key} audited without a principal (\"{}\")", e.principal))
            }
            Some(e) if writer.is_some_and(|w| e.principal != w) => {
                Some(format!("{action} of {key} audited as \"{}\", not {}", e.principal, writer.unwrap_or("")))
            }
            Some(e) if e.time_ms + 60_000 < start_ms || e.time_ms > end_ms => {
                Some(format!("{action} of {key} audited with a wrong time ({} ms)", e.time_ms))
            }
            _ => None,
        };
        rows.push(vec![
            region.clone(),
            action.to_string(),
            key.clone(),
            entry.map_or("-".into(), |e| e.principal.clone()),
            entry.map_or("-".into(), |e| e.action.clone()),
            entry.map_or("-".into(), |e| clock(e.time_ms)),
            if problem.is_none() { "ok".into() } else { "MISSING/WRONG".into() },
        ]);
        let found = by_region.entry(*i).or_default();
        if let Some(p) = problem {
            unaudited += 1;
            found.push(p);
        }
    }
    for (i, problems) in &by_region {
        let region = &ctx.probes[*i].region;
        if problems.is_empty() {
            per.pass(region, "put and delete audited with principal, action, key and time");
        } else {
            per.fail(region, format!("{} of 2 writes not audited: {}", problems.len(), list(problems, 2)));
        }
    }
    rb.table(table(
        "Writes of this check and their audit entries",
        &["region", "write", "key", "principal", "action", "time", "verdict"],
        rows,
    ));
    let judged = by_region.len() * 2;
    rb.metric("writes", judged as f64).metric("unaudited", unaudited as f64);
    rb.measured(format!("{} of {judged} writes audited", judged - unaudited));
    per.finish(rb, format!("all {judged} writes audited with principal, action, key and time"))
}
