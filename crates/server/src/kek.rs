//! The key-encryption key file (`kek.key`) of file custody ([`crate::custody`]).
//!
//! Why a file apart: the database is the thing most likely to be copied (backups, support
//! bundles). Pre-write keys, pass phrases and conversion values are stored only sealed under
//! the KEK, so the database alone reveals no secret. The KEK lives in its own file (mode 0600)
//! created by `imprint init`; a brand owner who wants no key on disk at all uses a PKCS#11
//! token instead.

use std::path::Path;

use rand_core::Rng;
use zeroize::Zeroizing;

use crate::error::AppError;

/// The key-encryption key's 32 bytes.
pub struct Kek {
    bytes: Zeroizing<[u8; 32]>,
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
            bytes: Zeroizing::new(*bytes),
        }
    }

    /// The key's bytes, for [`crate::custody::Custody`] to build its cipher from.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
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
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes a key of any length.
    #[allow(clippy::expect_used)]
    let mut m = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key)
        .expect("HMAC-SHA256 takes a key of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}
