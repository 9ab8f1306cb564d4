//! The USB descriptors parse back into what Chrome and Windows look for.

use imprint_core::ChipId;
use imprint_device::usb::*;
use wasm_bindgen_test::wasm_bindgen_test;

/// Splits a descriptor list into (type, bytes) by bLength, checking every length.
fn walk(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = b[0] as usize;
        assert!(len >= 2 && len <= b.len(), "bad bLength {len}");
        out.push((b[1], b[..len].to_vec()));
        b = &b[len..];
    }
    out
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[wasm_bindgen_test(unsupported = test)]
fn device_and_configuration_descriptors() {
    let d = device_descriptor(&DEMO_IDENTITY);
    assert_eq!((d[0], d[1]), (18, 1));
    assert_eq!(u16le(&d, 2), 0x0210, "bcdUSB 2.1 so hosts ask for the BOS");
    assert_eq!((u16le(&d, 8), u16le(&d, 10)), (0x1209, 0x0001));
    assert_eq!(d[16], string_index::SERIAL);
    let c = configuration_descriptor();
    assert_eq!(u16le(&c, 2) as usize, c.len());
    let parts = walk(&c);
    let types: Vec<u8> = parts.iter().map(|p| p.0).collect();
    assert_eq!(types, vec![2, 4, 5, 5]);
    let iface = &parts[1].1;
    assert_eq!(
        (iface[2], iface[4], iface[5]),
        (INTERFACE, 2, 0xFF),
        "vendor class, two endpoints"
    );
    let eps: Vec<(u8, u8, u16)> = parts[2..]
        .iter()
        .map(|(_, e)| (e[2], e[3], u16le(e, 4)))
        .collect();
    assert_eq!(eps, vec![(EP_OUT, 2, 64), (EP_IN, 2, 64)]);
}

#[wasm_bindgen_test(unsupported = test)]
fn bos_has_webusb_and_ms_os_20_capabilities() {
    let bos = bos_descriptor(&DEMO_IDENTITY);
    assert_eq!(u16le(&bos, 2) as usize, bos.len());
    let parts = walk(&bos);
    assert_eq!(parts[0].0, 0x0F);
    assert_eq!(bos[4], 2);
    let webusb = &parts[1].1;
    assert_eq!((webusb[1], webusb[2]), (0x10, 0x05));
    assert_eq!(&webusb[4..20], &WEBUSB_UUID);
    assert_eq!((webusb[22], webusb[23]), (VENDOR_CODE_WEBUSB, 1));
    let msos = &parts[2].1;
    assert_eq!(&msos[4..20], &MSOS20_UUID);
    assert_eq!(u16le(msos, 24) as usize, msos20_descriptor_set().len());
    assert_eq!(msos[26], VENDOR_CODE_MSOS);
    // The UUIDs in their canonical text form, byte-swapped as GUIDs are.
    assert_eq!(guid(&WEBUSB_UUID), "3408B638-09A9-47A0-8BFD-A0768815B665");
    assert_eq!(guid(&MSOS20_UUID), "D8DD60DF-4589-4CC7-9CD2-659D9E648A9F");
}

fn guid(b: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..]
            .iter()
            .map(|x| format!("{x:02X}"))
            .collect::<String>()
    )
}

#[wasm_bindgen_test(unsupported = test)]
fn ms_os_20_set_binds_winusb_with_an_interface_guid() {
    let set = msos20_descriptor_set();
    assert_eq!((u16le(&set, 0), u16le(&set, 2)), (10, 0));
    assert_eq!(u16le(&set, 8) as usize, set.len());
    let compat = &set[10..30];
    assert_eq!((u16le(compat, 0), u16le(compat, 2)), (20, 3));
    assert_eq!(&compat[4..12], b"WINUSB\0\0");
    let prop = &set[30..];
    assert_eq!(u16le(prop, 0) as usize, prop.len());
    assert_eq!(
        (u16le(prop, 2), u16le(prop, 4)),
        (4, 7),
        "registry property, REG_MULTI_SZ"
    );
    let name_len = u16le(prop, 6) as usize;
    let name: Vec<u16> = prop[8..8 + name_len]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&name).unwrap(), "DeviceInterfaceGUIDs\0");
    let data = &prop[10 + name_len..];
    assert_eq!(u16le(prop, 8 + name_len) as usize, data.len());
    let text: Vec<u16> = data
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(
        String::from_utf16(&text).unwrap(),
        format!("{INTERFACE_GUID}\0\0")
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn vendor_requests_and_strings() {
    let msos = Setup {
        request_type: 0xC0,
        request: VENDOR_CODE_MSOS,
        value: 0,
        index: MSOS_DESCRIPTOR_INDEX,
    };
    assert_eq!(
        vendor_control_in(&msos, &DEMO_IDENTITY),
        Some(msos20_descriptor_set())
    );
    let url = Setup {
        request_type: 0xC0,
        request: VENDOR_CODE_WEBUSB,
        value: 1,
        index: WEBUSB_GET_URL,
    };
    let u = vendor_control_in(&url, &DEMO_IDENTITY).unwrap();
    assert_eq!((u[0] as usize, u[1], u[2]), (u.len(), 3, 1));
    assert_eq!(&u[3..], b"localhost:8080/");
    assert_eq!(
        vendor_control_in(&Setup { request: 9, ..url }, &DEMO_IDENTITY),
        None
    );
    assert_eq!(
        vendor_control_in(
            &Setup {
                request_type: 0x40,
                ..msos
            },
            &DEMO_IDENTITY
        ),
        None
    );
    let s = string_descriptor("Imprint");
    assert_eq!((s[0] as usize, s[1]), (s.len(), 3));
    assert_eq!(LANGUAGES, [4, 3, 0x09, 0x04]);
    let a = serial_number(&ChipId::from_hex("0011AABB").unwrap());
    assert_eq!(a, "0011AABB");
    assert_ne!(a, serial_number(&ChipId::from_hex("0011AABC").unwrap()));
}
