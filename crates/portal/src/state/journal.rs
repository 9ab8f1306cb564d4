//! The station's journal: every record the station holds, and how far each got.
//!
//! Why a journal: a technician pulls a cable, the tab reloads, the PC crashes. The journal is
//! written *before* each step that cannot be undone (sending an install), so after any of
//! these the station knows which unit may hold which record and asks the unit and the server
//! before doing anything else. A record whose install was sent is never given to another unit
//! until its own unit has been asked: that is what makes writes exactly-once.

use imprint_api::ErrorCode;
use imprint_core::{
    ApparatusId, ChipId, FactoryId, KeyId, ProductCode, ProductSerial, Receipt, SealedRecord,
};
use serde::{Deserialize, Serialize};

/// A table-708 record as the station keeps it: the server's [`imprint_api::Record`], typed
/// (a sealed record that does not parse never gets into the journal), plus a lease's deadline.
/// Stored as the server sends it (hex for the sealed bytes), pinned by
/// `tests/vectors/journal.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The identity, in clear.
    pub apparatus_id: ApparatusId,
    /// The key identifier it is sealed under.
    pub key_id: KeyId,
    /// The sealed record.
    pub sealed: SealedRecord,
    /// The product code it was issued for.
    pub product_code: ProductCode,
    /// For records of an offline lease: no install after this instant (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after_ms: Option<u64>,
    /// For a chip-bound record: the chip it was fetched for, the only unit it opens in. Such a
    /// record is never offered to another unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<ChipId>,
}

impl Record {
    /// Whether the record may go only to one chip: fetched for one, or sealed chip-bound (a
    /// chip-bound record whose chip the station does not know goes to no unit at all).
    pub fn is_for_one_chip(&self) -> bool {
        self.chip.is_some() || self.sealed.is_chip_bound()
    }
}

impl From<imprint_api::Record> for Record {
    fn from(r: imprint_api::Record) -> Record {
        Record {
            apparatus_id: r.apparatus_id,
            key_id: r.key_id,
            sealed: r.sealed,
            product_code: r.product_code,
            not_after_ms: None,
            chip: None,
        }
    }
}

/// How far a record got.
///
/// Stored externally tagged (`"pool"`, `{"install_sent": {"unit": ...}}`): an internally
/// tagged or flattened form makes serde buffer every entry, which cost the page 16 KB of code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Fetched, not yet given to a unit.
    Pool,
    /// Given to a unit; the install request is about to be sent. Outcome unknown from here on
    /// until the unit answers or is asked.
    InstallSent {
        /// The unit's USB serial number (chip ID).
        unit: String,
    },
    /// The unit stored it and answered with a receipt.
    Installed {
        /// The unit.
        unit: String,
        /// The unit's product serial.
        product_serial: ProductSerial,
        /// The receipt.
        receipt: Receipt,
    },
    /// The server recorded the installation.
    Reported {
        /// The unit.
        unit: String,
        /// The unit's product serial.
        product_serial: ProductSerial,
        /// The receipt.
        receipt: Receipt,
    },
    /// The server refused the report for good (a bad receipt, a record of another factory, a
    /// unit or identity already on record): final. The unit holds the identity, the server
    /// will never accept it from this station, so it is neither retried nor counted as
    /// pending; the receipt is kept for the operator.
    Refused {
        /// The unit.
        unit: String,
        /// The unit's product serial.
        product_serial: ProductSerial,
        /// The receipt the server refused.
        receipt: Receipt,
        /// What the server refused with.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The unit answered a fresh server challenge with its new secret: done, unless its
    /// product locks its units (then the lock is next).
    Verified {
        /// The unit.
        unit: String,
        /// The unit's product serial.
        product_serial: ProductSerial,
    },
    /// The unit answered `Locked`: its identity is permanent. `recorded` once the server took
    /// the station's word for it (`POST /locked`); until then the station owes it, as it owes
    /// an unreported installation.
    Locked {
        /// The unit.
        unit: String,
        /// The unit's product serial.
        product_serial: ProductSerial,
        /// Whether the server recorded the lock.
        recorded: bool,
    },
}

impl Step {
    /// The unit this record is bound to, if any.
    pub fn unit(&self) -> Option<&str> {
        match self {
            Step::Pool => None,
            Step::InstallSent { unit }
            | Step::Installed { unit, .. }
            | Step::Reported { unit, .. }
            | Step::Refused { unit, .. }
            | Step::Verified { unit, .. }
            | Step::Locked { unit, .. } => Some(unit),
        }
    }

    /// Whether the unit is finished with: checked (and locked, where it was), or its report
    /// refused for good. A verified unit whose product locks units still has its lock due;
    /// the flow decides that, from the product's setting.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            Step::Verified { .. } | Step::Refused { .. } | Step::Locked { .. }
        )
    }

    /// The unit's product serial, once it is installed.
    pub fn product_serial(&self) -> Option<ProductSerial> {
        match self {
            Step::Pool | Step::InstallSent { .. } => None,
            Step::Installed { product_serial, .. }
            | Step::Reported { product_serial, .. }
            | Step::Refused { product_serial, .. }
            | Step::Verified { product_serial, .. }
            | Step::Locked { product_serial, .. } => Some(*product_serial),
        }
    }
}

/// One record and its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The record.
    pub record: Record,
    /// How far it got.
    pub step: Step,
    /// Install attempts so far.
    pub attempts: u32,
}

/// Why a journal change was refused: each is a bug in the caller, reported rather than
/// silently applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalError {
    /// No such record in the journal.
    Unknown(ApparatusId),
    /// The record is not at the step the change starts from.
    WrongStep {
        /// The record.
        apparatus_id: ApparatusId,
        /// What the change expected.
        expected: &'static str,
    },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Unknown(id) => write!(f, "record {id} is not in this station's journal"),
            JournalError::WrongStep {
                apparatus_id,
                expected,
            } => {
                write!(f, "record {apparatus_id} is not at step '{expected}'")
            }
        }
    }
}

impl std::error::Error for JournalError {}

/// How many finished (verified) entries the journal keeps, the most recent ones: enough to
/// recognise a finished unit plugged in again while it is still on the bench, while the
/// journal, saved before every step, stays small over a shift (saving 300 entries took 4 ms in
/// Chromium, four times per unit; see docs/benchmarks.md). Older ones are on the server, which
/// is the record of what was installed; a unit plugged in again after that is reported as
/// already provisioned.
pub const KEEP_VERIFIED: usize = 20;

/// The journal of one factory at one station.
///
/// Why per factory: the server issues records to a factory and accepts a report of one only
/// from a technician of that factory. On a PC shared by two factories, a record of one written
/// into a unit by the other is refused forever, and the unit holds an identity that is never
/// accepted. So each factory has its own journal (stored under a key of its own); technicians
/// of one factory share it, so that a shift carries on where the last one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The factory whose records these are. `None` only in a journal stored before journals
    /// were kept per factory (see [`Journal::adopt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<FactoryId>,
    /// Entries in the order they were fetched.
    pub entries: Vec<Entry>,
    /// The audit log as this station checked it: the checkpoint it holds, the recorded units
    /// not yet seen proven (see [`crate::state::audit`]).
    #[serde(
        default,
        skip_serializing_if = "crate::state::audit::AuditState::is_empty"
    )]
    pub audit: crate::state::audit::AuditState,
}

impl Journal {
    /// An empty journal of `factory`.
    pub fn of(factory: FactoryId) -> Journal {
        Journal {
            factory: Some(factory),
            entries: Vec::new(),
            audit: Default::default(),
        }
    }

    /// Takes over from a journal stored before journals were kept per factory the entries
    /// that are this factory's: those whose record the server lists among the factory's open
    /// records (`is_ours`, from `GET /records`: issued to it and not installed, which covers
    /// every record in the pool, sent or written but not reported). Finished entries (reported,
    /// verified) are dropped from `old`: the server has them. What is left in `old` is another
    /// factory's, for its next sign-in. Returns how many entries moved.
    pub fn adopt(&mut self, old: &mut Journal, is_ours: impl Fn(&ApparatusId) -> bool) -> usize {
        old.entries.retain(|e| {
            !matches!(
                e.step,
                Step::Reported { .. } | Step::Verified { .. } | Step::Locked { recorded: true, .. }
            )
        });
        let (ours, theirs): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut old.entries).into_iter().partition(|e| {
                is_ours(&e.record.apparatus_id) && self.get(&e.record.apparatus_id).is_none()
            });
        old.entries = theirs;
        let n = ours.len();
        self.entries.extend(ours);
        n
    }
    /// Adds records fetched from the server (ignoring ones already known).
    pub fn add_records(&mut self, records: impl IntoIterator<Item = Record>) -> usize {
        let mut added = 0;
        for r in records {
            if self.get(&r.apparatus_id).is_none() {
                self.entries.push(Entry {
                    record: r,
                    step: Step::Pool,
                    attempts: 0,
                });
                added += 1;
            }
        }
        added
    }

    fn entry_mut(&mut self, id: &ApparatusId) -> Result<&mut Entry, JournalError> {
        self.entries
            .iter_mut()
            .find(|e| e.record.apparatus_id == *id)
            .ok_or(JournalError::Unknown(*id))
    }

    /// The entry for a record.
    pub fn get(&self, id: &ApparatusId) -> Option<&Entry> {
        self.entries.iter().find(|e| e.record.apparatus_id == *id)
    }

    /// The record bound to `unit` that is not finished, if any (a resumed unit).
    pub fn open_for_unit(&self, unit: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.step.unit() == Some(unit)
                && !matches!(e.step, Step::Verified { .. } | Step::Locked { .. })
        })
    }

    /// The entry of a record installed in `unit`, finished or not.
    pub fn for_unit(&self, unit: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.step.unit() == Some(unit))
    }

    /// The next record from the pool a unit holding `key_ids` can open.
    /// Records of an expired lease are never picked, nor chip-bound ones (they are for one
    /// unit each: [`Journal::next_for_chip`]).
    pub fn next_for(
        &self,
        product_code: &ProductCode,
        key_ids: &[KeyId],
        now_ms: u64,
    ) -> Option<&Record> {
        self.entries
            .iter()
            .find(|e| {
                e.step == Step::Pool
                    && !e.record.is_for_one_chip()
                    && e.record.product_code == *product_code
                    && key_ids.contains(&e.record.key_id)
                    && e.record.not_after_ms.is_none_or(|t| now_ms <= t)
            })
            .map(|e| &e.record)
    }

    /// A record in the pool fetched for `chip` earlier (its install was refused, or its unit
    /// was unplugged before the install was sent) that the unit can open: used again rather
    /// than fetching another, which would take one more from the factory's quota.
    pub fn next_for_chip(
        &self,
        product_code: &ProductCode,
        key_ids: &[KeyId],
        chip: &ChipId,
    ) -> Option<&Record> {
        self.entries
            .iter()
            .find(|e| {
                e.step == Step::Pool
                    && e.record.chip.as_ref() == Some(chip)
                    && e.record.product_code == *product_code
                    && key_ids.contains(&e.record.key_id)
            })
            .map(|e| &e.record)
    }

    /// Records in the pool, for any unit or fetched for one chip, that no unit holds: what the
    /// station can hand back to the server.
    pub fn unused(&self) -> impl Iterator<Item = &Record> {
        self.entries
            .iter()
            .filter(|e| e.step == Step::Pool)
            .map(|e| &e.record)
    }

    /// Forgets a pool record the server took back (`POST /release`). Only a pool record: one
    /// whose install was sent may be in its unit.
    pub fn released(&mut self, id: &ApparatusId) -> Result<(), JournalError> {
        let e = self.entry_mut(id)?;
        if e.step != Step::Pool {
            return Err(JournalError::WrongStep {
                apparatus_id: *id,
                expected: "pool",
            });
        }
        self.entries.retain(|e| e.record.apparatus_id != *id);
        Ok(())
    }

    /// The offline lease records still usable at `now_ms`: how many, and until when (the
    /// earliest deadline among them), for the header's badge. `None` without any.
    pub fn lease_left(&self, now_ms: u64) -> Option<(usize, u64)> {
        let deadlines = self
            .entries
            .iter()
            .filter_map(|e| match e.record.not_after_ms {
                Some(t) if e.step == Step::Pool && now_ms <= t => Some(t),
                _ => None,
            });
        deadlines.fold(None, |acc, t| match acc {
            None => Some((1, t)),
            Some((n, first)) => Some((n + 1, first.min(t))),
        })
    }

    /// Records whose install was sent but whose outcome is not known: their units must be
    /// asked before anything else happens to them.
    pub fn in_doubt(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.step, Step::InstallSent { .. }))
    }

    /// Installed but not yet recorded by the server (what an offline station owes).
    pub fn unreported(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.step, Step::Installed { .. }))
    }

    /// Units locked whose lock the server has not recorded yet (what an offline station owes
    /// besides its reports).
    pub fn unrecorded_locks(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| {
            matches!(
                e.step,
                Step::Locked {
                    recorded: false,
                    ..
                }
            )
        })
    }

    /// Reports the server refused for good.
    pub fn refused(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.step, Step::Refused { .. }))
    }

    /// Units this journal knows of that are not finished: bound to a record whose install was
    /// sent, or written and not yet checked. (A refused one is finished: there is nothing left
    /// to do to it but set it aside.)
    pub fn units_mid_way(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| match &e.step {
            Step::Pool | Step::Verified { .. } | Step::Refused { .. } | Step::Locked { .. } => None,
            other => other.unit(),
        })
    }

    /// Records in the pool a unit may be given now for `product_code`: not chip-bound, not of
    /// an expired lease (what the header counts as ready).
    pub fn ready(&self, product_code: &ProductCode, now_ms: u64) -> usize {
        self.entries
            .iter()
            .filter(|e| {
                e.step == Step::Pool
                    && !e.record.is_for_one_chip()
                    && e.record.product_code == *product_code
                    && e.record.not_after_ms.is_none_or(|t| now_ms <= t)
            })
            .count()
    }

    fn change(
        &mut self,
        id: &ApparatusId,
        expected: &'static str,
        ok: impl Fn(&Step) -> bool,
        to: Step,
    ) -> Result<(), JournalError> {
        let e = self.entry_mut(id)?;
        if !ok(&e.step) {
            return Err(JournalError::WrongStep {
                apparatus_id: *id,
                expected,
            });
        }
        if matches!(to, Step::InstallSent { .. }) {
            e.attempts += 1;
        }
        e.step = to;
        Ok(())
    }

    /// Binds a pool record to a unit, before the install is sent. (A retry on the same unit
    /// is allowed: the unit said it does not hold it.)
    pub fn install_sent(&mut self, id: &ApparatusId, unit: &str) -> Result<(), JournalError> {
        let u = unit.to_string();
        self.change(
            id,
            "pool (or sent to this unit)",
            |s| *s == Step::Pool || matches!(s, Step::InstallSent { unit } if *unit == u),
            Step::InstallSent { unit: u.clone() },
        )
    }

    /// The unit answered with a receipt.
    pub fn installed(
        &mut self,
        id: &ApparatusId,
        unit: &str,
        product_serial: ProductSerial,
        receipt: Receipt,
    ) -> Result<(), JournalError> {
        let u = unit.to_string();
        self.change(
            id,
            "install sent to this unit",
            |s| matches!(s, Step::InstallSent { unit } if *unit == u),
            Step::Installed {
                unit: u.clone(),
                product_serial,
                receipt,
            },
        )
    }

    /// Moves an installed entry on to the step `to` makes of its unit, serial and receipt.
    fn after_installed(
        &mut self,
        id: &ApparatusId,
        to: impl FnOnce(String, ProductSerial, Receipt) -> Step,
    ) -> Result<(), JournalError> {
        let e = self.entry_mut(id)?;
        let Step::Installed {
            unit,
            product_serial,
            receipt,
        } = e.step.clone()
        else {
            return Err(JournalError::WrongStep {
                apparatus_id: *id,
                expected: "installed",
            });
        };
        e.step = to(unit, product_serial, receipt);
        Ok(())
    }

    /// The server recorded it: its proof in the audit log is awaited from here on.
    pub fn reported(&mut self, id: &ApparatusId) -> Result<(), JournalError> {
        let mut serial = None;
        self.after_installed(id, |unit, product_serial, receipt| {
            serial = Some(product_serial);
            Step::Reported {
                unit,
                product_serial,
                receipt,
            }
        })?;
        if let Some(serial) = serial {
            self.audit.recorded(*id, serial);
        }
        Ok(())
    }

    /// The server refused the report for good: the entry is final (see [`Step::Refused`]).
    pub fn report_refused(
        &mut self,
        id: &ApparatusId,
        code: ErrorCode,
        message: String,
    ) -> Result<(), JournalError> {
        self.after_installed(id, |unit, product_serial, receipt| Step::Refused {
            unit,
            product_serial,
            receipt,
            code,
            message,
        })
    }

    /// The closed-loop check passed.
    pub fn verified(&mut self, id: &ApparatusId) -> Result<(), JournalError> {
        let e = self.entry_mut(id)?;
        let Step::Reported {
            unit,
            product_serial,
            ..
        } = e.step.clone()
        else {
            return Err(JournalError::WrongStep {
                apparatus_id: *id,
                expected: "reported",
            });
        };
        e.step = Step::Verified {
            unit,
            product_serial,
        };
        self.finish(id);
        Ok(())
    }

    /// The unit answered `Locked` (after its check).
    pub fn locked(&mut self, id: &ApparatusId) -> Result<(), JournalError> {
        let e = self.entry_mut(id)?;
        let Step::Verified {
            unit,
            product_serial,
        } = e.step.clone()
        else {
            return Err(JournalError::WrongStep {
                apparatus_id: *id,
                expected: "verified",
            });
        };
        e.step = Step::Locked {
            unit,
            product_serial,
            recorded: false,
        };
        self.finish(id);
        Ok(())
    }

    /// The server recorded the unit's lock.
    pub fn lock_recorded(&mut self, id: &ApparatusId) -> Result<(), JournalError> {
        let e = self.entry_mut(id)?;
        let Step::Locked { recorded, .. } = &mut e.step else {
            return Err(JournalError::WrongStep {
                apparatus_id: *id,
                expected: "locked",
            });
        };
        *recorded = true;
        self.finish(id);
        Ok(())
    }

    /// Moves a finished entry to the end, in the order they finished, and keeps only the last
    /// KEEP_VERIFIED finished ones: the pool keeps its order, and the journal stays small. A
    /// lock the server has not recorded is owed, and never dropped.
    fn finish(&mut self, id: &ApparatusId) {
        if let Some(at) = self
            .entries
            .iter()
            .position(|e| e.record.apparatus_id == *id)
        {
            let done = self.entries.remove(at);
            self.entries.push(done);
        }
        let done = |s: &Step| {
            matches!(
                s,
                Step::Verified { .. } | Step::Locked { recorded: true, .. }
            )
        };
        let finished = self.entries.iter().filter(|e| done(&e.step)).count();
        let mut drop = finished.saturating_sub(KEEP_VERIFIED);
        self.entries.retain(|e| {
            let old = drop > 0 && done(&e.step);
            if old {
                drop -= 1;
            }
            !old
        });
    }

    /// The unit said it does not hold the record (or holds another identity): the record goes
    /// back to the pool for the next unit.
    pub fn back_to_pool(&mut self, id: &ApparatusId) -> Result<(), JournalError> {
        self.change(
            id,
            "install sent",
            |s| matches!(s, Step::InstallSent { .. }),
            Step::Pool,
        )
    }

    /// Serialises for storage. An `Err` is never replaced by an empty journal: the caller
    /// keeps what is stored and says so, because an empty journal would forget which unit holds
    /// which record.
    pub fn to_json(&self) -> Result<String, String> {
        crate::json::to_string(self)
            .map_err(|e| format!("the station could not write its journal ({e})"))
    }

    /// Reads stored text; a damaged store is reported, not silently emptied.
    pub fn from_json(text: &str) -> Result<Journal, String> {
        crate::json::from_str(text).map_err(|e| {
            format!(
                "the station's saved journal is damaged ({e}); download it and tell the operator"
            )
        })
    }
}
