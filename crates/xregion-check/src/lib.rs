//! Pure checkers of xregion: functions of recorded data, with no sockets, no clocks and no async runtime.
//!
//! `consistency` judges an operation history against the final state read from every region (lost writes,
//! convergence, last-write-wins winners and their real-time order); `stats` turns latency samples into percentiles
//! and chart-ready distributions. The runner records the data and turns these structured results into report verdicts, so
//! everything here can be tested on hand-written histories, including ones that must fail.

pub mod consistency;
pub mod evidence;
pub mod invariant;
pub mod recovery;
pub mod stats;

pub use consistency::{
    CheckError, Convergence, Counts, FinalStates, LwwCheck, WriteCheck, check_convergence, check_lww, check_writes,
};
pub use stats::LatencyRecorder;
