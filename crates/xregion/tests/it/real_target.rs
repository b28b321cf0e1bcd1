//! What the tests of real third-party targets share: starting a `targets/<name>/ctl.sh` target in its own
//! directory and loopback network (stopped on drop), whether its server is installed, and reading verdicts.
//!
//! A missing server makes its tests pass with a note, unless XREGION_REQUIRE_REAL_TARGETS=1 (as in CI), which
//! makes it a failure.

use crate::common::{TempDir, run_xregion, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Whether real targets must run (XREGION_REQUIRE_REAL_TARGETS=1, as in CI).
pub fn required() -> bool {
    std::env::var("XREGION_REQUIRE_REAL_TARGETS").is_ok_and(|v| v == "1")
}

/// Whether `server` (a path) is installed; panics when it must be and is not.
pub fn available(server: &str, package: &str) -> bool {
    let here = Path::new(server).exists();
    if !here && required() {
        panic!("XREGION_REQUIRE_REAL_TARGETS=1 but {package} is not installed");
    }
    if !here {
        eprintln!("note: {package} is not installed; the real-target test did not run");
    }
    here
}

/// Whether this process runs as root (for `why`); panics when real targets are required and it does not.
pub fn root(why: &str) -> bool {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if !root && required() {
        panic!("XREGION_REQUIRE_REAL_TARGETS=1 but this test needs root: {why}");
    }
    if !root {
        eprintln!("note: not root ({why}); the real-target test did not run");
    }
    root
}

/// A running target in its own directory and network, stopped on drop.
pub struct RealTarget {
    /// The target's directory (its data, logs and `xregion.toml`).
    pub dir: TempDir,
    /// `targets/<name>/ctl.sh`.
    script: PathBuf,
    /// The variable that moves the target to its own network, and the network.
    net: (&'static str, &'static str),
    /// What `ctl.sh env` prints: the target described by environment variables.
    env: Vec<(String, String)>,
}

impl RealTarget {
    /// Starts `targets/<target>/ctl.sh up` in a new directory named after `name`, on network `net` (set through
    /// `net_var`), with the extra variables `envs`.
    pub fn up(target: &str, name: &str, net: (&'static str, &'static str), envs: &[(&str, &str)]) -> RealTarget {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets").join(target).join("ctl.sh");
        let mut t = RealTarget { dir: TempDir::new(name), script, net, env: Vec::new() };
        let o = t.ctl(&["up"], envs);
        assert!(o.status.success(), "{target} ctl.sh up: {}", text(&o));
        let o = t.ctl(&["env"], &[]);
        t.env = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t
    }

    /// Runs `ctl.sh ARGS[0] DIR ARGS[1..]` with `envs`.
    pub fn ctl(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).arg(args[0]).arg(self.dir.path()).args(&args[1..]).env(self.net.0, self.net.1);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run ctl.sh")
    }

    /// The variables that describe the target with no config file.
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The target's own config (its databases and fault commands).
    pub fn config(&self) -> String {
        self.dir.path().join("xregion.toml").to_str().expect("UTF-8 path").to_string()
    }
}

impl Drop for RealTarget {
    fn drop(&mut self) {
        let _ = self.ctl(&["down"], &[]);
    }
}

/// Each check's (verdict, summary) from a report.
pub fn verdicts(out: &Path) -> BTreeMap<String, (String, String)> {
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

/// With `env` alone (no config file): runs `xregion db init`, which must succeed and print each of `init_says`,
/// then the cross-region suite into `out`, and asserts what a correct database described that way gets: the three
/// consistency checks pass, the failover checks are skipped for want of fault commands, and the routing checks are
/// skipped naming the database's `kind`. Returns the output of `db init`.
pub fn consistency_passes_from_env(env: &[(&str, &str)], out: &TempDir, kind: &str, init_says: &[&str]) -> Output {
    let init = run_xregion(&["db", "init"], env, Duration::from_secs(60));
    assert!(init.status.success(), "{}", text(&init));
    for says in init_says {
        assert!(String::from_utf8_lossy(&init.stdout).contains(says), "{says}: {}", text(&init));
    }
    let out_s = out.path().to_str().unwrap();
    let o = run_xregion(&["run", "--suite", "cross-region", "--out", out_s], env, Duration::from_secs(300));
    let v = verdicts(out.path());
    for id in [
        "cross-region.consistency.write-replicate",
        "cross-region.consistency.concurrent-writes",
        "cross-region.consistency.conflict-lww",
        "cross-region.consistency.lww-realtime",
    ] {
        assert_eq!(v[id].0, "pass", "{id}: {:?}\n{}", v[id], text(&o));
    }
    // Session guarantees are judged where the kind promises them by default (etcd's linearizable reads keep
    // both); elsewhere the check is skipped, saying why, with what it measured.
    let sessions = &v["cross-region.consistency.session-guarantees"];
    if kind == "etcd" {
        assert_eq!(sessions.0, "pass", "{sessions:?}");
        assert!(sessions.1.contains("read-your-writes kept in all"), "{sessions:?}");
    } else {
        assert_eq!(sessions.0, "skipped", "{sessions:?}");
        assert!(
            sessions.1.contains("no session guarantee is promised") && sessions.1.contains("broken in"),
            "{sessions:?}"
        );
    }
    let failover = &v["cross-region.failover.complete-region"];
    assert_eq!(failover.0, "skipped", "{failover:?}");
    assert!(failover.1.contains("fault"), "{failover:?}");
    let routing = &v["cross-region.routing.geo"];
    assert_eq!(routing.0, "skipped", "{routing:?}");
    assert!(routing.1.contains("needs the HTTP probe contract") && routing.1.contains(kind), "{routing:?}");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    init
}
