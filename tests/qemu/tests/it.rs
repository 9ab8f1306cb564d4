//! The write module on an emulated Cortex-M4 (QEMU `mps2-an386`): the vectors, the requests,
//! bad input and a power cut at every flash step, with a real core reset each time.
//!
//! Ignored in a plain `cargo test`: they need `qemu-system-arm` and the firmware image, which
//! `cargo xtask test` installs and builds before it runs them with `--ignored`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use imprint_core::*;
use imprint_device::sim::demo_key;
use imprint_qemu::{Figures, Unit};
use serde_json::Value;

const EXTERNAL: &str = include_str!("../../../crates/core/tests/vectors/external.json");
const SEALED: &str = include_str!("../../../crates/core/tests/vectors/sealed_records.json");
const FRAMES: &str = include_str!("../../../crates/core/tests/vectors/frames.json");
const RECEIPTS: &str = include_str!("../../../crates/core/tests/vectors/receipts.json");
const TLOG: &str = include_str!("../../../crates/core/tests/vectors/tlog.json");

fn load(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("field {k}"))
}

fn h(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

fn list<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v[k].as_array().unwrap_or_else(|| panic!("list {k}"))
}

/// The chip ID's 12 bytes, or nothing for a model-bound record.
fn chip(c: &Value) -> Vec<u8> {
    c["chip_id"]
        .as_str()
        .map(|t| ChipId::from_hex(t).unwrap().as_bytes().to_vec())
        .unwrap_or_default()
}

/// Opens a vector's sealed record on the core with its key, apparatus ID and chip ID.
fn open(
    run: &mut impl FnMut(u8, &[&[u8]]) -> Result<Vec<u8>, String>,
    c: &Value,
) -> Result<Vec<u8>, String> {
    run(
        8,
        &[
            &h(c, "pre_write_key"),
            s(c, "apparatus_id").as_bytes(),
            &chip(c),
            &h(c, "sealed"),
        ],
    )
}

fn start() -> Unit {
    Unit::start().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs QEMU and the firmware: cargo xtask test"]
fn every_vector_passes_on_the_emulated_core() {
    let mut u = start();
    let mut run = |op: u8, fields: &[&[u8]]| u.vector(op, fields).unwrap();
    let mut checked = 0;

    let v = load(EXTERNAL);
    for c in list(&v, "aes_256_gcm") {
        let (key, nonce, aad) = (h(c, "key"), h(c, "nonce"), h(c, "aad"));
        let sealed = run(4, &[&key, &nonce, &aad, &h(c, "plaintext")]).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            format!("{}{}", s(c, "ciphertext"), s(c, "tag")),
            "{}",
            s(c, "source")
        );
        assert_eq!(
            run(5, &[&key, &nonce, &aad, &sealed]).unwrap(),
            h(c, "plaintext")
        );
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            run(5, &[&key, &nonce, &aad, &bad]).unwrap_err(),
            "tag check failed"
        );
        checked += 1;
    }
    for c in list(&v, "hmac_sha256") {
        let mac = run(2, &[&h(c, "key"), s(c, "data_ascii").as_bytes()]).unwrap();
        assert_eq!(hex::encode(mac), s(c, "mac"), "{}", s(c, "source"));
        checked += 1;
    }
    for c in list(&v, "hkdf_sha256") {
        let len = u16::try_from(c["length"].as_u64().unwrap()).unwrap();
        let okm = run(
            3,
            &[
                &h(c, "salt"),
                &h(c, "ikm"),
                &h(c, "info"),
                &len.to_le_bytes(),
            ],
        )
        .unwrap();
        assert_eq!(hex::encode(okm), s(c, "okm"), "{}", s(c, "source"));
        checked += 1;
    }
    for c in list(&v, "sha256") {
        let d = run(1, &[s(c, "data_ascii").as_bytes()]).unwrap();
        assert_eq!(hex::encode(d), s(c, "digest"));
        checked += 1;
    }
    for c in list(&v, "crc32") {
        let crc = run(6, &[s(c, "data_ascii").as_bytes()]).unwrap();
        assert_eq!(hex::encode(crc), s(c, "crc"));
        checked += 1;
    }

    let v = load(SEALED);
    for c in list(&v, "valid") {
        let key_id = u32::try_from(c["key_id"].as_u64().unwrap()).unwrap();
        let rng = [h(c, "nonce"), h(c, "issue_nonce")].concat();
        let out = run(
            7,
            &[
                &h(c, "pre_write_key"),
                &key_id.to_be_bytes(),
                s(c, "apparatus_id").as_bytes(),
                s(c, "pass_phrase").as_bytes(),
                &chip(c),
                &rng,
            ],
        )
        .unwrap();
        let (sealed, digest) = out.split_at(out.len() - 32);
        assert_eq!(hex::encode(sealed), s(c, "sealed"), "{}", s(c, "name"));
        assert_eq!(hex::encode(digest), s(c, "digest"), "{}", s(c, "name"));
        let opened = open(&mut run, c).unwrap();
        assert_eq!(hex::encode(&opened[..16]), s(c, "issue_nonce"));
        assert_eq!(opened[16..20], key_id.to_be_bytes());
        assert_eq!(
            &opened[21..],
            s(c, "pass_phrase").as_bytes(),
            "{}",
            s(c, "name")
        );
        checked += 1;
    }
    for c in list(&v, "legacy") {
        let opened = open(&mut run, c).unwrap();
        assert_eq!(hex::encode(&opened[..16]), s(c, "issue_nonce"));
        assert_eq!(opened[20], imprint_core::seal::FORMAT_V1);
        assert_eq!(&opened[21..], s(c, "pass_phrase").as_bytes());
        checked += 1;
    }
    for c in list(&v, "chip_keys") {
        let out = run(9, &[&h(c, "pre_write_key"), &chip(c)]).unwrap();
        assert_eq!(hex::encode(&out[..32]), s(c, "v2_data"));
        assert_eq!(hex::encode(&out[32..64]), s(c, "v1_key"));
        assert_eq!(hex::encode(&out[64..]), s(c, "v2_key"));
        checked += 1;
    }
    for c in list(&v, "tamper") {
        let refused = open(&mut run, c).unwrap_err();
        assert_eq!(refused, "does not open", "{}", s(c, "name"));
        checked += 1;
    }
    for c in list(&v, "malformed") {
        let refused = run(8, &[&[0x40; 32], b"IMP-1", &[], &h(c, "sealed")]).unwrap_err();
        assert_eq!(refused, "malformed", "{}", s(c, "name"));
        checked += 1;
    }

    let v = load(FRAMES);
    for c in list(&v, "good") {
        let bytes = h(c, "frame");
        let f = run(12, &[&bytes]).unwrap();
        assert_eq!(
            u64::from(f[0]),
            c["kind"].as_u64().unwrap(),
            "{}",
            s(c, "name")
        );
        assert_eq!(u64::from(f[1]), c["seq"].as_u64().unwrap());
        assert_eq!(usize::from(u16::from_le_bytes([f[2], f[3]])), bytes.len());
        assert_eq!(hex::encode(&f[4..]), s(c, "payload"));
        let op = if s(c, "direction") == "request" {
            10
        } else {
            11
        };
        assert_eq!(run(op, &[&bytes]).unwrap(), bytes, "{}", s(c, "name"));
        checked += 1;
    }
    for c in list(&v, "bad") {
        let class = run(10, &[&h(c, "frame")]).unwrap_err();
        assert_eq!(class, s(c, "error"), "{}", s(c, "name"));
        checked += 1;
    }

    let v = load(RECEIPTS);
    for c in list(&v, "cases") {
        let out = run(
            13,
            &[
                s(c, "apparatus_id").as_bytes(),
                s(c, "pass_phrase").as_bytes(),
                s(c, "product_serial").as_bytes(),
                &h(c, "issue_nonce"),
                &h(c, "record_digest"),
            ],
        )
        .unwrap();
        assert_eq!(hex::encode(&out[..32]), s(c, "conversion_value"));
        assert_eq!(hex::encode(&out[32..]), s(c, "receipt"));
        let resp = run(
            14,
            &[
                s(c, "apparatus_id").as_bytes(),
                s(c, "pass_phrase").as_bytes(),
                &h(c, "challenge"),
            ],
        )
        .unwrap();
        assert_eq!(hex::encode(resp), s(c, "auth_response"));
        checked += 1;
    }
    let v = load(TLOG);
    let leaves: Vec<Vec<u8>> = list(&v, "leaves")
        .iter()
        .map(|l| hex::decode(l.as_str().unwrap()).unwrap())
        .collect();
    for c in list(&v, "roots") {
        let size = usize::try_from(c["size"].as_u64().unwrap()).unwrap();
        let fields: Vec<&[u8]> = leaves[..size].iter().map(Vec::as_slice).collect();
        let out = run(15, &fields).unwrap();
        assert_eq!(hex::encode(&out[..32]), s(c, "root"), "size {size}");
        checked += 1;
    }
    let root_of = |size: u64| {
        list(&v, "roots")
            .iter()
            .find(|c| c["size"].as_u64() == Some(size))
            .map_or_else(|| h(&v, "empty_root"), |c| h(c, "root"))
    };
    let joined = |c: &Value| -> Vec<u8> {
        list(c, "proof")
            .iter()
            .flat_map(|p| hex::decode(p.as_str().unwrap()).unwrap())
            .collect()
    };
    for c in list(&v, "inclusion") {
        let (index, size) = (c["index"].as_u64().unwrap(), c["size"].as_u64().unwrap());
        let entry = &leaves[usize::try_from(index).unwrap()];
        let fields: [&[u8]; 5] = [
            entry,
            &index.to_be_bytes(),
            &size.to_be_bytes(),
            &root_of(size),
            &joined(c),
        ];
        run(16, &fields).unwrap();
        let mut bad = joined(c);
        if let Some(b) = bad.first_mut() {
            *b ^= 1;
            let fields: [&[u8]; 5] = [
                entry,
                &index.to_be_bytes(),
                &size.to_be_bytes(),
                &root_of(size),
                &bad,
            ];
            assert_eq!(run(16, &fields).unwrap_err(), "inclusion refused");
        }
        checked += 1;
    }
    for c in list(&v, "consistency") {
        let (old, new) = (c["old"].as_u64().unwrap(), c["new"].as_u64().unwrap());
        let fields: [&[u8]; 5] = [
            &old.to_be_bytes(),
            &new.to_be_bytes(),
            &root_of(old),
            &root_of(new),
            &joined(c),
        ];
        run(17, &fields).unwrap();
        checked += 1;
    }
    assert!(checked > 60, "only {checked} vectors");
    println!("{checked} vectors passed on the emulated Cortex-M4");
}

/// A record for the demo model (key 1), as the server would issue it.
struct Issued {
    id: ApparatusId,
    pass: PassPhrase,
    record: SealedRecord,
}

fn issue(id: &str, seed: u8) -> Issued {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([seed; 32]);
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

fn install(i: &Issued) -> Request {
    Request::Install {
        apparatus_id: i.id,
        record: i.record.clone(),
    }
}

fn query(i: &Issued) -> Request {
    Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    }
}

/// The demo unit the firmware runs: unit 1 of CAM-X100.
fn serial() -> ProductSerial {
    ProductSerial::new("SIM-000001").unwrap()
}

/// What the server checks: the receipt against the record it issued.
fn receipt_is_valid(i: &Issued, receipt: &Receipt) -> bool {
    let opened = i
        .record
        .open(&demo_key(i.record.key_id()), &i.id, None)
        .unwrap();
    receipt
        .verify(
            &conversion_value(&i.id, &i.pass),
            &ReceiptInput {
                apparatus_id: &i.id,
                product_serial: &serial(),
                issue_nonce: &opened.issue_nonce,
                record_digest: &i.record.digest(),
            },
        )
        .is_ok()
}

fn ask(u: &mut Unit, req: &Request) -> (Reply, Figures) {
    u.request(req).unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

fn state(u: &mut Unit) -> DeviceState {
    match ask(u, &Request::GetInfo).0 {
        Reply::Info(info) => info.state,
        other => panic!("GetInfo answered {other:?}"),
    }
}

/// The installed identity is whole: the stored receipt verifies and the unit answers a
/// challenge with the right secret.
fn assert_whole(u: &mut Unit, i: &Issued) {
    let Reply::RecordStatus(RecordStatus::Held(receipt)) = ask(u, &query(i)).0 else {
        panic!("the record is not held")
    };
    assert!(receipt_is_valid(i, &receipt));
    let c = Challenge([9; 32]);
    let Reply::AuthResponse {
        response,
        apparatus_id,
    } = ask(u, &Request::Challenge(c)).0
    else {
        panic!("no challenge response")
    };
    assert_eq!(apparatus_id, i.id);
    response
        .verify(&conversion_value(&i.id, &i.pass), &i.id, &c)
        .unwrap();
}

#[test]
#[ignore = "needs QEMU and the firmware: cargo xtask test"]
fn install_install_again_query_challenge_and_lock() {
    let mut u = start();
    let Reply::Info(info) = ask(&mut u, &Request::GetInfo).0 else {
        panic!()
    };
    assert_eq!(info.product_code.as_str(), "CAM-X100");
    assert_eq!(info.product_serial, serial());
    assert_eq!(info.state, DeviceState::Blank);

    let i = issue("IMP-Q1", 1);
    assert_eq!(
        ask(&mut u, &query(&i)).0,
        Reply::RecordStatus(RecordStatus::NotHeld)
    );
    let (Reply::Installed(receipt), first) = ask(&mut u, &install(&i)) else {
        panic!("install refused")
    };
    assert!(receipt_is_valid(&i, &receipt));
    assert!(first.flash_steps > 0);
    // Installed again (the station's retry): the same receipt, nothing written.
    let (again, retry) = ask(&mut u, &install(&i));
    assert_eq!(again, Reply::Installed(receipt));
    assert_eq!(retry.flash_steps, 0, "a retry must not touch flash");
    assert_whole(&mut u, &i);
    // Another record is refused while this identity is installed.
    let other = issue("IMP-Q2", 2);
    assert!(matches!(ask(&mut u, &install(&other)).0, Reply::Error(_)));
    assert_eq!(
        ask(&mut u, &query(&other)).0,
        Reply::RecordStatus(RecordStatus::OtherIdentity)
    );

    // It survives a power cycle.
    u.reset().unwrap();
    assert_eq!(state(&mut u), DeviceState::Provisioned(i.id));
    assert_whole(&mut u, &i);

    assert_eq!(
        ask(&mut u, &Request::Lock { apparatus_id: i.id }).0,
        Reply::Locked
    );
    u.reset().unwrap();
    assert_eq!(state(&mut u), DeviceState::Locked(i.id));
    assert_whole(&mut u, &i);
    // Locked: not even the same record writes again, and nothing is written.
    let (reply, f) = ask(&mut u, &install(&other));
    assert!(matches!(reply, Reply::Error(_)), "{reply:?}");
    assert_eq!(f.flash_steps, 0);
}

#[test]
#[ignore = "needs QEMU and the firmware: cargo xtask test"]
fn garbage_and_bad_frames_get_errors_and_lose_nothing() {
    let mut u = start();
    let i = issue("IMP-G1", 3);
    assert!(matches!(ask(&mut u, &install(&i)).0, Reply::Installed(_)));

    // Garbage: answered (an error frame, or nothing while the module waits for a frame
    // start), never a crash, and the unit goes on.
    for junk in [
        &b"hello"[..],
        &[0u8; 300],
        &[0xFF; 64],
        &[0x49, 0x4D, 0x01, 0x7F, 0, 0],
    ] {
        let (frames, f) = u.data(junk).unwrap();
        if !frames.is_empty() {
            let (_, reply) = Reply::decode(&frames).unwrap();
            assert!(matches!(reply, Reply::Error(_)), "{reply:?}");
        }
        assert_eq!(f.flash_steps, 0);
    }
    // The last junk is the start of a frame: the module waits for its rest until the link is
    // reset (docs/protocol.md, "After damage"), as the station's reconnect does.
    u.reset_link().unwrap();
    // A frame with a bad CRC.
    let mut bad = Request::GetInfo.encode(7);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let (frames, _) = u.data(&bad).unwrap();
    assert_eq!(
        Reply::decode(&frames).unwrap().1,
        Reply::Error(ErrorCode::BadFrame)
    );
    // An install split over three transfers, as bulk packets split it.
    let frame = install(&i).encode(9);
    let (a, rest) = frame.split_at(3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut replies = Vec::new();
    for part in [a, b, c] {
        replies.extend(u.data(part).unwrap().0);
    }
    let (_, reply) = Reply::decode(&replies).unwrap();
    assert!(
        matches!(reply, Reply::Installed(r) if receipt_is_valid(&i, &r)),
        "{reply:?}"
    );
    // Nothing was lost.
    assert_whole(&mut u, &i);
}

/// A power cut at every flash step of a transition, with a real reset of the emulated core:
/// after it the unit holds the old state or the new one, never a mix.
fn sweep(
    u: &mut Unit,
    prepare: &dyn Fn(&mut Unit),
    req: &Request,
    check: &dyn Fn(&mut Unit, bool),
) -> (u32, u32) {
    u.erase().unwrap();
    prepare(u);
    let steps = ask(u, req).1.flash_steps;
    assert!(steps > 0);
    let (mut old, mut new) = (0, 0);
    for cut in 0..=steps {
        u.erase().unwrap();
        prepare(u);
        let boots = u.boot.boots;
        u.cut_after(cut).unwrap();
        let answered = u.after_cut(req).unwrap();
        if cut < steps {
            assert!(
                answered.is_none(),
                "cut at {cut} of {steps}: the core did not reset"
            );
            assert_eq!(u.boot.boots, boots + 1);
        }
        let was_new = match (state(u), req) {
            (DeviceState::Blank, Request::Install { .. }) => false,
            (DeviceState::Provisioned(_), Request::Install { .. }) => true,
            (DeviceState::Provisioned(_), Request::Lock { .. }) => false,
            (DeviceState::Locked(_), Request::Lock { .. }) => true,
            (s, _) => panic!("cut at {cut}: impossible state {s:?}"),
        };
        if was_new {
            new += 1;
        } else {
            old += 1;
        }
        check(u, was_new);
    }
    (old, new)
}

#[test]
#[ignore = "needs QEMU and the firmware: cargo xtask test"]
fn a_power_cut_at_every_flash_step_leaves_the_old_or_the_new_state() {
    let mut u = start();
    let i = issue("IMP-P1", 4);
    let (old, new) = sweep(&mut u, &|_| {}, &install(&i), &|u, was_new| {
        if was_new {
            assert_whole(u, &i);
        }
        // The station retries: the install completes with a valid receipt.
        let Reply::Installed(r) = ask(u, &install(&i)).0 else {
            panic!("the retry was refused")
        };
        assert!(receipt_is_valid(&i, &r));
        assert_whole(u, &i);
    });
    assert_eq!(new, 1, "only the completed write counts");
    println!("install: {old} cuts left the unit blank, {new} (no cut) installed it");

    let lock = Request::Lock { apparatus_id: i.id };
    let installed = |u: &mut Unit| {
        assert!(matches!(ask(u, &install(&i)).0, Reply::Installed(_)));
    };
    let (old, new) = sweep(&mut u, &installed, &lock, &|u, _| assert_whole(u, &i));
    assert_eq!(new, 1);
    println!("lock: {old} cuts left the unit provisioned, {new} locked it");
}

#[test]
#[ignore = "needs QEMU and the firmware: cargo xtask test"]
fn figures_of_each_request_on_the_emulated_core() {
    let mut u = start();
    let boot = u.boot;
    let i = issue("IMP-F1", 5);
    let mut rows = Vec::new();
    let mut row = |name: &str, req: &Request, u: &mut Unit| {
        let (reply, f) = ask(u, req);
        assert!(!matches!(reply, Reply::Error(_)), "{name}: {reply:?}");
        rows.push((name.to_owned(), f));
    };
    row("GetInfo", &Request::GetInfo, &mut u);
    row("QueryRecord (blank)", &query(&i), &mut u);
    row("Install", &install(&i), &mut u);
    row("Install again (retry)", &install(&i), &mut u);
    row("QueryRecord (held)", &query(&i), &mut u);
    row("Challenge", &Request::Challenge(Challenge([7; 32])), &mut u);
    row("Lock", &Request::Lock { apparatus_id: i.id }, &mut u);
    u.reset().unwrap();
    row("GetInfo after boot", &Request::GetInfo, &mut u);

    println!(
        "calibration: {} ticks for {} instructions ({:.3} instructions per tick)",
        boot.calibration_ticks,
        boot.calibration_instructions,
        f64::from(boot.calibration_instructions) / f64::from(boot.calibration_ticks)
    );
    println!(
        "| request | instructions | flash steps | stack (call) | stack (total) | heap peak | heap held after | allocations | bytes allocated | largest |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, f) in &rows {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            boot.instructions(f.ticks),
            f.flash_steps,
            f.stack,
            f.stack_total,
            f.heap_peak,
            f.heap_held,
            f.allocations,
            f.allocated,
            f.largest
        );
    }
    for (name, f) in &rows {
        println!("{name}: allocation sizes in order: {:?}", f.sizes);
    }
    // Nothing leaks: once the module's own buffers have grown to the largest frame, repeated
    // requests leave the heap as they found it.
    // (The reset above gave a fresh module: the first round may still grow them.)
    for round in 0..20 {
        for req in [
            Request::GetInfo,
            query(&i),
            Request::Challenge(Challenge([8; 32])),
        ] {
            let (_, f) = ask(&mut u, &req);
            if round > 0 {
                assert_eq!(f.heap_held, 0, "{req:?} kept {} heap bytes", f.heap_held);
            }
        }
    }
    // Plausibility, not goals (the goals are in docs/benchmarks.md): every call was measured.
    for (name, f) in &rows {
        assert!(f.ticks > 0 && f.stack > 0, "{name} was not measured");
        assert!(
            f.stack_total < boot.painted_stack,
            "{name} ran past the painted stack"
        );
    }
}
