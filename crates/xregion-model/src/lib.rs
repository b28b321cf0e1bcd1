//! Data types shared by every part of xregion.
//!
//! This crate is the one place that knows the shape of the data that crosses a boundary: the probe contract's
//! wire format (`wire`), the version stamped on every stored value (`version`), the operation history the runner
//! records (`history`) and the report every renderer reads (`report`). It has no I/O, no clocks and no async, so
//! that the pure checkers and renderers can depend on it without pulling in a runtime.

pub mod fault;
pub mod history;
pub mod report;
pub mod version;
pub mod wire;

pub use version::Version;
