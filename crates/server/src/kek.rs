//! The key-encryption key (KEK) and sealing of secrets at rest.
//!
//! Why: the database file is the thing most likely to be copied (backups, support bundles).
//! Pre-write keys, pass phrases and conversion values are stored only as
//! `nonce (12) | AES-256-GCM ciphertext | tag (16)` under the KEK, with the table and row as
//! associated data, so a blob cannot be moved to another row. The KEK lives in a separate file
//! (mode 0600) created by `imprint init`, so the database alone reveals no secret.

use std::path::Path;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand_core::Rng;
use zeroize::Zeroizing;

use crate::error::AppError;

/// The key-encryption key.
pub struct Kek {
    cipher: Aes256Gcm,
    /// HMAC key for tags of names that must not be logged in clear (derived from the KEK).
    tag_key: Zeroizing<[u8; 32]>,
    /// HMAC key for the tags of authentication challenges (derived from the KEK, so every
    /// server process that shares the KEK checks the challenges any of them made).
    challenge_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// A KEK from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Kek {
        Kek {
            cipher: Aes256Gcm::new(&(*bytes).into()),
            tag_key: Zeroizing::new(hmac_sha256(bytes, &[b"imprint name tag key v1"])),
            challenge_key: Zeroizing::new(hmac_sha256(bytes, &[b"imprint challenge key v1"])),
        }
    }

    /// A fresh random KEK (tests, `imprint init`), with its bytes for the key file.
    pub fn generate() -> (Kek, Zeroizing<[u8; 32]>) {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::rng().fill_bytes(k.as_mut_slice());
        (Kek::from_bytes(&k), k)
    }

    /// Creates the key file (hex, mode 0600). Refuses to overwrite: losing the KEK loses every
    /// secret in the database.
    pub fn create_file(path: &Path) -> Result<Kek, AppError> {
        if path.exists() {
            return Err(AppError::Config(format!(
                "{} already exists; refusing to overwrite the key-encryption key",
                path.display()
            )));
        }
        let (kek, bytes) = Kek::generate();
        let text = Zeroizing::new(hex::encode(bytes.as_slice()) + "\n");
        write_private(path, text.as_bytes())?;
        Ok(kek)
    }

    /// Loads the key file.
    pub fn load_file(path: &Path) -> Result<Kek, AppError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            AppError::Config(format!(
                "cannot read the key-encryption key {}: {e} (run `imprint init` first)",
                path.display()
            ))
        })?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), bytes.as_mut_slice()).map_err(|_| {
            AppError::Config(format!(
                "{} is not a key-encryption key (64 hex digits expected)",
                path.display()
            ))
        })?;
        Ok(Kek::from_bytes(&bytes))
    }

    /// A keyed tag of a name (16 bytes of HMAC-SHA256 under a key derived from the KEK): the
    /// same name gives the same tag on this server, so the audit log can show that one unknown
    /// name was tried many times without ever holding the name (which may be a password typed
    /// into the wrong field).
    pub fn name_tag(&self, name: &str) -> [u8; 16] {
        first_16(hmac_sha256(self.tag_key.as_slice(), &[name.as_bytes()]))
    }

    /// The tag of an authentication challenge's fields (16 bytes of HMAC-SHA256 under a key
    /// derived from the KEK): only a server holding the KEK makes a challenge that checks.
    pub fn challenge_tag(&self, parts: &[&[u8]]) -> [u8; 16] {
        first_16(hmac_sha256(self.challenge_key.as_slice(), parts))
    }

    /// Seals a secret for one row: `context` names the table and the row.
    pub fn seal(&self, context: &str, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        crate::rng().fill_bytes(&mut nonce);
        let mut buf = Zeroizing::new(secret.to_vec());
        // AES-GCM encryption fails only for a message over 64 GiB; a secret at rest is at most
        // a few dozen bytes. A zero tag in its place would seal nothing, so a failure here is a
        // panic that names the invariant, never a substitute value.
        #[allow(clippy::expect_used)]
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                context.as_bytes(),
                buf.as_mut_slice().into(),
            )
            .expect("AES-GCM seals any secret under 64 GiB");
        let mut out = Vec::with_capacity(12 + secret.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
        out
    }

    /// Opens a sealed secret. Fails if the blob was altered, moved to another row, or sealed
    /// under another KEK.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AppError> {
        let bad = || {
            AppError::bug(format!(
                "a secret at rest failed to open ({context}): wrong key file or altered database"
            ))
        };
        if sealed.len() < 28 {
            return Err(bad());
        }
        let (nonce, rest) = sealed.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
        let tag = Tag::try_from(tag).map_err(|_| bad())?;
        let mut buf = Zeroizing::new(ct.to_vec());
        self.cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                context.as_bytes(),
                buf.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| bad())?;
        Ok(buf)
    }
}

/// Writes a file only its owner can read (mode 0600), refusing to overwrite.
#[cfg(unix)]
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AppError::Config(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| AppError::Config(format!("cannot write {}: {e}", path.display())))
}

/// Writes a file (no POSIX permissions on this platform), refusing to overwrite.
#[cfg(not(unix))]
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    std::fs::write(path, bytes)
        .map_err(|e| AppError::Config(format!("cannot write {}: {e}", path.display())))
}

/// HMAC-SHA256 of `parts`, one after the other, under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes a key of any length.
    #[allow(clippy::expect_used)]
    let mut m = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key)
        .expect("HMAC-SHA256 takes a key of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn first_16(full: [u8; 32]) -> [u8; 16] {
    let mut tag = [0u8; 16];
    for (t, f) in tag.iter_mut().zip(full) {
        *t = f;
    }
    tag
}
