//! The journal's rules.

use imprint_core::seal::MIN_SEALED_LEN;
use imprint_core::{ApparatusId, KeyId, ProductCode, ProductSerial, Receipt, SealedRecord};
use imprint_portal::state::journal::{Journal, JournalError, Record, Step};

pub fn id(s: &str) -> ApparatusId {
    ApparatusId::new(s).unwrap()
}

fn keys(k: &[u32]) -> Vec<KeyId> {
    k.iter().map(|k| KeyId::new(*k).unwrap()).collect()
}

fn cam() -> ProductCode {
    ProductCode::new("CAM-X100").unwrap()
}

/// The records ready for a CAM-X100 unit (the product of every model-bound record here), at
/// the start of time (no lease expired).
pub fn ready(j: &Journal) -> usize {
    j.ready(&cam(), 0)
}

fn sn(s: &str) -> ProductSerial {
    ProductSerial::new(s).unwrap()
}

/// A record whose sealed bytes have a valid header (format 1, model-bound, key `key`) and the
/// smallest valid length; the journal never opens it.
pub fn rec(name: &str, key: u32) -> Record {
    let mut bytes = vec![0x01, 0x00];
    bytes.extend_from_slice(&key.to_be_bytes());
    bytes.resize(MIN_SEALED_LEN, 0xcd);
    Record {
        apparatus_id: id(name),
        key_id: KeyId::new(key).unwrap(),
        sealed: SealedRecord::parse(&bytes).unwrap(),
        product_code: cam(),
        not_after_ms: None,
        chip: None,
    }
}

#[test]
fn records_are_taken_by_key_and_product_and_never_twice() {
    let mut j = Journal::default();
    assert_eq!(j.add_records([rec("A", 1), rec("B", 2), rec("C", 1)]), 3);
    assert_eq!(
        j.add_records([rec("A", 1)]),
        0,
        "a record fetched twice is kept once"
    );
    assert_eq!(
        j.next_for(&cam(), &keys(&[2]), 0).unwrap().apparatus_id,
        id("B")
    );
    assert_eq!(
        j.next_for(&cam(), &keys(&[1]), 0).unwrap().apparatus_id,
        id("A")
    );
    assert!(
        j.next_for(&ProductCode::new("OTHER").unwrap(), &keys(&[1]), 0)
            .is_none()
    );
    j.install_sent(&id("A"), "unit-1").unwrap();
    assert_eq!(
        j.next_for(&cam(), &keys(&[1]), 0).unwrap().apparatus_id,
        id("C")
    );
    assert_eq!(
        j.open_for_unit("unit-1").unwrap().record.apparatus_id,
        id("A")
    );
    assert_eq!(
        j.install_sent(&id("A"), "unit-2"),
        Err(JournalError::WrongStep {
            apparatus_id: id("A"),
            expected: "pool (or sent to this unit)"
        })
    );
    j.install_sent(&id("A"), "unit-1").unwrap();
    assert_eq!(j.get(&id("A")).unwrap().attempts, 2);
}

#[test]
fn steps_only_move_forward_in_order() {
    let mut j = Journal::default();
    j.add_records([rec("A", 1)]);
    assert!(j.reported(&id("A")).is_err());
    assert!(
        j.installed(&id("A"), "u", sn("SN"), Receipt([0xff; 32]))
            .is_err(),
        "not sent yet"
    );
    j.install_sent(&id("A"), "u").unwrap();
    assert!(
        j.installed(&id("A"), "other-unit", sn("SN"), Receipt([0xff; 32]))
            .is_err()
    );
    j.installed(&id("A"), "u", sn("SN"), Receipt([0xff; 32]))
        .unwrap();
    assert_eq!(j.unreported().count(), 1);
    assert!(j.verified(&id("A")).is_err());
    j.reported(&id("A")).unwrap();
    j.verified(&id("A")).unwrap();
    assert!(matches!(
        j.get(&id("A")).unwrap().step,
        Step::Verified { .. }
    ));
    assert!(j.open_for_unit("u").is_none());
    assert_eq!(j.for_unit("u").unwrap().record.apparatus_id, id("A"));
    assert!(matches!(
        j.back_to_pool(&id("A")),
        Err(JournalError::WrongStep { .. })
    ));
    assert!(matches!(
        j.reported(&id("Z")),
        Err(JournalError::Unknown(_))
    ));
}

#[test]
fn a_refused_unit_gives_its_record_back() {
    let mut j = Journal::default();
    j.add_records([rec("A", 1)]);
    j.install_sent(&id("A"), "u").unwrap();
    assert_eq!(j.in_doubt().count(), 1);
    j.back_to_pool(&id("A")).unwrap();
    assert_eq!((crate::journal::ready(&j), j.in_doubt().count()), (1, 0));
}

/// A journal with a record at every step: the one stored in `tests/vectors/journal.json`.
pub fn every_step() -> Journal {
    let mut leased = rec("A-POOL", 1);
    leased.not_after_ms = Some(1_767_225_600_000);
    let mut j = Journal::of(imprint_core::FactoryId::new("acme-sz").unwrap());
    j.add_records([
        leased,
        rec("B-SENT", 1),
        rec("C-INST", 2),
        rec("D-REPT", 1),
        rec("F-REFU", 1),
        rec("E-VERI", 1),
        rec("G-LOCK", 1),
        rec("H-LOCR", 1),
    ]);
    j.install_sent(&id("B-SENT"), "u-1").unwrap();
    for (name, unit) in [
        ("C-INST", "u-2"),
        ("D-REPT", "u-3"),
        ("F-REFU", "u-5"),
        ("E-VERI", "u-4"),
        ("G-LOCK", "u-6"),
        ("H-LOCR", "u-7"),
    ] {
        j.install_sent(&id(name), unit).unwrap();
        j.installed(
            &id(name),
            unit,
            sn(&format!("SN-{unit}")),
            Receipt([0xab; 32]),
        )
        .unwrap();
    }
    j.reported(&id("D-REPT")).unwrap();
    j.report_refused(
        &id("F-REFU"),
        imprint_api::ErrorCode::BadReceipt,
        "the receipt does not prove that a device opened F-REFU".into(),
    )
    .unwrap();
    for name in ["E-VERI", "G-LOCK", "H-LOCR"] {
        j.reported(&id(name)).unwrap();
        j.verified(&id(name)).unwrap();
    }
    // Locked, its lock owed to the server; and locked and recorded.
    j.locked(&id("G-LOCK")).unwrap();
    j.locked(&id("H-LOCR")).unwrap();
    j.lock_recorded(&id("H-LOCR")).unwrap();
    j
}

#[test]
fn the_journal_survives_storage_and_a_damaged_store_is_reported() {
    let j = every_step();
    let text = j.to_json().unwrap();
    assert_eq!(Journal::from_json(&text).unwrap(), j);
    let err = Journal::from_json("{\"entries\": [tru").unwrap_err();
    assert!(err.contains("damaged"));
    let err = Journal::from_json("{\"entries\": [{\"step\": \"pool\"}]}").unwrap_err();
    assert!(
        err.contains("damaged"),
        "a field missing is damage too: {err}"
    );
    // A record that is not a sealed record, or a receipt of the wrong length, is damage too:
    // never taken in and sent to a unit.
    let text = j.to_json().unwrap();
    let sealed = serde_json::to_value(&j.entries[0].record.sealed).unwrap();
    let bad_record = text.replacen(sealed.as_str().unwrap(), "00", 1);
    let err = Journal::from_json(&bad_record).unwrap_err();
    assert!(
        err.contains("damaged") && err.contains("sealed record"),
        "{err}"
    );
    let bad_receipt = text.replacen(&"ab".repeat(32), "ab12", 1);
    let err = Journal::from_json(&bad_receipt).unwrap_err();
    assert!(err.contains("64 hex digits"), "{err}");
}

/// Regenerates `tests/vectors/journal.json` from [`every_step`] (run with `--ignored` after
/// a deliberate change of the stored form, and bump the storage key).
#[test]
#[ignore = "writes the vector file"]
fn write_the_vector_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/journal.json");
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file["text"] = every_step().to_json().unwrap().into();
    std::fs::write(path, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
}

#[test]
fn the_stored_format_is_the_one_in_the_vector_file() {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/journal.json")).unwrap();
    let text = file["text"].as_str().unwrap();
    assert_eq!(
        every_step().to_json().unwrap(),
        text,
        "the journal's stored form changed: bump the storage key in web/storage.rs and regenerate"
    );
    assert_eq!(Journal::from_json(text).unwrap(), every_step());
    // A journal stored before units were locked reads as it was: same key, same form.
    let earlier = Journal::from_json(file["earlier"].as_str().unwrap()).unwrap();
    assert_eq!(earlier.unrecorded_locks().count(), 0);
    assert_eq!(earlier.entries.len(), 6);
    // One stored before the station checked the audit log: the same entries, nothing awaited
    // (units reported then are not asked for), same key.
    let before = Journal::from_json(file["before_audit"].as_str().unwrap()).unwrap();
    assert_eq!(before.entries, every_step().entries);
    assert!(before.audit.is_empty());
}

#[test]
fn records_of_an_expired_lease_are_never_picked() {
    let mut j = Journal::default();
    let mut leased = rec("L-1", 1);
    leased.not_after_ms = Some(1_000);
    j.add_records([leased, rec("N-1", 1)]);
    assert_eq!(
        j.next_for(&cam(), &keys(&[1]), 1_000).unwrap().apparatus_id,
        id("L-1")
    );
    assert_eq!(
        j.next_for(&cam(), &keys(&[1]), 1_001).unwrap().apparatus_id,
        id("N-1")
    );
}

#[test]
fn a_long_shift_keeps_the_journal_small_and_the_pool_in_order() {
    use imprint_portal::state::journal::KEEP_VERIFIED;
    let n = KEEP_VERIFIED + 50;
    let mut j = Journal::default();
    j.add_records((0..n + 3).map(|i| rec(&format!("R-{i:04}"), 1)));
    // Finish them out of fetch order: the last one first.
    let order: Vec<usize> = std::iter::once(n - 1).chain(0..n - 1).collect();
    for (k, i) in order.iter().enumerate() {
        let rid = id(&format!("R-{i:04}"));
        let unit = format!("u-{k}");
        j.install_sent(&rid, &unit).unwrap();
        j.installed(&rid, &unit, sn("SN"), Receipt([0xab; 32]))
            .unwrap();
        j.reported(&rid).unwrap();
        j.verified(&rid).unwrap();
    }
    let verified = j
        .entries
        .iter()
        .filter(|e| matches!(e.step, Step::Verified { .. }))
        .count();
    assert_eq!(
        verified, KEEP_VERIFIED,
        "only the most recent finished entries stay"
    );
    assert_eq!(j.entries.len(), KEEP_VERIFIED + 3);
    // The ones kept are the last to finish; the first to finish (R-0249) is gone.
    assert!(j.get(&id(&format!("R-{:04}", n - 1))).is_none());
    assert!(j.for_unit(&format!("u-{}", n - 1)).is_some());
    // The pool is untouched and still in fetch order.
    assert_eq!(crate::journal::ready(&j), 3);
    assert_eq!(
        j.next_for(&cam(), &keys(&[1]), 0).unwrap().apparatus_id,
        id(&format!("R-{n:04}"))
    );
}
