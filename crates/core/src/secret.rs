//! Secrets: the pass phrase, the pre-write key and the conversion value.
//!
//! Why these are their own types: a secret must not be printable by accident, must not linger
//! in memory after use, and must not be compared with `==`, whose early exit leaks how many
//! leading bytes matched. So each type here zeroizes on drop, has a `Debug` that prints a
//! redaction, has no `Display`, and compares only through [`subtle::ConstantTimeEq`]. Reading
//! the bytes needs a call named `expose_secret`, which is easy to find in a review.

use core::fmt;

use rand_core::CryptoRng;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::{IdError, check_chars, inline};

/// The characters a pass phrase may contain: printable ASCII without space (0x21..=0x7E), so
/// it survives CSV files, terminals and firmware string handling unchanged.
pub const PASS_PHRASE_CHARS: &str = "printable ASCII 0x21..=0x7E (no space)";

/// The alphabet of generated pass phrases (Crockford base32: no I, L, O, U). 32 symbols, so a
/// random byte masked to 5 bits picks one with no bias.
const GENERATED_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The secret a device proves itself with (tables 702 and 704). 16 to 64 bytes of
/// [`PASS_PHRASE_CHARS`]; generated ones are 32 symbols of base32 (160 bits).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PassPhrase {
    len: u8,
    bytes: [u8; PassPhrase::MAX_LEN],
}

impl PassPhrase {
    /// Smallest length in bytes (about 100 bits even for a weak alphabet).
    pub const MIN_LEN: usize = 16;
    /// Largest length in bytes.
    pub const MAX_LEN: usize = 64;
    /// Length of a generated pass phrase.
    pub const GENERATED_LEN: usize = 32;
    /// What the field is called in messages.
    pub const WHAT: &'static str = "pass phrase";

    /// Validates a pass phrase. The error names the rule broken, never the value.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, IdError> {
        check_chars(
            Self::WHAT,
            raw,
            Self::MIN_LEN,
            Self::MAX_LEN,
            PASS_PHRASE_CHARS,
            |b| (0x21..=0x7e).contains(&b),
        )?;
        let (bytes, len) = inline::<{ Self::MAX_LEN }>(Self::WHAT, raw)?;
        Ok(Self { len, bytes })
    }

    /// Validates a pass phrase given as text.
    pub fn new(text: &str) -> Result<Self, IdError> {
        Self::from_bytes(text.as_bytes())
    }

    /// A fresh random pass phrase of [`Self::GENERATED_LEN`] base32 symbols (160 bits).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; Self::MAX_LEN];
        let out = bytes.get_mut(..Self::GENERATED_LEN).unwrap_or(&mut []);
        rng.fill_bytes(out);
        for b in out.iter_mut() {
            // 256 is a multiple of 32, so masking keeps the distribution uniform.
            let idx = usize::from(*b & 0x1f);
            *b = GENERATED_ALPHABET.get(idx).copied().unwrap_or(b'0');
        }
        Self {
            len: Self::GENERATED_LEN as u8,
            bytes,
        }
    }

    /// The secret bytes. Call only where the secret is really needed (sealing, key
    /// derivation, storing at rest encrypted).
    pub fn expose_secret(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl ConstantTimeEq for PassPhrase {
    fn ct_eq(&self, other: &Self) -> Choice {
        // Lengths are compared too, but in constant time over the fixed-size buffers.
        self.len.ct_eq(&other.len) & self.bytes.ct_eq(&other.bytes)
    }
}

impl fmt::Debug for PassPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PassPhrase(<redacted>)")
    }
}

/// Declares a fixed 32-byte secret type.
macro_rules! secret32 {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = 32;
            /// What the field is called in messages.
            pub const WHAT: &'static str = $what;

            /// Wraps 32 raw bytes.
            pub fn from_array(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Wraps exactly 32 raw bytes; any other length is refused.
            pub fn from_bytes(raw: &[u8]) -> Result<Self, IdError> {
                let bytes: [u8; 32] = raw.try_into().map_err(|_| {
                    if raw.len() < 32 {
                        IdError::TooShort { what: $what, len: raw.len(), min: 32 }
                    } else {
                        IdError::TooLong { what: $what, len: raw.len(), max: 32 }
                    }
                })?;
                Ok(Self(bytes))
            }

            /// The secret bytes; see the module docs.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }
    };
}

secret32!(
    /// An AES-256 key built into the write module of every device of a model (table 700),
    /// named by a [`crate::KeyId`]. A leaked key exposes only the models mapped to it.
    PreWriteKey,
    "pre-write key"
);

secret32!(
    /// The one-way "conversion value" of a pass phrase (HKDF-SHA256, see
    /// [`crate::receipt::conversion_value`]). The authentication server keeps this instead of
    /// the pass phrase; it keys receipts and challenge responses.
    ConversionValue,
    "conversion value"
);

impl PreWriteKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn debug_is_redacted() {
        let p = PassPhrase::new("correct-horse-battery-staple").unwrap();
        let k = PreWriteKey::from_array([7; 32]);
        assert_eq!(format!("{p:?}"), "PassPhrase(<redacted>)");
        assert_eq!(format!("{k:?}"), "PreWriteKey(<redacted>)");
    }

    #[test]
    fn constant_time_equality() {
        let a = PassPhrase::new("0123456789abcdef").unwrap();
        let b = PassPhrase::new("0123456789abcdef").unwrap();
        let c = PassPhrase::new("0123456789abcdefg").unwrap();
        assert!(bool::from(a.ct_eq(&b)));
        assert!(!bool::from(a.ct_eq(&c)));
    }

    #[test]
    fn pass_phrase_rules_do_not_echo_value() {
        let e = PassPhrase::new("xyzzy").unwrap_err();
        let msg = format!("{e}");
        assert!(!msg.contains("xyzzy"), "{msg}");
        let e = PassPhrase::new("xyzzy xyzzy xyzzy").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("xyzzy"));
        assert!(PassPhrase::new("has a space in it!!").is_err());
        let long = [b'a'; 65];
        assert!(PassPhrase::from_bytes(&long).is_err());
    }
}
