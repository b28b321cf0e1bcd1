//! `xregion chaos` end to end: a short campaign on the default lab passes and reports its schedules, a lab that
//! drops replicated entries fails with the seed and the replay command, and a deployment without a fault
//! injector is refused.

use crate::common::{TempDir, lab_lock, report, run_xregion, text};
use std::time::Duration;

/// Longest one campaign in these tests may take before the test fails (a hang is a failure).
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Goal: two 4 s schedules on the default lab pass (exit 0), and report.json holds two passing
/// `chaos.schedule-*` checks, each with its fault schedule listed and writes acknowledged.
#[test]
fn campaign_on_the_default_lab_passes() {
    let _lab = lab_lock();
    let dir = TempDir::new("chaos-pass");
    let out = dir.path().join("out");
    let args = ["chaos", "--schedules", "2", "--duration", "4s", "--seed", "5", "--out", out.to_str().unwrap()];
    let o = run_xregion(&args, &[], RUN_LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&out);
    assert_eq!(r["seed"], 5, "{r}");
    let checks = r["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2, "{r}");
    for (i, c) in checks.iter().enumerate() {
        assert_eq!(c["id"], format!("chaos.schedule-{i:02}"), "{c}");
        assert_eq!(c["suite"], "chaos", "{c}");
        assert_eq!(c["verdict"], "pass", "{c}");
        assert!(c["metrics"]["acked_writes"].as_f64().unwrap() > 0.0, "{c}");
        let schedule = c["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .find(|t| t["title"].as_str().unwrap().starts_with("Fault schedule"))
            .unwrap_or_else(|| panic!("no schedule table: {c}"));
        let rows = schedule["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "{c}");
        assert_eq!(rows.len() as f64, c["metrics"]["events"].as_f64().unwrap(), "{c}");
    }
    assert!(out.join("history.jsonl").exists());
    assert!(out.join("junit.xml").exists() && out.join("report.html").exists());
}

/// Goal: when the lab silently drops one replicated entry in three, the schedule fails (exit 1), and the output
/// names its seed, lists its schedule and gives the exact replay command.
#[test]
fn campaign_fails_when_replication_drops_entries() {
    let _lab = lab_lock();
    let dir = TempDir::new("chaos-drop");
    let config = dir.path().join("xregion.toml");
    std::fs::write(&config, "[lab.defects]\ndrop_one_in = 3\n").expect("config");
    let config = config.to_str().unwrap();
    let out = dir.path().join("out");
    let args = [
        "chaos",
        "--config",
        config,
        "--schedules",
        "1",
        "--duration",
        "3s",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = run_xregion(&args, &[], RUN_LIMIT);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("--seed 7"), "{all}");
    assert!(all.contains(&format!("xregion chaos --config {config} --seed 7 --schedules 1 --duration 3s")), "{all}");
    assert!(all.contains("with seed 7; its schedule:"), "{all}");
    let r = report(&out);
    let c = &r["checks"][0];
    assert_eq!(c["verdict"], "fail", "{c}");
    let m = &c["metrics"];
    assert!(m["lost_writes"].as_f64().unwrap() + m["divergent_keys"].as_f64().unwrap() > 0.0, "{c}");
}

/// Goal: a deployment without a fault injector is refused with exit 2 and the reason, before any schedule runs.
#[test]
fn deployment_without_injector_is_refused() {
    let dir = TempDir::new("chaos-none");
    let config = dir.path().join("xregion.toml");
    std::fs::write(
        &config,
        "[deployment]\nkind = \"http\"\n[[deployment.regions]]\nname = \"us-east-1\"\nendpoint = \"http://127.0.9.1:9\"\n\
         [[deployment.regions]]\nname = \"eu-west-1\"\nendpoint = \"http://127.0.9.2:9\"\n",
    )
    .expect("config");
    let out = dir.path().join("out");
    let args = ["chaos", "--config", config.to_str().unwrap(), "--schedules", "1", "--out", out.to_str().unwrap()];
    let o = run_xregion(&args, &[], Duration::from_secs(30));
    let all = text(&o);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(all.contains("needs a fault injector") && all.contains("[faults]"), "{all}");
    assert!(!out.join("report.json").exists(), "{all}");
}
