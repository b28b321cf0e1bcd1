//! Running a plan in its own process: `exe load-worker` reads the plan as JSON on stdin and writes JSON lines on
//! stdout: each chart window as it closes (`{"window": …}`), so that the caller can follow the run live, then the
//! result (`{"result": …}`). The generator's sockets then never count against the descriptors of the caller (the
//! runner or the lab), and a generator that hangs is killed.

use crate::error::LoadError;
use crate::plan::Plan;
use crate::result::{LoadResult, Window};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// One line of a worker's stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerLine {
    /// A chart window (or a late part of one) that has just closed.
    Window(Window),
    /// The run's result, last.
    Result(Box<LoadResult>),
}

/// Time beyond the plan's schedule and drain a worker process gets before it is killed: start-up, merging, JSON.
pub const CHILD_MARGIN: Duration = Duration::from_secs(30);
/// Largest plan a worker reads from stdin.
const PLAN_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Characters of the worker's stderr kept for an error message.
const STDERR_TAIL_CHARS: usize = 2000;

/// Runs `plan` in `exe load-worker` and returns its result; the child is killed on timeout or when this future is
/// dropped.
pub async fn run_in_child(exe: &Path, plan: &Plan) -> Result<LoadResult, LoadError> {
    run_in_child_streaming(exe, plan, |_| {}).await
}

/// `run_in_child`, telling `on_window` of each chart window as the worker closes it, while the run runs.
pub async fn run_in_child_streaming(
    exe: &Path,
    plan: &Plan,
    mut on_window: impl FnMut(Window),
) -> Result<LoadResult, LoadError> {
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
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let limit = plan.executor.duration() + Duration::from_millis(plan.request_timeout_ms) + CHILD_MARGIN;
    let work = async {
        stdin.write_all(&json).await.map_err(io)?;
        drop(stdin);
        let lines = async {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut result = None;
            while let Some(line) = lines.next_line().await? {
                match serde_json::from_str::<WorkerLine>(&line)? {
                    WorkerLine::Window(w) => on_window(w),
                    WorkerLine::Result(r) => result = Some(*r),
                }
            }
            Ok::<_, LoadError>(result)
        };
        // Both pipes are read at once, so that a worker writing much to one never blocks on the other.
        let mut err = Vec::new();
        let (result, _) = tokio::join!(lines, stderr.read_to_end(&mut err));
        let status = child.wait().await.map_err(io)?;
        Ok::<_, LoadError>((status, result, err))
    };
    let (status, result, err) =
        tokio::time::timeout(limit, work).await.map_err(|_| LoadError::ChildTimeout { after_s: limit.as_secs() })??;
    let failed = |why: String| {
        let chars: Vec<char> = why.trim().chars().collect();
        let tail = chars[chars.len().saturating_sub(STDERR_TAIL_CHARS)..].iter().collect();
        LoadError::ChildFailed { status: status.to_string(), stderr: tail }
    };
    if !status.success() {
        return Err(failed(String::from_utf8_lossy(&err).into_owned()));
    }
    result?.ok_or_else(|| failed("the load worker ended without writing its result".into()))
}

/// The worker side: reads a plan from `input`, runs it, writes the result to `output`. An error goes back to the
/// caller, which prints it on stderr and exits non-zero.
pub fn worker_main(input: impl Read, mut output: impl Write) -> Result<(), LoadError> {
    let mut text = String::new();
    input.take(PLAN_BYTES_MAX).read_to_string(&mut text)?;
    let plan: Plan = serde_json::from_str(&text)?;
    // The run on its own thread; this one writes its windows as they close, until the run ends the stream.
    let (tx, rx) = std::sync::mpsc::channel();
    let run = std::thread::Builder::new()
        .name("xregion-load-run".into())
        .spawn(move || crate::engine::run_plan_streaming(&plan, Some(tx)))
        .map_err(LoadError::Runtime)?;
    let mut write_line = |line: &WorkerLine| -> Result<(), LoadError> {
        serde_json::to_writer(&mut output, line)?;
        output.write_all(b"\n")?;
        output.flush()?;
        Ok(())
    };
    let mut written = Ok(());
    for w in rx {
        // A reader that went away does not stop the run; its result is still written (or fails) below.
        if written.is_ok() {
            written = write_line(&WorkerLine::Window(w));
        }
    }
    let mut result = run.join().map_err(|_| LoadError::WorkerPanicked("the run thread panicked".into()))??;
    result.rss_bytes_peak = peak_rss_bytes();
    written?;
    write_line(&WorkerLine::Result(Box::new(result)))
}

/// This process's peak resident memory (`VmHWM`), so that a run can report what its generator cost.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
