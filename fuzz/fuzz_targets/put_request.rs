//! A client's write: the key (up to the first NUL byte) and the JSON body after it. Key validation and body
//! parsing never panic, and an accepted body round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xregion_model::wire::{PutRequest, key_problem};

fuzz_target!(|data: &[u8]| {
    let (key, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(key) = std::str::from_utf8(key) {
        let _ = key_problem(key);
    }
    if let Ok(req) = serde_json::from_slice::<PutRequest>(body) {
        let text = serde_json::to_vec(&req).expect("serialises");
        assert_eq!(serde_json::from_slice::<PutRequest>(&text).expect("round-trips"), req);
    }
});
