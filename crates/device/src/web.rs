//! The simulated device in the browser, behind the WebUSB surface.
//!
//! [`SimUsbDevice`] has the members of a WebUSB `USBDevice` that a driver uses (vendorId,
//! productId, serialNumber, productName, manufacturerName, opened, configuration; open,
//! selectConfiguration, claimInterface, releaseInterface, transferOut, transferIn, close) and
//! fails the way Chrome fails (DOMException names and messages), so the portal's WebUSB driver
//! cannot tell it from hardware. [`SimUsb`] is a stand-in `navigator.usb`: getDevices,
//! requestDevice, and `connect`/`disconnect` events, with several units plugged at once.

use alloc::rc::{Rc, Weak};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::sim::{Fault, SimDevice, UsbError};
use crate::usb::{DEMO_IDENTITY, EP_IN, EP_OUT, INTERFACE, MAX_PACKET};

/// How long transferIn waits between looks at the device's queue.
const POLL_MS: i32 = 2;

struct Unit {
    dev: SimDevice,
    opened: bool,
    configured: bool,
    claimed: bool,
    /// Counts closes and releases: a transfer waiting across one is cancelled.
    session: u32,
}

type Shared = Rc<RefCell<Unit>>;

/// How far a session must be for a call, in the order WebUSB requires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Plugged,
    Opened,
    Configured,
    Claimed,
}

impl Unit {
    /// Fails as Chrome does when the session is not yet at `stage`.
    fn require(&self, stage: Stage) -> Result<(), JsValue> {
        let state = |msg: &str| Err(dom_error("InvalidStateError", msg));
        if !self.dev.is_plugged() {
            return Err(disconnected());
        }
        if stage >= Stage::Opened && !self.opened {
            return state("The device must be opened first.");
        }
        if stage >= Stage::Configured && !self.configured {
            return state("The device must be opened and configured first.");
        }
        if stage >= Stage::Claimed && !self.claimed {
            return state("The specified interface has not been claimed.");
        }
        Ok(())
    }
}

fn dom_error(name: &str, message: &str) -> JsValue {
    web_sys::DomException::new_with_message_and_name(message, name)
        .map(JsValue::from)
        .unwrap_or_else(|_| JsValue::from_str(message))
}

fn disconnected() -> JsValue {
    dom_error("NotFoundError", &UsbError::Disconnected.to_string())
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a plain object we just created cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// Resolves after `ms` milliseconds (setTimeout).
async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// A simulated unit with the WebUSB `USBDevice` surface.
#[wasm_bindgen]
pub struct SimUsbDevice {
    unit: Shared,
    /// The bus, to save every unit after a transfer changed one (see [`SimUsb::keep_in`]).
    bus: Weak<RefCell<Bus>>,
}

impl SimUsbDevice {
    fn check_ready(&self, endpoint: u8, dir_in: bool) -> Result<(), JsValue> {
        self.unit.borrow().require(Stage::Claimed)?;
        let ep = if dir_in { EP_IN & 0x0F } else { EP_OUT };
        if endpoint != ep {
            return Err(dom_error(
                "NotFoundError",
                "The specified endpoint is not part of a claimed and selected alternate interface.",
            ));
        }
        Ok(())
    }
}

#[wasm_bindgen]
impl SimUsbDevice {
    /// USB vendor ID.
    #[wasm_bindgen(getter, js_name = vendorId)]
    pub fn vendor_id(&self) -> u16 {
        DEMO_IDENTITY.vendor_id
    }

    /// USB product ID.
    #[wasm_bindgen(getter, js_name = productId)]
    pub fn product_id(&self) -> u16 {
        DEMO_IDENTITY.product_id
    }

    /// The serial number string (chip ID in hex).
    #[wasm_bindgen(getter, js_name = serialNumber)]
    pub fn serial_number(&self) -> String {
        self.unit.borrow().dev.usb_serial()
    }

    /// Product string.
    #[wasm_bindgen(getter, js_name = productName)]
    pub fn product_name(&self) -> String {
        DEMO_IDENTITY.product.into()
    }

    /// Manufacturer string.
    #[wasm_bindgen(getter, js_name = manufacturerName)]
    pub fn manufacturer_name(&self) -> String {
        DEMO_IDENTITY.manufacturer.into()
    }

    /// Whether `open()` succeeded.
    #[wasm_bindgen(getter)]
    pub fn opened(&self) -> bool {
        self.unit.borrow().opened
    }

    /// The selected configuration, shaped like `USBConfiguration`, or null.
    #[wasm_bindgen(getter)]
    pub fn configuration(&self) -> JsValue {
        let u = self.unit.borrow();
        if u.configured {
            configuration_object(u.claimed).into()
        } else {
            JsValue::NULL
        }
    }

    /// All configurations (one).
    #[wasm_bindgen(getter)]
    pub fn configurations(&self) -> Array {
        Array::of1(&configuration_object(self.unit.borrow().claimed))
    }

    /// Opens a session.
    pub fn open(&self) -> Promise {
        let unit = self.unit.clone();
        future_to_promise(async move {
            let mut u = unit.borrow_mut();
            u.require(Stage::Plugged)?;
            u.opened = true;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Ends the session.
    pub fn close(&self) -> Promise {
        let unit = self.unit.clone();
        future_to_promise(async move {
            let mut u = unit.borrow_mut();
            u.opened = false;
            u.claimed = false;
            u.session = u.session.wrapping_add(1);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Selects configuration 1 (the only one).
    #[wasm_bindgen(js_name = selectConfiguration)]
    pub fn select_configuration(&self, value: u8) -> Promise {
        let unit = self.unit.clone();
        future_to_promise(async move {
            let mut u = unit.borrow_mut();
            u.require(Stage::Opened)?;
            if value != 1 {
                return Err(dom_error(
                    "NotFoundError",
                    "The configuration value provided is not supported by the device.",
                ));
            }
            u.configured = true;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Claims the Imprint interface.
    #[wasm_bindgen(js_name = claimInterface)]
    pub fn claim_interface(&self, number: u8) -> Promise {
        let unit = self.unit.clone();
        future_to_promise(async move {
            let mut u = unit.borrow_mut();
            u.require(Stage::Configured)?;
            if number != INTERFACE {
                return Err(dom_error(
                    "NotFoundError",
                    "The interface number provided is not supported by the device in its current configuration.",
                ));
            }
            u.claimed = true;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Releases the interface.
    #[wasm_bindgen(js_name = releaseInterface)]
    pub fn release_interface(&self, _number: u8) -> Promise {
        let unit = self.unit.clone();
        future_to_promise(async move {
            let mut u = unit.borrow_mut();
            u.claimed = false;
            u.session = u.session.wrapping_add(1);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Sends bytes on the bulk OUT endpoint. Resolves to `{status: "ok", bytesWritten}`.
    #[wasm_bindgen(js_name = transferOut)]
    pub fn transfer_out(&self, endpoint: u8, data: JsValue) -> Promise {
        let ready = self.check_ready(endpoint, false);
        let unit = self.unit.clone();
        let bus = self.bus.clone();
        future_to_promise(async move {
            ready?;
            let bytes = buffer_bytes(&data)?;
            let written = unit.borrow_mut().dev.transfer_out(&bytes);
            // The unit may have written its flash (or lost power half-way): keep it.
            if let Some(bus) = bus.upgrade() {
                bus.borrow().save();
            }
            let written = written.map_err(|_| disconnected())?;
            let r = Object::new();
            set(&r, "status", "ok");
            set(&r, "bytesWritten", written as u32);
            Ok(r.into())
        })
    }

    /// Reads up to `length` bytes from the bulk IN endpoint, waiting until the device has
    /// some (as a real transfer does). Resolves to `{status: "ok", data: DataView}`.
    #[wasm_bindgen(js_name = transferIn)]
    pub fn transfer_in(&self, endpoint: u8, length: u32) -> Promise {
        let ready = self.check_ready(endpoint, true);
        let unit = self.unit.clone();
        let session = unit.borrow().session;
        future_to_promise(async move {
            ready?;
            let fault = unit.borrow().dev.fault();
            if let Fault::Slow(ms) = fault {
                sleep(i32::try_from(ms).unwrap_or(i32::MAX)).await;
            }
            loop {
                // Closing the device or releasing the interface cancels a waiting transfer, as
                // Chrome does; otherwise a transfer the page gave up on would wait for ever.
                if unit.borrow().dev.is_plugged() && unit.borrow().session != session {
                    return Err(dom_error("AbortError", "The transfer was cancelled."));
                }
                let chunk = unit
                    .borrow_mut()
                    .dev
                    .transfer_in(length as usize)
                    .map_err(|_| disconnected())?;
                if !chunk.is_empty() {
                    let array = Uint8Array::from(chunk.as_slice());
                    let view = js_sys::DataView::new(&array.buffer(), 0, chunk.len());
                    let r = Object::new();
                    set(&r, "status", "ok");
                    set(&r, "data", view);
                    return Ok(r.into());
                }
                sleep(POLL_MS).await;
            }
        })
    }

    /// Simulation control: switch on a fault by name: "none", "unplug-before-install",
    /// "unplug-after-install", "power-cut" (arg: flash steps), "garbage", "truncated",
    /// "slow" (arg: milliseconds).
    #[wasm_bindgen(js_name = setFault)]
    pub fn set_fault(&self, name: &str, arg: u32) -> Result<(), JsValue> {
        let fault = fault_from(name, arg)
            .ok_or_else(|| JsValue::from_str(&alloc::format!("unknown fault {name}")))?;
        self.unit.borrow_mut().dev.set_fault(fault);
        if let Some(bus) = self.bus.upgrade() {
            bus.borrow().save();
        }
        Ok(())
    }

    /// Simulation view: "blank", "provisioned:<id>" or "locked:<id>".
    #[wasm_bindgen(js_name = simState)]
    pub fn sim_state(&self) -> String {
        match self.unit.borrow().dev.state() {
            imprint_core::DeviceState::Blank => "blank".into(),
            imprint_core::DeviceState::Provisioned(id) => alloc::format!("provisioned:{id}"),
            imprint_core::DeviceState::Locked(id) => alloc::format!("locked:{id}"),
        }
    }
}

fn buffer_bytes(data: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(view) = data.dyn_ref::<js_sys::DataView>() {
        let u8s = Uint8Array::new_with_byte_offset_and_length(
            &view.buffer(),
            view.byte_offset() as u32,
            view.byte_length() as u32,
        );
        return Ok(u8s.to_vec());
    }
    if data.is_instance_of::<js_sys::ArrayBuffer>() || data.is_instance_of::<Uint8Array>() {
        return Ok(Uint8Array::new(data).to_vec());
    }
    Err(dom_error(
        "TypeError",
        "transferOut needs a BufferSource (ArrayBuffer or a view)",
    ))
}

fn configuration_object(claimed: bool) -> Object {
    let ep = |number: u8, direction: &str| {
        let e = Object::new();
        set(&e, "endpointNumber", number);
        set(&e, "direction", direction);
        set(&e, "type", "bulk");
        set(&e, "packetSize", MAX_PACKET);
        e
    };
    let alt = Object::new();
    set(&alt, "alternateSetting", 0);
    set(&alt, "interfaceClass", 0xFF);
    set(&alt, "interfaceSubclass", 0);
    set(&alt, "interfaceProtocol", 0);
    set(&alt, "interfaceName", crate::usb::INTERFACE_NAME);
    set(
        &alt,
        "endpoints",
        Array::of2(&ep(EP_OUT, "out"), &ep(EP_IN & 0x0F, "in")),
    );
    let iface = Object::new();
    set(&iface, "interfaceNumber", INTERFACE);
    set(&iface, "alternate", alt.clone());
    set(&iface, "alternates", Array::of1(&alt));
    set(&iface, "claimed", claimed);
    let cfg = Object::new();
    set(&cfg, "configurationValue", 1);
    set(&cfg, "configurationName", JsValue::NULL);
    set(&cfg, "interfaces", Array::of1(&iface));
    cfg
}

struct Slot {
    unit: Shared,
    /// The JS object the page sees; replaced on every replug, as Chrome does.
    js: JsValue,
    /// What was plugged (`SimUsb::plug`'s `kind` and `n`), to rebuild the unit after a reload.
    kind: String,
    n: u32,
}

struct Bus {
    slots: Vec<Slot>,
    /// Serial numbers the user (or the kiosk policy) has granted.
    granted: Vec<String>,
    grant_all: bool,
    /// The sessionStorage key the units are kept under, if any.
    keep: Option<String>,
}

impl Bus {
    /// Saves every plugged unit (kind, number, flash) under the `keep` key: a page reload then
    /// finds the units where a real line would, still plugged in with what they wrote.
    fn save(&self) {
        let Some(key) = &self.keep else {
            return;
        };
        let list = Array::new();
        for s in &self.slots {
            let mut u = s.unit.borrow_mut();
            if !u.dev.is_plugged() {
                continue;
            }
            let o = Object::new();
            let (fault, arg) = fault_name(u.dev.fault());
            set(&o, "kind", s.kind.as_str());
            set(&o, "n", s.n);
            set(&o, "fault", fault);
            set(&o, "arg", arg);
            set(
                &o,
                "flash",
                Array::from(&Uint8Array::from(u.dev.flash().to_bytes().as_slice())),
            );
            list.push(&o);
        }
        if let (Some(store), Ok(text)) = (session_storage(), js_sys::JSON::stringify(&list)) {
            // Best effort: a full sessionStorage only means a reload forgets the units.
            let _ = store.set_item(key, &String::from(text));
        }
    }
}

/// A fault by the name `setFault` takes.
fn fault_from(name: &str, arg: u32) -> Option<Fault> {
    Some(match name {
        "none" => Fault::None,
        "unplug-before-install" => Fault::UnplugBeforeInstall,
        "unplug-after-install" => Fault::UnplugAfterInstall,
        "power-cut" => Fault::PowerCutDuringInstall(arg as usize),
        "garbage" => Fault::GarbageReplies,
        "truncated" => Fault::TruncatedReplies,
        "slow" => Fault::Slow(arg),
        "claims-other-chip" => Fault::ClaimsOtherChip,
        "lock-fails" => Fault::LockWriteFails,
        "unplug-after-lock" => Fault::UnplugAfterLock,
        _ => return None,
    })
}

/// The name and argument `setFault` would take for `fault`. One-shot faults that already
/// fired are `None` by now, so a kept unit keeps only its lasting faults (garbage, slow).
fn fault_name(fault: Fault) -> (&'static str, u32) {
    match fault {
        Fault::None => ("none", 0),
        Fault::UnplugBeforeInstall => ("unplug-before-install", 0),
        Fault::UnplugAfterInstall => ("unplug-after-install", 0),
        Fault::PowerCutDuringInstall(steps) => {
            ("power-cut", u32::try_from(steps).unwrap_or(u32::MAX))
        }
        Fault::GarbageReplies => ("garbage", 0),
        Fault::TruncatedReplies => ("truncated", 0),
        Fault::Slow(ms) => ("slow", ms),
        Fault::ClaimsOtherChip => ("claims-other-chip", 0),
        Fault::LockWriteFails => ("lock-fails", 0),
        Fault::UnplugAfterLock => ("unplug-after-lock", 0),
    }
}

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The built-in configuration of a unit of `kind` (see [`SimUsb::plug`]).
fn config_of(kind: &str, n: u32) -> Option<crate::DeviceConfig> {
    match kind {
        "demo" | "provisioned" | "locked" => {
            Some(crate::sim::demo_config(n, crate::sim::DEMO_PRODUCT, &[1]))
        }
        "chip-bound" => Some(crate::sim::demo_config(
            n,
            crate::sim::DEMO_CHIP_PRODUCT,
            &[2],
        )),
        "wrong-model" => Some(crate::sim::demo_config(n, "OTHER-MODEL", &[99])),
        "duplicate-serial" => Some(crate::sim::duplicate_serial_config(n)),
        _ => None,
    }
}

/// A stand-in `navigator.usb` with simulated units.
#[wasm_bindgen]
pub struct SimUsb {
    target: web_sys::EventTarget,
    bus: Rc<RefCell<Bus>>,
}

#[wasm_bindgen]
impl SimUsb {
    /// A bus with nothing plugged in.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<SimUsb, JsValue> {
        let target = web_sys::EventTarget::new()?;
        let bus = Rc::new(RefCell::new(Bus {
            slots: Vec::new(),
            granted: Vec::new(),
            grant_all: false,
            keep: None,
        }));
        let b = bus.clone();
        let get_devices = Closure::<dyn Fn() -> Promise>::new(move || {
            let bus = b.borrow();
            let list = Array::new();
            for s in &bus.slots {
                let u = s.unit.borrow();
                if u.dev.is_plugged()
                    && (bus.grant_all || bus.granted.contains(&u.dev.usb_serial()))
                {
                    list.push(&s.js);
                }
            }
            Promise::resolve(&JsValue::from(list))
        });
        let b = bus.clone();
        let request_device = Closure::<dyn Fn(JsValue) -> Promise>::new(move |options: JsValue| {
            let mut bus = b.borrow_mut();
            let filters = Reflect::get(&options, &"filters".into()).unwrap_or(JsValue::UNDEFINED);
            // The chooser lists every matching unit; the technician picks one not yet
            // granted (a new unit), or any if all are.
            let candidates: Vec<(JsValue, String)> = bus
                .slots
                .iter()
                .filter(|s| s.unit.borrow().dev.is_plugged() && matches_filters(&filters))
                .map(|s| (s.js.clone(), s.unit.borrow().dev.usb_serial()))
                .collect();
            let chosen = candidates
                .iter()
                .find(|(_, serial)| !bus.granted.contains(serial))
                .or(candidates.first())
                .cloned();
            match chosen {
                Some((js, serial)) => {
                    if !bus.granted.contains(&serial) {
                        bus.granted.push(serial);
                    }
                    Promise::resolve(&js)
                }
                None => Promise::reject(&dom_error("NotFoundError", "No device selected.")),
            }
        });
        set(
            target.unchecked_ref(),
            "getDevices",
            get_devices.into_js_value(),
        );
        set(
            target.unchecked_ref(),
            "requestDevice",
            request_device.into_js_value(),
        );
        Ok(SimUsb { target, bus })
    }

    /// The object to use as `navigator.usb`.
    #[wasm_bindgen(getter)]
    pub fn usb(&self) -> JsValue {
        self.target.clone().into()
    }

    /// Replaces `navigator.usb` with this bus (configurable, so a page can undo it).
    pub fn install(&self) -> Result<(), JsValue> {
        let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
        let descriptor = Object::new();
        set(&descriptor, "value", self.target.clone());
        set(&descriptor, "configurable", true);
        Object::define_property(&window.navigator(), &"usb".into(), &descriptor);
        Ok(())
    }

    /// Behaves as if the kiosk policy `WebUsbAllowDevicesForUrls` granted every unit.
    #[wasm_bindgen(js_name = grantAll)]
    pub fn grant_all(&self, on: bool) {
        self.bus.borrow_mut().grant_all = on;
    }

    /// Plugs in a new unit. `kind`: "demo", "chip-bound" (a unit of the demo's chip-bound
    /// model), "wrong-model", "duplicate-serial" (the product serial of demo unit `n`, a chip
    /// of its own), "provisioned", "locked". Returns
    /// its index for `unplug`/`replug`; fires `connect`.
    pub fn plug(&self, kind: &str, n: u32) -> Result<u32, JsValue> {
        let dev = match kind {
            "demo" => SimDevice::demo(n),
            "chip-bound" => SimDevice::demo_chip_bound(n),
            "wrong-model" => SimDevice::wrong_model(n),
            "duplicate-serial" => SimDevice::duplicate_serial(n),
            "provisioned" => SimDevice::already_provisioned(n, "EARLIER-ID", false),
            "locked" => SimDevice::already_provisioned(n, "EARLIER-ID", true),
            other => {
                return Err(JsValue::from_str(&alloc::format!(
                    "unknown unit kind {other}"
                )));
            }
        };
        let index = self.add(dev, kind, n)?;
        self.bus.borrow().save();
        Ok(index)
    }

    /// From now on, keeps every plugged unit in sessionStorage under `key` after each change,
    /// so that [`SimUsb::restore`] can bring them back after a page reload.
    #[wasm_bindgen(js_name = keepIn)]
    pub fn keep_in(&self, key: &str) {
        self.bus.borrow_mut().keep = Some(key.into());
    }

    /// Plugs back the units kept under the `keepIn` key by an earlier page (each boots from
    /// the flash it had, with its lasting fault, as a real unit does after the station's
    /// reload) and fires `connect` for each. Returns how many; entries that do not parse are
    /// skipped.
    pub fn restore(&self) -> Result<u32, JsValue> {
        let Some(key) = self.bus.borrow().keep.clone() else {
            return Ok(0);
        };
        let Some(text) = session_storage().and_then(|s| s.get_item(&key).ok().flatten()) else {
            return Ok(0);
        };
        let list = js_sys::JSON::parse(&text).unwrap_or_else(|_| Array::new().into());
        let mut restored = 0;
        for entry in Array::from(&list).iter() {
            let kind = Reflect::get(&entry, &"kind".into())
                .ok()
                .and_then(|k| k.as_string())
                .unwrap_or_default();
            let n = Reflect::get(&entry, &"n".into())
                .ok()
                .and_then(|n| n.as_f64())
                .map_or(0, |n| n as u32);
            let flash = Reflect::get(&entry, &"flash".into())
                .ok()
                .map(|f| Uint8Array::new(&f).to_vec())
                .and_then(|b| crate::sim::SimFlash::from_bytes(&b));
            let fault = Reflect::get(&entry, &"fault".into())
                .ok()
                .and_then(|f| f.as_string())
                .and_then(|f| {
                    let arg = Reflect::get(&entry, &"arg".into())
                        .ok()
                        .and_then(|a| a.as_f64())
                        .map_or(0, |a| a as u32);
                    fault_from(&f, arg)
                })
                .unwrap_or_default();
            if let (Some(config), Some(flash)) = (config_of(&kind, n), flash) {
                let mut dev = SimDevice::with_flash(config, flash);
                dev.set_fault(fault);
                self.add(dev, &kind, n)?;
                restored += 1;
            }
        }
        self.bus.borrow().save();
        Ok(restored)
    }

    /// The page-visible device object of unit `index`.
    pub fn device(&self, index: u32) -> JsValue {
        self.bus
            .borrow()
            .slots
            .get(index as usize)
            .map_or(JsValue::UNDEFINED, |s| s.js.clone())
    }

    /// Pulls unit `index`'s cable: transfers in flight fail; fires `disconnect`.
    pub fn unplug(&self, index: u32) -> Result<(), JsValue> {
        let js = {
            let bus = self.bus.borrow();
            let s = bus
                .slots
                .get(index as usize)
                .ok_or_else(|| JsValue::from_str("no such unit"))?;
            let mut u = s.unit.borrow_mut();
            u.dev.unplug();
            u.opened = false;
            u.configured = false;
            u.claimed = false;
            s.js.clone()
        };
        self.bus.borrow().save();
        self.fire("disconnect", &js)
    }

    /// Plugs unit `index` back in: it reboots from flash and appears as a new object, as a
    /// real device does; fires `connect`.
    pub fn replug(&self, index: u32) -> Result<JsValue, JsValue> {
        let js = {
            let mut bus = self.bus.borrow_mut();
            let s = bus
                .slots
                .get_mut(index as usize)
                .ok_or_else(|| JsValue::from_str("no such unit"))?;
            s.unit.borrow_mut().dev.replug();
            s.js = SimUsbDevice {
                unit: s.unit.clone(),
                bus: Rc::downgrade(&self.bus),
            }
            .into();
            s.js.clone()
        };
        self.bus.borrow().save();
        self.fire("connect", &js)?;
        Ok(js)
    }

    /// How many units were ever plugged.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> u32 {
        self.bus.borrow().slots.len() as u32
    }

    fn fire(&self, kind: &str, device: &JsValue) -> Result<(), JsValue> {
        let event = web_sys::Event::new(kind)?;
        Reflect::set(&event, &"device".into(), device)?;
        self.target.dispatch_event(&event)?;
        Ok(())
    }
}

/// Every demo unit carries the demo VID/PID and the vendor interface class, so it matches
/// any filter that names them; an empty filter list matches everything.
impl SimUsb {
    /// Puts `dev` on the bus and fires `connect`; its index.
    fn add(&self, dev: SimDevice, kind: &str, n: u32) -> Result<u32, JsValue> {
        let unit = Rc::new(RefCell::new(Unit {
            dev,
            opened: false,
            configured: false,
            claimed: false,
            session: 0,
        }));
        let js: JsValue = SimUsbDevice {
            unit: unit.clone(),
            bus: Rc::downgrade(&self.bus),
        }
        .into();
        let index = {
            let mut bus = self.bus.borrow_mut();
            bus.slots.push(Slot {
                unit,
                js: js.clone(),
                kind: kind.into(),
                n,
            });
            bus.slots.len() - 1
        };
        self.fire("connect", &js)?;
        Ok(index as u32)
    }
}

fn matches_filters(filters: &JsValue) -> bool {
    let Some(list) = filters.dyn_ref::<Array>() else {
        return true;
    };
    if list.length() == 0 {
        return true;
    }
    list.iter().any(|f| {
        let num = |k: &str| Reflect::get(&f, &k.into()).ok().and_then(|v| v.as_f64());
        num("vendorId").is_none_or(|v| v as u16 == DEMO_IDENTITY.vendor_id)
            && num("productId").is_none_or(|v| v as u16 == DEMO_IDENTITY.product_id)
            && num("classCode").is_none_or(|v| v as u8 == 0xFF)
    })
}
