//! xregion's load engine: closed (VUs) and open (arrival-rate) models with ramps, every latency recorded in
//! HdrHistograms, the open model corrected for coordinated omission, and thresholds as data.
//!
//! A `Plan` goes in, a `LoadResult` comes out, both plain serde data. `run_plan` runs in this process on one
//! current-thread runtime per core; `run_in_child` runs the same plan in a separate `load-worker` process so the
//! generator's descriptors never mix with the caller's.
//!
//! Modules: `plan` (the plan and its validation), `http` (one raw HTTP/1.1 connection), `record` (per-worker
//! recording and window merging), `engine` (workers and both models), `result` (the result and its helpers),
//! `threshold` (parse and evaluate), `fdlimit` (descriptor budget), `child` (the worker process).

pub mod child;
pub mod engine;
pub mod error;
pub mod fdlimit;
mod http;
mod merge;
pub mod plan;
mod record;
pub mod result;
pub mod threshold;
pub mod tls;

pub use child::{run_in_child, run_in_child_streaming, worker_main};
pub use engine::{run_plan, run_plan_streaming};
pub use error::{LoadError, ThresholdError};
pub use plan::{Executor, Plan, RequestSpec, Stage};
pub use result::{ErrorCounts, LoadResult, Percentiles, RequestRates, RequestStats, ThresholdResult, Window};
pub use threshold::Threshold;
