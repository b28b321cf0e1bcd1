//! The run's seeded randomness: every workload choice (keys, values, deletes, fault schedules) draws from one
//! family of ChaCha8 generators derived from the run seed and a stream name, so that the same `--seed` makes the
//! same choices in the same order, and two streams never share a sequence. ChaCha8's output for a seed is fixed
//! across `rand` releases, unlike `StdRng`'s. Cryptographic randomness (nonces, keys) never comes from here.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator of `stream` (for example `concurrent-writes/us-east-1/0`) under the run seed `seed`.
pub fn rng(seed: u64, stream: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, stream))
}

/// FNV-1a of the stream name, folded into the seed with SplitMix64's finalizer: stable across builds and
/// platforms, unlike `std`'s hashers.
fn mix(seed: u64, stream: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// `mix(1, "concurrent-writes/us-east-1/0")` as first computed.
    const PINNED_MIX: u64 = 16_637_222_187_507_995_473;

    /// Goal: one seed and stream always give one sequence; another stream or seed gives another.
    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, stream| rng(seed, stream).random::<u64>();
        assert_eq!(draw(7, "a/0"), draw(7, "a/0"));
        assert_ne!(draw(7, "a/0"), draw(7, "a/1"));
        assert_ne!(draw(7, "a/0"), draw(8, "a/0"));
        // Pinned: a change here changes what every recorded seed replays, which must be a deliberate decision.
        assert_eq!(mix(1, "concurrent-writes/us-east-1/0"), PINNED_MIX);
    }
}
