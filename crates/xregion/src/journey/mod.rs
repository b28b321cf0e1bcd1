//! Business journeys: a virtual user's script of HTTP steps against a deployment's own application API, with
//! variables, extraction, idempotent retries in other regions and per-step metrics, and the invariants judged over
//! what the journeys did (`xregion_check::invariant`).
//!
//! `spec` is the journey file (`docs/journeys.md`), `template` its `{{variable}}` templates, `run` executes
//! journeys and reads what the invariants need from every region, and `fault` injects a journey's fault when every
//! run has reached the step it waits before. The `cross-region.e2e.*` checks
//! (`suites::e2e`) drive them.

pub mod fault;
pub mod run;
pub mod spec;
pub mod template;
pub mod vu;

pub use spec::JourneyFile;

/// A journey file as the config loaded it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it was read from.
    pub path: std::path::PathBuf,
    /// What it says.
    pub file: JourneyFile,
}
