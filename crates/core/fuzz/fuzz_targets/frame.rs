//! `decode_frame`: never panics; a decoded frame re-encodes to the bytes it used.
#![no_main]
use imprint_core::{decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((frame, used)) = decode_frame(data) {
        let again = encode_frame(frame.kind, frame.seq, frame.payload).expect("decoded payload fits");
        assert_eq!(again.as_slice(), &data[..used]);
    }
});
