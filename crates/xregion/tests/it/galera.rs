//! Real MariaDB Galera as a target: `targets/galera`, three nodes, one per region. Galera certifies every write
//! against the whole primary component before it commits (a conflicting write is refused, not overwritten), and a
//! node cut off from the majority leaves the primary component and refuses statements; xregion's verdicts must say
//! exactly that.
//!
//! These tests need mariadb-server, galera-4 and rsync, and root (the nodes run as the mysql user). Without them
//! they pass with a note, unless XREGION_REQUIRE_REAL_TARGETS=1 (as in CI), which makes that a failure.

use crate::common::{TempDir, lab_lock, run_xregion, text};
use crate::real_target::{RealTarget, verdicts};
use std::time::Duration;

/// Whether Galera can run here; panics when it must and cannot.
fn available() -> bool {
    crate::real_target::available("/usr/lib/galera/libgalera_smm.so", "galera-4")
        && crate::real_target::available("/usr/sbin/mariadbd", "mariadb-server")
        && crate::real_target::root("Galera's nodes run as the mysql user")
}

/// Goal: DB_ENDPOINT_* with XREGION_DB_KIND=mysql and the password in MYSQL_PWD alone describe the cluster. `db
/// init` creates the table, and the consistency checks pass: conflicting writes of one key are refused at commit
/// (certification) and every region ends with the last one committed, in the order the check names. Session
/// guarantees are skipped (nothing promised) until every node's `wsrep_sync_wait` has its read bit; then they are
/// promised, judged and kept.
#[test]
fn galera_from_db_endpoints_alone() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    let target = RealTarget::up("galera", "galera-env", ("XREGION_GALERA_NET", "127.0.14"), &[]);
    let env = target.env();
    let out = TempDir::new("galera-env-out");
    crate::real_target::consistency_passes_from_env(&env, &out, "mysql", &["table xregion_kv ready"]);
    let report = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert!(report.contains("commit order"), "the LWW check names the store's order");
    let password = env.iter().find(|(k, _)| *k == "MYSQL_PWD").map(|(_, v)| *v).unwrap();
    assert!(!report.contains(password), "password in report");

    // With wsrep_sync_wait's read bit set on every node (as a my.cnf would set it), a read waits for every write
    // certified before it: Galera then promises both session guarantees, and the check judges them (it was
    // skipped above, with wsrep_sync_wait = 0). One node left at 0 promises nothing for the deployment.
    let set_sync_wait = |region: &str, v: u8| {
        let socket = target.dir.path().join(region).join("run/mysqld.sock");
        let o = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-e", &format!("SET GLOBAL wsrep_sync_wait = {v}")])
            .arg(format!("--socket={}", socket.display()))
            .output()
            .expect("run mariadb");
        assert!(o.status.success(), "{region}: {}", text(&o));
    };
    let sessions = |name: &str| {
        let out = TempDir::new(name);
        let id = "cross-region.consistency.session-guarantees";
        let o =
            run_xregion(&["run", "--check", id, "--out", out.path().to_str().unwrap()], &env, Duration::from_secs(120));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
        (text(&o), crate::common::check(&report, id).clone())
    };
    for region in ["us-east-1", "us-west-2"] {
        set_sync_wait(region, 1);
    }
    let (o, c) = sessions("galera-one-node-waits-not");
    assert_eq!(c["verdict"], "skipped", "{c}\n{o}");
    let summary = c["summary"].as_str().unwrap();
    assert!(summary.contains("read bit was unset on at least one node"), "the node that does not wait: {c}");
    set_sync_wait("eu-west-1", 1);
    let (o, c) = sessions("galera-sync-wait");
    assert_eq!(c["verdict"], "pass", "{c}\n{o}");
    assert!(c["summary"].as_str().unwrap().contains("read-your-writes kept in all"), "{c}");
    assert!(c.to_string().contains("wsrep_sync_wait has its read bit (1) set"), "the promise is explained: {c}");
}

/// Goal: Galera's minority refuses writes. A node cut off from the other two (network namespaces, blackhole
/// routes; its clients still reach it) acknowledges nothing once the fence time has passed and refuses the writes
/// sent to it; after healing nothing acknowledged is lost. A node killed under load loses nothing either (RPO 0).
#[test]
fn galera_minority_refuses_writes_and_nothing_is_lost() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    let target = RealTarget::up("galera", "galera-partition", ("XREGION_GALERA_NET", "198.18.15"), &[("NETNS", "1")]);
    let password = std::fs::read_to_string(target.dir.path().join("xregion.password")).unwrap();
    let env = [("MYSQL_PWD", password.trim())];
    let config = target.config();
    let o = run_xregion(&["db", "init", "--config", &config], &env, Duration::from_secs(60));
    assert!(o.status.success(), "{}", text(&o));
    let out = TempDir::new("galera-partition-out");
    let args = [
        "run",
        "--config",
        config.as_str(),
        "--check",
        "cross-region.failover.network-partition",
        "--check",
        "disaster-recovery.rpo",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let o = run_xregion(&args, &env, Duration::from_secs(300));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let partition = &report["checks"][0];
    assert_eq!(partition["verdict"], "pass", "{}\n{}", partition["summary"], text(&o));
    assert_eq!(partition["metrics"]["minority_acks_after_fence"], 0.0, "{}", partition["metrics"]);
    assert!(partition["metrics"]["failed_writes"].as_f64().unwrap() > 0.0, "the minority refused: {partition}");
    let (verdict, summary) = &verdicts(out.path())["disaster-recovery.rpo"];
    assert_eq!(verdict, "pass", "{summary}\n{}", text(&o));
    assert!(summary.starts_with("RPO 0 ms"), "{summary}");
}
