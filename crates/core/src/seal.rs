//! The sealed record: the encrypted blob of table 708, format v1 (byte layout in
//! `docs/protocol.md`).
//!
//! ```text
//! offset  size  field
//! 0       1     format version = 0x01
//! 1       1     binding: 0x00 model key, 0x01 chip-bound key
//! 2       4     key identifier, u32 big-endian
//! 6       12    AES-GCM nonce (fresh random per seal)
//! 18      n     ciphertext of the plaintext below
//! 18+n    16    GCM tag
//!
//! plaintext: id_len u8 | apparatus ID | pp_len u8 | pass phrase | issue nonce (16)
//! AAD:       bytes 0..6 of the blob | id_len u8 | apparatus ID (the one sent in clear)
//! ```
//!
//! Why the AAD holds the header and the clear apparatus ID: a blob moved to another ID, key
//! identifier, binding or format version fails authentication, so a factory cannot swap
//! records between devices or replay one under another label. Opening also compares the ID
//! inside with the one in clear; both failures give the same opaque [`OpenError`], so a
//! prober learns nothing about which check failed.

use alloc::vec::Vec;
use core::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{DecodeError, Reader, put_short};
use crate::ids::{ApparatusId, ChipId, KeyId};
use crate::secret::{PassPhrase, PreWriteKey};

/// The only format version this code writes and reads.
pub const FORMAT_V1: u8 = 0x01;
/// Header length: version, binding, key identifier.
pub const HEADER_LEN: usize = 6;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Length of the issue nonce carried inside the record and covered by the receipt.
pub const ISSUE_NONCE_LEN: usize = 16;
/// Smallest possible sealed record (1-byte ID, 16-byte pass phrase).
pub const MIN_SEALED_LEN: usize =
    HEADER_LEN + NONCE_LEN + 1 + 1 + 1 + 16 + ISSUE_NONCE_LEN + TAG_LEN;
/// Largest possible sealed record (32-byte ID, 64-byte pass phrase): 148 bytes.
pub const MAX_SEALED_LEN: usize = HEADER_LEN
    + NONCE_LEN
    + 1
    + ApparatusId::MAX_LEN
    + 1
    + PassPhrase::MAX_LEN
    + ISSUE_NONCE_LEN
    + TAG_LEN;

/// HKDF info prefix for chip-bound keys; the chip ID follows it.
const CHIP_BOUND_INFO: &[u8] = b"imprint/v1/chip-bound";

/// Which key a record is sealed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The model's pre-write key itself: any device of the model can open it.
    Model,
    /// A key derived from the pre-write key and one device's chip ID: only that chip can
    /// open it, so a leaked record cannot be replayed into another unit.
    Chip(ChipId),
}

impl Binding {
    fn code(&self) -> u8 {
        match self {
            Binding::Model => 0x00,
            Binding::Chip(_) => 0x01,
        }
    }
}

/// A pre-write key that can seal a record: AES-256-GCM encryption in place under the key for
/// `binding`, returning the tag. [`PreWriteKey`] does it in memory; a server whose keys are in
/// a hardware security module does it in the token, so the key never leaves it.
///
/// `aad` is never empty (it holds the record's header and apparatus ID), which matters to
/// tokens whose AES-GCM mishandles an empty AAD (SoftHSM2 before 2.7.0).
pub trait SealKey {
    /// Why the key could not encrypt (a token that does not answer).
    type Error;
    /// Encrypts `buf` in place with `nonce` and `aad`, returning the 16-byte tag.
    fn encrypt(
        &self,
        binding: &Binding,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Self::Error>;
}

impl SealKey for PreWriteKey {
    type Error = core::convert::Infallible;

    fn encrypt(
        &self,
        binding: &Binding,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Self::Error> {
        // AES-GCM encryption fails only for a message over 64 GiB; a record is at most 114
        // bytes. A zero tag in its place would be a record that never opens, so this is a
        // panic that names the invariant, never a substitute value.
        #[allow(clippy::expect_used)]
        let tag = cipher_for(self, binding)
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
            .expect("AES-GCM seals any message under 64 GiB");
        Ok(tag.into())
    }
}

/// The opaque failure to open a sealed record: wrong key, tampered bytes, moved to another
/// apparatus ID or key identifier, wrong chip. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the sealed record could not be opened (wrong key, wrong device, or altered record)",
        )
    }
}

impl core::error::Error for OpenError {}

/// What a write module gets out of a sealed record.
#[derive(Debug)]
pub struct OpenedRecord {
    /// The apparatus ID (equal to the one sent in clear; checked).
    pub apparatus_id: ApparatusId,
    /// The secret to store.
    pub pass_phrase: PassPhrase,
    /// The server's nonce for this issue, covered by the receipt.
    pub issue_nonce: [u8; ISSUE_NONCE_LEN],
}

/// A sealed record: a byte string whose header has been checked. Holds no secret in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord {
    bytes: Vec<u8>,
    key_id: KeyId,
    chip_bound: bool,
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("key_id", &self.key_id)
            .field("chip_bound", &self.chip_bound)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl SealedRecord {
    /// Seals `apparatus_id + pass_phrase` under `key` (named `key_id`) with a fresh random
    /// nonce and issue nonce drawn from `rng`.
    pub fn seal<R: CryptoRng + ?Sized>(
        rng: &mut R,
        key: &PreWriteKey,
        key_id: KeyId,
        binding: &Binding,
        apparatus_id: &ApparatusId,
        pass_phrase: &PassPhrase,
    ) -> SealedRecord {
        Self::seal_keeping_nonce(rng, key, key_id, binding, apparatus_id, pass_phrase).0
    }

    /// [`SealedRecord::seal`], also returning the issue nonce it drew: a server that keeps it
    /// checks the record's receipt without opening the record again.
    pub fn seal_keeping_nonce<R: CryptoRng + ?Sized>(
        rng: &mut R,
        key: &PreWriteKey,
        key_id: KeyId,
        binding: &Binding,
        apparatus_id: &ApparatusId,
        pass_phrase: &PassPhrase,
    ) -> (SealedRecord, [u8; ISSUE_NONCE_LEN]) {
        match Self::seal_with(rng, key, key_id, binding, apparatus_id, pass_phrase) {
            Ok(sealed) => sealed,
            Err(never) => match never {},
        }
    }

    /// Seals with a key that may live elsewhere (a hardware security module): this builds the
    /// header, the AAD and the plaintext, draws both nonces from `rng`, and lets `key` do the
    /// AES-256-GCM encryption. The bytes are the same as [`SealedRecord::seal_keeping_nonce`]'s
    /// for the same key and randomness.
    pub fn seal_with<K: SealKey + ?Sized, R: CryptoRng + ?Sized>(
        rng: &mut R,
        key: &K,
        key_id: KeyId,
        binding: &Binding,
        apparatus_id: &ApparatusId,
        pass_phrase: &PassPhrase,
    ) -> Result<(SealedRecord, [u8; ISSUE_NONCE_LEN]), K::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut issue_nonce = [0u8; ISSUE_NONCE_LEN];
        rng.fill_bytes(&mut issue_nonce);

        let mut bytes = Vec::with_capacity(MAX_SEALED_LEN);
        bytes.push(FORMAT_V1);
        bytes.push(binding.code());
        bytes.extend_from_slice(&key_id.to_be_bytes());
        let aad = aad(&bytes, apparatus_id);
        bytes.extend_from_slice(&nonce);

        let mut plain = Zeroizing::new(Vec::with_capacity(MAX_SEALED_LEN));
        put_short(&mut plain, apparatus_id.as_bytes());
        put_short(&mut plain, pass_phrase.expose_secret());
        plain.extend_from_slice(&issue_nonce);

        let tag = key.encrypt(binding, &nonce, &aad, plain.as_mut_slice())?;
        bytes.extend_from_slice(&plain);
        bytes.extend_from_slice(&tag);
        let record = SealedRecord {
            bytes,
            key_id,
            chip_bound: matches!(binding, Binding::Chip(_)),
        };
        Ok((record, issue_nonce))
    }

    /// Checks the header and length of a received blob. Does not decrypt.
    pub fn parse(bytes: &[u8]) -> Result<SealedRecord, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("sealed record version")?;
        if version != FORMAT_V1 {
            return Err(DecodeError::Unknown {
                what: "sealed record version",
                value: u32::from(version),
            });
        }
        let binding = r.u8("sealed record binding")?;
        if binding > 1 {
            return Err(DecodeError::Unknown {
                what: "sealed record binding",
                value: u32::from(binding),
            });
        }
        let key_id = KeyId::new(r.u32("key identifier")?)?;
        if bytes.len() < MIN_SEALED_LEN {
            return Err(DecodeError::Truncated {
                what: "sealed record",
            });
        }
        if bytes.len() > MAX_SEALED_LEN {
            return Err(DecodeError::TooMany {
                what: "sealed record bytes",
                count: bytes.len(),
                max: MAX_SEALED_LEN,
            });
        }
        Ok(SealedRecord {
            bytes: bytes.to_vec(),
            key_id,
            chip_bound: binding == 1,
        })
    }

    /// The whole blob, as stored in table 708 and sent to the device.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key identifier from the header.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Whether the record is bound to one chip.
    pub fn is_chip_bound(&self) -> bool {
        self.chip_bound
    }

    /// SHA-256 of the whole blob: names the record in receipts and in "do you hold record X?".
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }

    /// Opens the record with the pre-write key, checking that it was sealed for
    /// `apparatus_id`. `chip` is the opening device's chip ID, needed for chip-bound records.
    pub fn open(
        &self,
        key: &PreWriteKey,
        apparatus_id: &ApparatusId,
        chip: Option<&ChipId>,
    ) -> Result<OpenedRecord, OpenError> {
        let binding = match (self.chip_bound, chip) {
            (false, _) => Binding::Model,
            (true, Some(c)) => Binding::Chip(*c),
            (true, None) => return Err(OpenError),
        };
        let mut r = Reader::new(&self.bytes);
        let header = r.bytes(HEADER_LEN, "header").map_err(|_| OpenError)?;
        let nonce: [u8; NONCE_LEN] = r.array("nonce").map_err(|_| OpenError)?;
        let body = r.rest();
        let split = body.len().checked_sub(TAG_LEN).ok_or(OpenError)?;
        let (ct, tag) = body.split_at(split);
        let tag = Tag::try_from(tag).map_err(|_| OpenError)?;

        let mut plain = Zeroizing::new(ct.to_vec());
        cipher_for(key, &binding)
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &aad(header, apparatus_id),
                plain.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| OpenError)?;

        let mut p = Reader::new(&plain);
        let inner_id = ApparatusId::from_bytes(p.short("apparatus ID").map_err(|_| OpenError)?)
            .map_err(|_| OpenError)?;
        let pass_phrase = PassPhrase::from_bytes(p.short("pass phrase").map_err(|_| OpenError)?)
            .map_err(|_| OpenError)?;
        let issue_nonce: [u8; ISSUE_NONCE_LEN] = p.array("issue nonce").map_err(|_| OpenError)?;
        p.finish().map_err(|_| OpenError)?;
        // The AAD already binds the clear ID; this second check guards against a server bug
        // that sealed one ID's secret under another's label.
        if !bool::from(inner_id.as_bytes().ct_eq(apparatus_id.as_bytes())) {
            return Err(OpenError);
        }
        Ok(OpenedRecord {
            apparatus_id: inner_id,
            pass_phrase,
            issue_nonce,
        })
    }
}

fn aad(header: &[u8], apparatus_id: &ApparatusId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 1 + ApparatusId::MAX_LEN);
    aad.extend_from_slice(header);
    put_short(&mut aad, apparatus_id.as_bytes());
    aad
}

/// The AES-256-GCM instance for a binding: the pre-write key itself, or
/// HKDF-SHA256(ikm = pre-write key, salt = none, info = "imprint/v1/chip-bound" || chip ID).
fn cipher_for(key: &PreWriteKey, binding: &Binding) -> Aes256Gcm {
    match binding {
        Binding::Model => aes(key.expose_secret()),
        Binding::Chip(chip) => aes(chip_bound_key(key, chip).expose_secret()),
    }
}

/// The key a chip-bound record is sealed under (public so the server can derive it too).
pub fn chip_bound_key(key: &PreWriteKey, chip: &ChipId) -> PreWriteKey {
    let mut okm = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(None, key.expose_secret());
    let mut info = Vec::with_capacity(CHIP_BOUND_INFO.len() + ChipId::MAX_LEN);
    info.extend_from_slice(CHIP_BOUND_INFO);
    info.extend_from_slice(chip.as_bytes());
    // 32 bytes is far below HKDF's 255 * 32 limit, so expand cannot fail.
    let _ = hk.expand(&info, okm.as_mut_slice());
    PreWriteKey::from_array(*okm)
}

fn aes(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(&(*key).into())
}
