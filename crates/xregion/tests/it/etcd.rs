//! Real etcd as a target: `targets/etcd`, three members on loopback, one per region. etcd promises linearizable
//! reads and writes, and a write acknowledged by a majority survives the loss of any one member; xregion's verdicts
//! must say exactly that.
//!
//! These tests need the etcd-server package. Without it they pass with a note, unless
//! XREGION_REQUIRE_REAL_TARGETS=1 (as in CI), which makes a missing server a failure.

use crate::common::{TempDir, lab_lock, run_xregion, text};
use crate::real_target::{RealTarget, verdicts};
use std::time::Duration;

/// Whether etcd can run here; panics when it must and cannot.
fn available() -> bool {
    crate::real_target::available("/usr/bin/etcd", "etcd-server")
}

/// Goal: DB_ENDPOINT_* with XREGION_DB_KIND=etcd alone describe the cluster. `db init` has nothing to create, the
/// consistency checks pass (every write is linearizable; deletes leave no tombstone and are judged as absent keys),
/// and the fault checks are skipped for want of fault commands.
#[test]
fn etcd_from_db_endpoints_alone() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    let target = RealTarget::up("etcd", "etcd-env", ("XREGION_ETCD_NET", "127.0.11"), &[]);
    let out = TempDir::new("etcd-env-out");
    crate::real_target::consistency_passes_from_env(&target.env(), &out, "etcd", &["nothing to create"]);
}

/// Goal: killing etcd's leader under write load loses nothing (a write is acknowledged only once a majority has
/// it): RPO 0 and RTO within the target. Method: the target's own fault commands, aimed at the member that leads
/// when the run starts, so that the survivors must elect a new leader. The election leaves every region without a
/// leader for about one election timeout (1 s), which a short scenario's availability figure shows honestly, so
/// complete-region's availability is not asserted here.
#[test]
fn etcd_leader_killed_under_load_loses_nothing() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    let target = RealTarget::up("etcd", "etcd-failover", ("XREGION_ETCD_NET", "127.0.12"), &[]);
    let status = target.ctl(&["status"], &[]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    let leader = status.lines().find(|l| l.ends_with(" leader")).and_then(|l| l.split(' ').next());
    let leader = leader.unwrap_or_else(|| panic!("no leader in {status}"));
    let config = target.dir.path().join("failover.toml");
    let own = std::fs::read_to_string(target.config()).unwrap();
    std::fs::write(&config, format!("{own}\n[checks.failover]\nregion = \"{leader}\"\n")).unwrap();

    let out = TempDir::new("etcd-failover-out");
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--check",
        "disaster-recovery.rto",
        "--check",
        "disaster-recovery.rpo",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let o = run_xregion(&args, &[], Duration::from_secs(300));
    let v = verdicts(out.path());
    let (verdict, summary) = &v["disaster-recovery.rto"];
    assert_eq!(verdict, "pass", "{summary}\n{}", text(&o));
    assert!(summary.contains(&format!("complete failure of {leader}")), "{summary}");
    let (verdict, summary) = &v["disaster-recovery.rpo"];
    assert_eq!(verdict, "pass", "{summary}\n{}", text(&o));
    assert!(summary.starts_with("RPO 0 ms"), "{summary}");
    let status = target.ctl(&["status"], &[]);
    assert_eq!(String::from_utf8_lossy(&status.stdout).matches(" up ").count(), 3, "{}", text(&status));
}

/// Goal: etcd fences a minority. A member cut off from the other two (blackhole routes between network
/// namespaces; its own clients still reach it) acknowledges no write once the fence time has passed, and after
/// healing nothing acknowledged is lost: network-partition passes, having seen the minority's writes end in doubt.
/// Needs root for the namespaces, as CI has.
#[test]
fn etcd_partitioned_member_is_fenced() {
    if !available() {
        return;
    }
    if !crate::real_target::root("network namespaces") {
        return;
    }
    let _lock = lab_lock();
    let target = RealTarget::up("etcd", "etcd-partition", ("XREGION_ETCD_NET", "198.18.13"), &[("NETNS", "1")]);
    let config = target.config();
    assert!(std::fs::read_to_string(&config).unwrap().contains("fail_network"), "{config}");
    let out = TempDir::new("etcd-partition-out");
    let args = [
        "run",
        "--config",
        config.as_str(),
        "--check",
        "cross-region.failover.network-partition",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let o = run_xregion(&args, &[], Duration::from_secs(300));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let check = &report["checks"][0];
    assert_eq!(check["verdict"], "pass", "{}\n{}", check["summary"], text(&o));
    assert_eq!(check["metrics"]["minority_acks_after_fence"], 0.0, "{}", check["metrics"]);
    assert!(check["metrics"]["unknown_writes"].as_f64().unwrap() > 0.0, "the minority was written to: {}", check);
}
