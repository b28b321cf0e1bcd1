//! Helpers shared by the integration tests: the binary, temporary directories, and a lock that keeps tests
//! which start a lab from running at the same time (five processes each on a 2-core machine would make the
//! lab's timing figures meaningless, even though no test asserts a timing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by every test that starts a lab.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// Takes the lab lock, surviving a poisoned lock from a failed test.
pub fn lab_lock() -> MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The xregion binary under test.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_xregion")
}

/// A fresh, empty directory for one test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/xregion-it-<name>-<pid>`.
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xregion-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs xregion with `args`, killing it after `limit`; returns its output.
pub fn run_xregion(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(exe());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // The specification's variables from the developer's shell must not leak into tests.
    for (k, _) in std::env::vars() {
        let db = k.starts_with("DB_ENDPOINT_")
            || k.starts_with("PG")
            || k.starts_with("ETCDCTL_")
            || k == "MYSQL_PWD"
            || k == "XREGION_DB_KIND";
        if k.starts_with("API_ENDPOINT_") || k.starts_with("TARGET_") || k == "MAX_LATENCY_MS" || db {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn xregion");
    let deadline = Instant::now() + limit;
    // Drain the pipes on threads so that a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xregion {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() }
}

/// Stdout and stderr as one string, for messages.
pub fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Reads OUT/report.json as JSON.
pub fn report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json exists");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The check with `id` in a report.
pub fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing"))
}

/// Waits until `xregion lab up` prints its control URL on `stdout` (it does so once every region is ready and
/// lab.json is written), or `limit` passes; the error says why it was never ready.
pub fn await_lab_up(stdout: std::process::ChildStdout, limit: Duration) -> Result<(), String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("control ") => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("lab up never became ready: {e}")),
        }
    }
}

/// A client of the lab in `dir`: TLS trusting the lab's CA, with the admin token (plain `http://` URLs, the
/// WAN's admin API, work too).
pub fn lab_client(dir: &Path) -> reqwest::Client {
    lab_client_as(dir, "admin")
}

/// A client of the lab in `dir` trusting `DIR/pki/ca.pem`, with the token of principal `who` from
/// `DIR/tokens.json`.
pub fn lab_client_as(dir: &Path, who: &str) -> reqwest::Client {
    let tls = xregion_load::tls::client_config(Some(&dir.join("pki").join("ca.pem"))).expect("the lab's CA");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .default_headers(bearer(dir, who))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A config file whose lab has no WAN delay (tests spend their time on behaviour, not latency).
pub const ZERO_DELAY_LAB: &str = "[lab]\n[lab.wan]\njitter_ms = 0.0\n[lab.wan.rtt_ms]\n\"us-east-1/us-west-2\" = 0\n\
     \"us-east-1/eu-west-1\" = 0\n\"us-west-2/eu-west-1\" = 0\n";

/// `xregion lab up` running in the background, stopped with `xregion lab down` on drop (a failed assertion
/// included), so that no test leaves a lab behind.
pub struct LabUp {
    /// The lab directory.
    dir: PathBuf,
    /// The `lab up` process.
    child: std::process::Child,
}

impl LabUp {
    /// Starts `xregion lab up --config CONFIG --dir DIR` with `config` as the file's text, and waits (bounded by
    /// `limit`) until it has printed its control URL.
    pub fn start(root: &Path, config: &str, limit: Duration) -> LabUp {
        let dir = root.join("lab");
        let config_file = root.join("xregion.toml");
        std::fs::write(&config_file, config).expect("config");
        let mut child = Command::new(exe())
            .args(["lab", "up", "--config"])
            .arg(&config_file)
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lab up");
        let stdout = child.stdout.take().expect("stdout");
        let up = LabUp { dir, child };
        if let Err(e) = await_lab_up(stdout, limit) {
            panic!("{e}");
        }
        up
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lab directory as a command-line argument.
    pub fn dir_arg(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 temp path")
    }

    /// `DIR/lab.json` as JSON.
    pub fn record(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.dir.join("lab.json")).expect("lab.json");
        serde_json::from_slice(&bytes).expect("lab.json is JSON")
    }
}

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = Command::new(exe()).args(["lab", "down", "--dir"]).arg(&self.dir).output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Authorization` header of the lab principal `who`.
pub fn bearer(dir: &Path, who: &str) -> reqwest::header::HeaderMap {
    let tokens = xregion_lab::auth::Tokens::load(dir).expect("the lab's tokens");
    let token = tokens.token_of(who).expect("a known principal");
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
    h
}
