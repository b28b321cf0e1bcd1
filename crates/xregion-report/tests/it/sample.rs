//! A realistic report for the tests: three regions, replication delays from real `LatencyRecorder`s, and one
//! check of each verdict, with hostile text in a summary.

use std::collections::BTreeMap;
use xregion_check::stats::{LatencyRecorder, percentile_table};
use xregion_model::report::{CheckResult, RegionInfo, Report, SCHEMA_VERSION, Table, Verdict};

pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-1"];

/// Summary text a user config could contain; it must come out escaped.
pub const HOSTILE_SUMMARY: &str = "lost 2 writes <script>alert('x')</script> & \"quoted\"";

/// A deterministic pseudo-random delay in microseconds around `base_ms`, with a tail.
fn delay_us(state: &mut u64, base_ms: u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let r = (*state >> 33) % 10_000;
    let tail = if r > 9_900 { (r - 9_900) * 900 } else { 0 };
    base_ms * 1000 + r * 2 + tail
}

pub fn check(id: &str, verdict: Verdict, summary: &str) -> CheckResult {
    CheckResult {
        id: id.to_string(),
        suite: id.split('.').next().unwrap_or(id).to_string(),
        verdict,
        summary: summary.to_string(),
        target: "P99 < 100 ms for every region pair".to_string(),
        measured: "p99 41.2 ms".to_string(),
        metrics: BTreeMap::new(),
        notes: Vec::new(),
        distributions: Vec::new(),
        tables: Vec::new(),
        duration_s: 1.5,
    }
}

pub fn report() -> Report {
    let mut state = 42u64;
    let mut pairs: BTreeMap<String, LatencyRecorder> = BTreeMap::new();
    for (i, a) in REGIONS.iter().enumerate() {
        for (j, b) in REGIONS.iter().enumerate() {
            if i != j {
                let mut r = LatencyRecorder::new();
                for _ in 0..2000 {
                    r.record_us(delay_us(&mut state, 20 + 15 * (i + j) as u64));
                }
                pairs.insert(format!("{a} -> {b}"), r);
            }
        }
    }
    let mut delay = check("cross-region.replication.delay", Verdict::Pass, "worst pair p99 80.1 ms < 100 ms");
    delay.metrics.insert("p99_ms_worst".into(), 80.1);
    delay.metrics.insert("samples".into(), 12000.0);
    delay.notes.push("Polled every 1 ms: delays are accurate to +-1 ms.".into());
    delay.distributions = pairs.iter().map(|(k, r)| r.to_distribution(k.as_str())).collect();
    delay.tables.push(percentile_table("Replication delay by pair", &pairs));

    let mut writes = check("cross-region.consistency.write-replicate", Verdict::Fail, HOSTILE_SUMMARY);
    writes.metrics.insert("lost_writes".into(), 2.0);
    writes.tables.push(Table {
        title: "Write findings".into(),
        columns: vec!["finding".into(), "key".into(), "region".into()],
        rows: vec![vec!["lost".into(), "k/1".into(), "eu-west-1".into()]],
    });
    let mut empty = check("cross-region.consistency.empty-dist", Verdict::Pass, "no samples yet");
    empty.distributions.push(LatencyRecorder::new().to_distribution("nothing"));
    let rto = check("failover.rto.region-down", Verdict::Error, "lab control API unreachable at 127.0.0.1:7000");
    let skipped = check("lab.wan.bandwidth", Verdict::Skipped, "needs --slow");

    Report {
        schema_version: SCHEMA_VERSION,
        tool_version: "0.1.0".into(),
        git_revision: "0123456789abcdef".into(),
        seed: 7,
        started_at: "2025-01-02T03:04:05Z".into(),
        duration_s: 93.25,
        target_kind: "lab".into(),
        regions: REGIONS
            .iter()
            .enumerate()
            .map(|(i, r)| RegionInfo { name: r.to_string(), endpoint: format!("http://127.0.1.{}:7001", i + 1) })
            .collect(),
        config: serde_json::json!({
            "regions": REGIONS.iter().map(|r| serde_json::json!({ "name": r, "endpoint": "http://127.0.1.1:7001" })).collect::<Vec<_>>(),
            "note": "</pre><script>alert(1)</script>",
        }),
        checks: vec![delay, writes, empty, rto, skipped],
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("xregion-report-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
