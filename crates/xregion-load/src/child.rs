//! Running a plan in its own process: `exe load-worker` reads the plan as JSON on stdin and writes the result as
//! JSON on stdout. The generator's sockets then never count against the descriptors of the caller (the runner or
//! the lab), and a generator that hangs is killed.

use crate::error::LoadError;
use crate::plan::Plan;
use crate::result::LoadResult;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Time beyond the plan's schedule and drain a worker process gets before it is killed: start-up, merging, JSON.
pub const CHILD_MARGIN: Duration = Duration::from_secs(30);
/// Largest plan a worker reads from stdin.
const PLAN_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Characters of the worker's stderr kept for an error message.
const STDERR_TAIL_CHARS: usize = 2000;

/// Runs `plan` in `exe load-worker` and returns its result; the child is killed on timeout or when this future is
/// dropped.
pub async fn run_in_child(exe: &Path, plan: &Plan) -> Result<LoadResult, LoadError> {
    plan.validate()?;
    let io = |source| LoadError::ChildIo { exe: exe.to_path_buf(), source };
    let json = serde_json::to_vec(plan)?;
    let mut child = tokio::process::Command::new(exe)
        .arg("load-worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let limit = plan.executor.duration() + Duration::from_millis(plan.request_timeout_ms) + CHILD_MARGIN;
    let work = async {
        stdin.write_all(&json).await.map_err(io)?;
        drop(stdin);
        child.wait_with_output().await.map_err(io)
    };
    let out =
        tokio::time::timeout(limit, work).await.map_err(|_| LoadError::ChildTimeout { after_s: limit.as_secs() })??;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = {
            let chars: Vec<char> = stderr.trim().chars().collect();
            chars[chars.len().saturating_sub(STDERR_TAIL_CHARS)..].iter().collect()
        };
        return Err(LoadError::ChildFailed { status: out.status.to_string(), stderr: tail });
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The worker side: reads a plan from `input`, runs it, writes the result to `output`. An error goes back to the
/// caller, which prints it on stderr and exits non-zero.
pub fn worker_main(input: impl Read, mut output: impl Write) -> Result<(), LoadError> {
    let mut text = String::new();
    input.take(PLAN_BYTES_MAX).read_to_string(&mut text)?;
    let plan: Plan = serde_json::from_str(&text)?;
    let mut result = crate::engine::run_plan(&plan)?;
    result.rss_bytes_peak = peak_rss_bytes();
    serde_json::to_writer(&mut output, &result)?;
    output.flush()?;
    Ok(())
}

/// This process's peak resident memory (`VmHWM`), so that a run can report what its generator cost.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
