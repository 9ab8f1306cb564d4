//! Signed checkpoints of the audit log, in the text forms of C2SP's `tlog-checkpoint` and
//! `signed-note` (the forms of the Go checksum database, Sigstore's logs and their witnesses),
//! so that tools written for those logs read ours.
//!
//! A checkpoint's body is three lines, each ending in `\n`:
//!
//! ```text
//! <origin>            the log's name, unique to one log
//! <size>              the tree size, decimal
//! <root>              the RFC 9162 root hash of that size, base64 (standard, padded)
//! ```
//!
//! A signed note is the body, a blank line, and one line per signature:
//! `— <key name> <base64(key ID (4 bytes) || Ed25519 signature (64 bytes))>` (U+2014, space).
//! The key ID is the first 4 bytes of `SHA-256(key name || "\n" || 0x01 || public key)`, 0x01
//! being Ed25519's algorithm byte; a verifier key is written `<name>+<key ID, 8 hex>+<base64(0x01
//! || public key)>`. The signature is over the body's bytes exactly.
//!
//! Only parsing, formatting and verification live here: the server signs (in its token or with
//! a key sealed at rest), and an outsider needs nothing of the server to check.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::tlog::Hash;

/// Ed25519's algorithm byte in a signed-note key.
const ED25519: u8 = 0x01;
/// The algorithm byte of a witness's Ed25519 cosignature key (C2SP tlog-cosignature).
const COSIGNATURE_V1: u8 = 0x04;
/// What starts a signature line.
const DASH: &str = "\u{2014} ";
/// A note with more signatures than this is refused (the Go note package's limit).
pub const MAX_SIGNATURES: usize = 100;

/// A checkpoint: the log's name, a tree size and the root hash of that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (its first line).
    pub origin: String,
    /// Entries in the tree.
    pub size: u64,
    /// The RFC 9162 root of the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The body that is signed: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            Base64::encode_string(&self.root)
        )
    }

    /// Reads a body. Extension lines after the root (non-empty) are allowed by the format and
    /// ignored here: they are signed with the rest, and this log writes none.
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let text = body
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("a checkpoint ends with a newline"))?;
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(NoteError::Malformed("the first line (the origin) is empty"));
        }
        let size = lines
            .next()
            .ok_or(NoteError::Malformed("the size line is missing"))?;
        // Decimal without sign or leading zeros, so one size has one text.
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(NoteError::Malformed("the size is not a decimal number"));
        }
        let size = size
            .parse()
            .map_err(|_| NoteError::Malformed("the size is too large"))?;
        let root = lines
            .next()
            .ok_or(NoteError::Malformed("the root line is missing"))?;
        let root: Hash =
            decode_exact(root).ok_or(NoteError::Malformed("the root is not 32 bytes of base64"))?;
        if lines.any(str::is_empty) {
            return Err(NoteError::Malformed("an extension line is empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// The first 4 bytes of `SHA-256(name || "\n" || 0x01 || public)`.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    id_of(name, ED25519, public)
}

fn id_of(name: &str, algorithm: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([algorithm]);
    h.update(public);
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, ..] = d;
    [a, b, c, e]
}

/// A key name must be non-empty and hold no whitespace and no `+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A verifier key: a name and an Ed25519 public key, as `<name>+<hex key ID>+<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key's name (in signature lines).
    pub name: String,
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

impl VerifierKey {
    /// The key's 4-byte ID.
    pub fn id(&self) -> [u8; 4] {
        key_id(&self.name, &self.public)
    }

    /// Reads `<name>+<hex key ID>+<base64(0x01 || key)>`, checking the ID against the key.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, public) = parse_vkey(text, ED25519)?;
        Ok(VerifierKey { name, public })
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_vkey(f, &self.name, ED25519, &self.public)
    }
}

/// A witness's cosigning key (C2SP tlog-cosignature, Ed25519): its vkey is
/// `<name>+<hex key ID>+<base64(0x04 || key)>`, the key ID over the algorithm byte 0x04.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    /// The witness's name (in cosignature lines).
    pub name: String,
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

impl CosignerKey {
    /// The key's 4-byte ID.
    pub fn id(&self) -> [u8; 4] {
        id_of(&self.name, COSIGNATURE_V1, &self.public)
    }

    /// Reads `<name>+<hex key ID>+<base64(0x04 || key)>`.
    pub fn parse(text: &str) -> Result<CosignerKey, NoteError> {
        let (name, public) = parse_vkey(text, COSIGNATURE_V1)?;
        Ok(CosignerKey { name, public })
    }

    /// The cosignature line of `body` (a checkpoint's body) made at `timestamp` (Unix
    /// seconds) with `signature` over [`cosigned_message`].
    pub fn line(&self, timestamp: u64, signature: &[u8; 64]) -> String {
        let mut sig = Vec::with_capacity(72);
        sig.extend_from_slice(&timestamp.to_be_bytes());
        sig.extend_from_slice(signature);
        NoteSignature {
            name: self.name.clone(),
            id: self.id(),
            signature: sig,
        }
        .line()
    }

    /// Checks this witness's cosignature on `note`'s body; returns its timestamp.
    pub fn verify(&self, note: &Note<'_>) -> Result<u64, NoteError> {
        let id = self.id();
        let sig = note
            .signatures
            .iter()
            .find(|s| s.name == self.name && s.id == id)
            .ok_or(NoteError::NotSigned)?;
        let (ts, sig) = sig
            .signature
            .split_first_chunk::<8>()
            .ok_or(NoteError::BadSignature)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| NoteError::BadSignature)?;
        let timestamp = u64::from_be_bytes(*ts);
        let public = VerifyingKey::from_bytes(&self.public)
            .map_err(|_| NoteError::BadKey("not a valid Ed25519 point"))?;
        public
            .verify(
                cosigned_message(note.body, timestamp).as_bytes(),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| NoteError::BadSignature)?;
        Ok(timestamp)
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_vkey(f, &self.name, COSIGNATURE_V1, &self.public)
    }
}

/// What a witness signs: `cosignature/v1\ntime <timestamp>\n` and the checkpoint's body.
pub fn cosigned_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

fn parse_vkey(text: &str, algorithm: u8) -> Result<(String, [u8; 32]), NoteError> {
    let text = text.trim();
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("a verifier key is NAME+KEYID+KEY"));
    };
    if !valid_name(name) {
        return Err(NoteError::BadKey(
            "the key name is empty or holds whitespace or '+'",
        ));
    }
    let id: [u8; 4] = decode_hex4(id).ok_or(NoteError::BadKey("the key ID is not 8 hex digits"))?;
    let bytes: [u8; 33] =
        decode_exact(key).ok_or(NoteError::BadKey("the key is not 33 bytes of base64"))?;
    let [kind, public @ ..] = bytes;
    if kind != algorithm {
        return Err(NoteError::BadKey(if algorithm == ED25519 {
            "the key is not an Ed25519 note key (algorithm 1)"
        } else {
            "the key is not an Ed25519 cosignature key (algorithm 4)"
        }));
    }
    if id_of(name, algorithm, &public) != id {
        return Err(NoteError::BadKey("the key ID does not match the key"));
    }
    // Whether the 32 bytes are a valid point is found when a signature is checked with them
    // (BadKey): checking here would put Ed25519's point arithmetic into a page that verifies
    // with WebCrypto.
    Ok((name.to_string(), public))
}

fn write_vkey(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    algorithm: u8,
    public: &[u8; 32],
) -> fmt::Result {
    let mut bytes = [0u8; 33];
    let [kind, rest @ ..] = &mut bytes;
    *kind = algorithm;
    rest.copy_from_slice(public);
    write!(f, "{name}+")?;
    for b in id_of(name, algorithm, public) {
        write!(f, "{b:02x}")?;
    }
    write!(f, "+{}", Base64::encode_string(&bytes))
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID (first 4 bytes of the signature's base64).
    pub id: [u8; 4],
    /// The rest: 64 bytes for an Ed25519 note signature; other kinds (a witness's
    /// cosignature) have other lengths.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, newline included.
    pub fn line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.id);
        bytes.extend_from_slice(&self.signature);
        format!("{DASH}{} {}\n", self.name, Base64::encode_string(&bytes))
    }
}

/// A note split into its body and its signatures (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    /// The signed text, its final newline included.
    pub body: &'a str,
    /// Its signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl<'a> Note<'a> {
    /// Splits `text` at its last blank line into the body and the signature lines.
    pub fn parse(text: &'a str) -> Result<Note<'a>, NoteError> {
        let split = text
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (body, sigs) = (
            text.get(..split + 1).unwrap_or_default(),
            text.get(split + 2..).unwrap_or_default(),
        );
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("a note ends with a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            let rest = line.strip_prefix(DASH).ok_or(NoteError::Malformed(
                "a signature line starts with '\u{2014} '",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line is '\u{2014} NAME SIGNATURE'",
            ))?;
            if !valid_name(name) {
                return Err(NoteError::Malformed("a signature's key name is not valid"));
            }
            let bytes = Base64::decode_vec(b64)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            let Some((id, signature)) = bytes
                .split_first_chunk::<4>()
                .filter(|(_, sig)| !sig.is_empty())
            else {
                return Err(NoteError::Malformed("a signature is too short"));
            };
            signatures.push(NoteSignature {
                name: name.to_string(),
                id: *id,
                signature: signature.to_vec(),
            });
            if signatures.len() > MAX_SIGNATURES {
                return Err(NoteError::Malformed("a note has too many signatures"));
            }
        }
        Ok(Note { body, signatures })
    }

    /// Checks that `key` signed the body (other signatures are left alone, as the format
    /// says: a witness adds its own).
    pub fn verify(&self, key: &VerifierKey) -> Result<(), NoteError> {
        let id = key.id();
        let sig = self
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.id == id)
            .ok_or(NoteError::NotSigned)?;
        let sig: [u8; 64] = sig
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| NoteError::BadSignature)?;
        let public = VerifyingKey::from_bytes(&key.public)
            .map_err(|_| NoteError::BadKey("not a valid Ed25519 point"))?;
        public
            .verify(self.body.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| NoteError::BadSignature)
    }
}

/// Reads a signed checkpoint and checks that `key` signed it and that its origin is `key`'s
/// log: what a verifier, a witness or a station does with a checkpoint it is handed.
pub fn open_checkpoint(
    text: &str,
    key: &VerifierKey,
    origin: &str,
) -> Result<Checkpoint, NoteError> {
    let note = Note::parse(text)?;
    note.verify(key)?;
    let checkpoint = Checkpoint::parse(note.body)?;
    if checkpoint.origin != origin {
        return Err(NoteError::WrongOrigin);
    }
    Ok(checkpoint)
}

/// A signed checkpoint from its body and one signature (the server's, made elsewhere).
pub fn signed(checkpoint: &Checkpoint, key: &VerifierKey, signature: &[u8; 64]) -> String {
    let mut text = checkpoint.body();
    text.push('\n');
    text.push_str(
        &NoteSignature {
            name: key.name.clone(),
            id: key.id(),
            signature: signature.to_vec(),
        }
        .line(),
    );
    text
}

/// Why a note or key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteError {
    /// The text is not a note or checkpoint; says what is wrong.
    Malformed(&'static str),
    /// A verifier key could not be read; says what is wrong.
    BadKey(&'static str),
    /// The note has no signature by the key it was checked with.
    NotSigned,
    /// The key's signature does not match the body: the note was altered or forged.
    BadSignature,
    /// The checkpoint names another log.
    WrongOrigin,
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "not a signed checkpoint: {why}"),
            NoteError::BadKey(why) => write!(f, "not a verifier key: {why}"),
            NoteError::NotSigned => f.write_str("the note carries no signature by this log's key"),
            NoteError::BadSignature => f.write_str(
                "the log's signature does not match the checkpoint: it was altered or not signed by this log",
            ),
            NoteError::WrongOrigin => f.write_str("the checkpoint is of another log (its first line)"),
        }
    }
}

/// Base64 that decodes to exactly `N` bytes.
fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let got = Base64::decode(text, &mut out).ok()?;
    (got.len() == N).then_some(out)
}

fn decode_hex4(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 4];
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(core::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}
