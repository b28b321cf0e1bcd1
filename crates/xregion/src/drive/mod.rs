//! Traffic drivers, once each: the pacing loop (`pace`), the writer loops (`write`), routed clients (`routed`),
//! the waits for health (`health`) and convergence (`converge`), the run's seeded randomness (`seed`) and wall
//! time (`clock`), and the measuring side's watch on itself (`watch`). Checks and commands compose these; none of
//! them has a loop of its own for these jobs.

pub mod clock;
pub mod converge;
pub mod direct;
pub mod health;
pub mod pace;
pub mod routed;
pub mod seed;
pub mod watch;
pub mod write;

/// Locks a mutex whose holder may have panicked: the data is still what the drivers recorded.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
