//! Locking units (issue #17, finding 13): where the product locks its units, the station
//! locks each one after its closed-loop check and records the lock with the server; a lock
//! that fails, a reply lost to a pulled cable and a server gone at the lock's record each end
//! with the unit locked once and the lock recorded once.

use imprint_core::DeviceState;
use imprint_device::sim::{Fault, SimDevice};
use imprint_portal::state::diagnose::Severity;
use imprint_portal::state::journal::{Journal, Step};
use imprint_portal::station::{Phase, Setup, reconcile};

use crate::harness::{InProcess, Recorder};

fn locking() -> Setup {
    Setup {
        lock_units: true,
        ..crate::flow::setup()
    }
}

/// Provisions `dev` on a line whose product locks its units.
async fn run(
    dev: &mut SimDevice,
    server: &InProcess,
    journal: &mut Journal,
) -> (
    Result<imprint_portal::station::Success, imprint_portal::station::Failure>,
    Recorder,
) {
    crate::flow::run_with(&locking(), dev, server, journal).await
}

async fn line() -> (InProcess, Journal) {
    let server = InProcess::new(5).await;
    server.lock_units("CAM-X100", true).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 3).await;
    (server, journal)
}

#[tokio::test]
async fn a_unit_of_a_locking_product_is_locked_after_its_check_and_the_lock_recorded() {
    let (server, mut journal) = line().await;
    let mut dev = SimDevice::demo(1);
    server.calls.borrow_mut().clear();
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    let ok = r.unwrap();
    assert_eq!(
        rec.phases,
        Phase::ALL.to_vec(),
        "the lock comes after the check"
    );
    assert_eq!(
        *server.calls.borrow(),
        [
            "POST /api/v1/report",
            "POST /api/v1/auth/verify",
            "POST /api/v1/locked"
        ]
    );
    assert!(matches!(dev.state(), DeviceState::Locked(_)));
    assert_eq!(server.locked().await, vec![ok.apparatus_id]);
    assert!(matches!(
        journal.get(&ok.apparatus_id).unwrap().step,
        Step::Locked { recorded: true, .. }
    ));
    // The unit is finished: plugged again, nothing is sent to it or the server.
    server.calls.borrow_mut().clear();
    let (again, rec) = run(&mut dev, &server, &mut journal).await;
    assert!(again.unwrap().resumed);
    assert!(server.calls.borrow().is_empty());
    assert!(!rec.phases.contains(&Phase::Lock));
    // A locked unit refuses another record of its model, as the protocol says.
    let id = ok.apparatus_id;
    let mut fresh = Journal::default();
    server.fetch(&mut fresh, 1).await;
    let (refused, _) = run(&mut dev, &server, &mut fresh).await;
    assert!(refused.is_err());
    assert_eq!(server.locked().await, vec![id]);
}

#[tokio::test]
async fn a_product_that_does_not_lock_leaves_its_units_unlocked() {
    let server = InProcess::new(3).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 1).await;
    let mut dev = SimDevice::demo(1);
    let (r, rec) = crate::flow::run(&mut dev, &server, &mut journal).await;
    r.unwrap();
    assert!(!rec.phases.contains(&Phase::Lock));
    assert!(matches!(dev.state(), DeviceState::Provisioned(_)));
    assert!(server.locked().await.is_empty());
}

#[tokio::test]
async fn a_lock_the_unit_fails_to_write_is_shown_with_its_fix_and_done_on_replug() {
    let (server, mut journal) = line().await;
    let mut dev = SimDevice::demo(1);
    dev.set_fault(Fault::LockWriteFails);
    let (r, _) = run(&mut dev, &server, &mut journal).await;
    let f = r.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.severity, f.diagnosis.title.as_str()),
        (Phase::Lock, Severity::Retry, "Lock not written")
    );
    assert!(
        f.diagnosis.fix.contains("plug it back in"),
        "{}",
        f.diagnosis.fix
    );
    assert!(
        matches!(dev.state(), DeviceState::Provisioned(_)),
        "installed, not locked"
    );
    assert_eq!(server.installed().await.len(), 1, "the report stands");
    assert!(server.locked().await.is_empty());
    // Replugged: no second install, report or check; the lock is written and recorded.
    dev.unplug();
    dev.replug();
    server.calls.borrow_mut().clear();
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    let ok = r.unwrap();
    assert!(ok.resumed);
    assert_eq!(
        rec.phases,
        [Phase::Info, Phase::Record, Phase::Lock, Phase::Done]
    );
    assert_eq!(*server.calls.borrow(), ["POST /api/v1/locked"]);
    assert!(matches!(dev.state(), DeviceState::Locked(_)));
    assert_eq!(server.locked().await, vec![ok.apparatus_id]);
    assert_eq!(server.installed().await.len(), 1);
}

#[tokio::test]
async fn a_lock_reply_lost_to_a_pulled_cable_is_sent_again_and_the_unit_answers_locked() {
    let (server, mut journal) = line().await;
    let mut dev = SimDevice::demo(1);
    dev.set_fault(Fault::UnplugAfterLock);
    let f = run(&mut dev, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.severity),
        (Phase::Lock, Severity::Retry)
    );
    // The unit stored the lock before the cable went: it is locked, the journal does not
    // know it yet, and the server has not been told.
    dev.replug();
    assert!(matches!(dev.state(), DeviceState::Locked(_)));
    assert!(server.locked().await.is_empty());
    let ok = run(&mut dev, &server, &mut journal).await.0.unwrap();
    assert!(matches!(dev.state(), DeviceState::Locked(_)));
    assert_eq!(server.locked().await, vec![ok.apparatus_id]);
}

#[tokio::test]
async fn a_lock_the_server_could_not_record_is_owed_and_sent_when_it_answers() {
    let (server, mut journal) = line().await;
    server.unreachable.borrow_mut().push("/locked");
    let mut dev = SimDevice::demo(1);
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    // The unit is done: locked, reported and checked. Only the server's record of the lock
    // is owed.
    let ok = r.unwrap();
    assert!(matches!(dev.state(), DeviceState::Locked(_)));
    assert!(
        rec.log
            .iter()
            .any(|l| l.contains("has not recorded the lock"))
    );
    assert_eq!(journal.unrecorded_locks().count(), 1);
    // Owed locks survive a reload, as pending reports do.
    let mut journal = Journal::from_json(&journal.to_json().unwrap()).unwrap();
    assert_eq!(journal.unrecorded_locks().count(), 1);
    // Trimming finished entries never drops an owed lock.
    for n in 2..=3 {
        server.unreachable.borrow_mut().clear();
        let mut other = SimDevice::demo(n);
        run(&mut other, &server, &mut journal).await.0.unwrap();
    }
    assert_eq!(journal.unrecorded_locks().count(), 1);
    let cell = std::cell::RefCell::new(journal);
    server.online.set(false);
    let r = reconcile(&server, &cell).await;
    assert_eq!((r.locks_recorded, r.locks_pending), (0, 1));
    server.online.set(true);
    let r = reconcile(&server, &cell).await;
    assert_eq!((r.locks_recorded, r.locks_pending), (1, 0));
    let r = reconcile(&server, &cell).await;
    assert_eq!(
        (r.locks_recorded, r.locks_pending),
        (0, 0),
        "nothing sent twice"
    );
    let locked = server.locked().await;
    assert_eq!(locked.len(), 3);
    assert!(locked.contains(&ok.apparatus_id));
}

#[tokio::test]
async fn a_unit_is_never_locked_before_its_check_passes() {
    let (server, mut journal) = line().await;
    // The server is gone at the report: the unit is written, not checked, and not locked (a
    // unit locked with an identity the server then refused could never be provisioned again).
    server.online.set(false);
    let mut dev = SimDevice::demo(1);
    let f = run(&mut dev, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(f.phase, Phase::Report);
    assert!(matches!(dev.state(), DeviceState::Provisioned(_)));
    // A lock is refused by the server before the report too (code not_installed).
    let id = journal.unreported().next().unwrap().record.apparatus_id;
    let serial = dev.config().product_serial;
    server.online.set(true);
    let e = imprint_portal::station::Server::locked(&server, &id, &serial)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            imprint_portal::station::ServerError::Refused {
                code: imprint_api::ErrorCode::NotInstalled,
                ..
            }
        ),
        "{e:?}"
    );
    // Back online: reported, checked, then locked.
    let ok = run(&mut dev, &server, &mut journal).await.0.unwrap();
    assert!(matches!(dev.state(), DeviceState::Locked(_)));
    assert_eq!(server.locked().await, vec![ok.apparatus_id]);
}
