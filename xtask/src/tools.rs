//! Installing what the checks need, and skipping what is already there at the right version,
//! so a second run costs seconds. Every install comes from rustup, crates.io or Debian's
//! packages: tools that download their own binaries fail on closed networks.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::{Failure, Result, cargo, root, sh};

/// The bare-metal target the write module must build for.
pub(crate) const THUMB: &str = "thumbv7em-none-eabihf";
/// The browser target.
pub(crate) const WASM: &str = "wasm32-unknown-unknown";

/// The cargo that runs us (so a `cargo +toolchain xtask` keeps its toolchain).
pub(crate) fn cargo_bin() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn cargo_home_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

/// PATH with cargo's bin folder first, so tools installed a moment ago are found.
pub(crate) fn path_with_cargo_bin() -> OsString {
    let mut paths = vec![cargo_home_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Runs a command quietly and returns its stdout, or None if it could not run or failed.
pub(crate) fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .env("PATH", path_with_cargo_bin())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ensure_targets() -> Result {
    let Some(installed) = output("rustup", &["target", "list", "--installed"]) else {
        return Err(Failure(format!(
            "rustup not found: install the Rust targets {WASM} and {THUMB} for your toolchain"
        )));
    };
    let missing: Vec<&str> = [WASM, THUMB]
        .into_iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        eprintln!("rust targets: {WASM}, {THUMB} present");
        return Ok(());
    }
    sh(Command::new("rustup")
        .args(["target", "add"])
        .args(&missing))
}

/// The version of a package in Cargo.lock.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| Failure(format!("cannot read Cargo.lock: {e}")))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{package}\"")
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
        {
            return Ok(v.trim_matches('"').to_string());
        }
    }
    Err(Failure(format!("{package} is not in Cargo.lock")))
}

/// `cargo install`, trying `--locked` first: some tools' shipped lock files name versions
/// the registry no longer serves, and then a fresh resolution works.
fn cargo_install(krate: &str, version: Option<&str>) -> Result {
    let mut args = vec!["install", krate];
    if let Some(v) = version {
        args.extend(["--version", v]);
    }
    let mut locked = args.clone();
    locked.push("--locked");
    cargo(&locked).or_else(|e| {
        eprintln!("{}; retrying without --locked", e.0);
        cargo(&args)
    })
}

pub(crate) fn ensure_wasm_bindgen() -> Result {
    let want = locked_version("wasm-bindgen")?;
    let have = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    let runner = output("wasm-bindgen-test-runner", &["--version"]).unwrap_or_default();
    if have.trim() == format!("wasm-bindgen {want}") && runner.contains(&want) {
        eprintln!("wasm-bindgen-cli {want} present");
        return Ok(());
    }
    eprintln!(
        "wasm-bindgen-cli must match the wasm-bindgen crate ({want}); found '{}'",
        have.trim()
    );
    cargo_install("wasm-bindgen-cli", Some(&want))
}

pub(crate) fn ensure_wasm_pack() -> Result {
    if let Some(v) = output("wasm-pack", &["--version"]) {
        eprintln!("{} present", v.trim());
        return Ok(());
    }
    cargo_install("wasm-pack", None)
}

pub(crate) fn ensure_cargo_fuzz() -> Result {
    let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        sh(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if output("cargo", &["fuzz", "--version"]).is_some() {
        return Ok(());
    }
    cargo_install("cargo-fuzz", None)
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let out = output("sh", &["-c", &format!("command -v {name}")])?;
    let p = PathBuf::from(out.trim());
    p.is_file().then_some(p)
}

pub(crate) fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|u| u.trim() == "0")
}

/// Installs Debian packages with apt-get when running as root on a machine that has it;
/// false when it cannot (the caller then says what to install).
pub(crate) fn apt_install(packages: &[&str]) -> Result<bool> {
    if !is_root() || which("apt-get").is_none() {
        return Ok(false);
    }
    sh(Command::new("apt-get").arg("update").arg("-q"))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(true)
}

/// The emulator for the write module's Cortex-M4 tests: `IMPRINT_QEMU`, else
/// `qemu-system-arm` on the PATH, installed from Debian's package as root when missing.
pub(crate) fn ensure_qemu() -> Result<PathBuf> {
    let find = || match std::env::var_os("IMPRINT_QEMU") {
        Some(q) => Some(PathBuf::from(q)).filter(|q| q.is_file()),
        None => which("qemu-system-arm"),
    };
    if find().is_none() {
        apt_install(&["qemu-system-arm"])?;
    }
    let qemu = find().ok_or_else(|| {
        Failure("the write module's emulated-core tests need QEMU's qemu-system-arm (7.2 or newer, machine mps2-an386): on Debian/Ubuntu `sudo apt-get install --no-install-recommends qemu-system-arm`, on macOS `brew install qemu`; one elsewhere: set IMPRINT_QEMU to its path".into())
    })?;
    let version = output(&qemu.to_string_lossy(), &["--version"]).unwrap_or_default();
    eprintln!(
        "QEMU {} ({})",
        qemu.display(),
        version.lines().next().unwrap_or("version unknown")
    );
    Ok(qemu)
}

/// Finds (or, as root on Debian, installs) Chromium and its ChromeDriver; returns the driver.
pub(crate) fn ensure_chromedriver() -> Result<PathBuf> {
    let find = || {
        let driver = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .or_else(|| which("chromedriver"));
        let browser = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|b| which(b));
        driver.zip(browser)
    };
    if let Some((driver, browser)) = find() {
        eprintln!("browser {}, driver {}", browser.display(), driver.display());
        return Ok(driver);
    }
    if is_root() && which("apt-get").is_some() {
        sh(Command::new("apt-get").arg("update").arg("-q"))?;
        sh(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if let Some((driver, _)) = find() {
            return Ok(driver);
        }
    }
    Err(Failure(
        "headless Chromium tests need Chromium and ChromeDriver of the same version: on Debian/Ubuntu `sudo apt-get install chromium chromium-driver`, elsewhere install Chrome and chromedriver and set CHROMEDRIVER=/path/to/chromedriver".into(),
    ))
}

/// A wasm-opt that handles what wasm-bindgen 0.2.130 emits: binaryen 116 or newer. Debian
/// bookworm's binaryen 108 breaks the externref table ("WebAssembly.Table.set(): Argument 1
/// is invalid"), so the npm package `binaryen` (132) is installed under `target/tools` when
/// npm is there. Returns its path; without one the portal still works, only larger.
pub(crate) fn ensure_wasm_opt() -> Option<PathBuf> {
    let good = |bin: &std::ffi::OsStr| {
        Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|v| {
                v.split_whitespace()
                    .nth(2)
                    .and_then(|n| n.parse::<u32>().ok())
            })
            .is_some_and(|n| n >= 116)
    };
    let local = root().join("target/tools/node_modules/.bin/wasm-opt");
    if local.is_file() && good(local.as_os_str()) {
        return Some(local);
    }
    if good(std::ffi::OsStr::new("wasm-opt")) {
        return Some(PathBuf::from("wasm-opt"));
    }
    if npm_install("binaryen@132") && good(local.as_os_str()) {
        return Some(local);
    }
    eprintln!(
        "no wasm-opt >= 116 (npm package binaryen): the portal is built without size optimisation"
    );
    None
}

/// terser (npm), to minify the JavaScript glue wasm-bindgen writes (the portal's loader shrinks
/// from 9 to 7 KB gzipped). Installed under `target/tools` when npm is there; without it the
/// glue ships as written.
pub(crate) fn ensure_terser() -> Option<PathBuf> {
    let local = root().join("target/tools/node_modules/.bin/terser");
    if local.is_file() {
        return Some(local);
    }
    if npm_install("terser@5") && local.is_file() {
        Some(local)
    } else {
        eprintln!("no terser (npm): the portal's JavaScript glue ships unminified");
        None
    }
}

/// trunk, the Leptos developer's build tool, at the version `trunk serve` was checked with.
pub(crate) fn ensure_trunk() -> Result {
    if output("trunk", &["--version"]).is_some_and(|v| v.contains("0.21")) {
        return Ok(());
    }
    cargo_install("trunk", Some("0.21.14"))
}

/// Installs an npm package under `target/tools` (the project's own tools, never global); false
/// without npm or when the install fails.
fn npm_install(package: &str) -> bool {
    if which("npm").is_none() {
        return false;
    }
    let prefix = root().join("target/tools");
    let _ = std::fs::create_dir_all(&prefix);
    sh(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&prefix)
        .arg(package))
    .is_ok()
}
