#![no_std]
#![doc = include_str!("../README.md")]

extern crate alloc;

mod codec;
pub mod frame;
pub mod ids;
pub mod lease;
pub mod note;
pub mod proto;
pub mod receipt;
pub mod seal;
pub mod secret;
#[cfg(feature = "serde")]
pub mod serde;
pub mod tables;
pub mod tlog;

pub use codec::{DecodeError, crc32};
pub use frame::{
    Frame, FrameAssembler, FrameError, OwnedFrame, StreamError, decode_frame, encode_frame,
};
pub use ids::{ApparatusId, ChipId, FactoryId, IdError, KeyId, ProductCode, ProductSerial};
pub use lease::{Lease, LeaseError, LeaseRecord};
pub use proto::{DeviceInfo, DeviceState, ErrorCode, ProtocolError, RecordStatus, Reply, Request};
pub use receipt::{AuthResponse, Challenge, MacMismatch, Receipt, ReceiptInput, conversion_value};
pub use seal::{Binding, OpenError, OpenedRecord, SealKey, SealedRecord};
pub use secret::{ConversionValue, PassPhrase, PreWriteKey};
pub use tables::{
    AuthInfo, EntryState, FactoryRecord, InstallDecision, InstallReport, InstalledDevice,
    InstalledUnit, PreWriteKeys, ProductCodes, Quota, TableError, Tables, decide_lock,
};
