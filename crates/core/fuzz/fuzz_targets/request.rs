//! `Request::decode` and `Request::from_parts`: never panic; what decodes re-encodes the same.
#![no_main]
use imprint_core::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((seq, req)) = Request::decode(data) {
        assert_eq!(req.encode(seq), data);
    }
    if let Some((kind, payload)) = data.split_first() {
        if let Ok(req) = Request::from_parts(*kind, payload) {
            assert_eq!(req.payload(), payload);
        }
    }
});
