//! The suites' checks, one module per area. Each module exports `CHECKS`: its catalogue entries, each naming
//! what it needs and the one function that runs it.

pub mod compliance;
pub mod cross_region;
pub mod e2e;
pub mod failover;
pub mod latency;
pub mod performance;
pub mod routing;
pub mod security;
