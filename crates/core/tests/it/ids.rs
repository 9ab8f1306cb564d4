//! Identifiers and secrets: sizes, character sets, messages, redaction.

use imprint_core::*;
use subtle::ConstantTimeEq;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test(unsupported = test)]
fn identifiers_have_documented_limits() {
    assert!(ProductCode::new(&"P".repeat(16)).is_ok());
    assert!(ProductCode::new(&"P".repeat(17)).is_err());
    assert!(ProductSerial::new(&"S".repeat(32)).is_ok());
    assert!(ProductSerial::new(&"S".repeat(33)).is_err());
    assert!(FactoryId::new("acme-shenzhen_2.b").is_ok());
    assert!(ApparatusId::new("").is_err());
    assert!(ApparatusId::new("é").is_err());
    assert!(KeyId::new(0).is_err());
    assert_eq!("4294967295".parse::<KeyId>().unwrap().get(), u32::MAX);
    assert!("4294967296".parse::<KeyId>().is_err());
    assert!("-1".parse::<KeyId>().is_err());
    assert!(ChipId::from_bytes(&[0; 17]).is_err());
    assert!(PreWriteKey::from_bytes(&[0; 31]).is_err());
    assert!(PreWriteKey::from_bytes(&[0; 33]).is_err());
}

#[wasm_bindgen_test(unsupported = test)]
fn errors_say_what_and_why() {
    let e = ApparatusId::new("IMP 42").unwrap_err();
    assert_eq!(
        e.to_string(),
        "apparatus ID has a character that is not allowed at position 3; allowed: A-Z a-z 0-9 . _ -"
    );
    assert_eq!(
        ProductCode::new("").unwrap_err().to_string(),
        "product code is empty; it needs at least 1 character(s)"
    );
    assert_eq!(
        PreWriteKey::from_bytes(&[1; 16]).unwrap_err().to_string(),
        "pre-write key is too short: 16 bytes, at least 32 needed"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn secrets_never_print() {
    let pass = PassPhrase::new("SECRET-secret-SECRET").unwrap();
    let key = PreWriteKey::from_array([0x42; 32]);
    let cv = conversion_value(&ApparatusId::new("A").unwrap(), &pass);
    let text = format!("{pass:?} {key:?} {cv:?}");
    assert!(!text.contains("SECRET"));
    assert!(!text.contains("42, 42"));
    assert!(text.contains("<redacted>"));
    // A bad pass phrase's error does not echo it either.
    let e = PassPhrase::new("SECRET with spaces!").unwrap_err();
    assert!(!format!("{e} {e:?}").contains("SECRET"));
}

#[wasm_bindgen_test(unsupported = test)]
fn generated_pass_phrases_are_valid_and_distinct() {
    let mut rng = crate::rng(1);
    let a = PassPhrase::generate(&mut rng);
    let b = PassPhrase::generate(&mut rng);
    assert_eq!(a.expose_secret().len(), PassPhrase::GENERATED_LEN);
    assert!(PassPhrase::from_bytes(a.expose_secret()).is_ok());
    assert!(!bool::from(a.ct_eq(&b)));
    assert!(bool::from(a.ct_eq(&a.clone())));
    let k1 = PreWriteKey::generate(&mut rng);
    let k2 = PreWriteKey::generate(&mut rng);
    assert!(!bool::from(k1.ct_eq(&k2)));
}
