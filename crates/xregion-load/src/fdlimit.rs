//! The descriptor budget: a run holds one socket per connection, and crossing `RLIMIT_NOFILE` mid-run would turn
//! into a burst of connect errors that look like a server fault. So the budget is checked before the start.

use crate::error::LoadError;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept beyond the connections: each runtime's epoll and eventfd, stdio, the worker pipes, and the
/// resolver's sockets.
pub const FD_SPARE: u64 = 64;

/// Descriptors this process holds now (0 when `/proc` is not there).
fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Checks that `connections` more sockets fit under the soft limit, raising it up to the hard limit if needed.
pub fn check(connections: u64) -> Result<(), LoadError> {
    check_with(connections, open_now())
}

fn check_with(connections: u64, open_now: u64) -> Result<(), LoadError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(LoadError::Rlimit)?;
    let needed = connections + open_now + FD_SPARE;
    if needed <= soft {
        return Ok(());
    }
    if needed <= hard && setrlimit(Resource::RLIMIT_NOFILE, needed, hard).is_ok() {
        return Ok(());
    }
    Err(LoadError::FdLimit { needed, connections, open_now, spare: FD_SPARE, limit: soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a budget far above any limit is refused with the numbers and the advice in the message.
    #[test]
    fn refuses_over_the_limit() {
        let e = check_with(u64::MAX / 2, 10).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fewer VUs or connections") && msg.contains("RLIMIT_NOFILE"), "{msg}");
        assert!(check_with(1, 10).is_ok());
    }
}
