//! The simulated device: the real [`WriteModule`] on a simulated flash, behind a USB-like
//! transfer surface, with faults that can be switched on for tests and training.
//!
//! Natively it stands in for hardware in server and end-to-end tests; in the browser
//! (`web` feature) it is wrapped in an object with the WebUSB `USBDevice` surface.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use imprint_core::{
    ApparatusId, ChipId, DeviceState, KeyId, PassPhrase, PreWriteKey, ProductCode, ProductSerial,
    Receipt, Reply,
};
use sha2::{Digest, Sha256};

use crate::module::{DeviceConfig, WriteModule};
use crate::storage::{Flash, FlashError, Journal, MIN_PAGE_SIZE, Slot, Stored};

/// A RAM flash of two pages with NOR semantics (erase sets 0xFF, programming clears bits)
/// that can lose power after any number of byte steps, leaving the byte in progress torn.
#[derive(Debug, Clone)]
pub struct SimFlash {
    a: Vec<u8>,
    b: Vec<u8>,
    budget: Option<usize>,
    dead: bool,
    steps: usize,
    fail_erase: bool,
}

impl SimFlash {
    /// Page size of the simulated part.
    pub const PAGE_SIZE: usize = 256;

    /// A fresh, erased flash.
    pub fn new() -> Self {
        const { assert!(Self::PAGE_SIZE >= MIN_PAGE_SIZE) };
        Self {
            a: vec![0xFF; Self::PAGE_SIZE],
            b: vec![0xFF; Self::PAGE_SIZE],
            budget: None,
            dead: false,
            steps: 0,
            fail_erase: false,
        }
    }

    /// Power will fail after `steps` more byte steps (each byte erased or programmed is one).
    pub fn cut_after(&mut self, steps: usize) {
        self.budget = Some(steps);
    }

    /// The next erase fails before it changes a byte, with power kept: a worn or faulty
    /// page, which the write module reports as `StorageFailed` while its old state stands.
    pub fn fail_next_erase(&mut self) {
        self.fail_erase = true;
    }

    /// Byte steps done since creation: the size of an exhaustive power-cut sweep.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Whether power was lost.
    pub fn power_lost(&self) -> bool {
        self.dead
    }

    /// Power comes back (a reboot); no cut is pending any more.
    pub fn revive(&mut self) {
        self.dead = false;
        self.budget = None;
    }

    /// Both pages, A then B: what survives a power cycle. Lets training mode keep a simulated
    /// unit across a page reload, as a real unit keeps its flash.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.a.clone();
        v.extend_from_slice(&self.b);
        v
    }

    /// A powered flash holding `bytes` (from [`SimFlash::to_bytes`]); `None` for any other
    /// length.
    pub fn from_bytes(bytes: &[u8]) -> Option<SimFlash> {
        if bytes.len() != 2 * Self::PAGE_SIZE {
            return None;
        }
        let (a, b) = bytes.split_at(Self::PAGE_SIZE);
        Some(SimFlash {
            a: a.to_vec(),
            b: b.to_vec(),
            ..SimFlash::new()
        })
    }

    /// Raw page contents, for tests.
    pub fn page(&self, slot: Slot) -> &[u8] {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    fn page_mut(&mut self, slot: Slot) -> &mut [u8] {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// One byte step: applies `full` to the byte, or `torn` if power fails right now.
    fn step(
        &mut self,
        slot: Slot,
        at: usize,
        full: impl Fn(u8) -> u8,
        torn: impl Fn(u8) -> u8,
    ) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::Failed);
        }
        let cut = self.budget == Some(0);
        let byte = self
            .page_mut(slot)
            .get_mut(at)
            .ok_or(FlashError::OutOfRange)?;
        if cut {
            *byte = torn(*byte);
            self.dead = true;
            return Err(FlashError::Failed);
        }
        *byte = full(*byte);
        self.steps += 1;
        if let Some(b) = self.budget.as_mut() {
            *b -= 1;
        }
        Ok(())
    }
}

impl Default for SimFlash {
    fn default() -> Self {
        Self::new()
    }
}

impl Flash for SimFlash {
    fn page_size(&self) -> usize {
        Self::PAGE_SIZE
    }

    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::Failed);
        }
        let src = self
            .page(slot)
            .get(offset..offset + buf.len())
            .ok_or(FlashError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn erase(&mut self, slot: Slot) -> Result<(), FlashError> {
        if core::mem::take(&mut self.fail_erase) {
            return Err(FlashError::Failed);
        }
        for at in 0..Self::PAGE_SIZE {
            self.step(slot, at, |_| 0xFF, |b| b | 0x0F)?;
        }
        Ok(())
    }

    fn program(&mut self, slot: Slot, offset: usize, data: &[u8]) -> Result<(), FlashError> {
        for (i, &d) in data.iter().enumerate() {
            self.step(slot, offset + i, |b| b & d, |b| b & (d | 0xF0))?;
        }
        Ok(())
    }
}

/// How a simulated device misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// The cable is pulled as an install request arrives: the request is lost. One-shot.
    UnplugBeforeInstall,
    /// The cable is pulled right after the install is stored: the reply is lost. One-shot.
    UnplugAfterInstall,
    /// Power fails this many flash byte steps into the install's write, then the device is
    /// unplugged (it reboots from flash on replug). One-shot.
    PowerCutDuringInstall(usize),
    /// Every reply is replaced by bytes that are not a frame.
    GarbageReplies,
    /// Every reply is cut to its first half.
    TruncatedReplies,
    /// Replies come this many milliseconds late (honoured by the browser wrapper).
    Slow(u32),
    /// The unit answers GetInfo with another unit's chip ID (its own with the last byte
    /// changed), as a cloned or counterfeit unit would: a chip-bound record fetched for the
    /// chip it claims does not open in the chip it is.
    ClaimsOtherChip,
    /// The flash refuses the lock's write once: the unit answers `StorageFailed` (0x0b) and
    /// stays unlocked with its identity; the next `Lock` succeeds. One-shot.
    LockWriteFails,
    /// The cable is pulled right after the lock is stored: the `Locked` reply is lost, and
    /// the unit is locked. One-shot.
    UnplugAfterLock,
}

/// A USB-level failure, as WebUSB would report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbError {
    /// The device is not plugged in (WebUSB: `NotFoundError`, "The device was disconnected").
    Disconnected,
}

impl fmt::Display for UsbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsbError::Disconnected => f.write_str("The device was disconnected."),
        }
    }
}

/// A simulated unit on a simulated cable.
#[derive(Debug)]
pub struct SimDevice {
    module: WriteModule<SimFlash>,
    plugged: bool,
    outbox: VecDeque<u8>,
    fault: Fault,
    noise: u32,
}

/// The demo model's pre-write key for a key identifier. For demos, training and tests only:
/// anyone can compute it. `imprint demo` seeds the server with the same keys.
pub fn demo_key(key_id: KeyId) -> PreWriteKey {
    let mut h = Sha256::new();
    h.update(b"imprint demo pre-write key, never for production/");
    h.update(key_id.to_be_bytes());
    PreWriteKey::from_array(h.finalize().into())
}

/// The demo model's product code.
pub const DEMO_PRODUCT: &str = "CAM-X100";

/// The demo's chip-bound model: its records are each sealed for one unit's chip. Its units
/// hold key identifier 2.
pub const DEMO_CHIP_PRODUCT: &str = "CAM-C200";

impl SimDevice {
    /// A blank unit with the given built-in configuration.
    pub fn new(config: DeviceConfig) -> Self {
        Self::with_flash(config, SimFlash::new())
    }

    /// A unit with `config` booting from `flash`: how a unit comes back after a power cycle
    /// (or, in training mode, after a page reload).
    pub fn with_flash(config: DeviceConfig, flash: SimFlash) -> Self {
        Self {
            module: WriteModule::boot(config, flash),
            plugged: true,
            outbox: VecDeque::new(),
            fault: Fault::None,
            noise: 0x9E37_79B9,
        }
    }

    /// Unit number `n` of the demo model (key identifier 1, serial `SIM-n`).
    pub fn demo(n: u32) -> Self {
        Self::new(demo_config(n, DEMO_PRODUCT, &[1]))
    }

    /// Unit number `n` of the demo's chip-bound model ([`DEMO_CHIP_PRODUCT`], key identifier
    /// 2): every unit has a chip ID of its own, and a record sealed for one opens in no other.
    pub fn demo_chip_bound(n: u32) -> Self {
        Self::new(demo_config(n, DEMO_CHIP_PRODUCT, &[2]))
    }

    /// A demo unit with the product serial of unit `n` (`SIM-n`) but a chip of its own, as a
    /// unit with a duplicated serial label would be: its record installs, and the server
    /// refuses its report if unit `n` is on record already (one identity per product serial).
    pub fn duplicate_serial(n: u32) -> Self {
        Self::new(duplicate_serial_config(n))
    }

    /// A unit of another model, holding only key identifier 99: the portal must refuse it.
    pub fn wrong_model(n: u32) -> Self {
        Self::new(demo_config(n, "OTHER-MODEL", &[99]))
    }

    /// A demo unit that already holds `apparatus_id` (locked or not): refused for a new record.
    ///
    /// # Panics
    /// If `apparatus_id` is not a valid apparatus ID (a test or demo set-up error).
    #[allow(clippy::expect_used)]
    pub fn already_provisioned(n: u32, apparatus_id: &str, locked: bool) -> Self {
        let config = demo_config(n, DEMO_PRODUCT, &[1]);
        let (mut journal, _) = Journal::open(SimFlash::new());
        let stored = Stored {
            apparatus_id: ApparatusId::new(apparatus_id).expect("a valid apparatus ID"),
            pass_phrase: PassPhrase::from_bytes(&[b'x'; 32]).expect("32 printable bytes"),
            record_digest: [0; 32],
            receipt: Receipt([0; 32]),
            locked,
        };
        // A fresh SimFlash always has room, so this write succeeds.
        let _ = journal.write(&stored);
        Self::with_flash(config, journal.into_flash())
    }

    /// Sets the fault.
    pub fn set_fault(&mut self, fault: Fault) {
        self.fault = fault;
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Whether the cable is in.
    pub fn is_plugged(&self) -> bool {
        self.plugged
    }

    /// Pulls the cable: pending replies are lost.
    pub fn unplug(&mut self) {
        self.plugged = false;
        self.outbox.clear();
    }

    /// Plugs the cable back in: the unit reboots from its flash.
    pub fn replug(&mut self) {
        if self.plugged {
            return;
        }
        let config = self.module.config().clone();
        let placeholder = WriteModule::boot(config.clone(), SimFlash::new());
        let mut flash = core::mem::replace(&mut self.module, placeholder).into_flash();
        flash.revive();
        self.module = WriteModule::boot(config, flash);
        self.plugged = true;
    }

    /// The write module's state (what the unit would report).
    pub fn state(&self) -> DeviceState {
        self.module.state()
    }

    /// The built-in configuration.
    pub fn config(&self) -> &DeviceConfig {
        self.module.config()
    }

    /// The USB serial number string: the chip ID in hex, unique per unit, so the browser
    /// keeps its permission across replugs.
    pub fn usb_serial(&self) -> String {
        format!("{}", self.module.config().chip_id)
    }

    /// The flash, for tests and to save the unit.
    pub fn flash(&mut self) -> &mut SimFlash {
        self.module.flash_mut()
    }

    /// Host to device on the bulk OUT endpoint.
    pub fn transfer_out(&mut self, data: &[u8]) -> Result<usize, UsbError> {
        if !self.plugged {
            return Err(UsbError::Disconnected);
        }
        let is_install = data.get(3) == Some(&imprint_core::proto::kind::INSTALL);
        let is_lock = data.get(3) == Some(&imprint_core::proto::kind::LOCK);
        match self.fault {
            Fault::LockWriteFails if is_lock => {
                self.fault = Fault::None;
                self.module.flash_mut().fail_next_erase();
            }
            Fault::UnplugBeforeInstall if is_install => {
                self.fault = Fault::None;
                self.unplug();
                return Err(UsbError::Disconnected);
            }
            Fault::PowerCutDuringInstall(steps) if is_install => {
                // One-shot, like a real cut: after the reboot the unit behaves.
                self.fault = Fault::None;
                self.module.flash_mut().cut_after(steps);
            }
            _ => {}
        }
        let replies = self.module.receive(data);
        if self.module.flash_mut().power_lost() {
            self.unplug();
            return Err(UsbError::Disconnected);
        }
        if (is_install && self.fault == Fault::UnplugAfterInstall)
            || (is_lock && self.fault == Fault::UnplugAfterLock)
        {
            self.fault = Fault::None;
            self.unplug();
            return Err(UsbError::Disconnected);
        }
        for r in replies {
            let bytes = match self.fault {
                Fault::GarbageReplies => self.garbage(r.len()),
                Fault::TruncatedReplies => r.get(..r.len() / 2).unwrap_or(&[]).to_vec(),
                Fault::ClaimsOtherChip => claim_other_chip(r),
                _ => r,
            };
            self.outbox.extend(bytes);
        }
        Ok(data.len())
    }

    /// Device to host on the bulk IN endpoint: up to `max` queued bytes (empty if none yet;
    /// a real device would NAK until it has some).
    pub fn transfer_in(&mut self, max: usize) -> Result<Vec<u8>, UsbError> {
        if !self.plugged {
            return Err(UsbError::Disconnected);
        }
        let n = max.min(self.outbox.len());
        Ok(self.outbox.drain(..n).collect())
    }

    /// Not cryptographic: just bytes that are not a frame.
    fn garbage(&mut self, len: usize) -> Vec<u8> {
        (0..len.max(8))
            .map(|_| {
                self.noise ^= self.noise << 13;
                self.noise ^= self.noise >> 17;
                self.noise ^= self.noise << 5;
                (self.noise & 0xFF) as u8 | 0x80
            })
            .collect()
    }
}

/// A GetInfo reply rewritten to name another chip (the last byte of the real one flipped);
/// any other reply as it was.
fn claim_other_chip(reply: Vec<u8>) -> Vec<u8> {
    match Reply::decode(&reply) {
        Ok((seq, Reply::Info(mut info))) => {
            let mut chip = info.chip_id.as_bytes().to_vec();
            if let Some(last) = chip.last_mut() {
                *last ^= 0xFF;
            }
            match ChipId::from_bytes(&chip) {
                Ok(other) => {
                    info.chip_id = other;
                    Reply::Info(info).encode(seq)
                }
                Err(_) => reply,
            }
        }
        _ => reply,
    }
}

/// The configuration of [`SimDevice::duplicate_serial`]: demo unit `n`'s, with bytes 4 to 7
/// of the chip ID `DUPL` instead of zeros.
pub fn duplicate_serial_config(n: u32) -> DeviceConfig {
    let mut config = demo_config(n, DEMO_PRODUCT, &[1]);
    let mut chip = config.chip_id.as_bytes().to_vec();
    if let Some(mid) = chip.get_mut(4..8) {
        mid.copy_from_slice(b"DUPL");
    }
    if let Ok(c) = ChipId::from_bytes(&chip) {
        config.chip_id = c;
    }
    config
}

/// The built-in configuration of demo unit `n`.
///
/// # Panics
/// If `product` is not a valid product code (a test or demo set-up error).
#[allow(clippy::expect_used)]
pub fn demo_config(n: u32, product: &str, key_ids: &[u32]) -> DeviceConfig {
    let mut chip = [0u8; 12];
    chip[..4].copy_from_slice(b"SIM-");
    chip[8..].copy_from_slice(&n.to_be_bytes());
    DeviceConfig {
        firmware_version: [1, 0, 0],
        product_code: ProductCode::new(product).expect("a valid product code"),
        product_serial: ProductSerial::new(&format!("SIM-{n:06}")).expect("SIM- and digits"),
        chip_id: ChipId::from_bytes(&chip).expect("12 bytes"),
        keys: key_ids
            .iter()
            .filter_map(|&k| KeyId::new(k).ok())
            .map(|k| (k, demo_key(k)))
            .collect(),
    }
}
