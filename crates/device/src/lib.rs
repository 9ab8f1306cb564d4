#![no_std]
//! The device side of Imprint.
//!
//! - [`module::WriteModule`]: the write module firmware links: a handler over protocol frames
//!   that opens sealed records with the model's pre-write keys, stores the identity and
//!   answers with receipts. `no_std`, no panics on any input.
//! - [`storage`]: power-cut safe storage of the identity on two flash pages.
//! - [`usb`]: the USB descriptors that let Chrome and Edge use the device with no driver
//!   (WebUSB platform capability, Microsoft OS 2.0 descriptors with WINUSB).
//! - `sim` (feature): the same write module on a simulated flash, with faults to inject.
//! - `web` (feature, wasm32): the simulated device behind the WebUSB `USBDevice` surface and a
//!   stand-in `navigator.usb`.
//!
//! How to embed the module in firmware: `docs/device.md` and `docs/usb.md`.

extern crate alloc;

pub mod module;
pub mod storage;
pub mod usb;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(all(feature = "web", target_arch = "wasm32"))]
pub mod web;

pub use module::{DeviceConfig, WriteModule};
pub use storage::{Flash, FlashError, Slot};
