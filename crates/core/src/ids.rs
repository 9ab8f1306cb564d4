//! Identifiers: apparatus ID, product code, product serial, factory, key identifier, chip ID.
//!
//! Every identifier has a fixed maximum size and a fixed character set so that firmware can
//! keep it in a fixed buffer and a CSV importer can reject a bad one with a precise reason.
//! They are stored inline (no heap), are `Copy`, and can only be built through a validating
//! constructor, so a value of one of these types is always well-formed.
//!
//! | type            | length (bytes) | characters                      |
//! |-----------------|----------------|---------------------------------|
//! | [`ApparatusId`] | 1..=32         | `A-Z a-z 0-9 . _ -`             |
//! | [`ProductCode`] | 1..=16         | `A-Z a-z 0-9 . _ -`             |
//! | [`ProductSerial`] | 1..=32       | `A-Z a-z 0-9 . _ -`             |
//! | [`FactoryId`]   | 1..=32         | `A-Z a-z 0-9 . _ -`             |
//! | [`KeyId`]       | 4 (u32, not 0) | decimal in text, big-endian on the wire |
//! | [`ChipId`]      | 1..=16         | any byte (hex in text)          |

use core::fmt;
use core::num::NonZeroU32;
use core::str::FromStr;

/// Why an identifier or secret was refused. The message names the field and the rule, never
/// the offending value (it may be a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The value is shorter than the field allows (empty included).
    TooShort {
        /// Which field, e.g. "apparatus ID".
        what: &'static str,
        /// The length given.
        len: usize,
        /// The smallest length allowed.
        min: usize,
    },
    /// The value is longer than the field allows.
    TooLong {
        /// Which field.
        what: &'static str,
        /// The length given.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// A character outside the field's character set.
    BadChar {
        /// Which field.
        what: &'static str,
        /// Zero-based byte offset of the first bad character.
        position: usize,
        /// The characters that are allowed, for the message.
        allowed: &'static str,
    },
    /// A text form that is not what the field expects (e.g. a key identifier that is not a
    /// number, or hex with an odd length).
    BadFormat {
        /// Which field.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IdError::TooShort { what, len: 0, min } => {
                write!(f, "{what} is empty; it needs at least {min} character(s)")
            }
            IdError::TooShort { what, len, min } => {
                write!(f, "{what} is too short: {len} bytes, at least {min} needed")
            }
            IdError::TooLong { what, len, max } => {
                write!(f, "{what} is too long: {len} bytes, at most {max} allowed")
            }
            IdError::BadChar {
                what,
                position,
                allowed,
            } => write!(
                f,
                "{what} has a character that is not allowed at position {position}; allowed: {allowed}"
            ),
            IdError::BadFormat { what, expected } => {
                write!(f, "{what} is not in the expected form: {expected}")
            }
        }
    }
}

impl core::error::Error for IdError {}

/// The characters of textual identifiers.
pub(crate) const TOKEN_CHARS: &str = "A-Z a-z 0-9 . _ -";

pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks length and characters; shared by every identifier and by the pass phrase.
pub(crate) fn check_chars(
    what: &'static str,
    bytes: &[u8],
    min: usize,
    max: usize,
    allowed: &'static str,
    ok: fn(u8) -> bool,
) -> Result<(), IdError> {
    let len = bytes.len();
    if len < min {
        return Err(IdError::TooShort { what, len, min });
    }
    if len > max {
        return Err(IdError::TooLong { what, len, max });
    }
    match bytes.iter().position(|&b| !ok(b)) {
        Some(position) => Err(IdError::BadChar {
            what,
            position,
            allowed,
        }),
        None => Ok(()),
    }
}

/// Copies checked bytes into a fixed inline buffer; returns the buffer and the length.
/// The caller has checked the length already; this only refuses what would not fit.
pub(crate) fn inline<const N: usize>(
    what: &'static str,
    raw: &[u8],
) -> Result<([u8; N], u8), IdError> {
    let too_long = IdError::TooLong {
        what,
        len: raw.len(),
        max: N,
    };
    let mut bytes = [0u8; N];
    bytes
        .get_mut(..raw.len())
        .ok_or(too_long)?
        .copy_from_slice(raw);
    Ok((bytes, u8::try_from(raw.len()).map_err(|_| too_long)?))
}

/// Declares an inline, validated, printable identifier type.
macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            len: u8,
            bytes: [u8; $max],
        }

        impl $name {
            /// Largest length in bytes.
            pub const MAX_LEN: usize = $max;
            /// What the field is called in messages.
            pub const WHAT: &'static str = $what;

            /// Validates and builds the identifier from raw bytes (as found on the wire).
            pub fn from_bytes(raw: &[u8]) -> Result<Self, IdError> {
                check_chars($what, raw, 1, $max, TOKEN_CHARS, is_token_char)?;
                let (bytes, len) = inline::<$max>($what, raw)?;
                Ok(Self { len, bytes })
            }

            /// Validates and builds the identifier from text.
            pub fn new(text: &str) -> Result<Self, IdError> {
                Self::from_bytes(text.as_bytes())
            }

            /// The identifier as bytes (ASCII).
            pub fn as_bytes(&self) -> &[u8] {
                self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                // Validated ASCII at construction, so this never falls back.
                core::str::from_utf8(self.as_bytes()).unwrap_or("")
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }
    };
}

token_type!(
    /// The identity a device is given (table 702/704/708): unique across the whole system,
    /// printed on nothing, sent in clear next to its sealed record.
    ApparatusId,
    "apparatus ID",
    32
);
token_type!(
    /// A product model (table 500). Every device of one model carries the same pre-write key(s).
    ProductCode,
    "product code",
    16
);
token_type!(
    /// The serial number the maker gave the physical unit (table 704/708).
    ProductSerial,
    "product serial",
    32
);
token_type!(
    /// A partner factory that receives sealed records.
    FactoryId,
    "factory ID",
    32
);

/// A key identifier (tables 700, 500, 702, 708): names a pre-write key without revealing it.
/// Never zero, so zero can mean "none" in firmware tables.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(NonZeroU32);

impl KeyId {
    /// What the field is called in messages.
    pub const WHAT: &'static str = "key identifier";

    /// Builds a key identifier; zero is refused.
    pub fn new(value: u32) -> Result<Self, IdError> {
        NonZeroU32::new(value).map(KeyId).ok_or(IdError::BadFormat {
            what: Self::WHAT,
            expected: "a whole number from 1 to 4294967295",
        })
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// Big-endian wire form.
    pub fn to_be_bytes(self) -> [u8; 4] {
        self.0.get().to_be_bytes()
    }
}

impl FromStr for KeyId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let n: u32 = s.trim().parse().map_err(|_| IdError::BadFormat {
            what: Self::WHAT,
            expected: "a whole number from 1 to 4294967295",
        })?;
        KeyId::new(n)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// The unique ID burnt into the device's chip (e.g. the 96-bit UID of an STM32). Used for the
/// USB serial number and for chip-bound records. Not a secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChipId {
    len: u8,
    bytes: [u8; ChipId::MAX_LEN],
}

impl ChipId {
    /// Largest length in bytes.
    pub const MAX_LEN: usize = 16;
    /// What the field is called in messages.
    pub const WHAT: &'static str = "chip ID";

    /// Builds a chip ID from 1 to 16 raw bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, IdError> {
        check_chars(Self::WHAT, raw, 1, Self::MAX_LEN, "any byte", |_| true)?;
        let (bytes, len) = inline::<{ Self::MAX_LEN }>(Self::WHAT, raw)?;
        Ok(Self { len, bytes })
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(text: &str) -> Result<Self, IdError> {
        let bad = IdError::BadFormat {
            what: Self::WHAT,
            expected: "2 to 32 hex digits, an even number",
        };
        let t = text.as_bytes();
        if !t.len().is_multiple_of(2) || t.len() > 2 * Self::MAX_LEN {
            return Err(bad);
        }
        let mut raw = [0u8; Self::MAX_LEN];
        for (i, pair) in t.chunks_exact(2).enumerate() {
            let hi = hex_val(pair.first().copied()).ok_or(bad)?;
            let lo = hex_val(pair.get(1).copied()).ok_or(bad)?;
            *raw.get_mut(i).ok_or(bad)? = (hi << 4) | lo;
        }
        Self::from_bytes(raw.get(..t.len() / 2).ok_or(bad)?)
    }
}

fn hex_val(c: Option<u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ChipId {
    /// Upper-case hex: the form used as the USB serial number string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChipId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_limits() {
        assert!(ApparatusId::new("A").is_ok());
        assert!(ApparatusId::new(&"A".repeat(32)).is_ok());
        assert_eq!(
            ApparatusId::new(&"A".repeat(33)),
            Err(IdError::TooLong {
                what: "apparatus ID",
                len: 33,
                max: 32
            })
        );
        assert!(matches!(
            ProductCode::new("CAM X"),
            Err(IdError::BadChar { position: 3, .. })
        ));
    }

    #[test]
    fn chip_hex_round_trip() {
        let c = ChipId::from_hex("0a1B2c").unwrap();
        assert_eq!(c.as_bytes(), &[0x0a, 0x1b, 0x2c]);
        assert_eq!(alloc::format!("{c}"), "0A1B2C");
        assert!(ChipId::from_hex("abc").is_err());
        assert!(ChipId::from_hex("").is_err());
        assert!(ChipId::from_hex("zz").is_err());
    }
}
