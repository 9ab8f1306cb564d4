//! The sealed record: round trip, binding, nonce freshness.

use imprint_core::seal::{MAX_SEALED_LEN, MIN_SEALED_LEN};
use imprint_core::*;
use wasm_bindgen_test::wasm_bindgen_test;

fn fixture() -> (PreWriteKey, KeyId, ApparatusId, PassPhrase) {
    (
        PreWriteKey::from_array([9; 32]),
        KeyId::new(3).unwrap(),
        ApparatusId::new("IMP-1").unwrap(),
        PassPhrase::new("abcdefghijklmnopqrstuvwxyz012345").unwrap(),
    )
}

#[wasm_bindgen_test(unsupported = test)]
fn seal_open_round_trip_with_fresh_nonces() {
    let (key, kid, id, pass) = fixture();
    let mut rng = crate::rng(2);
    let a = SealedRecord::seal(&mut rng, &key, kid, &Binding::Model, &id, &pass);
    let b = SealedRecord::seal(&mut rng, &key, kid, &Binding::Model, &id, &pass);
    assert_ne!(
        a.as_bytes(),
        b.as_bytes(),
        "same input must seal differently"
    );
    assert_ne!(
        a.as_bytes()[6..18],
        b.as_bytes()[6..18],
        "nonces must differ"
    );
    for r in [&a, &b] {
        let o = r.open(&key, &id, None).unwrap();
        assert_eq!(o.pass_phrase.expose_secret(), pass.expose_secret());
        assert_eq!(o.apparatus_id, id);
    }
    assert_ne!(
        a.open(&key, &id, None).unwrap().issue_nonce,
        b.open(&key, &id, None).unwrap().issue_nonce
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn sealed_blob_holds_no_plaintext() {
    let (key, kid, id, pass) = fixture();
    let r = SealedRecord::seal(&mut crate::rng(3), &key, kid, &Binding::Model, &id, &pass);
    let blob = r.as_bytes();
    assert!(
        !blob
            .windows(8)
            .any(|w| pass.expose_secret().windows(8).any(|p| p == w))
    );
    assert!(!format!("{r:?}").contains("abcdefgh"));
}

#[wasm_bindgen_test(unsupported = test)]
fn record_cannot_move_to_another_id_key_or_version() {
    let (key, kid, id, pass) = fixture();
    let r = SealedRecord::seal(&mut crate::rng(4), &key, kid, &Binding::Model, &id, &pass);
    let other_id = ApparatusId::new("IMP-2").unwrap();
    assert_eq!(r.open(&key, &other_id, None).unwrap_err(), OpenError);
    assert!(
        r.open(&PreWriteKey::from_array([8; 32]), &id, None)
            .is_err()
    );
    let mut moved = r.as_bytes().to_vec();
    moved[5] = 4; // key identifier 3 -> 4
    let moved = SealedRecord::parse(&moved).unwrap();
    assert_eq!(moved.key_id().get(), 4);
    assert!(moved.open(&key, &id, None).is_err());
    let mut v2 = r.as_bytes().to_vec();
    v2[0] = 2;
    assert!(SealedRecord::parse(&v2).is_err());
}

#[wasm_bindgen_test(unsupported = test)]
fn chip_bound_records_open_only_on_their_chip() {
    let (key, kid, id, pass) = fixture();
    let chip = ChipId::from_hex("0102030405060708090a0b0c").unwrap();
    let other = ChipId::from_hex("0102030405060708090a0b0d").unwrap();
    let r = SealedRecord::seal(
        &mut crate::rng(5),
        &key,
        kid,
        &Binding::Chip(chip),
        &id,
        &pass,
    );
    assert!(r.is_chip_bound());
    assert!(r.open(&key, &id, Some(&chip)).is_ok());
    assert!(r.open(&key, &id, Some(&other)).is_err());
    assert!(r.open(&key, &id, None).is_err());
    // The derived key differs from the model key and per chip.
    let k1 = seal::chip_bound_key(&key, &chip);
    let k2 = seal::chip_bound_key(&key, &other);
    assert_ne!(k1.expose_secret(), k2.expose_secret());
    assert_ne!(k1.expose_secret(), key.expose_secret());
}

#[wasm_bindgen_test(unsupported = test)]
fn sizes_match_the_spec() {
    let key = PreWriteKey::from_array([1; 32]);
    let kid = KeyId::new(1).unwrap();
    let small = SealedRecord::seal(
        &mut crate::rng(6),
        &key,
        kid,
        &Binding::Model,
        &ApparatusId::new("A").unwrap(),
        &PassPhrase::new(&"p".repeat(16)).unwrap(),
    );
    let big = SealedRecord::seal(
        &mut crate::rng(6),
        &key,
        kid,
        &Binding::Model,
        &ApparatusId::new(&"A".repeat(32)).unwrap(),
        &PassPhrase::new(&"p".repeat(64)).unwrap(),
    );
    assert_eq!(small.as_bytes().len(), MIN_SEALED_LEN);
    assert_eq!(big.as_bytes().len(), MAX_SEALED_LEN);
    assert_eq!(MAX_SEALED_LEN, 148);
}
