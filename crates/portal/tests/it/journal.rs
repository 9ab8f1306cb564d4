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

#[test]
fn the_journal_survives_storage_and_a_damaged_store_is_reported() {
    let mut j = Journal::default();
    j.add_records([rec("A", 1), rec("B", 1)]);
    j.install_sent("A", "u").unwrap();
    let text = j.to_json();
    assert_eq!(Journal::from_json(&text).unwrap(), j);
    assert!(text.contains("\"step\":\"install_sent\""));
    let err = Journal::from_json("{\"entries\": [tru").unwrap_err();
    assert!(err.contains("damaged"));
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
