//! The WebUSB driver against the simulated `USBDevice`, in headless Chromium: the same driver
//! code that talks to real units, through `navigator.usb` as the page sees it.

use imprint_core::{
    ApparatusId, Binding, DeviceState, ErrorCode, KeyId, PassPhrase, Reply, Request, SealedRecord,
};
use imprint_device::sim::demo_key;
use imprint_device::web::SimUsb;
use imprint_portal::station::{Link, LinkError};
use imprint_portal::web::usb::{WebUsbLink, granted_units, serial_of};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

fn set_fault(dev: &JsValue, name: &str, arg: u32) {
    let f: js_sys::Function = js_sys::Reflect::get(dev, &"setFault".into())
        .unwrap()
        .dyn_into()
        .unwrap();
    f.call2(dev, &name.into(), &arg.into()).unwrap();
}

fn record(id: &str) -> (ApparatusId, SealedRecord) {
    let id = ApparatusId::new(id).unwrap();
    let k = KeyId::new(1).unwrap();
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let pass = PassPhrase::generate(&mut rng);
    (
        id,
        SealedRecord::seal(&mut rng, &demo_key(k), k, &Binding::Model, &id, &pass),
    )
}

#[wasm_bindgen_test]
async fn the_driver_provisions_a_simulated_unit_and_reports_unplugs_garbage_and_timeouts() {
    let bus = SimUsb::new().unwrap();
    bus.grant_all(true);
    bus.install().unwrap();
    let i = bus.plug("demo", 1).unwrap();
    let units = granted_units().await.unwrap();
    assert_eq!(units.len(), 1);
    let dev = units[0].clone();
    let mut link = WebUsbLink::open(dev.clone()).await.unwrap();
    assert_eq!(link.unit(), serial_of(&dev));
    let Reply::Info(info) = link.call(&Request::GetInfo).await.unwrap() else {
        panic!()
    };
    assert_eq!(info.state, DeviceState::Blank);
    let (id, sealed) = record("IMP-WEBUSB-1");
    assert!(matches!(
        link.call(&Request::Install {
            apparatus_id: id,
            record: sealed.clone()
        })
        .await
        .unwrap(),
        Reply::Installed(_)
    ));
    // A second identity is refused by the unit, seen by the driver as a device error.
    let (id2, sealed2) = record("IMP-WEBUSB-2");
    assert_eq!(
        link.call(&Request::Install {
            apparatus_id: id2,
            record: sealed2
        })
        .await
        .unwrap(),
        Reply::Error(ErrorCode::AlreadyProvisioned)
    );
    // Garbage from the unit is reported as such, not misread.
    set_fault(&dev, "garbage", 0);
    assert!(matches!(
        link.call(&Request::GetInfo).await,
        Err(LinkError::Garbage(_))
    ));
    // A unit slower than the reply deadline times out instead of hanging the station.
    let j = bus.plug("demo", 2).unwrap();
    let slow = bus.device(j);
    let mut slow_link = WebUsbLink::open(slow.clone()).await.unwrap();
    set_fault(&slow, "slow", 2_500);
    assert_eq!(
        slow_link.call(&Request::GetInfo).await,
        Err(LinkError::Timeout)
    );
    // Pulling the cable is a disconnect, distinct from a transfer error.
    set_fault(&dev, "none", 0);
    bus.unplug(i).unwrap();
    assert_eq!(
        link.call(&Request::GetInfo).await,
        Err(LinkError::Disconnected)
    );
    // Replugged: a new object, same serial; opens again and the identity is still there.
    let again = bus.replug(i).unwrap();
    assert_eq!(serial_of(&again), serial_of(&dev));
    let mut link = WebUsbLink::open(again).await.unwrap();
    let q = Request::QueryRecord {
        apparatus_id: id,
        record_digest: sealed.digest(),
    };
    assert!(matches!(
        link.call(&q).await.unwrap(),
        Reply::RecordStatus(imprint_core::RecordStatus::Held(_))
    ));
}
