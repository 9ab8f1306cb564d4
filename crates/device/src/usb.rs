//! The USB face of an Imprint device: descriptors as the bytes firmware sends.
//!
//! Why each piece (details in `docs/usb.md`):
//! - A vendor-specific interface (class 0xFF) with one bulk OUT and one bulk IN endpoint: no
//!   kernel driver claims it, so the browser can (no "another program holds the device").
//! - `bcdUSB` 2.10 and a BOS descriptor with the **WebUSB platform capability**: Chrome shows
//!   the landing page (the portal) when the device is plugged in.
//! - The **Microsoft OS 2.0** platform capability and descriptor set with the **WINUSB**
//!   compatible ID and a DeviceInterfaceGUIDs property: Windows binds WinUSB by itself, so no
//!   driver install and no Zadig.
//! - A unique serial number string (the chip ID in hex): the browser keeps its permission
//!   across replugs, so the technician does not re-pick the device for every unit.
//!
//! For stacks with their own builders (embassy-usb, usb-device, TinyUSB) the constants and the
//! MS OS 2.0 set here are what to feed them; `examples/firmware-stm32` shows embassy-usb.

use alloc::string::String;
use alloc::vec::Vec;

use imprint_core::ChipId;

/// The interface number of the Imprint interface.
pub const INTERFACE: u8 = 0;
/// Bulk OUT endpoint address (host to device).
pub const EP_OUT: u8 = 0x01;
/// Bulk IN endpoint address (device to host).
pub const EP_IN: u8 = 0x81;
/// Max packet size of the bulk endpoints (full speed).
pub const MAX_PACKET: u16 = 64;
/// bRequest for WebUSB requests (GET_URL).
pub const VENDOR_CODE_WEBUSB: u8 = 0x01;
/// bRequest for the Microsoft OS 2.0 descriptor set.
pub const VENDOR_CODE_MSOS: u8 = 0x02;
/// wIndex of the MS OS 2.0 descriptor set request.
pub const MSOS_DESCRIPTOR_INDEX: u16 = 7;
/// wIndex of the WebUSB GET_URL request.
pub const WEBUSB_GET_URL: u16 = 2;
/// The DeviceInterfaceGUID Windows registers for Imprint devices.
pub const INTERFACE_GUID: &str = "{6E4B1D2A-3C5F-4A8E-9B7D-1F2E3A4B5C6D}";
/// Windows 8.1, the first version that reads MS OS 2.0 descriptors.
const WINDOWS_8_1: u32 = 0x0603_0000;

/// WebUSB platform capability UUID {3408b638-09a9-47a0-8bfd-a0768815b665}, in the
/// little-endian GUID byte order descriptors use.
pub const WEBUSB_UUID: [u8; 16] = [
    0x38, 0xB6, 0x08, 0x34, 0xA9, 0x09, 0xA0, 0x47, 0x8B, 0xFD, 0xA0, 0x76, 0x88, 0x15, 0xB6, 0x65,
];
/// Microsoft OS 2.0 platform capability UUID {D8DD60DF-4589-4CC7-9CD2-659D9E648A9F}.
pub const MSOS20_UUID: [u8; 16] = [
    0xDF, 0x60, 0xDD, 0xD8, 0x89, 0x45, 0xC7, 0x4C, 0x9C, 0xD2, 0x65, 0x9D, 0x9E, 0x64, 0x8A, 0x9F,
];

/// Who the device says it is on the bus.
#[derive(Debug, Clone, Copy)]
pub struct UsbIdentity<'a> {
    /// idVendor. The demo uses 0x1209 (pid.codes); a product uses its maker's own.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub device_release: u16,
    /// iManufacturer text.
    pub manufacturer: &'a str,
    /// iProduct text.
    pub product: &'a str,
    /// The landing page Chrome offers on plug-in (the portal), without scheme; `https://`.
    pub landing_page: Option<&'a str>,
}

/// The identity of the simulated and example devices: pid.codes test VID/PID 0x1209/0x0001.
pub const DEMO_IDENTITY: UsbIdentity<'static> = UsbIdentity {
    vendor_id: 0x1209,
    product_id: 0x0001,
    device_release: 0x0100,
    manufacturer: "Imprint",
    product: "Imprint demo device",
    landing_page: Some("localhost:8080/"),
};

/// String descriptor indexes used by the descriptors below.
pub mod string_index {
    /// Manufacturer.
    pub const MANUFACTURER: u8 = 1;
    /// Product.
    pub const PRODUCT: u8 = 2;
    /// Serial number (chip ID in hex).
    pub const SERIAL: u8 = 3;
    /// The interface's name.
    pub const INTERFACE: u8 = 4;
}

/// The interface's name string.
pub const INTERFACE_NAME: &str = "Imprint write module";

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

/// The 18-byte device descriptor.
#[rustfmt::skip]
pub fn device_descriptor(id: &UsbIdentity<'_>) -> [u8; 18] {
    let [v0, v1] = le16(id.vendor_id);
    let [p0, p1] = le16(id.product_id);
    let [d0, d1] = le16(id.device_release);
    [
        18,   // bLength
        0x01, // DEVICE
        0x10, 0x02, // bcdUSB 2.10: the host asks for the BOS descriptor
        0x00, 0x00, 0x00, // class per interface
        64,   // bMaxPacketSize0
        v0, v1, p0, p1, d0, d1,
        string_index::MANUFACTURER,
        string_index::PRODUCT,
        string_index::SERIAL,
        1, // bNumConfigurations
    ]
}

/// The configuration descriptor with its interface and two bulk endpoints (32 bytes).
#[rustfmt::skip]
pub fn configuration_descriptor() -> [u8; 32] {
    let [m0, m1] = le16(MAX_PACKET);
    [
        // Configuration
        9, 0x02, 32, 0, // wTotalLength
        1,    // bNumInterfaces
        1,    // bConfigurationValue
        0,    // iConfiguration
        0x80, // bus powered
        50,   // 100 mA
        // Interface: vendor specific, so no OS class driver claims it
        9, 0x04, INTERFACE, 0, 2, 0xFF, 0x00, 0x00, string_index::INTERFACE,
        // Endpoint OUT, bulk
        7, 0x05, EP_OUT, 0x02, m0, m1, 0,
        // Endpoint IN, bulk
        7, 0x05, EP_IN, 0x02, m0, m1, 0,
    ]
}

/// The BOS descriptor: WebUSB and Microsoft OS 2.0 platform capabilities (57 bytes).
pub fn bos_descriptor(id: &UsbIdentity<'_>) -> [u8; 57] {
    let total = le16(57);
    let msos_len = le16(msos20_descriptor_set().len() as u16);
    let win = WINDOWS_8_1.to_le_bytes();
    let mut out = [0u8; 57];
    let mut w = Writer::new(&mut out);
    w.put(&[5, 0x0F, total[0], total[1], 2]);
    // WebUSB platform capability
    w.put(&[24, 0x10, 0x05, 0x00]);
    w.put(&WEBUSB_UUID);
    w.put(&[
        0x00,
        0x01,
        VENDOR_CODE_WEBUSB,
        u8::from(id.landing_page.is_some()),
    ]);
    // Microsoft OS 2.0 platform capability
    w.put(&[28, 0x10, 0x05, 0x00]);
    w.put(&MSOS20_UUID);
    w.put(&win);
    w.put(&msos_len);
    w.put(&[VENDOR_CODE_MSOS, 0]);
    out
}

/// The Microsoft OS 2.0 descriptor set: header, WINUSB compatible ID, DeviceInterfaceGUIDs.
pub fn msos20_descriptor_set() -> Vec<u8> {
    let name = utf16z("DeviceInterfaceGUIDs");
    let mut data = utf16z(INTERFACE_GUID);
    data.extend_from_slice(&[0, 0]); // REG_MULTI_SZ ends with an empty string
    let prop_len = 10 + name.len() + data.len();
    let total = 10 + 20 + prop_len;
    let mut v = Vec::with_capacity(total);
    // Set header
    v.extend_from_slice(&le16(10));
    v.extend_from_slice(&le16(0x00));
    v.extend_from_slice(&WINDOWS_8_1.to_le_bytes());
    v.extend_from_slice(&le16(total as u16));
    // Compatible ID: WINUSB
    v.extend_from_slice(&le16(20));
    v.extend_from_slice(&le16(0x03));
    v.extend_from_slice(b"WINUSB\0\0");
    v.extend_from_slice(&[0; 8]);
    // Registry property: DeviceInterfaceGUIDs (REG_MULTI_SZ)
    v.extend_from_slice(&le16(prop_len as u16));
    v.extend_from_slice(&le16(0x04));
    v.extend_from_slice(&le16(0x0007));
    v.extend_from_slice(&le16(name.len() as u16));
    v.extend_from_slice(&name);
    v.extend_from_slice(&le16(data.len() as u16));
    v.extend_from_slice(&data);
    v
}

/// The WebUSB URL descriptor for the landing page (https).
pub fn webusb_url_descriptor(url: &str) -> Vec<u8> {
    let bytes = url.as_bytes();
    let len = (3 + bytes.len()).min(255);
    let mut v = Vec::with_capacity(len);
    v.push(len as u8);
    v.push(0x03); // WEBUSB_URL
    v.push(0x01); // https://
    v.extend_from_slice(bytes.get(..len - 3).unwrap_or(bytes));
    v
}

/// A string descriptor (UTF-16LE). Index 0 is the language list (US English).
pub fn string_descriptor(text: &str) -> Vec<u8> {
    let body: Vec<u8> = text
        .encode_utf16()
        .take(126)
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut v = Vec::with_capacity(2 + body.len());
    v.push((2 + body.len()) as u8);
    v.push(0x03);
    v.extend_from_slice(&body);
    v
}

/// The language ID list (string descriptor 0): US English.
pub const LANGUAGES: [u8; 4] = [4, 0x03, 0x09, 0x04];

/// The serial number string: the chip ID in upper-case hex, unique per unit.
pub fn serial_number(chip: &ChipId) -> String {
    alloc::format!("{chip}")
}

/// A control request's SETUP packet fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// bmRequestType.
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
}

/// Answers the vendor control-IN requests a device must handle beyond the standard ones:
/// the MS OS 2.0 descriptor set and the WebUSB landing page. `None` means "not ours": stall.
pub fn vendor_control_in(setup: &Setup, id: &UsbIdentity<'_>) -> Option<Vec<u8>> {
    if setup.request_type != 0xC0 {
        return None;
    }
    match (setup.request, setup.index) {
        (VENDOR_CODE_MSOS, MSOS_DESCRIPTOR_INDEX) => Some(msos20_descriptor_set()),
        (VENDOR_CODE_WEBUSB, WEBUSB_GET_URL) if setup.value == 1 => {
            id.landing_page.map(webusb_url_descriptor)
        }
        _ => None,
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(core::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Fills a fixed array without indexing.
struct Writer<'a> {
    rest: &'a mut [u8],
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Self { rest: out }
    }

    fn put(&mut self, bytes: &[u8]) {
        let rest = core::mem::take(&mut self.rest);
        let n = bytes.len().min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(bytes.get(..n).unwrap_or(&[]));
        self.rest = tail;
    }
}
