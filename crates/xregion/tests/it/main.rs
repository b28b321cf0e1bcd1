//! Integration tests of the xregion binary: one test binary, a module per area.

mod common;
mod lab;
mod run;
mod traffic;
