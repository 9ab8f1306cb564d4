//! Example firmware: the Imprint write module on an STM32F411CE "Black Pill" with embassy-usb.
//!
//! What a firmware team takes from this (see `docs/usb.md` and `docs/device.md`):
//! - a vendor interface with one bulk OUT and one bulk IN endpoint, carrying protocol frames;
//! - the WebUSB platform capability and landing page, and the Microsoft OS 2.0 descriptors with
//!   the WINUSB compatible ID (Windows binds WinUSB itself: no driver install);
//! - the USB serial number from the chip's unique ID (the browser keeps its permission across
//!   replugs);
//! - the write module's journal on two flash sectors (6 and 7);
//! - where the pre-write keys come from: here a placeholder, in production a protected region
//!   written at manufacture (read-out protection on), never the firmware image.
//!
//! Build: `cargo build --release` in this folder (target thumbv7em-none-eabihf).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;

use embassy_executor::Spawner;
use embassy_stm32::flash::{Blocking, Flash as StmFlash};
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, peripherals, usb};
use embassy_usb::control::{InResponse, Recipient, Request as ControlRequest, RequestType};
use embassy_usb::driver::{Endpoint, EndpointIn, EndpointOut};
use embassy_usb::{Builder, Handler, msos};
use embedded_alloc::LlffHeap as Heap;
use imprint_core::{ChipId, KeyId, PreWriteKey, ProductCode, ProductSerial};
use imprint_device::storage::{Flash, FlashError, Slot};
use imprint_device::usb as desc;
use imprint_device::{DeviceConfig, WriteModule};
use panic_halt as _;

#[global_allocator]
static HEAP: Heap = Heap::empty();

bind_interrupts!(struct Irqs {
    OTG_FS => usb::InterruptHandler<peripherals::USB_OTG_FS>;
});

/// Flash sectors 6 and 7 of the STM32F411CE (128 KiB each), offsets from the flash base.
const SLOT_A: u32 = 0x0004_0000;
const SLOT_B: u32 = 0x0006_0000;
const SECTOR: usize = 128 * 1024;

/// The write module's two pages on the MCU's flash.
struct SectorFlash<'d>(StmFlash<'d, Blocking>);

impl SectorFlash<'_> {
    fn base(slot: Slot) -> u32 {
        match slot {
            Slot::A => SLOT_A,
            Slot::B => SLOT_B,
        }
    }
}

impl Flash for SectorFlash<'_> {
    fn page_size(&self) -> usize {
        SECTOR
    }

    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), FlashError> {
        self.0
            .blocking_read(Self::base(slot) + offset as u32, buf)
            .map_err(|_| FlashError::Failed)
    }

    fn erase(&mut self, slot: Slot) -> Result<(), FlashError> {
        let from = Self::base(slot);
        self.0
            .blocking_erase(from, from + SECTOR as u32)
            .map_err(|_| FlashError::Failed)
    }

    fn program(&mut self, slot: Slot, offset: usize, data: &[u8]) -> Result<(), FlashError> {
        self.0
            .blocking_write(Self::base(slot) + offset as u32, data)
            .map_err(|_| FlashError::Failed)
    }
}

/// Answers WebUSB's GET_URL with the landing page, from the same descriptor code the
/// simulated device and the tests use.
struct WebUsbLanding;

impl Handler for WebUsbLanding {
    fn control_in<'a>(&'a mut self, req: ControlRequest, buf: &'a mut [u8]) -> Option<InResponse<'a>> {
        if req.request_type != RequestType::Vendor || req.recipient != Recipient::Device {
            return None;
        }
        let setup = desc::Setup {
            request_type: 0xC0,
            request: req.request,
            value: req.value,
            index: req.index,
        };
        // MS OS 2.0 is answered by embassy-usb itself (msos_descriptor below).
        if req.request != desc::VENDOR_CODE_WEBUSB {
            return None;
        }
        let url = desc::vendor_control_in(&setup, &desc::DEMO_IDENTITY)?;
        let n = url.len().min(buf.len());
        buf.get_mut(..n)?.copy_from_slice(url.get(..n)?);
        Some(InResponse::Accepted(buf.get(..n)?))
    }
}

/// The chip's 96-bit unique ID (STM32F4: 0x1FFF_7A10).
fn chip_id() -> ChipId {
    let uid = embassy_stm32::uid::uid();
    ChipId::from_bytes(uid).unwrap_or_else(|_| loop {})
}

/// The pre-write keys of this model. A placeholder: production firmware reads them from a
/// region programmed at manufacture and locked by read-out protection (docs/device.md).
fn model_keys() -> vec::Vec<(KeyId, PreWriteKey)> {
    match KeyId::new(1) {
        Ok(k) => vec![(k, PreWriteKey::from_array([0; 32]))],
        Err(_) => vec![],
    }
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    {
        use core::mem::MaybeUninit;
        const HEAP_SIZE: usize = 16 * 1024;
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before any allocation, with memory used for nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP_SIZE) }
    }

    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        // Black Pill: 25 MHz crystal; 96 MHz system clock and the 48 MHz USB clock.
        config.rcc.hse = Some(Hse {
            freq: Hertz(25_000_000),
            mode: HseMode::Oscillator,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV25,
            mul: PllMul::MUL192,
            divp: Some(PllPDiv::DIV2),
            divq: Some(PllQDiv::DIV4),
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV2;
        config.rcc.apb2_pre = APBPrescaler::DIV1;
        config.rcc.sys = Sysclk::PLL1_P;
    }
    let p = embassy_stm32::init(config);

    let chip = chip_id();
    let serial: &'static str = Box::leak(desc::serial_number(&chip).into_boxed_str());
    let device = DeviceConfig {
        firmware_version: [1, 0, 0],
        product_code: ProductCode::new("CAM-X100").unwrap_or_else(|_| loop {}),
        product_serial: ProductSerial::new(&format!("SN-{serial}")).unwrap_or_else(|_| loop {}),
        chip_id: chip,
        keys: model_keys(),
    };
    let mut module = WriteModule::boot(device, SectorFlash(StmFlash::new_blocking(p.FLASH)));

    let mut ep_out_buffer = [0u8; 256];
    let mut usb_config = usb::Config::default();
    usb_config.vbus_detection = false;
    let driver = usb::Driver::new_fs(p.USB_OTG_FS, Irqs, p.PA12, p.PA11, &mut ep_out_buffer, usb_config);

    let id = desc::DEMO_IDENTITY;
    let mut config = embassy_usb::Config::new(id.vendor_id, id.product_id);
    config.manufacturer = Some(id.manufacturer);
    config.product = Some(id.product);
    config.serial_number = Some(serial);
    config.max_power = 100;
    config.max_packet_size_0 = 64;
    config.bcd_usb = embassy_usb::UsbVersion::TwoOne;

    let mut config_descriptor = [0; 256];
    let mut bos_descriptor = [0; 256];
    let mut msos_descriptor = [0; 256];
    let mut control_buf = [0; 128];
    let mut landing = WebUsbLanding;
    let mut builder = Builder::new(
        driver,
        config,
        &mut config_descriptor,
        &mut bos_descriptor,
        &mut msos_descriptor,
        &mut control_buf,
    );
    builder.msos_descriptor(msos::windows_version::WIN8_1, desc::VENDOR_CODE_MSOS);
    builder.msos_feature(msos::CompatibleIdFeatureDescriptor::new("WINUSB", ""));
    builder.msos_feature(msos::RegistryPropertyFeatureDescriptor::new(
        "DeviceInterfaceGUIDs",
        msos::PropertyData::RegMultiSz(&[desc::INTERFACE_GUID]),
    ));
    builder.handler(&mut landing);

    let mut function = builder.function(0xFF, 0, 0);
    let mut interface = function.interface();
    let mut alt = interface.alt_setting(0xFF, 0, 0, None);
    // WebUSB platform capability: bReserved, UUID, bcdVersion 1.0, vendor code, landing page 1.
    let mut webusb = [0u8; 21];
    webusb[1..17].copy_from_slice(&desc::WEBUSB_UUID);
    webusb[17..].copy_from_slice(&[0x00, 0x01, desc::VENDOR_CODE_WEBUSB, 1]);
    alt.bos_capability(0x05, &webusb);
    let mut ep_out = alt.endpoint_bulk_out(None, desc::MAX_PACKET);
    let mut ep_in = alt.endpoint_bulk_in(None, desc::MAX_PACKET);
    drop(function);

    let mut usb = builder.build();
    let serve = async {
        loop {
            ep_out.wait_enabled().await;
            module.reset_link();
            let mut packet = [0u8; 64];
            while let Ok(n) = ep_out.read(&mut packet).await {
                for reply in module.receive(packet.get(..n).unwrap_or(&[])) {
                    for chunk in reply.chunks(usize::from(desc::MAX_PACKET)) {
                        if ep_in.write(chunk).await.is_err() {
                            break;
                        }
                    }
                    // A reply that is a whole number of packets ends with a zero-length one.
                    if reply.len() % usize::from(desc::MAX_PACKET) == 0 {
                        let _ = ep_in.write(&[]).await;
                    }
                }
            }
        }
    };
    embassy_futures::join::join(usb.run(), serve).await;
}
