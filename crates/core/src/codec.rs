//! Byte reading and writing shared by the sealed-record format and the wire protocol.
//!
//! The [`Reader`] never indexes: every read checks the remaining length and returns
//! [`DecodeError`] instead of panicking, which is what makes every parser in this crate total.

use alloc::vec::Vec;
use core::fmt;

use crate::ids::IdError;

/// Why bytes could not be decoded. Says which field and what was wrong; never echoes secret
/// content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes were left after the last field.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A field's value is outside its allowed set (an unknown code or version).
    Unknown {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// A field decoded but failed validation (length, character set, zero key id).
    Invalid(IdError),
    /// A count is larger than the format allows.
    TooMany {
        /// The field.
        what: &'static str,
        /// The count found.
        count: usize,
        /// The maximum.
        max: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { what } => write!(f, "input ends in the middle of the {what}"),
            DecodeError::TrailingBytes { count } => {
                write!(f, "{count} unexpected byte(s) after the last field")
            }
            DecodeError::Unknown { what, value } => write!(f, "unknown {what}: {value:#04x}"),
            DecodeError::Invalid(e) => write!(f, "{e}"),
            DecodeError::TooMany { what, count, max } => {
                write!(f, "too many {what}: {count}, at most {max}")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

impl From<IdError> for DecodeError {
    fn from(e: IdError) -> Self {
        DecodeError::Invalid(e)
    }
}

/// A cursor over input bytes that can only fail, never panic.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N, what)?;
        b.try_into().map_err(|_| DecodeError::Truncated { what })
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array::<1>(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array::<4>(what)?))
    }

    /// A field with a one-byte length prefix.
    pub(crate) fn short(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u8(what)?;
        self.bytes(usize::from(n), what)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.rest.len(),
            })
        }
    }
}

/// Appends a field with a one-byte length prefix. Every field written this way is at most
/// 64 bytes (identifiers, pass phrase), so the length always fits.
pub(crate) fn put_short(out: &mut Vec<u8>, field: &[u8]) {
    let len = u8::try_from(field.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(field.get(..usize::from(len)).unwrap_or(field));
}

/// CRC-32 (ISO-HDLC, the one of zlib and Ethernet; check value 0xCBF43926), with a single
/// 256-entry table: frames and flash records are a few hundred bytes, and the usual 16 KB of
/// slice-by-16 tables would weigh more in the page and in firmware than the time they save.
pub fn crc32(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32, crc::Table<1>> =
        crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}
