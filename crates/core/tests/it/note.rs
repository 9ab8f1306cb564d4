//! Signed checkpoints: the published C2SP signed-note and checkpoint vectors, our own
//! checkpoints round-trip, and every kind of damage refused.

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use imprint_core::note::*;
use serde_json::Value;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::hex;

const NOTE: &str = include_str!("../vectors/note.json");

fn vectors() -> Value {
    serde_json::from_str(NOTE).unwrap()
}

#[wasm_bindgen_test(unsupported = test)]
fn published_notes_verify_and_keys_print_as_published() {
    let v = vectors();
    for n in v["notes"].as_array().unwrap() {
        let text = n["key"].as_str().unwrap();
        let key = VerifierKey::parse(text).unwrap();
        assert_eq!(key.to_string(), text, "a key prints as it was read");
        let note = Note::parse(n["note"].as_str().unwrap()).unwrap();
        note.verify(&key).unwrap();
        if let Some(public) = n["public_hex"].as_str() {
            assert_eq!(key.public.to_vec(), hex(public));
        }
        // Our signature line from the published seed is the published one, byte for byte.
        if let Some(seed) = n["seed_b64"].as_str() {
            let bytes = Base64::decode_vec(seed).unwrap();
            let signer = SigningKey::from_bytes(&bytes[1..].try_into().unwrap());
            assert_eq!(signer.verifying_key().to_bytes(), key.public);
            let sig = signer.sign(note.body.as_bytes()).to_bytes();
            let line = NoteSignature {
                name: key.name.clone(),
                id: key.id(),
                signature: sig.to_vec(),
            }
            .line();
            assert!(n["note"].as_str().unwrap().ends_with(&line));
        }
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn published_checkpoints_open() {
    let v = vectors();
    for c in v["checkpoints"].as_array().unwrap() {
        let key = VerifierKey::parse(c["key"].as_str().unwrap()).unwrap();
        let origin = c["origin"].as_str().unwrap();
        let cp = open_checkpoint(c["note"].as_str().unwrap(), &key, origin).unwrap();
        assert_eq!(cp.size, c["size"].as_u64().unwrap());
        assert_eq!(
            cp.root.to_vec(),
            Base64::decode_vec(c["root_b64"].as_str().unwrap()).unwrap()
        );
        assert_eq!(
            open_checkpoint(c["note"].as_str().unwrap(), &key, "another log"),
            Err(NoteError::WrongOrigin)
        );
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn bad_keys_are_refused() {
    for k in vectors()["bad_keys"].as_array().unwrap() {
        assert!(
            VerifierKey::parse(k["key"].as_str().unwrap()).is_err(),
            "{}",
            k["why"]
        );
    }
}

/// A checkpoint as the server makes one, then every byte of it changed in turn: each change
/// is refused (or, in the signature's base64 padding, decodes to the same bytes).
#[wasm_bindgen_test(unsupported = test)]
fn our_checkpoints_round_trip_and_damage_is_refused() {
    let signer = SigningKey::from_bytes(&[7; 32]);
    let key = VerifierKey {
        name: "imprint/audit/test".into(),
        public: signer.verifying_key().to_bytes(),
    };
    let cp = Checkpoint {
        origin: key.name.clone(),
        size: 1234,
        root: [0xab; 32],
    };
    let sig = signer.sign(cp.body().as_bytes()).to_bytes();
    let text = signed(&cp, &key, &sig);
    assert_eq!(open_checkpoint(&text, &key, &key.name), Ok(cp.clone()));
    assert_eq!(Checkpoint::parse(&cp.body()), Ok(cp.clone()));

    let body_len = cp.body().len();
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let mut damaged = bytes.to_vec();
        damaged[i] ^= 0x01;
        let Ok(damaged) = String::from_utf8(damaged) else {
            continue;
        };
        match open_checkpoint(&damaged, &key, &key.name) {
            Err(_) => {}
            Ok(got) => {
                assert!(i >= body_len, "a changed body byte {i} was accepted");
                assert_eq!(got, cp);
            }
        }
    }
    // Another key, a wrong size text, extra lines.
    let other = VerifierKey {
        name: key.name.clone(),
        public: SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes(),
    };
    assert_eq!(
        open_checkpoint(&text, &other, &key.name),
        Err(NoteError::NotSigned)
    );
    for body in [
        "log\n01\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "log\n-1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "log\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6=\n",
        "log\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n",
        "\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "log\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
    ] {
        assert!(Checkpoint::parse(body).is_err(), "{body:?}");
    }
    assert!(Note::parse("no blank line\n").is_err());
    assert!(Note::parse("text\n\nnot a signature\n").is_err());
}

#[wasm_bindgen_test(unsupported = test)]
fn cosignatures_verify_and_are_made_alike() {
    for c in vectors()["cosignatures"].as_array().unwrap() {
        let text = c["key"].as_str().unwrap();
        let key = CosignerKey::parse(text).unwrap();
        assert_eq!(key.to_string(), text);
        // A cosignature key is not a note key, and the other way round.
        assert!(VerifierKey::parse(text).is_err());
        let note_text = c["note"].as_str().unwrap();
        let note = Note::parse(note_text).unwrap();
        let ts = c["timestamp"].as_u64().unwrap();
        assert_eq!(key.verify(&note), Ok(ts));
        let seed = Base64::decode_vec(c["seed_b64"].as_str().unwrap()).unwrap();
        let signer = SigningKey::from_bytes(&seed[1..].try_into().unwrap());
        let sig = signer
            .sign(cosigned_message(note.body, ts).as_bytes())
            .to_bytes();
        assert!(note_text.ends_with(&key.line(ts, &sig)));
        // Another time, or another body, does not verify.
        let moved = note_text.replacen("20852163", "20852164", 1);
        assert_eq!(
            key.verify(&Note::parse(&moved).unwrap()),
            Err(NoteError::BadSignature)
        );
    }
}
