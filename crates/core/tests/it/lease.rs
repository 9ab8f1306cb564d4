//! Offline leases: signed, time-limited, tamper-evident.

use ed25519_dalek::SigningKey;
use imprint_core::*;
use wasm_bindgen_test::wasm_bindgen_test;

fn lease() -> (Lease, SigningKey) {
    let mut rng = crate::rng(30);
    let key = PreWriteKey::from_array([5; 32]);
    let kid = KeyId::new(1).unwrap();
    let records = (0..3)
        .map(|i| {
            let id = ApparatusId::new(&format!("L-{i}")).unwrap();
            let pass = PassPhrase::generate(&mut rng);
            LeaseRecord {
                apparatus_id: id,
                record: SealedRecord::seal(&mut rng, &key, kid, &Binding::Model, &id, &pass),
            }
        })
        .collect();
    let l = Lease {
        lease_id: [9; 16],
        factory: FactoryId::new("fa").unwrap(),
        product: ProductCode::new("CAM-X100").unwrap(),
        issued_at_ms: 1_000,
        not_after_ms: 5_000,
        records,
    };
    (l, SigningKey::from_bytes(&[7; 32]))
}

#[wasm_bindgen_test(unsupported = test)]
fn a_signed_lease_verifies_until_its_deadline() {
    let (l, sk) = lease();
    let sig = l.sign(&sk);
    let pk = sk.verifying_key().to_bytes();
    assert_eq!(l.verify(&pk, &sig, 4_999), Ok(()));
    assert_eq!(l.verify(&pk, &sig, 5_000), Ok(()));
    assert_eq!(
        l.verify(&pk, &sig, 5_001),
        Err(LeaseError::Expired {
            not_after_ms: 5_000
        })
    );
    assert!(
        LeaseError::Expired { not_after_ms: 0 }
            .to_string()
            .contains("reconnect")
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn any_change_to_a_lease_breaks_its_signature() {
    let (l, sk) = lease();
    let sig = l.sign(&sk);
    let pk = sk.verifying_key().to_bytes();
    let mut longer = l.clone();
    longer.not_after_ms += 1;
    let mut fewer = l.clone();
    fewer.records.pop();
    let mut swapped = l.clone();
    swapped.records.swap(0, 1);
    let mut moved = l.clone();
    moved.factory = FactoryId::new("fb").unwrap();
    for (what, bad) in [
        ("deadline", longer),
        ("count", fewer),
        ("order", swapped),
        ("factory", moved),
    ] {
        assert_eq!(
            bad.verify(&pk, &sig, 0),
            Err(LeaseError::BadSignature),
            "{what}"
        );
    }
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
    assert_eq!(l.verify(&other, &sig, 0), Err(LeaseError::BadSignature));
}
