//! The sealed record: the encrypted blob of table 708, formats v1 and v2 (byte layout in
//! `docs/protocol.md`).
//!
//! v1 is every model-bound record, and chip-bound records whose chip key is HKDF of the
//! pre-write key (which an HSM cannot compute); v2 is a chip-bound record whose chip key is
//! AES-CBC encryption of the chip ID under the pre-write key ([`chip_bound_key_v2`]), which a
//! PKCS#11 token derives inside itself (`CKM_AES_CBC_ENCRYPT_DATA`). New chip-bound records are
//! v2; v1 chip-bound records still open.
//!
//! ```text
//! offset  size  field
//! 0       1     format version = 0x01, or 0x02 (chip-bound only)
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
use aes_gcm::aes::Aes256;
use aes_gcm::aes::cipher::BlockCipherEncrypt;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{DecodeError, Reader, put_short};
use crate::ids::{ApparatusId, ChipId, KeyId};
use crate::secret::{PassPhrase, PreWriteKey};

/// Format v1: model-bound records, and chip-bound ones with an HKDF chip key.
pub const FORMAT_V1: u8 = 0x01;
/// Format v2: chip-bound records with a chip key a PKCS#11 token can derive.
pub const FORMAT_V2: u8 = 0x02;
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

/// Largest plaintext inside a record: short ID, short pass phrase, issue nonce.
const MAX_PLAIN_LEN: usize = MAX_SEALED_LEN - HEADER_LEN - NONCE_LEN - TAG_LEN;
/// Largest AAD: the header and the short apparatus ID.
const MAX_AAD_LEN: usize = HEADER_LEN + 1 + ApparatusId::MAX_LEN;

/// HKDF info prefix for chip-bound keys of format v1; the chip ID follows it.
const CHIP_BOUND_INFO: &[u8] = b"imprint/v1/chip-bound";
/// The label in the second block of a v2 chip key's derivation; the chip ID's length follows.
const CHIP_V2_LABEL: &[u8; 15] = b"imprint/v2/chip";

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

    /// The format a new record of this binding is sealed in: v1 for the model, v2 for a chip.
    pub fn format(&self) -> u8 {
        match self {
            Binding::Model => FORMAT_V1,
            Binding::Chip(_) => FORMAT_V2,
        }
    }
}

/// A pre-write key that can seal a record: AES-256-GCM encryption in place under the key for
/// `binding` (the pre-write key itself, or for a chip the v2 chip key), returning the tag. [`PreWriteKey`] does it in memory; a server whose keys are in
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
        let tag = cipher_for(self, binding.format(), binding)
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
    bytes: RecordBytes,
    key_id: KeyId,
    chip_bound: bool,
    format: u8,
}

/// A record's bytes, held inline: at most [`MAX_SEALED_LEN`], so a write module parses an
/// install request without the heap. Bytes past `len` stay zero, so equality is the bytes'.
#[derive(Clone, PartialEq, Eq)]
struct RecordBytes {
    buf: [u8; MAX_SEALED_LEN],
    len: usize,
}

impl RecordBytes {
    /// `None` if `bytes` is longer than a record can be.
    fn from_slice(bytes: &[u8]) -> Option<RecordBytes> {
        let mut buf = [0u8; MAX_SEALED_LEN];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(RecordBytes {
            buf,
            len: bytes.len(),
        })
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("key_id", &self.key_id)
            .field("chip_bound", &self.chip_bound)
            .field("len", &self.bytes.len)
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
        bytes.push(binding.format());
        bytes.push(binding.code());
        bytes.extend_from_slice(&key_id.to_be_bytes());
        let aad = Aad::new(&bytes, apparatus_id);
        bytes.extend_from_slice(&nonce);

        let mut plain = Zeroizing::new(Vec::with_capacity(MAX_SEALED_LEN));
        put_short(&mut plain, apparatus_id.as_bytes());
        put_short(&mut plain, pass_phrase.expose_secret());
        plain.extend_from_slice(&issue_nonce);

        let tag = key.encrypt(binding, &nonce, aad.as_slice(), plain.as_mut_slice())?;
        bytes.extend_from_slice(&plain);
        bytes.extend_from_slice(&tag);
        // The lengths of the ID and pass phrase are bounded by their types, so a record built
        // here is at most MAX_SEALED_LEN; a shorter one in its place would never open.
        #[allow(clippy::expect_used)]
        let bytes = RecordBytes::from_slice(&bytes).expect("a sealed record fits MAX_SEALED_LEN");
        let record = SealedRecord {
            bytes,
            key_id,
            chip_bound: matches!(binding, Binding::Chip(_)),
            format: binding.format(),
        };
        Ok((record, issue_nonce))
    }

    /// Checks the header and length of a received blob. Does not decrypt.
    pub fn parse(bytes: &[u8]) -> Result<SealedRecord, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("sealed record version")?;
        if version != FORMAT_V1 && version != FORMAT_V2 {
            return Err(DecodeError::Unknown {
                what: "sealed record version",
                value: u32::from(version),
            });
        }
        let binding = r.u8("sealed record binding")?;
        // v2 exists for chip-bound records only: a model-bound record has one encoding, v1.
        if binding > 1 || (version == FORMAT_V2 && binding != 1) {
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
        let held = RecordBytes::from_slice(bytes).ok_or(DecodeError::TooMany {
            what: "sealed record bytes",
            count: bytes.len(),
            max: MAX_SEALED_LEN,
        })?;
        Ok(SealedRecord {
            bytes: held,
            key_id,
            chip_bound: binding == 1,
            format: version,
        })
    }

    /// The whole blob, as stored in table 708 and sent to the device.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The key identifier from the header.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Whether the record is bound to one chip.
    pub fn is_chip_bound(&self) -> bool {
        self.chip_bound
    }

    /// The format version from the header: [`FORMAT_V1`] or [`FORMAT_V2`].
    pub fn format(&self) -> u8 {
        self.format
    }

    /// SHA-256 of the whole blob: names the record in receipts and in "do you hold record X?".
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.bytes.as_slice()).into()
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
        let mut r = Reader::new(self.bytes.as_slice());
        let header = r.bytes(HEADER_LEN, "header").map_err(|_| OpenError)?;
        let nonce: [u8; NONCE_LEN] = r.array("nonce").map_err(|_| OpenError)?;
        let body = r.rest();
        let split = body.len().checked_sub(TAG_LEN).ok_or(OpenError)?;
        let (ct, tag) = body.split_at(split);
        let tag = Tag::try_from(tag).map_err(|_| OpenError)?;

        // On the stack, not the heap: a write module opens one record per unit and its
        // firmware's heap is small (docs/benchmarks.md, "Write module on an emulated Cortex-M4").
        let mut buf = Zeroizing::new([0u8; MAX_PLAIN_LEN]);
        let plain = buf.get_mut(..ct.len()).ok_or(OpenError)?;
        plain.copy_from_slice(ct);
        let aad = Aad::new(header, apparatus_id);
        cipher_for(key, self.format, &binding)
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                aad.as_slice(),
                (&mut *plain).into(),
                &tag,
            )
            .map_err(|_| OpenError)?;

        let mut p = Reader::new(plain);
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

/// The AAD of a record, `header || short(apparatus ID)`, in a fixed buffer.
struct Aad {
    buf: [u8; MAX_AAD_LEN],
    len: usize,
}

impl Aad {
    fn new(header: &[u8], apparatus_id: &ApparatusId) -> Aad {
        let mut buf = [0u8; MAX_AAD_LEN];
        let id = apparatus_id.as_bytes();
        let parts: [&[u8]; 3] = [header, &[id.len() as u8], id];
        let mut len = 0;
        for part in parts {
            // The header is HEADER_LEN bytes and an ID at most MAX_LEN: MAX_AAD_LEN in all.
            if let Some(dst) = buf.get_mut(len..len + part.len()) {
                dst.copy_from_slice(part);
                len += part.len();
            }
        }
        Aad { buf, len }
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }
}

/// The AES-256-GCM instance for a binding in a format: the pre-write key itself, or the chip
/// key of that format ([`chip_bound_key`] for v1, [`chip_bound_key_v2`] for v2).
fn cipher_for(key: &PreWriteKey, format: u8, binding: &Binding) -> Aes256Gcm {
    match binding {
        Binding::Model => aes(key.expose_secret()),
        Binding::Chip(chip) if format == FORMAT_V1 => {
            aes(chip_bound_key(key, chip).expose_secret())
        }
        Binding::Chip(chip) => aes(chip_bound_key_v2(key, chip).expose_secret()),
    }
}

/// The key a v2 chip-bound record is sealed under:
/// `AES-256-CBC(key = pre-write key, IV = 0, B1 || B2)`, two blocks, no padding, where
/// `B1` is the chip ID's bytes padded with zeros to 16 and `B2` is `"imprint/v2/chip"` (15
/// bytes) followed by the chip ID's length. So `C1 = AES(B1)`, `C2 = AES(C1 ^ B2)`, and the key
/// is `C1 || C2`. No two chip IDs share a key (the length is in `B2`), though IDs that differ
/// only by trailing zero bytes share `C1`; `B1` is not separated from GCM's own blocks, so a
/// chip key must stay inside the device and the token (docs/protocol.md, "Key"). A PKCS#11
/// token computes the same inside itself with `CKM_AES_CBC_ENCRYPT_DATA` (IV 0, data
/// `B1 || B2`, `CKA_VALUE_LEN` 32), so the pre-write key never leaves it.
pub fn chip_bound_key_v2(key: &PreWriteKey, chip: &ChipId) -> PreWriteKey {
    let (b1, b2) = chip_v2_blocks(chip);
    let cipher = <Aes256 as aes_gcm::aes::cipher::KeyInit>::new(&(*key.expose_secret()).into());
    let mut c1 = aes_gcm::aes::Block::from(b1);
    cipher.encrypt_block(&mut c1);
    let mut c2 = c1;
    for (x, y) in c2.iter_mut().zip(b2) {
        *x ^= y;
    }
    cipher.encrypt_block(&mut c2);
    let mut out = Zeroizing::new([0u8; 32]);
    for (o, b) in out.iter_mut().zip(c1.iter().chain(c2.iter())) {
        *o = *b;
    }
    PreWriteKey::from_array(*out)
}

/// The two blocks a v2 chip key is derived from (`B1`, `B2` of [`chip_bound_key_v2`]).
fn chip_v2_blocks(chip: &ChipId) -> ([u8; 16], [u8; 16]) {
    let id = chip.as_bytes();
    let mut b1 = [0u8; 16];
    for (o, b) in b1.iter_mut().zip(id) {
        *o = *b;
    }
    let mut b2 = [0u8; 16];
    for (o, b) in b2.iter_mut().zip(CHIP_V2_LABEL) {
        *o = *b;
    }
    if let Some(last) = b2.last_mut() {
        // ChipId holds 1..=16 bytes, so its length fits a byte.
        *last = id.len() as u8;
    }
    (b1, b2)
}

/// `B1 || B2` of [`chip_bound_key_v2`]: the data a server gives a token's
/// `CKM_AES_CBC_ENCRYPT_DATA` (with IV 0) to derive the same key inside the token.
pub fn chip_v2_data(chip: &ChipId) -> [u8; 32] {
    let (b1, b2) = chip_v2_blocks(chip);
    let mut d = [0u8; 32];
    for (o, b) in d.iter_mut().zip(b1.iter().chain(b2.iter())) {
        *o = *b;
    }
    d
}

/// The key a v1 chip-bound record is sealed under:
/// `HKDF-SHA256(ikm = pre-write key, salt = none, info = "imprint/v1/chip-bound" || chip ID)`.
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
