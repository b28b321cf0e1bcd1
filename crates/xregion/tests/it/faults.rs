//! Fault injection: the command injector running real shell commands (environment, exit codes, timeouts that kill
//! the whole process group, status JSON), `[faults]` config errors, and `xregion fail` / `restore` / `status`
//! against a missing lab, a command injector and a lab started with `xregion lab up`.
//!
//! Every wait is bounded and waits on a condition, never on a fixed sleep; no test asserts a timing.

use crate::common::{TempDir, await_lab_up, exe, lab_lock, run_xregion, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xregion::config::FaultCommands;
use xregion::faults::{CommandInjector, FaultError, FaultInjector};
use xregion_model::fault::{Direction, FaultKind, FaultSpec, FaultStatus};

/// Longest any wait in these tests may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Interval between polls of a condition.
const POLL: Duration = Duration::from_millis(20);
/// A loopback endpoint where nothing listens: health checks of it fail at once.
const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .is_some_and(|zombie| !zombie)
}

/// A command injector for two regions with `commands` and `timeout`.
fn injector(commands: FaultCommands, timeout: Duration) -> CommandInjector {
    CommandInjector::new(
        commands,
        timeout,
        [("us-east-1".to_string(), DEAD_ENDPOINT.to_string()), ("eu-west-1".to_string(), DEAD_ENDPOINT.to_string())],
    )
}

/// Single-quotes `p` for `sh`.
fn quoted(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// `KEY=VALUE` lines of a file written by `env`, restricted to XREGION_ variables.
fn read_env(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .expect("env file")
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("XREGION_"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Goal: a fail command gets every documented variable, and a restore command gets the fault it lifts.
/// Method: commands that write their environment to files in a temp dir; then status reports the injected
/// fault and each region's (failing) health check.
#[test]
fn command_injector_passes_the_fault_in_the_environment() {
    let dir = TempDir::new("faults-env");
    let fail_env = dir.path().join("fail.env");
    let restore_env = dir.path().join("restore.env");
    let commands = FaultCommands {
        fail: Some(format!("env > {}", quoted(&fail_env))),
        restore: Some(format!("env > {}", quoted(&restore_env))),
        ..FaultCommands::default()
    };
    let f = FaultInjector::Command(injector(commands, Duration::from_secs(30)));
    let spec = FaultSpec {
        duration_ms: Some(600_000),
        direction: Direction::Outbound,
        peers: vec!["eu-west-1".into(), "us-west-2".into()],
        clients: true,
        ..FaultSpec::new(FaultKind::Network)
    };
    runtime().block_on(async {
        assert!(f.supports(FaultKind::Latency).is_ok());
        let active = f.fail("us-east-1", &spec).await.expect("fail");
        assert_eq!(active.region, "us-east-1");
        assert_eq!(active.until_ms, Some(active.since_ms + 600_000));
        let env = read_env(&fail_env);
        let expect = [
            ("XREGION_REGION", "us-east-1"),
            ("XREGION_ENDPOINT", DEAD_ENDPOINT),
            ("XREGION_FAULT_KIND", "network"),
            ("XREGION_FAULT_DURATION_S", "600"),
            ("XREGION_FAULT_DIRECTION", "outbound"),
            ("XREGION_FAULT_PEERS", "eu-west-1,us-west-2"),
            ("XREGION_FAULT_CLIENTS", "1"),
            ("XREGION_FAULT_WRITES_FAIL", "1"),
            ("XREGION_FAULT_ERROR_SHARE", "0"),
            ("XREGION_FAULT_EXTRA_DELAY_MS", "0"),
        ];
        for (k, v) in expect {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
        }
        let sent: FaultSpec = serde_json::from_str(&env["XREGION_FAULT_SPEC"]).expect("XREGION_FAULT_SPEC is JSON");
        assert_eq!(sent, spec);

        // Without a status command: health through /healthz (dead here) plus the fault this process injected.
        let status = f.status().await.expect("status");
        let names: Vec<_> = status.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["us-east-1", "eu-west-1"]);
        assert_eq!(status.regions[0].fault.as_ref().map(|a| &a.spec), Some(&spec));
        assert!(status.regions[1].fault.is_none());
        assert!(status.regions.iter().all(|r| r.health != "ok"), "{status:?}");

        f.restore("us-east-1").await.expect("restore");
        let env = read_env(&restore_env);
        assert_eq!(env.get("XREGION_REGION").map(String::as_str), Some("us-east-1"));
        assert_eq!(env.get("XREGION_FAULT_KIND").map(String::as_str), Some("network"));
        assert!(f.status().await.expect("status").regions.iter().all(|r| r.fault.is_none()));

        // Health faults need their own commands.
        let e = f.set_health("us-east-1", false).await.unwrap_err();
        assert!(e.contains("health_down"), "{e}");
        let e = f.fail("ap-south-1", &spec).await.unwrap_err();
        assert!(matches!(e, FaultError::UnknownRegion { .. }), "{e}");

        // A clock fault needs its own command: `fail` does not stand in for it.
        let e = f.supports(FaultKind::Clock).unwrap_err();
        assert!(e.contains("fail_clock"), "{e}");
    });
}

/// Goal: a clock fault reaches its own command with the offset in milliseconds and in libfaketime's signed seconds.
#[test]
fn clock_fault_command_gets_the_offset() {
    let dir = TempDir::new("faults-clock");
    let fail_env = dir.path().join("fail.env");
    let commands = FaultCommands {
        fail_clock: Some(format!("env > {}", quoted(&fail_env))),
        restore: Some("true".into()),
        ..FaultCommands::default()
    };
    let f = FaultInjector::Command(injector(commands, Duration::from_secs(30)));
    runtime().block_on(async {
        assert!(f.supports(FaultKind::Clock).is_ok());
        assert!(f.supports(FaultKind::Complete).is_err());
        let spec = FaultSpec { clock_offset_ms: -1500, ..FaultSpec::new(FaultKind::Clock) };
        f.fail("us-east-1", &spec).await.expect("fail");
        let env = read_env(&fail_env);
        assert_eq!(env.get("XREGION_FAULT_KIND").map(String::as_str), Some("clock"));
        assert_eq!(env.get("XREGION_FAULT_CLOCK_OFFSET_MS").map(String::as_str), Some("-1500"));
        assert_eq!(env.get("XREGION_FAULT_CLOCK_OFFSET_S").map(String::as_str), Some("-1.500"));
        f.restore("us-east-1").await.expect("restore");
    });
}

/// Goal: a command that exits non-zero is an error with its exit code and the last lines of its stderr; a kind
/// without a command is not supported. Method: a fail command printing 30 lines to stderr and exiting 3.
#[test]
fn failing_command_reports_code_and_stderr() {
    let commands = FaultCommands {
        fail_partial: Some("for i in $(seq 1 30); do echo \"line $i\" >&2; done; exit 3".into()),
        restore: Some("true".into()),
        ..FaultCommands::default()
    };
    let f = FaultInjector::Command(injector(commands, Duration::from_secs(30)));
    let e = f.supports(FaultKind::Complete).unwrap_err();
    assert!(e.contains("fail_complete"), "{e}");
    runtime().block_on(async {
        let e = f.fail("eu-west-1", &FaultSpec::new(FaultKind::Partial)).await.unwrap_err();
        assert!(matches!(e, FaultError::CommandFailed { code: Some(3), .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("fail command for eu-west-1 exited with code 3"), "{msg}");
        assert!(msg.contains("line 30") && msg.contains("line 11"), "{msg}");
        assert!(!msg.contains("line 10\n"), "more than 20 lines: {msg}");
        assert_eq!(e.exit_code(), 1);
    });
}

/// Goal: a command running past its timeout is killed with everything it started, and the error says it timed
/// out. Method: a fail command that starts a background `sleep`, records its pid and waits; 1 s timeout.
#[test]
fn timed_out_command_is_killed_with_its_children() {
    let dir = TempDir::new("faults-timeout");
    let pid_file = dir.path().join("child.pid");
    let commands = FaultCommands {
        fail: Some(format!("sleep 300 & echo $! > {}; wait", quoted(&pid_file))),
        restore: Some("true".into()),
        ..FaultCommands::default()
    };
    let f = FaultInjector::Command(injector(commands, Duration::from_secs(1)));
    let e = runtime().block_on(f.fail("us-east-1", &FaultSpec::new(FaultKind::Complete))).unwrap_err();
    assert!(matches!(e, FaultError::CommandTimeout { .. }), "{e:?}");
    assert!(e.to_string().contains("fail command for us-east-1 timed out after 1 s"), "{e}");
    let pid: u32 =
        std::fs::read_to_string(&pid_file).expect("the command wrote its child's pid").trim().parse().expect("pid");
    let deadline = Instant::now() + WAIT_LIMIT;
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "the command's child {pid} survived the timeout");
        std::thread::sleep(POLL);
    }
}

/// Goal: a status command that prints `FaultStatus` JSON is taken as the status; one that prints anything else
/// is shown beside the health xregion measures itself.
#[test]
fn status_command_output_is_used() {
    let status = serde_json::json!({"regions": [
        {"name": "us-east-1", "endpoint": "https://use1.example", "health": "down",
         "fault": {"region": "us-east-1", "spec": {"kind": "complete"}, "since_ms": 1000}},
        {"name": "eu-west-1", "endpoint": "https://euw1.example", "health": "ok"}
    ]});
    let commands = FaultCommands {
        fail: Some("true".into()),
        restore: Some("true".into()),
        status: Some(format!("printf '%s\\n' '{status}'")),
        ..FaultCommands::default()
    };
    let f = FaultInjector::Command(injector(commands, Duration::from_secs(30)));
    runtime().block_on(async {
        let got = f.status().await.expect("status");
        let want: FaultStatus = serde_json::from_value(status).expect("FaultStatus");
        assert_eq!(got, want);
    });
    let commands = FaultCommands {
        fail: Some("true".into()),
        restore: Some("true".into()),
        status: Some("echo \"regions: $XREGION_REGIONS\"".into()),
        ..FaultCommands::default()
    };
    let f = FaultInjector::Command(injector(commands, Duration::from_secs(30)));
    runtime().block_on(async {
        let got = f.status_report().await.expect("status");
        assert_eq!(got.status_command_output.as_deref(), Some("regions: us-east-1,eu-west-1"));
        assert_eq!(got.status.regions.len(), 2);
    });
}

/// Writes an http deployment config with `faults` appended; returns its path.
fn http_config(dir: &Path, faults: &str) -> String {
    let p = dir.join("xregion.toml");
    std::fs::write(
        &p,
        format!(
            "[deployment]\nkind = \"http\"\n[[deployment.regions]]\nname = \"us-east-1\"\nendpoint = \"{DEAD_ENDPOINT}\"\n\
             [[deployment.regions]]\nname = \"eu-west-1\"\nendpoint = \"{DEAD_ENDPOINT}\"\n{faults}"
        ),
    )
    .expect("config");
    p.display().to_string()
}

/// Goal: `[faults]` mistakes are config errors at file:line:col with exit 2: a command injector without a
/// restore command, and an unknown key.
#[test]
fn faults_config_errors_are_located() {
    let dir = TempDir::new("faults-config");
    let path = http_config(dir.path(), "[faults]\ninjector = \"command\"\n[faults.command]\nfail = \"true\"\n");
    for args in [vec!["fail", "us-east-1", "--kind", "complete", "--config", &path], vec!["run", "--config", &path]] {
        let o = run_xregion(&args, &[], Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{path}:10:12:")) && err.contains("restore"), "{err}");
    }
    let path = http_config(dir.path(), "[faults.command]\nfail = \"true\"\nrestore = \"true\"\nrestor = \"x\"\n");
    let o = run_xregion(&["status", "--config", &path], &[], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{path}:12:1:")) && err.contains("restor"), "{err}");
}

/// Goal: `xregion fail` without a running lab exits 2 and says how to start one, for `--dir` and the default.
#[test]
fn fail_without_a_lab_exits_2() {
    let dir = TempDir::new("faults-nolab");
    let o = Command::new(exe())
        .args(["fail", "us-east-1", "--kind", "complete"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run xregion");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no lab is running in ./xregion-lab; start one with `xregion lab up`"), "{err}");
    let missing = dir.path().join("elsewhere");
    let o = run_xregion(&["status", "--dir", missing.to_str().unwrap()], &[], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no lab is running in"), "{}", text(&o));
}

/// Goal: `xregion fail`, `restore` and `status` drive a configured command injector, with exit 1 when its
/// command fails and 2 for an invalid fault. Method: commands that append to a log file.
#[test]
fn cli_drives_the_command_injector() {
    let dir = TempDir::new("faults-cli-command");
    let log = dir.path().join("log");
    let path = http_config(
        dir.path(),
        &format!(
            "[faults]\ninjector = \"command\"\ntimeout_s = 30\n[faults.command]\n\
             fail = \"echo fail $XREGION_REGION $XREGION_FAULT_KIND >> {log}\"\n\
             fail_latency = \"echo cannot >&2; exit 4\"\n\
             restore = \"echo restore $XREGION_REGION >> {log}\"\n",
            log = log.display()
        ),
    );
    let o = run_xregion(&["fail", "eu-west-1", "--kind", "partial", "--config", &path], &[], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("eu-west-1: partial failure"), "{}", text(&o));
    // With a duration the command injector stays until it has run the restore command.
    let o = run_xregion(
        &["fail", "us-east-1", "--kind", "complete", "--duration", "200ms", "--config", &path],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("us-east-1: restored at"), "{}", text(&o));
    let o = run_xregion(&["restore", "eu-west-1", "--config", &path], &[], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        logged.lines().collect::<Vec<_>>(),
        ["fail eu-west-1 partial", "fail us-east-1 complete", "restore us-east-1", "restore eu-west-1"]
    );
    let o = run_xregion(
        &["fail", "eu-west-1", "--kind", "latency", "--extra-delay-ms", "50", "--config", &path],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exited with code 4"), "{}", text(&o));
    let o = run_xregion(&["fail", "eu-west-1", "--kind", "latency", "--config", &path], &[], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run_xregion(&["status", "--json", "--config", &path], &[], Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status: FaultStatus = serde_json::from_slice(&o.stdout).expect("status --json is a FaultStatus");
    assert_eq!(status.regions.len(), 2);
}

/// `xregion status --json --dir DIR` as JSON.
fn status_json(lab_dir: &str) -> serde_json::Value {
    let o = run_xregion(&["status", "--json", "--dir", lab_dir], &[], Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("status --json is JSON")
}

/// The region named `name` in a status.
fn region<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["regions"].as_array().expect("regions").iter().find(|r| r["name"] == name).expect("region in status")
}

/// Goal: `xregion fail`, `restore` and `status` work against `xregion lab up`: a complete failure kills the
/// region's process and its health fails, restore brings it back healthy, and a partial failure with a duration
/// restores by itself. Method: `lab up` in the background (readiness: its `control` line), then the commands, with
/// bounded polls of `status --json`; `lab down` at the end.
#[test]
fn fail_restore_status_against_lab_up() {
    let _g = lab_lock();
    let dir = TempDir::new("faults-lab");
    let lab_dir = dir.path().join("lab");
    let lab = lab_dir.to_str().unwrap().to_string();
    let config = dir.path().join("xregion.toml");
    std::fs::write(
        &config,
        "[lab]\n[lab.wan]\njitter_ms = 0.0\n[lab.wan.rtt_ms]\n\"us-east-1/us-west-2\" = 0\n\
         \"us-east-1/eu-west-1\" = 0\n\"us-west-2/eu-west-1\" = 0\n",
    )
    .expect("config");
    let mut up = Command::new(exe())
        .args(["lab", "up", "--config", config.to_str().unwrap(), "--dir", &lab])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lab up");
    // Stops `lab up` on every exit path of the test, a failed assertion included.
    struct Down<'a>(&'a str, &'a mut std::process::Child);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new(exe()).args(["lab", "down", "--dir", self.0]).output();
            let deadline = Instant::now() + WAIT_LIMIT;
            while self.1.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = self.1.kill();
            let _ = self.1.wait();
        }
    }
    let stdout = up.stdout.take().expect("stdout");
    let down = Down(&lab, &mut up);
    if let Err(e) = await_lab_up(stdout, WAIT_LIMIT) {
        panic!("{e}");
    }

    let before = status_json(&lab);
    let pid = region(&before, "us-east-1")["pid"].as_u64().expect("us-east-1 has a pid") as u32;
    assert!(pid_alive(pid));
    assert_eq!(region(&before, "us-east-1")["health"], "ok", "{before}");

    let o = run_xregion(&["fail", "us-east-1", "--kind", "complete", "--dir", &lab], &[], Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("us-east-1: complete failure injected at") && out.contains("xregion restore us-east-1"),
        "{out}"
    );
    let after = status_json(&lab);
    let r = region(&after, "us-east-1");
    assert!(!pid_alive(pid), "the failed region's process {pid} still runs");
    assert_ne!(r["health"], "ok", "{after}");
    assert_eq!(r["fault"]["spec"]["kind"], "complete", "{after}");
    // A second fault on a faulted region is refused by the lab: an injector failure.
    let o = run_xregion(&["fail", "us-east-1", "--kind", "complete", "--dir", &lab], &[], Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = run_xregion(&["fail", "nowhere", "--kind", "complete", "--dir", &lab], &[], Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let o = run_xregion(&["restore", "us-east-1", "--dir", &lab], &[], Duration::from_secs(90));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let s = status_json(&lab);
        let r = region(&s, "us-east-1");
        if r["health"] == "ok" && r["fault"].is_null() {
            let new_pid = r["pid"].as_u64().expect("restored region has a pid") as u32;
            assert!(pid_alive(new_pid));
            break;
        }
        assert!(Instant::now() < deadline, "us-east-1 never became healthy again: {s}");
        std::thread::sleep(POLL);
    }

    let o = run_xregion(
        &["fail", "us-west-2", "--kind", "partial", "--duration", "1s", "--dir", &lab],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("restores by itself at"), "{}", text(&o));
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let s = status_json(&lab);
        let r = region(&s, "us-west-2");
        if r["fault"].is_null() && r["health"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "the partial fault never restored itself: {s}");
        std::thread::sleep(POLL);
    }
    drop(down);
    let left = status_json_or_gone(&lab);
    assert!(left, "lab down left the lab running");
}

/// Whether the lab in `lab_dir` is gone: `status` exits 2 with the no-lab message.
fn status_json_or_gone(lab_dir: &str) -> bool {
    let o = run_xregion(&["status", "--json", "--dir", lab_dir], &[], Duration::from_secs(30));
    o.status.code() == Some(2) && String::from_utf8_lossy(&o.stderr).contains("no lab is running")
}
