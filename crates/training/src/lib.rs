//! Training mode, shipped apart from the station.
//!
//! The simulated units (imprint-device's write module on simulated flash, behind a WebUSB
//! `USBDevice` stand-in and a `navigator.usb` of their own) were 26 KB of the 238 KB gzipped
//! the station shipped (docs/benchmarks.md): AES-GCM, HKDF, HMAC and the write module, which the
//! station itself never needs.
//! So they are built into a module of their own, `imprint-training.js` and
//! `imprint-training_bg.wasm` beside the portal, which the portal imports the first time a
//! technician turns training on (`crates/portal/src/web/training.rs`). Nothing here is
//! loaded on a line that provisions real units.
//!
//! The module's JavaScript surface is imprint-device's `SimUsb` and `SimUsbDevice`, exported
//! as they are.

#[cfg(target_arch = "wasm32")]
pub use imprint_device::web::{SimUsb, SimUsbDevice};
