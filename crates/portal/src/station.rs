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
    /// Records that the unit was locked (`POST /locked`).
    async fn locked(
        &self,
        apparatus_id: &ApparatusId,
        product_serial: &ProductSerial,
    ) -> Result<ReportStatus, ServerError>;
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
    /// Locking the unit, where its product locks units (after the check).
    Lock,
    /// Done.
    Done,
}

impl Phase {
    /// Steps in order, for the progress bar.
    pub const ALL: [Phase; 7] = [
        Phase::Info,
        Phase::Record,
        Phase::Install,
        Phase::Report,
        Phase::Check,
        Phase::Lock,
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
            Phase::Lock => "Lock",
            Phase::Done => "Done",
        }
    }

    /// The steps of a product that does not lock its units.
    pub const WITHOUT_LOCK: [Phase; 6] = [
        Phase::Info,
        Phase::Record,
        Phase::Install,
        Phase::Report,
        Phase::Check,
        Phase::Done,
    ];

    /// The steps a unit goes through: with the lock where its product locks its units.
    pub fn steps(lock_units: bool) -> &'static [Phase] {
        if lock_units {
            &Phase::ALL
        } else {
            &Phase::WITHOUT_LOCK
        }
    }

    /// Progress from 0 to 100 through [`Phase::steps`].
    pub fn percent(self, lock_units: bool) -> u8 {
        let steps = Phase::steps(lock_units);
        (steps.iter().position(|p| *p == self).unwrap_or(0) * 100 / (steps.len() - 1)) as u8
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
    /// Whether the product locks its units (the server's table 500 says so): then each unit
    /// is locked after its closed-loop check passed, never before (a unit locked with an
    /// identity the server refused could never be provisioned again).
    pub lock_units: bool,
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
            let done = journal.borrow().for_unit(&unit).cloned();
            if let Some(done) = done
                && done.step.is_finished()
                && !matches!(done.step, Step::Refused { .. })
            {
                if !lock_due(&done.step, setup) {
                    return Ok(Success {
                        apparatus_id: done.record.apparatus_id,
                        product_serial: done.step.product_serial().unwrap_or(info.product_serial),
                        resumed: true,
                        attempts: done.attempts,
                    });
                }
                obs.log(format!(
                    "resuming {} (checked, lock due)",
                    done.record.apparatus_id
                ));
                return lock_and_record(
                    link,
                    server,
                    journal,
                    setup,
                    obs,
                    &done.record.apparatus_id,
                    true,
                )
                .await;
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
        | Step::Verified { product_serial, .. }
        | Step::Locked { product_serial, .. } => product_serial,
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
    lock_and_record(link, server, journal, setup, obs, &id, resumed).await
}

/// Whether a unit at `step` is still to be locked, or its lock still to be recorded: checked
/// and of a product that locks its units, or locked and not yet recorded.
pub fn lock_due(step: &Step, setup: &Setup) -> bool {
    match step {
        Step::Verified { .. } => setup.lock_units && setup.closed_loop,
        Step::Locked { recorded, .. } => !recorded,
        _ => false,
    }
}

/// The end of the flow for a unit whose report is made: locks it where its product locks
/// units and its check passed, records the lock with the server, and finishes. A lock that
/// the server could not record yet is owed, like a report, and sent by [`reconcile`]: the
/// unit itself is done.
async fn lock_and_record<L: Link, S: Server, O: Observer>(
    link: &mut L,
    server: &S,
    journal: &RefCell<Journal>,
    setup: &Setup,
    obs: &mut O,
    id: &ApparatusId,
    resumed: bool,
) -> Result<Success, Failure> {
    let step = journal.borrow().get(id).map(|e| e.step.clone());
    let mut in_lock = false;
    if let Some(step @ Step::Verified { .. }) = &step
        && lock_due(step, setup)
    {
        obs.phase(Phase::Lock);
        in_lock = true;
        // Idempotent on the unit: a locked unit answers Locked without writing.
        match link
            .call(&Request::Lock { apparatus_id: *id })
            .await
            .map_err(|e| link_fail(Phase::Lock, e))?
        {
            Reply::Locked => {}
            Reply::Error(code) => {
                obs.log(format!("unit refused to lock {id}: {}", code.message()));
                return Err(fail(Phase::Lock, Diagnosis::lock_failed(code)));
            }
            other => return Err(fail(Phase::Lock, Diagnosis::unexpected(&other))),
        }
        journal
            .borrow_mut()
            .locked(id)
            .map_err(|e| journal_fail(Phase::Lock, e))?;
        obs.save(&journal.borrow());
        obs.log(format!("locked {id}: the unit's identity is permanent"));
    }
    let Some(entry) = journal.borrow().get(id).cloned() else {
        return Err(journal_fail(Phase::Lock, JournalError::Unknown(*id)));
    };
    let product_serial = entry.step.product_serial().ok_or_else(|| {
        fail(
            Phase::Lock,
            Diagnosis::bug("a finished unit without its serial"),
        )
    })?;
    if matches!(
        entry.step,
        Step::Locked {
            recorded: false,
            ..
        }
    ) {
        if !in_lock {
            obs.phase(Phase::Lock);
        }
        match server.locked(id, &product_serial).await {
            Ok(_) => {
                journal
                    .borrow_mut()
                    .lock_recorded(id)
                    .map_err(|e| journal_fail(Phase::Lock, e))?;
                obs.save(&journal.borrow());
                obs.log(format!("server: lock of {id} recorded"));
            }
            Err(e) => obs.log(format!(
                "server has not recorded the lock of {id} yet ({}): the station sends it when the server answers",
                Diagnosis::from_server(&e).detail
            )),
        }
    }
    obs.phase(Phase::Done);
    Ok(Success {
        apparatus_id: *id,
        product_serial,
        resumed,
        attempts: entry.attempts,
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
        Step::Locked { .. } => "locked",
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
    /// Locks recorded now.
    pub locks_recorded: usize,
    /// Locked units whose lock the server has still not recorded.
    pub locks_pending: usize,
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
/// unreachable), then every lock it has not recorded. Safe to run at any time and as often as
/// wanted: the server answers a repeat with `already_recorded`. Stops at the first answer that
/// says the server is unreachable or answers what the station does not understand.
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
    let mut stopped = false;
    for (id, serial, receipt) in &pending {
        match server.report(id, serial, receipt).await {
            Ok(_) => {
                if journal.borrow_mut().reported(id).is_ok() {
                    out.recorded += 1;
                }
            }
            // Still offline: stop for now, try again later.
            Err(ServerError::Offline(_)) => {
                stopped = true;
                break;
            }
            // A file's refusal is no answer to a report or a lock: not understood.
            Err(
                e @ (ServerError::Unintelligible { .. }
                | ServerError::Request(_)
                | ServerError::BadLines { .. }),
            ) => {
                out.unintelligible = Some(e);
                stopped = true;
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
                stopped = true;
                break;
            }
        }
    }
    let locks: Vec<(ApparatusId, ProductSerial)> = journal
        .borrow()
        .unrecorded_locks()
        .filter_map(|e| Some((e.record.apparatus_id, e.step.product_serial()?)))
        .collect();
    for (id, serial) in locks.iter().filter(|_| !stopped) {
        match server.locked(id, serial).await {
            Ok(_) => {
                if journal.borrow_mut().lock_recorded(id).is_ok() {
                    out.locks_recorded += 1;
                }
            }
            Err(ServerError::Offline(_)) => break,
            // A file's refusal is no answer to a report or a lock: not understood.
            Err(
                e @ (ServerError::Unintelligible { .. }
                | ServerError::Request(_)
                | ServerError::BadLines { .. }),
            ) => {
                out.unintelligible = Some(e);
                break;
            }
            // A lock is never refused for good while its installation is recorded: whatever
            // the server says, the lock stays owed, and the page says why.
            Err(e @ ServerError::Refused { .. }) => {
                out.held = Some(e);
                break;
            }
        }
    }
    out.pending = journal.borrow().unreported().count();
    out.locks_pending = journal.borrow().unrecorded_locks().count();
    out
}
