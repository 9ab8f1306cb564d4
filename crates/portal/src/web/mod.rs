//! The browser parts: the WebUSB driver, the fetch client, storage, the page, and the
//! loaders of the training, console and audit-log check modules.

pub mod api;
pub mod app;
pub mod console;
pub mod crypto;
pub mod proofs;
pub mod storage;
pub mod training;
pub mod usb;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point: mounts the page.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(app::App);
}
