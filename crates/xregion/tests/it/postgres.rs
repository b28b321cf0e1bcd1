//! Real PostgreSQL as a target: `targets/postgres-streaming` (a primary and two asynchronous streaming standbys)
//! described by the seed's DB_ENDPOINT_* and the libpq variables alone, with no config file.
//!
//! These tests need the postgresql-15 package. Without it they pass with a note, unless
//! XREGION_REQUIRE_REAL_TARGETS=1 (as in CI), which makes a missing server a failure.

use crate::common::{TempDir, lab_lock, run_xregion, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The target's control script.
fn ctl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets/postgres-streaming/ctl.sh")
}

/// Whether the real target can run here; panics when it must and cannot.
fn available() -> bool {
    let here = Path::new("/usr/lib/postgresql/15/bin/postgres").exists();
    if !here && std::env::var("XREGION_REQUIRE_REAL_TARGETS").is_ok_and(|v| v == "1") {
        panic!("XREGION_REQUIRE_REAL_TARGETS=1 but postgresql-15 is not installed");
    }
    if !here {
        eprintln!("note: postgresql-15 is not installed; the real-target test did not run");
    }
    here
}

/// A running target in its own directory and loopback network, stopped on drop.
struct PgTarget {
    dir: TempDir,
    net: &'static str,
    env: Vec<(String, String)>,
}

impl PgTarget {
    fn up(name: &str, net: &'static str, sync: bool, delay_ms: u32) -> PgTarget {
        let dir = TempDir::new(name);
        let mut t = PgTarget { dir, net, env: Vec::new() };
        let delay = delay_ms.to_string();
        let o = t.ctl(
            &["up"],
            &[("SYNC", if sync { "1" } else { "0" }), ("DELAY_MS", &delay), ("XREGION_BIN", crate::common::exe())],
        );
        assert!(o.status.success(), "ctl.sh up: {}", text(&o));
        let o = t.ctl(&["env"], &[]);
        t.env = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t
    }

    fn ctl(&self, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new("bash");
        cmd.arg(ctl()).arg(args[0]).arg(self.dir.path()).args(&args[1..]).env("XREGION_PG_NET", self.net);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run ctl.sh")
    }

    /// Runs psql as the server's superuser on `region`'s socket.
    fn psql(&self, region: &str, sql: &str) -> String {
        let socket = self.dir.path().join(region).join("run");
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

    fn password(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xregion.password")).expect("password").trim().to_string()
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

impl Drop for PgTarget {
    fn drop(&mut self) {
        let _ = self.ctl(&["down"], &[]);
    }
}

/// Each check's (verdict, summary) from a report.
fn verdicts(out: &Path) -> std::collections::BTreeMap<String, (String, String)> {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("id"), (s("verdict"), s("summary")))
        })
        .collect()
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
    let target = PgTarget::up("pg-streaming", "127.0.3", false, 0);
    let env = target.env();
    let o = run_xregion(&["db", "init"], &env, Duration::from_secs(60));
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("us-east-1") && stdout.contains("table xregion_kv ready"), "{stdout}");
    assert!(stdout.contains("a standby; it gets the table from its primary"), "{stdout}");
    assert!(!stdout.contains(&target.password()), "password shown");

    let out = TempDir::new("pg-streaming-out");
    let out_s = out.path().to_str().unwrap();
    let o = run_xregion(&["run", "--suite", "cross-region", "--out", out_s], &env, Duration::from_secs(300));
    let v = verdicts(out.path());
    for id in [
        "cross-region.consistency.write-replicate",
        "cross-region.consistency.concurrent-writes",
        "cross-region.consistency.conflict-lww",
        "cross-region.consistency.lww-realtime",
    ] {
        assert_eq!(v[id].0, "pass", "{id}: {:?}\n{}", v[id], text(&o));
    }
    let failover = &v["cross-region.failover.complete-region"];
    assert_eq!(failover.0, "skipped", "{failover:?}");
    assert!(failover.1.contains("fault"), "{failover:?}");
    let routing = &v["cross-region.routing.geo"];
    assert_eq!(routing.0, "skipped", "{routing:?}");
    assert!(routing.1.contains("needs the HTTP probe contract") && routing.1.contains("postgres"), "{routing:?}");
    let report = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert!(!report.contains(&target.password()), "password in report");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A standby that stops applying what it receives: its pairs never see the writes.
    assert_eq!(target.psql("eu-west-1", "SELECT pg_wal_replay_pause()"), "");
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

/// Goal: the anomaly Postgres really has. A primary with asynchronous standbys, 35 ms away through `xregion wan`,
/// killed under write load (its links cut with it) and replaced by a forced promotion, loses acknowledged writes:
/// `disaster-recovery.rpo` fails and names them. The same cluster with `remote_apply` on both standbys loses none.
/// The fault comes through the target's own `xregion.toml` fault commands.
#[test]
fn forced_promotion_loses_acknowledged_writes_only_when_asynchronous() {
    if !available() {
        return;
    }
    let _lock = lab_lock();
    for (sync, net) in [(false, "127.0.6"), (true, "127.0.7")] {
        let target = PgTarget::up(if sync { "pg-sync" } else { "pg-async" }, net, sync, 35);
        let config = target.dir.path().join("xregion.toml");
        let config = config.to_str().unwrap();
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
        }
        let status = target.ctl(&["status"], &[]);
        assert!(String::from_utf8_lossy(&status.stdout).matches(" up ").count() == 3, "{}", text(&status));
    }
}
