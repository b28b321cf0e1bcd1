//! Integration tests of the load engine against a tiny in-test HTTP server on loopback.

mod engine;
mod server;
