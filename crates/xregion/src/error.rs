//! The one error type of the commands, and the exit codes it maps to.
//!
//! A command returns `Ok(code)` when it ran (0: every check passed, 1: a check failed, or what the verdicts say),
//! and `Err(Error)` when it could not: `main` prints the error once and exits with its code.

use std::process::ExitCode;

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong input: a flag, a selection, a fault description (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The config file or the environment is wrong; the message names the file, line and column (exit 2).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The deployment could not be started, reached or used (exit 2).
    #[error("{0}")]
    Target(String),
    /// The fault injector failed; its own code (1 when the injector reported a failure, 2 otherwise).
    #[error(transparent)]
    Fault(#[from] crate::faults::FaultError),
    /// Ctrl-C or SIGTERM: what was measured is kept, the lab is stopped (exit 130).
    #[error("{0}")]
    Interrupted(String),
    /// Anything else, such as an output directory that cannot be written (exit 2).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Fault(e) => e.exit_code(),
            Error::Interrupted(_) => 130,
            Error::Usage(_) | Error::Config(_) | Error::Target(_) | Error::Other(_) => 2,
        })
    }

    /// How `main` prints it: `interrupted: …` or `error: …`.
    pub fn to_message(&self) -> String {
        match self {
            Error::Interrupted(m) => format!("interrupted: {m}"),
            e => format!("error: {e}"),
        }
    }
}

/// The result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
