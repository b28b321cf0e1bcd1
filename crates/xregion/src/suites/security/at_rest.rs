//! Raw-file evidence and encryption at rest: the scan of `raw_paths` for canary bytes, and the check that no stored
//! value appears in plaintext (or, without raw paths, a Prowler OCSF finding).

use super::{RAW_FILE_BYTES_MAX, RAW_FILES_MAX, REPLICATE_WAIT, await_state, canary, list, table};
use crate::check::{Ctx, ResultBuilder};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xregion_model::report::{CheckResult, Verdict};

/// What a raw scan found.
#[derive(Debug, Default)]
pub(super) struct RawScan {
    /// Files read.
    pub(super) files: u64,
    /// Bytes read.
    pub(super) bytes: u64,
    /// Files not read: too big or unreadable.
    pub(super) skipped: Vec<String>,
    /// (file, index of the needle found).
    pub(super) hits: Vec<(PathBuf, usize)>,
}

/// Streams every regular file under `paths` (symlinks not followed) looking for `needles`.
pub(super) fn scan_raw(paths: &[PathBuf], needles: &[Vec<u8>]) -> RawScan {
    let mut out = RawScan::default();
    let overlap = needles.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1);
    let mut stack: Vec<PathBuf> = paths.to_vec();
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        seen += 1;
        if seen > RAW_FILES_MAX {
            out.skipped.push(format!("{} (past {RAW_FILES_MAX} files)", p.display()));
            continue;
        }
        if meta.len() > RAW_FILE_BYTES_MAX {
            out.skipped.push(format!("{} ({} bytes)", p.display(), meta.len()));
            continue;
        }
        match scan_file(&p, needles, overlap) {
            Ok((bytes, found)) => {
                out.files += 1;
                out.bytes += bytes;
                out.hits.extend(found.into_iter().map(|i| (p.clone(), i)));
            }
            Err(e) => out.skipped.push(format!("{} ({e})", p.display())),
        }
    }
    out
}

/// The needles found in one file, read in chunks that overlap by the longest needle.
pub(super) fn scan_file(path: &Path, needles: &[Vec<u8>], overlap: usize) -> std::io::Result<(u64, Vec<usize>)> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024 + overlap];
    let mut kept = 0usize;
    let mut total = 0u64;
    let mut found = vec![false; needles.len()];
    loop {
        let n = f.read(&mut buf[kept..])?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let window = &buf[..kept + n];
        for (i, needle) in needles.iter().enumerate() {
            if !found[i] && !needle.is_empty() && window.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found[i] = true;
            }
        }
        let keep = overlap.min(window.len());
        let from = window.len() - keep;
        buf.copy_within(from..kept + n, 0);
        kept = keep;
    }
    Ok((total, found.iter().enumerate().filter(|(_, f)| **f).map(|(i, _)| i).collect()))
}

pub(super) async fn scan_raw_async(paths: Vec<PathBuf>, needles: Vec<Vec<u8>>) -> RawScan {
    tokio::task::spawn_blocking(move || scan_raw(&paths, &needles)).await.unwrap_or_default()
}

pub(super) fn show_paths(hits: &[(PathBuf, usize)]) -> Vec<String> {
    let mut v: Vec<String> = hits.iter().map(|(p, _)| p.display().to_string()).collect();
    v.dedup();
    v
}

pub(super) async fn encryption_at_rest(mut rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    let sec = &ctx.config.deployment.security;
    if sec.raw_paths.is_empty() {
        return match &sec.prowler_ocsf {
            Some(file) => prowler(rb, file),
            None => rb.finish(
                Verdict::Skipped,
                "no raw files to scan and no Prowler result: set [deployment.security] raw_paths or prowler_ocsf",
            ),
        };
    }
    let prefix = ctx.prefix("encryption-at-rest");
    let mut canaries = Vec::new();
    for p in &ctx.probes {
        let key = format!("{prefix}{}", p.region);
        let value = canary(ctx, &key, "rest");
        if let Err(e) = p.put(&key, &value).await {
            return rb.error(&e);
        }
        canaries.push((p.region.clone(), key, value));
    }
    // Every copy in place before the scan: each canary served by every region.
    for (_, key, value) in &canaries {
        let waits = await_state(&ctx.probes, key, Some(value), REPLICATE_WAIT).await;
        if waits.iter().any(Option::is_none) {
            rb.note(format!("{key} did not reach every region within {} s; scanned anyway", REPLICATE_WAIT.as_secs()));
        }
    }
    let needles: Vec<Vec<u8>> = canaries.iter().map(|(_, _, v)| v.clone().into_bytes()).collect();
    // Twice, a moment apart, so that a store that writes lazily is seen too.
    let mut scan = scan_raw_async(sec.raw_paths.clone(), needles.clone()).await;
    if scan.hits.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        scan = scan_raw_async(sec.raw_paths.clone(), needles).await;
    }
    rb.metric("files_scanned", scan.files as f64)
        .metric("bytes_scanned", scan.bytes as f64)
        .metric("plaintext_hits", scan.hits.len() as f64);
    let rows = canaries
        .iter()
        .enumerate()
        .map(|(i, (region, key, _))| {
            let files: Vec<_> =
                scan.hits.iter().filter(|(_, n)| *n == i).map(|(p, _)| p.display().to_string()).collect();
            vec![region.clone(), key.clone(), files.len().to_string(), files.join(", ")]
        })
        .collect();
    rb.table(table("Canary values found in raw files", &["written in", "key", "files", "where"], rows));
    for s in scan.skipped.iter().take(10) {
        rb.note(format!("not scanned: {s}"));
    }
    rb.note(format!(
        "scanned {} files ({} bytes) under {}",
        scan.files,
        scan.bytes,
        sec.raw_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ));
    rb.measured(format!("{} plaintext hits in {} files", scan.hits.len(), scan.files));
    if !scan.hits.is_empty() {
        let files = show_paths(&scan.hits);
        return rb.finish(Verdict::Fail, format!("plaintext values found at rest in {}", list(&files, 3)));
    }
    if scan.files == 0 {
        return rb.finish(Verdict::Error, "no raw file could be read under raw_paths");
    }
    rb.finish(Verdict::Pass, format!("no canary value in {} raw files ({} bytes)", scan.files, scan.bytes))
}

/// Judges encryption at rest from a Prowler OCSF result file.
fn prowler(mut rb: ResultBuilder, file: &Path) -> CheckResult {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return rb.finish(Verdict::Error, format!("cannot read {}: {e}", file.display())),
    };
    let findings: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
    };
    let s = |v: &serde_json::Value, path: &[&str]| {
        path.iter().try_fold(v, |v, k| v.get(k)).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for f in &findings {
        let code = s(f, &["metadata", "event_code"]);
        let title = s(f, &["finding_info", "title"]);
        let text = format!("{code} {title}").to_lowercase();
        let at_rest = text.contains("encrypt") && !["transit", "tls", "ssl", "https"].iter().any(|w| text.contains(w));
        if !at_rest {
            continue;
        }
        let status = s(f, &["status_code"]).to_uppercase();
        let resource = f
            .get("resources")
            .and_then(|r| r.get(0))
            .map(|r| s(r, &["uid"]))
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| s(f, &["resource", "uid"]));
        if status == "FAIL" {
            failed.push(format!("{code} on {resource}"));
        }
        rows.push(vec![code, title, resource, status]);
    }
    rb.metric("findings", rows.len() as f64).metric("failed", failed.len() as f64);
    let n = rows.len();
    rb.table(table("Prowler encryption-at-rest findings", &["check", "title", "resource", "status"], rows));
    rb.note(format!("from the Prowler OCSF result {}", file.display()));
    rb.measured(format!("{} of {n} findings failed", failed.len()));
    if n == 0 {
        return rb.finish(Verdict::Skipped, format!("{} has no encryption-at-rest finding", file.display()));
    }
    if !failed.is_empty() {
        return rb.finish(Verdict::Fail, format!("Prowler: not encrypted at rest: {}", list(&failed, 3)));
    }
    rb.finish(Verdict::Pass, format!("{n} Prowler encryption-at-rest findings, all passed"))
}
