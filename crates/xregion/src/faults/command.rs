//! The command injector, for a real deployment: runs the user's shell commands from `[faults.command]` with the
//! contract of `docs/fault-injection.md` (environment, exit codes, status JSON). Each command runs with `sh -c` in
//! its own process group, bounded in time (the whole group is killed past `[faults] timeout_s`) and in the output
//! it keeps (the head of stdout, the tail of stderr).

use super::{FaultError, StatusReport, http_client, region_endpoint, root_cause, secs};
use crate::config::FaultCommands;
use crate::drive::clock::now_ms;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use xregion_model::fault::{ActiveFault, FaultSpec, FaultStatus, RegionFaultStatus};
use xregion_model::wire::Health;

/// Timeout of one `GET /healthz` when the command injector reports health itself.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(2);
/// Most stdout bytes kept from one command: enough for a `FaultStatus` of many regions, bounded in memory.
const STDOUT_BYTES_MAX: usize = 1 << 20;
/// Most stderr bytes kept from one command (the tail); errors show its last `STDERR_LINES_SHOWN` lines.
const STDERR_BYTES_MAX: usize = 64 * 1024;
/// Lines of a failed command's stderr shown in its error.
const STDERR_LINES_SHOWN: usize = 20;
/// Longest wait for a killed command to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long the output of an exited command is still read: a background process it left may hold the pipes.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// Most characters of a status command's text carried in a status report.
const STATUS_TEXT_CHARS_MAX: usize = 4000;

/// A fault the command injector injected, with a number that tells a later re-injection apart.
#[derive(Debug, Clone)]
struct Injected {
    /// The fault as reported.
    fault: ActiveFault,
    /// Increases with every injection; an auto-restore only lifts the injection it was scheduled for.
    generation: u64,
}

/// State shared by the clones of one command injector.
#[derive(Debug)]
struct CommandShared {
    /// The commands.
    commands: FaultCommands,
    /// Longest one command may run.
    timeout: Duration,
    /// Region name to probe-contract base URL, in config order.
    endpoints: Vec<(String, String)>,
    /// For `GET /healthz` when the status command gives no `FaultStatus`.
    client: reqwest::Client,
    /// Faults this process injected and has not restored, by region.
    injected: std::sync::Mutex<BTreeMap<String, Injected>>,
    /// Pending automatic restores (faults with a duration), by region.
    auto_restores: std::sync::Mutex<BTreeMap<String, tokio::task::JoinHandle<Result<(), FaultError>>>>,
    /// Serializes fail and restore commands, so that a region never has two running at once.
    op_lock: tokio::sync::Mutex<()>,
    /// Source of `Injected::generation`.
    generation: std::sync::atomic::AtomicU64,
}

/// The injector for a real deployment: runs the user's shell commands (`[faults.command]`).
///
/// A fault with a duration is lifted by running the restore command when it has passed, as long as this
/// process runs; `restore_injected` lifts the rest before exit.
#[derive(Debug, Clone)]
pub struct CommandInjector {
    /// Shared by every clone, so that checks running concurrently see the same injected faults.
    shared: Arc<CommandShared>,
}

/// What a command printed, bounded.
struct CommandOutput {
    /// The first `STDOUT_BYTES_MAX` bytes of stdout.
    stdout: Vec<u8>,
}

/// Kills a command's process group when dropped while armed: on a timeout and when the caller's future is
/// cancelled (Ctrl-C), so that no grandchild outlives it.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads all of `r`, keeping the first `max` bytes.
async fn read_head(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Reads all of `r`, keeping the last `max` bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                // Trim in steps of `max` so that the copy costs O(1) per byte.
                if kept.len() > 2 * max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
    if kept.len() > max {
        kept.drain(..kept.len() - max);
    }
    kept
}

/// Waits a short while for a pipe reader of an exited command, then gives up on it.
async fn join_reader(mut task: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(PIPE_GRACE, &mut task).await {
        Ok(Ok(v)) => v,
        _ => {
            task.abort();
            Vec::new()
        }
    }
}

/// The last `n` non-empty lines of `bytes`.
fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The environment a fault command gets for `spec` (empty values when there is none).
fn spec_env(spec: Option<&FaultSpec>) -> Vec<(&'static str, String)> {
    let Some(s) = spec else {
        return [
            "XREGION_FAULT_KIND",
            "XREGION_FAULT_DURATION_S",
            "XREGION_FAULT_DIRECTION",
            "XREGION_FAULT_PEERS",
            "XREGION_FAULT_CLIENTS",
            "XREGION_FAULT_WRITES_FAIL",
            "XREGION_FAULT_ERROR_SHARE",
            "XREGION_FAULT_EXTRA_DELAY_MS",
            "XREGION_FAULT_CLOCK_OFFSET_MS",
            "XREGION_FAULT_CLOCK_OFFSET_S",
            "XREGION_FAULT_SPEC",
        ]
        .into_iter()
        .map(|k| (k, String::new()))
        .collect();
    };
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    vec![
        ("XREGION_FAULT_KIND", s.kind.name().to_string()),
        ("XREGION_FAULT_DURATION_S", s.duration_ms.map_or_else(String::new, |ms| (ms as f64 / 1000.0).to_string())),
        ("XREGION_FAULT_DIRECTION", s.direction.name().to_string()),
        ("XREGION_FAULT_PEERS", s.peers.join(",")),
        ("XREGION_FAULT_CLIENTS", flag(s.clients)),
        ("XREGION_FAULT_WRITES_FAIL", flag(s.writes_fail)),
        ("XREGION_FAULT_ERROR_SHARE", s.error_share.to_string()),
        ("XREGION_FAULT_EXTRA_DELAY_MS", s.extra_delay_ms.to_string()),
        ("XREGION_FAULT_CLOCK_OFFSET_MS", s.clock_offset_ms.to_string()),
        // Signed seconds, as libfaketime's FAKETIME takes a relative offset: +0.400, -1.500.
        ("XREGION_FAULT_CLOCK_OFFSET_S", format!("{:+.3}", s.clock_offset_ms as f64 / 1000.0)),
        ("XREGION_FAULT_SPEC", serde_json::to_string(s).unwrap_or_default()),
    ]
}

impl CommandInjector {
    /// An injector running `commands`, each bounded by `timeout`, for the regions in `endpoints` (config order).
    pub fn new(
        commands: FaultCommands,
        timeout: Duration,
        endpoints: impl IntoIterator<Item = (String, String)>,
    ) -> CommandInjector {
        CommandInjector {
            shared: Arc::new(CommandShared {
                commands,
                timeout,
                endpoints: endpoints.into_iter().map(|(n, e)| (n, e.trim_end_matches('/').to_string())).collect(),
                client: http_client(),
                injected: std::sync::Mutex::new(BTreeMap::new()),
                auto_restores: std::sync::Mutex::new(BTreeMap::new()),
                op_lock: tokio::sync::Mutex::new(()),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The same injector calling `/healthz` through `client`; only before it is cloned.
    pub fn with_client(mut self, client: reqwest::Client) -> CommandInjector {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.client = client;
        }
        self
    }

    /// The commands.
    pub fn commands(&self) -> &FaultCommands {
        &self.shared.commands
    }

    fn injected(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Injected>> {
        self.shared.injected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn auto_restores(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, tokio::task::JoinHandle<Result<(), FaultError>>>> {
        self.shared.auto_restores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `command` with `sh -c` in its own process group, stdin closed, with `env` added to this process's
    /// environment; bounded by the timeout, its output bounded in memory.
    async fn run(
        &self,
        what: &'static str,
        region: &str,
        command: &str,
        env: &[(&'static str, String)],
    ) -> Result<CommandOutput, FaultError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawn_error =
            |cause: String| FaultError::Spawn { what, region: region.to_string(), command: command.to_string(), cause };
        let mut child = cmd.spawn().map_err(|e| spawn_error(e.to_string()))?;
        // The child leads its own group, so the group id is its pid.
        let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
        let stdout = child.stdout.take().map(|s| tokio::spawn(read_head(s, STDOUT_BYTES_MAX)));
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s, STDERR_BYTES_MAX)));
        let waited = tokio::time::timeout(self.shared.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(spawn_error(format!("cannot wait for it: {e}"))),
            Err(_) => {
                guard.kill();
                let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
                for t in [stdout, stderr].into_iter().flatten() {
                    t.abort();
                }
                return Err(FaultError::CommandTimeout {
                    what,
                    region: region.to_string(),
                    command: command.to_string(),
                    timeout: self.shared.timeout,
                });
            }
        };
        // It exited: whatever it left running in the background is its own business.
        guard.0 = None;
        let stdout = match stdout {
            Some(t) => join_reader(t).await,
            None => Vec::new(),
        };
        let stderr = match stderr {
            Some(t) => join_reader(t).await,
            None => Vec::new(),
        };
        if status.success() {
            return Ok(CommandOutput { stdout });
        }
        let mut tail = last_lines(&stderr, STDERR_LINES_SHOWN);
        if tail.is_empty() {
            tail = last_lines(&stdout, STDERR_LINES_SHOWN);
        }
        Err(FaultError::CommandFailed {
            what,
            region: region.to_string(),
            command: command.to_string(),
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            tail,
        })
    }

    /// `XREGION_REGION` and `XREGION_ENDPOINT`.
    fn region_env(&self, region: &str) -> Result<Vec<(&'static str, String)>, FaultError> {
        let endpoint = region_endpoint(&self.shared.endpoints, region)?.unwrap_or_default().to_string();
        Ok(vec![("XREGION_REGION", region.to_string()), ("XREGION_ENDPOINT", endpoint)])
    }

    /// Runs the fail command for `spec.kind`; a fault with a duration is restored when it has passed.
    pub async fn fail(&self, region: &str, spec: &FaultSpec) -> Result<ActiveFault, FaultError> {
        let mut env = self.region_env(region)?;
        if let Some(reason) = spec.problem() {
            return Err(FaultError::InvalidSpec { region: region.to_string(), reason });
        }
        let Some(command) = self.shared.commands.fail_for(spec.kind) else {
            return Err(FaultError::Unavailable(super::no_command(spec.kind)));
        };
        env.extend(spec_env(Some(spec)));
        let _op = self.shared.op_lock.lock().await;
        let since_ms = now_ms();
        self.run("fail", region, command, &env).await?;
        let fault = ActiveFault {
            region: region.to_string(),
            spec: spec.clone(),
            since_ms,
            until_ms: spec.duration_ms.map(|d| since_ms + d),
        };
        let generation = self.shared.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.injected().insert(region.to_string(), Injected { fault: fault.clone(), generation });
        let task = spec.duration_ms.map(|d| {
            let me = self.clone();
            let region = region.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(d)).await;
                me.auto_restore(&region, generation).await
            })
        });
        if let Some(old) = match task {
            Some(t) => self.auto_restores().insert(region.to_string(), t),
            None => self.auto_restores().remove(region),
        } {
            old.abort();
        }
        Ok(fault)
    }

    /// Restores `region` when the injection numbered `generation` is still the one in force.
    async fn auto_restore(&self, region: &str, generation: u64) -> Result<(), FaultError> {
        let _op = self.shared.op_lock.lock().await;
        let current = self.injected().get(region).map(|i| i.generation);
        if current != Some(generation) {
            return Ok(());
        }
        self.restore_locked(region).await
    }

    /// Takes the pending automatic restore of `region`, to wait for it (`xregion fail --duration` does).
    pub fn take_auto_restore(&self, region: &str) -> Option<tokio::task::JoinHandle<Result<(), FaultError>>> {
        self.auto_restores().remove(region)
    }

    /// Runs the restore command, with the fault this process injected (if any) in the environment.
    async fn restore_locked(&self, region: &str) -> Result<(), FaultError> {
        let mut env = self.region_env(region)?;
        let Some(command) = &self.shared.commands.restore else {
            return Err(FaultError::Unavailable("no faults.command.restore command is configured".into()));
        };
        let spec = self.injected().get(region).map(|i| i.fault.spec.clone());
        env.extend(spec_env(spec.as_ref()));
        self.run("restore", region, command, &env).await?;
        self.injected().remove(region);
        Ok(())
    }

    /// Runs the restore command for `region` and cancels its pending automatic restore.
    pub async fn restore(&self, region: &str) -> Result<(), FaultError> {
        region_endpoint(&self.shared.endpoints, region)?;
        if let Some(t) = self.auto_restores().remove(region) {
            t.abort();
        }
        let _op = self.shared.op_lock.lock().await;
        self.restore_locked(region).await
    }

    /// Restores every region this process injected a fault into and has not restored.
    pub async fn restore_injected(&self) -> Vec<(String, FaultError)> {
        let regions: Vec<String> = self.injected().keys().cloned().collect();
        let mut failed = Vec::new();
        for r in regions {
            if let Err(e) = self.restore(&r).await {
                failed.push((r, e));
            }
        }
        failed
    }

    /// Faults this process injected that are still in force.
    fn injected_now(&self) -> BTreeMap<String, ActiveFault> {
        let now = now_ms();
        self.injected()
            .iter()
            .filter(|(_, i)| i.fault.until_ms.is_none_or(|u| u > now))
            .map(|(r, i)| (r.clone(), i.fault.clone()))
            .collect()
    }

    /// The status command's `FaultStatus` if it prints one; otherwise each region's `/healthz` plus the faults
    /// this process injected, with the command's text.
    pub async fn status_report(&self) -> Result<StatusReport, FaultError> {
        let mut text = None;
        if let Some(command) = &self.shared.commands.status {
            let regions = self.shared.endpoints.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
            let env =
                [("XREGION_REGION", String::new()), ("XREGION_ENDPOINT", String::new()), ("XREGION_REGIONS", regions)];
            match self.run("status", "every region", command, &env).await {
                Ok(out) => match serde_json::from_slice::<FaultStatus>(&out.stdout) {
                    Ok(status) => return Ok(StatusReport { status, status_command_output: None }),
                    Err(_) => {
                        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        text = Some(s.chars().take(STATUS_TEXT_CHARS_MAX).collect());
                    }
                },
                Err(e) => text = Some(e.to_string().chars().take(STATUS_TEXT_CHARS_MAX).collect()),
            }
        }
        let injected = self.injected_now();
        let checks = self.shared.endpoints.iter().map(|(name, endpoint)| {
            let fault = injected.get(name).cloned();
            async move {
                RegionFaultStatus {
                    name: name.clone(),
                    endpoint: endpoint.clone(),
                    pid: None,
                    health: healthz(&self.shared.client, endpoint).await,
                    fault,
                }
            }
        });
        let regions = futures::future::join_all(checks).await;
        Ok(StatusReport { status: FaultStatus { regions }, status_command_output: text })
    }

    /// Runs `health_down` or `health_up`.
    pub async fn set_health(&self, region: &str, healthy: bool) -> Result<(), FaultError> {
        let (what, command) = if healthy {
            ("health_up", &self.shared.commands.health_up)
        } else {
            ("health_down", &self.shared.commands.health_down)
        };
        let Some(command) = command else {
            return Err(FaultError::Unavailable(format!(
                "no faults.command.{what} command is configured, so health-check faults cannot be injected"
            )));
        };
        let mut env = self.region_env(region)?;
        env.push(("XREGION_HEALTH", if healthy { "ok" } else { "down" }.to_string()));
        self.run(what, region, command, &env).await.map(|_| ())
    }
}

/// A region's health through the probe contract: the `status` of `GET /healthz` (also on a non-2xx answer that
/// carries one), or why the check failed.
async fn healthz(client: &reqwest::Client, endpoint: &str) -> String {
    let resp = match client.get(format!("{endpoint}/healthz")).timeout(HEALTHZ_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return format!("no answer within {} s", secs(&HEALTHZ_TIMEOUT)),
        Err(e) => return format!("unreachable: {}", root_cause(&e)),
    };
    let code = resp.status();
    match resp.bytes().await.ok().and_then(|b| serde_json::from_slice::<Health>(&b).ok()) {
        Some(h) if code.is_success() => h.status,
        Some(h) => format!("{} (http {})", h.status, code.as_u16()),
        None => format!("http {}", code.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xregion_model::fault::FaultKind;

    /// Goal: bounded readers keep the right end of a long output.
    #[tokio::test]
    async fn readers_keep_head_and_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_head(&data[..], 1000).await, data[..1000]);
        assert_eq!(read_tail(&data[..], 1000).await, data[data.len() - 1000..]);
        assert_eq!(last_lines(b"a\nb\n\nc\nd\n", 2), "c\nd");
    }

    /// Goal: every fault variable is set, empty when there is no fault, and numbers are plain.
    #[test]
    fn spec_env_is_complete() {
        let spec = FaultSpec { duration_ms: Some(1500), error_share: 0.5, ..FaultSpec::new(FaultKind::Partial) };
        let env: BTreeMap<_, _> = spec_env(Some(&spec)).into_iter().collect();
        assert_eq!(env["XREGION_FAULT_DURATION_S"], "1.5");
        assert_eq!(env["XREGION_FAULT_ERROR_SHARE"], "0.5");
        assert_eq!(env["XREGION_FAULT_EXTRA_DELAY_MS"], "0");
        let empty = spec_env(None);
        assert_eq!(empty.len(), env.len());
        assert!(empty.iter().all(|(_, v)| v.is_empty()));
    }
}
