//! `serde` for the identifiers and byte strings (feature `serde`), so that API bodies and the
//! station's journal hold typed values and hex exists only at the JSON edge.
//!
//! Text identifiers are JSON strings, checked on the way in exactly as [`ApparatusId::new`]
//! and its siblings check them; a [`KeyId`] is a JSON number (never 0); byte strings are
//! lower-case hex (upper case accepted on input), of exactly their length; a [`ChipId`] is
//! upper-case hex, its USB serial number form. A value that does not fit is a deserialisation
//! error that names the field's rule, never a substitute value.

use core::fmt;
use core::marker::PhantomData;
use core::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::ids::{ApparatusId, ChipId, FactoryId, IdError, KeyId, ProductCode, ProductSerial};
use crate::receipt::{AuthResponse, Challenge, Receipt};
use crate::seal::{MAX_SEALED_LEN, SealedRecord};

/// A visitor for any type built from text by `FromStr` with an [`IdError`].
struct FromText<T>(&'static str, PhantomData<T>);

impl<T: FromStr<Err = IdError>> Visitor<'_> for FromText<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_str(v).map_err(E::custom)
    }
}

macro_rules! text_serde {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(FromText::<$t>(
                    concat!("a ", stringify!($t), " (text)"),
                    PhantomData,
                ))
            }
        }
    )*};
}

text_serde!(ApparatusId, ProductCode, ProductSerial, FactoryId);

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        KeyId::new(u32::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for ChipId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct ChipText;

impl Visitor<'_> for ChipText {
    type Value = ChipId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chip ID (2 to 32 hex digits)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ChipId, E> {
        ChipId::from_hex(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ChipId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ChipText)
    }
}

/// Lower-case hex of a byte string, written without an intermediate `String`.
pub struct HexDisplay<'a>(pub &'a [u8]);

impl fmt::Display for HexDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `#[serde(with = "imprint_core::serde::hex_array")]` for a `[u8; N]`: exactly `2 * N` hex
/// digits.
pub mod hex_array {
    use super::*;

    /// Writes lower-case hex.
    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(&HexDisplay(bytes))
    }

    struct Fixed<const N: usize>;

    impl<const N: usize> Visitor<'_> for Fixed<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} hex digits", 2 * N)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<[u8; N], E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(v, &mut out)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
            Ok(out)
        }
    }

    /// Reads exactly `2 * N` hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        d.deserialize_str(Fixed::<N>)
    }
}

macro_rules! mac_serde {
    ($($t:ident),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                hex_array::serialize(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                hex_array::deserialize(d).map($t)
            }
        }
    )*};
}

mac_serde!(Receipt, Challenge, AuthResponse);

impl Serialize for SealedRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&HexDisplay(self.as_bytes()))
    }
}

struct SealedText;

impl Visitor<'_> for SealedText {
    type Value = SealedRecord;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a sealed record (hex, at most {} digits)",
            2 * MAX_SEALED_LEN
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SealedRecord, E> {
        if v.len() > 2 * MAX_SEALED_LEN {
            return Err(E::invalid_length(v.len() / 2, &self));
        }
        let mut buf = [0u8; MAX_SEALED_LEN];
        let out = buf
            .get_mut(..v.len() / 2)
            .ok_or_else(|| E::invalid_length(v.len() / 2, &self))?;
        hex::decode_to_slice(v, out)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
        SealedRecord::parse(out).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for SealedRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(SealedText)
    }
}
