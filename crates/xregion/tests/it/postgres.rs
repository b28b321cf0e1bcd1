//! Real PostgreSQL as a target: `targets/postgres-streaming` (a primary and two asynchronous streaming standbys)
//! and `targets/postgres-mesh` (three writers joined by pglogical), described by the seed's DB_ENDPOINT_* and the
//! libpq variables alone, with no config file.
//!
//! These tests need the postgresql-15 package (and postgresql-15-pglogical and libfaketime for the mesh). Without it they pass with a note, unless
//! XREGION_REQUIRE_REAL_TARGETS=1 (as in CI), which makes a missing server a failure.

use crate::common::{TempDir, lab_lock, run_xregion, text};
use crate::real_target::{RealTarget, verdicts};
use std::process::Command;
use std::time::Duration;

/// Whether postgresql-15 can run here; panics when it must and cannot.
fn available() -> bool {
    crate::real_target::available("/usr/lib/postgresql/15/bin/postgres", "postgresql-15")
}

/// Starts `targets/postgres-streaming` on `net`: asynchronous or `sync`, with `delay_ms` of WAN between regions.
fn up(name: &str, net: &'static str, sync: bool, delay_ms: u32) -> RealTarget {
    let delay = delay_ms.to_string();
    let envs = [("SYNC", if sync { "1" } else { "0" }), ("DELAY_MS", &delay), ("XREGION_BIN", crate::common::exe())];
    RealTarget::up("postgres-streaming", name, ("XREGION_PG_NET", net), &envs)
}

/// Runs psql as the server's superuser on `region`'s socket.
fn psql(target: &RealTarget, region: &str, sql: &str) -> String {
    let socket = target.dir.path().join(region).join("run");
    let o = Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-d", "xregion"])
        .arg("-h")
        .arg(&socket)
        .args(["-c", sql])
        .output()
        .expect("psql");
    assert!(o.status.success(), "psql: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn password(target: &RealTarget) -> String {
    std::fs::read_to_string(target.dir.path().join("xregion.password")).expect("password").trim().to_string()
}

/// Goal: DB_ENDPOINT_* and the libpq variables alone describe a Postgres primary with two standbys. `db init`
/// creates xregion's table on the primary only; the consistency checks judge it (every write goes to the one
/// writer and is read back in every region), the checks that need the HTTP contract or a fault command are
/// skipped with the reason, and a standby whose replay is paused fails write-replicate, naming its pairs.
#[test]
fn streaming_standbys_from_db_endpoints_alone() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    let target = up("pg-streaming", "127.0.3", false, 0);
    let env = target.env();
    let out = TempDir::new("pg-streaming-out");
    let says = ["us-east-1", "table xregion_kv ready", "a standby; it gets the table from its primary"];
    let init = crate::real_target::consistency_passes_from_env(&env, &out, "postgres", &says);
    assert!(!String::from_utf8_lossy(&init.stdout).contains(&password(&target)), "password shown");
    let report = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert!(!report.contains(&password(&target)), "password in report");

    // A standby that stops applying what it receives: its pairs never see the writes.
    assert_eq!(psql(&target, "eu-west-1", "SELECT pg_wal_replay_pause()"), "");
    let out = TempDir::new("pg-paused-out");
    let out_s = out.path().to_str().unwrap();
    let o = run_xregion(
        &["run", "--check", "cross-region.consistency.write-replicate", "--out", out_s],
        &env,
        Duration::from_secs(300),
    );
    let v = verdicts(out.path());
    let (verdict, summary) = &v["cross-region.consistency.write-replicate"];
    assert_eq!(verdict, "fail", "{summary}\n{}", text(&o));
    assert!(summary.contains("eu-west-1"), "{summary}");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// Goal: the database suite measures databases through their own clients: read and write latency at every region
/// under an open-model load, replication under it, and each region's connection pool (acquisition time, and the
/// share of acquisitions that reuse an open connection). A server that cuts idle sessions after 10 ms
/// (`idle_session_timeout`, a setting that defeats client pools) makes the pool check fail, naming the connections
/// it had to reopen.
#[test]
fn database_suite_measures_pools_and_fails_when_sessions_are_cut() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    let target = up("pg-pool", "127.0.17", false, 0);
    let env = target.env();
    let out = TempDir::new("pg-pool-out");
    let out_s = out.path().to_str().unwrap();
    let init = run_xregion(&["db", "init"], &env, Duration::from_secs(60));
    assert!(init.status.success(), "{}", text(&init));
    let o = run_xregion(&["run", "--check", "performance.database", "--out", out_s], &env, Duration::from_secs(300));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let check = |id: &str| r["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap();
    for id in ["performance.database.read", "performance.database.write-replicate"] {
        let c = check(id);
        // Measured, on evidence: 200 requests/s of each kind at each of three regions for 8 s.
        assert_ne!(c["verdict"], "skipped", "{c}\n{}", text(&o));
        assert!(c["metrics"]["requests"].as_f64().unwrap() >= 3000.0, "{c}");
        assert!(c["metrics"]["p95_ms"].as_f64().unwrap() > 0.0, "{c}");
    }
    let pool = check("performance.database.pool");
    assert_eq!(pool["verdict"], "pass", "{pool}");
    assert!(pool["metrics"]["reuse_pct_min"].as_f64().unwrap() >= 90.0, "{pool}");

    let sql = "ALTER ROLE xregion SET idle_session_timeout = '10ms'";
    assert_eq!(psql(&target, "us-east-1", sql), "ALTER ROLE");
    let out = TempDir::new("pg-pool-cut-out");
    let out_s = out.path().to_str().unwrap();
    let o =
        run_xregion(&["run", "--check", "performance.database.pool", "--out", out_s], &env, Duration::from_secs(120));
    let (verdict, summary) = &verdicts(out.path())["performance.database.pool"];
    // Reopening connections costs the client CPU too (a SCRAM handshake each): on a busy machine the reconnect storm
    // can overload xregion's own scheduler, and then the check reports the failure it saw as `error: measurement
    // overloaded` rather than a verdict. Either way it must have seen the pool fail.
    let overloaded = verdict == "error" && summary.contains("measurement overloaded");
    assert!(verdict == "fail" || overloaded, "{summary}\n{}", text(&o));
    assert!(
        summary.contains("connections are being dropped and reopened")
            || summary.contains("connection acquisition P95"),
        "{summary}"
    );
    assert_eq!(o.status.code(), Some(if overloaded { 2 } else { 1 }), "{}", text(&o));
}

/// Whether pglogical for PostgreSQL 15 is installed; panics when it must be and is not.
fn pglogical() -> bool {
    crate::real_target::available("/usr/lib/postgresql/15/lib/pglogical.so", "postgresql-15-pglogical")
}

/// Goal: a multi-writer mesh (pglogical, last_update_wins by commit timestamp) is judged in the order it resolves
/// by, with every region writing through its own node. Replication, concurrent writers and real-time order pass, and
/// the checks name the commit timestamp as the order. Simultaneous writes of one key pass too, except where two
/// nodes committed in the same microsecond: pglogical breaks no such tie, each node keeps its own write, and the
/// regions differ for good, which conflict-lww then rightly fails. Then one node's clock runs 400 ms ahead (a clock
/// fault the check injects through the target's `fail_clock` command: a restart under libfaketime): a write
/// elsewhere that follows one of that node's carries an earlier timestamp, the node keeps its own, and lww-realtime
/// fails on keys that never converge (or on writes lost to an earlier one).
#[test]
fn pglogical_mesh_resolves_by_commit_timestamp_and_a_clock_fault_breaks_it() {
    if !available() || !pglogical() {
        return;
    }
    let _lock = lab_lock();
    let envs = [("XREGION_BIN", crate::common::exe())];
    let target = RealTarget::up("postgres-mesh", "pg-mesh", ("XREGION_PG_NET", "127.0.18"), &envs);
    let env = target.env();
    let out = TempDir::new("pg-mesh-out");
    let out_s = out.path().to_str().unwrap();
    let init = run_xregion(&["db", "init"], &env, Duration::from_secs(60));
    assert!(init.status.success(), "{}", text(&init));
    let o =
        run_xregion(&["run", "--check", "cross-region.consistency", "--out", out_s], &env, Duration::from_secs(300));
    let v = verdicts(out.path());
    for id in [
        "cross-region.consistency.write-replicate",
        "cross-region.consistency.concurrent-writes",
        "cross-region.consistency.lww-realtime",
    ] {
        assert_eq!(v[id].0, "pass", "{id}: {:?}\n{}", v[id], text(&o));
    }
    let (_, rt) = &v["cross-region.consistency.lww-realtime"];
    assert!(rt.contains("commit timestamp") && rt.contains("last_update_wins"), "{rt}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let lww =
        r["checks"].as_array().unwrap().iter().find(|c| c["id"] == "cross-region.consistency.conflict-lww").unwrap();
    if lww["verdict"] != "pass" {
        // Only a tie may break it: every divergent key's records share one commit timestamp.
        assert_eq!(lww["verdict"], "fail", "{lww}");
        let divergent = lww["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["title"] == "Divergent keys")
            .unwrap_or_else(|| panic!("{lww}"));
        for row in divergent["rows"].as_array().unwrap() {
            let stamps: std::collections::BTreeSet<&str> = row.as_array().unwrap()[1..]
                .iter()
                .filter_map(|c| c.as_str()?.split(" @ ").nth(1)?.split('@').next())
                .collect();
            assert_eq!(stamps.len(), 1, "a divergence that is not a timestamp tie: {row}");
        }
    }
    // Every region writes through its own node.
    let history = std::fs::read_to_string(out.path().join("history.jsonl")).unwrap();
    for line in history.lines().filter(|l| l.contains("\"type\":\"ok\"") && l.contains("\"f\":\"write\"")) {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["region"], e["version"]["origin"], "a write went through another region's node: {e}");
    }

    // The skew comes through the target's own fault command (`fail_clock`: a restart under libfaketime), which the
    // check injects before its writes and lifts after them.
    let config = target.dir.path().join("skew.toml");
    let own = std::fs::read_to_string(target.config()).unwrap();
    let skew = "\n[checks.lww-realtime]\nclock_fault_ms = 400\nclock_fault_region = \"us-west-2\"\n";
    std::fs::write(&config, own + skew).unwrap();
    let pgpass = target.dir.path().join("xregion.pgpass");
    let env = [("PGPASSFILE", pgpass.to_str().unwrap())];
    let out = TempDir::new("pg-mesh-skew-out");
    let out_s = out.path().to_str().unwrap();
    let o = run_xregion(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--check",
            "cross-region.consistency.lww-realtime",
            "--out",
            out_s,
        ],
        &env,
        Duration::from_secs(300),
    );
    let (verdict, summary) = &verdicts(out.path())["cross-region.consistency.lww-realtime"];
    assert_eq!(verdict, "fail", "{summary}\n{}", text(&o));
    assert!(
        summary.contains("differ between regions") || summary.contains("(region us-west-2) ended, yet lost"),
        "{summary}"
    );
    assert!(summary.contains("under a +400 ms clock fault in us-west-2"), "{summary}");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!target.dir.path().join("us-west-2/faketime").exists(), "the restore put the real clock back");
}

/// Goal: the anomaly Postgres really has. A primary with asynchronous standbys, 35 ms away through `xregion wan`,
/// killed under write load (its links cut with it) and replaced by a forced promotion, loses acknowledged writes:
/// `disaster-recovery.rpo` fails, names them and gives an RPO above 0. The same cluster with `remote_apply` on both standbys loses none.
/// The fault comes through the target's own `xregion.toml` fault commands.
#[test]
fn forced_promotion_loses_acknowledged_writes_only_when_asynchronous() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    for (sync, net) in [(false, "127.0.6"), (true, "127.0.7")] {
        let target = up(if sync { "pg-sync" } else { "pg-async" }, net, sync, 35);
        let config = target.config();
        let config = config.as_str();
        let pgpass = target.dir.path().join("xregion.pgpass");
        let env = [("PGPASSFILE", pgpass.to_str().unwrap())];
        let o = run_xregion(&["db", "init", "--config", config], &env, Duration::from_secs(60));
        assert!(o.status.success(), "{}", text(&o));
        let out = TempDir::new(if sync { "pg-sync-out" } else { "pg-async-out" });
        let args =
            ["run", "--config", config, "--check", "disaster-recovery.rpo", "--out", out.path().to_str().unwrap()];
        let o = run_xregion(&args, &env, Duration::from_secs(300));
        let v = verdicts(out.path());
        let (verdict, summary) = &v["disaster-recovery.rpo"];
        if sync {
            assert_eq!(verdict, "pass", "synchronous: {summary}\n{}", text(&o));
        } else {
            assert_eq!(verdict, "fail", "asynchronous: {summary}\n{}", text(&o));
            assert!(summary.contains("acknowledged writes never reached every region"), "{summary}");
            assert!(summary.contains("/fo-complete/w/"), "the lost writes are named: {summary}");
            // The writes the primary acknowledged while the fault command ran count too, so the figures are not 0.
            let r = crate::common::report(out.path());
            let m = &crate::common::check(&r, "disaster-recovery.rpo")["metrics"];
            assert!(m["missing_at_failover"].as_f64().unwrap() > 0.0, "{m}");
            assert!(m["rpo_ms"].as_f64().unwrap() > 0.0, "{m}");
        }
        let status = target.ctl(&["status"], &[]);
        assert!(String::from_utf8_lossy(&status.stdout).matches(" up ").count() == 3, "{}", text(&status));
    }
}
