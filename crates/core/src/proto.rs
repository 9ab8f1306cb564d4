//! Requests and replies of the device wire protocol, carried in frames ([`crate::frame`]).
//!
//! The station sends one request and waits for one reply with the same sequence number. All
//! multi-byte integers are big-endian; a "short" field is one length byte then that many bytes.
//! Payload layouts are in `docs/protocol.md`; this module is their one implementation.

use alloc::vec::Vec;
use core::fmt;

use crate::codec::{DecodeError, Reader, put_short};
use crate::frame::{FrameError, decode_frame, encode_frame, encode_frame_with};
use crate::ids::{ApparatusId, ChipId, KeyId, ProductCode, ProductSerial};
use crate::receipt::{AuthResponse, Challenge, MAC_LEN, Receipt};
use crate::seal::SealedRecord;

/// Message type codes. A reply's code is its request's code with the top bit set.
pub mod kind {
    /// Request: describe yourself.
    pub const GET_INFO: u8 = 0x01;
    /// Request: do you already hold record X?
    pub const QUERY_RECORD: u8 = 0x02;
    /// Request: install this sealed record.
    pub const INSTALL: u8 = 0x03;
    /// Request: answer this challenge with your installed secret.
    pub const CHALLENGE: u8 = 0x04;
    /// Request: make the installed identity permanent.
    pub const LOCK: u8 = 0x05;
    /// Reply to [`GET_INFO`].
    pub const INFO: u8 = 0x81;
    /// Reply to [`QUERY_RECORD`].
    pub const RECORD_STATUS: u8 = 0x82;
    /// Reply to [`INSTALL`].
    pub const INSTALLED: u8 = 0x83;
    /// Reply to [`CHALLENGE`].
    pub const AUTH_RESPONSE: u8 = 0x84;
    /// Reply to [`LOCK`].
    pub const LOCKED: u8 = 0x85;
    /// Reply to any request that failed.
    pub const ERROR: u8 = 0xFF;
}

/// The most key identifiers a device reports.
pub const MAX_KEY_IDS: usize = 8;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes are not a valid frame.
    Frame(FrameError),
    /// A valid frame of a message type this side does not know (or a reply where a request
    /// was expected, and the other way round).
    UnknownMessage(u8),
    /// The frame's payload does not fit its message type.
    Payload(DecodeError),
    /// A whole frame was followed by more bytes.
    TrailingBytes(usize),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(e) => write!(f, "{e}"),
            ProtocolError::UnknownMessage(k) => write!(f, "unknown message type {k:#04x}"),
            ProtocolError::Payload(e) => write!(f, "malformed message: {e}"),
            ProtocolError::TrailingBytes(n) => write!(f, "{n} unexpected byte(s) after the frame"),
        }
    }
}

impl core::error::Error for ProtocolError {}

impl From<FrameError> for ProtocolError {
    fn from(e: FrameError) -> Self {
        ProtocolError::Frame(e)
    }
}

impl From<DecodeError> for ProtocolError {
    fn from(e: DecodeError) -> Self {
        ProtocolError::Payload(e)
    }
}

/// What the station asks the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Describe yourself: model, keys, serial, chip, state. Empty payload.
    GetInfo,
    /// "Do you already hold record X?" Payload: short apparatus ID, record digest (32).
    QueryRecord {
        /// The record's apparatus ID.
        apparatus_id: ApparatusId,
        /// SHA-256 of the sealed record.
        record_digest: [u8; 32],
    },
    /// Install a sealed record. Payload: short apparatus ID, short sealed record.
    Install {
        /// The apparatus ID in clear (table 708).
        apparatus_id: ApparatusId,
        /// The sealed record.
        record: SealedRecord,
    },
    /// Prove the installed identity. Payload: challenge (32).
    Challenge(Challenge),
    /// Make the identity permanent. Payload: short apparatus ID (must be the installed one).
    Lock {
        /// The identity the station expects to lock.
        apparatus_id: ApparatusId,
    },
}

/// The provisioning state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// No identity stored.
    Blank,
    /// An identity is stored; it can still be answered for but not replaced.
    Provisioned(ApparatusId),
    /// An identity is stored and locked for good.
    Locked(ApparatusId),
}

impl DeviceState {
    /// The stored identity, if any.
    pub fn apparatus_id(&self) -> Option<&ApparatusId> {
        match self {
            DeviceState::Blank => None,
            DeviceState::Provisioned(id) | DeviceState::Locked(id) => Some(id),
        }
    }
}

/// The device's answer to [`Request::GetInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Firmware version (major, minor, patch).
    pub firmware_version: [u8; 3],
    /// The model.
    pub product_code: ProductCode,
    /// The unit's serial number.
    pub product_serial: ProductSerial,
    /// The chip's unique ID.
    pub chip_id: ChipId,
    /// Provisioning state.
    pub state: DeviceState,
    /// Key identifiers of the pre-write keys the write module holds (at most 8).
    pub key_ids: Vec<KeyId>,
}

/// Whether a device holds a given record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// The device holds no identity: the record can be installed.
    NotHeld,
    /// The device holds exactly this record; here is its receipt again.
    Held(Receipt),
    /// The device holds another identity.
    OtherIdentity,
}

/// Error codes a device returns. Each has a message and a fix for the technician.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 0x01: the request frame was damaged.
    BadFrame,
    /// 0x02: the device speaks another protocol version.
    UnsupportedVersion,
    /// 0x03: the device does not know this request.
    UnknownRequest,
    /// 0x04: the request's payload is malformed.
    BadRequest,
    /// 0x05: the device holds no pre-write key with the record's key identifier.
    UnknownKey,
    /// 0x06: the record did not open (wrong key, wrong ID, altered or foreign record).
    OpenFailed,
    /// 0x07: the device already holds another identity.
    AlreadyProvisioned,
    /// 0x08: the device is locked.
    Locked,
    /// 0x09: the device holds no identity yet.
    NotProvisioned,
    /// 0x0A: a lock request named another apparatus ID than the installed one.
    WrongIdentity,
    /// 0x0B: the device's storage failed to write.
    StorageFailed,
    /// Any other code, from newer firmware.
    Other(u8),
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::BadFrame => 0x01,
            ErrorCode::UnsupportedVersion => 0x02,
            ErrorCode::UnknownRequest => 0x03,
            ErrorCode::BadRequest => 0x04,
            ErrorCode::UnknownKey => 0x05,
            ErrorCode::OpenFailed => 0x06,
            ErrorCode::AlreadyProvisioned => 0x07,
            ErrorCode::Locked => 0x08,
            ErrorCode::NotProvisioned => 0x09,
            ErrorCode::WrongIdentity => 0x0A,
            ErrorCode::StorageFailed => 0x0B,
            ErrorCode::Other(c) => c,
        }
    }

    /// From the wire value; unknown values are kept as [`ErrorCode::Other`].
    pub fn from_code(c: u8) -> ErrorCode {
        match c {
            0x01 => ErrorCode::BadFrame,
            0x02 => ErrorCode::UnsupportedVersion,
            0x03 => ErrorCode::UnknownRequest,
            0x04 => ErrorCode::BadRequest,
            0x05 => ErrorCode::UnknownKey,
            0x06 => ErrorCode::OpenFailed,
            0x07 => ErrorCode::AlreadyProvisioned,
            0x08 => ErrorCode::Locked,
            0x09 => ErrorCode::NotProvisioned,
            0x0A => ErrorCode::WrongIdentity,
            0x0B => ErrorCode::StorageFailed,
            c => ErrorCode::Other(c),
        }
    }

    /// What went wrong, for a person.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "the device received a damaged request",
            ErrorCode::UnsupportedVersion => "the device speaks another protocol version",
            ErrorCode::UnknownRequest => "the device does not know this request",
            ErrorCode::BadRequest => "the device could not read the request",
            ErrorCode::UnknownKey => "the device holds no key for this record",
            ErrorCode::OpenFailed => "the device could not open the record",
            ErrorCode::AlreadyProvisioned => "the device already holds another identity",
            ErrorCode::Locked => "the device is locked",
            ErrorCode::NotProvisioned => "the device holds no identity yet",
            ErrorCode::WrongIdentity => "the device holds a different identity",
            ErrorCode::StorageFailed => "the device could not write its storage",
            ErrorCode::Other(_) => "the device reported an error this software does not know",
        }
    }

    /// What the technician should do.
    pub fn fix(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "check the cable and try again",
            ErrorCode::UnsupportedVersion | ErrorCode::UnknownRequest | ErrorCode::Other(_) => {
                "update the station software or the device firmware"
            }
            ErrorCode::BadRequest => "report this to the operator with the log",
            ErrorCode::UnknownKey => {
                "this unit is of another model or key generation: set it aside and check the product code"
            }
            ErrorCode::OpenFailed => {
                "the record was not made for this model or was altered: set the unit aside and tell the operator"
            }
            ErrorCode::AlreadyProvisioned | ErrorCode::Locked => {
                "this unit is already provisioned: set it aside; do not reuse its record"
            }
            ErrorCode::NotProvisioned => "install a record first",
            ErrorCode::WrongIdentity => "refresh the station and check the unit's state",
            ErrorCode::StorageFailed => "the unit may be faulty: retry once, then set it aside",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:#04x}): {}",
            self.message(),
            self.code(),
            self.fix()
        )
    }
}

/// What the device answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer to [`Request::GetInfo`].
    Info(DeviceInfo),
    /// Answer to [`Request::QueryRecord`]. Payload: status u8 (0 not held, 1 held, 2 other
    /// identity), then the receipt (32) if held.
    RecordStatus(RecordStatus),
    /// Answer to [`Request::Install`]. Payload: receipt (32).
    Installed(Receipt),
    /// Answer to [`Request::Challenge`]. Payload: short apparatus ID, response (32).
    AuthResponse {
        /// The identity answering.
        apparatus_id: ApparatusId,
        /// The MAC over the challenge.
        response: AuthResponse,
    },
    /// Answer to [`Request::Lock`]. Empty payload.
    Locked,
    /// A failed request. Payload: error code u8.
    Error(ErrorCode),
}

fn single_frame(bytes: &[u8]) -> Result<crate::frame::Frame<'_>, ProtocolError> {
    let (frame, used) = decode_frame(bytes)?;
    match bytes.len().saturating_sub(used) {
        0 => Ok(frame),
        n => Err(ProtocolError::TrailingBytes(n)),
    }
}

fn frame(kind: u8, seq: u8, payload: &[u8]) -> Vec<u8> {
    // Every payload built here is far below the 512-byte limit (largest: an install request
    // of 1 + 32 + 1 + 148 bytes), so encoding cannot fail. An empty frame in its place would
    // be sent as if it were the message, so a failure is a panic that names the invariant.
    #[allow(clippy::expect_used)]
    encode_frame(kind, seq, payload).expect("every message built here is under 512 bytes")
}

impl Request {
    /// The message type code.
    pub fn kind(&self) -> u8 {
        match self {
            Request::GetInfo => kind::GET_INFO,
            Request::QueryRecord { .. } => kind::QUERY_RECORD,
            Request::Install { .. } => kind::INSTALL,
            Request::Challenge(_) => kind::CHALLENGE,
            Request::Lock { .. } => kind::LOCK,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        // The largest payload but GetInfo's (a short apparatus ID and a MAC), allocated once.
        let mut p = Vec::with_capacity(1 + ApparatusId::MAX_LEN + MAC_LEN);
        match self {
            Request::GetInfo => {}
            Request::QueryRecord {
                apparatus_id,
                record_digest,
            } => {
                put_short(&mut p, apparatus_id.as_bytes());
                p.extend_from_slice(record_digest);
            }
            Request::Install {
                apparatus_id,
                record,
            } => {
                put_short(&mut p, apparatus_id.as_bytes());
                put_short(&mut p, record.as_bytes());
            }
            Request::Challenge(c) => p.extend_from_slice(&c.0),
            Request::Lock { apparatus_id } => put_short(&mut p, apparatus_id.as_bytes()),
        }
        p
    }

    /// The whole frame.
    pub fn encode(&self, seq: u8) -> Vec<u8> {
        frame(self.kind(), seq, &self.payload())
    }

    /// Decodes a request from a frame's type and payload.
    pub fn from_parts(kind: u8, payload: &[u8]) -> Result<Request, ProtocolError> {
        let mut r = Reader::new(payload);
        let req = match kind {
            kind::GET_INFO => Request::GetInfo,
            kind::QUERY_RECORD => Request::QueryRecord {
                apparatus_id: ApparatusId::from_bytes(r.short("apparatus ID")?)
                    .map_err(DecodeError::from)?,
                record_digest: r.array("record digest")?,
            },
            kind::INSTALL => Request::Install {
                apparatus_id: ApparatusId::from_bytes(r.short("apparatus ID")?)
                    .map_err(DecodeError::from)?,
                record: SealedRecord::parse(r.short("sealed record")?)?,
            },
            kind::CHALLENGE => Request::Challenge(Challenge(r.array("challenge")?)),
            kind::LOCK => Request::Lock {
                apparatus_id: ApparatusId::from_bytes(r.short("apparatus ID")?)
                    .map_err(DecodeError::from)?,
            },
            other => return Err(ProtocolError::UnknownMessage(other)),
        };
        r.finish()?;
        Ok(req)
    }

    /// Decodes exactly one request frame; returns its sequence number and the request.
    pub fn decode(bytes: &[u8]) -> Result<(u8, Request), ProtocolError> {
        let f = single_frame(bytes)?;
        Ok((f.seq, Request::from_parts(f.kind, f.payload)?))
    }
}

impl DeviceInfo {
    /// The longest info payload: version, firmware version, three short fields, state and a
    /// short apparatus ID, the key count and the key identifiers.
    const MAX_LEN: usize = 1
        + 3
        + (1 + ProductCode::MAX_LEN)
        + (1 + ProductSerial::MAX_LEN)
        + (1 + ChipId::MAX_LEN)
        + (1 + 1 + ApparatusId::MAX_LEN)
        + 1
        + 4 * MAX_KEY_IDS;

    /// Encodes the info payload.
    pub fn encode(&self) -> Vec<u8> {
        // One allocation of the largest size rather than a doubling per field.
        let mut p = Vec::with_capacity(Self::MAX_LEN);
        self.write(&mut p);
        p
    }

    /// Appends the info payload to `p`.
    fn write(&self, p: &mut Vec<u8>) {
        p.push(crate::frame::PROTOCOL_VERSION);
        p.extend_from_slice(&self.firmware_version);
        put_short(p, self.product_code.as_bytes());
        put_short(p, self.product_serial.as_bytes());
        put_short(p, self.chip_id.as_bytes());
        match &self.state {
            DeviceState::Blank => p.push(0),
            DeviceState::Provisioned(id) => {
                p.push(1);
                put_short(p, id.as_bytes());
            }
            DeviceState::Locked(id) => {
                p.push(2);
                put_short(p, id.as_bytes());
            }
        }
        let n = self.key_ids.len().min(MAX_KEY_IDS);
        p.push(n as u8);
        for k in self.key_ids.iter().take(n) {
            p.extend_from_slice(&k.to_be_bytes());
        }
    }

    /// Decodes the info payload. Total.
    pub fn decode(payload: &[u8]) -> Result<DeviceInfo, DecodeError> {
        let mut r = Reader::new(payload);
        let version = r.u8("protocol version")?;
        if version != crate::frame::PROTOCOL_VERSION {
            return Err(DecodeError::Unknown {
                what: "protocol version",
                value: u32::from(version),
            });
        }
        let firmware_version = r.array("firmware version")?;
        let product_code = ProductCode::from_bytes(r.short("product code")?)?;
        let product_serial = ProductSerial::from_bytes(r.short("product serial")?)?;
        let chip_id = ChipId::from_bytes(r.short("chip ID")?)?;
        let state = match r.u8("device state")? {
            0 => DeviceState::Blank,
            1 => DeviceState::Provisioned(ApparatusId::from_bytes(r.short("apparatus ID")?)?),
            2 => DeviceState::Locked(ApparatusId::from_bytes(r.short("apparatus ID")?)?),
            s => {
                return Err(DecodeError::Unknown {
                    what: "device state",
                    value: u32::from(s),
                });
            }
        };
        let count = usize::from(r.u8("key identifier count")?);
        if count > MAX_KEY_IDS {
            return Err(DecodeError::TooMany {
                what: "key identifiers",
                count,
                max: MAX_KEY_IDS,
            });
        }
        let mut key_ids = Vec::with_capacity(count);
        for _ in 0..count {
            key_ids.push(KeyId::new(r.u32("key identifier")?)?);
        }
        r.finish()?;
        Ok(DeviceInfo {
            firmware_version,
            product_code,
            product_serial,
            chip_id,
            state,
            key_ids,
        })
    }
}

impl Reply {
    /// The message type code.
    pub fn kind(&self) -> u8 {
        match self {
            Reply::Info(_) => kind::INFO,
            Reply::RecordStatus(_) => kind::RECORD_STATUS,
            Reply::Installed(_) => kind::INSTALLED,
            Reply::AuthResponse { .. } => kind::AUTH_RESPONSE,
            Reply::Locked => kind::LOCKED,
            Reply::Error(_) => kind::ERROR,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.max_payload());
        self.write_payload(&mut p);
        p
    }

    /// The longest payload of this reply's type: what one allocation holds.
    fn max_payload(&self) -> usize {
        match self {
            Reply::Info(_) => DeviceInfo::MAX_LEN,
            Reply::Locked => 0,
            // The largest of the others: a short apparatus ID and a MAC.
            _ => 1 + ApparatusId::MAX_LEN + MAC_LEN,
        }
    }

    fn write_payload(&self, p: &mut Vec<u8>) {
        match self {
            Reply::Info(info) => info.write(p),
            Reply::RecordStatus(RecordStatus::NotHeld) => p.push(0),
            Reply::RecordStatus(RecordStatus::Held(r)) => {
                p.push(1);
                p.extend_from_slice(&r.0);
            }
            Reply::RecordStatus(RecordStatus::OtherIdentity) => p.push(2),
            Reply::Installed(r) => p.extend_from_slice(&r.0),
            Reply::AuthResponse {
                apparatus_id,
                response,
            } => {
                put_short(p, apparatus_id.as_bytes());
                p.extend_from_slice(&response.0);
            }
            Reply::Locked => {}
            Reply::Error(code) => p.push(code.code()),
        }
    }

    /// The whole frame, in one allocation (a write module sends one per request).
    pub fn encode(&self, seq: u8) -> Vec<u8> {
        // As in `frame`: every reply is far below the 512-byte limit.
        #[allow(clippy::expect_used)]
        encode_frame_with(self.kind(), seq, self.max_payload(), |p| {
            self.write_payload(p)
        })
        .expect("every reply is under 512 bytes")
    }

    /// Decodes a reply from a frame's type and payload.
    pub fn from_parts(kind: u8, payload: &[u8]) -> Result<Reply, ProtocolError> {
        if kind == kind::INFO {
            return Ok(Reply::Info(DeviceInfo::decode(payload)?));
        }
        let mut r = Reader::new(payload);
        let reply = match kind {
            kind::RECORD_STATUS => match r.u8("record status")? {
                0 => Reply::RecordStatus(RecordStatus::NotHeld),
                1 => Reply::RecordStatus(RecordStatus::Held(Receipt(r.array("receipt")?))),
                2 => Reply::RecordStatus(RecordStatus::OtherIdentity),
                s => {
                    return Err(DecodeError::Unknown {
                        what: "record status",
                        value: u32::from(s),
                    }
                    .into());
                }
            },
            kind::INSTALLED => Reply::Installed(Receipt(r.array::<MAC_LEN>("receipt")?)),
            kind::AUTH_RESPONSE => Reply::AuthResponse {
                apparatus_id: ApparatusId::from_bytes(r.short("apparatus ID")?)
                    .map_err(DecodeError::from)?,
                response: AuthResponse(r.array("response")?),
            },
            kind::LOCKED => Reply::Locked,
            kind::ERROR => Reply::Error(ErrorCode::from_code(r.u8("error code")?)),
            other => return Err(ProtocolError::UnknownMessage(other)),
        };
        r.finish()?;
        Ok(reply)
    }

    /// Decodes exactly one reply frame; returns its sequence number and the reply.
    pub fn decode(bytes: &[u8]) -> Result<(u8, Reply), ProtocolError> {
        let f = single_frame(bytes)?;
        Ok((f.seq, Reply::from_parts(f.kind, f.payload)?))
    }
}
