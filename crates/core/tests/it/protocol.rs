//! The wire protocol: round trips, streaming, totality against damaged input.

use imprint_core::frame::{MAX_FRAME, MAX_PAYLOAD};
use imprint_core::*;
use rand_core::Rng;
use wasm_bindgen_test::wasm_bindgen_test;

fn id() -> ApparatusId {
    ApparatusId::new("IMP-0000000042").unwrap()
}

fn record() -> SealedRecord {
    SealedRecord::seal(
        &mut crate::rng(7),
        &PreWriteKey::from_array([3; 32]),
        KeyId::new(7).unwrap(),
        &Binding::Model,
        &id(),
        &PassPhrase::new(&"x".repeat(64)).unwrap(),
    )
}

pub fn all_requests() -> Vec<Request> {
    vec![
        Request::GetInfo,
        Request::QueryRecord {
            apparatus_id: id(),
            record_digest: [1; 32],
        },
        Request::Install {
            apparatus_id: ApparatusId::new(&"Z".repeat(32)).unwrap(),
            record: record(),
        },
        Request::Challenge(Challenge([2; 32])),
        Request::Lock { apparatus_id: id() },
    ]
}

pub fn all_replies() -> Vec<Reply> {
    let info = DeviceInfo {
        firmware_version: [0, 9, 255],
        product_code: ProductCode::new("CAM-X100").unwrap(),
        product_serial: ProductSerial::new("SN-1").unwrap(),
        chip_id: ChipId::from_bytes(&[0xAB; 16]).unwrap(),
        state: DeviceState::Provisioned(id()),
        key_ids: (1..=8).map(|k| KeyId::new(k).unwrap()).collect(),
    };
    vec![
        Reply::Info(info),
        Reply::RecordStatus(RecordStatus::NotHeld),
        Reply::RecordStatus(RecordStatus::Held(Receipt([4; 32]))),
        Reply::RecordStatus(RecordStatus::OtherIdentity),
        Reply::Installed(Receipt([5; 32])),
        Reply::AuthResponse {
            apparatus_id: id(),
            response: AuthResponse([6; 32]),
        },
        Reply::Locked,
        Reply::Error(ErrorCode::AlreadyProvisioned),
        Reply::Error(ErrorCode::Other(0x77)),
    ]
}

#[wasm_bindgen_test(unsupported = test)]
fn every_message_round_trips() {
    for (seq, r) in all_requests().into_iter().enumerate() {
        let bytes = r.encode(seq as u8);
        assert!(bytes.len() <= MAX_FRAME);
        assert_eq!(Request::decode(&bytes).unwrap(), (seq as u8, r));
    }
    for (seq, r) in all_replies().into_iter().enumerate() {
        let bytes = r.encode(seq as u8);
        assert_eq!(Reply::decode(&bytes).unwrap(), (seq as u8, r));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn requests_and_replies_are_not_confused() {
    let req = Request::GetInfo.encode(0);
    assert!(matches!(
        Reply::decode(&req),
        Err(ProtocolError::UnknownMessage(0x01))
    ));
    let rep = Reply::Locked.encode(0);
    assert!(matches!(
        Request::decode(&rep),
        Err(ProtocolError::UnknownMessage(0x85))
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn stream_decoding_waits_for_whole_frames() {
    let bytes = Request::Install {
        apparatus_id: id(),
        record: record(),
    }
    .encode(9);
    for cut in 0..bytes.len() {
        match decode_frame(&bytes[..cut]) {
            Err(FrameError::Incomplete { need, have }) => {
                assert_eq!(have, cut);
                assert!(need > cut);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Two frames in one buffer (USB joined them): the first is decoded, the rest is left.
    let two = [bytes.clone(), Reply::Locked.encode(10)].concat();
    let (f, used) = decode_frame(&two).unwrap();
    assert_eq!((f.seq, used), (9, bytes.len()));
    let (f2, _) = decode_frame(&two[used..]).unwrap();
    assert_eq!(f2.seq, 10);
}

#[wasm_bindgen_test(unsupported = test)]
fn oversized_payloads_are_refused_both_ways() {
    assert_eq!(
        encode_frame(1, 0, &[0; MAX_PAYLOAD + 1]),
        Err(FrameError::TooLong(MAX_PAYLOAD + 1))
    );
    assert!(encode_frame(1, 0, &[0; MAX_PAYLOAD]).is_ok());
    let mut info = DeviceInfo::decode(&all_replies()[0].payload())
        .unwrap()
        .encode();
    // Claim nine key identifiers.
    let count_at = info.len() - 8 * 4 - 1;
    info[count_at] = 9;
    info.extend_from_slice(&9u32.to_be_bytes());
    assert!(matches!(
        DeviceInfo::decode(&info),
        Err(DecodeError::TooMany { max: 8, .. })
    ));
}

/// Totality: damaged and random input never panics. Deterministic, so it runs the same
/// natively and in the browser; the fuzz targets explore further.
#[wasm_bindgen_test(unsupported = test)]
fn decoders_are_total_on_damaged_input() {
    let mut rng = crate::rng(8);
    let mut frames: Vec<Vec<u8>> = all_requests().iter().map(|r| r.encode(1)).collect();
    frames.extend(all_replies().iter().map(|r| r.encode(2)));
    for f in &frames {
        for i in 0..f.len() {
            for bit in [0x01u8, 0x80] {
                let mut d = f.clone();
                d[i] ^= bit;
                let _ = Request::decode(&d);
                let _ = Reply::decode(&d);
            }
            let _ = Request::decode(&f[..i]);
            let _ = Reply::decode(&f[..i]);
        }
    }
    for _ in 0..2000 {
        let len = (rng.next_u32() % 600) as usize;
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        if rng.next_u32().is_multiple_of(2) && len >= 7 {
            b[0] = b'I';
            b[1] = b'M';
            b[2] = 1;
        }
        let _ = Request::decode(&b);
        let _ = Reply::decode(&b);
        let _ = DeviceInfo::decode(&b);
        let _ = SealedRecord::parse(&b);
        // Random payloads in valid frames reach the payload decoders.
        let payload = &b[..b.len().min(MAX_PAYLOAD)];
        for kind in [1u8, 2, 3, 4, 5, 0x81, 0x82, 0x83, 0x84, 0x85, 0xFF] {
            let _ = Request::from_parts(kind, payload);
            let _ = Reply::from_parts(kind, payload);
        }
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn corrupted_frames_are_caught_by_the_crc() {
    let f = Request::Challenge(Challenge([0; 32])).encode(3);
    for i in 7..f.len() - 4 {
        let mut d = f.clone();
        d[i] ^= 0x10;
        assert_eq!(
            Request::decode(&d),
            Err(ProtocolError::Frame(FrameError::BadChecksum))
        );
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn error_codes_round_trip_and_explain_themselves() {
    for c in 0u8..=255 {
        let e = ErrorCode::from_code(c);
        assert_eq!(e.code(), c);
        assert!(!e.message().is_empty() && !e.fix().is_empty());
    }
    assert_eq!(ErrorCode::from_code(0x06), ErrorCode::OpenFailed);
    assert!(ErrorCode::Locked.to_string().contains("set it aside"));
}

#[wasm_bindgen_test(unsupported = test)]
fn assembler_joins_packets_and_resyncs_after_garbage() {
    let a = Request::Install {
        apparatus_id: id(),
        record: record(),
    }
    .encode(1);
    let b = Request::GetInfo.encode(2);
    let mut bad = Request::Lock { apparatus_id: id() }.encode(3);
    let n = bad.len() - 1;
    bad[n] ^= 0xFF;
    let stream = [b"xyz".to_vec(), a.clone(), bad, b"I".to_vec(), b.clone()].concat();
    let mut asm = FrameAssembler::new();
    let mut got = Vec::new();
    // Deliver in 64-byte USB packets.
    for packet in stream.chunks(64) {
        asm.push(packet);
        while let Some(item) = asm.next_frame() {
            got.push(item.map(|f| f.seq).map_err(|e| (e.error, e.seq)));
        }
    }
    assert_eq!(
        got,
        vec![
            Err((FrameError::BadMagic, None)),
            Ok(1),
            Err((FrameError::BadChecksum, Some(3))),
            Err((FrameError::BadMagic, None)),
            Ok(2)
        ]
    );
    assert_eq!(asm.pending(), 0);
}
