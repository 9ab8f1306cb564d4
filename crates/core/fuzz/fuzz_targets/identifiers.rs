//! Identifier and secret constructors: never panic; accepted values round-trip.
#![no_main]
use imprint_core::{ApparatusId, ChipId, KeyId, PassPhrase, PreWriteKey, ProductCode, ProductSerial};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = ApparatusId::from_bytes(data) {
        assert_eq!(id.as_bytes(), data);
    }
    let _ = ProductCode::from_bytes(data);
    let _ = ProductSerial::from_bytes(data);
    let _ = PassPhrase::from_bytes(data);
    let _ = PreWriteKey::from_bytes(data);
    if let Ok(c) = ChipId::from_bytes(data) {
        assert_eq!(c.as_bytes(), data);
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = ChipId::from_hex(text);
        let _ = text.parse::<KeyId>();
    }
});
