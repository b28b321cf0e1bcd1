//! The fuzz targets' properties (`fuzz/`), run on every build over seeded random and mutated inputs, because
//! cargo-fuzz needs a nightly toolchain: parsing untrusted bytes (a peer's replication frame, a client's write)
//! never panics, validation judges a whole batch, and whatever decodes re-encodes to the same value.

use rand::{Rng, SeedableRng};
use xregion_lab::proto::{self, Entry, Frame};
use xregion_model::Version;
use xregion_model::wire::{PutRequest, key_problem};

/// Inputs per property: enough to mutate every byte of the seeds many times, bounded in time (well under 1 s).
const CASES: usize = 20_000;

fn seeds() -> Vec<Vec<u8>> {
    let entry = |seq: u64, key: &str| Entry {
        seq,
        key: key.to_string(),
        value: Some(format!("v{seq}")),
        version: Version { wall_ms: 1_767_225_600_000 + seq, logical: 0, origin: "us-east-1".into() },
        residency: None,
        erase: false,
    };
    [
        Frame::Hello { from: "us-east-1".into() },
        Frame::Batch { after: 0, entries: vec![entry(1, "a"), entry(2, "b/c")], through: 2 },
        Frame::Ack { seq: 7 },
        Frame::Probe { from: "eu-west-1".into() },
        Frame::Ping { nonce: 3 },
    ]
    .iter()
    .map(|f| proto::encode(f).to_vec())
    .collect()
}

fn mutate(rng: &mut impl Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..4) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b.truncate(i);
            }
            2 => {
                let i = rng.random_range(0..=b.len());
                b.insert(i, rng.random());
            }
            _ => b.extend((0..rng.random_range(0..8)).map(|_| rng.random::<u8>())),
        }
    }
    b
}

/// Goal: a replication frame from a peer never panics the decoder or the batch validator, and every frame that
/// decodes re-encodes to bytes that decode to the same frame.
#[test]
fn replication_frames_never_panic_and_round_trip() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let seeds = seeds();
    let mut decoded = 0;
    for i in 0..CASES {
        let input = if i % 4 == 0 {
            (0..rng.random_range(0..64)).map(|_| rng.random::<u8>()).collect()
        } else {
            mutate(&mut rng, &seeds[i % seeds.len()])
        };
        let Ok(frame) = proto::decode(&input) else { continue };
        decoded += 1;
        if let Frame::Batch { after, entries, through } = &frame {
            let _ = proto::validate_batch_frame("us-east-1", *after, entries, *through);
        }
        let again = proto::decode(&proto::encode(&frame)).expect("an encoded frame decodes");
        assert_eq!(again, frame);
    }
    assert!(decoded > 0, "no mutated input decoded: the seeds are not valid frames");
}

/// Goal: a client's key and write body never panic validation or parsing, and an accepted body round-trips.
#[test]
fn write_bodies_never_panic_and_round_trip() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let seeds: Vec<Vec<u8>> = [r#"{"value":"x"}"#, r#"{"value":"\u00e9\n"}"#, r#"{"value":""}"#]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let mut accepted = 0;
    for i in 0..CASES {
        let body = mutate(&mut rng, &seeds[i % seeds.len()]);
        let key: String = (0..rng.random_range(0..300)).map(|_| rng.random_range(32u8..127) as char).collect();
        let _ = key_problem(&key);
        if let Ok(req) = serde_json::from_slice::<PutRequest>(&body) {
            accepted += 1;
            let text = serde_json::to_vec(&req).expect("serialises");
            assert_eq!(serde_json::from_slice::<PutRequest>(&text).expect("round-trips"), req);
        }
    }
    assert!(accepted > 0, "no mutated body parsed: the seeds are not valid bodies");
}
