//! The page's browser-only pieces that have a native twin, checked against the same vectors:
//! JSON through the browser's own parser, Ed25519 through WebCrypto.

use imprint_api::{Bytes, LeaseAnswer, Record};
use imprint_core::{
    ApparatusId, Binding, FactoryId, KeyId, Lease, LeaseRecord, PassPhrase, ProductCode,
    SealedRecord,
};
use imprint_device::sim::demo_key;
use imprint_portal::state::journal::{Journal, Step};
use imprint_portal::state::lease::accept;
use imprint_portal::web::crypto::accept_lease;
use wasm_bindgen_test::wasm_bindgen_test;

/// The stored journal text from the vector file (read with the browser's JSON.parse).
fn journal_text() -> String {
    let file = js_sys::JSON::parse(include_str!("../vectors/journal.json")).unwrap();
    js_sys::Reflect::get(&file, &"text".into())
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
fn the_browser_reads_and_writes_the_journal_as_the_native_code_does() {
    let text = journal_text();
    let j = Journal::from_json(&text).unwrap();
    assert_eq!(j.entries.len(), 8);
    assert_eq!(j.factory, Some(FactoryId::new("acme-sz").unwrap()));
    assert_eq!(j.entries[0].record.not_after_ms, Some(1_767_225_600_000));
    assert_eq!(j.entries[0].step, Step::Pool);
    assert_eq!(j.entries[1].step.unit(), Some("u-1"));
    assert!(matches!(
        j.entries[4].step,
        Step::Refused {
            code: imprint_api::ErrorCode::BadReceipt,
            ..
        }
    ));
    assert!(matches!(j.entries[5].step, Step::Verified { .. }));
    assert!(matches!(
        j.entries[6].step,
        Step::Locked {
            recorded: false,
            ..
        }
    ));
    assert!(matches!(
        j.entries[7].step,
        Step::Locked { recorded: true, .. }
    ));
    assert_eq!(
        j.to_json().unwrap(),
        text,
        "byte for byte, as serde_json writes it"
    );
    let err = Journal::from_json("{\"entries\": [tru").unwrap_err();
    assert!(err.contains("damaged"), "{err}");
    let err = Journal::from_json("{\"entries\": [{\"step\": \"pool\"}]}").unwrap_err();
    assert!(err.contains("damaged"), "{err}");
}

/// A lease of two records signed with `key`, as the server sends it.
fn signed_lease(key: &ed25519_dalek::SigningKey, now: u64) -> LeaseAnswer {
    let k = KeyId::new(1).unwrap();
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let records: Vec<LeaseRecord> = ["LEASE-1", "LEASE-2"]
        .iter()
        .map(|id| {
            let apparatus_id = ApparatusId::new(id).unwrap();
            let pass = PassPhrase::generate(&mut rng);
            let record = SealedRecord::seal(
                &mut rng,
                &demo_key(k),
                k,
                &Binding::Model,
                &apparatus_id,
                &pass,
            );
            LeaseRecord {
                apparatus_id,
                record,
            }
        })
        .collect();
    let lease = Lease {
        lease_id: [9; 16],
        factory: FactoryId::new("F-1").unwrap(),
        product: ProductCode::new("CAM-X100").unwrap(),
        issued_at_ms: now,
        not_after_ms: now + 3_600_000,
        records,
    };
    LeaseAnswer {
        lease_id: Bytes(lease.lease_id),
        factory: lease.factory,
        product_code: lease.product,
        issued_at_ms: lease.issued_at_ms,
        not_after_ms: lease.not_after_ms,
        records: lease
            .records
            .iter()
            .map(|r| Record {
                apparatus_id: r.apparatus_id,
                key_id: k,
                sealed: r.record.clone(),
                product_code: lease.product,
            })
            .collect(),
        public_key: Bytes(key.verifying_key().to_bytes()),
        signature: Bytes(lease.sign(key)),
    }
}

#[wasm_bindgen_test]
async fn webcrypto_checks_leases_as_imprint_core_does() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let pinned = key.verifying_key().to_bytes();
    let now = 1_767_225_600_000;
    let lease = signed_lease(&key, now);
    let records = accept_lease(&lease, &pinned, now).await.unwrap();
    assert_eq!(records, accept(&lease, &pinned, now).unwrap());
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.not_after_ms == Some(lease.not_after_ms))
    );

    // Altered, expired, signed by another key, or a key that is no key: refused, with the
    // same words as the native check.
    let mut longer = lease.clone();
    longer.not_after_ms += 3_600_000;
    let e = accept_lease(&longer, &pinned, now).await.unwrap_err();
    assert!(e.contains("altered"), "{e}");
    assert_eq!(e, accept(&longer, &pinned, now).unwrap_err());
    let e = accept_lease(&lease, &pinned, lease.not_after_ms + 1)
        .await
        .unwrap_err();
    assert!(e.contains("expired"), "{e}");
    let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32])
        .verifying_key()
        .to_bytes();
    let e = accept_lease(&lease, &other, now).await.unwrap_err();
    assert!(e.contains("altered"), "{e}");
    // Not a point on the curve: the browser refuses the key itself.
    assert!(accept_lease(&lease, &[0xff; 32], now).await.is_err());
}
