//! A chip-bound product through the station: each unit's record fetched for the chip it
//! reports, when it is plugged in; a unit that reports another unit's chip ID cannot open its
//! record; no record of one chip is ever offered to another unit; offline, nothing is written.

use imprint_core::ProductCode;
use imprint_device::sim::{DEMO_CHIP_PRODUCT, Fault, SimDevice};
use imprint_portal::state::diagnose::Severity;
use imprint_portal::state::journal::{Journal, Step};
use imprint_portal::station::{Failure, Phase, Setup, Success, provision};

use crate::harness::{InProcess, Recorder, SimLink};

fn setup() -> Setup {
    Setup {
        product_code: ProductCode::new(DEMO_CHIP_PRODUCT).unwrap(),
        chip_bound: true,
        closed_loop: true,
        lock_units: false,
        now_ms: 0,
    }
}

async fn run(
    dev: &mut SimDevice,
    server: &InProcess,
    journal: &mut Journal,
) -> (Result<Success, Failure>, Recorder) {
    let mut rec = Recorder::default();
    let mut link = SimLink { dev, seq: 0 };
    let cell = std::cell::RefCell::new(std::mem::take(journal));
    let r = provision(&mut link, server, &cell, &setup(), &mut rec).await;
    *journal = cell.into_inner();
    (r, rec)
}

fn issues(server: &InProcess) -> usize {
    server
        .calls
        .borrow()
        .iter()
        .filter(|c| c.as_str() == "POST /api/v1/issue")
        .count()
}

#[tokio::test]
async fn each_unit_gets_a_record_sealed_for_its_own_chip_as_it_is_plugged_in() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    let mut done = Vec::new();
    for n in 1..=3 {
        let mut dev = SimDevice::demo_chip_bound(n);
        let (r, rec) = run(&mut dev, &server, &mut journal).await;
        let ok = r.unwrap();
        assert_eq!(rec.phases, crate::flow::phases_without_lock());
        let entry = journal.get(&ok.apparatus_id).unwrap();
        assert_eq!(entry.record.chip, Some(dev.config().chip_id));
        assert!(entry.record.sealed.is_chip_bound());
        assert_eq!(entry.record.sealed.format(), imprint_core::seal::FORMAT_V2);
        assert!(matches!(entry.step, Step::Verified { .. }));
        done.push(ok.apparatus_id);
    }
    // One record per unit, fetched as it was plugged in; none waits in a pool.
    assert_eq!(issues(&server), 3);
    assert_eq!(crate::journal::ready(&journal), 0);
    assert_eq!(server.installed().await.len(), 3);
    assert!(done.iter().all(|id| id.as_str().starts_with("IMPC-")));
}

#[tokio::test]
async fn a_unit_that_reports_another_chip_cannot_open_the_record_and_the_record_waits_for_that_chip()
 {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    // Unit 1 claims the chip of unit 254 (its own ID with the last byte flipped).
    let mut clone = SimDevice::demo_chip_bound(1);
    clone.set_fault(Fault::ClaimsOtherChip);
    let (r, _) = run(&mut clone, &server, &mut journal).await;
    let f = r.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.severity),
        (Phase::Install, Severity::SetAside)
    );
    assert_eq!(f.diagnosis.title, "Record does not open in this unit");
    assert!(f.diagnosis.detail.contains("cloned or counterfeit"));
    assert_eq!(clone.state(), imprint_core::DeviceState::Blank);
    let claimed = SimDevice::demo_chip_bound(254).config().chip_id;
    let kept = journal.entries[0].clone();
    assert_eq!((kept.step, kept.record.chip), (Step::Pool, Some(claimed)));
    // The record is never offered to a unit of another chip: unit 2 gets one of its own...
    let mut other = SimDevice::demo_chip_bound(2);
    let ok2 = run(&mut other, &server, &mut journal).await.0.unwrap();
    assert_ne!(ok2.apparatus_id, kept.record.apparatus_id);
    assert_eq!(issues(&server), 2);
    // ...and the unit that really is that chip takes it, with no new fetch from the quota.
    let mut real = SimDevice::demo_chip_bound(254);
    let (r, rec) = run(&mut real, &server, &mut journal).await;
    assert_eq!(r.unwrap().apparatus_id, kept.record.apparatus_id);
    assert!(
        rec.log
            .iter()
            .any(|l| l.contains("fetched earlier for chip"))
    );
    assert_eq!(issues(&server), 2);
    assert_eq!(server.installed().await.len(), 2);
}

#[tokio::test]
async fn offline_a_chip_bound_unit_waits_for_the_server_and_nothing_is_written() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    server.online.set(false);
    let mut dev = SimDevice::demo_chip_bound(7);
    let f = run(&mut dev, &server, &mut journal).await.0.unwrap_err();
    assert_eq!(
        (f.phase, f.diagnosis.title.as_str()),
        (Phase::Record, "Server needed for this unit")
    );
    assert!(f.diagnosis.fix.contains("Retry"));
    assert!(journal.entries.is_empty());
    assert_eq!(dev.state(), imprint_core::DeviceState::Blank);
    // Back online, Retry finishes it.
    server.online.set(true);
    let ok = run(&mut dev, &server, &mut journal).await.0.unwrap();
    assert_eq!(server.installed().await.len(), 1);
    assert!(matches!(
        journal.get(&ok.apparatus_id).unwrap().step,
        Step::Verified { .. }
    ));
}

#[tokio::test]
async fn model_records_never_go_to_a_chip_bound_line_nor_chip_records_to_a_model_line() {
    let server = InProcess::new(5).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 2).await;
    // A unit of the model line plugged into the chip-bound station: wrong model, nothing taken.
    let mut model_unit = SimDevice::demo(1);
    let f = run(&mut model_unit, &server, &mut journal)
        .await
        .0
        .unwrap_err();
    assert_eq!(f.diagnosis.title, "Wrong model");
    assert_eq!(crate::journal::ready(&journal), 2);
    // A chip record refused by its unit stays out of the model pool.
    let mut clone = SimDevice::demo_chip_bound(3);
    clone.set_fault(Fault::ClaimsOtherChip);
    let _ = run(&mut clone, &server, &mut journal).await;
    assert_eq!(
        crate::journal::ready(&journal),
        2,
        "the chip record is not in the pool"
    );
    let chip_product = ProductCode::new(DEMO_CHIP_PRODUCT).unwrap();
    let k2 = [imprint_core::KeyId::new(2).unwrap()];
    assert!(
        journal.next_for(&chip_product, &k2, 0).is_none(),
        "a chip record is offered to any unit of its model"
    );
    let cam = ProductCode::new("CAM-X100").unwrap();
    let keys = [
        imprint_core::KeyId::new(1).unwrap(),
        imprint_core::KeyId::new(2).unwrap(),
    ];
    for _ in 0..2 {
        let next = journal.next_for(&cam, &keys, 0).unwrap().clone();
        assert!(next.chip.is_none() && !next.sealed.is_chip_bound());
        journal.install_sent(&next.apparatus_id, "u").unwrap();
    }
    assert!(journal.next_for(&cam, &keys, 0).is_none());
    // The server refuses a model fetch for the chip-bound product, with a message that says why.
    let e = server.client().issue(chip_product, 10).await.unwrap_err();
    assert!(
        matches!(&e, imprint_portal::station::ServerError::Refused { message, .. } if message.contains("chip-bound")),
        "{e:?}"
    );
}
