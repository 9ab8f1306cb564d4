//! imprint-device's tests: the write module, its storage under power cuts, the simulated
//! device's faults, and the USB descriptors. Run natively; `web.rs` runs in headless Chromium.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod module;
mod power;
mod sim;
mod usb;
#[cfg(target_arch = "wasm32")]
mod web;

use imprint_core::*;
use imprint_device::sim::demo_key;

pub fn rng(seed: u8) -> rand_chacha::ChaCha20Rng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::from_seed([seed; 32])
}

/// A record for the demo model (key 1), as the server would issue it.
pub struct Issued {
    pub id: ApparatusId,
    pub pass: PassPhrase,
    pub record: SealedRecord,
}

pub fn issue(id: &str, seed: u8) -> Issued {
    let mut rng = rng(seed);
    let id = ApparatusId::new(id).unwrap();
    let pass = PassPhrase::generate(&mut rng);
    let key_id = KeyId::new(1).unwrap();
    let record = SealedRecord::seal(
        &mut rng,
        &demo_key(key_id),
        key_id,
        &Binding::Model,
        &id,
        &pass,
    );
    Issued { id, pass, record }
}

pub fn install_req(i: &Issued) -> Request {
    Request::Install {
        apparatus_id: i.id,
        record: i.record.clone(),
    }
}

/// What the server checks: the receipt against the record it issued.
pub fn receipt_is_valid(i: &Issued, serial: &ProductSerial, receipt: &Receipt) -> bool {
    let opened = i
        .record
        .open(&demo_key(i.record.key_id()), &i.id, None)
        .unwrap();
    receipt
        .verify(
            &conversion_value(&i.id, &i.pass),
            &ReceiptInput {
                apparatus_id: &i.id,
                product_serial: serial,
                issue_nonce: &opened.issue_nonce,
                record_digest: &i.record.digest(),
            },
        )
        .is_ok()
}
