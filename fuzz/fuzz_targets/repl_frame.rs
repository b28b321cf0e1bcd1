//! A replication frame from a peer: decoding never panics, a decoded batch is validated as a whole, and whatever
//! decodes re-encodes to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xregion_lab::proto::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = proto::decode(data) else { return };
    if let Frame::Batch { after, entries, through } = &frame {
        let _ = proto::validate_batch_frame("us-east-1", *after, entries, *through);
    }
    let again = proto::decode(&proto::encode(&frame)).expect("an encoded frame decodes");
    assert_eq!(again, frame);
});
