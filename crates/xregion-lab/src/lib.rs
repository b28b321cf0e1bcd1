//! The xregion lab: a real multi-region active-active deployment on one machine.
//!
//! Each region is its own OS process (`node`) with a durable redb store, group commit, a hybrid logical clock
//! and last-writer-wins replication to every other region over TCP. A separate process (`wan`) proxies every
//! directed replication link and adds the latency of a real WAN, by rules that later fault work can extend. The
//! `supervisor` starts, wires, kills, restarts and stops them. Regions serve the probe contract
//! (`docs/probe-contract.md`) over HTTP, which is all the rest of xregion sees of the lab. The lab directory's
//! layout is known in one place, `dir`, which also opens a running lab's directory for the rest of xregion.

pub mod auth;
mod child;
pub mod config;
pub mod control;
pub mod crypto;
pub mod dir;
pub mod fault_plan;
pub mod faults;
pub mod hlc;
pub mod http_client;
pub mod layout;
pub mod node;
pub mod pki;
pub mod proto;
pub mod record;
pub mod router;
mod secret_file;
pub mod spec;
pub mod supervisor;
pub mod wan;

pub use config::routing::Routing;
pub use config::validate::LabConfigError;
pub use config::{CdnConfig, Defects, LabConfig, NodeConfig, RouterConfig, WanConfig};
pub use control::{ControlServer, run_foreground};
pub use dir::{LabCredentials, LabDir, LabDirError, LabRecord, ProcExit, RegionRecord, RunningLab};
pub use node::run_node;
pub use router::info::{RouterReady, TrafficInfo};
pub use router::run_router;
pub use supervisor::{Lab, LabStatus, RegionStatus, down, status};
pub use wan::{Rule, run_links, run_wan};

/// Waits until `deadline`, returning at once when it has passed.
///
/// tokio rounds every timer deadline up to its next millisecond tick, so `tokio::time::sleep_until(now)` waits up
/// to 1 ms. On the replication path (WAN release times, receiver due times) that would add up to a millisecond
/// per hop even with no emulated delay, which is most of what the lab itself is allowed to add.
pub(crate) async fn sleep_until(deadline: tokio::time::Instant) {
    if deadline > tokio::time::Instant::now() {
        tokio::time::sleep_until(deadline).await;
    }
}

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] LabConfigError),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The spec file is wrong.
    #[error("{0}")]
    Spec(String),
    /// A region name that the lab does not have.
    #[error("unknown region {name:?}; the lab has {known}")]
    UnknownRegion {
        /// The name asked for.
        name: String,
        /// The lab's regions, comma-separated.
        known: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] node::store::StoreError),
    /// A child process did not become ready.
    #[error("{what} did not become ready: {reason}; see {log}")]
    NotReady {
        /// Which process (for example `region us-east-1`).
        what: String,
        /// Why (timeout, exited with status ...).
        reason: String,
        /// Its log file.
        log: String,
    },
    /// An HTTP exchange with a lab process failed.
    #[error("{0}")]
    Http(String),
    /// The lab directory has no running lab.
    #[error("no lab is running in {0}: start one with `xregion lab up`")]
    NotRunning(String),
    /// The state of the lab does not allow the operation.
    #[error("{0}")]
    State(String),
    /// A request to the lab is invalid (a bad fault spec, for example).
    #[error("{0}")]
    Invalid(String),
}

impl LabError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io { context: context.into(), source }
    }
}
