//! A realistic report for the tests: three regions, replication delays from real `LatencyRecorder`s, a region
//! kill under load drawn as time charts and a heatmap, and one check of each verdict, with hostile text in a
//! summary.

use std::collections::BTreeMap;
use xregion_check::stats::{LatencyRecorder, percentile_table};
use xregion_model::report::{
    Chart, CheckResult, Heatmap, Marker, RegionInfo, RegionVerdict, Report, SCHEMA_VERSION, Series, Table, Verdict,
};

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
        charts: Vec::new(),
        heatmaps: Vec::new(),
        waterfalls: Vec::new(),
        regions: Vec::new(),
        duration_s: 1.5,
    }
}

/// Seconds after the start of the sample's region-kill check at which us-east-1 is killed.
const KILLED_AT_S: f64 = 20.0;
/// Seconds after the start at which it is back.
const RESTARTED_AT_S: f64 = 40.0;

/// A check that kills a region under load: latency percentiles and users over 60 s with fault markers, and the
/// round trips between regions as a heatmap with no value on the diagonal.
pub fn region_kill_check() -> CheckResult {
    let mut c = check("failover.region-kill.under-load", Verdict::Pass, "p99 stayed under 300 ms with us-east-1 down");
    let markers = vec![
        Marker { t_s: KILLED_AT_S, label: "us-east-1 killed".into() },
        Marker { t_s: RESTARTED_AT_S, label: "us-east-1 restarted".into() },
    ];
    // Latency rises sharply when the region dies (its clients fail over to farther regions) and decays as they
    // settle; a deterministic wobble keeps the lines from looking synthetic.
    let latency = |t: f64, base: f64, spike: f64| {
        let wobble = 1.0 + 0.06 * (t * 1.7).sin() + 0.04 * (t * 0.37).cos();
        let fault = if (KILLED_AT_S..RESTARTED_AT_S).contains(&t) {
            spike * (-(t - KILLED_AT_S) / 6.0).exp() + spike * 0.25
        } else {
            0.0
        };
        ((base + fault) * wobble * 10.0).round() / 10.0
    };
    let times: Vec<f64> = (0..60).map(f64::from).collect();
    let series = |name: &str, base: f64, spike: f64| Series {
        name: name.into(),
        points: times.iter().map(|&t| (t, latency(t, base, spike))).collect(),
    };
    c.charts.push(Chart {
        title: "Latency percentiles over time".into(),
        y_unit: "ms".into(),
        series: vec![series("p50", 18.0, 40.0), series("p95", 42.0, 120.0), series("p99", 61.0, 170.0)],
        markers: markers.clone(),
    });
    let p99_ms_max = c.charts[0].series[2].points.iter().map(|p| p.1).fold(0.0, f64::max);
    c.metrics.insert("p99_ms_max".into(), p99_ms_max);
    let users = |t: f64, share: f64| (300.0 * share * (t / 10.0).min(1.0)).round();
    let east_share = |t: f64| if (KILLED_AT_S..RESTARTED_AT_S).contains(&t) { 0.0 } else { 0.4 };
    c.charts.push(Chart {
        title: "Active users".into(),
        y_unit: "users".into(),
        series: vec![
            Series { name: "all regions".into(), points: times.iter().map(|&t| (t, users(t, 1.0))).collect() },
            Series { name: "us-east-1".into(), points: times.iter().map(|&t| (t, users(t, east_share(t)))).collect() },
        ],
        markers,
    });
    let rtt = [[None, Some(78.4), Some(212.6)], [Some(79.1), None, Some(121.3)], [Some(214.0), Some(119.8), None]];
    c.heatmaps.push(Heatmap {
        title: "Round trip P95 by region pair".into(),
        unit: "ms".into(),
        rows: REGIONS.iter().map(|r| r.to_string()).collect(),
        columns: REGIONS.iter().map(|r| r.to_string()).collect(),
        values: rtt.iter().map(|row| row.to_vec()).collect(),
    });
    c
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
    writes.regions = vec![
        RegionVerdict { region: "us-east-1".into(), verdict: Verdict::Pass, reason: "0 lost".into() },
        RegionVerdict { region: "us-west-2".into(), verdict: Verdict::Fail, reason: "2 lost <b>writes</b>".into() },
        RegionVerdict {
            region: "eu-west-1".into(),
            verdict: Verdict::Error,
            reason: "https://eu.example refused the connection".into(),
        },
    ];
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
        checks: vec![delay, writes, empty, region_kill_check(), rto, skipped],
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
