//! Live metrics into a real Prometheus (Debian's `prometheus` 2.42, its remote-write receiver on): a run pushes
//! while it runs, and every panel of the shipped Grafana dashboard finds data. A receiver that is down costs the
//! run nothing but a warning.
//!
//! Needs the prometheus package; without it the test passes with a note, unless XREGION_REQUIRE_REAL_TARGETS=1 (as
//! in CI).

use crate::common::{TempDir, lab_lock, run_xregion, text};
use crate::run::RUN_LIMIT;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test's Prometheus listens on this assigned loopback address.
const PROMETHEUS: &str = "127.0.13.1:19090";

/// A Prometheus in a temporary directory, killed on drop (before the directory goes).
struct Prometheus {
    child: Child,
    _dir: TempDir,
}

impl Prometheus {
    fn start() -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").expect("prometheus.yml");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(&format!("http://{PROMETHEUS}/-/ready"), &[]).is_none() {
            assert!(Instant::now() < deadline, "prometheus did not get ready within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// The series an instant query returns.
    fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let body = curl(&format!("http://{PROMETHEUS}/api/v1/query"), &["--data-urlencode", &format!("query={expr}")])
            .unwrap_or_else(|| panic!("query {expr} failed"));
        let v: serde_json::Value = serde_json::from_str(&body).expect("query answer is JSON");
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET (or POST with `args`) through curl, bounded to 5 s; the body on a 2xx answer.
fn curl(url: &str, args: &[&str]) -> Option<String> {
    let o = Command::new("curl").args(["-sf", "--max-time", "5"]).args(args).arg(url).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).to_string())
}

/// Goal: `--out prometheus-rw=URL` puts the run's request counts, latency percentiles, replication lag per pair,
/// the load generator's requests while it runs, and check verdicts into a real Prometheus, each panel of
/// `deploy/grafana/xregion-dashboard.json` returns data for the run, and a receiver that is down leaves the run's
/// verdicts and exit code alone.
#[test]
fn live_metrics_reach_prometheus_and_every_dashboard_panel_has_data() {
    if !crate::real_target::available("/usr/bin/prometheus", "prometheus") {
        return;
    }
    let _g = lab_lock();
    let prometheus = Prometheus::start();
    let dir = TempDir::new("live");
    let out = dir.path().join("out");
    let rw = format!("prometheus-rw=http://{PROMETHEUS}/api/v1/write");
    // 60 users for about 15 s: three pushes or so while the load runs.
    let config = dir.path().join("xregion.toml");
    std::fs::write(&config, "[checks.load]\nusers = 60\ntime_scale = 0.3\n").expect("config");
    let o = run_xregion(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--check",
            "cross-region.consistency.write-replicate",
            "--check",
            "performance.load.sustained",
            "--out",
            out.to_str().unwrap(),
            "--out",
            &rw,
        ],
        &[],
        RUN_LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("none failed"), "{}", text(&o));

    let verdicts = prometheus.query("xregion_check_verdict");
    assert!(
        verdicts
            .iter()
            .any(|s| s["metric"]["check"] == "cross-region.consistency.write-replicate"
                && s["metric"]["verdict"] == "pass"),
        "{verdicts:?}"
    );
    let lag = prometheus.query("xregion_replication_lag_ms");
    assert_eq!(lag.len(), 6, "one series per ordered pair of 3 regions: {lag:?}");
    let writes = prometheus.query(r#"sum(xregion_operations_total{op="write",outcome="ok"})"#);
    let n: f64 = writes[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(n >= 1800.0, "600 probe writes in each of 3 regions: {writes:?}");
    // The load generator's windows arrive while it runs: its active users (sent only for fresh windows) were
    // pushed at least twice, and its request count covers the sustained phase the report judged.
    let value = |expr: &str| -> f64 {
        let r = prometheus.query(expr);
        r.first().map_or(0.0, |s| s["value"][1].as_str().unwrap().parse().unwrap())
    };
    let pushes = value("count_over_time(xregion_load_active_users[1h])");
    assert!(pushes >= 2.0, "load pushed {pushes} times while it ran");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report")).expect("JSON");
    let sustained = crate::common::check(&report, "performance.load.sustained")["metrics"]["requests"].as_f64();
    let sent = value("xregion_load_requests_total");
    assert!(sustained.is_some_and(|s| s > 0.0 && sent >= s), "load requests {sent}, sustained phase {sustained:?}");

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/xregion-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 12, "{}", panels.len());
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr").replace("$run", ".*");
            assert!(!prometheus.query(&expr).is_empty(), "panel {:?}: {expr} returned no data", panel["title"]);
        }
    }

    // A receiver that is down: one warning, the same verdict and exit code.
    let down = run_xregion(
        &[
            "run",
            "--check",
            "cross-region.consistency.conflict-lww",
            "--out",
            dir.path().join("out-down").to_str().unwrap(),
            "--out",
            "prometheus-rw=http://127.0.13.1:9/api/v1/write",
        ],
        &[],
        RUN_LIMIT,
    );
    let t = text(&down);
    assert_eq!(down.status.code(), Some(0), "{t}");
    assert_eq!(t.matches("warning: live metrics: a push to").count(), 1, "{t}");
    assert!(t.contains("failed (first:"), "{t}");
}
