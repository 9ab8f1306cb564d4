//! `SealedRecord::parse` and `open`: never panic, and random bytes never open.
#![no_main]
use imprint_core::{ApparatusId, ChipId, PreWriteKey, SealedRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = SealedRecord::parse(data) {
        assert_eq!(rec.as_bytes(), data);
        let key = PreWriteKey::from_array([0x42; 32]);
        let id = ApparatusId::new("FUZZ").expect("valid");
        let chip = ChipId::from_bytes(&[1, 2, 3]).expect("valid");
        // A forged tag would need 2^128 tries; the fuzzer must never find one.
        assert!(rec.open(&key, &id, Some(&chip)).is_err());
    }
});
