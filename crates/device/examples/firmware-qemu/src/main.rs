//! Test firmware: the Imprint write module on an emulated Cortex-M4 (QEMU's `mps2-an386`).
//!
//! What differs on a microcontroller and never shows on the host runs here: 32-bit `usize`,
//! alignment, a small stack, no AES instructions (the `aes` crate's portable code), an
//! allocator in a small heap, and flash programmed in double-words and erased in pages.
//!
//! The host (`tests/qemu`, run by `cargo xtask test`) talks to this firmware over UART0 in
//! envelopes (`docs/device.md`, "Running the write module on an emulated core"):
//!
//! ```text
//! host -> firmware   A5 kind len(u16 LE) payload
//! firmware -> host   5A kind len(u16 LE) payload
//! ```
//!
//! - `01 DATA`: bytes for the write module's `receive` (what bulk OUT would carry, garbage
//!   included); answered by `81 DATA`: the figures of that call, then the reply frames.
//! - `02 ERASE`: a blank unit: both flash pages erased, then a reset.
//! - `03 CUT n` (u32 LE): power fails at the flash step after the next `n` (the step in
//!   progress is torn), which resets the core as a brown-out would; answered by `83`.
//! - `04 RESET`: a reset, flash kept.
//! - `06 LINK RESET`: what a USB reset or a replug does to the write module
//!   (`reset_link`: a partial frame is dropped); answered by `86`.
//! - `05 VECTOR op fields`: one test vector computation (crates/core/tests/vectors), answered
//!   by `85` with a status byte (0 done, 1 refused) and the result.
//! - after every reset the firmware sends `80 BOOT`; a panic sends `8F` with its message.
//!
//! The figures: instructions by QEMU's `-icount` read through the CMSDK timer (calibrated at
//! boot against a loop of known length), the stack's high-water mark (the stack is painted
//! before each call), and the heap (a counting allocator around embedded-alloc).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::convert::Infallible;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use cortex_m_rt::entry;
use embedded_alloc::LlffHeap;
use hmac::{Hmac, Mac};
use imprint_core::{
    ApparatusId, AuthResponse, Binding, Challenge, ChipId, FrameError, KeyId, PassPhrase,
    PreWriteKey, ProductSerial, ProtocolError, Receipt, ReceiptInput, Reply, Request, SealedRecord,
    conversion_value, decode_frame,
};
use imprint_device::WriteModule;
use imprint_device::storage::{Flash, FlashError, MIN_PAGE_SIZE, Slot};
use sha2::{Digest, Sha256};

// ---- the board, as QEMU models it ---------------------------------------------------------

/// CMSDK APB UART0: DATA, STATE (bit 0 TX full, bit 1 RX full), CTRL (bit 0 TX, bit 1 RX
/// enable, bit 3 RX interrupt), INTSTATUS/INTCLEAR, BAUDDIV.
const UART: usize = 0x4000_4000;
/// UART0's receive interrupt on this board, and the NVIC's set-enable and clear-pending
/// registers for interrupts 0 to 31.
const UART_RX_IRQ: u32 = 0;
const NVIC_ISER0: usize = 0xE000_E100;
const NVIC_ICPR0: usize = 0xE000_E280;
/// CMSDK APB timer 0: CTRL (bit 0 enable), VALUE (counts down at the 25 MHz system clock),
/// RELOAD.
const TIMER: usize = 0x4000_0000;
/// The NOR flash model: a RAM bank (`mps.ram`) that no section of this image uses, so its
/// contents survive a core reset as a real flash does.
const PERSIST: usize = 0x2100_0000;

fn reg_read(addr: usize) -> u32 {
    // SAFETY: a memory-mapped register of the board, aligned, always readable.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn reg_write(addr: usize, v: u32) {
    // SAFETY: as above; these registers take any value.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn uart_init() {
    reg_write(UART + 0x10, 16);
    reg_write(UART + 0x08, 0b1011);
    // The interrupt only wakes `wfi` (PRIMASK stays set: no handler runs). Waiting in `wfi`
    // rather than spinning on STATE matters in QEMU: a vCPU polling a device register holds
    // the lock the emulator's I/O thread needs to deliver the very byte being waited for.
    cortex_m::interrupt::disable();
    reg_write(NVIC_ISER0, 1 << UART_RX_IRQ);
}

fn put(b: u8) {
    while reg_read(UART + 0x04) & 1 != 0 {}
    reg_write(UART, u32::from(b));
}

fn get() -> u8 {
    loop {
        if reg_read(UART + 0x04) & 2 != 0 {
            // Clear the interrupt before reading, so the next byte pends it again.
            reg_write(UART + 0x0C, 0b10);
            reg_write(NVIC_ICPR0, 1 << UART_RX_IRQ);
            return reg_read(UART) as u8;
        }
        cortex_m::asm::wfi();
    }
}

fn send(kind: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    put(0x5A);
    put(kind);
    for b in (len as u16).to_le_bytes() {
        put(b);
    }
    for p in parts {
        for &b in *p {
            put(b);
        }
    }
}

fn timer_init() {
    reg_write(TIMER + 0x08, u32::MAX);
    reg_write(TIMER + 0x04, u32::MAX);
    reg_write(TIMER, 1);
}

/// Timer ticks since start, counting up.
fn ticks() -> u32 {
    !reg_read(TIMER + 0x04)
}

/// Exactly `2 * n` instructions (`subs`, `bne`): the calibration of ticks to instructions.
fn spin(n: u32) {
    // SAFETY: touches only the register it is given.
    unsafe {
        core::arch::asm!("2:", "subs {0}, {0}, #1", "bne 2b", inout(reg) n => _, options(nomem, nostack));
    }
}

// ---- the heap, counted ----------------------------------------------------------------------

const HEAP_SIZE: usize = 64 * 1024;
/// The sizes of the first allocations of a call, in order: what the install path allocates.
const LOGGED: usize = 48;

struct Counting(LlffHeap);

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static SIZES: [AtomicUsize; LOGGED] = [const { AtomicUsize::new(0) }; LOGGED];

// SAFETY: forwards to embedded-alloc's heap and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
            let n = COUNT.fetch_add(1, Relaxed);
            if let Some(slot) = SIZES.get(n) {
                slot.store(layout.size(), Relaxed);
            }
            BYTES.fetch_add(layout.size(), Relaxed);
            LARGEST.fetch_max(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static HEAP: Counting = Counting(LlffHeap::empty());

// ---- the stack, painted ---------------------------------------------------------------------

/// Bytes at the top of RAM that are painted: memory.x keeps statics out of them.
const PAINT: usize = 32 * 1024;
const COLOUR: u32 = 0xC5C5_C5C5;

unsafe extern "C" {
    static _stack_start: u32;
}

fn stack_top() -> usize {
    // Only the symbol's address is taken, never its value.
    core::ptr::addr_of!(_stack_start) as usize
}

#[inline(never)]
fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut a = stack_top() - PAINT;
    while a < sp - 64 {
        reg_write(a, COLOUR);
        a += 4;
    }
}

/// The lowest stack address written since [`paint`].
fn low_water() -> usize {
    let mut a = stack_top() - PAINT;
    while a < stack_top() && reg_read(a) == COLOUR {
        a += 4;
    }
    a
}

// ---- the flash, a NOR model in RAM ----------------------------------------------------------

/// Page size of the model: 2 KB, as on STM32L4 and G4 parts.
const PAGE: usize = 2048;
/// Programming unit: a double-word, as on those parts.
const WORD: usize = 8;
/// An erase is this many steps of 256 bytes, so a power cut can land in the middle of one.
const ERASE_CHUNK: usize = 256;
const MAGIC: u32 = 0x494D_5046;
const _: () = assert!(PAGE >= MIN_PAGE_SIZE);

#[repr(C)]
struct Persist {
    magic: u32,
    boots: u32,
    a: [u8; PAGE],
    b: [u8; PAGE],
}

fn persist() -> &'static mut Persist {
    // SAFETY: PERSIST is a RAM bank of the board that nothing else in this image addresses,
    // large enough and aligned for `Persist`, and every byte pattern is a valid `Persist`.
    // The firmware is single-threaded and calls this where no other reference is live.
    unsafe { &mut *(PERSIST as *mut Persist) }
}

/// The write module's two pages with NOR rules: erase sets a page to 0xFF, programming only
/// into erased double-words at aligned offsets, the way the part's controller refuses
/// anything else (STM32L4's PROGERR); and a power cut at any step.
struct NorFlash {
    cut_in: Option<u32>,
    steps: u32,
}

impl NorFlash {
    fn page(&mut self, slot: Slot) -> &mut [u8; PAGE] {
        let p = persist();
        match slot {
            Slot::A => &mut p.a,
            Slot::B => &mut p.b,
        }
    }

    /// Counts a step; true when power fails during it.
    fn step(&mut self) -> bool {
        self.steps += 1;
        match self.cut_in {
            Some(0) => true,
            Some(n) => {
                self.cut_in = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

fn power_cut() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

impl Flash for NorFlash {
    fn page_size(&self) -> usize {
        PAGE
    }

    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), FlashError> {
        let from = self
            .page(slot)
            .get(offset..offset + buf.len())
            .ok_or(FlashError::OutOfRange)?;
        buf.copy_from_slice(from);
        Ok(())
    }

    fn erase(&mut self, slot: Slot) -> Result<(), FlashError> {
        for c in 0..PAGE / ERASE_CHUNK {
            let torn = self.step();
            let chunk = self
                .page(slot)
                .get_mut(c * ERASE_CHUNK..(c + 1) * ERASE_CHUNK)
                .ok_or(FlashError::OutOfRange)?;
            if torn {
                if let Some(half) = chunk.get_mut(..ERASE_CHUNK / 2) {
                    half.fill(0xFF);
                }
                power_cut();
            }
            chunk.fill(0xFF);
        }
        Ok(())
    }

    fn program(&mut self, slot: Slot, offset: usize, data: &[u8]) -> Result<(), FlashError> {
        if !offset.is_multiple_of(WORD) || !data.len().is_multiple_of(WORD) {
            return Err(FlashError::Failed);
        }
        for (i, word) in data.chunks_exact(WORD).enumerate() {
            let at = offset + i * WORD;
            let torn = self.step();
            let dst = self
                .page(slot)
                .get_mut(at..at + WORD)
                .ok_or(FlashError::OutOfRange)?;
            if dst.iter().any(|&b| b != 0xFF) {
                return Err(FlashError::Failed);
            }
            let n = if torn { WORD / 2 } else { WORD };
            for (d, s) in dst.iter_mut().zip(word).take(n) {
                *d &= *s;
            }
            if torn {
                power_cut();
            }
        }
        Ok(())
    }
}

// ---- main -----------------------------------------------------------------------------------

/// The calibration loop's length: `2 * CAL` instructions.
const CAL: u32 = 1_000_000;

#[entry]
fn main() -> ! {
    {
        use core::mem::MaybeUninit;
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before any allocation, with memory used for nothing else.
        unsafe {
            HEAP.0
                .init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP_SIZE)
        }
    }
    uart_init();
    timer_init();
    let p = persist();
    if p.magic != MAGIC {
        // Power-on of a blank board: the flash model starts erased.
        p.a.fill(0xFF);
        p.b.fill(0xFF);
        p.boots = 0;
        p.magic = MAGIC;
    }
    p.boots = p.boots.wrapping_add(1);
    let boots = p.boots;

    let t0 = ticks();
    spin(CAL);
    let cal = ticks().wrapping_sub(t0);

    let config = imprint_device::sim::demo_config(1, "CAM-X100", &[1]);
    let flash = NorFlash {
        cut_in: None,
        steps: 0,
    };
    let mut module = WriteModule::boot(config, flash);
    send(
        0x80,
        &[
            &boots.to_le_bytes(),
            &cal.to_le_bytes(),
            &(2 * CAL).to_le_bytes(),
            &(HEAP_SIZE as u32).to_le_bytes(),
            &(PAINT as u32).to_le_bytes(),
        ],
    );

    let buf: &'static mut [u8; 4096] = match cortex_m::singleton!(: [u8; 4096] = [0; 4096]) {
        Some(b) => b,
        None => panic!("the receive buffer is taken once"),
    };
    loop {
        while get() != 0xA5 {}
        let kind = get();
        let len = usize::from(u16::from_le_bytes([get(), get()]));
        if len > buf.len() {
            for _ in 0..len {
                get();
            }
            send(0x8E, &[b"envelope too long"]);
            continue;
        }
        let body = &mut buf[..len];
        for b in body.iter_mut() {
            *b = get();
        }
        match kind {
            0x01 => data(&mut module, body),
            0x02 => {
                let p = persist();
                p.a.fill(0xFF);
                p.b.fill(0xFF);
                cortex_m::peripheral::SCB::sys_reset()
            }
            0x03 => {
                let n = body
                    .get(..4)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                module.flash_mut().cut_in = Some(n);
                send(0x83, &[]);
            }
            0x04 => cortex_m::peripheral::SCB::sys_reset(),
            0x05 => match vector(body) {
                Ok(out) => send(0x85, &[&[0], &out]),
                Err(why) => send(0x85, &[&[1], why.as_bytes()]),
            },
            0x06 => {
                module.reset_link();
                send(0x86, &[]);
            }
            _ => send(0x8E, &[b"unknown envelope kind"]),
        }
    }
}

/// One call of the write module, measured.
fn data(module: &mut WriteModule<NorFlash>, bytes: &[u8]) {
    paint();
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    COUNT.store(0, Relaxed);
    BYTES.store(0, Relaxed);
    LARGEST.store(0, Relaxed);
    let steps = module.flash_mut().steps;
    let sp = cortex_m::register::msp::read() as usize;
    let t0 = ticks();
    let replies = module.receive(bytes);
    let t = ticks().wrapping_sub(t0);
    let low = low_water();
    // The call's own counts, before this harness allocates anything more.
    let (peak, count, allocated, largest) = (
        PEAK.load(Relaxed),
        COUNT.load(Relaxed),
        BYTES.load(Relaxed),
        LARGEST.load(Relaxed),
    );
    let out: Vec<u8> = replies.concat();
    drop(replies);
    // What the module holds on to after the call: `out` (exactly its length) is the harness's.
    let held = CURRENT.load(Relaxed) - out.len();
    let mut figures = [0u8; 4 * 9 + 1 + 2 * LOGGED];
    let values = [
        t,
        module.flash_mut().steps - steps,
        (sp - low) as u32,
        (stack_top() - low) as u32,
        (peak - base) as u32,
        held.wrapping_sub(base) as u32,
        count as u32,
        allocated as u32,
        largest as u32,
    ];
    for (chunk, v) in figures.chunks_exact_mut(4).zip(values) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    let logged = count.min(LOGGED);
    figures[36] = logged as u8;
    for (i, s) in SIZES.iter().take(logged).enumerate() {
        let v = s.load(Relaxed).min(usize::from(u16::MAX)) as u16;
        figures[37 + 2 * i..39 + 2 * i].copy_from_slice(&v.to_le_bytes());
    }
    send(0x81, &[&figures[..37 + 2 * logged], &out]);
}

// ---- test vectors ---------------------------------------------------------------------------

/// Reads the fields of a vector request: each `len(u16 LE) bytes`.
fn fields(mut b: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut v = Vec::new();
    while let [lo, hi, rest @ ..] = b {
        let n = usize::from(u16::from_le_bytes([*lo, *hi]));
        let (f, r) = rest.split_at_checked(n).ok_or("field past the end")?;
        v.push(f);
        b = r;
    }
    if !b.is_empty() {
        return Err("a stray byte after the fields");
    }
    Ok(v)
}

fn arr<const N: usize>(b: &[u8]) -> Result<[u8; N], &'static str> {
    b.try_into().map_err(|_| "a field of the wrong length")
}

fn text(b: &[u8]) -> Result<&str, &'static str> {
    core::str::from_utf8(b).map_err(|_| "a field that is not UTF-8")
}

/// Replays given bytes as "randomness", so sealing reproduces the vectors.
struct FixedRng<'a>(&'a [u8]);

impl rand_core::TryRng for FixedRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
            *d = first;
            self.0 = rest;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FixedRng<'_> {}

fn error_class(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::Frame(f) => frame_class(f),
        ProtocolError::UnknownMessage(_) => "unknown message",
        ProtocolError::Payload(_) => "payload",
        ProtocolError::TrailingBytes(_) => "trailing bytes",
        _ => "other",
    }
}

fn frame_class(e: &FrameError) -> &'static str {
    match e {
        FrameError::Incomplete { .. } => "incomplete",
        FrameError::BadChecksum => "bad checksum",
        FrameError::BadMagic => "bad magic",
        FrameError::UnsupportedVersion(_) => "unsupported version",
        FrameError::TooLong(_) => "too long",
        _ => "other",
    }
}

fn chip(b: &[u8]) -> Result<Option<ChipId>, &'static str> {
    if b.is_empty() {
        return Ok(None);
    }
    ChipId::from_bytes(b).map(Some).map_err(|_| "a bad chip ID")
}

/// One vector computation on this core; the host compares the result with the vector file.
fn vector(body: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (&op, rest) = body.split_first().ok_or("no operation")?;
    let f = fields(rest)?;
    let g = |i: usize| f.get(i).copied().ok_or("a field is missing");
    Ok(match op {
        // SHA-256(data)
        1 => Sha256::digest(g(0)?).to_vec(),
        // HMAC-SHA256(key, data)
        2 => {
            let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(g(0)?)
                .map_err(|_| "HMAC key")?;
            m.update(g(1)?);
            m.finalize().into_bytes().to_vec()
        }
        // HKDF-SHA256(salt, ikm, info, length u16 LE)
        3 => {
            let hk = hkdf::Hkdf::<Sha256>::new(Some(g(0)?), g(1)?);
            let mut okm = alloc::vec![0u8; usize::from(u16::from_le_bytes(arr(g(3)?)?))];
            hk.expand(g(2)?, &mut okm).map_err(|_| "HKDF length")?;
            okm
        }
        // AES-256-GCM seal(key, nonce, aad, plaintext) -> ciphertext || tag
        4 => {
            let cipher = Aes256Gcm::new(&arr::<32>(g(0)?)?.into());
            let mut buf = g(3)?.to_vec();
            let tag = cipher
                .encrypt_inout_detached(
                    &Nonce::from(arr::<12>(g(1)?)?),
                    g(2)?,
                    buf.as_mut_slice().into(),
                )
                .map_err(|_| "AES-GCM seal")?;
            buf.extend_from_slice(&tag);
            buf
        }
        // AES-256-GCM open(key, nonce, aad, ciphertext || tag) -> plaintext
        5 => {
            let cipher = Aes256Gcm::new(&arr::<32>(g(0)?)?.into());
            let all = g(3)?;
            let (ct, tag) = all
                .split_at_checked(all.len().wrapping_sub(16))
                .ok_or("no tag")?;
            let tag = Tag::try_from(tag).map_err(|_| "tag length")?;
            let mut buf = ct.to_vec();
            cipher
                .decrypt_inout_detached(
                    &Nonce::from(arr::<12>(g(1)?)?),
                    g(2)?,
                    buf.as_mut_slice().into(),
                    &tag,
                )
                .map_err(|_| "tag check failed")?;
            buf
        }
        // CRC-32(data), big-endian
        6 => imprint_core::crc32(g(0)?).to_be_bytes().to_vec(),
        // seal(key, key id u32 BE, apparatus ID, pass phrase, chip ID or empty, "random" bytes)
        //   -> sealed record || its digest
        7 => {
            let key = PreWriteKey::from_bytes(g(0)?).map_err(|_| "key")?;
            let key_id = KeyId::new(u32::from_be_bytes(arr(g(1)?)?)).map_err(|_| "key id")?;
            let id = ApparatusId::from_bytes(g(2)?).map_err(|_| "apparatus ID")?;
            let pass = PassPhrase::from_bytes(g(3)?).map_err(|_| "pass phrase")?;
            let binding = chip(g(4)?)?.map_or(Binding::Model, Binding::Chip);
            let mut rng = FixedRng(g(5)?);
            let sealed = SealedRecord::seal(&mut rng, &key, key_id, &binding, &id, &pass);
            let mut out = sealed.as_bytes().to_vec();
            out.extend_from_slice(&sealed.digest());
            out
        }
        // open(key, apparatus ID, chip ID or empty, sealed)
        //   -> issue nonce || key id u32 BE || format || pass phrase
        8 => {
            let key = PreWriteKey::from_bytes(g(0)?).map_err(|_| "key")?;
            let id = ApparatusId::from_bytes(g(1)?).map_err(|_| "apparatus ID")?;
            let rec = SealedRecord::parse(g(3)?).map_err(|_| "malformed")?;
            let opened = rec
                .open(&key, &id, chip(g(2)?)?.as_ref())
                .map_err(|_| "does not open")?;
            let mut out = opened.issue_nonce.to_vec();
            out.extend_from_slice(&rec.key_id().to_be_bytes());
            out.push(rec.format());
            out.extend_from_slice(opened.pass_phrase.expose_secret());
            out
        }
        // chip keys(key, chip ID) -> v2 data || v1 key || v2 key
        9 => {
            let key = PreWriteKey::from_bytes(g(0)?).map_err(|_| "key")?;
            let c = chip(g(1)?)?.ok_or("no chip ID")?;
            let mut out = imprint_core::seal::chip_v2_data(&c).to_vec();
            out.extend_from_slice(imprint_core::seal::chip_bound_key(&key, &c).expose_secret());
            out.extend_from_slice(imprint_core::seal::chip_bound_key_v2(&key, &c).expose_secret());
            out
        }
        // a request frame decoded and encoded again
        10 => {
            let (seq, r) = Request::decode(g(0)?).map_err(|e| error_class(&e))?;
            r.encode(seq)
        }
        // a reply frame decoded and encoded again
        11 => {
            let (seq, r) = Reply::decode(g(0)?).map_err(|e| error_class(&e))?;
            r.encode(seq)
        }
        // a frame: kind, seq, bytes used (u16 LE), payload
        12 => {
            let (frame, used) = decode_frame(g(0)?).map_err(|e| frame_class(&e))?;
            let mut out = alloc::vec![frame.kind, frame.seq];
            out.extend_from_slice(&(used as u16).to_le_bytes());
            out.extend_from_slice(frame.payload);
            out
        }
        // receipt(apparatus ID, pass phrase, product serial, issue nonce, record digest)
        //   -> conversion value || receipt (and the receipt verified)
        13 => {
            let id = ApparatusId::from_bytes(g(0)?).map_err(|_| "apparatus ID")?;
            let pass = PassPhrase::from_bytes(g(1)?).map_err(|_| "pass phrase")?;
            let serial = ProductSerial::new(text(g(2)?)?).map_err(|_| "serial")?;
            let cv = conversion_value(&id, &pass);
            let nonce: [u8; 16] = arr(g(3)?)?;
            let digest: [u8; 32] = arr(g(4)?)?;
            let input = ReceiptInput {
                apparatus_id: &id,
                product_serial: &serial,
                issue_nonce: &nonce,
                record_digest: &digest,
            };
            let receipt: Receipt = Receipt::compute(&cv, &input);
            receipt
                .verify(&cv, &input)
                .map_err(|_| "receipt does not verify")?;
            let mut out = cv.expose_secret().to_vec();
            out.extend_from_slice(&receipt.0);
            out
        }
        // challenge response(apparatus ID, pass phrase, challenge) -> response (verified)
        14 => {
            let id = ApparatusId::from_bytes(g(0)?).map_err(|_| "apparatus ID")?;
            let pass = PassPhrase::from_bytes(g(1)?).map_err(|_| "pass phrase")?;
            let cv = conversion_value(&id, &pass);
            let challenge = Challenge(arr(g(2)?)?);
            let resp = AuthResponse::compute(&cv, &id, &challenge);
            resp.verify(&cv, &id, &challenge)
                .map_err(|_| "response does not verify")?;
            resp.0.to_vec()
        }
        // transparency log: the root of these entries (each field one entry) || the inclusion
        // proof of each entry in that tree, concatenated
        15 => {
            use imprint_core::tlog::{MemoryTree, inclusion_proof, leaf_hash};
            let tree = MemoryTree::new(f.iter().map(|e| leaf_hash(e)).collect());
            let mut out = tree.root(tree.size()).map_err(|_| "tree")?.to_vec();
            for i in 0..tree.size() {
                let proof = inclusion_proof(&tree, i, tree.size())
                    .and_then(|p| p)
                    .map_err(|_| "inclusion proof")?;
                out.extend(proof.iter().flatten());
            }
            out
        }
        // transparency log: verify_inclusion(entry, index u64 BE, size u64 BE, root, proof)
        16 => {
            let leaf = imprint_core::tlog::leaf_hash(g(0)?);
            let proof = hashes(g(4)?)?;
            imprint_core::tlog::verify_inclusion(
                &leaf,
                u64::from_be_bytes(arr(g(1)?)?),
                u64::from_be_bytes(arr(g(2)?)?),
                &proof,
                &arr(g(3)?)?,
            )
            .map_err(|_| "inclusion refused")?;
            Vec::new()
        }
        // transparency log: verify_consistency(old u64 BE, new u64 BE, old root, new root, proof)
        17 => {
            let proof = hashes(g(4)?)?;
            imprint_core::tlog::verify_consistency(
                u64::from_be_bytes(arr(g(0)?)?),
                u64::from_be_bytes(arr(g(1)?)?),
                &proof,
                &arr(g(2)?)?,
                &arr(g(3)?)?,
            )
            .map_err(|_| "consistency refused")?;
            Vec::new()
        }
        _ => return Err("unknown operation"),
    })
}

/// Hashes concatenated in one field.
fn hashes(b: &[u8]) -> Result<Vec<[u8; 32]>, &'static str> {
    if !b.len().is_multiple_of(32) {
        return Err("hashes of the wrong length");
    }
    b.chunks_exact(32).map(arr).collect()
}

// ---- panics ---------------------------------------------------------------------------------

struct Line {
    buf: [u8; 200],
    len: usize,
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut line = Line {
        buf: [0; 200],
        len: 0,
    };
    let _ = write!(line, "{info}");
    send(0x8F, &[&line.buf[..line.len]]);
    loop {
        cortex_m::asm::wfi();
    }
}
