//! xregion: proves that a multi-region active-active system keeps its promises.
//!
//! The binary is thin glue over this library. `cli` parses arguments; `config` turns the TOML file and the
//! environment into an explicit `Config`; `runner` selects and runs checks from `suites` against a deployment it
//! reaches only through `probe` (the probe-contract client), recording every operation in `history`;
//! `lab_cmd` drives the embedded lab.

pub mod chaos;
pub mod cli;
pub mod config;
pub mod fault_cmd;
pub mod faults;
pub mod history;
pub mod lab_cmd;
pub mod load_cmd;
pub mod net;
pub mod probe;
pub mod progress;
pub mod runner;
pub mod suites;
pub mod tls_scan;
