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
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLong(payload.len()))?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len() + FRAME_TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(kind);
    out.push(seq);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
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
    if crc32fast::hash(body) != u32::from_be_bytes(crc) {
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
