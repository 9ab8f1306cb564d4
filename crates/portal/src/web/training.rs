//! Training mode: simulated units from a module of their own.
//!
//! The simulated units (crates/training) are a separate WebAssembly module that this page
//! imports the first time training is turned on, so a line with real units never downloads
//! them. They reach the station only as JavaScript objects: a `navigator.usb` stand-in and
//! `USBDevice` stand-ins, which the WebUSB driver uses exactly as it uses the browser's own.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export function import_training(name) {
  return import(new URL(name, document.baseURI).href).then(async (m) => {
    await m.default();
    return new m.SimUsb();
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn import_training(name: &str) -> Result<js_sys::Promise, JsValue>;

    /// The simulated bus (`SimUsb` in crates/device/src/web.rs).
    #[derive(Clone)]
    pub type SimBus;

    #[wasm_bindgen(method, catch)]
    fn install(this: &SimBus) -> Result<(), JsValue>;

    #[wasm_bindgen(method, js_name = grantAll)]
    fn grant_all(this: &SimBus, on: bool);

    /// Plugs a new unit of `kind` ("demo", "wrong-model", "locked") with chip number `n`;
    /// its index.
    #[wasm_bindgen(method, catch)]
    pub fn plug(this: &SimBus, kind: &str, n: u32) -> Result<u32, JsValue>;

    /// The `USBDevice` stand-in of unit `index`.
    #[wasm_bindgen(method)]
    pub fn device(this: &SimBus, index: u32) -> JsValue;

    /// Pulls unit `index`'s cable.
    #[wasm_bindgen(method, catch)]
    pub fn unplug(this: &SimBus, index: u32) -> Result<(), JsValue>;

    /// Plugs unit `index` back in.
    #[wasm_bindgen(method, catch)]
    pub fn replug(this: &SimBus, index: u32) -> Result<JsValue, JsValue>;

    /// How many units were ever plugged.
    #[wasm_bindgen(method, getter)]
    pub fn count(this: &SimBus) -> u32;

    #[wasm_bindgen(method, js_name = keepIn)]
    fn keep_in(this: &SimBus, key: &str);

    /// Plugs back the units an earlier page left plugged in; how many.
    #[wasm_bindgen(method, catch)]
    pub fn restore(this: &SimBus) -> Result<u32, JsValue>;
}

/// Where the simulated units are kept across a reload (sessionStorage: this tab only).
const KEPT: &str = "imprint.training.units";

/// The module's file, beside the portal's own, as trunk names it.
const MODULE: &str = "imprint-training.js";

/// A module's file as this page names it: `cargo xtask portal` names each module by its
/// content's hash and says so in `<meta name="{meta}" content="...">`; without one (a trunk
/// build), `default`.
pub fn module_file(meta: &str, default: &str) -> String {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| {
            d.query_selector(&format!("meta[name={meta}]"))
                .ok()
                .flatten()
        })
        .and_then(|m| m.get_attribute("content"))
        .unwrap_or_else(|| default.to_string())
}

/// Loads the training module and puts its simulated bus in place of `navigator.usb`, with
/// every unit granted (as the kiosk policy does on a real line). Units an earlier page left
/// plugged in come back with [`SimBus::restore`], once the page listens for them.
pub async fn start() -> Result<SimBus, String> {
    let module = module_file("imprint-training", MODULE);
    let why = |e: JsValue| {
        let m = js_sys::Reflect::get(&e, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_default();
        format!("training mode could not load {module} ({m}); is the portal fully deployed?")
    };
    let bus: SimBus = JsFuture::from(import_training(&module).map_err(why)?)
        .await
        .map_err(why)?
        .unchecked_into();
    bus.grant_all(true);
    // Simulated units outlive a reload of the page, as real ones do: the flow's recovery
    // ("do you already hold record X?") can then be practised, and tested, in training.
    bus.keep_in(KEPT);
    bus.install().map_err(why)?;
    Ok(bus)
}

/// Sets a fault on a simulated unit (`setFault` of crates/device/src/web.rs).
pub fn set_fault(device: &JsValue, fault: &str, arg: u32) {
    if let Ok(f) = js_sys::Reflect::get(device, &"setFault".into())
        .and_then(|f| f.dyn_into::<js_sys::Function>())
    {
        let _ = f.call2(device, &fault.into(), &arg.into());
    }
}
