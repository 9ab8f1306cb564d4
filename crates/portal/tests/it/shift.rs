//! A shift on a PC shared by two factories: each factory's journal holds only its own
//! records, a journal from before journals were kept per factory is shared out by the server's
//! word, and a report the server refuses for good is final: shown as refused, never pending,
//! never sent again.

use imprint_api::ErrorCode;
use imprint_core::{FactoryId, ProductCode};
use imprint_device::sim::SimDevice;
use imprint_portal::state::diagnose::Severity;
use imprint_portal::state::journal::{Journal, Step};
use imprint_portal::station::{Phase, Reconciled, provision, reconcile, refuses_for_good};

use crate::harness::{InProcess, Recorder, SimLink};

/// [`crate::flow::run`], its result only.
async fn run(
    dev: &mut SimDevice,
    server: &InProcess,
    journal: &mut Journal,
) -> Result<imprint_portal::station::Success, imprint_portal::station::Failure> {
    crate::flow::run(dev, server, journal).await.0
}

async fn reconciled(server: &InProcess, journal: &mut Journal) -> Reconciled {
    let cell = std::cell::RefCell::new(std::mem::take(journal));
    let r = reconcile(server, &cell).await;
    *journal = cell.into_inner();
    r
}

fn fa() -> FactoryId {
    FactoryId::new("fa").unwrap()
}

/// What the shared PC did before journals were per factory: ben's unit got one of
/// ana's records, and the server refused its report. That refusal is final.
#[tokio::test]
async fn a_report_refused_for_good_is_final_and_never_pending() {
    let mut server = InProcess::new(5).await;
    let mut journal = Journal::of(fa());
    server.fetch(&mut journal, 2).await;
    server.sign_in_as("ben", "password-456").await;
    let mut dev = SimDevice::demo(1);
    let f = run(&mut dev, &server, &mut journal).await.unwrap_err();
    assert_eq!(f.phase, Phase::Report);
    assert_eq!(f.diagnosis.title, "Report refused");
    assert_eq!(f.diagnosis.severity, Severity::SetAside);
    assert!(f.diagnosis.detail.contains("not_your_record"), "{f:?}");
    assert_eq!(journal.unreported().count(), 0, "a refusal is not pending");
    assert_eq!(journal.refused().count(), 1);
    assert!(matches!(
        &journal.refused().next().unwrap().step,
        Step::Refused {
            code: ErrorCode::NotYourRecord,
            ..
        }
    ));
    // Not sent again: neither by the reconciler nor when the unit is plugged in again.
    server.calls.borrow_mut().clear();
    let r = reconciled(&server, &mut journal).await;
    assert_eq!((r.recorded, r.pending, r.refused.len()), (0, 0, 0));
    let again = run(&mut dev, &server, &mut journal).await.unwrap_err();
    assert_eq!(again.diagnosis.title, "Report refused");
    assert!(
        server.calls.borrow().is_empty(),
        "{:?}",
        server.calls.borrow()
    );
    // The stored journal keeps it as refused.
    let back = Journal::from_json(&journal.to_json().unwrap()).unwrap();
    assert_eq!(back.refused().count(), 1);
    assert!(server.installed().await.is_empty());
}

/// Written offline, then reported by the reconciler to a server that refuses it for good:
/// it leaves the pending count; a refusal that is not the report's (the session ended) keeps
/// every report pending.
#[tokio::test]
async fn the_reconciler_settles_refusals_and_holds_on_a_lost_session() {
    let mut server = InProcess::new(5).await;
    let mut journal = Journal::of(fa());
    server.fetch(&mut journal, 3).await;
    server.online.set(false);
    for n in 1..=2 {
        let mut dev = SimDevice::demo(n);
        let f = run(&mut dev, &server, &mut journal).await.unwrap_err();
        assert_eq!(f.phase, Phase::Report);
    }
    assert_eq!(journal.unreported().count(), 2);
    server.online.set(true);
    // The session ends (signed out elsewhere): nothing is refused for good, all stay pending.
    server.client().logout().await.unwrap();
    let r = reconciled(&server, &mut journal).await;
    assert!(r.refused.is_empty(), "{r:?}");
    assert!(
        matches!(
            &r.held,
            Some(imprint_portal::station::ServerError::Refused {
                code: ErrorCode::Unauthorized,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(r.pending, 2);
    // Another factory's technician sends them: refused for good, both.
    server.sign_in_as("ben", "password-456").await;
    let r = reconciled(&server, &mut journal).await;
    assert_eq!((r.recorded, r.pending, r.refused.len()), (0, 0, 2), "{r:?}");
    assert_eq!(journal.refused().count(), 2);
    // Signed in again as ana: nothing is sent again.
    server.sign_in_as("ana", "password-123").await;
    let r = reconciled(&server, &mut journal).await;
    assert_eq!((r.recorded, r.pending, r.refused.len()), (0, 0, 0));
}

/// A journal stored before journals were per factory is shared out at each factory's sign-in
/// by the server's list of that factory's open records; finished entries are dropped.
#[tokio::test]
async fn an_unowned_journal_is_shared_out_by_the_servers_word() {
    let mut server = InProcess::new(10).await;
    let mut old = Journal::default();
    server.fetch(&mut old, 3).await;
    server.sign_in_as("ben", "password-456").await;
    server.fetch(&mut old, 2).await;
    // One of ana's is written and finished, one of ben's is mid-way.
    server.sign_in_as("ana", "password-123").await;
    let mut ana = Journal::of(fa());
    ana.adopt(&mut old, |_| false);
    let mut dev = SimDevice::demo(1);
    let cell = std::cell::RefCell::new(std::mem::take(&mut old));
    let mut link = SimLink {
        dev: &mut dev,
        seq: 0,
    };
    provision(
        &mut link,
        &server,
        &cell,
        &crate::flow::setup(),
        &mut Recorder::default(),
    )
    .await
    .unwrap();
    old = cell.into_inner();
    let bens: Vec<_> = old.entries[2..4]
        .iter()
        .map(|e| e.record.apparatus_id)
        .collect();
    old.install_sent(&bens[0], "unit-b").unwrap();
    assert_eq!(old.entries.len(), 5);

    let ana_open = open(&server).await;
    assert_eq!(ana.adopt(&mut old, |id| ana_open.contains(id)), 2);
    assert_eq!(crate::journal::ready(&ana), 2);
    assert_eq!(old.entries.len(), 2, "ben's two wait for him");
    server.sign_in_as("ben", "password-456").await;
    let ben_open = open(&server).await;
    let mut ben = Journal::of(FactoryId::new("fb").unwrap());
    assert_eq!(ben.adopt(&mut old, |id| ben_open.contains(id)), 2);
    assert!(old.entries.is_empty());
    assert_eq!(ben.units_mid_way().collect::<Vec<_>>(), ["unit-b"]);
    // ben's unit-b resumes from his own journal; ana's records are not his to take.
    assert_eq!(crate::journal::ready(&ben), 1);
    assert!(
        ben.entries
            .iter()
            .all(|e| bens.contains(&e.record.apparatus_id))
    );
}

#[test]
fn only_refusals_of_the_report_itself_are_final() {
    for code in ErrorCode::ALL {
        let final_ = refuses_for_good(code);
        let expected = matches!(
            code,
            ErrorCode::NotYourRecord
                | ErrorCode::NotIssued
                | ErrorCode::AlreadyInstalled
                | ErrorCode::SerialTaken
                | ErrorCode::BadReceipt
                | ErrorCode::UnknownApparatus
        );
        assert_eq!(final_, expected, "{code}");
    }
}

async fn open(s: &InProcess) -> std::collections::HashSet<imprint_core::ApparatusId> {
    s.client()
        .open_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.apparatus_id)
        .collect()
}

/// Signing out with records unused: they can be handed back to the server, which then issues
/// them to anyone; a record whose install was sent is never handed back.
#[tokio::test]
async fn unused_records_are_handed_back_and_mid_way_ones_kept() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::of(fa());
    server.fetch(&mut journal, 3).await;
    let ids: Vec<_> = journal.unused().map(|r| r.apparatus_id).collect();
    journal.install_sent(&ids[0], "unit-1").unwrap();
    let unused: Vec<_> = journal.unused().map(|r| r.apparatus_id).collect();
    assert_eq!(unused, ids[1..]);
    for id in &unused {
        server.client().release(*id).await.unwrap();
        journal.released(id).unwrap();
    }
    assert!(journal.released(&ids[0]).is_err(), "a sent record stays");
    assert_eq!(journal.units_mid_way().collect::<Vec<_>>(), ["unit-1"]);
    assert_eq!(crate::journal::ready(&journal), 0);
    assert_eq!(open(&server).await.len(), 1, "the server has two back");
}

/// A unit with a duplicated serial label: its record installs, the server refuses the report
/// (one identity per product serial), and the refusal is final.
#[tokio::test]
async fn a_duplicated_serial_label_is_refused_for_good() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::of(fa());
    server.fetch(&mut journal, 3).await;
    let mut first = SimDevice::demo(7);
    run(&mut first, &server, &mut journal).await.unwrap();
    let mut dup = SimDevice::duplicate_serial(7);
    assert_ne!(first.usb_serial(), dup.usb_serial(), "a chip of its own");
    let f = run(&mut dup, &server, &mut journal).await.unwrap_err();
    assert_eq!(f.diagnosis.title, "Report refused");
    assert!(f.diagnosis.detail.contains("serial_taken"), "{f:?}");
    assert_eq!(
        (journal.unreported().count(), journal.refused().count()),
        (0, 1)
    );
    assert_eq!(server.installed().await.len(), 1);
}

/// What the header counts as ready: pool records of the line's product a unit may take now;
/// and a refused unit is finished, not mid-way.
#[test]
fn ready_counts_what_a_unit_may_take_now_and_refused_units_are_not_mid_way() {
    use crate::journal::{id, rec};
    let mut j = Journal::of(fa());
    let mut leased = rec("L-1", 1);
    leased.not_after_ms = Some(1_000);
    let mut other = rec("O-1", 1);
    other.product_code = ProductCode::new("OTHER").unwrap();
    j.add_records([rec("A", 1), leased, other, rec("R", 1)]);
    let cam = ProductCode::new("CAM-X100").unwrap();
    assert_eq!(j.ready(&cam, 500), 3);
    assert_eq!(
        j.ready(&cam, 2_000),
        2,
        "an expired lease's record is not ready"
    );
    j.install_sent(&id("R"), "u").unwrap();
    j.installed(
        &id("R"),
        "u",
        imprint_core::ProductSerial::new("SN-1").unwrap(),
        imprint_core::Receipt([1; 32]),
    )
    .unwrap();
    assert_eq!(j.units_mid_way().collect::<Vec<_>>(), ["u"]);
    j.report_refused(&id("R"), ErrorCode::BadReceipt, "no".into())
        .unwrap();
    assert_eq!(j.units_mid_way().count(), 0, "refused: finished, set aside");
}
