//! SoftHSM2 for the tests with keys in a PKCS#11 token: installed when missing (Debian's
//! `softhsm2`), with a token folder of its own under `target/softhsm/<xtask's pid>` (its
//! `SOFTHSM2_CONF` points there, so no system token is touched) and tokens made fresh for each
//! run, removed when the [`Tokens`] is dropped.
//!
//! A token moves to a new slot number when it is initialised: the server and the tests find
//! it by its label, never by slot.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::which;
use crate::{Failure, Result, root, sh};

/// The Debian package.
const PACKAGE: &str = "softhsm2";
/// Where SoftHSM2's PKCS#11 module is on Debian, Ubuntu, Fedora, macOS (Homebrew).
const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
];

/// SoftHSM2's module: the one `IMPRINT_SOFTHSM_MODULE` names, else the first of [`MODULES`]
/// present with `softhsm2-util` on the PATH. When missing it installs `softhsm2` with apt as
/// root, or else says what to install.
pub(crate) fn ensure_softhsm() -> Result<PathBuf> {
    let find = || {
        let module = match std::env::var_os("IMPRINT_SOFTHSM_MODULE") {
            Some(m) => Some(PathBuf::from(m)).filter(|m| m.is_file()),
            None => MODULES.iter().map(PathBuf::from).find(|m| m.is_file()),
        };
        // The token tests wrap keys with the openssl command, as docs/server.md tells a
        // brand owner to: it is needed beside SoftHSM2.
        module.filter(|_| which("softhsm2-util").is_some() && which("openssl").is_some())
    };
    if let Some(m) = find() {
        return Ok(found(m));
    }
    if crate::tools::apt_install(&[PACKAGE, "openssl"])?
        && let Some(m) = find()
    {
        return Ok(found(m));
    }
    Err(Failure(format!(
        "the tests with keys in a PKCS#11 token need SoftHSM2 (its module and softhsm2-util) and the openssl command: on Debian/Ubuntu `sudo apt-get install --no-install-recommends {PACKAGE} openssl`, on macOS `brew install softhsm openssl`; a module elsewhere: set IMPRINT_SOFTHSM_MODULE to its path"
    )))
}

fn found(module: PathBuf) -> PathBuf {
    eprintln!("SoftHSM2 module {}", module.display());
    module
}

/// A token folder of this run's and its `SOFTHSM2_CONF`.
pub(crate) struct Tokens {
    dir: PathBuf,
    module: PathBuf,
}

impl Tokens {
    /// An empty token folder under `target/softhsm/<pid>`.
    pub(crate) fn new(module: &Path) -> Result<Tokens> {
        let dir = root()
            .join("target/softhsm")
            .join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tokens"))
            .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .map_err(|e| Failure(format!("cannot write SoftHSM2's configuration: {e}")))?;
        Ok(Tokens {
            dir,
            module: module.to_path_buf(),
        })
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// Initialises a fresh token labelled `label` with a random PIN; returns the PIN.
    pub(crate) fn init(&self, label: &str) -> Result<String> {
        let pin = format!("{:016x}", random());
        let so_pin = format!("{:016x}", random());
        sh(Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                &so_pin,
                "--pin",
                &pin,
            ])
            .env("SOFTHSM2_CONF", self.conf()))?;
        Ok(pin)
    }

    /// What the server's test suite needs to keep its keys in the token `label`.
    pub(crate) fn test_env(&self, label: &str, pin: &str) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf().display().to_string()),
            (
                "IMPRINT_TEST_PKCS11".into(),
                self.module.display().to_string(),
            ),
            ("IMPRINT_TEST_PKCS11_TOKEN".into(), label.into()),
            ("IMPRINT_TEST_PKCS11_PIN".into(), pin.into()),
        ]
    }

    /// What `imprint` itself reads to keep its keys in the token `label`.
    pub(crate) fn server_env(&self, label: &str, pin: &str) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf().display().to_string()),
            (
                "IMPRINT_PKCS11_MODULE".into(),
                self.module.display().to_string(),
            ),
            ("IMPRINT_PKCS11_TOKEN".into(), label.into()),
            ("IMPRINT_PKCS11_PIN".into(), pin.into()),
        ]
    }
}

impl Drop for Tokens {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 64 bits from the OS (a test token's PINs), without a dependency for it.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
