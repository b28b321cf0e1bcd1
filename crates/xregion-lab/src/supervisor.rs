//! The supervisor: starts the lab's processes, wires them, kills and restarts regions, and stops everything.
//!
//! Children are spawned from the xregion binary (`lab node …`, `lab wan …`) on async tasks (never from
//! `spawn_blocking`: a parent-death signal fires when the *thread* that forked exits). Each child reports
//! readiness with one `READY {json}` line on stdout; its stderr goes to a log file in the lab directory. Every
//! exit path kills the children: `shutdown` (SIGTERM, then SIGKILL), `Drop` (SIGKILL, for panics and early
//! returns), and the children's own parent-death signal if the supervisor is SIGKILLed.
//!
//! Once ready, each child is watched by its own task (`child::Proc`), so that an exit the lab did not cause (a
//! `kill -9` from outside, a panic) is noticed at once: the region is then reported `down (killed by signal 9 at
//! …)` with no pid, the control server rewrites `lab.json`, and a restore restarts the region from its store.
//!
//! `xregion lab up` (`control::run_foreground`) serves the control API (`control::ControlServer`, which also
//! records the lab in `DIR/lab.json`) so that `xregion lab status` / `down` (other processes, `status` and `down`
//! here) can find and stop it, and fault injectors can fail and restore regions. The faults themselves are in
//! `faults`.

use crate::LabError;
use crate::auth::Tokens;
use crate::config::LabConfig;
use crate::dir::LabDirError;
use crate::fault_plan::InForce;
use crate::http_client::Client;
use crate::layout::LabDir;
use crate::node::NodeReady;
use crate::pki::{Pki, PkiOptions};
use crate::router::info::{RouterReady, TrafficInfo};
use crate::spec::Spec;
use crate::wan::WanReady;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use xregion_model::report::RegionInfo;

use crate::child::Proc;
use crate::dir::{LabRecord, ProcExit, RegionRecord, pid_alive};

/// Longest wait at start for every replication stream to connect.
const REPLICATION_CONNECT_WAIT_MAX: Duration = Duration::from_secs(10);

/// Longest a child may take to print `READY`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a child may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Timeout of one control request to a lab process.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `down` waits for the supervisor and its children to be gone.
pub const DOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// The log-filter variable the xregion binary reads.
const LOG_ENV: &str = "XREGION_LOG";
/// Longest stdout line read while waiting for readiness.
const READY_LINE_BYTES_MAX: usize = 64 * 1024;
/// Exit notices waiting for the control server; one pending notice is enough to rewrite `lab.json`, so a full
/// queue drops the rest.
const EXIT_NOTICES_MAX: usize = 16;

/// A running lab. Dropping it SIGKILLs every child; call `shutdown` for a clean stop.
pub struct Lab {
    /// The lab directory.
    dir: LabDir,
    /// The xregion binary children are started from.
    exe: PathBuf,
    /// The spec with the ports the nodes bound.
    pub(crate) spec: Spec,
    /// Node processes by region (None while killed by the lab; a crashed one stays, with its exit).
    nodes: BTreeMap<String, Option<Proc>>,
    /// Each region's READY (addresses stay the same across restarts).
    pub(crate) ready: BTreeMap<String, NodeReady>,
    /// The WAN process.
    wan: Option<Proc>,
    /// The WAN's READY: admin address and link addresses.
    pub(crate) wan_ready: Option<WanReady>,
    /// The router process (records and CDN edges); None when `lab.router.enabled` is false.
    router: Option<Proc>,
    /// The router's READY: its listeners.
    pub(crate) router_ready: Option<RouterReady>,
    /// The faults in force, by region, with what each did (`faults`).
    pub(crate) faults: BTreeMap<String, InForce>,
    /// The lab's own HTTPS client to its processes (the lab's CA, the admin token).
    pub(crate) client: Client,
    /// Each child's task tells this when its child exits.
    exited_tx: mpsc::Sender<()>,
    /// The other end, until the control server takes it to rewrite `lab.json` on every exit.
    exited_rx: Option<mpsc::Receiver<()>>,
}

impl Lab {
    /// Starts a lab for `cfg` in `dir` from the xregion binary `exe`, and returns once every region is ready
    /// and wired. A failure part-way kills whatever was started.
    pub async fn start(cfg: &LabConfig, dir: &Path, exe: &Path) -> Result<Lab, LabError> {
        cfg.validate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("cannot create the lab directory {}", dir.display()), e))?;
        let dir = std::path::absolute(dir).map_err(|e| LabError::io("cannot resolve the lab directory", e))?;
        let mut spec = Spec::new(cfg, &dir)?;
        let client = prepare_security(cfg, &spec)?;
        let dir = LabDir::new(dir);
        spec.save(&dir.spec_file())?;
        let (exited_tx, exited_rx) = mpsc::channel(EXIT_NOTICES_MAX);
        let mut lab = Lab {
            dir: dir.clone(),
            exe: exe.to_path_buf(),
            spec: spec.clone(),
            nodes: BTreeMap::new(),
            ready: BTreeMap::new(),
            wan: None,
            wan_ready: None,
            router: None,
            router_ready: None,
            faults: BTreeMap::new(),
            client,
            exited_tx,
            exited_rx: Some(exited_rx),
        };
        // Start the regions concurrently; `lab` owns each as soon as it is ready, so an error kills the rest.
        let starts = spec.regions.iter().map(|r| lab.spawn_node(&r.name));
        let results = futures::future::join_all(starts).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok((proc, ready)) => {
                    lab.nodes.insert(ready.region.clone(), Some(proc));
                    lab.ready.insert(ready.region.clone(), ready);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Record the bound ports so that restarts and the WAN use them.
        for r in &mut spec.regions {
            if let Some(ready) = lab.ready.get(&r.name) {
                r.http_port = ready.http_addr.port();
                r.repl_port = ready.repl_addr.port();
            }
        }
        spec.save(&dir.spec_file())?;
        lab.spec = spec;
        let (wan, wan_ready) = lab.spawn("wan", &["lab", "wan", "--spec"], None, &dir.wan_log()).await?;
        let wan_ready: WanReady = serde_json::from_str(&wan_ready)
            .map_err(|e| LabError::Spec(format!("the WAN's READY line is not valid: {e}")))?;
        lab.wan = Some(wan);
        lab.wan_ready = Some(wan_ready);
        for r in lab.spec.regions.clone() {
            lab.wire(&r.name).await?;
        }
        lab.await_replication_connected(REPLICATION_CONNECT_WAIT_MAX).await;
        // The router comes last: it reads the nodes' ports from the spec, and starts with every region healthy.
        if cfg.router.enabled {
            let (router, line) = lab.spawn("router", &["lab", "router", "--spec"], None, &dir.router_log()).await?;
            lab.router = Some(router);
            let ready: RouterReady = serde_json::from_str(&line)
                .map_err(|e| LabError::Spec(format!("the router's READY line is not valid: {e}")))?;
            lab.router_ready = Some(ready);
        }
        tracing::info!(dir = %dir.path().display(), regions = lab.spec.regions.len(), "lab started");
        Ok(lab)
    }

    /// The regions in config order, with their probe-contract endpoints.
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.spec
            .regions
            .iter()
            .filter_map(|r| self.ready.get(&r.name))
            .map(|ready| RegionInfo { name: ready.region.clone(), endpoint: format!("https://{}", ready.http_addr) })
            .collect()
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The WAN admin API base URL (`GET /links`, `PUT /links/{from}/{to}`).
    pub fn wan_admin_url(&self) -> Option<String> {
        self.wan_ready.as_ref().map(|w| format!("http://{}", w.admin_addr))
    }

    /// The routing records, the CDN and their tables; None when the lab runs without a router.
    pub fn traffic(&self) -> Option<TrafficInfo> {
        let ready = self.router_ready.as_ref()?;
        // The spec's config was validated when the lab started, so its routing tables resolve.
        let routing = self.spec.lab.routing().ok()?;
        Some(TrafficInfo::new(ready, &routing))
    }

    /// Pid of the router process, if it is running.
    pub fn router_pid(&self) -> Option<u32> {
        self.router.as_ref().filter(|p| p.running()).map(|p| p.pid)
    }

    /// Pid of a region's node, if it is running.
    pub fn region_pid(&self, name: &str) -> Option<u32> {
        self.nodes.get(name).and_then(|p| p.as_ref()).filter(|p| p.running()).map(|p| p.pid)
    }

    /// How a region's node ended when it crashed (an exit the lab did not cause) and has not been restarted.
    pub fn region_crash(&self, name: &str) -> Option<ProcExit> {
        self.nodes.get(name)?.as_ref()?.crash()
    }

    /// Pid of the WAN process, if it is running.
    pub fn wan_pid(&self) -> Option<u32> {
        self.wan.as_ref().filter(|p| p.running()).map(|p| p.pid)
    }

    /// The notices of child exits, once: the control server rewrites `lab.json` on each.
    pub(crate) fn take_exit_notices(&mut self) -> Option<mpsc::Receiver<()>> {
        self.exited_rx.take()
    }

    /// SIGKILLs a region's node and reaps it (a crash, as far as the region can tell).
    pub async fn kill_region(&mut self, name: &str) -> Result<(), LabError> {
        if !self.nodes.contains_key(name) {
            return Err(self.unknown(name));
        }
        if self.region_pid(name).is_none() {
            let why = self.region_crash(name).map_or_else(String::new, |c| format!(": its node {}", c.describe()));
            return Err(LabError::State(format!("region {name} is not running{why}")));
        }
        let Some(mut proc) = self.nodes.get_mut(name).and_then(Option::take) else {
            return Err(LabError::State(format!("region {name} is not running")));
        };
        proc.expect_exit();
        proc.signal(Signal::SIGKILL);
        match proc.wait(STOP_GRACE).await {
            Some(exit) => tracing::info!(region = name, pid = proc.pid, how = %exit.how, "region killed"),
            None => tracing::warn!(region = name, pid = proc.pid, "killed region did not exit in time"),
        }
        Ok(())
    }

    /// Restarts a killed or crashed region from its data on the same address and ports, rewires it, and waits
    /// until it is ready (bounded by `READY_TIMEOUT`; the error names the region and its log).
    pub async fn start_region(&mut self, name: &str) -> Result<(), LabError> {
        match self.nodes.get(name) {
            None => return Err(self.unknown(name)),
            Some(Some(p)) if p.running() => {
                return Err(LabError::State(format!("region {name} is already running")));
            }
            Some(_) => {}
        }
        if let Some(crash) = self.region_crash(name) {
            tracing::info!(region = name, crash = %crash.describe(), "restarting a crashed region from its store");
        }
        let (proc, ready) = self.spawn_node(name).await?;
        let before = self.ready.get(name);
        if before.is_some_and(|b| b.http_addr != ready.http_addr || b.repl_addr != ready.repl_addr) {
            tracing::warn!(region = name, "restarted region came back on different addresses");
        }
        self.nodes.insert(name.to_string(), Some(proc));
        self.ready.insert(name.to_string(), ready);
        self.wire(name).await?;
        tracing::info!(region = name, "region restarted");
        Ok(())
    }

    /// Stops every process: SIGTERM, a short wait, then SIGKILL; leaves no process behind.
    pub async fn shutdown(mut self) -> Result<(), LabError> {
        // The router first, so that it stops sending traffic before the regions go.
        let mut procs: Vec<Proc> = self.router.take().into_iter().collect();
        procs.extend(self.nodes.values_mut().filter_map(Option::take));
        procs.extend(self.wan.take());
        for p in &procs {
            p.expect_exit();
            p.signal(Signal::SIGTERM);
        }
        let mut stuck = Vec::new();
        for mut p in procs {
            if p.wait(STOP_GRACE).await.is_none() {
                tracing::warn!(what = %p.what, pid = p.pid, "did not stop after SIGTERM; killing it");
                p.signal(Signal::SIGKILL);
                let _ = p.wait(STOP_GRACE).await;
                stuck.push(p.what.clone());
            }
        }
        tracing::info!(dir = %self.dir.path().display(), "lab stopped");
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(LabError::State(format!("{} had to be killed after SIGTERM", stuck.join(", "))))
        }
    }

    pub(crate) fn unknown(&self, name: &str) -> LabError {
        let known: Vec<&str> = self.spec.regions.iter().map(|r| r.name.as_str()).collect();
        LabError::UnknownRegion { name: name.to_string(), known: known.join(", ") }
    }

    async fn spawn_node(&self, name: &str) -> Result<(Proc, NodeReady), LabError> {
        let region_dir = self.dir.region_dir(name);
        std::fs::create_dir_all(&region_dir)
            .map_err(|e| LabError::io(format!("cannot create {}", region_dir.display()), e))?;
        let what = format!("region {name}");
        let (proc, line) = self.spawn(&what, &["lab", "node", "--spec"], Some(name), &self.dir.node_log(name)).await?;
        let ready: NodeReady = serde_json::from_str(&line)
            .map_err(|e| LabError::Spec(format!("the READY line of {what} is not valid: {e}")))?;
        Ok((proc, ready))
    }

    /// Spawns `exe args… SPEC [--region R]` and waits for its READY line; returns the JSON after `READY `.
    async fn spawn(
        &self,
        what: &str,
        args: &[&str],
        region: Option<&str>,
        log: &Path,
    ) -> Result<(Proc, String), LabError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LabError::io(format!("cannot open the log {}", log.display()), e))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).arg(self.dir.spec_file());
        if let Some(r) = region {
            cmd.arg("--region").arg(r);
        }
        // Children log connection events at info into their log file unless the user chose a level.
        if std::env::var_os(LOG_ENV).is_none() {
            cmd.env(LOG_ENV, "info");
        }
        // Own process group: a terminal's Ctrl-C reaches only the supervisor, which then stops children in order.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .process_group(0);
        let mut child =
            cmd.spawn().map_err(|e| LabError::io(format!("cannot start {what} from {}", self.exe.display()), e))?;
        let pid = child.id().unwrap_or(0);
        let not_ready =
            |reason: String| LabError::NotReady { what: what.to_string(), reason, log: log.display().to_string() };
        let Some(stdout) = child.stdout.take() else {
            return Err(not_ready("its stdout is not captured".into()));
        };
        let mut lines = BufReader::new(stdout);
        let wait_ready = async {
            let mut line = String::new();
            loop {
                line.clear();
                let n = (&mut lines)
                    .take(READY_LINE_BYTES_MAX as u64)
                    .read_line(&mut line)
                    .await
                    .map_err(|e| format!("cannot read its stdout: {e}"))?;
                if n == 0 {
                    return Err("it exited before it was ready".to_string());
                }
                if let Some(json) = line.trim_end().strip_prefix("READY ") {
                    return Ok(json.to_string());
                }
                tracing::warn!(what, line = line.trim_end(), "unexpected stdout line before READY");
            }
        };
        let result = tokio::time::timeout(READY_TIMEOUT, wait_ready).await;
        let json = match result {
            Ok(Ok(json)) => json,
            Ok(Err(reason)) => {
                let _ = child.start_kill();
                let status = tokio::time::timeout(STOP_GRACE, child.wait()).await;
                let reason = match status {
                    Ok(Ok(s)) => format!("{reason} ({s})"),
                    _ => reason,
                };
                return Err(not_ready(reason));
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
                return Err(not_ready(format!("no READY line within {} s", READY_TIMEOUT.as_secs())));
            }
        };
        // Keep reading stdout so a stray write can never block or SIGPIPE the child.
        let what_owned = what.to_string();
        tokio::spawn(async move {
            let mut rest = lines.lines();
            while let Ok(Some(line)) = rest.next_line().await {
                tracing::warn!(what = %what_owned, %line, "unexpected stdout line after READY");
            }
        });
        tracing::info!(what, pid, "ready");
        Ok((Proc::watch(child, pid, what, self.exited_tx.clone()), json))
    }

    /// Tells `region` where to dial each peer: the WAN link `region -> peer`.
    /// Waits until every region reports every replication stream connected, so that a run does not start
    /// measuring while the streams are still being dialled. Bounded: past `limit` it logs and goes on, because a
    /// stream that does not connect is itself something the checks will show.
    async fn await_replication_connected(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut all = true;
            for ready in self.ready.values() {
                let connected =
                    match self.client.request("GET", ready.http_addr, "/v1/replication", None, CONTROL_TIMEOUT).await {
                        Ok((200, body)) => serde_json::from_slice::<xregion_model::wire::ReplicationStatus>(&body)
                            .is_ok_and(|s| s.peers.iter().all(|p| p.connected)),
                        _ => false,
                    };
                all &= connected;
            }
            if all {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?limit, "replication streams not all connected; starting anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wire(&self, region: &str) -> Result<(), LabError> {
        let (Some(wan), Some(ready)) = (&self.wan_ready, self.ready.get(region)) else {
            return Err(LabError::State(format!("cannot wire {region}: the lab is not fully started")));
        };
        let peers: BTreeMap<&str, SocketAddr> =
            wan.links.iter().filter(|l| l.from == region).map(|l| (l.to.as_str(), l.addr)).collect();
        self.client
            .call_json("PUT", ready.http_addr, "/lab/peers", &peers, &format!("region {region}"), CONTROL_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// What `lab.json` and `GET /status` show.
    pub(crate) fn record(&self, control_url: &str) -> LabRecord {
        LabRecord {
            supervisor_pid: std::process::id(),
            control_url: control_url.to_string(),
            dir: self.dir.path().to_path_buf(),
            wan_pid: self.wan_pid(),
            wan_admin_url: self.wan_admin_url(),
            router_pid: self.router_pid(),
            traffic: self.traffic(),
            ca_file: self.dir.ca_file(),
            tokens_file: self.dir.tokens_file(),
            regions: self
                .regions()
                .into_iter()
                .map(|r| RegionRecord {
                    pid: self.region_pid(&r.name),
                    exit: self.region_crash(&r.name),
                    name: r.name,
                    endpoint: r.endpoint,
                })
                .collect(),
        }
    }
}

/// Prepares the lab directory's security material before any child starts: the PKI (`DIR/pki`, certificates for
/// every region's address and the router's, expired with the `cert_expired` defect), fresh tokens
/// (`DIR/tokens.json`, 0600) and the key-encryption key (`DIR/keys/kek`, kept when it exists, so that a region's
/// wrapped data key still opens). Returns the lab's own client (the CA, the admin token).
fn prepare_security(cfg: &LabConfig, spec: &Spec) -> Result<Client, LabError> {
    let regions: Vec<(String, std::net::IpAddr)> = spec.regions.iter().map(|r| (r.name.clone(), r.ip)).collect();
    let opts = PkiOptions { expired: cfg.defects.cert_expired, ..PkiOptions::default() };
    let pki = Pki::create(&spec.dir, &regions, cfg.router_ip(), opts)?;
    let tokens = Tokens::create(&spec.dir)?;
    crate::crypto::ensure_kek(&spec.dir)?;
    let token = tokens.token_of(crate::auth::ADMIN);
    Ok(Client::tls(pki.client_config()?, token))
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Last resort (panic, early return, cancelled start): never leave a process behind.
        // Each child's task would kill it once its `Proc` is dropped, but only if the runtime still runs it.
        let procs = self.nodes.values().filter_map(Option::as_ref).chain(self.wan.as_ref()).chain(self.router.as_ref());
        for p in procs {
            p.expect_exit();
            p.kill_now();
        }
    }
}

/// What `xregion lab status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabStatus {
    /// The lab directory.
    pub dir: PathBuf,
    /// Whether the supervisor process is alive.
    pub supervisor_alive: bool,
    /// The supervisor pid from lab.json.
    pub supervisor_pid: u32,
    /// Control API base URL.
    pub control_url: String,
    /// Per region, in config order.
    pub regions: Vec<RegionStatus>,
}

/// One region's state in `LabStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// Probe-contract base URL.
    pub endpoint: String,
    /// Node pid, if the supervisor has one running (never a pid that is gone).
    pub pid: Option<u32>,
    /// Whether that pid is alive.
    pub process_alive: bool,
    /// `ok` from `/healthz`, or why the check failed; `down (killed by signal 9 at 07:31:02 UTC)` or
    /// `down (exited 3 at …)` after a crash, `down` after the lab's own kill.
    pub health: String,
    /// How its node ended, when it crashed and has not been restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ProcExit>,
}

/// What `DIR/lab.json` records, with the messages `lab status` and `lab down` have always given.
fn read_record(dir: &Path) -> Result<LabRecord, LabError> {
    LabDir::new(dir).record().map_err(|e| match e {
        LabDirError::NotRunning { .. } => LabError::NotRunning(dir.display().to_string()),
        LabDirError::Read { path, source } => LabError::io(format!("cannot read {}", path.display()), source),
        LabDirError::NotARecord { path, source } => {
            LabError::Spec(format!("{} is not a valid lab record: {source}", path.display()))
        }
        other => LabError::State(other.to_string()),
    })
}

/// `xregion lab status`: what lab.json says, whether the processes live, and each region's health. A dead lab
/// is reported, not waited on: every check is bounded by `http_client::HEALTH_TIMEOUT`.
pub async fn status(dir: &Path) -> Result<LabStatus, LabError> {
    let record = read_record(dir)?;
    // The health route is public; the client still needs the lab's CA (and its tokens file is there too).
    let client = Client::for_lab(dir);
    let client = &client;
    let checks = record.regions.iter().map(|r| async move {
        let process_alive = r.pid.is_some_and(pid_alive);
        let addr = r.endpoint.strip_prefix("https://").and_then(|a| a.parse::<SocketAddr>().ok());
        // A region without a live process is down, said without asking it (which would only fail to connect).
        let health = match (&r.exit, r.pid, addr, client) {
            (Some(exit), _, _, _) => exit.health(),
            (None, None, _, _) => "down".to_string(),
            (None, Some(_), _, _) if !process_alive => "down (its process is gone)".to_string(),
            (None, Some(_), None, _) => format!("bad endpoint {}", r.endpoint),
            (None, Some(_), Some(_), Err(e)) => format!("cannot check: {e}"),
            (None, Some(_), Some(addr), Ok(client)) => crate::http_client::health_of(client, addr).await,
        };
        RegionStatus {
            name: r.name.clone(),
            endpoint: r.endpoint.clone(),
            pid: r.pid.filter(|_| process_alive),
            process_alive,
            health,
            exit: r.exit.clone(),
        }
    });
    let regions = futures::future::join_all(checks).await;
    Ok(LabStatus {
        dir: record.dir.clone(),
        supervisor_alive: pid_alive(record.supervisor_pid),
        supervisor_pid: record.supervisor_pid,
        control_url: record.control_url,
        regions,
    })
}

/// `xregion lab down`: SIGTERMs the supervisor recorded in lab.json and waits (bounded) until it and every
/// child are gone; stragglers get SIGKILL.
pub async fn down(dir: &Path) -> Result<(), LabError> {
    let record = read_record(dir)?;
    let mut pids: Vec<u32> = record.regions.iter().filter_map(|r| r.pid).collect();
    pids.extend(record.wan_pid);
    pids.extend(record.router_pid);
    if pid_alive(record.supervisor_pid) {
        let _ = kill(Pid::from_raw(record.supervisor_pid as i32), Signal::SIGTERM);
    }
    let all: Vec<u32> = std::iter::once(record.supervisor_pid).chain(pids.iter().copied()).collect();
    let deadline = tokio::time::Instant::now() + DOWN_TIMEOUT;
    while all.iter().any(|p| pid_alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<u32> = all.iter().copied().filter(|p| pid_alive(*p)).collect();
    for p in &left {
        let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(LabDir::new(dir).lab_json());
    if left.is_empty() {
        Ok(())
    } else {
        Err(LabError::State(format!("processes {left:?} did not stop within {DOWN_TIMEOUT:?} and were killed")))
    }
}
