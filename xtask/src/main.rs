//! Imprint's automation, in Rust so it needs nothing but cargo.
//!
//! - `cargo xtask test`: every check CI runs, installing what is missing first.
//! - `cargo xtask run`: runs the system: the server with demo data (the portal joins it with
//!   its issue).
//! - `cargo xtask fuzz <target> [seconds]`: runs one fuzz target with cargo-fuzz.
//! - `cargo xtask vectors`: regenerates imprint-core's own test vectors.
//! - `cargo xtask portal`: builds the portal (wasm32, wasm-bindgen, wasm-opt) into
//!   `target/portal`, from the same `index.html` trunk uses.
//! - `cargo xtask bench`: the server benchmark, then seal/open next to `openssl speed`.
//! - `cargo xtask trunk-check`: builds the portal with trunk (as `trunk serve` does, installing
//!   trunk 0.21 if missing) and runs the end-to-end test on that build. Not part of `test`:
//!   compiling trunk takes about nine minutes on two cores.
//! - `cargo xtask postgres`: starts a PostgreSQL 15 cluster of its own (as `test` does for the
//!   server's tests), prints its URL and the `IMPRINT_TEST_*` variables the tests read, and
//!   stops it on Ctrl-C or the end of stdin: for running the PostgreSQL tests by hand.

mod postgres;
mod ship;
mod softhsm;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// A failed step: what failed, for the person reading the log.
#[derive(Debug)]
struct Failure(String);

type Result<T = ()> = std::result::Result<T, Failure>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("run") => run(),
        Some("fuzz") => fuzz(
            args.get(1).map(String::as_str),
            args.get(2).map(String::as_str),
        ),
        Some("vectors") => cargo(&[
            "run",
            "-q",
            "-p",
            "imprint-core",
            "--example",
            "make_vectors",
        ]),
        Some("bench") => bench(),
        Some("portal") => portal().map(|_| ()),
        Some("bench-portal") => bench_portal(),
        Some("trunk-check") => trunk_check(),
        Some("postgres") => postgres::serve(),
        Some("bench-device") => bench_device(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  test      run every check (what CI runs)\n  run       run the system\n  fuzz T S  run fuzz target T for S seconds (default 60)\n  vectors   regenerate crates/core/tests/vectors\n  bench     server benchmark; seal/open beside openssl speed\n  portal    build the portal into target/portal\n  bench-portal  portal size and first paint beside a bare Leptos page\n  trunk-check   build the portal with trunk and run the end-to-end test on it\n  postgres  a PostgreSQL 15 cluster for the server's tests, until Ctrl-C\n  bench-device  the write module's figures on an emulated Cortex-M4, and the firmware's flash"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("\nxtask: FAILED: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Runs a command in the workspace root, streaming its output.
fn sh(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}").replace('"', "");
    eprintln!("$ {shown}");
    // A PATH the caller set wins (trunk-check puts target/tools first).
    if !cmd.get_envs().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", tools::path_with_cargo_bin());
    }
    let status = cmd
        .current_dir(cmd.get_current_dir().map_or_else(root, Path::to_path_buf))
        .status()
        .map_err(|e| Failure(format!("could not start `{shown}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("`{shown}` exited with {status}")))
    }
}

fn cargo(args: &[&str]) -> Result {
    sh(Command::new(tools::cargo_bin()).args(args))
}

/// [`cargo`] with environment variables set for it.
fn cargo_env(args: &[&str], envs: &[(String, String)]) -> Result {
    sh(Command::new(tools::cargo_bin())
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v))))
}

/// Runs the steps in order, timing each, stopping at the first failure.
fn steps(list: &[(&str, &dyn Fn() -> Result)]) -> Result {
    let start = Instant::now();
    let mut times = Vec::new();
    for (name, step) in list {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        step().map_err(|Failure(m)| Failure(format!("{name}: {m}")))?;
        times.push((name, t.elapsed()));
    }
    eprintln!("\nxtask: every step passed in {:.0?}", start.elapsed());
    for (name, d) in times {
        eprintln!("  {:>7.1?}  {name}", d);
    }
    Ok(())
}

fn test() -> Result {
    if std::env::var_os("RUSTFLAGS").is_some() {
        eprintln!(
            "warning: RUSTFLAGS is set; it replaces .cargo/config.toml's wasm32 rustflags (web_sys_unstable_apis)"
        );
    }
    let chrome = std::cell::RefCell::new(None);
    // Lives until the PostgreSQL step is done, or test() returns whatever happens; dropping it
    // stops the server.
    let pg = std::cell::RefCell::new(None::<postgres::Cluster>);
    // SoftHSM2's module and this run's token folder, removed when test() returns.
    let hsm = std::cell::RefCell::new(None::<softhsm::Tokens>);
    let qemu = std::cell::RefCell::new(None::<PathBuf>);
    let pg_env = || {
        pg.borrow()
            .as_ref()
            .map(postgres::Cluster::env)
            .unwrap_or_default()
    };
    steps(&[
        ("install what is missing", &|| {
            tools::ensure_targets()?;
            tools::ensure_wasm_bindgen()?;
            tools::ensure_wasm_pack()?;
            *chrome.borrow_mut() = Some(tools::ensure_chromedriver()?);
            let bin = postgres::ensure_postgres()?;
            *pg.borrow_mut() = Some(postgres::Cluster::start(&bin)?);
            *hsm.borrow_mut() = Some(softhsm::Tokens::new(&softhsm::ensure_softhsm()?)?);
            *qemu.borrow_mut() = Some(tools::ensure_qemu()?);
            Ok(())
        }),
        ("tidy: docs and vectors", &tidy),
        ("format", &|| cargo(&["fmt", "--all", "--check"])),
        ("clippy (host)", &|| {
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
        }),
        ("clippy (bare-metal and wasm32)", &|| {
            for target in [tools::THUMB, tools::WASM] {
                cargo(&[
                    "clippy",
                    "-p",
                    "imprint-core",
                    "-p",
                    "imprint-device",
                    "--no-default-features",
                    "--target",
                    target,
                    "--",
                    "-D",
                    "warnings",
                ])?;
            }
            cargo(&[
                "clippy",
                "-p",
                "imprint-device",
                "--features",
                "web",
                "--target",
                tools::WASM,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            cargo(&[
                "clippy",
                "-p",
                "imprint-portal",
                "-p",
                "imprint-console",
                "-p",
                "imprint-proofs",
                "--target",
                tools::WASM,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
        }),
        ("tests (native)", &|| {
            cargo_env(&["test", "--workspace"], &pg_env())
        }),
        ("server tests on PostgreSQL", &|| {
            let mut envs = pg_env();
            envs.push(("IMPRINT_TEST_DATABASE".into(), "postgres".into()));
            let run = cargo_env(&["test", "-p", "imprint-server", "--test", "it"], &envs);
            // Nothing after this needs the server: stop it now rather than at the end.
            drop(pg.borrow_mut().take());
            run
        }),
        (
            "server tests with the keys in a SoftHSM2 token (PKCS#11)",
            &|| {
                let tokens = hsm.borrow();
                let tokens = tokens
                    .as_ref()
                    .ok_or_else(|| Failure("SoftHSM2 was not set up".into()))?;
                let pin = tokens.init("imprint-suite")?;
                cargo_env(
                    &["test", "-p", "imprint-server", "--test", "it"],
                    &tokens.test_env("imprint-suite", &pin),
                )
            },
        ),
        (
            "build core and the write module for thumbv7em-none-eabihf and wasm32",
            &|| {
                for target in [tools::THUMB, tools::WASM] {
                    cargo(&[
                        "build",
                        "-p",
                        "imprint-core",
                        "-p",
                        "imprint-device",
                        "--no-default-features",
                        "--release",
                        "--target",
                        target,
                    ])?;
                }
                // The contract's serde for core's types stays no_std too.
                cargo(&[
                    "build",
                    "-p",
                    "imprint-core",
                    "--no-default-features",
                    "--features",
                    "serde",
                    "--target",
                    tools::THUMB,
                ])
            },
        ),
        ("tests (headless Chromium, via wasm-pack)", &|| {
            let driver = chrome.borrow().clone().unwrap_or_default();
            for krate in ["crates/core", "crates/device", "crates/portal"] {
                sh(Command::new("wasm-pack")
                    .args([
                        "test",
                        "--headless",
                        "--chrome",
                        "--mode",
                        "no-install",
                        krate,
                    ])
                    .env("CHROMEDRIVER", &driver))?;
            }
            Ok(())
        }),
        ("portal: build (wasm32, wasm-bindgen, wasm-opt)", &|| {
            portal().map(|_| ())
        }),
        (
            "end to end: real server, real portal in headless Chromium, simulated units",
            &|| {
                // The server of the end-to-end test keeps its keys in a token of its own.
                let tokens = hsm.borrow();
                let tokens = tokens
                    .as_ref()
                    .ok_or_else(|| Failure("SoftHSM2 was not set up".into()))?;
                let pin = tokens.init("imprint-e2e")?;
                let driver = chrome.borrow().clone().unwrap_or_default();
                end_to_end(
                    &root().join("target/portal"),
                    &driver,
                    &tokens.server_env("imprint-e2e", &pin),
                )
            },
        ),
        ("fuzz targets: build and smoke-run", &fuzz_smoke),
        (
            "firmware example (embassy-usb, STM32F411, thumbv7em)",
            &|| {
                sh(Command::new(tools::cargo_bin())
                    .args(["build", "--release"])
                    .current_dir(root().join("crates/device/examples/firmware-stm32")))
            },
        ),
        (
            "the write module on an emulated Cortex-M4 (QEMU mps2-an386)",
            &|| {
                let qemu = qemu.borrow().clone().unwrap_or_default();
                emulated_core(&qemu, &[])
            },
        ),
        ("benchmarks compile", &|| {
            cargo(&["bench", "--workspace", "--no-run"])
        }),
    ])
}

/// The test firmware for QEMU's Cortex-M4 board, and the host-side tests that run it.
const QEMU_FIRMWARE: &str = "crates/device/examples/firmware-qemu";

/// Builds the test firmware (thumbv7em, its own workspace) and runs `tests/qemu` against it
/// under `qemu`; `extra` goes to the test harness (a filter, `--nocapture`).
fn emulated_core(qemu: &Path, extra: &[&str]) -> Result {
    sh(Command::new(tools::cargo_bin())
        .args(["clippy", "--release", "--", "-D", "warnings"])
        .current_dir(root().join(QEMU_FIRMWARE)))?;
    sh(Command::new(tools::cargo_bin())
        .args(["build", "--release"])
        .current_dir(root().join(QEMU_FIRMWARE)))?;
    let mut args = vec![
        "test",
        "-p",
        "imprint-qemu",
        "--test",
        "it",
        "--",
        "--ignored",
    ];
    args.extend_from_slice(extra);
    cargo_env(
        &args,
        &[
            ("IMPRINT_QEMU".into(), qemu.display().to_string()),
            (
                "IMPRINT_QEMU_FIRMWARE".into(),
                root()
                    .join(QEMU_FIRMWARE)
                    .join("target/thumbv7em-none-eabihf/release/imprint-firmware-qemu")
                    .display()
                    .to_string(),
            ),
        ],
    )
}

/// The write module's figures on the emulated Cortex-M4 (instructions, stack, heap and
/// allocations per request, from `tests/qemu`), then the flash and RAM both example firmwares
/// take, from their ELF section headers.
fn bench_device() -> Result {
    let qemu = tools::ensure_qemu()?;
    emulated_core(&qemu, &["figures", "--nocapture", "--test-threads=1"])?;
    sh(Command::new(tools::cargo_bin())
        .args(["build", "--release"])
        .current_dir(root().join("crates/device/examples/firmware-stm32")))?;
    println!("\n| firmware | flash (code, read-only data, .data image) | RAM (.data, .bss) |");
    println!("| --- | --- | --- |");
    for (dir, bin) in [
        (
            "crates/device/examples/firmware-stm32",
            "imprint-firmware-stm32",
        ),
        (QEMU_FIRMWARE, "imprint-firmware-qemu"),
    ] {
        let elf = root()
            .join(dir)
            .join("target/thumbv7em-none-eabihf/release")
            .join(bin);
        let bytes = std::fs::read(&elf)
            .map_err(|e| Failure(format!("cannot read {}: {e}", elf.display())))?;
        let (flash, ram) = elf_sizes(&bytes)
            .ok_or_else(|| Failure(format!("{} is not a 32-bit ELF image", elf.display())))?;
        println!("| `{bin}` | {flash} | {ram} |");
    }
    flash_by_part(
        &root()
            .join("crates/device/examples/firmware-stm32/target/thumbv7em-none-eabihf/release/imprint-firmware-stm32"),
    );
    Ok(())
}

/// The STM32 firmware's code and read-only data by part, from its symbols (`nm`, when there
/// is one). With LTO much is inlined into the firmware's main task, so that part holds the
/// write module's and the USB stack's logic too; the named parts are what stayed out of line.
fn flash_by_part(elf: &Path) {
    let Some(nm) = tools::which("nm") else {
        println!("(no nm here: the split by part is skipped)");
        return;
    };
    let Some(out) = tools::output(
        &nm.to_string_lossy(),
        &["-S", "-C", "--size-sort", &elf.to_string_lossy()],
    ) else {
        println!(
            "(nm could not read {}: the split by part is skipped)",
            elf.display()
        );
        return;
    };
    const PARTS: &[(&str, &[&str])] = &[
        (
            "cryptography (RustCrypto: sha2, aes, aes-gcm, ghash, polyval, hkdf, hmac, cipher)",
            &[
                "sha2",
                "aes",
                "aes_gcm",
                "ghash",
                "polyval",
                "hkdf",
                "hmac",
                "cipher",
                "&Alg as cipher",
                "digest",
            ],
        ),
        (
            "imprint-core and imprint-device, out of line",
            &["imprint_core", "imprint_device"],
        ),
        (
            "USB (embassy-usb, the OTG driver, its interrupt)",
            &["embassy_usb", "embassy_usb_synopsys_otg", "OTG_FS"],
        ),
        (
            "the firmware's main task, with what LTO inlined into it",
            &["imprint_firmware_stm32"],
        ),
        (
            "HAL, executor, allocator, runtime (embassy-stm32, cortex-m, compiler_builtins, core, alloc)",
            &[],
        ),
    ];
    let mut sums = vec![0u64; PARTS.len()];
    for line in out.lines() {
        let mut f = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(kind), Some(name)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "r" | "R") {
            continue;
        }
        let Ok(size) = u64::from_str_radix(size, 16) else {
            continue;
        };
        let name = name.trim_start_matches('<');
        let krate = name.split("::").next().unwrap_or(name);
        let part = PARTS
            .iter()
            .position(|(_, crates)| crates.iter().any(|c| krate == *c || name.starts_with(c)))
            .unwrap_or(PARTS.len() - 1);
        if let Some(s) = sums.get_mut(part) {
            *s += size;
        }
    }
    println!("\n| part of `imprint-firmware-stm32` (symbols) | bytes |");
    println!("| --- | --- |");
    for ((name, _), bytes) in PARTS.iter().zip(&sums) {
        println!("| {name} | {bytes} |");
    }
}

/// Flash and RAM of a 32-bit little-endian ELF image, from its section headers: flash is every
/// allocated section with contents (`.data`'s initial values are stored in flash too), RAM
/// every allocated writable one.
fn elf_sizes(b: &[u8]) -> Option<(u64, u64)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    if b.get(..5)? != b"\x7fELF\x01" {
        return None;
    }
    let (shoff, shentsize, shnum) = (
        usize::try_from(u32_at(0x20)?).ok()?,
        usize::from(u16_at(0x2E)?),
        usize::from(u16_at(0x30)?),
    );
    const PROGBITS: u32 = 1;
    const NOBITS: u32 = 8;
    const ALLOC: u32 = 2;
    const WRITE: u32 = 1;
    let (mut flash, mut ram) = (0u64, 0u64);
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        let (kind, flags, size) = (u32_at(h + 4)?, u32_at(h + 8)?, u64::from(u32_at(h + 20)?));
        if flags & ALLOC == 0 {
            continue;
        }
        if kind == PROGBITS {
            flash += size;
        }
        if flags & WRITE != 0 && (kind == PROGBITS || kind == NOBITS) {
            ram += size;
        }
    }
    Some((flash, ram))
}

/// Fuzz crates (outside the workspace) and their targets: one per parser.
const FUZZ: &[(&str, &[&str])] = &[
    (
        "crates/core/fuzz",
        &[
            "frame",
            "request",
            "reply",
            "device_info",
            "sealed_record",
            "identifiers",
        ],
    ),
    ("crates/device/fuzz", &["handler"]),
];

/// Builds every fuzz target (uninstrumented, on the stable toolchain) and runs each on a few
/// thousand random inputs, so a panic in a parser fails the suite. Real fuzzing, with coverage,
/// is `cargo xtask fuzz <target>`.
fn fuzz_smoke() -> Result {
    for (dir, targets) in FUZZ {
        let dir = root().join(dir);
        sh(Command::new(tools::cargo_bin())
            .args(["build", "--release", "--bins"])
            .current_dir(&dir))?;
        for t in *targets {
            sh(Command::new(dir.join("target/release").join(t))
                .args(["-runs=5000", "-seed=1"])
                .current_dir(&dir))?;
        }
    }
    Ok(())
}

fn fuzz(target: Option<&str>, seconds: Option<&str>) -> Result {
    let found = FUZZ
        .iter()
        .find(|(_, targets)| target.is_some_and(|t| targets.contains(&t)));
    let (Some((dir, _)), Some(target)) = (found, target) else {
        let all: Vec<&str> = FUZZ.iter().flat_map(|(_, t)| t.iter().copied()).collect();
        return Err(Failure(format!("name a fuzz target: {}", all.join(", "))));
    };
    let seconds = seconds.unwrap_or("60");
    tools::ensure_cargo_fuzz()?;
    // cargo-fuzz runs from the crate that holds the `fuzz/` folder.
    let krate = root().join(dir).join("..");
    // `rustup run`: the `+nightly` shorthand only works through rustup's cargo proxy.
    sh(Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "run", target, "--"])
        .arg(format!("-max_total_time={seconds}"))
        .current_dir(krate))
}

fn run() -> Result {
    eprintln!(
        "Imprint demo: the management server with a fresh database in ./imprint-demo (demo keys that\nthe simulated devices hold, products CAM-X100 and the chip-bound CAM-C200, two factories, 3000 entries each), serving the\nportal on http://127.0.0.1:8080.\n"
    );
    let dir = portal()?;
    let dir = dir.to_string_lossy().to_string();
    // The release server builds for a minute or two the first time: cargo shows its progress
    // (no -q), and the address is printed once there is something to open.
    eprintln!(
        "\nBuilding the server (release: about 90 s on two cores the first time, seconds after)..."
    );
    cargo(&[
        "build",
        "--release",
        "-p",
        "imprint-server",
        "--bin",
        "imprint",
    ])?;
    eprintln!(
        "\nOpen http://127.0.0.1:8080, sign in as tech-ana / demo-tech-pass, click \"Training mode\"\nand plug simulated units (or real ones). Ctrl-C stops the server.\n"
    );
    sh(Command::new(root().join("target/release/imprint")).args(["demo", "--portal", &dir]))
}

/// Runs a wasm module through the portal's pipeline into `out`: wasm-bindgen (`--target web`),
/// then wasm-opt, then terser for the JavaScript glue.
fn bindgen(wasm: &Path, name: &str, out: &Path) -> Result {
    sh(Command::new("wasm-bindgen")
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            name,
            "--out-dir",
        ])
        .arg(out)
        .arg(wasm))?;
    let bg = out.join(format!("{name}_bg.wasm"));
    if let Some(wasm_opt) = tools::ensure_wasm_opt() {
        sh(Command::new(wasm_opt)
            .args([
                "-Oz",
                "--enable-bulk-memory",
                "--enable-reference-types",
                "--enable-multivalue",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "--enable-nontrapping-float-to-int",
                "-o",
            ])
            .arg(&bg)
            .arg(&bg))?;
    }
    if let Some(terser) = tools::ensure_terser() {
        let js = out.join(format!("{name}.js"));
        sh(Command::new(terser)
            .arg(&js)
            .args(["--module", "--compress", "--mangle", "-o"])
            .arg(&js))?;
    }
    Ok(())
}

/// Builds a page into `out` (emptied first, so no file of an earlier build is served): the
/// module through [`bindgen`], its files and the stylesheet named by their content's hash
/// ([`ship`]), `index.html` from `html` (trunk's form) pointing at them, and, for the station,
/// a `<meta name="imprint-training">`, `"imprint-console"` and `"imprint-proofs"` naming the modules
/// built into `out` beforehand, in place of trunk's line for each (`modules`: the package's
/// name, then its file; `crates/portal/src/web/training.rs` reads them); then every file
/// precompressed.
fn package(
    wasm: &Path,
    name: &str,
    out: &Path,
    html: &str,
    css: Option<&Path>,
    modules: &[(&str, String)],
) -> Result {
    bindgen(wasm, name, out)?;
    let js = ship::hash_module(out, name)?;
    let css = css
        .map(|c| ship::hash_copy(c, out, "style", "css"))
        .transpose()?;
    let mut page = String::new();
    for line in html.lines() {
        let t = line.trim();
        if t.starts_with("<link data-trunk rel=\"rust\"") && t.contains("data-type=\"worker\"") {
            for (package, file) in modules {
                let dir = package.trim_start_matches("imprint-");
                if t.contains(&format!("crates/{dir}/Cargo.toml")) {
                    page.push_str(&format!("  <meta name=\"{package}\" content=\"{file}\">\n"));
                }
            }
        } else if t.starts_with("<link data-trunk rel=\"rust\"") {
            page.push_str(&format!(
                "  <script type=\"module\">import init from './{js}'; init();</script>\n"
            ));
        } else if t.starts_with("<link data-trunk rel=\"css\"") {
            if let Some(css) = &css {
                page.push_str(&format!("  <link rel=\"stylesheet\" href=\"{css}\">\n"));
            }
        } else {
            page.push_str(line);
            page.push('\n');
        }
    }
    std::fs::write(out.join("index.html"), page)
        .map_err(|e| Failure(format!("cannot write index.html: {e}")))?;
    ship::precompress(out)
}

/// An empty `out`, so that no file of an earlier build is left to be served.
fn fresh(out: &Path) -> Result {
    if out.exists() {
        std::fs::remove_dir_all(out)
            .map_err(|e| Failure(format!("cannot empty {}: {e}", out.display())))?;
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Failure(format!("cannot create {}: {e}", out.display())))
}

/// Size and first paint of the portal beside a bare Leptos page built the same way.
fn bench_portal() -> Result {
    let portal_dir = portal()?;
    let bare = root().join("xtask/bare-leptos");
    sh(Command::new(tools::cargo_bin())
        .args([
            "build",
            "--profile",
            "wasm-release",
            "--target",
            tools::WASM,
        ])
        .current_dir(&bare))?;
    let bare_out = root().join("target/bare-leptos");
    let html = std::fs::read_to_string(root().join("index.html"))
        .map_err(|e| Failure(format!("cannot read index.html: {e}")))?;
    fresh(&bare_out)?;
    package(
        &bare.join("target/wasm32-unknown-unknown/wasm-release/bare_leptos.wasm"),
        "bare_leptos",
        &bare_out,
        &html,
        None,
        &[],
    )?;
    // As shipped: the precompressed files the server sends (brotli to Chrome and Edge).
    for (label, dir, name) in [
        ("portal", &portal_dir, "imprint_portal"),
        ("training (on demand)", &portal_dir, "imprint-training"),
        ("console (on demand)", &portal_dir, "imprint-console"),
        ("audit-log check (on demand)", &portal_dir, "imprint-proofs"),
        ("bare Leptos", &bare_out, "bare_leptos"),
    ] {
        for suffix in ["_bg.wasm", ".js"] {
            let Some(path) = ship::find(dir, name, suffix) else {
                return Err(Failure(format!(
                    "no {name}-<hash>{suffix} in {}",
                    dir.display()
                )));
            };
            let (raw, br, gz) = ship::sizes(&path);
            let file = format!("{name}{suffix}");
            println!("{label:20} {file:28} {raw:>9} bytes {gz:>8} gzip {br:>8} brotli");
        }
    }
    let driver = tools::ensure_chromedriver()?;
    // Seal/open: imprint-core in wasm against WebCrypto's AES-GCM, in one page.
    sh(Command::new("wasm-pack")
        .args([
            "test",
            "--release",
            "--headless",
            "--chrome",
            "--mode",
            "no-install",
            "crates/core",
            "--test",
            "it",
            "--",
            "--include-ignored",
            "--nocapture",
            "bench_seal_open_in_wasm_against_webcrypto",
        ])
        .env("CHROMEDRIVER", &driver))?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "imprint-server",
        "--bin",
        "imprint",
    ])?;
    sh(Command::new(tools::cargo_bin())
        .args([
            "test",
            "-p",
            "imprint-e2e",
            "--test",
            "paint",
            "--",
            "--test-threads=1",
            "--ignored",
            "--nocapture",
        ])
        .env("IMPRINT_BIN", root().join("target/release/imprint"))
        .env("IMPRINT_PORTAL", &portal_dir)
        .env("BARE_LEPTOS", &bare_out)
        .env("CHROMEDRIVER", driver))
}

/// Checks that the trunk path works: `trunk build --release` from the root `index.html` (and
/// `Trunk.toml`) into `target/trunk-dist`, then the end-to-end test against that build.
fn trunk_check() -> Result {
    tools::ensure_trunk()?;
    // Trunk takes a wasm-opt of the version Trunk.toml names from the PATH.
    let _ = tools::ensure_wasm_opt();
    let mut path = std::ffi::OsString::from(root().join("target/tools/node_modules/.bin"));
    path.push(":");
    path.push(tools::path_with_cargo_bin());
    sh(Command::new("trunk")
        .args(["build", "--release"])
        .env("PATH", &path)
        .current_dir(root()))?;
    let driver = tools::ensure_chromedriver()?;
    end_to_end(&root().join("target/trunk-dist"), &driver, &[])
}

/// The end-to-end tests (`tests/e2e/tests/station.rs` and `console.rs`) against the debug
/// server and the portal built into `portal`.
fn end_to_end(portal: &Path, driver: &Path, envs: &[(String, String)]) -> Result {
    cargo(&["build", "-p", "imprint-server", "--bin", "imprint"])?;
    sh(Command::new(tools::cargo_bin())
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .args([
            "test",
            "-p",
            "imprint-e2e",
            "--test",
            "station",
            "--test",
            "console",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .env("IMPRINT_BIN", root().join("target/debug/imprint"))
        .env("IMPRINT_PORTAL", portal)
        .env("CHROMEDRIVER", driver))
}

/// Builds the portal into `target/portal`: cargo for wasm32, then [`package`].
fn portal() -> Result<PathBuf> {
    // `cargo xtask portal` alone on a fresh machine: the target and the bindgen it needs.
    tools::ensure_targets()?;
    tools::ensure_wasm_bindgen()?;
    let out = root().join("target/portal");
    fresh(&out)?;
    // Four builds, not one: built together, imprint-device's `web` feature (training's) would
    // be unified into the portal's build, and the modules' wasm-bindgen exports kept in each.
    for package in [
        "imprint-portal",
        "imprint-training",
        "imprint-console",
        "imprint-proofs",
    ] {
        cargo(&[
            "build",
            "--profile",
            "wasm-release",
            "-p",
            package,
            "--target",
            tools::WASM,
        ])?;
    }
    let html = std::fs::read_to_string(root().join("index.html"))
        .map_err(|e| Failure(format!("cannot read index.html: {e}")))?;
    let built = root().join("target/wasm32-unknown-unknown/wasm-release");
    let mut modules = Vec::new();
    for package in ["imprint-training", "imprint-console", "imprint-proofs"] {
        bindgen(
            &built.join(format!("{}.wasm", package.replace('-', "_"))),
            // Named as trunk names a worker module (after the package), so both builds match.
            package,
            &out,
        )?;
        modules.push((package, ship::hash_module(&out, package)?));
    }
    package(
        &built.join("imprint_portal.wasm"),
        "imprint_portal",
        &out,
        &html,
        Some(&root().join("crates/portal/style.css")),
        &modules,
    )?;
    eprintln!("portal built in {}", out.display());
    Ok(out)
}

fn bench() -> Result {
    cargo(&["bench", "-p", "imprint-server", "--bench", "server"])?;
    // Field authentication from outside, on SQLite and then on a PostgreSQL cluster of its own.
    let fleet = [
        "bench",
        "-p",
        "imprint-server",
        "--bench",
        "fleet",
        "--",
        "--seconds",
        "8",
    ];
    cargo(&fleet)?;
    let cluster = postgres::Cluster::start(&postgres::ensure_postgres()?)?;
    cargo_env(&fleet, &[("DATABASE_URL".into(), cluster.url())])?;
    drop(cluster);
    // Keys in a SoftHSM2 token against keys in memory.
    let tokens = softhsm::Tokens::new(&softhsm::ensure_softhsm()?)?;
    let pin = tokens.init("imprint-bench")?;
    let envs: Vec<(String, String)> = tokens
        .test_env("imprint-bench", &pin)
        .into_iter()
        .map(|(k, v)| (k.replace("IMPRINT_TEST_", "IMPRINT_BENCH_"), v))
        .collect();
    cargo_env(&["bench", "-p", "imprint-server", "--bench", "hsm"], &envs)?;
    drop(tokens);
    cargo(&["bench", "-p", "imprint-core", "--bench", "seal"])?;
    // The console's audit page in a log of a million entries.
    cargo(&["bench", "-p", "imprint-server", "--bench", "console"])?;
    if Command::new("openssl").arg("version").output().is_err() {
        return Err(Failure(
            "the yardstick `openssl speed` needs the openssl command (Debian/Ubuntu: `apt-get install openssl`); the benches above ran".into(),
        ));
    }
    eprintln!("\n--- openssl speed -evp aes-256-gcm (same machine, same run) ---");
    sh(Command::new("openssl").args([
        "speed",
        "-seconds",
        "3",
        "-bytes",
        "128",
        "-evp",
        "aes-256-gcm",
    ]))
}

/// Checks that docs keep up with the code: every crate is in ARCHITECTURE.md, the README
/// names the two commands, every vector file says where it comes from.
fn tidy() -> Result {
    let read = |p: &str| {
        std::fs::read_to_string(root().join(p))
            .map_err(|e| Failure(format!("cannot read {p}: {e}")))
    };
    let arch = read("ARCHITECTURE.md")?;
    for parent in ["crates", "tests"] {
        let dirs = std::fs::read_dir(root().join(parent))
            .map_err(|e| Failure(format!("cannot list {parent}/: {e}")))?;
        for entry in dirs.flatten() {
            let name = format!("{parent}/{}", entry.file_name().to_string_lossy());
            if !arch.contains(&name) {
                return Err(Failure(format!("ARCHITECTURE.md does not describe {name}")));
            }
        }
    }
    let readme = read("README.md")?;
    for shot in [
        "login.png",
        "station.png",
        "station-faults.png",
        "station-offline.png",
    ] {
        if !readme.contains(&format!("docs/screenshots/{shot}")) {
            return Err(Failure(format!(
                "README.md does not show docs/screenshots/{shot}"
            )));
        }
    }
    for cmd in ["cargo xtask run", "cargo xtask test"] {
        if !readme.contains(cmd) {
            return Err(Failure(format!("README.md does not show `{cmd}`")));
        }
    }
    let ci = read(".ci/run")?;
    if !ci.lines().any(|l| l.trim() == "cargo xtask test") {
        return Err(Failure(
            ".ci/run must run exactly `cargo xtask test`".into(),
        ));
    }
    for dir in ["crates/core/tests/vectors", "crates/portal/tests/vectors"] {
        let vectors = root().join(dir);
        let files = std::fs::read_dir(&vectors)
            .map_err(|e| Failure(format!("cannot list {}: {e}", vectors.display())))?;
        for f in files.flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            if !(text.contains("\"how_made\"") || text.contains("\"source\"")) {
                return Err(Failure(format!(
                    "{} does not say how it was made",
                    f.path().display()
                )));
            }
        }
    }
    let usb = read("docs/usb.md")?;
    for term in [
        "WINUSB",
        "MS OS 2.0",
        "WebUsbAllowDevicesForUrls",
        "WriteModule",
    ] {
        if !usb.contains(term) {
            return Err(Failure(format!("docs/usb.md does not mention {term}")));
        }
    }
    let protocol = read("docs/protocol.md")?;
    for section in ["Sealed record", "Frame", "Receipt", "Error codes"] {
        if !protocol.contains(section) {
            return Err(Failure(format!(
                "docs/protocol.md lacks a '{section}' section"
            )));
        }
    }
    Ok(())
}
