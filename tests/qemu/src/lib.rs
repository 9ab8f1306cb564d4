//! The host side of the emulated-core tests: starts `qemu-system-arm` on the test firmware
//! (`crates/device/examples/firmware-qemu`), speaks its UART envelopes, and stops it on drop.
//!
//! The envelope format is in that firmware's `main.rs` and in `docs/device.md` ("Running the
//! write module on an emulated core"). Every wait has a time limit, so a firmware that hangs
//! fails a test instead of hanging the suite.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use imprint_core::{ProtocolError, Reply, Request};

/// How long one answer may take. An install is a few million emulated instructions: far
/// below a second even on a slow machine.
const ANSWER: Duration = Duration::from_secs(20);

/// What went wrong between the host and the emulated unit.
#[derive(Debug)]
pub enum QemuError {
    /// QEMU could not be started (not installed, or the firmware image missing).
    Start(String),
    /// No answer within the time limit.
    Timeout(&'static str),
    /// QEMU exited, or its output closed; with what it printed on stderr.
    Gone(String),
    /// The firmware panicked; its message.
    Panicked(String),
    /// An answer of another kind than the one expected.
    Unexpected {
        /// What was expected.
        wanted: u8,
        /// What came.
        got: u8,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// The write module's reply frames could not be read.
    Reply(ProtocolError),
}

impl std::fmt::Display for QemuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QemuError::Start(m) => write!(f, "cannot start QEMU: {m}"),
            QemuError::Timeout(what) => write!(f, "no {what} from the emulated unit in time"),
            QemuError::Gone(err) => write!(f, "QEMU stopped: {err}"),
            QemuError::Panicked(m) => write!(f, "the firmware panicked: {m}"),
            QemuError::Unexpected {
                wanted,
                got,
                payload,
            } => write!(
                f,
                "expected envelope {wanted:#04x}, got {got:#04x} ({} bytes: {})",
                payload.len(),
                String::from_utf8_lossy(payload)
            ),
            QemuError::Reply(e) => write!(f, "the unit's reply is not a frame: {e}"),
        }
    }
}

impl std::error::Error for QemuError {}

/// What the firmware says at every boot.
#[derive(Debug, Clone, Copy)]
pub struct Boot {
    /// Boots since the board was powered on (power cuts and resets included).
    pub boots: u32,
    /// Timer ticks the calibration loop took.
    pub calibration_ticks: u32,
    /// Instructions in the calibration loop.
    pub calibration_instructions: u32,
    /// The heap's size.
    pub heap: u32,
    /// The painted part of the stack.
    pub painted_stack: u32,
}

impl Boot {
    /// Emulated instructions in `ticks` timer ticks, from the calibration.
    pub fn instructions(&self, ticks: u32) -> u64 {
        u64::from(ticks) * u64::from(self.calibration_instructions)
            / u64::from(self.calibration_ticks.max(1))
    }
}

/// The figures of one call of the write module's `receive`, measured on the emulated core.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Timer ticks the call took (see [`Boot::instructions`]).
    pub ticks: u32,
    /// Flash steps (double-words programmed, 256-byte erase chunks).
    pub flash_steps: u32,
    /// Stack bytes the call used below its caller's stack pointer.
    pub stack: u32,
    /// Stack bytes used from the top of the stack, the firmware's own frames included.
    pub stack_total: u32,
    /// The heap's peak during the call, above what was allocated before it.
    pub heap_peak: u32,
    /// Heap bytes still held after the call (the reply frames excluded).
    pub heap_held: u32,
    /// Allocations the call made.
    pub allocations: u32,
    /// Bytes those allocations asked for, in total.
    pub allocated: u32,
    /// The largest single allocation.
    pub largest: u32,
    /// The sizes of the first allocations, in order.
    pub sizes: Vec<u16>,
}

/// One envelope from the firmware.
struct Envelope {
    kind: u8,
    payload: Vec<u8>,
}

/// A running QEMU with the test firmware; killed on drop.
pub struct Unit {
    child: Child,
    stdin: ChildStdin,
    from: Receiver<Envelope>,
    seq: u8,
    /// The last boot's banner.
    pub boot: Boot,
}

/// The firmware image: `IMPRINT_QEMU_FIRMWARE`, else where `cargo xtask test` builds it.
pub fn firmware() -> PathBuf {
    std::env::var_os("IMPRINT_QEMU_FIRMWARE").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
                "../../crates/device/examples/firmware-qemu/target/thumbv7em-none-eabihf/release/imprint-firmware-qemu",
            )
        },
        PathBuf::from,
    )
}

impl Unit {
    /// Starts QEMU (`IMPRINT_QEMU`, else `qemu-system-arm` on the PATH) on a blank board:
    /// `mps2-an386`, UART0 on stdin and stdout, and `-icount shift=5` so that virtual time
    /// counts instructions (32 ns each) and the timer measures them.
    pub fn start() -> Result<Unit, QemuError> {
        let image = firmware();
        if !image.is_file() {
            return Err(QemuError::Start(format!(
                "no firmware at {} (`cargo xtask test` builds it; or build crates/device/examples/firmware-qemu with `cargo build --release`)",
                image.display()
            )));
        }
        let qemu = std::env::var("IMPRINT_QEMU").unwrap_or_else(|_| "qemu-system-arm".into());
        let mut child = Command::new(&qemu)
            .args([
                "-machine",
                "mps2-an386",
                "-nodefaults",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-icount",
                "shift=5,align=off",
                "-kernel",
            ])
            .arg(&image)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                QemuError::Start(format!(
                    "{qemu}: {e} (on Debian/Ubuntu: apt-get install qemu-system-arm)"
                ))
            })?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(QemuError::Start("no pipes to QEMU".into())),
        };
        let (to, from) = channel();
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(stdout);
            let mut byte = [0u8; 1];
            loop {
                // Bytes before the sync byte are not ours (QEMU prints nothing there, but a
                // torn envelope from a power cut may leave a few).
                if out.read_exact(&mut byte).is_err() {
                    return;
                }
                if byte[0] != 0x5A {
                    continue;
                }
                let mut head = [0u8; 3];
                if out.read_exact(&mut head).is_err() {
                    return;
                }
                let [kind, lo, hi] = head;
                let mut payload = vec![0u8; usize::from(u16::from_le_bytes([lo, hi]))];
                if out.read_exact(&mut payload).is_err() {
                    return;
                }
                if to.send(Envelope { kind, payload }).is_err() {
                    return;
                }
            }
        });
        let mut unit = Unit {
            child,
            stdin,
            from,
            seq: 0,
            boot: boot_of(&[]),
        };
        unit.boot = unit.wait_boot()?;
        Ok(unit)
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), QemuError> {
        let len = u16::try_from(payload.len())
            .map_err(|_| QemuError::Start("an envelope over 64 KB".into()))?;
        let mut b = vec![0xA5, kind];
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(payload);
        self.stdin
            .write_all(&b)
            .and_then(|()| self.stdin.flush())
            .map_err(|e| self.gone(&e.to_string()))
    }

    fn gone(&mut self, why: &str) -> QemuError {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        QemuError::Gone(format!("{why}; stderr: {}", err.trim()))
    }

    fn next(&mut self, what: &'static str) -> Result<Envelope, QemuError> {
        match self.from.recv_timeout(ANSWER) {
            Ok(e) if e.kind == 0x8F => Err(QemuError::Panicked(
                String::from_utf8_lossy(&e.payload).into_owned(),
            )),
            Ok(e) => Ok(e),
            Err(RecvTimeoutError::Timeout) => Err(QemuError::Timeout(what)),
            Err(RecvTimeoutError::Disconnected) => Err(self.gone("its output closed")),
        }
    }

    fn expect(&mut self, kind: u8, what: &'static str) -> Result<Vec<u8>, QemuError> {
        let e = self.next(what)?;
        if e.kind != kind {
            return Err(QemuError::Unexpected {
                wanted: kind,
                got: e.kind,
                payload: e.payload,
            });
        }
        Ok(e.payload)
    }

    fn wait_boot(&mut self) -> Result<Boot, QemuError> {
        let b = self.expect(0x80, "boot banner")?;
        self.boot = boot_of(&b);
        Ok(self.boot)
    }

    /// Bytes into the write module's `receive`, as bulk OUT would carry them; the reply frames
    /// it sent back (concatenated) and the call's figures.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(Vec<u8>, Figures), QemuError> {
        self.send(0x01, bytes)?;
        let p = self.expect(0x81, "reply")?;
        Ok(figures_of(&p))
    }

    /// One request as a frame of the next sequence number; its reply and figures.
    pub fn request(&mut self, req: &Request) -> Result<(Reply, Figures), QemuError> {
        self.seq = self.seq.wrapping_add(1);
        let (frames, figures) = self.data(&req.encode(self.seq))?;
        let (_, reply) = Reply::decode(&frames).map_err(QemuError::Reply)?;
        Ok((reply, figures))
    }

    /// Power fails at the flash step after the next `steps`; the request sent then resets the
    /// core midway, and [`Unit::after_cut`] waits for it to come back.
    pub fn cut_after(&mut self, steps: u32) -> Result<(), QemuError> {
        self.send(0x03, &steps.to_le_bytes())?;
        self.expect(0x83, "power cut armed").map(|_| ())
    }

    /// Sends `req` with a power cut armed: the core resets midway, or, if the request took
    /// fewer steps than the cut, answers. `Ok(None)` when power failed (the unit has booted
    /// again), `Ok(Some(reply))` when it answered.
    pub fn after_cut(&mut self, req: &Request) -> Result<Option<Reply>, QemuError> {
        self.seq = self.seq.wrapping_add(1);
        self.send(0x01, &req.encode(self.seq))?;
        let e = self.next("reply or reboot")?;
        match e.kind {
            0x80 => {
                self.boot = boot_of(&e.payload);
                Ok(None)
            }
            0x81 => {
                let (frames, _) = figures_of(&e.payload);
                let (_, reply) = Reply::decode(&frames).map_err(QemuError::Reply)?;
                Ok(Some(reply))
            }
            got => Err(QemuError::Unexpected {
                wanted: 0x81,
                got,
                payload: e.payload,
            }),
        }
    }

    /// What a USB reset or a replug does: the write module drops a partial frame.
    pub fn reset_link(&mut self) -> Result<(), QemuError> {
        self.send(0x06, &[])?;
        self.expect(0x86, "link reset").map(|_| ())
    }

    /// A blank unit: both pages erased, then a reset.
    pub fn erase(&mut self) -> Result<Boot, QemuError> {
        self.send(0x02, &[])?;
        self.wait_boot()
    }

    /// A reset with the flash kept (a power cycle).
    pub fn reset(&mut self) -> Result<Boot, QemuError> {
        self.send(0x04, &[])?;
        self.wait_boot()
    }

    /// One vector computation on the emulated core: `op` and its fields (see the firmware's
    /// `vector`); the result, or the firmware's reason for refusing.
    pub fn vector(
        &mut self,
        op: u8,
        fields: &[&[u8]],
    ) -> Result<Result<Vec<u8>, String>, QemuError> {
        let mut b = vec![op];
        for f in fields {
            let n = u16::try_from(f.len())
                .map_err(|_| QemuError::Start("a field over 64 KB".into()))?;
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(f);
        }
        self.send(0x05, &b)?;
        let p = self.expect(0x85, "vector result")?;
        Ok(match p.split_first() {
            Some((0, out)) => Ok(out.to_vec()),
            Some((_, why)) => Err(String::from_utf8_lossy(why).into_owned()),
            None => Err("an empty answer".into()),
        })
    }
}

/// The little-endian u32 at word `i`, or 0 past the end.
fn word(b: &[u8], i: usize) -> u32 {
    b.get(4 * i..4 * i + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn boot_of(b: &[u8]) -> Boot {
    Boot {
        boots: word(b, 0),
        calibration_ticks: word(b, 1),
        calibration_instructions: word(b, 2),
        heap: word(b, 3),
        painted_stack: word(b, 4),
    }
}

/// A `81 DATA` payload: nine figures, the logged allocation sizes, then the reply frames.
fn figures_of(p: &[u8]) -> (Vec<u8>, Figures) {
    let n = usize::from(p.get(36).copied().unwrap_or(0));
    let sizes = (0..n)
        .filter_map(|i| p.get(37 + 2 * i..39 + 2 * i))
        .filter_map(|s| s.try_into().ok().map(u16::from_le_bytes))
        .collect();
    let figures = Figures {
        ticks: word(p, 0),
        flash_steps: word(p, 1),
        stack: word(p, 2),
        stack_total: word(p, 3),
        heap_peak: word(p, 4),
        heap_held: word(p, 5),
        allocations: word(p, 6),
        allocated: word(p, 7),
        largest: word(p, 8),
        sizes,
    };
    (p.get(37 + 2 * n..).unwrap_or_default().to_vec(), figures)
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
