//! Data rights: residency (tagged records stored only where the policy allows, refused elsewhere, absent from the
//! other regions' raw files) and erasure (an erased record unreadable everywhere in time, its bytes gone).

use super::at_rest::{scan_raw_async, show_paths};
use super::{REPLICATE_WAIT, await_state, canary, list, table, writer_probes};
use crate::check::{Ctx, ResultBuilder};
use crate::probe::ProbeError;
use std::path::PathBuf;
use std::time::Duration;
use xregion_model::report::{CheckResult, Verdict};

/// The raw directories of `region` under the raw paths (`PATH/<region>`), where they exist.
pub(super) fn region_dirs(paths: &[PathBuf], region: &str) -> Vec<PathBuf> {
    paths.iter().map(|p| p.join(region)).filter(|p| p.is_dir()).collect()
}

pub(super) async fn data_residency(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let sec = &ctx.config.deployment.security;
    let tag = sec.residency_tag.as_str();
    if sec.residency_regions.is_empty() {
        return rb.finish(
            Verdict::Skipped,
            format!("no residency policy: set [deployment.security] residency_regions for tag {tag:?}"),
        );
    }
    let writers = writer_probes(ctx);
    let allowed: Vec<usize> =
        (0..writers.len()).filter(|&i| sec.residency_regions.contains(&writers[i].region)).collect();
    let denied: Vec<usize> = (0..writers.len()).filter(|i| !allowed.contains(i)).collect();
    let Some(&home) = allowed.first() else {
        return rb.finish(Verdict::Error, format!("no region of the deployment is in residency_regions for {tag:?}"));
    };
    let prefix = ctx.prefix("data-residency");
    let home_p = &writers[home];
    let mut records = Vec::new();
    for n in 0..3 {
        let key = format!("{prefix}tagged-{n}");
        let value = canary(ctx, &key, "residency");
        match home_p.put_tagged(&key, &value, Some(tag)).await {
            Ok(_) => records.push((key, value)),
            Err(e) => {
                return rb.finish(Verdict::Fail, format!("a {tag:?} record was refused in {}: {e}", home_p.region));
            }
        }
    }
    // An untagged marker written after them: once it is everywhere, the tagged records had every chance to be.
    let marker = format!("{prefix}marker");
    let marker_v = canary(ctx, &marker, "marker");
    if let Err(e) = home_p.put(&marker, &marker_v).await {
        return rb.error(&e);
    }
    let waits = await_state(&ctx.probes, &marker, Some(&marker_v), REPLICATE_WAIT).await;
    for (i, w) in waits.iter().enumerate() {
        if w.is_none() {
            rb.note(format!(
                "the untagged marker did not reach {} within {} s",
                ctx.probes[i].region,
                REPLICATE_WAIT.as_secs()
            ));
        }
    }
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (key, value) in &records {
        for (i, p) in ctx.probes.iter().enumerate() {
            let should = allowed.contains(&i);
            let got = if should {
                await_state(std::slice::from_ref(p), key, Some(value), REPLICATE_WAIT).await[0].is_some()
            } else {
                matches!(p.get(key).await, Ok(Some(r)) if r.value.is_some())
            };
            let tag_ok = match p.get(key).await {
                Ok(Some(r)) => r.residency.as_deref() == Some(tag),
                _ => !should,
            };
            if should && !got {
                problems.push(format!("{tag} record {key} missing from allowed region {}", p.region));
            }
            if !should && got {
                problems.push(format!("{tag} record {key} reached {}", p.region));
            }
            if should && got && !tag_ok {
                problems.push(format!("{tag} record {key} in {} lost its residency tag", p.region));
            }
            rows.push(vec![
                key.clone(),
                p.region.clone(),
                if should { "allowed" } else { "not allowed" }.into(),
                if got { "present" } else { "absent" }.into(),
                if should == got { "ok" } else { "WRONG" }.into(),
            ]);
        }
    }
    rb.table(table(
        &format!("Records tagged {tag:?} written in {}, by region (through the contract)", home_p.region),
        &["key", "region", "policy", "served", "verdict"],
        rows,
    ));
    // Raw files of the regions that must not hold them.
    let needles: Vec<Vec<u8>> = records.iter().map(|(_, v)| v.clone().into_bytes()).collect();
    let mut raw_rows = Vec::new();
    for &i in &denied {
        let region = &ctx.probes[i].region;
        let dirs = region_dirs(&sec.raw_paths, region);
        if dirs.is_empty() {
            continue;
        }
        let scan = scan_raw_async(dirs, needles.clone()).await;
        if !scan.hits.is_empty() {
            problems.push(format!(
                "{tag} record bytes found in the raw files of {region}: {}",
                list(&show_paths(&scan.hits), 2)
            ));
        }
        raw_rows.push(vec![region.clone(), scan.files.to_string(), scan.hits.len().to_string()]);
    }
    if raw_rows.is_empty() {
        rb.note("no per-region raw directory under raw_paths: raw files not checked for residency");
    } else {
        rb.table(table("Raw files of the regions outside the policy", &["region", "files", "canary hits"], raw_rows));
        rb.note(
            "the raw scan finds values stored in plaintext; with encryption at rest the contract's answer is the \
             evidence",
        );
    }
    // A tagged write to a region outside the policy must be refused.
    let mut refused_rows = Vec::new();
    for &i in &denied {
        let p = &writers[i];
        let key = format!("{prefix}refused-{}", p.region);
        let r = p.put_tagged(&key, &canary(ctx, &key, "residency"), Some(tag)).await;
        let cell = match &r {
            Ok(_) => {
                problems.push(format!("a {tag} record was accepted by {}, outside the policy", p.region));
                "accepted".to_string()
            }
            Err(ProbeError::Status { status, message, .. }) if (400..500).contains(status) => {
                format!("refused {status}: {message}")
            }
            Err(e) => {
                problems.push(format!("a {tag} write to {} was not cleanly refused: {e}", p.region));
                format!("error: {e}")
            }
        };
        refused_rows.push(vec![p.region.clone(), cell]);
    }
    if !refused_rows.is_empty() {
        rb.table(table(&format!("Writes tagged {tag:?} outside the policy"), &["region", "answer"], refused_rows));
    }
    rb.metric("violations", problems.len() as f64);
    rb.measured(format!("{} violations", problems.len()));
    if !problems.is_empty() {
        return rb.finish(Verdict::Fail, list(&problems, 3));
    }
    rb.finish(
        Verdict::Pass,
        format!(
            "{tag} records stay in {} and are refused elsewhere",
            allowed.iter().map(|&i| ctx.probes[i].region.as_str()).collect::<Vec<_>>().join(", ")
        ),
    )
}

pub(super) async fn erasure(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let limit = Duration::from_secs_f64(ctx.config.targets.erasure_s.max(0.0));
    let writers = writer_probes(ctx);
    let Some(home) = writers.first() else {
        return rb.finish(Verdict::Error, "no region");
    };
    let key = format!("{}subject", ctx.prefix("erasure"));
    // Two versions, so that an old version in a log is covered too.
    let old = canary(ctx, &key, "erase-old");
    let new = canary(ctx, &key, "erase-new");
    for v in [&old, &new] {
        if let Err(e) = home.put(&key, v).await {
            return rb.error(&e);
        }
    }
    let waits = await_state(&ctx.probes, &key, Some(&new), REPLICATE_WAIT).await;
    if let Some(i) = waits.iter().position(Option::is_none) {
        rb.note(format!("the record did not reach {} before the erasure", ctx.probes[i].region));
    }
    let receipt = match home.erase(&key).await {
        Ok(r) => r,
        Err(ProbeError::Status { status: 404 | 405, .. }) => {
            return rb.finish(Verdict::Skipped, format!("{} has no POST /v1/erase route", home.region));
        }
        Err(e) => return rb.error(&e),
    };
    rb.note(format!("erased in {} (receipt version {})", receipt.region, receipt.version));
    let gone = await_state(&ctx.probes, &key, None, limit).await;
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut slowest = 0.0f64;
    for (p, g) in ctx.probes.iter().zip(&gone) {
        match g {
            Some(d) => {
                slowest = slowest.max(d.as_secs_f64());
                rows.push(vec![p.region.clone(), format!("{:.2}", d.as_secs_f64()), "ok".into()]);
            }
            None => {
                problems.push(format!("{} still serves the erased value after {:.0} s", p.region, limit.as_secs_f64()));
                rows.push(vec![p.region.clone(), format!("> {:.0}", limit.as_secs_f64()), "STILL READABLE".into()]);
            }
        }
    }
    rb.table(table("Time until the erased record is unreadable", &["region", "seconds", "verdict"], rows));
    rb.metric("unreadable_everywhere_s", slowest);
    let sec = &ctx.config.deployment.security;
    let mut hits = 0;
    if sec.raw_paths.is_empty() {
        rb.note("no raw_paths: the raw files were not checked for the erased bytes");
    } else {
        let needles = vec![old.clone().into_bytes(), new.clone().into_bytes()];
        let scan = scan_raw_async(sec.raw_paths.clone(), needles).await;
        hits = scan.hits.len();
        let files = show_paths(&scan.hits);
        rb.table(table(
            "Raw files still holding the erased bytes",
            &["file", "version"],
            scan.hits
                .iter()
                .map(|(p, i)| vec![p.display().to_string(), if *i == 0 { "old" } else { "latest" }.into()])
                .collect(),
        ));
        rb.note(format!("scanned {} raw files ({} bytes)", scan.files, scan.bytes));
        if !files.is_empty() {
            problems.push(format!("the erased bytes remain in {}", list(&files, 3)));
        }
    }
    rb.metric("raw_hits", hits as f64);
    rb.measured(format!("unreadable everywhere after {slowest:.2} s, {hits} raw hits"));
    if !problems.is_empty() {
        return rb.finish(Verdict::Fail, list(&problems, 3));
    }
    rb.finish(
        Verdict::Pass,
        format!("unreadable in every region after {slowest:.2} s (limit {:.0} s), no bytes left", limit.as_secs_f64()),
    )
}
