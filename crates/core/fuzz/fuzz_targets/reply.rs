//! `Reply::decode` and `Reply::from_parts`: never panic; what decodes re-encodes the same.
#![no_main]
use imprint_core::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((seq, reply)) = Reply::decode(data) {
        assert_eq!(reply.encode(seq), data);
    }
    if let Some((kind, payload)) = data.split_first() {
        if let Ok(reply) = Reply::from_parts(*kind, payload) {
            assert_eq!(reply.payload(), payload);
        }
    }
});
