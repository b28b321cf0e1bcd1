//! xregion: proves that a multi-region active-active system keeps its promises.
//!
//! The binary is thin glue over this library: `cli::main` parses arguments and runs a command. `runner` runs
//! checks from the `catalogue` (each a `check::CheckDef` in a `suites` module) against a `target`, which starts
//! the lab or describes a deployment reached only through `probe` (the probe-contract client); `drive` holds the
//! traffic drivers every check shares, `history` records every operation, and `output` writes the reports.
//!
//! Only what the binaries and the integration tests use is public: `cli` (the entry point), `config` and
//! `faults` (the command injector's contract, tested end to end), and `journey` (the journey file the config loads).
//! Everything else is private to the crate.

mod catalogue;
mod chaos;
mod check;
pub mod cli;
mod compare_cmd;
pub mod config;
mod db;
mod db_cmd;
mod drive;
mod error;
mod fault_cmd;
pub mod faults;
mod history;
pub mod journey;
mod lab_cmd;
mod live;
mod load_cmd;
mod merge_cmd;
mod net;
mod output;
mod probe;
mod progress;
mod runner;
mod secret;
mod suites;
mod target;
mod tls_scan;
