//! The per-unit flow, independent of the browser: connect, read the unit, pick its record,
//! install, receipt, report, closed-loop check. It talks to the unit through [`Link`] (WebUSB in
//! the browser, the simulated device in native tests) and to the server through [`Server`]
//! (fetch in the browser, the real server in-process in native tests).
//!
//! Resuming is the same flow: the journal says whether this unit already has a record, the
//! unit is asked whether it holds it (`QueryRecord`), and the flow continues from there. A
//! record whose install was sent is only ever released back to the pool after its own unit
//! says it does not hold it.

use imprint_api::ReportStatus;
use imprint_core::{
    ApparatusId, AuthResponse, Challenge, ChipId, DeviceInfo, DeviceState, ErrorCode, FrameError,
    KeyId, ProductCode, ProductSerial, ProtocolError, Receipt, RecordStatus, Reply, Request,
};

use std::cell::RefCell;

use crate::state::diagnose::Diagnosis;
use crate::state::journal::{Journal, JournalError, Record, Step};

pub use crate::error::{LinkError, ServerError};

/// A connection to one unit.
#[allow(async_fn_in_trait)]
pub trait Link {
    /// Sends one request and waits for its reply.
    async fn call(&mut self, req: &Request) -> Result<Reply, LinkError>;
    /// The unit's USB serial number (its chip ID in hex).
    fn unit(&self) -> String;
}

/// The server calls the station needs during the flow.
#[allow(async_fn_in_trait)]
pub trait Server {
    /// Fetches the one record of a chip-bound product for the unit whose chip is `chip`
    /// (sealed for that chip alone: it opens in no other unit).
    async fn issue_for_chip(
        &self,
        product_code: ProductCode,
        chip: &ChipId,
    ) -> Result<Record, ServerError>;
    /// Reports an installation.
    async fn report(
        &self,
        apparatus_id: &ApparatusId,
        product_serial: &ProductSerial,
        receipt: &Receipt,
    ) -> Result<Reported, ServerError>;
    /// A fresh challenge for the closed-loop check, when the report did not bring one (a
    /// unit whose report was made earlier).
    async fn challenge(&self, apparatus_id: &ApparatusId) -> Result<Challenge, ServerError>;
    /// Checks the unit's answer.
    async fn verify(
        &self,
        apparatus_id: &ApparatusId,
        challenge: &Challenge,
        response: &AuthResponse,
    ) -> Result<bool, ServerError>;
}

/// The server's answer to a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// Recorded now, or recorded before.
    pub status: ReportStatus,
    /// A fresh challenge for the closed-loop check, issued with the report: it saves a round
    /// trip per unit.
    pub challenge: Option<Challenge>,
}

/// Where the unit's tile is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the unit.
    Info,
    /// Picking its record (or finding the one it already has).
    Record,
    /// Writing the record.
    Install,
    /// Reporting to the server.
    Report,
    /// Closed-loop check.
    Check,
    /// Done.
    Done,
}

impl Phase {
    /// Steps in order, for the progress bar.
    pub const ALL: [Phase; 6] = [
        Phase::Info,
        Phase::Record,
        Phase::Install,
        Phase::Report,
        Phase::Check,
        Phase::Done,
    ];

    /// Label on the tile.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Info => "Read unit",
            Phase::Record => "Pick record",
            Phase::Install => "Write",
            Phase::Report => "Report",
            Phase::Check => "Check",
            Phase::Done => "Done",
        }
    }

    /// Progress from 0 to 100.
    pub fn percent(self) -> u8 {
        (Phase::ALL.iter().position(|p| *p == self).unwrap_or(0) * 100 / (Phase::ALL.len() - 1))
            as u8
    }
}

/// What the flow tells the page as it goes.
pub trait Observer {
    /// A phase began.
    fn phase(&mut self, phase: Phase);
    /// The unit's info was read (its product serial names the unit's tile).
    fn unit_info(&mut self, _info: &DeviceInfo) {}
    /// A line for the log (never a secret: there are none here).
    fn log(&mut self, line: String);
    /// The journal changed: persist it now.
    fn save(&mut self, journal: &Journal);
}

/// A finished unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// Identity installed.
    pub apparatus_id: ApparatusId,
    /// The unit's product serial.
    pub product_serial: ProductSerial,
    /// Whether this run resumed earlier work (after an unplug or reload).
    pub resumed: bool,
    /// Install attempts for this record.
    pub attempts: u32,
}

/// Everything that can stop a unit, with its diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where it stopped.
    pub phase: Phase,
    /// What happened and what to do.
    pub diagnosis: Diagnosis,
}

fn fail(phase: Phase, diagnosis: Diagnosis) -> Failure {
    Failure { phase, diagnosis }
}

fn link_fail(phase: Phase, e: LinkError) -> Failure {
    fail(phase, Diagnosis::from_link(&e))
}

fn journal_fail(phase: Phase, e: JournalError) -> Failure {
    fail(phase, Diagnosis::bug(&e.to_string()))
}

/// What this station is set up for.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The product code of the line.
    pub product_code: ProductCode,
    /// Whether the product is chip-bound (the server's table 500 says so): then each unit's
    /// record is fetched for its chip when it is plugged in, online only.
    pub chip_bound: bool,
    /// Whether to run the closed-loop check (needs the server online).
    pub closed_loop: bool,
    /// The time now (Unix ms), for lease deadlines.
    pub now_ms: u64,
}

/// Provisions one unit, from wherever its record got to. The journal is shared by every unit
/// on the station; it is borrowed only between awaits, and a pool record is bound to its unit
/// with no await in between, so two units never take the same record.
pub async fn provision<L: Link, S: Server, O: Observer>(
    link: &mut L,
    server: &S,
    journal: &RefCell<Journal>,
    setup: &Setup,
    obs: &mut O,
) -> Result<Success, Failure> {
    obs.phase(Phase::Info);
    let unit = link.unit();
    let info = match link
        .call(&Request::GetInfo)
        .await
        .map_err(|e| link_fail(Phase::Info, e))?
    {
        Reply::Info(info) => info,
        other => return Err(fail(Phase::Info, Diagnosis::unexpected(&other))),
    };
    obs.unit_info(&info);
    obs.log(format!(
        "unit {unit}: {} serial {} firmware {}.{}.{}, {}, {}",
        info.product_code,
        info.product_serial,
        info.firmware_version[0],
        info.firmware_version[1],
        info.firmware_version[2],
        crate::state::diagnose::key_list(&info.key_ids),
        match &info.state {
            DeviceState::Blank => "blank".to_string(),
            DeviceState::Provisioned(id) => format!("holds {id}"),
            DeviceState::Locked(id) => format!("locked with {id}"),
        }
    ));

    obs.phase(Phase::Record);
    // Resume: does the journal already bind a record to this unit?
    let mut resumed = false;
    // Bound first: a `match` on the borrow would hold it through the arms, which may write.
    let open = journal.borrow().open_for_unit(&unit).cloned();
    let record = match open {
        Some(entry) => {
            resumed = true;
            obs.log(format!(
                "resuming {} ({:?})",
                entry.record.apparatus_id,
                step_name(&entry.step)
            ));
            entry.record
        }
        None => {
            if let Some(done) = journal.borrow().for_unit(&unit)
                && let Step::Verified { product_serial, .. } = &done.step
            {
                return Ok(Success {
                    apparatus_id: done.record.apparatus_id,
                    product_serial: *product_serial,
                    resumed: true,
                    attempts: done.attempts,
                });
            }
            if info.product_code != setup.product_code {
                return Err(fail(
                    Phase::Record,
                    Diagnosis::wrong_model(setup.product_code.as_str(), info.product_code.as_str()),
                ));
            }
            match &info.state {
                DeviceState::Blank => {}
                DeviceState::Provisioned(id) | DeviceState::Locked(id) => {
                    return Err(fail(
                        Phase::Record,
                        Diagnosis::already_provisioned(id.as_str()),
                    ));
                }
            }
            let keys: Vec<KeyId> = info.key_ids.to_vec();
            if setup.chip_bound {
                record_for_chip(server, journal, setup, obs, &info, &keys).await?
            } else {
                match journal
                    .borrow()
                    .next_for(&setup.product_code, &keys, setup.now_ms)
                {
                    Some(r) => r.clone(),
                    None => {
                        return Err(fail(
                            Phase::Record,
                            Diagnosis::no_records(setup.product_code.as_str(), &keys),
                        ));
                    }
                }
            }
        }
    };
    let id = record.apparatus_id;

    // Install, unless the journal or the unit says it is done already.
    let step = journal
        .borrow()
        .get(&record.apparatus_id)
        .map(|e| e.step.clone())
        .unwrap_or(Step::Pool);
    let product_serial = match step {
        // Final: the server will not take this unit's report from this station.
        Step::Refused { code, message, .. } => {
            return Err(fail(
                Phase::Report,
                Diagnosis::report_refused(code, &message),
            ));
        }
        Step::Installed { product_serial, .. }
        | Step::Reported { product_serial, .. }
        | Step::Verified { product_serial, .. } => product_serial,
        Step::Pool | Step::InstallSent { .. } => {
            obs.phase(Phase::Install);
            install(link, journal, obs, &unit, &info, &record).await?;
            info.product_serial
        }
    };

    // Report (idempotent on the server) what the journal says is installed and not reported,
    // with the receipt it keeps. Its answer brings the closed-loop challenge.
    let mut challenge = None;
    let unreported = match journal.borrow().get(&id).map(|e| &e.step) {
        Some(Step::Installed { receipt, .. }) => Some(*receipt),
        _ => None,
    };
    if let Some(receipt) = unreported {
        obs.phase(Phase::Report);
        match server.report(&id, &product_serial, &receipt).await {
            Ok(reported) => {
                obs.log(format!(
                    "server: {id} {}",
                    match reported.status {
                        ReportStatus::Recorded => "recorded",
                        ReportStatus::AlreadyRecorded => "already recorded",
                    }
                ));
                challenge = reported.challenge;
                journal
                    .borrow_mut()
                    .reported(&record.apparatus_id)
                    .map_err(|e| journal_fail(Phase::Report, e))?;
                obs.save(&journal.borrow());
            }
            Err(ServerError::Refused { code, message }) if refuses_for_good(code) => {
                journal
                    .borrow_mut()
                    .report_refused(&id, code, message.clone())
                    .map_err(|e| journal_fail(Phase::Report, e))?;
                obs.save(&journal.borrow());
                obs.log(format!(
                    "server refused the report of {id} for good: {message}"
                ));
                return Err(fail(
                    Phase::Report,
                    Diagnosis::report_refused(code, &message),
                ));
            }
            Err(e) => return Err(fail(Phase::Report, Diagnosis::from_server(&e))),
        }
    }

    // Closed loop: the unit answers a fresh server challenge with its new secret.
    if matches!(
        journal.borrow().get(&record.apparatus_id).map(|e| &e.step),
        Some(Step::Reported { .. })
    ) {
        if setup.closed_loop {
            obs.phase(Phase::Check);
            let c = match challenge {
                Some(c) => c,
                None => server
                    .challenge(&id)
                    .await
                    .map_err(|e| fail(Phase::Check, Diagnosis::from_server(&e)))?,
            };
            let response = match link
                .call(&Request::Challenge(c))
                .await
                .map_err(|e| link_fail(Phase::Check, e))?
            {
                Reply::AuthResponse {
                    apparatus_id,
                    response,
                } if apparatus_id == id => response,
                Reply::AuthResponse { apparatus_id, .. } => {
                    return Err(fail(
                        Phase::Check,
                        Diagnosis::already_provisioned(apparatus_id.as_str()),
                    ));
                }
                other => return Err(fail(Phase::Check, Diagnosis::unexpected(&other))),
            };
            let ok = server
                .verify(&id, &c, &response)
                .await
                .map_err(|e| fail(Phase::Check, Diagnosis::from_server(&e)))?;
            if !ok {
                return Err(fail(Phase::Check, Diagnosis::check_failed()));
            }
            obs.log(format!(
                "closed-loop check passed for {}",
                record.apparatus_id
            ));
        }
        journal
            .borrow_mut()
            .verified(&record.apparatus_id)
            .map_err(|e| journal_fail(Phase::Check, e))?;
        obs.save(&journal.borrow());
    }
    obs.phase(Phase::Done);
    let attempts = journal
        .borrow()
        .get(&record.apparatus_id)
        .map_or(0, |e| e.attempts);
    Ok(Success {
        apparatus_id: id,
        product_serial,
        resumed,
        attempts,
    })
}

/// The record of a chip-bound product for this unit: one fetched for its chip earlier and not
/// written (its install was refused, or the unit was pulled before it), else a new one from the
/// server, journaled before it is used.
async fn record_for_chip<S: Server, O: Observer>(
    server: &S,
    journal: &RefCell<Journal>,
    setup: &Setup,
    obs: &mut O,
    info: &DeviceInfo,
    keys: &[KeyId],
) -> Result<Record, Failure> {
    let chip = &info.chip_id;
    if let Some(r) = journal
        .borrow()
        .next_for_chip(&setup.product_code, keys, chip)
    {
        obs.log(format!(
            "using {} again: fetched earlier for chip {chip}",
            r.apparatus_id
        ));
        return Ok(r.clone());
    }
    let record = Record {
        chip: Some(*chip),
        ..server
            .issue_for_chip(setup.product_code, chip)
            .await
            .map_err(|e| fail(Phase::Record, Diagnosis::chip_record_failed(&e)))?
    };
    // Journaled before anything else, even when the unit lacks its key: the record is issued
    // to this station for this chip, and a unit reporting the chip may come back with the key.
    journal.borrow_mut().add_records([record.clone()]);
    obs.save(&journal.borrow());
    if !keys.contains(&record.key_id) {
        return Err(fail(
            Phase::Record,
            Diagnosis::no_records(setup.product_code.as_str(), keys),
        ));
    }
    obs.log(format!(
        "fetched {} for chip {chip} (chip-bound {})",
        record.apparatus_id, setup.product_code
    ));
    Ok(record)
}

fn step_name(s: &Step) -> &'static str {
    match s {
        Step::Pool => "pool",
        Step::InstallSent { .. } => "install sent",
        Step::Installed { .. } => "installed",
        Step::Reported { .. } => "reported",
        Step::Refused { .. } => "report refused",
        Step::Verified { .. } => "verified",
    }
}

/// Writes the record, exactly once: asks the unit first if an earlier attempt may have
/// reached it, journals before sending, and settles the journal from the unit's answer.
async fn install<L: Link, O: Observer>(
    link: &mut L,
    journal: &RefCell<Journal>,
    obs: &mut O,
    unit: &str,
    info: &DeviceInfo,
    record: &Record,
) -> Result<Receipt, Failure> {
    let aid = &record.apparatus_id;
    let sealed = &record.sealed;
    let serial = info.product_serial;
    if matches!(
        journal.borrow().get(aid).map(|e| &e.step),
        Some(Step::InstallSent { .. })
    ) {
        // An earlier attempt may have landed: ask before writing again.
        let q = Request::QueryRecord {
            apparatus_id: *aid,
            record_digest: sealed.digest(),
        };
        match link
            .call(&q)
            .await
            .map_err(|e| link_fail(Phase::Install, e))?
        {
            Reply::RecordStatus(RecordStatus::Held(receipt)) => {
                obs.log(format!("unit already holds {aid}: taking its receipt"));
                return settle(journal, obs, aid, unit, serial, receipt);
            }
            Reply::RecordStatus(RecordStatus::NotHeld) => {
                obs.log(format!("unit does not hold {aid}: writing again"))
            }
            Reply::RecordStatus(RecordStatus::OtherIdentity) => {
                journal
                    .borrow_mut()
                    .back_to_pool(aid)
                    .map_err(|e| journal_fail(Phase::Install, e))?;
                obs.save(&journal.borrow());
                return Err(fail(
                    Phase::Install,
                    Diagnosis::already_provisioned("another identity"),
                ));
            }
            other => return Err(fail(Phase::Install, Diagnosis::unexpected(&other))),
        }
    }
    journal
        .borrow_mut()
        .install_sent(aid, unit)
        .map_err(|e| journal_fail(Phase::Install, e))?;
    obs.save(&journal.borrow());
    obs.log(format!("writing {aid} to unit {unit}"));
    let req = Request::Install {
        apparatus_id: *aid,
        record: sealed.clone(),
    };
    match link.call(&req).await {
        Ok(Reply::Installed(receipt)) => settle(journal, obs, aid, unit, serial, receipt),
        Ok(Reply::Error(code)) => {
            // The unit refused and stored nothing: the record is free for the next unit (a
            // chip-bound one only for a unit reporting the same chip).
            journal
                .borrow_mut()
                .back_to_pool(aid)
                .map_err(|e| journal_fail(Phase::Install, e))?;
            obs.save(&journal.borrow());
            Err(fail(
                Phase::Install,
                match (&record.chip, code) {
                    (Some(chip), ErrorCode::OpenFailed) => {
                        Diagnosis::not_its_chip(&chip.to_string())
                    }
                    _ => Diagnosis::from_device(code),
                },
            ))
        }
        Ok(other) => Err(fail(Phase::Install, Diagnosis::unexpected(&other))),
        // Outcome unknown: the journal keeps the record bound to this unit until it is asked.
        Err(e) => Err(link_fail(Phase::Install, e)),
    }
}

fn settle<O: Observer>(
    journal: &RefCell<Journal>,
    obs: &mut O,
    aid: &ApparatusId,
    unit: &str,
    serial: ProductSerial,
    receipt: Receipt,
) -> Result<Receipt, Failure> {
    journal
        .borrow_mut()
        .installed(aid, unit, serial, receipt)
        .map_err(|e| journal_fail(Phase::Install, e))?;
    obs.save(&journal.borrow());
    Ok(receipt)
}

/// Maps a reply decode failure to a [`LinkError`].
pub fn garbage(e: &ProtocolError) -> LinkError {
    LinkError::Garbage(match e {
        ProtocolError::Frame(FrameError::BadMagic) => {
            "its answer does not start as the Imprint protocol does: another firmware, or another program on the port".into()
        }
        other => other.to_string(),
    })
}

/// Whether a refused report is refused for good: the server judged the report itself (its
/// record, unit or receipt), and sending it again gets the same answer. Every other refusal
/// (a session to renew, a server fault, a busy database) leaves the report pending. Exhaustive,
/// so that a new code is decided here.
pub fn refuses_for_good(code: imprint_api::ErrorCode) -> bool {
    use imprint_api::ErrorCode as C;
    match code {
        C::NotYourRecord
        | C::NotIssued
        | C::AlreadyInstalled
        | C::SerialTaken
        | C::BadReceipt
        | C::UnknownApparatus => true,
        C::BadRequest
        | C::BadCsv
        | C::Unauthorized
        | C::TooManyAttempts
        | C::Forbidden
        | C::NotFound
        | C::MethodNotAllowed
        | C::Conflict
        | C::Internal
        | C::Unavailable
        | C::NothingRequested
        | C::UnknownKeyId
        | C::UnknownProduct
        | C::OverQuota
        | C::NotEnoughEntries
        | C::SameKey
        | C::DuplicateKeyId
        | C::DuplicateApparatusId
        | C::NotInstalled => false,
    }
}

/// What a reconcile pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Reports recorded now.
    pub recorded: usize,
    /// Installations still not recorded.
    pub pending: usize,
    /// Reports the server refused for good in this pass ([`refuses_for_good`]), with its code
    /// and message: the journal now has them as [`Step::Refused`], and they are not sent again.
    pub refused: Vec<(ApparatusId, ServerError)>,
    /// The server refused for a reason that is not the report's (the session ended, a fault):
    /// the pass stopped and the reports stay pending. Why, for the page.
    pub held: Option<ServerError>,
    /// The server answered something the station does not understand (or the station could
    /// not write the request): the pass stopped, and this says what. It is neither offline nor
    /// a refusal.
    pub unintelligible: Option<ServerError>,
}

/// Reports every installation the server has not recorded yet (units written while it was
/// unreachable). Safe to run at any time and as often as wanted: the server answers a repeat
/// with `already_recorded`. Stops at the first answer that says the server is unreachable or
/// answers what the station does not understand.
pub async fn reconcile<S: Server>(server: &S, journal: &RefCell<Journal>) -> Reconciled {
    let pending: Vec<(ApparatusId, ProductSerial, Receipt)> = journal
        .borrow()
        .unreported()
        .filter_map(|e| match &e.step {
            Step::Installed {
                product_serial,
                receipt,
                ..
            } => Some((e.record.apparatus_id, *product_serial, *receipt)),
            _ => None,
        })
        .collect();
    let mut out = Reconciled::default();
    for (id, serial, receipt) in &pending {
        match server.report(id, serial, receipt).await {
            Ok(_) => {
                if journal.borrow_mut().reported(id).is_ok() {
                    out.recorded += 1;
                }
            }
            // Still offline: stop for now, try again later.
            Err(ServerError::Offline(_)) => break,
            Err(e @ (ServerError::Unintelligible { .. } | ServerError::Request(_))) => {
                out.unintelligible = Some(e);
                break;
            }
            // Refused for good: final, shown as refused and never sent again.
            Err(ServerError::Refused { code, message }) if refuses_for_good(code) => {
                if journal
                    .borrow_mut()
                    .report_refused(id, code, message.clone())
                    .is_ok()
                {
                    out.refused
                        .push((*id, ServerError::Refused { code, message }));
                }
            }
            // Refused for another reason (sign in again, a fault): all of them stay pending.
            Err(e @ ServerError::Refused { .. }) => {
                out.held = Some(e);
                break;
            }
        }
    }
    out.pending = journal.borrow().unreported().count();
    out
}
