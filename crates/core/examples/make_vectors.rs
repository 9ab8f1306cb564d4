//! Writes Imprint's own test vectors to `crates/core/tests/vectors/`:
//! `sealed_records.json`, `frames.json` and `receipts.json`.
//!
//! Run: `cargo run -p imprint-core --example make_vectors`. Every input is fixed (keys,
//! identifiers, and the bytes the "random" source returns are listed in the files), so the
//! output is the same on every run; the test suite checks the committed files against the
//! code, and `external.json` (published vectors) checks the primitives underneath.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

#[path = "../tests/it/fixed_rng.rs"]
mod fixed_rng;

use fixed_rng::FixedRng;
use imprint_core::frame::encode_frame;
use imprint_core::proto::kind;
use imprint_core::*;
use serde_json::{Value, json};

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn key(byte: u8) -> PreWriteKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = byte.wrapping_add(i as u8);
    }
    PreWriteKey::from_array(k)
}

struct SealCase {
    name: &'static str,
    key_byte: u8,
    key_id: u32,
    chip: Option<&'static str>,
    id: &'static str,
    pass: &'static str,
    nonce: [u8; 12],
    issue_nonce: [u8; 16],
}

fn seal_case(c: &SealCase) -> (Value, SealedRecord) {
    let k = key(c.key_byte);
    let binding = match c.chip {
        Some(hex) => Binding::Chip(ChipId::from_hex(hex).unwrap()),
        None => Binding::Model,
    };
    let mut rng_bytes = c.nonce.to_vec();
    rng_bytes.extend_from_slice(&c.issue_nonce);
    let sealed = SealedRecord::seal(
        &mut FixedRng::new(&rng_bytes),
        &k,
        KeyId::new(c.key_id).unwrap(),
        &binding,
        &ApparatusId::new(c.id).unwrap(),
        &PassPhrase::new(c.pass).unwrap(),
    );
    let v = json!({
        "name": c.name,
        "pre_write_key": h(k.expose_secret()),
        "key_id": c.key_id,
        "chip_id": c.chip,
        "apparatus_id": c.id,
        "pass_phrase": c.pass,
        "nonce": h(&c.nonce),
        "issue_nonce": h(&c.issue_nonce),
        "sealed": h(sealed.as_bytes()),
        "digest": h(&sealed.digest()),
    });
    (v, sealed)
}

fn tamper(name: &str, base: &Value, sealed: Vec<u8>, claimed_id: &str, reason: &str) -> Value {
    let mut t = base.clone();
    t["name"] = json!(name);
    t["sealed"] = json!(h(&sealed));
    t["apparatus_id"] = json!(claimed_id);
    t["reason"] = json!(reason);
    for f in ["pass_phrase", "issue_nonce", "nonce", "digest"] {
        t.as_object_mut().unwrap().remove(f);
    }
    t
}

/// The format v1 chip-bound vector as the v1 sealer made it (key byte 0x40, key 7, chip
/// 0011223344556677889900AA, IMP-0000000043, nonce 33.., issue nonce 44..).
const LEGACY_V1_CHIP: &str = "010100000007333333333333333333333333365937cec7d58f190f49f024266746e5f1ad32747fc48f1118ebc45f3bf21b92f28eeb6c17436453fcca717193c95e70b3c7d7dead15f68ed40f2187d52275edcb70a72b35bbd5924ffb05fe21dd4729";

fn sealed_records() -> Value {
    let cases = [
        SealCase {
            name: "model key, short ID, shortest pass phrase",
            key_byte: 0x00,
            key_id: 1,
            chip: None,
            id: "A",
            pass: "0123456789ABCDEF",
            nonce: [0x11; 12],
            issue_nonce: [0x22; 16],
        },
        SealCase {
            name: "model key, typical generated identity",
            key_byte: 0x40,
            key_id: 7,
            chip: None,
            id: "IMP-0000000042",
            pass: "7QK2M9XW4T1HZ8BC3RNV5YDPGJ6SAF0E",
            nonce: *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b",
            issue_nonce: *b"issue-nonce-0042",
        },
        SealCase {
            name: "model key, longest ID and pass phrase",
            key_byte: 0x80,
            key_id: 0xFFFF_FFFF,
            chip: None,
            id: "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            pass: "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`",
            nonce: [0xA5; 12],
            issue_nonce: [0x5A; 16],
        },
        SealCase {
            name: "chip-bound (format v2)",
            key_byte: 0x40,
            key_id: 7,
            chip: Some("0011223344556677889900AA"),
            id: "IMP-0000000043",
            pass: "Z0Y1X2W3V4T5S6R7Q8P9N0M1K2J3H4G5",
            nonce: [0x33; 12],
            issue_nonce: [0x44; 16],
        },
    ];
    let mut valid = Vec::new();
    let mut sealed_all = Vec::new();
    for c in &cases {
        let (v, s) = seal_case(c);
        valid.push(v);
        sealed_all.push(s);
    }
    let base = &valid[1];
    let b = sealed_all[1].as_bytes().to_vec();
    let flip = |i: usize| {
        let mut x = b.clone();
        x[i] ^= 0x01;
        x
    };
    let last = b.len() - 1;
    let mut other_key_id = b.clone();
    other_key_id[5] = 8;
    let mut tampered = vec![
        tamper(
            "ciphertext bit flipped",
            base,
            flip(20),
            "IMP-0000000042",
            "GCM tag check fails",
        ),
        tamper(
            "tag bit flipped",
            base,
            flip(last),
            "IMP-0000000042",
            "GCM tag check fails",
        ),
        tamper(
            "nonce bit flipped",
            base,
            flip(10),
            "IMP-0000000042",
            "GCM tag check fails",
        ),
        tamper(
            "key identifier in header changed (7 -> 8)",
            base,
            other_key_id,
            "IMP-0000000042",
            "header is associated data",
        ),
        tamper(
            "moved to another apparatus ID",
            base,
            b.clone(),
            "IMP-0000000099",
            "clear apparatus ID is associated data",
        ),
        tamper(
            "binding byte changed to chip-bound",
            base,
            {
                let mut x = b.clone();
                x[1] = 1;
                x
            },
            "IMP-0000000042",
            "binding is associated data and selects another key",
        ),
    ];
    let mut wrong_key = tamper(
        "opened with another pre-write key",
        base,
        b.clone(),
        "IMP-0000000042",
        "wrong key",
    );
    wrong_key["pre_write_key"] = json!(h(key(0x41).expose_secret()));
    tampered.push(wrong_key);
    let mut wrong_chip = tamper(
        "chip-bound record opened by another chip",
        &valid[3],
        sealed_all[3].as_bytes().to_vec(),
        "IMP-0000000043",
        "key derived from another chip ID",
    );
    wrong_chip["chip_id"] = json!("0011223344556677889900AB");
    tampered.push(wrong_chip);
    let mut as_v1 = sealed_all[3].as_bytes().to_vec();
    as_v1[0] = 1;
    tampered.push(tamper(
        "chip-bound v2 record relabelled format v1",
        &valid[3],
        as_v1,
        "IMP-0000000043",
        "the version is associated data and selects the v1 (HKDF) chip key",
    ));
    let mut padded_chip = tamper(
        "chip-bound record opened by the chip ID with a zero byte added",
        &valid[3],
        sealed_all[3].as_bytes().to_vec(),
        "IMP-0000000043",
        "the chip ID's length enters the v2 derivation",
    );
    padded_chip["chip_id"] = json!("0011223344556677889900AA00");
    tampered.push(padded_chip);

    let malformed = json!([
        {"name": "empty", "sealed": "", "error": "truncated"},
        {"name": "format version 3", "sealed": h(&{let mut x = b.clone(); x[0] = 3; x}), "error": "unknown version"},
        {"name": "format version 2 with the model binding (v2 is chip-bound only)", "sealed": h(&{let mut x = b.clone(); x[0] = 2; x}), "error": "unknown binding"},
        {"name": "binding 7", "sealed": h(&{let mut x = b.clone(); x[1] = 7; x}), "error": "unknown binding"},
        {"name": "key identifier 0", "sealed": h(&{let mut x = b.clone(); x[2..6].fill(0); x}), "error": "invalid key identifier"},
        {"name": "shorter than the smallest record", "sealed": h(&b[..68]), "error": "truncated"},
        {"name": "longer than the largest record", "sealed": h(&[b.clone(), vec![0; 149 - b.len()]].concat()), "error": "too long"},
    ]);
    // A chip-bound record of format v1, as servers sealed them before v2 (HKDF chip key): no
    // longer sealed, still opened. Its bytes are kept as they were made.
    let legacy = json!([{
        "name": "chip-bound, format v1 (HKDF chip key)",
        "pre_write_key": h(key(0x40).expose_secret()),
        "key_id": 7,
        "chip_id": "0011223344556677889900AA",
        "apparatus_id": "IMP-0000000043",
        "pass_phrase": "Z0Y1X2W3V4T5S6R7Q8P9N0M1K2J3H4G5",
        "issue_nonce": h(&[0x44; 16]),
        "sealed": LEGACY_V1_CHIP,
    }]);
    let chip_keys: Vec<Value> = [
        ("0011223344556677889900AA", 0x40u8),
        ("01", 0x00),
        ("0100", 0x00),
        ("FFEEDDCCBBAA99887766554433221100", 0x80),
    ]
    .iter()
    .map(|(chip, kb)| {
        let c = ChipId::from_hex(chip).unwrap();
        json!({
            "pre_write_key": h(key(*kb).expose_secret()),
            "chip_id": chip,
            "v2_data": h(&imprint_core::seal::chip_v2_data(&c)),
            "v1_key": h(imprint_core::seal::chip_bound_key(&key(*kb), &c).expose_secret()),
            "v2_key": h(imprint_core::seal::chip_bound_key_v2(&key(*kb), &c).expose_secret()),
        })
    })
    .collect();
    json!({
        "description": "Imprint sealed record, formats v1 and v2 (docs/protocol.md). 'valid': sealing pre_write_key/key_id/apparatus_id/pass_phrase (bound to chip_id if given: format v2) with a random source that returns nonce then issue_nonce gives exactly 'sealed'; opening it gives the inputs back; 'digest' is SHA-256 of 'sealed'. 'legacy': a format v1 chip-bound record, no longer sealed: opening it gives the inputs back. 'chip_keys': the chip-bound keys of both formats (v1 HKDF, v2 AES-256-CBC of v2_data with IV 0). 'tamper': parses, but opening with pre_write_key for the clear apparatus_id (and chip_id, if any) must fail. 'malformed': header or length check must refuse it before any decryption.",
        "how_made": "cargo run -p imprint-core --example make_vectors (pre-write keys are byte ramps; all inputs are listed)",
        "valid": valid,
        "legacy": legacy,
        "chip_keys": chip_keys,
        "tamper": tampered,
        "malformed": malformed,
    })
}

fn frames() -> Value {
    let id = ApparatusId::new("IMP-0000000042").unwrap();
    let info = DeviceInfo {
        firmware_version: [1, 2, 3],
        product_code: ProductCode::new("CAM-X100").unwrap(),
        product_serial: ProductSerial::new("SN-000123").unwrap(),
        chip_id: ChipId::from_hex("0011223344556677889900AA").unwrap(),
        state: DeviceState::Blank,
        key_ids: vec![KeyId::new(7).unwrap(), KeyId::new(8).unwrap()],
    };
    let sealed = {
        let mut rng = FixedRng::new(&[0x11; 28]);
        SealedRecord::seal(
            &mut rng,
            &key(0x40),
            KeyId::new(7).unwrap(),
            &Binding::Model,
            &id,
            &PassPhrase::new("7QK2M9XW4T1HZ8BC3RNV5YDPGJ6SAF0E").unwrap(),
        )
    };
    let requests: Vec<(&str, Request)> = vec![
        ("get info", Request::GetInfo),
        (
            "query record",
            Request::QueryRecord {
                apparatus_id: id,
                record_digest: sealed.digest(),
            },
        ),
        (
            "install",
            Request::Install {
                apparatus_id: id,
                record: sealed.clone(),
            },
        ),
        ("challenge", Request::Challenge(Challenge([0xC5; 32]))),
        ("lock", Request::Lock { apparatus_id: id }),
    ];
    let replies: Vec<(&str, Reply)> = vec![
        ("info, blank device", Reply::Info(info.clone())),
        (
            "info, locked device",
            Reply::Info(DeviceInfo {
                state: DeviceState::Locked(id),
                ..info
            }),
        ),
        (
            "record status: not held",
            Reply::RecordStatus(RecordStatus::NotHeld),
        ),
        (
            "record status: held",
            Reply::RecordStatus(RecordStatus::Held(Receipt([0x5E; 32]))),
        ),
        (
            "record status: other identity",
            Reply::RecordStatus(RecordStatus::OtherIdentity),
        ),
        ("installed", Reply::Installed(Receipt([0x5E; 32]))),
        (
            "auth response",
            Reply::AuthResponse {
                apparatus_id: id,
                response: AuthResponse([0xA7; 32]),
            },
        ),
        ("locked", Reply::Locked),
        ("error: open failed", Reply::Error(ErrorCode::OpenFailed)),
    ];
    let mut good = Vec::new();
    for (i, (name, r)) in requests.iter().enumerate() {
        good.push(
            json!({"name": name, "direction": "request", "seq": i, "kind": r.kind(),
            "payload": h(&r.payload()), "frame": h(&r.encode(i as u8))}),
        );
    }
    for (i, (name, r)) in replies.iter().enumerate() {
        let seq = (0x80 + i) as u8;
        good.push(
            json!({"name": name, "direction": "reply", "seq": seq, "kind": r.kind(),
            "payload": h(&r.payload()), "frame": h(&r.encode(seq))}),
        );
    }
    let ok = Request::GetInfo.encode(1);
    let mut bad_crc = ok.clone();
    let n = bad_crc.len() - 1;
    bad_crc[n] ^= 0xFF;
    let mut bad_magic = ok.clone();
    bad_magic[0] = b'X';
    let mut bad_version = ok.clone();
    bad_version[2] = 2;
    let too_long = {
        let mut f = ok[..5].to_vec();
        f.extend_from_slice(&513u16.to_be_bytes());
        f
    };
    let unknown_kind = encode_frame(0x42, 1, &[]).unwrap();
    let trailing_payload = encode_frame(kind::GET_INFO, 1, &[0]).unwrap();
    let bad_id = encode_frame(kind::LOCK, 1, b"\x03A B").unwrap();
    let bad = json!([
        {"name": "empty input", "frame": "", "error": "incomplete"},
        {"name": "header cut short", "frame": h(&ok[..5]), "error": "incomplete"},
        {"name": "CRC cut short", "frame": h(&ok[..ok.len() - 1]), "error": "incomplete"},
        {"name": "CRC damaged", "frame": h(&bad_crc), "error": "bad checksum"},
        {"name": "wrong magic", "frame": h(&bad_magic), "error": "bad magic"},
        {"name": "protocol version 2", "frame": h(&bad_version), "error": "unsupported version"},
        {"name": "payload length 513", "frame": h(&too_long), "error": "too long"},
        {"name": "unknown message type 0x42", "frame": h(&unknown_kind), "error": "unknown message"},
        {"name": "get info with a payload byte", "frame": h(&trailing_payload), "error": "payload"},
        {"name": "lock with a space in the apparatus ID", "frame": h(&bad_id), "error": "payload"},
        {"name": "two frames back to back", "frame": h(&[ok.clone(), ok.clone()].concat()), "error": "trailing bytes"},
    ]);
    json!({
        "description": "Imprint device protocol v1 frames (docs/protocol.md). 'good': decoding 'frame' gives message type 'kind', sequence number 'seq' and 'payload', and the message re-encodes to the same bytes. 'bad': a request/reply decoder must refuse each with the error class named.",
        "how_made": "cargo run -p imprint-core --example make_vectors",
        "good": good,
        "bad": bad,
    })
}

fn receipts() -> Value {
    let mut cases = Vec::new();
    for (id, pass, serial, nonce_byte) in [
        (
            "IMP-0000000042",
            "7QK2M9XW4T1HZ8BC3RNV5YDPGJ6SAF0E",
            "SN-000123",
            0x10u8,
        ),
        ("A", "0123456789ABCDEF", "1", 0x20),
    ] {
        let id = ApparatusId::new(id).unwrap();
        let pass = PassPhrase::new(pass).unwrap();
        let serial = ProductSerial::new(serial).unwrap();
        let cv = conversion_value(&id, &pass);
        let issue_nonce = [nonce_byte; 16];
        let digest = [nonce_byte.wrapping_add(1); 32];
        let receipt = Receipt::compute(
            &cv,
            &ReceiptInput {
                apparatus_id: &id,
                product_serial: &serial,
                issue_nonce: &issue_nonce,
                record_digest: &digest,
            },
        );
        let challenge = Challenge([nonce_byte.wrapping_add(2); 32]);
        let resp = AuthResponse::compute(&cv, &id, &challenge);
        cases.push(json!({
            "apparatus_id": id.as_str(),
            "pass_phrase": core::str::from_utf8(pass.expose_secret()).unwrap(),
            "conversion_value": h(cv.expose_secret()),
            "product_serial": serial.as_str(),
            "issue_nonce": h(&issue_nonce),
            "record_digest": h(&digest),
            "receipt": h(&receipt.0),
            "challenge": h(&challenge.0),
            "auth_response": h(&resp.0),
        }));
    }
    json!({
        "description": "Conversion value, receipt and challenge response (docs/protocol.md, 'Receipt' and 'Field authentication'). conversion_value = HKDF-SHA256(salt='imprint/v1/conversion', ikm=pass_phrase, info=apparatus_id, L=32); receipt = HMAC-SHA256(cv, 'imprint/v1/receipt' | len | apparatus_id | len | product_serial | issue_nonce | record_digest); auth_response = HMAC-SHA256(cv, 'imprint/v1/auth' | len | apparatus_id | challenge).",
        "how_made": "cargo run -p imprint-core --example make_vectors",
        "cases": cases,
    })
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for (name, v) in [
        ("sealed_records.json", sealed_records()),
        ("frames.json", frames()),
        ("receipts.json", receipts()),
    ] {
        let text = serde_json::to_string_pretty(&v).unwrap() + "\n";
        std::fs::write(dir.join(name), text).unwrap();
        println!("wrote {}", dir.join(name).display());
    }
}
