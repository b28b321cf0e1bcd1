//! The errors of the load engine: everything a user or the environment can cause before or around a run.
//! A failed request is not an error here; it is counted in the result.

use std::path::PathBuf;

/// Why a plan could not be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plan contradicts itself or is out of bounds.
    #[error("invalid load plan: {0}")]
    InvalidPlan(String),
    /// A target's host name did not resolve.
    #[error("cannot resolve {url}: {source}")]
    Resolve {
        /// The target URL.
        url: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// A target is not on this machine and remote targets were not allowed.
    #[error(
        "refusing to send load to {url} ({addr}): it is not a loopback address; pass --allow-remote (plan: \
         allow_remote = true) only for a host you are responsible for"
    )]
    RemoteTarget {
        /// The target URL.
        url: String,
        /// The address it resolved to.
        addr: std::net::SocketAddr,
    },
    /// The run would cross the process's file-descriptor limit.
    #[error(
        "the plan needs {needed} file descriptors ({connections} connections, {open_now} already open, {spare} spare), \
         but RLIMIT_NOFILE allows {limit} (hard {hard}): use fewer VUs or connections, or split the load across \
         several processes (each gets its own limit)"
    )]
    FdLimit {
        /// Descriptors the run would hold at its peak.
        needed: u64,
        /// Connections the plan can open at once.
        connections: u64,
        /// Descriptors this process held before the run.
        open_now: u64,
        /// Descriptors kept for the runtimes, stdio and pipes.
        spare: u64,
        /// The soft limit.
        limit: u64,
        /// The hard limit (the soft one cannot be raised above it).
        hard: u64,
    },
    /// The limit itself could not be read.
    #[error("cannot read RLIMIT_NOFILE: {0}")]
    Rlimit(nix::Error),
    /// No connection to the target opened within the plan's `no_connection_abort_ms` (or the whole run).
    #[error(
        "no connection to {addr} succeeded within {within_s} s: {reason}; check that the server is up and listening \
         there"
    )]
    NoConnection {
        /// The target's address.
        addr: std::net::SocketAddr,
        /// How long connects were tried, seconds.
        within_s: f64,
        /// Why the last connect failed, e.g. `connection refused`.
        reason: String,
    },
    /// A worker thread or its runtime could not start.
    #[error("cannot start a load worker: {0}")]
    Runtime(std::io::Error),
    /// A worker thread panicked, which is a bug.
    #[error("a load worker panicked: {0}")]
    WorkerPanicked(String),
    /// The worker process could not be started or talked to.
    #[error("load worker process {exe}: {source}")]
    ChildIo {
        /// The executable.
        exe: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The worker process exited without a result.
    #[error("load worker process exited with {status}: {stderr}")]
    ChildFailed {
        /// Exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// The worker process did not finish in time and was killed.
    #[error("load worker process did not finish within {after_s} s and was killed")]
    ChildTimeout {
        /// The limit, in seconds.
        after_s: u64,
    },
    /// A plan or result did not (de)serialize.
    #[error("load plan or result JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Reading or writing the worker protocol failed.
    #[error("load worker I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A threshold expression that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "cannot parse threshold {input:?}: {reason}; expected `[request:] metric op value`, e.g. `p95 < 200ms`, \
         `p(99.9) <= 1s`, `error_rate < 1%`, `rps > 100`"
)]
pub struct ThresholdError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}
