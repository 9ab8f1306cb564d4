//! Every request and error path of the write module.

use imprint_core::*;
use imprint_device::WriteModule;
use imprint_device::sim::{SimFlash, demo_config};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::{install_req, issue, receipt_is_valid};

fn unit() -> WriteModule<SimFlash> {
    WriteModule::boot(demo_config(1, "CAM-X100", &[1, 2]), SimFlash::new())
}

fn k(n: u32) -> KeyId {
    KeyId::new(n).unwrap()
}

#[wasm_bindgen_test(unsupported = test)]
fn info_describes_the_unit() {
    let mut m = unit();
    let Reply::Info(info) = m.handle(&Request::GetInfo) else {
        panic!()
    };
    assert_eq!(info.product_code.as_str(), "CAM-X100");
    assert_eq!(info.product_serial.as_str(), "SIM-000001");
    assert_eq!(info.key_ids, vec![k(1), k(2)]);
    assert_eq!(info.state, DeviceState::Blank);
    assert_eq!(info.firmware_version, [1, 0, 0]);
}

#[wasm_bindgen_test(unsupported = test)]
fn install_stores_and_answers_with_a_receipt_the_server_accepts() {
    let mut m = unit();
    let i = issue("IMP-1", 1);
    let Reply::Installed(receipt) = m.handle(&install_req(&i)) else {
        panic!()
    };
    assert!(receipt_is_valid(
        &i,
        &m.config().product_serial.clone(),
        &receipt
    ));
    assert_eq!(m.state(), DeviceState::Provisioned(i.id));
    // A receipt for another serial would not verify: the unit is bound in.
    assert!(!receipt_is_valid(
        &i,
        &ProductSerial::new("SIM-000002").unwrap(),
        &receipt
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_retried_install_returns_the_same_receipt_and_writes_nothing() {
    let mut m = unit();
    let i = issue("IMP-1", 1);
    let first = m.handle(&install_req(&i));
    let steps = m.flash_mut().steps();
    assert_eq!(m.handle(&install_req(&i)), first);
    assert_eq!(m.flash_mut().steps(), steps, "a retry must not touch flash");
}

#[wasm_bindgen_test(unsupported = test)]
fn a_second_identity_is_refused() {
    let mut m = unit();
    m.handle(&install_req(&issue("IMP-1", 1)));
    assert_eq!(
        m.handle(&install_req(&issue("IMP-2", 2))),
        Reply::Error(ErrorCode::AlreadyProvisioned)
    );
    // Even the same identity sealed again (another record) is a different record.
    assert_eq!(
        m.handle(&install_req(&issue("IMP-1", 3))),
        Reply::Error(ErrorCode::AlreadyProvisioned)
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn records_for_other_keys_or_tampered_ones_do_not_open() {
    let mut m = WriteModule::boot(demo_config(1, "CAM-X100", &[2]), SimFlash::new());
    let i = issue("IMP-1", 1);
    assert_eq!(
        m.handle(&install_req(&i)),
        Reply::Error(ErrorCode::UnknownKey)
    );
    let mut m = unit();
    let mut bytes = i.record.as_bytes().to_vec();
    bytes[30] ^= 4;
    let tampered = Request::Install {
        apparatus_id: i.id,
        record: SealedRecord::parse(&bytes).unwrap(),
    };
    assert_eq!(m.handle(&tampered), Reply::Error(ErrorCode::OpenFailed));
    let moved = Request::Install {
        apparatus_id: ApparatusId::new("IMP-9").unwrap(),
        record: i.record.clone(),
    };
    assert_eq!(m.handle(&moved), Reply::Error(ErrorCode::OpenFailed));
    assert_eq!(m.state(), DeviceState::Blank);
}

#[wasm_bindgen_test(unsupported = test)]
fn chip_bound_records_open_only_on_their_chip() {
    let mut m = unit();
    let chip = m.config().chip_id;
    let mut rng = crate::rng(9);
    let id = ApparatusId::new("IMP-C").unwrap();
    let pass = PassPhrase::generate(&mut rng);
    let key = imprint_device::sim::demo_key(k(1));
    let other = ChipId::from_bytes(b"another-chip").unwrap();
    let wrong = SealedRecord::seal(&mut rng, &key, k(1), &Binding::Chip(other), &id, &pass);
    assert_eq!(
        m.handle(&Request::Install {
            apparatus_id: id,
            record: wrong
        }),
        Reply::Error(ErrorCode::OpenFailed)
    );
    let right = SealedRecord::seal(&mut rng, &key, k(1), &Binding::Chip(chip), &id, &pass);
    assert!(matches!(
        m.handle(&Request::Install {
            apparatus_id: id,
            record: right
        }),
        Reply::Installed(_)
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn query_tells_the_station_what_the_unit_holds() {
    let mut m = unit();
    let i = issue("IMP-1", 1);
    let q = |i: &crate::Issued| Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    };
    assert_eq!(m.handle(&q(&i)), Reply::RecordStatus(RecordStatus::NotHeld));
    let Reply::Installed(receipt) = m.handle(&install_req(&i)) else {
        panic!()
    };
    assert_eq!(
        m.handle(&q(&i)),
        Reply::RecordStatus(RecordStatus::Held(receipt))
    );
    assert_eq!(
        m.handle(&q(&issue("IMP-2", 2))),
        Reply::RecordStatus(RecordStatus::OtherIdentity)
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn challenges_are_answered_with_the_installed_secret_only() {
    let mut m = unit();
    let c = Challenge([7; 32]);
    assert_eq!(
        m.handle(&Request::Challenge(c)),
        Reply::Error(ErrorCode::NotProvisioned)
    );
    let i = issue("IMP-1", 1);
    m.handle(&install_req(&i));
    let Reply::AuthResponse {
        apparatus_id,
        response,
    } = m.handle(&Request::Challenge(c))
    else {
        panic!()
    };
    assert_eq!(apparatus_id, i.id);
    let cv = conversion_value(&i.id, &i.pass);
    response.verify(&cv, &i.id, &c).unwrap();
    assert!(response.verify(&cv, &i.id, &Challenge([8; 32])).is_err());
}

#[wasm_bindgen_test(unsupported = test)]
fn lock_makes_the_identity_permanent() {
    let mut m = unit();
    let i = issue("IMP-1", 1);
    assert_eq!(
        m.handle(&Request::Lock { apparatus_id: i.id }),
        Reply::Error(ErrorCode::NotProvisioned)
    );
    m.handle(&install_req(&i));
    let other = ApparatusId::new("IMP-2").unwrap();
    assert_eq!(
        m.handle(&Request::Lock {
            apparatus_id: other
        }),
        Reply::Error(ErrorCode::WrongIdentity)
    );
    assert_eq!(
        m.handle(&Request::Lock { apparatus_id: i.id }),
        Reply::Locked
    );
    assert_eq!(
        m.handle(&Request::Lock { apparatus_id: i.id }),
        Reply::Locked,
        "idempotent"
    );
    assert_eq!(m.state(), DeviceState::Locked(i.id));
    assert_eq!(m.handle(&install_req(&i)), Reply::Error(ErrorCode::Locked));
    assert_eq!(
        m.handle(&install_req(&issue("IMP-3", 3))),
        Reply::Error(ErrorCode::Locked)
    );
    assert!(matches!(
        m.handle(&Request::Challenge(Challenge([1; 32]))),
        Reply::AuthResponse { .. }
    ));
    // Locked survives a reboot.
    let cfg = m.config().clone();
    let mut m = WriteModule::boot(cfg, m.into_flash());
    assert_eq!(m.state(), DeviceState::Locked(i.id));
    assert!(matches!(
        m.handle(&Request::GetInfo),
        Reply::Info(DeviceInfo {
            state: DeviceState::Locked(_),
            ..
        })
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn damaged_and_unknown_frames_get_clear_error_codes() {
    let mut m = unit();
    let reply = |out: Vec<Vec<u8>>| -> Vec<(u8, Reply)> {
        out.iter().map(|f| Reply::decode(f).unwrap()).collect()
    };
    let mut bad_crc = Request::GetInfo.encode(5);
    let n = bad_crc.len() - 1;
    bad_crc[n] ^= 1;
    assert_eq!(
        reply(m.receive(&bad_crc)),
        vec![(5, Reply::Error(ErrorCode::BadFrame))]
    );
    let unknown = encode_frame(0x42, 6, &[]).unwrap();
    assert_eq!(
        reply(m.receive(&unknown)),
        vec![(6, Reply::Error(ErrorCode::UnknownRequest))]
    );
    let bad_payload = encode_frame(proto::kind::LOCK, 7, b"\x02a b").unwrap();
    assert_eq!(
        reply(m.receive(&bad_payload)),
        vec![(7, Reply::Error(ErrorCode::BadRequest))]
    );
    let mut v2 = Request::GetInfo.encode(8);
    v2[2] = 2;
    assert_eq!(
        reply(m.receive(&v2)),
        vec![(8, Reply::Error(ErrorCode::UnsupportedVersion))]
    );
    // Line noise gets no answer at all.
    assert!(m.receive(b"hello, is anybody there?").is_empty());
    // And the link still works afterwards.
    assert!(matches!(
        reply(m.receive(&Request::GetInfo.encode(9)))[..],
        [(9, Reply::Info(_))]
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn frames_split_across_usb_packets_are_reassembled() {
    let mut m = unit();
    let i = issue("IMP-1", 1);
    let bytes = install_req(&i).encode(3);
    let mut replies = Vec::new();
    for packet in bytes.chunks(64) {
        replies.extend(m.receive(packet));
    }
    assert_eq!(replies.len(), 1);
    assert!(matches!(
        Reply::decode(&replies[0]).unwrap(),
        (3, Reply::Installed(_))
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn no_reply_ever_carries_the_pass_phrase() {
    let mut m = unit();
    let i = issue("IMP-1", 1);
    let secret = i.pass.expose_secret().to_vec();
    let cv = conversion_value(&i.id, &i.pass);
    let mut all = Vec::new();
    for req in [
        Request::GetInfo,
        install_req(&i),
        install_req(&i),
        Request::QueryRecord {
            apparatus_id: i.id,
            record_digest: i.record.digest(),
        },
        Request::Challenge(Challenge([0; 32])),
        Request::Lock { apparatus_id: i.id },
        Request::GetInfo,
    ] {
        for f in m.receive(&req.encode(1)) {
            all.extend(f);
        }
    }
    for needle in [
        &secret[..],
        &cv.expose_secret()[..],
        &imprint_device::sim::demo_key(k(1)).expose_secret()[..],
    ] {
        assert!(!all.windows(8).any(|w| needle.windows(8).any(|n| n == w)));
    }
    assert!(!format!("{m:?}").contains(std::str::from_utf8(&secret).unwrap()));
}

#[wasm_bindgen_test(unsupported = test)]
fn the_handler_survives_random_input() {
    use rand_core::Rng;
    let mut m = unit();
    let mut rng = crate::rng(42);
    let valid: Vec<Vec<u8>> = [
        Request::GetInfo,
        install_req(&issue("IMP-1", 1)),
        Request::Challenge(Challenge([3; 32])),
    ]
    .iter()
    .map(|r| r.encode(1))
    .collect();
    for round in 0..3000 {
        let mut b = valid[round % valid.len()].clone();
        let flips = rng.next_u32() % 4;
        for _ in 0..flips {
            let at = (rng.next_u32() as usize) % b.len();
            b[at] = rng.next_u32() as u8;
        }
        if round % 7 == 0 {
            b.truncate((rng.next_u32() as usize) % b.len());
        }
        for f in m.receive(&b) {
            Reply::decode(&f).unwrap();
        }
    }
    m.reset_link();
    assert_eq!(m.receive(&Request::GetInfo.encode(1)).len(), 1);
}
