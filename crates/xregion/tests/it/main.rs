//! Integration tests of the xregion binary: one test binary, a module per area.

mod architecture;
mod chaos;
mod commands;
mod common;
mod compare;
mod deployment;
mod etcd;
mod faults;
mod galera;
mod journey;
mod lab;
mod live;
mod location;
mod postgres;
mod real_target;
mod run;
mod security;
mod shard;
mod traffic;
