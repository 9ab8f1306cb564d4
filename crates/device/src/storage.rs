//! Power-cut safe storage of the installed identity: two flash pages used in turn.
//!
//! Why two slots with a sequence number, a CRC and a separate commit word: flash is erased a
//! page at a time, programmed a few bytes at a time, and power can fail between any two of
//! those steps (or in the middle of one). A new state is always written to the page that does
//! *not* hold the current state, in three steps: erase it, program the record, program the
//! commit word. Until the commit word is in place the page is not valid, and the other page
//! still holds the old state. So after any cut the device boots into either the old state or
//! the new one, never a mix, and a half-written secret is never read. Layout of a slot:
//!
//! ```text
//! 0    4  magic "IMPJ"
//! 4    4  sequence number, u32 big-endian (the higher valid one wins)
//! 8    2  length n of the state, u16 big-endian
//! 10   n  state (see `Stored::encode`)
//! 10+n 4  CRC-32 of bytes 0..10+n
//!         0xFF padding up to a multiple of 8 (L = 14+n rounded up)
//! L    8  commit word C0 33 17 7E 81 CC E8 3F, programmed last
//! ```
//!
//! Both programming operations start at a multiple of 8 and are a multiple of 8 long, so the
//! journal works on parts that program whole double-words once (STM32L4/G4/H7 with ECC) as
//! well as on byte-programmable ones.

use core::fmt;

use imprint_core::{ApparatusId, PassPhrase, Receipt};
use zeroize::Zeroizing;

/// One of the two pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The first page.
    A,
    /// The second page.
    B,
}

impl Slot {
    fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// A flash failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlashError {
    /// Power was lost during the operation (simulated flash) or the part reported a failure.
    Failed,
    /// An access outside the page.
    OutOfRange,
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::Failed => f.write_str("flash operation failed"),
            FlashError::OutOfRange => f.write_str("flash access outside the page"),
        }
    }
}

/// The two flash pages the write module owns. Implement this over your MCU's flash driver
/// (see `docs/device.md`); erased bytes read as 0xFF and programming only clears bits.
pub trait Flash {
    /// Bytes in one page; at least [`MIN_PAGE_SIZE`].
    fn page_size(&self) -> usize;
    /// Reads `buf.len()` bytes at `offset` of a page.
    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Sets a whole page to 0xFF.
    fn erase(&mut self, slot: Slot) -> Result<(), FlashError>;
    /// Programs bytes into an erased area of a page.
    fn program(&mut self, slot: Slot, offset: usize, data: &[u8]) -> Result<(), FlashError>;
}

const MAGIC: [u8; 4] = *b"IMPJ";
const COMMIT: [u8; 8] = [0xC0, 0x33, 0x17, 0x7E, 0x81, 0xCC, 0xE8, 0x3F];
/// Programming unit the journal aligns to.
const ALIGN: usize = 8;
const HEADER: usize = 10;
/// Largest encoded state: state, short ID, short pass phrase, digest, receipt.
const MAX_STATE: usize = 1 + 1 + ApparatusId::MAX_LEN + 1 + PassPhrase::MAX_LEN + 32 + 32;
/// The smallest page the journal fits in.
pub const MIN_PAGE_SIZE: usize = record_len(MAX_STATE) + COMMIT.len();

/// Length of a record with an `n`-byte state, padding included.
const fn record_len(n: usize) -> usize {
    (HEADER + n + 4).div_ceil(ALIGN) * ALIGN
}

/// What the write module keeps across power cycles.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The installed identity.
    pub apparatus_id: ApparatusId,
    /// Its secret.
    pub pass_phrase: PassPhrase,
    /// SHA-256 of the sealed record it came from.
    pub record_digest: [u8; 32],
    /// The receipt sent for it (sent again on a retry).
    pub receipt: Receipt,
    /// Whether the identity is locked for good.
    pub locked: bool,
}

/// The largest record, padding included (the commit word follows it).
const MAX_RECORD: usize = record_len(MAX_STATE);

/// Fills a fixed buffer front to back: the journal builds its records on the stack, since a
/// write module's heap is small.
struct Fill<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Fill<'_> {
    /// Appends `bytes`; false (and nothing written) if they do not fit.
    fn put(&mut self, bytes: &[u8]) -> bool {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                true
            }
            None => false,
        }
    }
}

impl Stored {
    /// Bytes of the encoding (state, ID length, ID, pass phrase length, pass phrase, digest,
    /// receipt): at most [`MAX_STATE`].
    fn encoded_len(&self) -> usize {
        3 + self.apparatus_id.as_bytes().len()
            + self.pass_phrase.expose_secret().len()
            + self.record_digest.len()
            + self.receipt.0.len()
    }

    /// Appends the encoding; false if it does not fit.
    fn encode(&self, out: &mut Fill<'_>) -> bool {
        let id = self.apparatus_id.as_bytes();
        let pp = self.pass_phrase.expose_secret();
        // Both lengths fit a byte: the types bound them to 32 and 64.
        let parts: [&[u8]; 7] = [
            &[if self.locked { 2 } else { 1 }],
            &[id.len() as u8],
            id,
            &[pp.len() as u8],
            pp,
            &self.record_digest,
            &self.receipt.0,
        ];
        let start = out.len;
        parts.iter().all(|p| out.put(p)) && out.len - start == self.encoded_len()
    }

    fn decode(b: &[u8]) -> Option<Stored> {
        let (&state, rest) = b.split_first()?;
        let (&id_len, rest) = rest.split_first()?;
        let (id, rest) = rest.split_at_checked(usize::from(id_len))?;
        let (&pp_len, rest) = rest.split_first()?;
        let (pp, rest) = rest.split_at_checked(usize::from(pp_len))?;
        let (digest, receipt) = rest.split_at_checked(32)?;
        Some(Stored {
            apparatus_id: ApparatusId::from_bytes(id).ok()?,
            pass_phrase: PassPhrase::from_bytes(pp).ok()?,
            record_digest: digest.try_into().ok()?,
            receipt: Receipt(receipt.try_into().ok()?),
            locked: match state {
                1 => false,
                2 => true,
                _ => return None,
            },
        })
    }
}

/// The journal over two pages: which slot holds the current state, and its sequence number.
#[derive(Debug)]
pub struct Journal<F: Flash> {
    flash: F,
    current: Option<(Slot, u32)>,
}

impl<F: Flash> Journal<F> {
    /// Reads both pages and picks the newest valid state. A page that is erased, torn or
    /// uncommitted is simply not valid.
    pub fn open(mut flash: F) -> (Journal<F>, Option<Stored>) {
        let a = read_slot(&mut flash, Slot::A);
        let b = read_slot(&mut flash, Slot::B);
        let (current, stored) = match (a, b) {
            (Some((sa, _)), Some((sb, b))) if sb > sa => (Some((Slot::B, sb)), Some(b)),
            (Some((sa, a)), _) => (Some((Slot::A, sa)), Some(a)),
            (None, Some((sb, b))) => (Some((Slot::B, sb)), Some(b)),
            (None, None) => (None, None),
        };
        (Journal { flash, current }, stored)
    }

    /// Writes a new state; when this returns Ok the new state is what the next boot reads.
    pub fn write(&mut self, state: &Stored) -> Result<(), FlashError> {
        let (slot, seq) = match self.current {
            Some((s, n)) => (s.other(), n.wrapping_add(1)),
            None => (Slot::A, 1),
        };
        // The record holds the pass phrase: wiped when dropped.
        let mut buf = Zeroizing::new([0xFFu8; MAX_RECORD]);
        let body_len = state.encoded_len();
        let len = record_len(body_len);
        let mut rec = Fill {
            buf: &mut buf[..],
            len: 0,
        };
        let built = rec.put(&MAGIC)
            && rec.put(&seq.to_be_bytes())
            && rec.put(&(body_len as u16).to_be_bytes())
            && state.encode(&mut rec);
        let crc = imprint_core::crc32(rec.buf.get(..rec.len).unwrap_or_default());
        if !built || !rec.put(&crc.to_be_bytes()) || len > MAX_RECORD {
            return Err(FlashError::OutOfRange);
        }
        let rec = buf.get(..len).ok_or(FlashError::OutOfRange)?;
        if rec.len() + COMMIT.len() > self.flash.page_size() {
            return Err(FlashError::OutOfRange);
        }
        self.flash.erase(slot)?;
        self.flash.program(slot, 0, rec)?;
        self.flash.program(slot, rec.len(), &COMMIT)?;
        self.current = Some((slot, seq));
        Ok(())
    }

    /// The flash, for a simulated reboot.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// The flash, for inspection.
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }
}

fn read_slot<F: Flash>(flash: &mut F, slot: Slot) -> Option<(u32, Stored)> {
    let mut header = [0u8; HEADER];
    flash.read(slot, 0, &mut header).ok()?;
    let [m0, m1, m2, m3, s0, s1, s2, s3, l0, l1] = header;
    if [m0, m1, m2, m3] != MAGIC {
        return None;
    }
    let seq = u32::from_be_bytes([s0, s1, s2, s3]);
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let total = record_len(len) + COMMIT.len();
    if len > MAX_STATE || total > flash.page_size() {
        return None;
    }
    let mut buf = Zeroizing::new([0u8; MAX_RECORD + COMMIT.len()]);
    let rec = buf.get_mut(..total)?;
    flash.read(slot, 0, rec).ok()?;
    let (body, trailer) = rec.split_at(HEADER + len);
    let crc = trailer.get(..4)?;
    let commit = trailer.get(trailer.len() - COMMIT.len()..)?;
    if commit != COMMIT || imprint_core::crc32(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    Some((seq, Stored::decode(body.get(HEADER..)?)?))
}
