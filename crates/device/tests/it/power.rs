//! Power cut at every single flash step: after any cut and reboot the unit holds the old state
//! or the new one, never a mix, never a half-written secret.

use imprint_core::*;
use imprint_device::WriteModule;
use imprint_device::sim::{SimFlash, demo_config};
use imprint_device::storage::{Journal, Stored};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::{Issued, install_req, issue, receipt_is_valid};

fn unit() -> WriteModule<SimFlash> {
    WriteModule::boot(demo_config(1, "CAM-X100", &[1]), SimFlash::new())
}

fn reboot(m: WriteModule<SimFlash>) -> WriteModule<SimFlash> {
    let cfg = m.config().clone();
    let mut flash = m.into_flash();
    flash.revive();
    WriteModule::boot(cfg, flash)
}

/// Steps a request takes on `setup()`'s unit when power holds.
fn steps_of(setup: &dyn Fn() -> WriteModule<SimFlash>, req: &Request) -> usize {
    let mut m = setup();
    let before = m.flash_mut().steps();
    m.handle(req);
    m.flash_mut().steps() - before
}

/// The installed identity is whole: the stored receipt verifies and the unit answers a
/// challenge with the right secret.
fn assert_whole(m: &mut WriteModule<SimFlash>, i: &Issued) {
    let serial = m.config().product_serial;
    let q = Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    };
    let Reply::RecordStatus(RecordStatus::Held(receipt)) = m.handle(&q) else {
        panic!("not held")
    };
    assert!(receipt_is_valid(i, &serial, &receipt));
    let c = Challenge([9; 32]);
    let Reply::AuthResponse { response, .. } = m.handle(&Request::Challenge(c)) else {
        panic!()
    };
    response
        .verify(&conversion_value(&i.id, &i.pass), &i.id, &c)
        .unwrap();
}

#[wasm_bindgen_test(unsupported = test)]
fn install_survives_a_power_cut_at_every_step() {
    let i = issue("IMP-1", 1);
    let n = steps_of(&unit, &install_req(&i));
    assert!(
        n > 256,
        "an install erases a page and programs a record ({n} steps)"
    );
    let (mut blank, mut whole) = (0, 0);
    for cut in 0..=n {
        let mut m = unit();
        m.flash_mut().cut_after(cut);
        let reply = m.handle(&install_req(&i));
        if cut < n {
            assert_eq!(
                reply,
                Reply::Error(ErrorCode::StorageFailed),
                "cut at {cut}"
            );
        }
        let mut m = reboot(m);
        match m.state() {
            DeviceState::Blank => blank += 1,
            DeviceState::Provisioned(id) if id == i.id => {
                whole += 1;
                assert_whole(&mut m, &i);
            }
            other => panic!("cut at {cut}: impossible state {other:?}"),
        }
        // The station retries: the install completes with a valid receipt.
        let Reply::Installed(receipt) = m.handle(&install_req(&i)) else {
            panic!("retry after cut {cut}")
        };
        assert!(receipt_is_valid(
            &i,
            &m.config().product_serial.clone(),
            &receipt
        ));
        assert_whole(&mut m, &i);
    }
    assert_eq!((blank, whole), (n, 1), "only the completed write counts");
}

#[wasm_bindgen_test(unsupported = test)]
fn lock_survives_a_power_cut_at_every_step() {
    let i = issue("IMP-1", 1);
    let installed = || {
        let mut m = unit();
        m.handle(&install_req(&i));
        m
    };
    let lock = Request::Lock { apparatus_id: i.id };
    let n = steps_of(&installed, &lock);
    for cut in 0..=n {
        let mut m = installed();
        m.flash_mut().cut_after(cut);
        m.handle(&lock);
        let mut m = reboot(m);
        match m.state() {
            DeviceState::Provisioned(id) | DeviceState::Locked(id) => assert_eq!(id, i.id),
            DeviceState::Blank => panic!("cut at {cut} lost the identity"),
        }
        assert_whole(&mut m, &i);
    }
}

/// The third write reuses the first page while the second holds the current state: the
/// hardest case for a two-slot journal.
#[wasm_bindgen_test(unsupported = test)]
fn journal_slot_reuse_survives_every_cut() {
    let state = |n: u8| Stored {
        apparatus_id: ApparatusId::new(&format!("ID-{n}")).unwrap(),
        pass_phrase: PassPhrase::from_bytes(&[b'a' + n; 40]).unwrap(),
        record_digest: [n; 32],
        receipt: Receipt([n; 32]),
        locked: false,
    };
    let prepared = || {
        let (mut j, _) = Journal::open(SimFlash::new());
        j.write(&state(1)).unwrap();
        j.write(&state(2)).unwrap();
        j
    };
    let mut probe = prepared();
    let before = probe.flash_mut().steps();
    probe.write(&state(3)).unwrap();
    let n = probe.flash_mut().steps() - before;
    for cut in 0..=n {
        let mut j = prepared();
        j.flash_mut().cut_after(cut);
        let _ = j.write(&state(3));
        let mut flash = j.into_flash();
        flash.revive();
        let (_, got) = Journal::open(flash);
        let got = got.expect("a state must survive");
        let k = got.record_digest[0];
        assert!(
            k == 2 || (k == 3 && cut == n),
            "cut at {cut} gave state {k}"
        );
        // Never a mix: every field belongs to the same state.
        assert_eq!(got.apparatus_id.as_str(), format!("ID-{k}"));
        assert_eq!(got.pass_phrase.expose_secret(), &[b'a' + k; 40][..]);
        assert_eq!(got.receipt, Receipt([k; 32]));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn garbage_in_flash_boots_as_blank() {
    let mut flash = SimFlash::new();
    use imprint_device::{Flash, Slot};
    flash
        .program(Slot::A, 0, b"IMPJ\x00\x00\x00\x05\xff\xffjunk")
        .unwrap();
    flash.program(Slot::B, 0, &[0u8; 64]).unwrap();
    let m = WriteModule::boot(demo_config(1, "CAM-X100", &[1]), flash);
    assert_eq!(m.state(), DeviceState::Blank);
}

/// A flash that insists on whole, aligned double-words, like parts with ECC.
struct DoubleWordFlash(SimFlash);

impl imprint_device::Flash for DoubleWordFlash {
    fn page_size(&self) -> usize {
        self.0.page_size()
    }
    fn read(
        &mut self,
        slot: imprint_device::Slot,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), imprint_device::FlashError> {
        self.0.read(slot, offset, buf)
    }
    fn erase(&mut self, slot: imprint_device::Slot) -> Result<(), imprint_device::FlashError> {
        self.0.erase(slot)
    }
    fn program(
        &mut self,
        slot: imprint_device::Slot,
        offset: usize,
        data: &[u8],
    ) -> Result<(), imprint_device::FlashError> {
        assert_eq!(
            (offset % 8, data.len() % 8),
            (0, 0),
            "unaligned program at {offset}, {} bytes",
            data.len()
        );
        self.0.program(slot, offset, data)
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn the_journal_programs_only_aligned_double_words() {
    let mut m = WriteModule::boot(
        demo_config(1, "CAM-X100", &[1]),
        DoubleWordFlash(SimFlash::new()),
    );
    let i = issue("IMP-ALIGNED-ID-OF-ODD-LENGTH", 1);
    assert!(matches!(m.handle(&install_req(&i)), Reply::Installed(_)));
    assert_eq!(
        m.handle(&Request::Lock { apparatus_id: i.id }),
        Reply::Locked
    );
}
