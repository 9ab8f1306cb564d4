//! Proof of install (the receipt) and field authentication (challenge-response).
//!
//! Both are HMAC-SHA256 keyed by the *conversion value* of the pass phrase:
//!
//! ```text
//! cv       = HKDF-SHA256(salt = "imprint/v1/conversion", ikm = pass phrase, info = apparatus ID), 32 bytes
//! receipt  = HMAC-SHA256(cv, "imprint/v1/receipt" | u8 len | apparatus ID | u8 len | product serial
//!                            | issue nonce (16) | SHA-256 of the sealed record (32))
//! response = HMAC-SHA256(cv, "imprint/v1/auth" | u8 len | apparatus ID | challenge (32))
//! ```
//!
//! Why a conversion value: the authentication server keeps `cv`, never the pass phrase, and
//! HKDF is one-way, so a leak of its table does not reveal pass phrases. Why the receipt
//! covers the issue nonce and the record digest: the nonce exists only inside the sealed
//! record, so only a device that opened that exact record (holding the right pre-write key)
//! can compute the receipt; the factory, which sees only the blob, cannot forge one. The
//! product serial inside binds the identity to the unit that reported it.

use core::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ids::{ApparatusId, ProductSerial};
use crate::seal::ISSUE_NONCE_LEN;
use crate::secret::{ConversionValue, PassPhrase};

const CV_SALT: &[u8] = b"imprint/v1/conversion";
const RECEIPT_LABEL: &[u8] = b"imprint/v1/receipt";
const AUTH_LABEL: &[u8] = b"imprint/v1/auth";

/// Length of a receipt, a challenge and a response.
pub const MAC_LEN: usize = 32;

/// Derives the one-way conversion value of a pass phrase.
pub fn conversion_value(apparatus_id: &ApparatusId, pass_phrase: &PassPhrase) -> ConversionValue {
    let hk = Hkdf::<Sha256>::new(Some(CV_SALT), pass_phrase.expose_secret());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is within HKDF's limit, so expand cannot fail.
    let _ = hk.expand(apparatus_id.as_bytes(), okm.as_mut_slice());
    ConversionValue::from_array(*okm)
}

/// A MAC check failed: the receipt or response was not made with the right secret for these
/// inputs. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacMismatch;

impl fmt::Display for MacMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the proof does not match: it was not made by the device holding this identity")
    }
}

impl core::error::Error for MacMismatch {}

/// What a receipt speaks for.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptInput<'a> {
    /// The identity installed.
    pub apparatus_id: &'a ApparatusId,
    /// The unit it was installed into.
    pub product_serial: &'a ProductSerial,
    /// The issue nonce from inside the sealed record.
    pub issue_nonce: &'a [u8; ISSUE_NONCE_LEN],
    /// SHA-256 of the sealed record ([`crate::SealedRecord::digest`]).
    pub record_digest: &'a [u8; 32],
}

/// The device's proof that it opened and stored a record. Not a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Receipt(pub [u8; MAC_LEN]);

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Receipt(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

fn mac(cv: &ConversionValue) -> Hmac<Sha256> {
    // HMAC takes a key of any length, so this cannot fail; a zero key in its place would make
    // every receipt forgeable, so a failure is a panic that names the invariant.
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as KeyInit>::new_from_slice(cv.expose_secret())
        .expect("HMAC-SHA256 takes a key of any length")
}

fn receipt_mac(cv: &ConversionValue, input: &ReceiptInput<'_>) -> Hmac<Sha256> {
    let mut m = mac(cv);
    m.update(RECEIPT_LABEL);
    short(&mut m, input.apparatus_id.as_bytes());
    short(&mut m, input.product_serial.as_bytes());
    m.update(input.issue_nonce);
    m.update(input.record_digest);
    m
}

fn short(m: &mut Hmac<Sha256>, field: &[u8]) {
    // Identifiers are at most 32 bytes, so the length fits a byte.
    m.update(&[u8::try_from(field.len()).unwrap_or(u8::MAX)]);
    m.update(field);
}

impl Receipt {
    /// Computes the receipt (device side).
    pub fn compute(cv: &ConversionValue, input: &ReceiptInput<'_>) -> Receipt {
        Receipt(receipt_mac(cv, input).finalize().into_bytes().into())
    }

    /// Checks a receipt in constant time (server side).
    pub fn verify(
        &self,
        cv: &ConversionValue,
        input: &ReceiptInput<'_>,
    ) -> Result<(), MacMismatch> {
        receipt_mac(cv, input)
            .verify_slice(&self.0)
            .map_err(|_| MacMismatch)
    }
}

/// A single-use random challenge from the authentication server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Challenge(pub [u8; MAC_LEN]);

impl Challenge {
    /// A fresh random challenge.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Challenge {
        let mut c = [0u8; MAC_LEN];
        rng.fill_bytes(&mut c);
        Challenge(c)
    }
}

/// A device's answer to a [`Challenge`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AuthResponse(pub [u8; MAC_LEN]);

fn auth_mac(
    cv: &ConversionValue,
    apparatus_id: &ApparatusId,
    challenge: &Challenge,
) -> Hmac<Sha256> {
    let mut m = mac(cv);
    m.update(AUTH_LABEL);
    short(&mut m, apparatus_id.as_bytes());
    m.update(&challenge.0);
    m
}

impl AuthResponse {
    /// Answers a challenge (device side).
    pub fn compute(
        cv: &ConversionValue,
        apparatus_id: &ApparatusId,
        challenge: &Challenge,
    ) -> AuthResponse {
        AuthResponse(
            auth_mac(cv, apparatus_id, challenge)
                .finalize()
                .into_bytes()
                .into(),
        )
    }

    /// Checks an answer in constant time (authentication server side).
    pub fn verify(
        &self,
        cv: &ConversionValue,
        apparatus_id: &ApparatusId,
        challenge: &Challenge,
    ) -> Result<(), MacMismatch> {
        auth_mac(cv, apparatus_id, challenge)
            .verify_slice(&self.0)
            .map_err(|_| MacMismatch)
    }
}
