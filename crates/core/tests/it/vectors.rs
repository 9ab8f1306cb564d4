//! The vector files: published ones check the primitives, our own check the formats.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use imprint_core::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::fixed_rng::FixedRng;
use crate::hex;

const EXTERNAL: &str = include_str!("../vectors/external.json");
const SEALED: &str = include_str!("../vectors/sealed_records.json");
const FRAMES: &str = include_str!("../vectors/frames.json");
const RECEIPTS: &str = include_str!("../vectors/receipts.json");

fn load(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("field {k} missing in {v}"))
}

fn list<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v[k].as_array().unwrap()
}

#[wasm_bindgen_test(unsupported = test)]
fn external_aes_256_gcm() {
    let v = load(EXTERNAL);
    for c in list(&v, "aes_256_gcm") {
        let key: [u8; 32] = hex(s(c, "key")).try_into().unwrap();
        let nonce: [u8; 12] = hex(s(c, "nonce")).try_into().unwrap();
        let cipher = Aes256Gcm::new(&key.into());
        let mut buf = hex(s(c, "plaintext"));
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &hex(s(c, "aad")),
                buf.as_mut_slice().into(),
            )
            .unwrap();
        assert_eq!(hex::encode(&buf), s(c, "ciphertext"), "{}", s(c, "source"));
        assert_eq!(hex::encode(tag), s(c, "tag"), "{}", s(c, "source"));
        // And back, with a flipped tag refused.
        let good = Tag::try_from(hex(s(c, "tag")).as_slice()).unwrap();
        let mut bad = good;
        bad[0] ^= 1;
        let mut ct = buf.clone();
        assert!(
            cipher
                .decrypt_inout_detached(
                    &Nonce::from(nonce),
                    &hex(s(c, "aad")),
                    ct.as_mut_slice().into(),
                    &bad
                )
                .is_err()
        );
        cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &hex(s(c, "aad")),
                buf.as_mut_slice().into(),
                &good,
            )
            .unwrap();
        assert_eq!(hex::encode(&buf), s(c, "plaintext"));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn external_hmac_hkdf_sha256_crc32() {
    let v = load(EXTERNAL);
    for c in list(&v, "hmac_sha256") {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&hex(s(c, "key"))).unwrap();
        m.update(s(c, "data_ascii").as_bytes());
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            s(c, "mac"),
            "{}",
            s(c, "source")
        );
    }
    for c in list(&v, "hkdf_sha256") {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(&hex(s(c, "salt"))), &hex(s(c, "ikm")));
        let mut okm = vec![0u8; c["length"].as_u64().unwrap() as usize];
        hk.expand(&hex(s(c, "info")), &mut okm).unwrap();
        assert_eq!(hex::encode(okm), s(c, "okm"), "{}", s(c, "source"));
    }
    for c in list(&v, "sha256") {
        assert_eq!(
            hex::encode(Sha256::digest(s(c, "data_ascii").as_bytes())),
            s(c, "digest")
        );
    }
    for c in list(&v, "crc32") {
        assert_eq!(
            format!("{:08x}", imprint_core::crc32(s(c, "data_ascii").as_bytes())),
            s(c, "crc")
        );
    }
}

fn chip(c: &Value) -> Option<ChipId> {
    c["chip_id"].as_str().map(|h| ChipId::from_hex(h).unwrap())
}

#[wasm_bindgen_test(unsupported = test)]
fn sealed_record_vectors_seal_and_open() {
    let v = load(SEALED);
    for c in list(&v, "valid") {
        let key = PreWriteKey::from_bytes(&hex(s(c, "pre_write_key"))).unwrap();
        let key_id = KeyId::new(c["key_id"].as_u64().unwrap() as u32).unwrap();
        let id = ApparatusId::new(s(c, "apparatus_id")).unwrap();
        let pass = PassPhrase::new(s(c, "pass_phrase")).unwrap();
        let binding = chip(c).map_or(Binding::Model, Binding::Chip);
        let mut rng = FixedRng::new(&[hex(s(c, "nonce")), hex(s(c, "issue_nonce"))].concat());
        let sealed = SealedRecord::seal(&mut rng, &key, key_id, &binding, &id, &pass);
        assert_eq!(
            hex::encode(sealed.as_bytes()),
            s(c, "sealed"),
            "{}",
            s(c, "name")
        );
        assert_eq!(hex::encode(sealed.digest()), s(c, "digest"));

        let parsed = SealedRecord::parse(&hex(s(c, "sealed"))).unwrap();
        assert_eq!(parsed.key_id(), key_id);
        let opened = parsed.open(&key, &id, chip(c).as_ref()).unwrap();
        assert_eq!(opened.apparatus_id, id);
        assert_eq!(opened.pass_phrase.expose_secret(), pass.expose_secret());
        assert_eq!(hex::encode(opened.issue_nonce), s(c, "issue_nonce"));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn legacy_v1_chip_records_open_and_chip_keys_derive() {
    let v = load(SEALED);
    let legacy = list(&v, "legacy");
    assert!(!legacy.is_empty());
    for c in legacy {
        let key = PreWriteKey::from_bytes(&hex(s(c, "pre_write_key"))).unwrap();
        let id = ApparatusId::new(s(c, "apparatus_id")).unwrap();
        let rec = SealedRecord::parse(&hex(s(c, "sealed"))).unwrap();
        assert_eq!(rec.format(), imprint_core::seal::FORMAT_V1);
        let opened = rec.open(&key, &id, chip(c).as_ref()).unwrap();
        assert_eq!(
            opened.pass_phrase.expose_secret(),
            s(c, "pass_phrase").as_bytes()
        );
        assert_eq!(hex::encode(opened.issue_nonce), s(c, "issue_nonce"));
    }
    let keys = list(&v, "chip_keys");
    assert!(keys.len() >= 3);
    for c in keys {
        let key = PreWriteKey::from_bytes(&hex(s(c, "pre_write_key"))).unwrap();
        let chip = chip(c).unwrap();
        assert_eq!(
            hex::encode(imprint_core::seal::chip_v2_data(&chip)),
            s(c, "v2_data")
        );
        let v1 = imprint_core::seal::chip_bound_key(&key, &chip);
        let v2 = imprint_core::seal::chip_bound_key_v2(&key, &chip);
        assert_eq!(hex::encode(v1.expose_secret()), s(c, "v1_key"));
        assert_eq!(hex::encode(v2.expose_secret()), s(c, "v2_key"));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn sealed_record_vectors_tamper_and_malformed() {
    let v = load(SEALED);
    for c in list(&v, "tamper") {
        let key = PreWriteKey::from_bytes(&hex(s(c, "pre_write_key"))).unwrap();
        let id = ApparatusId::new(s(c, "apparatus_id")).unwrap();
        let rec = SealedRecord::parse(&hex(s(c, "sealed"))).unwrap();
        assert_eq!(
            rec.open(&key, &id, chip(c).as_ref()).unwrap_err(),
            OpenError,
            "{}",
            s(c, "name")
        );
    }
    let malformed = list(&v, "malformed");
    assert!(malformed.len() >= 5);
    for c in malformed {
        assert!(
            SealedRecord::parse(&hex(s(c, "sealed"))).is_err(),
            "{}",
            s(c, "name")
        );
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn frame_vectors() {
    let v = load(FRAMES);
    for c in list(&v, "good") {
        let bytes = hex(s(c, "frame"));
        let (frame, used) = decode_frame(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            u64::from(frame.kind),
            c["kind"].as_u64().unwrap(),
            "{}",
            s(c, "name")
        );
        assert_eq!(u64::from(frame.seq), c["seq"].as_u64().unwrap());
        assert_eq!(hex::encode(frame.payload), s(c, "payload"));
        let again = if s(c, "direction") == "request" {
            let (seq, r) = Request::decode(&bytes).unwrap();
            r.encode(seq)
        } else {
            let (seq, r) = Reply::decode(&bytes).unwrap();
            r.encode(seq)
        };
        assert_eq!(again, bytes, "{}", s(c, "name"));
    }
    for c in list(&v, "bad") {
        let bytes = hex(s(c, "frame"));
        let err = Request::decode(&bytes).unwrap_err();
        let class = match err {
            ProtocolError::Frame(FrameError::Incomplete { .. }) => "incomplete",
            ProtocolError::Frame(FrameError::BadChecksum) => "bad checksum",
            ProtocolError::Frame(FrameError::BadMagic) => "bad magic",
            ProtocolError::Frame(FrameError::UnsupportedVersion(_)) => "unsupported version",
            ProtocolError::Frame(FrameError::TooLong(_)) => "too long",
            ProtocolError::UnknownMessage(_) => "unknown message",
            ProtocolError::Payload(_) => "payload",
            ProtocolError::TrailingBytes(_) => "trailing bytes",
            _ => "other",
        };
        assert_eq!(class, s(c, "error"), "{}", s(c, "name"));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn receipt_vectors() {
    let v = load(RECEIPTS);
    for c in list(&v, "cases") {
        let id = ApparatusId::new(s(c, "apparatus_id")).unwrap();
        let pass = PassPhrase::new(s(c, "pass_phrase")).unwrap();
        let serial = ProductSerial::new(s(c, "product_serial")).unwrap();
        let cv = conversion_value(&id, &pass);
        assert_eq!(hex::encode(cv.expose_secret()), s(c, "conversion_value"));
        let nonce: [u8; 16] = hex(s(c, "issue_nonce")).try_into().unwrap();
        let digest: [u8; 32] = hex(s(c, "record_digest")).try_into().unwrap();
        let input = ReceiptInput {
            apparatus_id: &id,
            product_serial: &serial,
            issue_nonce: &nonce,
            record_digest: &digest,
        };
        let receipt = Receipt(hex(s(c, "receipt")).try_into().unwrap());
        assert_eq!(Receipt::compute(&cv, &input), receipt);
        receipt.verify(&cv, &input).unwrap();
        let challenge = Challenge(hex(s(c, "challenge")).try_into().unwrap());
        let resp = AuthResponse(hex(s(c, "auth_response")).try_into().unwrap());
        assert_eq!(AuthResponse::compute(&cv, &id, &challenge), resp);
        resp.verify(&cv, &id, &challenge).unwrap();
    }
}
