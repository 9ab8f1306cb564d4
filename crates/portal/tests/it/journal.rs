//! The journal's rules.

use imprint_portal::state::journal::{Journal, JournalError, Record, Step};

fn rec(id: &str, key: u32) -> Record {
    Record {
        apparatus_id: id.into(),
        key_id: key,
        sealed: "00".into(),
        product_code: "CAM-X100".into(),
        not_after_ms: None,
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
    assert_eq!(j.next_for("CAM-X100", &[2], 0).unwrap().apparatus_id, "B");
    assert_eq!(j.next_for("CAM-X100", &[1], 0).unwrap().apparatus_id, "A");
    assert!(j.next_for("OTHER", &[1], 0).is_none());
    j.install_sent("A", "unit-1").unwrap();
    assert_eq!(j.next_for("CAM-X100", &[1], 0).unwrap().apparatus_id, "C");
    assert_eq!(j.open_for_unit("unit-1").unwrap().record.apparatus_id, "A");
    assert_eq!(
        j.install_sent("A", "unit-2"),
        Err(JournalError::WrongStep {
            apparatus_id: "A".into(),
            expected: "pool (or sent to this unit)"
        })
    );
    j.install_sent("A", "unit-1").unwrap();
    assert_eq!(j.get("A").unwrap().attempts, 2);
}

#[test]
fn steps_only_move_forward_in_order() {
    let mut j = Journal::default();
    j.add_records([rec("A", 1)]);
    assert!(j.reported("A").is_err());
    assert!(j.installed("A", "u", "SN", "ff").is_err(), "not sent yet");
    j.install_sent("A", "u").unwrap();
    assert!(j.installed("A", "other-unit", "SN", "ff").is_err());
    j.installed("A", "u", "SN", "ff").unwrap();
    assert_eq!(j.unreported().count(), 1);
    assert!(j.verified("A").is_err());
    j.reported("A").unwrap();
    j.verified("A").unwrap();
    assert!(matches!(j.get("A").unwrap().step, Step::Verified { .. }));
    assert!(j.open_for_unit("u").is_none());
    assert_eq!(j.for_unit("u").unwrap().record.apparatus_id, "A");
    assert!(matches!(
        j.back_to_pool("A"),
        Err(JournalError::WrongStep { .. })
    ));
    assert!(matches!(j.reported("Z"), Err(JournalError::Unknown(_))));
}

#[test]
fn a_refused_unit_gives_its_record_back() {
    let mut j = Journal::default();
    j.add_records([rec("A", 1)]);
    j.install_sent("A", "u").unwrap();
    assert_eq!(j.in_doubt().count(), 1);
    j.back_to_pool("A").unwrap();
    assert_eq!((j.pool_size(), j.in_doubt().count()), (1, 0));
}

/// A journal with a record at every step: the one stored in `tests/vectors/journal.json`.
pub fn every_step() -> Journal {
    let mut leased = rec("A-POOL", 1);
    leased.not_after_ms = Some(1_767_225_600_000);
    let mut j = Journal::default();
    j.add_records([
        leased,
        rec("B-SENT", 1),
        rec("C-INST", 2),
        rec("D-REPT", 1),
        rec("E-VERI", 1),
    ]);
    j.install_sent("B-SENT", "u-1").unwrap();
    for (id, unit) in [("C-INST", "u-2"), ("D-REPT", "u-3"), ("E-VERI", "u-4")] {
        j.install_sent(id, unit).unwrap();
        j.installed(id, unit, &format!("SN-{unit}"), "ab12")
            .unwrap();
    }
    j.reported("D-REPT").unwrap();
    j.reported("E-VERI").unwrap();
    j.verified("E-VERI").unwrap();
    j
}

#[test]
fn the_journal_survives_storage_and_a_damaged_store_is_reported() {
    let j = every_step();
    let text = j.to_json();
    assert_eq!(Journal::from_json(&text).unwrap(), j);
    let err = Journal::from_json("{\"entries\": [tru").unwrap_err();
    assert!(err.contains("damaged"));
    let err = Journal::from_json("{\"entries\": [{\"step\": \"pool\"}]}").unwrap_err();
    assert!(
        err.contains("damaged"),
        "a field missing is damage too: {err}"
    );
}

#[test]
fn the_stored_format_is_the_one_in_the_vector_file() {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/journal.json")).unwrap();
    let text = file["text"].as_str().unwrap();
    assert_eq!(
        every_step().to_json(),
        text,
        "the journal's stored form changed: bump the storage key in web/storage.rs and regenerate"
    );
    assert_eq!(Journal::from_json(text).unwrap(), every_step());
}

#[test]
fn records_of_an_expired_lease_are_never_picked() {
    let mut j = Journal::default();
    let mut leased = rec("L-1", 1);
    leased.not_after_ms = Some(1_000);
    j.add_records([leased, rec("N-1", 1)]);
    assert_eq!(
        j.next_for("CAM-X100", &[1], 1_000).unwrap().apparatus_id,
        "L-1"
    );
    assert_eq!(
        j.next_for("CAM-X100", &[1], 1_001).unwrap().apparatus_id,
        "N-1"
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
        let id = format!("R-{i:04}");
        let unit = format!("u-{k}");
        j.install_sent(&id, &unit).unwrap();
        j.installed(&id, &unit, "SN", "ab").unwrap();
        j.reported(&id).unwrap();
        j.verified(&id).unwrap();
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
    assert!(j.get(&format!("R-{:04}", n - 1)).is_none());
    assert!(j.for_unit(&format!("u-{}", n - 1)).is_some());
    // The pool is untouched and still in fetch order.
    assert_eq!(j.pool_size(), 3);
    assert_eq!(
        j.next_for("CAM-X100", &[1], 0).unwrap().apparatus_id,
        format!("R-{n:04}")
    );
}
