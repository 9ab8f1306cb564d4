//! The WebUSB driver: [`WebUsbLink`] implements [`Link`] over a `USBDevice`.
//!
//! Everything goes through JavaScript properties and methods (`Reflect`), never `instanceof`
//! checks, so the simulated device (`imprint_device::web`) stands in for hardware and the code
//! under test is the code that talks to real units.

use imprint_core::{FrameAssembler, Reply, Request};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::station::{Link, LinkError, garbage};

/// The interface, endpoint numbers and packet size of an Imprint unit (docs/usb.md).
const INTERFACE: u8 = 0;
const ENDPOINT: u8 = 1;
const PACKET: u32 = 64;
/// How long a reply may take; an install erases flash, so it gets longer.
const REPLY_MS: i32 = 2_000;
const INSTALL_MS: i32 = 10_000;

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn browser_error(e: &JsValue) -> LinkError {
    let name = get(e, "name").as_string().unwrap_or_else(|| "Error".into());
    let message = get(e, "message")
        .as_string()
        .or_else(|| e.as_string())
        .unwrap_or_default();
    if name == "NotFoundError" && message.to_ascii_lowercase().contains("disconnected") {
        LinkError::Disconnected
    } else {
        LinkError::Browser { name, message }
    }
}

/// Calls `obj.method(...args)` and awaits the promise it returns.
pub async fn call_async(
    obj: &JsValue,
    method: &str,
    args: &[JsValue],
) -> Result<JsValue, LinkError> {
    let f: Function = get(obj, method)
        .dyn_into()
        .map_err(|_| LinkError::Browser {
            name: "TypeError".into(),
            message: format!("{method} is not available"),
        })?;
    let p = f
        .apply(obj, &args.iter().collect::<Array>())
        .map_err(|e| browser_error(&e))?;
    JsFuture::from(Promise::resolve(&p))
        .await
        .map_err(|e| browser_error(&e))
}

/// Resolves after `ms` (setTimeout), for timeouts.
pub async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(p).await;
}

/// Awaits `p`, or fails with [`LinkError::Timeout`] after `ms`.
async fn with_timeout(p: Promise, ms: i32) -> Result<JsValue, LinkError> {
    let timer = std::cell::Cell::new(None);
    let timeout = Promise::new(&mut |_, reject| {
        if let Some(w) = web_sys::window() {
            timer.set(
                w.set_timeout_with_callback_and_timeout_and_arguments_1(
                    &reject,
                    ms,
                    &JsValue::from_str("imprint-timeout"),
                )
                .ok(),
            );
        }
    });
    let race = Promise::race(&Array::of2(&p, &timeout));
    let result = JsFuture::from(race).await;
    // Every transfer has a timer: clear it once the transfer settled, so a busy line does not
    // leave thousands of them pending.
    if let (Some(w), Some(id)) = (web_sys::window(), timer.get()) {
        w.clear_timeout_with_handle(id);
    }
    result.map_err(|e| {
        if e.as_string().as_deref() == Some("imprint-timeout") {
            LinkError::Timeout
        } else {
            browser_error(&e)
        }
    })
}

/// `navigator.usb`, or `None` where the browser has no WebUSB.
pub fn navigator_usb() -> Option<JsValue> {
    let nav: JsValue = web_sys::window()?.navigator().into();
    let usb = get(&nav, "usb");
    (!usb.is_undefined() && !usb.is_null()).then_some(usb)
}

/// The filters of the chooser: Imprint units (docs/usb.md).
fn filters() -> JsValue {
    let f = Object::new();
    let _ = Reflect::set(
        &f,
        &"vendorId".into(),
        &JsValue::from(imprint_device::usb::DEMO_IDENTITY.vendor_id),
    );
    let o = Object::new();
    let _ = Reflect::set(&o, &"filters".into(), &Array::of1(&f));
    o.into()
}

/// Shows the browser's chooser (needs a click) and returns the unit picked.
pub async fn request_unit() -> Result<JsValue, LinkError> {
    let usb = navigator_usb().ok_or(LinkError::Browser {
        name: "NotSupportedError".into(),
        message: "no WebUSB".into(),
    })?;
    call_async(&usb, "requestDevice", &[filters()]).await
}

/// Units this page may open without a chooser (granted before, or by kiosk policy).
pub async fn granted_units() -> Result<Vec<JsValue>, LinkError> {
    let usb = navigator_usb().ok_or(LinkError::Browser {
        name: "NotSupportedError".into(),
        message: "no WebUSB".into(),
    })?;
    let list = call_async(&usb, "getDevices", &[]).await?;
    Ok(Array::from(&list).iter().collect())
}

/// A unit's USB serial number (its chip ID), the key of its tile and journal entries.
pub fn serial_of(device: &JsValue) -> String {
    get(device, "serialNumber").as_string().unwrap_or_default()
}

/// An open connection to one unit.
pub struct WebUsbLink {
    device: JsValue,
    seq: u8,
}

impl WebUsbLink {
    /// Opens the unit, selects configuration 1 and claims the Imprint interface.
    pub async fn open(device: JsValue) -> Result<WebUsbLink, LinkError> {
        if get(&device, "opened").as_bool() != Some(true) {
            call_async(&device, "open", &[]).await?;
        }
        if get(&device, "configuration").is_null() {
            call_async(&device, "selectConfiguration", &[1.into()]).await?;
        }
        call_async(&device, "claimInterface", &[INTERFACE.into()]).await?;
        Ok(WebUsbLink { device, seq: 0 })
    }

    /// Releases the unit.
    pub async fn close(self) {
        let _ = call_async(&self.device, "close", &[]).await;
    }
}

impl Link for WebUsbLink {
    async fn call(&mut self, req: &Request) -> Result<Reply, LinkError> {
        self.seq = self.seq.wrapping_add(1);
        let frame = req.encode(self.seq);
        let out = Uint8Array::from(frame.as_slice());
        call_async(&self.device, "transferOut", &[ENDPOINT.into(), out.into()]).await?;
        let limit = if matches!(req, Request::Install { .. }) {
            INSTALL_MS
        } else {
            REPLY_MS
        };
        let mut asm = FrameAssembler::new();
        loop {
            let f: Function = get(&self.device, "transferIn")
                .dyn_into()
                .map_err(|_| LinkError::Disconnected)?;
            let p = f
                .call2(&self.device, &ENDPOINT.into(), &PACKET.into())
                .map_err(|e| browser_error(&e))?;
            let result = with_timeout(Promise::resolve(&p), limit).await?;
            if get(&result, "status").as_string().as_deref() == Some("stall") {
                let _ =
                    call_async(&self.device, "clearHalt", &["in".into(), ENDPOINT.into()]).await;
                continue;
            }
            let view: js_sys::DataView = get(&result, "data")
                .dyn_into()
                .map_err(|_| LinkError::Garbage("a transfer without data".into()))?;
            let bytes = Uint8Array::new_with_byte_offset_and_length(
                &view.buffer(),
                view.byte_offset() as u32,
                view.byte_length() as u32,
            )
            .to_vec();
            asm.push(&bytes);
            match asm.next_frame() {
                Some(Ok(f)) if f.seq == self.seq => {
                    return Reply::from_parts(f.kind, &f.payload).map_err(|e| garbage(&e));
                }
                // A late answer to an earlier request: drop it and keep reading.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(garbage(&imprint_core::ProtocolError::Frame(e.error))),
                None => {}
            }
        }
    }

    fn unit(&self) -> String {
        serial_of(&self.device)
    }
}
