//! The write module: the handler a device runs over frames from the station.
//!
//! It holds what the maker builds into every unit (the model's pre-write keys by key
//! identifier, the product code, the unit's serial and chip ID) and what it stores at install
//! (the identity). No request ever returns a pass phrase, a conversion value or a key.

use alloc::vec::Vec;

use imprint_core::frame::{FrameAssembler, FrameError};
use imprint_core::receipt::{AuthResponse, Receipt, ReceiptInput, conversion_value};
use imprint_core::{
    ApparatusId, ChipId, DeviceInfo, DeviceState, ErrorCode, KeyId, PreWriteKey, ProductCode,
    ProductSerial, ProtocolError, RecordStatus, Reply, Request, SealedRecord,
};

use crate::storage::{Flash, Journal, Stored};

/// What the maker builds into the unit.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Firmware version reported in device info.
    pub firmware_version: [u8; 3],
    /// The model.
    pub product_code: ProductCode,
    /// The unit's serial number.
    pub product_serial: ProductSerial,
    /// The chip's unique ID.
    pub chip_id: ChipId,
    /// The model's pre-write keys (at most 8), by key identifier.
    pub keys: Vec<(KeyId, PreWriteKey)>,
}

/// The write module over its flash.
#[derive(Debug)]
pub struct WriteModule<F: Flash> {
    config: DeviceConfig,
    journal: Journal<F>,
    stored: Option<Stored>,
    rx: FrameAssembler,
}

impl<F: Flash> WriteModule<F> {
    /// Boots: reads the newest valid state from flash.
    pub fn boot(config: DeviceConfig, flash: F) -> Self {
        let (journal, stored) = Journal::open(flash);
        Self {
            config,
            journal,
            stored,
            rx: FrameAssembler::new(),
        }
    }

    /// Powers off, giving the flash back (for a simulated reboot).
    pub fn into_flash(self) -> F {
        self.journal.into_flash()
    }

    /// The flash.
    pub fn flash_mut(&mut self) -> &mut F {
        self.journal.flash_mut()
    }

    /// The built-in configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The provisioning state.
    pub fn state(&self) -> DeviceState {
        match &self.stored {
            None => DeviceState::Blank,
            Some(s) if s.locked => DeviceState::Locked(s.apparatus_id),
            Some(s) => DeviceState::Provisioned(s.apparatus_id),
        }
    }

    /// Feeds bytes from the bulk OUT endpoint; returns the reply frames to send on bulk IN.
    /// Damaged frames get an error reply; bytes that are not a frame are skipped.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.rx.push(bytes);
        let mut out = Vec::new();
        // Each request is parsed in place from the receive buffer (no copy of its payload).
        while let Some(item) = self
            .rx
            .next_with(|f| (f.seq, Request::from_parts(f.kind, f.payload)))
        {
            match item {
                Ok((seq, parsed)) => {
                    let reply = match parsed {
                        Ok(req) => self.handle(&req),
                        Err(e) => Reply::Error(error_code(&e)),
                    };
                    out.push(reply.encode(seq));
                }
                Err(e) => {
                    let code = match e.error {
                        FrameError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
                        _ => ErrorCode::BadFrame,
                    };
                    // Garbage without a readable header gets no reply: there is no sequence
                    // number to answer to, and answering noise would make more noise.
                    if let Some(seq) = e.seq {
                        out.push(Reply::Error(code).encode(seq));
                    }
                }
            }
        }
        out
    }

    /// Drops any partial frame (after a USB reset or reconnect).
    pub fn reset_link(&mut self) {
        self.rx.clear();
    }

    /// Handles one decoded request.
    pub fn handle(&mut self, req: &Request) -> Reply {
        match req {
            Request::GetInfo => Reply::Info(self.info()),
            Request::QueryRecord {
                apparatus_id,
                record_digest,
            } => Reply::RecordStatus(match &self.stored {
                None => RecordStatus::NotHeld,
                Some(s) if s.apparatus_id == *apparatus_id && s.record_digest == *record_digest => {
                    RecordStatus::Held(s.receipt)
                }
                Some(_) => RecordStatus::OtherIdentity,
            }),
            Request::Install {
                apparatus_id,
                record,
            } => self.install(apparatus_id, record),
            Request::Challenge(challenge) => match &self.stored {
                None => Reply::Error(ErrorCode::NotProvisioned),
                Some(s) => {
                    let cv = conversion_value(&s.apparatus_id, &s.pass_phrase);
                    Reply::AuthResponse {
                        apparatus_id: s.apparatus_id,
                        response: AuthResponse::compute(&cv, &s.apparatus_id, challenge),
                    }
                }
            },
            Request::Lock { apparatus_id } => self.lock(apparatus_id),
        }
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            firmware_version: self.config.firmware_version,
            product_code: self.config.product_code,
            product_serial: self.config.product_serial,
            chip_id: self.config.chip_id,
            state: self.state(),
            key_ids: self
                .config
                .keys
                .iter()
                .map(|(k, _)| *k)
                .take(imprint_core::proto::MAX_KEY_IDS)
                .collect(),
        }
    }

    fn install(&mut self, apparatus_id: &ApparatusId, record: &SealedRecord) -> Reply {
        let digest = record.digest();
        if let Some(s) = &self.stored {
            if s.locked {
                return Reply::Error(ErrorCode::Locked);
            }
            // A retry of the install whose reply was lost: same answer, nothing changes.
            if s.apparatus_id == *apparatus_id && s.record_digest == digest {
                return Reply::Installed(s.receipt);
            }
            return Reply::Error(ErrorCode::AlreadyProvisioned);
        }
        let Some((_, key)) = self.config.keys.iter().find(|(k, _)| *k == record.key_id()) else {
            return Reply::Error(ErrorCode::UnknownKey);
        };
        let Ok(opened) = record.open(key, apparatus_id, Some(&self.config.chip_id)) else {
            return Reply::Error(ErrorCode::OpenFailed);
        };
        let cv = conversion_value(&opened.apparatus_id, &opened.pass_phrase);
        let receipt = Receipt::compute(
            &cv,
            &ReceiptInput {
                apparatus_id: &opened.apparatus_id,
                product_serial: &self.config.product_serial,
                issue_nonce: &opened.issue_nonce,
                record_digest: &digest,
            },
        );
        let new = Stored {
            apparatus_id: opened.apparatus_id,
            pass_phrase: opened.pass_phrase,
            record_digest: digest,
            receipt,
            locked: false,
        };
        self.commit(new, Reply::Installed(receipt))
    }

    fn lock(&mut self, apparatus_id: &ApparatusId) -> Reply {
        let Some(s) = &self.stored else {
            return Reply::Error(ErrorCode::NotProvisioned);
        };
        if s.apparatus_id != *apparatus_id {
            return Reply::Error(ErrorCode::WrongIdentity);
        }
        if s.locked {
            return Reply::Locked;
        }
        let new = Stored {
            locked: true,
            ..s.clone()
        };
        self.commit(new, Reply::Locked)
    }

    /// Persists first, then changes the state in RAM and answers: a reply is only ever sent
    /// for a state that survives a power cut.
    fn commit(&mut self, new: Stored, reply: Reply) -> Reply {
        match self.journal.write(&new) {
            Ok(()) => {
                self.stored = Some(new);
                reply
            }
            Err(_) => Reply::Error(ErrorCode::StorageFailed),
        }
    }
}

fn error_code(e: &ProtocolError) -> ErrorCode {
    match e {
        ProtocolError::UnknownMessage(_) => ErrorCode::UnknownRequest,
        ProtocolError::Payload(_) => ErrorCode::BadRequest,
        ProtocolError::Frame(FrameError::UnsupportedVersion(_)) => ErrorCode::UnsupportedVersion,
        _ => ErrorCode::BadFrame,
    }
}
