//! The README's commands that the other areas do not cover end to end: `xregion list`, `xregion report` and
//! `xregion load`, and the replay promise of `--seed` (two runs with one seed write the same keys and values in the
//! same per-writer order).

use crate::common::{TempDir, lab_lock, run_xregion, text};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Longest a command of this module may take before the test fails (a hang is a failure).
const LIMIT: Duration = Duration::from_secs(120);

/// Goal: `xregion list` names every suite and at least the 36 checks of the catalogue, each with its target.
#[test]
fn list_shows_every_suite_and_check() {
    let o = run_xregion(&["list"], &[], LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for suite in ["cross-region", "performance", "disaster-recovery", "security"] {
        assert!(out.lines().any(|l| l.starts_with(suite)), "no suite {suite}: {out}");
    }
    let ids = out
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
        .filter(|w| {
            w.split('.').count() >= 2 && w.chars().all(|c| c.is_ascii_lowercase() || "-.0123456789".contains(c))
        })
        .count();
    assert!(ids >= 36, "{ids} check ids listed: {out}");
    assert!(out.contains("replication P99 < 100 ms for every region pair"), "targets from the config: {out}");
}

/// Goal: `xregion report` renders junit.xml and report.html from a report.json written by hand (a report from an
/// older run), and exits with the report's own code (1: a check failed); a file that is not a report is exit 2.
#[test]
fn report_renders_an_old_report_again() {
    let dir = TempDir::new("report");
    let report = serde_json::json!({
        "schema_version": 1, "tool_version": "0.0.0", "git_revision": "test", "seed": 1,
        "started_at": "2026-01-01T00:00:00Z", "duration_s": 1.0, "target_kind": "http",
        "regions": [{"name": "us-east-1", "endpoint": "https://a.invalid"}], "config": {},
        "checks": [{
            "id": "cross-region.consistency.conflict-lww", "suite": "cross-region", "verdict": "fail",
            "summary": "3 wrong last-write-wins winners", "target": "0 wrong winners", "measured": "3 wrong",
            "metrics": {"wrong_winners": 3.0}, "notes": [], "distributions": [], "tables": [], "charts": [],
            "heatmaps": [], "duration_s": 0.5
        }]
    });
    let file = dir.path().join("report.json");
    std::fs::write(&file, serde_json::to_string(&report).unwrap()).unwrap();
    let out = dir.path().join("again");
    let o = run_xregion(&["report", file.to_str().unwrap(), "--out", out.to_str().unwrap()], &[], LIMIT);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("FAIL") && stdout.contains("conflict-lww") && stdout.contains("3 wrong"), "{}", text(&o));
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("conflict-lww") && junit.contains("<failure"), "{junit}");
    assert!(std::fs::read_to_string(out.join("report.html")).expect("report.html").contains("conflict-lww"));

    std::fs::write(&file, "{\"not\": \"a report\"}").unwrap();
    let o = run_xregion(&["report", file.to_str().unwrap()], &[], LIMIT);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a report"), "{}", text(&o));
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1:0 answering every request with 200; serves until the test process
/// ends (each connection on its own thread, each bounded by the client's run).
fn ok_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                let mut line = String::new();
                loop {
                    // Read one request head; the load's GETs carry no body.
                    let mut blank = false;
                    while !blank {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        blank = line == "\r\n";
                    }
                    if writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/")
}

/// Goal: `xregion load` measures a local server (closed model, then open model) and judges its thresholds:
/// exit 0 when they hold, 1 when one cannot (a P95 below 0 ms).
#[test]
fn load_measures_a_local_server_and_judges_thresholds() {
    let url = ok_server();
    let o =
        run_xregion(&["load", &url, "--vus", "4", "--duration", "1s", "--threshold", "p95 < 1s", "--json"], &[], LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    assert!(r["requests"].as_u64().unwrap_or(0) > 100, "{r}");
    // requests_per_s: successful and all; nothing failed here, so both are the requests over the duration.
    let (ok, total) = (r["requests_per_s"]["ok"].as_f64().unwrap_or(0.0), r["requests_per_s"]["total"].as_f64());
    let expected = r["requests"].as_f64().unwrap_or(0.0) / r["duration_s"].as_f64().unwrap_or(1.0);
    assert!(ok > 0.0 && (ok - expected).abs() < 1e-6 * expected && total == Some(ok), "{}", r["requests_per_s"]);
    let o = run_xregion(&["load", &url, "--rate", "200", "--duration", "1s", "--threshold", "p95 < 0ms"], &[], LIMIT);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Summary (open model"), "{}", text(&o));
}

/// Goal: `xregion load` at a port nobody listens on ends within a few seconds with one readable sentence (the
/// address, how long it tried, the reason in words) and exit code 2, instead of spinning on connect errors for the
/// whole run.
#[test]
fn load_at_a_closed_port_ends_with_a_clear_error() {
    let addr = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let t = std::time::Instant::now();
    let o = run_xregion(&["load", &format!("http://{addr}/"), "--duration", "60s"], &[], LIMIT);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let expected = format!("error: no connection to {addr} succeeded within 3 s: connection refused;");
    assert!(stderr.starts_with(&expected), "{}", text(&o));
    assert_eq!(stderr.trim_end().lines().count(), 1, "one sentence: {stderr}");
    assert!(!stderr.contains("os error") && !stderr.contains('{'), "no Debug output: {stderr}");
}

/// The (key, value) of every write invoke in `history.jsonl`, per process, in order.
fn writes_by_process(history: &str) -> BTreeMap<u64, Vec<(String, String)>> {
    let mut by: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for line in history.lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("history line is JSON");
        if e["type"] == "invoke" {
            let value = e["value"].as_str().unwrap_or("<delete>").to_string();
            by.entry(e["process"].as_u64().unwrap_or(0)).or_default().push((e["key"].to_string(), value));
        }
    }
    by
}

/// Goal: two runs with the same `--seed` write the same keys and values in the same per-writer order; method: the
/// concurrent-writes and conflict-lww checks twice on fresh labs, comparing `history.jsonl` per process. Writers
/// run for a fixed time, so one run may stop a few operations earlier: each writer's shorter sequence must be a
/// prefix of the other's.
#[test]
fn same_seed_same_writes() {
    let _g = lab_lock();
    let dir = TempDir::new("seed");
    let config = dir.path().join("xregion.toml");
    std::fs::write(&config, "[checks.concurrent-writes]\nduration_ms = 1000\n[checks.conflict-lww]\nkeys = 10\n")
        .unwrap();
    let histories: Vec<_> = ["a", "b"]
        .iter()
        .map(|run| {
            let out = dir.path().join(run);
            let o = run_xregion(
                &[
                    "run",
                    "--config",
                    config.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--seed",
                    "42",
                    "--check",
                    "cross-region.consistency.concurrent-writes",
                    "--check",
                    "cross-region.consistency.conflict-lww",
                ],
                &[],
                LIMIT,
            );
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            writes_by_process(&std::fs::read_to_string(out.join("history.jsonl")).expect("history"))
        })
        .collect();
    let (a, b) = (&histories[0], &histories[1]);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "the same writers");
    let mut compared = 0;
    for (p, wa) in a {
        let wb = &b[p];
        let n = wa.len().min(wb.len());
        assert!(n > 0, "writer {p} wrote nothing");
        assert_eq!(wa[..n], wb[..n], "writer {p} diverged");
        compared += n;
    }
    assert!(compared > 100, "only {compared} writes compared");
}
