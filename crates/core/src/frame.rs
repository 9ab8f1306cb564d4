//! Framing of the device wire protocol (USB bulk endpoints; layout in `docs/protocol.md`).
//!
//! ```text
//! offset  size  field
//! 0       2     magic "IM" (0x49 0x4D)
//! 2       1     protocol version (1)
//! 3       1     message type
//! 4       1     sequence number (a reply echoes its request's)
//! 5       2     payload length n, u16 big-endian, at most 512
//! 7       n     payload
//! 7+n     4     CRC-32 (IEEE, as zlib's crc32) of bytes 0..7+n, big-endian
//! ```
//!
//! Why a magic, a length and a CRC on top of USB's own checks: bulk transfers split and join
//! at packet boundaries, a device may be reset half-way through a frame, and a wrong program
//! on the other end should be told "not our protocol", not misread. [`decode_frame`] reports
//! [`FrameError::Incomplete`] so a receiver can keep reading until a whole frame is in.

use alloc::vec::Vec;
use core::fmt;

/// The two magic bytes.
pub const MAGIC: [u8; 2] = *b"IM";
/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 7;
/// Bytes after the payload.
pub const FRAME_TRAILER_LEN: usize = 4;
/// Largest payload.
pub const MAX_PAYLOAD: usize = 512;
/// Largest frame.
pub const MAX_FRAME: usize = FRAME_HEADER_LEN + MAX_PAYLOAD + FRAME_TRAILER_LEN;

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Not enough bytes yet: read more and try again.
    Incomplete {
        /// Bytes needed in total for the frame (or the header, if the length is not known).
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The first bytes are not "IM": the other side does not speak this protocol.
    BadMagic,
    /// The other side speaks another protocol version.
    UnsupportedVersion(u8),
    /// The announced payload is longer than [`MAX_PAYLOAD`].
    TooLong(usize),
    /// The CRC does not match: bytes were damaged or lost in transfer.
    BadChecksum,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete { need, have } => {
                write!(f, "frame incomplete: {have} of {need} bytes received")
            }
            FrameError::BadMagic => f.write_str(
                "the device answered with bytes that are not an Imprint frame (wrong device or firmware?)",
            ),
            FrameError::UnsupportedVersion(v) => write!(
                f,
                "the device speaks protocol version {v}; this software speaks version {PROTOCOL_VERSION}"
            ),
            FrameError::TooLong(n) => {
                write!(f, "frame announces a {n}-byte payload; at most {MAX_PAYLOAD} allowed")
            }
            FrameError::BadChecksum => {
                f.write_str("frame checksum mismatch: bytes were damaged in transfer")
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// A decoded frame, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Message type.
    pub kind: u8,
    /// Sequence number.
    pub seq: u8,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// Builds a frame. Fails only if the payload is longer than [`MAX_PAYLOAD`].
pub fn encode_frame(kind: u8, seq: u8, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLong(payload.len()));
    }
    encode_frame_with(kind, seq, payload.len(), |out| {
        out.extend_from_slice(payload)
    })
}

/// [`encode_frame`] with the payload appended by `write` straight into the frame, so a frame
/// costs one allocation (of `capacity` bytes of payload plus header and trailer).
pub(crate) fn encode_frame_with(
    kind: u8,
    seq: u8,
    capacity: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + capacity + FRAME_TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(kind);
    out.push(seq);
    out.extend_from_slice(&[0, 0]);
    write(&mut out);
    let n = out.len() - FRAME_HEADER_LEN;
    let len = u16::try_from(n)
        .ok()
        .filter(|&l| usize::from(l) <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLong(n))?;
    if let Some(field) = out.get_mut(FRAME_HEADER_LEN - 2..FRAME_HEADER_LEN) {
        field.copy_from_slice(&len.to_be_bytes());
    }
    let crc = crate::codec::crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Decodes the frame at the start of `input`; returns it and the number of bytes it used.
/// Total: any input gives a frame or an error, never a panic.
pub fn decode_frame(input: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let have = input.len();
    // Check the magic as soon as the bytes are there, so garbage is reported at once rather
    // than waited on.
    for (i, m) in MAGIC.iter().enumerate() {
        match input.get(i) {
            Some(b) if b != m => return Err(FrameError::BadMagic),
            Some(_) => {}
            None => {
                return Err(FrameError::Incomplete {
                    need: FRAME_HEADER_LEN,
                    have,
                });
            }
        }
    }
    let header = input
        .get(..FRAME_HEADER_LEN)
        .ok_or(FrameError::Incomplete {
            need: FRAME_HEADER_LEN,
            have,
        })?;
    let [_, _, version, kind, seq, len_hi, len_lo] = header else {
        return Err(FrameError::Incomplete {
            need: FRAME_HEADER_LEN,
            have,
        });
    };
    if *version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(*version));
    }
    let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let total = FRAME_HEADER_LEN + len + FRAME_TRAILER_LEN;
    let frame = input
        .get(..total)
        .ok_or(FrameError::Incomplete { need: total, have })?;
    let (body, crc) = frame.split_at(FRAME_HEADER_LEN + len);
    let crc: [u8; 4] = crc.try_into().map_err(|_| FrameError::BadChecksum)?;
    if crate::codec::crc32(body) != u32::from_be_bytes(crc) {
        return Err(FrameError::BadChecksum);
    }
    let payload = body.get(FRAME_HEADER_LEN..).unwrap_or(&[]);
    Ok((
        Frame {
            kind: *kind,
            seq: *seq,
            payload,
        },
        total,
    ))
}

/// A frame taken out of a byte stream, owning its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// Message type.
    pub kind: u8,
    /// Sequence number.
    pub seq: u8,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// A damaged frame found in a stream: the error, and the sequence number if the header
/// survived (so the reply can carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamError {
    /// What was wrong.
    pub error: FrameError,
    /// The damaged frame's sequence number, when its header was readable.
    pub seq: Option<u8>,
}

/// Collects bytes as they arrive (USB bulk packets split and join frames) and hands out
/// whole frames. After damage it resynchronises on the next magic, so one bad frame costs one
/// error, not the rest of the session. Memory is bounded by [`MAX_FRAME`] plus one push.
#[derive(Debug, Default, Clone)]
pub struct FrameAssembler {
    buf: Vec<u8>,
}

impl FrameAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything held (after a reset or a reconnect).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next whole frame, a damaged one, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<OwnedFrame, StreamError>> {
        self.next_with(|f| OwnedFrame {
            kind: f.kind,
            seq: f.seq,
            payload: f.payload.to_vec(),
        })
    }

    /// [`FrameAssembler::next_frame`] without copying the payload: `read` gets the frame in
    /// place and its result is returned. A write module uses this to parse a request straight
    /// from the receive buffer, with no allocation for the payload.
    pub fn next_with<R>(
        &mut self,
        read: impl FnOnce(Frame<'_>) -> R,
    ) -> Option<Result<R, StreamError>> {
        if self.buf.is_empty() {
            return None;
        }
        match decode_frame(&self.buf) {
            Ok((f, used)) => {
                let out = read(f);
                self.buf.drain(..used.min(self.buf.len()));
                Some(Ok(out))
            }
            Err(FrameError::Incomplete { .. }) => None,
            Err(error) => {
                let seq = match error {
                    FrameError::BadMagic => None,
                    _ => self.buf.get(4).copied(),
                };
                if error == FrameError::BadChecksum {
                    // The header was sound, so its length is probably right: drop the whole
                    // frame rather than hunting for a magic inside its payload.
                    let len = match self.buf.get(5..7) {
                        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                        _ => 0,
                    };
                    let total = FRAME_HEADER_LEN + len + FRAME_TRAILER_LEN;
                    self.buf.drain(..total.min(self.buf.len()));
                } else {
                    self.resync();
                }
                Some(Err(StreamError { error, seq }))
            }
        }
    }

    /// Skips at least one byte, then up to the next byte that could start a frame.
    fn resync(&mut self) {
        let skip = self
            .buf
            .iter()
            .skip(1)
            .position(|&b| b == MAGIC[0])
            .map_or(self.buf.len(), |p| p + 1);
        self.buf.drain(..skip.min(self.buf.len()));
    }
}
