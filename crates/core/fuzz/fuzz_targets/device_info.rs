//! `DeviceInfo::decode`: never panics; what decodes re-encodes the same.
#![no_main]
use imprint_core::DeviceInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = DeviceInfo::decode(data) {
        assert_eq!(info.encode(), data);
    }
});
