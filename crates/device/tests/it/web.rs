//! The simulated device through its WebUSB surface, in headless Chromium, driven the way a
//! WebUSB driver drives a real device: only through JavaScript properties and methods.

use imprint_core::*;
use imprint_device::web::SimUsb;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::{install_req, issue, receipt_is_valid};

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &key.into()).unwrap()
}

async fn call(obj: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = get(obj, method).dyn_into().unwrap();
    let promise = f.apply(obj, &args.iter().collect::<Array>())?;
    JsFuture::from(js_sys::Promise::from(promise)).await
}

fn navigator_usb() -> JsValue {
    get(&web_sys::window().unwrap().navigator().into(), "usb")
}

async fn open(dev: &JsValue) {
    call(dev, "open", &[]).await.unwrap();
    call(dev, "selectConfiguration", &[1.into()]).await.unwrap();
    call(dev, "claimInterface", &[0.into()]).await.unwrap();
}

async fn exchange(dev: &JsValue, req: &Request, seq: u8) -> Result<(u8, Reply), JsValue> {
    let bytes = req.encode(seq);
    let out = call(
        dev,
        "transferOut",
        &[1.into(), Uint8Array::from(bytes.as_slice()).into()],
    )
    .await?;
    assert_eq!(get(&out, "status").as_string().as_deref(), Some("ok"));
    assert_eq!(get(&out, "bytesWritten").as_f64(), Some(bytes.len() as f64));
    let mut asm = FrameAssembler::new();
    loop {
        let r = call(dev, "transferIn", &[1.into(), 64.into()]).await?;
        let view: js_sys::DataView = get(&r, "data").dyn_into().unwrap();
        asm.push(
            &Uint8Array::new_with_byte_offset_and_length(
                &view.buffer(),
                view.byte_offset() as u32,
                view.byte_length() as u32,
            )
            .to_vec(),
        );
        if let Some(f) = asm.next_frame() {
            let f = f.unwrap();
            return Ok((f.seq, Reply::from_parts(f.kind, &f.payload).unwrap()));
        }
    }
}

fn error_name(e: &JsValue) -> String {
    get(e, "name").as_string().unwrap_or_default()
}

#[wasm_bindgen_test]
async fn a_simulated_unit_is_provisioned_through_navigator_usb() {
    let bus = SimUsb::new().unwrap();
    bus.install().unwrap();
    let connects = std::rc::Rc::new(std::cell::Cell::new(0));
    let c = connects.clone();
    let listener = wasm_bindgen::closure::Closure::<dyn Fn(JsValue)>::new(move |e: JsValue| {
        assert!(get(&e, "device").is_object());
        c.set(c.get() + 1);
    });
    let usb = navigator_usb();
    let add: js_sys::Function = get(&usb, "addEventListener").dyn_into().unwrap();
    add.call2(&usb, &"connect".into(), listener.as_ref())
        .unwrap();
    bus.plug("demo", 1).unwrap();
    bus.plug("demo", 2).unwrap();
    assert_eq!(connects.get(), 2);

    let none = call(&usb, "getDevices", &[]).await.unwrap();
    assert_eq!(Array::from(&none).length(), 0, "nothing granted yet");
    let filters = Object::new();
    let filter = Object::new();
    Reflect::set(&filter, &"vendorId".into(), &0x1209.into()).unwrap();
    Reflect::set(&filters, &"filters".into(), &Array::of1(&filter)).unwrap();
    let dev = call(&usb, "requestDevice", &[filters.clone().into()])
        .await
        .unwrap();
    assert_eq!(get(&dev, "vendorId").as_f64(), Some(0x1209 as f64));
    let serial = get(&dev, "serialNumber").as_string().unwrap();
    assert_eq!(serial.len(), 24);
    assert!(get(&dev, "configuration").is_null());

    // Transfers before open fail the way Chrome's do.
    let err = call(
        &dev,
        "transferOut",
        &[1.into(), Uint8Array::new_with_length(1).into()],
    )
    .await
    .unwrap_err();
    assert_eq!(error_name(&err), "InvalidStateError");
    open(&dev).await;
    assert_eq!(get(&dev, "opened").as_bool(), Some(true));
    let iface = Array::from(&get(&get(&dev, "configuration"), "interfaces")).get(0);
    assert_eq!(
        get(&get(&iface, "alternate"), "interfaceClass").as_f64(),
        Some(255.0)
    );

    let (seq, reply) = exchange(&dev, &Request::GetInfo, 1).await.unwrap();
    assert_eq!(seq, 1);
    let Reply::Info(info) = reply else { panic!() };
    assert_eq!(info.state, DeviceState::Blank);

    let i = issue("IMP-WEB-1", 1);
    let (_, Reply::Installed(receipt)) = exchange(&dev, &install_req(&i), 2).await.unwrap() else {
        panic!()
    };
    assert!(receipt_is_valid(&i, &info.product_serial, &receipt));

    // Pull the cable mid-session: transfers fail with NotFoundError, the event fires.
    bus.unplug(0).unwrap();
    let err = exchange(&dev, &Request::GetInfo, 3).await.unwrap_err();
    assert_eq!(error_name(&err), "NotFoundError");
    // Replug: a new object, same serial, still permitted (no chooser), identity kept.
    bus.replug(0).unwrap();
    let granted = Array::from(&call(&usb, "getDevices", &[]).await.unwrap());
    assert_eq!(granted.length(), 1);
    let dev2 = granted.get(0);
    assert_eq!(get(&dev2, "serialNumber").as_string().unwrap(), serial);
    open(&dev2).await;
    let q = Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    };
    assert_eq!(
        exchange(&dev2, &q, 4).await.unwrap(),
        (4, Reply::RecordStatus(RecordStatus::Held(receipt)))
    );

    // The second unit is another tile: picked by the next requestDevice.
    let other = call(&usb, "requestDevice", &[filters.into()])
        .await
        .unwrap();
    assert_ne!(get(&other, "serialNumber").as_string().unwrap(), serial);
    drop(listener);
}

#[wasm_bindgen_test]
async fn faults_reach_the_driver_as_a_real_device_would_show_them() {
    let bus = SimUsb::new().unwrap();
    bus.grant_all(true);
    let dev = bus.device(bus.plug("demo", 7).unwrap());
    open(&dev).await;
    let set_fault: js_sys::Function = get(&dev, "setFault").dyn_into().unwrap();
    set_fault
        .call2(&dev, &"truncated".into(), &0.into())
        .unwrap();
    let bytes = Request::GetInfo.encode(1);
    call(
        &dev,
        "transferOut",
        &[1.into(), Uint8Array::from(bytes.as_slice()).into()],
    )
    .await
    .unwrap();
    let r = call(&dev, "transferIn", &[1.into(), 512.into()])
        .await
        .unwrap();
    let view: js_sys::DataView = get(&r, "data").dyn_into().unwrap();
    let got = Uint8Array::new(&view.buffer()).to_vec();
    assert!(matches!(
        decode_frame(&got),
        Err(FrameError::Incomplete { .. })
    ));
    set_fault.call2(&dev, &"none".into(), &0.into()).unwrap();
    assert!(
        set_fault
            .call2(&dev, &"no-such-fault".into(), &0.into())
            .is_err()
    );

    let locked = bus.device(bus.plug("locked", 8).unwrap());
    open(&locked).await;
    let (_, reply) = exchange(&locked, &install_req(&issue("IMP-WEB-2", 2)), 1)
        .await
        .unwrap();
    assert_eq!(reply, Reply::Error(ErrorCode::Locked));
    // With the kiosk policy every plugged unit is listed without a chooser.
    let all = Array::from(&call(&bus.usb(), "getDevices", &[]).await.unwrap());
    assert_eq!(all.length(), 2);
    // A wrong endpoint is refused like Chrome refuses it.
    let err = call(&dev, "transferIn", &[5.into(), 64.into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "NotFoundError");
}

#[wasm_bindgen_test]
async fn a_slow_unit_answers_late_but_answers() {
    let bus = SimUsb::new().unwrap();
    let dev = bus.device(bus.plug("demo", 9).unwrap());
    open(&dev).await;
    let set_fault: js_sys::Function = get(&dev, "setFault").dyn_into().unwrap();
    set_fault.call2(&dev, &"slow".into(), &120.into()).unwrap();
    let start = js_sys::Date::now();
    let (seq, reply) = exchange(&dev, &Request::GetInfo, 4).await.unwrap();
    assert!(
        js_sys::Date::now() - start >= 120.0,
        "the reply must be held back"
    );
    assert!(matches!((seq, reply), (4, Reply::Info(_))));
}

#[wasm_bindgen_test]
async fn kept_units_come_back_after_a_page_reload_with_what_they_wrote() {
    let key = "imprint.test.units";
    web_sys::window()
        .unwrap()
        .session_storage()
        .unwrap()
        .unwrap()
        .remove_item(key)
        .unwrap();
    let bus = SimUsb::new().unwrap();
    bus.keep_in(key);
    bus.grant_all(true);
    bus.plug("demo", 41).unwrap();
    bus.plug("wrong-model", 42).unwrap();
    bus.plug("demo", 43).unwrap();
    bus.unplug(2).unwrap();
    let dev = bus.device(0);
    open(&dev).await;
    let i = issue("IMP-KEPT-1", 1);
    let (_, Reply::Installed(receipt)) = exchange(&dev, &install_req(&i), 1).await.unwrap() else {
        panic!()
    };
    let serial = get(&dev, "serialNumber").as_string().unwrap();

    // The page reloads: a new bus restores the plugged units from sessionStorage.
    let again = SimUsb::new().unwrap();
    again.keep_in(key);
    again.grant_all(true);
    assert_eq!(again.restore().unwrap(), 2, "the unplugged unit stays away");
    let dev = again.device(0);
    assert_eq!(get(&dev, "serialNumber").as_string().unwrap(), serial);
    open(&dev).await;
    let q = Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    };
    assert_eq!(
        exchange(&dev, &q, 2).await.unwrap().1,
        Reply::RecordStatus(RecordStatus::Held(receipt)),
        "it still holds what it wrote before the reload"
    );
    let other = again.device(1);
    open(&other).await;
    let (_, Reply::Info(info)) = exchange(&other, &Request::GetInfo, 1).await.unwrap() else {
        panic!()
    };
    assert_eq!(info.product_code.as_str(), "OTHER-MODEL");

    // A lasting fault is kept with the unit: a garbage unit still answers garbage.
    let set_fault: js_sys::Function = get(&other, "setFault").dyn_into().unwrap();
    set_fault
        .call2(&other, &"garbage".into(), &0.into())
        .unwrap();
    let after = SimUsb::new().unwrap();
    after.keep_in(key);
    assert_eq!(after.restore().unwrap(), 2);
    let broken = after.device(1);
    open(&broken).await;
    let out = Uint8Array::from(Request::GetInfo.encode(1).as_slice());
    call(&broken, "transferOut", &[1.into(), out.into()])
        .await
        .unwrap();
    let r = call(&broken, "transferIn", &[1.into(), 64.into()])
        .await
        .unwrap();
    let view: js_sys::DataView = get(&r, "data").dyn_into().unwrap();
    let mut asm = FrameAssembler::new();
    asm.push(&Uint8Array::new(&view.buffer()).to_vec());
    assert!(
        !matches!(asm.next_frame(), Some(Ok(_))),
        "still garbage after the reload"
    );

    // A damaged store restores nothing and says so with 0, not an exception.
    let store = web_sys::window()
        .unwrap()
        .session_storage()
        .unwrap()
        .unwrap();
    store
        .set_item(
            key,
            "[{\"kind\":\"demo\",\"n\":1,\"flash\":[1,2]}, 7, \"x\"]",
        )
        .unwrap();
    let third = SimUsb::new().unwrap();
    third.keep_in(key);
    assert_eq!(third.restore().unwrap(), 0);
    store.set_item(key, "not json").unwrap();
    assert_eq!(third.restore().unwrap(), 0);
    store.remove_item(key).unwrap();
}

#[wasm_bindgen_test]
async fn closing_the_unit_cancels_a_waiting_transfer_as_chrome_does() {
    let bus = SimUsb::new().unwrap();
    bus.plug("demo", 51).unwrap();
    let dev = bus.device(0);
    open(&dev).await;
    // Nothing was asked, so nothing comes: the transfer waits...
    let f: js_sys::Function = get(&dev, "transferIn").dyn_into().unwrap();
    let waiting = js_sys::Promise::from(f.call2(&dev, &1.into(), &64.into()).unwrap());
    call(&dev, "close", &[]).await.unwrap();
    // ...until the page closes the unit: then it fails with AbortError, not later.
    let err = JsFuture::from(waiting).await.unwrap_err();
    assert_eq!(error_name(&err), "AbortError");
    // Opened again, the unit answers the next request normally.
    open(&dev).await;
    let (_, reply) = exchange(&dev, &Request::GetInfo, 1).await.unwrap();
    assert!(matches!(reply, Reply::Info(_)));
}
