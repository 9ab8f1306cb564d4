//! The per-unit flow with simulated units and the real server: happy path, every fault, a
//! reload mid-flow, an outage, and twenty units with faults mixed in.

use std::collections::HashSet;

use imprint_device::sim::{Fault, SimDevice};
use imprint_portal::state::diagnose::Severity;
use imprint_portal::state::journal::{Journal, Step};
use imprint_portal::station::{Phase, Setup, provision};

use crate::harness::{InProcess, Recorder, SimLink};

pub fn setup() -> Setup {
    Setup {
        product_code: imprint_core::ProductCode::new("CAM-X100").unwrap(),
        chip_bound: false,
        closed_loop: true,
        lock_units: false,
        now_ms: 0,
    }
}

/// Every phase but the lock: the flow of a product that does not lock its units.
pub fn phases_without_lock() -> Vec<Phase> {
    Phase::steps(false).to_vec()
}

/// Recorded now and still pending, of a reconcile pass that met no refusal and no answer it
/// did not understand.
fn counts(r: imprint_portal::station::Reconciled) -> (usize, usize) {
    assert!(r.refused.is_empty() && r.unintelligible.is_none(), "{r:?}");
    (r.recorded, r.pending)
}

/// Provisions `dev` with the model-bound line's setup; the journal as it is after.
pub async fn run(
    dev: &mut SimDevice,
    server: &InProcess,
    journal: &mut Journal,
) -> (
    Result<imprint_portal::station::Success, imprint_portal::station::Failure>,
    Recorder,
) {
    run_with(&setup(), dev, server, journal).await
}

/// Provisions `dev` with `setup`; the journal as it is after.
pub async fn run_with(
    setup: &Setup,
    dev: &mut SimDevice,
    server: &InProcess,
    journal: &mut Journal,
) -> (
    Result<imprint_portal::station::Success, imprint_portal::station::Failure>,
    Recorder,
) {
    let mut rec = Recorder::default();
    let mut link = SimLink { dev, seq: 0 };
    let cell = std::cell::RefCell::new(std::mem::take(journal));
    let r = provision(&mut link, server, &cell, setup, &mut rec).await;
    *journal = cell.into_inner();
    (r, rec)
}

#[tokio::test]
async fn a_unit_goes_through_every_phase_to_a_verified_identity() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 3).await;
    let mut dev = SimDevice::demo(1);
    server.calls.borrow_mut().clear();
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    let ok = r.unwrap();
    assert_eq!(rec.phases, crate::flow::phases_without_lock());
    // Two round trips per unit: the report brings the closed-loop challenge with it.
    assert_eq!(
        *server.calls.borrow(),
        ["POST /api/v1/report", "POST /api/v1/auth/verify"]
    );
    assert!(!ok.resumed);
    assert_eq!(ok.attempts, 1);
    assert_eq!(
        server.installed().await,
        vec![(ok.apparatus_id, ok.product_serial)]
    );
    assert!(matches!(
        journal.get(&ok.apparatus_id).unwrap().step,
        Step::Verified { .. }
    ));
    assert_eq!(crate::journal::ready(&journal), 2);
    // The saved journal is what localStorage would hold: no secret, only sealed blobs.
    let saved = rec.saved.unwrap();
    assert!(Journal::from_json(&saved).unwrap() == journal);
    // Plugging the same unit again is a no-op success.
    let (again, _) = run(&mut dev, &server, &mut journal).await;
    assert_eq!(again.unwrap().apparatus_id, ok.apparatus_id);
    assert_eq!(server.installed().await.len(), 1);
}

#[tokio::test]
async fn a_reply_lost_to_an_unplug_is_recovered_from_the_unit_itself() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 2).await;
    let mut dev = SimDevice::demo(1);
    dev.set_fault(Fault::UnplugAfterInstall);
    let (r, _) = run(&mut dev, &server, &mut journal).await;
    let f = r.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.severity),
        (Phase::Install, Severity::Retry)
    );
    assert!(f.diagnosis.fix.contains("Plug the unit back in"));
    // The record stays bound to this unit: another unit gets the other record.
    let bound = journal.in_doubt().next().unwrap().record.apparatus_id;
    let mut other = SimDevice::demo(2);
    let (r2, _) = run(&mut other, &server, &mut journal).await;
    assert_ne!(r2.unwrap().apparatus_id, bound);
    // Replugged: the unit says it holds the record; its receipt is reported; nothing written twice.
    dev.replug();
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    let ok = r.unwrap();
    assert!(ok.resumed);
    assert_eq!((ok.apparatus_id.as_str(), ok.attempts), (bound.as_str(), 1));
    assert!(rec.log.iter().any(|l| l.contains("already holds")));
    assert_eq!(server.installed().await.len(), 2);
}

#[tokio::test]
async fn a_request_lost_before_the_write_is_written_again() {
    let server = InProcess::new(3).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 1).await;
    let mut dev = SimDevice::demo(1);
    dev.set_fault(Fault::UnplugBeforeInstall);
    assert!(run(&mut dev, &server, &mut journal).await.0.is_err());
    dev.replug();
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    let ok = r.unwrap();
    assert_eq!(ok.attempts, 2);
    assert!(rec.log.iter().any(|l| l.contains("does not hold")));
}

#[tokio::test]
async fn a_power_cut_mid_write_and_a_reload_lose_nothing() {
    let server = InProcess::new(3).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 1).await;
    let mut dev = SimDevice::demo(1);
    dev.set_fault(Fault::PowerCutDuringInstall(200));
    let (r, rec) = run(&mut dev, &server, &mut journal).await;
    assert!(r.is_err());
    // The tab reloads: the journal comes back from storage, nothing else.
    let mut reloaded = Journal::from_json(&rec.saved.unwrap()).unwrap();
    assert_eq!(reloaded.in_doubt().count(), 1);
    dev.replug();
    let ok = run(&mut dev, &server, &mut reloaded).await.0.unwrap();
    assert!(ok.resumed);
    assert_eq!(server.installed().await.len(), 1);
}

#[tokio::test]
async fn garbage_truncated_wrong_model_and_taken_units_are_refused_with_their_fix() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 2).await;
    let mut g = SimDevice::demo(1);
    g.set_fault(Fault::GarbageReplies);
    let f = run(&mut g, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.title.as_str()),
        (Phase::Info, "The unit answers with garbage")
    );
    let mut t = SimDevice::demo(2);
    t.set_fault(Fault::TruncatedReplies);
    let f = run(&mut t, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(f.diagnosis.title, "The unit does not answer");
    let mut w = SimDevice::wrong_model(3);
    let f = run(&mut w, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(f.diagnosis.title, "Wrong model");
    assert!(f.diagnosis.detail.contains("OTHER-MODEL"));
    for locked in [false, true] {
        let mut p = SimDevice::already_provisioned(4, "OLD-1", locked);
        let f = run(&mut p, &server, &mut journal).await.0.unwrap_err();
        assert_eq!(f.diagnosis.title, "Unit already provisioned");
        assert_eq!(f.diagnosis.severity, Severity::SetAside);
    }
    assert_eq!(
        crate::journal::ready(&journal),
        2,
        "no record was consumed by a refused unit"
    );
    assert!(server.installed().await.is_empty());
}

#[tokio::test]
async fn an_outage_keeps_the_receipt_and_reports_it_later() {
    let server = InProcess::new(3).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 2).await;
    server.online.set(false);
    let mut dev = SimDevice::demo(1);
    let f = run(&mut dev, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.title.as_str()),
        (Phase::Report, "Server unreachable")
    );
    assert_eq!(
        journal.unreported().count(),
        1,
        "the unit is written and its receipt kept"
    );
    server.online.set(true);
    let ok = run(&mut dev, &server, &mut journal).await.0.unwrap();
    assert!(ok.resumed);
    assert_eq!(server.installed().await.len(), 1);
}

#[tokio::test]
async fn twenty_units_with_faults_are_each_installed_exactly_once() {
    let server = InProcess::new(30).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 24).await;
    let mut units: Vec<SimDevice> = (1..=20).map(SimDevice::demo).collect();
    for (i, u) in units.iter_mut().enumerate() {
        u.set_fault(match i % 5 {
            1 => Fault::UnplugAfterInstall,
            2 => Fault::UnplugBeforeInstall,
            3 => Fault::PowerCutDuringInstall(100 + i * 13),
            _ => Fault::None,
        });
    }
    let mut saved = journal.to_json().unwrap();
    for round in 0..4 {
        for u in units.iter_mut() {
            u.replug();
            // Every few units the tab "reloads": work continues from the saved journal.
            let mut j = if round % 2 == 1 {
                Journal::from_json(&saved).unwrap()
            } else {
                journal.clone()
            };
            let (_, rec) = run(u, &server, &mut j).await;
            if let Some(s) = rec.saved {
                saved = s;
            }
            journal = j;
        }
    }
    let installed = server.installed().await;
    assert_eq!(installed.len(), 20);
    let ids: HashSet<_> = installed.iter().map(|(id, _)| id).collect();
    let serials: HashSet<_> = installed.iter().map(|(_, s)| s).collect();
    assert_eq!((ids.len(), serials.len()), (20, 20));
    let verified = journal
        .entries
        .iter()
        .filter(|e| matches!(e.step, Step::Verified { .. }))
        .count();
    assert_eq!(verified, 20);
    assert_eq!(crate::journal::ready(&journal), 4);
}

#[tokio::test]
async fn reports_queued_during_an_outage_are_reconciled_when_the_server_returns() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 3).await;
    server.online.set(false);
    for n in 1..=3 {
        let mut dev = SimDevice::demo(n);
        let f = run(&mut dev, &server, &mut journal).await.0.unwrap_err();
        assert_eq!(f.phase, Phase::Report);
    }
    let cell = std::cell::RefCell::new(journal);
    assert_eq!(
        counts(imprint_portal::station::reconcile(&server, &cell).await),
        (0, 3),
        "still offline: all pending"
    );
    server.online.set(true);
    assert_eq!(
        counts(imprint_portal::station::reconcile(&server, &cell).await),
        (3, 0)
    );
    assert_eq!(
        counts(imprint_portal::station::reconcile(&server, &cell).await),
        (0, 0),
        "idempotent"
    );
    assert_eq!(server.installed().await.len(), 3);
}

#[tokio::test]
async fn a_lease_is_accepted_only_with_the_pinned_key_and_its_records_expire() {
    use imprint_portal::state::lease::accept;
    let server = InProcess::new(10).await;
    let pinned = server.client().lease_key().await.unwrap();
    let lease = server
        .client()
        .lease(imprint_core::ProductCode::new("CAM-X100").unwrap(), 4, 8)
        .await
        .unwrap();
    let now = lease.issued_at_ms;
    let records = accept(&lease, &pinned, now).unwrap();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r.not_after_ms == Some(lease.not_after_ms))
    );
    // Tampered, expired, or signed by another key: refused with a reason.
    let mut longer = lease.clone();
    longer.not_after_ms += 3_600_000;
    assert!(
        accept(&longer, &pinned, now)
            .unwrap_err()
            .contains("altered")
    );
    assert!(
        accept(&lease, &pinned, lease.not_after_ms + 1)
            .unwrap_err()
            .contains("expired")
    );
    assert!(accept(&lease, &[0x11; 32], now).is_err());
    // Offline: units are written from the lease; reports wait; nothing is lost.
    let mut journal = Journal::default();
    journal.add_records(records);
    server.online.set(false);
    let mut dev = SimDevice::demo(1);
    let f = run(&mut dev, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(f.phase, Phase::Report);
    server.online.set(true);
    let cell = std::cell::RefCell::new(journal);
    assert_eq!(
        counts(imprint_portal::station::reconcile(&server, &cell).await),
        (1, 0)
    );
    assert_eq!(server.installed().await.len(), 1);
}
