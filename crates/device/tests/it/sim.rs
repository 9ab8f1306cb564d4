//! The simulated device on its simulated cable, with faults.

use imprint_core::*;
use imprint_device::sim::{Fault, SimDevice, UsbError};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::{install_req, issue, receipt_is_valid};

/// Sends a request and reads the reply as a station would (one frame, maybe in pieces).
fn call(
    d: &mut SimDevice,
    req: &Request,
    seq: u8,
) -> Result<Result<(u8, Reply), ProtocolError>, UsbError> {
    d.transfer_out(&req.encode(seq))?;
    let mut buf = Vec::new();
    loop {
        let chunk = d.transfer_in(64)?;
        if chunk.is_empty() {
            break;
        }
        buf.extend(chunk);
    }
    Ok(Reply::decode(&buf))
}

#[wasm_bindgen_test(unsupported = test)]
fn a_lost_reply_is_recovered_by_asking_the_unit() {
    let mut d = SimDevice::demo(1);
    let i = issue("IMP-1", 1);
    d.set_fault(Fault::UnplugAfterInstall);
    assert_eq!(
        call(&mut d, &install_req(&i), 1),
        Err(UsbError::Disconnected)
    );
    assert!(!d.is_plugged());
    assert_eq!(
        call(&mut d, &Request::GetInfo, 2),
        Err(UsbError::Disconnected)
    );
    d.replug();
    // The station's journal says "install sent, no receipt": it asks.
    let q = Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    };
    let Ok(Ok((3, Reply::RecordStatus(RecordStatus::Held(receipt))))) = call(&mut d, &q, 3) else {
        panic!()
    };
    assert!(receipt_is_valid(
        &i,
        &d.config().product_serial.clone(),
        &receipt
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_request_lost_before_install_leaves_the_unit_blank() {
    let mut d = SimDevice::demo(1);
    let i = issue("IMP-1", 1);
    d.set_fault(Fault::UnplugBeforeInstall);
    assert_eq!(
        call(&mut d, &install_req(&i), 1),
        Err(UsbError::Disconnected)
    );
    d.replug();
    let q = Request::QueryRecord {
        apparatus_id: i.id,
        record_digest: i.record.digest(),
    };
    assert_eq!(
        call(&mut d, &q, 2),
        Ok(Ok((2, Reply::RecordStatus(RecordStatus::NotHeld))))
    );
    assert!(matches!(
        call(&mut d, &install_req(&i), 3),
        Ok(Ok((3, Reply::Installed(_))))
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_power_cut_mid_write_reboots_into_a_clean_state() {
    for steps in [0, 100, 256, 300, 10_000] {
        let mut d = SimDevice::demo(1);
        let i = issue("IMP-1", 1);
        d.set_fault(Fault::PowerCutDuringInstall(steps));
        let first = call(&mut d, &install_req(&i), 1);
        d.replug();
        match first {
            Err(UsbError::Disconnected) => {
                assert_eq!(d.state(), DeviceState::Blank, "cut at {steps}")
            }
            Ok(Ok((1, Reply::Installed(_)))) => {
                assert_eq!(d.state(), DeviceState::Provisioned(i.id))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            call(&mut d, &install_req(&i), 2),
            Ok(Ok((2, Reply::Installed(_))))
        ));
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn garbage_and_truncated_replies_are_detected_not_misread() {
    let mut d = SimDevice::demo(1);
    d.set_fault(Fault::GarbageReplies);
    assert!(matches!(
        call(&mut d, &Request::GetInfo, 1),
        Ok(Err(ProtocolError::Frame(FrameError::BadMagic)))
    ));
    d.set_fault(Fault::TruncatedReplies);
    assert!(matches!(
        call(&mut d, &Request::GetInfo, 2),
        Ok(Err(ProtocolError::Frame(FrameError::Incomplete { .. })))
    ));
    d.set_fault(Fault::None);
    assert!(matches!(
        call(&mut d, &Request::GetInfo, 3),
        Ok(Ok((3, Reply::Info(_))))
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn preset_misfits_are_refused_with_their_reason() {
    let i = issue("IMP-1", 1);
    let mut wrong = SimDevice::wrong_model(1);
    assert_eq!(
        call(&mut wrong, &install_req(&i), 1),
        Ok(Ok((1, Reply::Error(ErrorCode::UnknownKey))))
    );
    let mut taken = SimDevice::already_provisioned(2, "OLD-ID", false);
    assert_eq!(
        call(&mut taken, &install_req(&i), 1),
        Ok(Ok((1, Reply::Error(ErrorCode::AlreadyProvisioned))))
    );
    let mut locked = SimDevice::already_provisioned(3, "OLD-ID", true);
    assert_eq!(
        call(&mut locked, &install_req(&i), 1),
        Ok(Ok((1, Reply::Error(ErrorCode::Locked))))
    );
    let Ok(Ok((_, Reply::Info(info)))) = call(&mut locked, &Request::GetInfo, 2) else {
        panic!()
    };
    assert_eq!(
        info.state,
        DeviceState::Locked(ApparatusId::new("OLD-ID").unwrap())
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn several_units_at_once_are_independent_and_uniquely_named() {
    let mut units: Vec<SimDevice> = (1..=5).map(SimDevice::demo).collect();
    let serials: std::collections::BTreeSet<String> =
        units.iter().map(SimDevice::usb_serial).collect();
    assert_eq!(serials.len(), 5);
    for (n, d) in units.iter_mut().enumerate() {
        let i = issue(&format!("IMP-{n}"), n as u8);
        assert!(matches!(
            call(d, &install_req(&i), 1),
            Ok(Ok((1, Reply::Installed(_))))
        ));
    }
    for (n, d) in units.iter().enumerate() {
        assert_eq!(
            d.state(),
            DeviceState::Provisioned(ApparatusId::new(&format!("IMP-{n}")).unwrap())
        );
    }
}

/// The demo keys are public and documented (docs/device.md, "Demo units"), so that a third
/// party can play a demo unit: the documented value is the one the code makes.
#[wasm_bindgen_test(unsupported = test)]
fn the_demo_key_is_the_documented_one() {
    let k1 = imprint_core::KeyId::new(1).unwrap();
    let key = imprint_device::sim::demo_key(k1);
    let text: String = key
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        text,
        "7571267763721fbfc549479d71bf602185dc2414177b86bfee9a6fc7dc617097"
    );
    let docs = include_str!("../../../../docs/device.md");
    assert!(docs.contains("7571267763721fbfc549479d71bf602185dc2414177b86bfee9a6fc7dc617097"));
}
