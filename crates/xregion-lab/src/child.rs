//! A lab child process watched by its own task, so that the supervisor notices when it exits.
//!
//! The task owns the `tokio::process::Child` and waits on it; it is the only place that reaps the child, so the
//! child's pid stays reserved (a zombie at worst) until the task has recorded how the child ended. The supervisor
//! keeps a [`Proc`]: the pid, a channel of signals for the task to deliver, and the exit once there is one.
//! Dropping the `Proc` closes that channel, and the task then SIGKILLs the child: no path leaves a child behind.
//!
//! An exit is *expected* when the lab caused it (a `complete` fault's kill, a stop): the supervisor says so with
//! [`Proc::expect_exit`] before it signals. Any other exit is a crash, logged at `warn` with how and when, and
//! reported by `lab status` and `xregion status` as `down (killed by signal 9 at 07:31:02 UTC)`.

use crate::dir::{ProcExit, pid_alive};
use crate::hlc::wall_now_ms;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

/// Signals queued for one child's task; the supervisor sends at most two (SIGTERM, then SIGKILL).
const SIGNALS_QUEUED_MAX: usize = 4;

/// How `status` reads in a `ProcExit`: `killed by signal 9`, `exited 3`.
pub fn exit_of(status: ExitStatus, at_ms: u64) -> ProcExit {
    let how = match (status.signal(), status.code()) {
        (Some(sig), _) => format!("killed by signal {sig}"),
        (None, Some(code)) => format!("exited {code}"),
        (None, None) => "ended".to_string(),
    };
    ProcExit { how, at_ms }
}

/// A running (or ended) child, watched by its task.
pub(crate) struct Proc {
    /// Its pid; reserved until the task has reaped it and recorded `exit`.
    pub pid: u32,
    /// What it is, for messages (`region us-east-1`, `wan`).
    pub what: String,
    /// Signals for the task to deliver; closing it (dropping the `Proc`) makes the task SIGKILL the child.
    signals: mpsc::Sender<Signal>,
    /// How it ended, once it has.
    exit: watch::Receiver<Option<ProcExit>>,
    /// Set by the supervisor before it stops or kills the child, so that its exit is not a crash.
    expected: Arc<AtomicBool>,
}

impl Proc {
    /// Hands `child` to its own task. `exited` gets one message (never blocking the task) whenever the child
    /// exits, expected or not, so that whoever records the lab can refresh it.
    pub fn watch(child: Child, pid: u32, what: &str, exited: mpsc::Sender<()>) -> Proc {
        let (signals, signals_rx) = mpsc::channel(SIGNALS_QUEUED_MAX);
        let (exit_tx, exit) = watch::channel(None);
        let expected = Arc::new(AtomicBool::new(false));
        let task = Watch { child, pid, what: what.to_string(), expected: expected.clone(), exit_tx, exited };
        tokio::spawn(task.run(signals_rx));
        Proc { pid, what: what.to_string(), signals, exit, expected }
    }

    /// How it ended, once it has.
    pub fn exit(&self) -> Option<ProcExit> {
        self.exit.borrow().clone()
    }

    /// How it ended, if it ended without the lab causing it.
    pub fn crash(&self) -> Option<ProcExit> {
        self.exit().filter(|_| !self.expected.load(Ordering::Acquire))
    }

    /// Whether it still runs (it has not exited, and its pid is not a zombie waiting for the task).
    pub fn running(&self) -> bool {
        self.exit.borrow().is_none() && pid_alive(self.pid)
    }

    /// Marks the coming exit as the lab's doing.
    pub fn expect_exit(&self) {
        self.expected.store(true, Ordering::Release);
    }

    /// Asks the task to deliver `sig` (SIGKILL through tokio, so the pid cannot have been reused).
    pub fn signal(&self, sig: Signal) {
        if self.signals.try_send(sig).is_err() && self.exit.borrow().is_none() {
            tracing::warn!(what = %self.what, pid = self.pid, signal = %sig, "cannot queue a signal for the child");
        }
    }

    /// SIGKILLs the child at once, without its task: for `Drop`, where the task may never run again.
    pub fn kill_now(&self) {
        if self.exit.borrow().is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }

    /// Waits until the child has exited, at most `limit`; its exit, or `None` when it still runs.
    pub async fn wait(&mut self, limit: Duration) -> Option<ProcExit> {
        let ended = tokio::time::timeout(limit, self.exit.wait_for(Option::is_some)).await;
        match ended.map(|r| r.map(|exit| exit.clone())) {
            Ok(Ok(exit)) => exit,
            // The task is gone (the runtime is shutting down): whatever it recorded is all there is.
            Ok(Err(_)) | Err(_) => self.exit(),
        }
    }
}

/// What a child's task holds.
struct Watch {
    /// The child; only this task waits on it.
    child: Child,
    /// Its pid.
    pid: u32,
    /// What it is, for the log.
    what: String,
    /// Whether the lab caused the exit.
    expected: Arc<AtomicBool>,
    /// Where the exit is published.
    exit_tx: watch::Sender<Option<ProcExit>>,
    /// Told (without waiting) that the child exited.
    exited: mpsc::Sender<()>,
}

impl Watch {
    async fn run(mut self, mut signals: mpsc::Receiver<Signal>) {
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status,
                sig = signals.recv() => match sig {
                    Some(Signal::SIGKILL) => {
                        let _ = self.child.start_kill();
                    }
                    // Not reaped yet (this task reaps), so the pid is still the child's.
                    Some(sig) => {
                        let _ = kill(Pid::from_raw(self.pid as i32), sig);
                    }
                    // The supervisor dropped its `Proc`: the child must not outlive it.
                    None => {
                        let _ = self.child.start_kill();
                        break self.child.wait().await;
                    }
                },
            }
        };
        let exit = match status {
            Ok(status) => exit_of(status, wall_now_ms()),
            Err(e) => {
                tracing::warn!(what = %self.what, pid = self.pid, error = %e, "cannot wait for the child");
                ProcExit { how: "lost (its exit status cannot be read)".to_string(), at_ms: wall_now_ms() }
            }
        };
        if self.expected.load(Ordering::Acquire) {
            tracing::info!(what = %self.what, pid = self.pid, how = %exit.how, "stopped");
        } else {
            tracing::warn!(what = %self.what, pid = self.pid, exit = %exit.describe(), "crashed");
        }
        self.exit_tx.send_replace(Some(exit));
        let _ = self.exited.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use tokio::process::Command;

    fn spawn(script: &str) -> (Child, u32) {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("sh starts");
        let pid = child.id().expect("pid");
        (child, pid)
    }

    /// Goal: exits read as the brief says, in UTC; method: statuses built from raw wait statuses.
    #[test]
    fn exits_read_well() {
        let killed = exit_of(ExitStatus::from_raw(9), 43_201_999);
        assert_eq!(killed.health(), "down (killed by signal 9 at 12:00:01 UTC)");
        let exited = exit_of(ExitStatus::from_raw(3 << 8), 0);
        assert_eq!(exited.describe(), "exited 3 at 00:00:00 UTC");
        assert_eq!(crate::dir::hms_utc(86_399_000 + 86_400_000), "23:59:59 UTC");
    }

    /// Goal: a child killed from outside is a crash with its signal, an exit code is recorded, the lab's own kill
    /// is expected, and dropping the `Proc` kills the child. Method: real `sh` children; every wait is bounded.
    #[tokio::test]
    async fn notices_crashes_and_expected_exits() {
        let limit = Duration::from_secs(10);
        let (tx, mut rx) = mpsc::channel(8);
        let (child, pid) = spawn("exec sleep 60");
        let mut p = Proc::watch(child, pid, "test sleeper", tx.clone());
        assert!(p.running() && p.exit().is_none());
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
        let exit = p.wait(limit).await.expect("the exit is noticed");
        assert_eq!(exit.how, "killed by signal 9");
        assert_eq!(p.crash(), Some(exit));
        assert!(!p.running());
        tokio::time::timeout(limit, rx.recv()).await.expect("told").expect("open");

        let (child, pid) = spawn("exit 3");
        let mut p = Proc::watch(child, pid, "test exit", tx.clone());
        assert_eq!(p.wait(limit).await.map(|e| e.how), Some("exited 3".into()));
        assert!(p.crash().is_some());

        let (child, pid) = spawn("exec sleep 60");
        let mut p = Proc::watch(child, pid, "test stop", tx.clone());
        p.expect_exit();
        p.signal(Signal::SIGTERM);
        assert_eq!(p.wait(limit).await.map(|e| e.how), Some("killed by signal 15".into()));
        assert_eq!(p.crash(), None, "the lab's own stop is no crash");

        let (child, pid) = spawn("exec sleep 60");
        let p = Proc::watch(child, pid, "test drop", tx);
        drop(p);
        let deadline = tokio::time::Instant::now() + limit;
        while pid_alive(pid) {
            assert!(tokio::time::Instant::now() < deadline, "a dropped Proc left its child {pid} running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
