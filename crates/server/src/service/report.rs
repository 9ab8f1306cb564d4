//! Installation reports (table 704) and the installed-devices export.

use crate::db;
use imprint_api::ReportStatus;
use imprint_core::tables::{
    EntryState, InstallDecision, InstalledUnit, decide_install, decide_lock,
};
use imprint_core::{
    ApparatusId, Challenge, FactoryId, ProductCode, ProductSerial, Receipt, ReceiptInput,
    SealedRecord, TableError, conversion_value,
};
use serde_json::json;

use super::{Stage, cv_ctx, key_id_of, load_key, nonce_ctx, open_pass, pick};
use crate::auth::User;
use crate::custody::{Custody, RecordKey};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::{Backend, Conn, Store};
use crate::{AppState, audit, now_millis};

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// A station's report of one installation.
#[derive(Debug, Clone)]
pub struct Report {
    /// The identity installed.
    pub apparatus_id: ApparatusId,
    /// The unit.
    pub product_serial: ProductSerial,
    /// The device's receipt.
    pub receipt: Receipt,
    /// The station it was done at.
    pub station: String,
}

/// Records an installation: checks the receipt, then the rules, then writes table 704.
/// Exactly once: the same report again succeeds with no change; a refused report is audited
/// (a fault or an outage is no refusal, and is not).
///
/// An accepted report also returns a fresh challenge for the station's closed-loop check: one
/// round trip fewer per unit than asking `challenge` separately (docs/benchmarks.md, station
/// time per unit).
///
/// With several writers: the entry's row is locked first (PostgreSQL), so two reports of one
/// unit take turns and the second finds it recorded; two units reported with one product serial
/// at once meet at table 704's unique serial, and the one that lost runs again and is refused
/// by the rule.
///
/// On SQLite, reports share commits ([`Reporter`]): those that arrive while a batch commits go
/// into the next one, each in a savepoint of its own, so 32 stations reporting at once wait for
/// a few durable commits, not for 32 in a row. On PostgreSQL they run side by side, each in a
/// transaction of its own (see `run_side_by_side`). A batch the database could not commit is run again
/// report by report, each as it was before batching, so a batch's failure costs time, never
/// a report.
pub async fn report(
    state: &AppState,
    user: &User,
    r: &Report,
) -> Result<(ReportStatus, Challenge), AppError> {
    user.factory()?;
    check_station(&r.station)?;
    state.reporter.report(user.clone(), r.clone()).await
}

/// A station's name as it names itself: 1 to 64 bytes, no control characters (it is shown in
/// the console and written into the audit log, whose JSON would carry them escaped).
fn check_station(name: &str) -> Result<(), AppError> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "station: 1 to 64 bytes, no control characters".into(),
        ));
    }
    Ok(())
}

/// Most reports in one batch (one transaction, one durable commit).
const MAX_BATCH: usize = 64;

struct Job {
    user: User,
    report: Report,
    answer: oneshot::Sender<Result<(ReportStatus, Challenge), AppError>>,
}

/// Takes the stations' reports and records them: on SQLite in batches, one transaction (one
/// durable commit) per batch, each report in a savepoint of its own; on PostgreSQL several at
/// once, each in its own transaction. One per server process, started
/// with its [`AppState`].
#[derive(Debug, Clone)]
pub struct Reporter {
    jobs: mpsc::Sender<Job>,
}

impl Reporter {
    /// Starts the batching task, which ends when the last [`Reporter`] handle is dropped.
    /// Must be called inside a Tokio runtime.
    pub fn start(store: Store, keys: Arc<Custody>, metrics: Arc<Metrics>) -> Reporter {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(store, keys, metrics, rx));
        Reporter { jobs }
    }

    async fn report(
        &self,
        user: User,
        report: Report,
    ) -> Result<(ReportStatus, Challenge), AppError> {
        let (answer, rx) = oneshot::channel();
        let stopped = || AppError::bug("the reporter task has stopped");
        self.jobs
            .send(Job {
                user,
                report,
                answer,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, keys: Arc<Custody>, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Job>) {
    if store.backend() == Backend::Postgres {
        return run_side_by_side(store, keys, metrics, rx).await;
    }
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let work: Vec<(User, Report)> = jobs
            .iter()
            .map(|j| (j.user.clone(), j.report.clone()))
            .collect();
        let ctx = (&*keys, work.as_slice());
        let outcome = store
            .write(&ctx, |tx, (keys, work)| Box::pin(batch(tx, keys, work)))
            .await;
        match outcome {
            Ok(results) => {
                for (job, out) in jobs.into_iter().zip(results) {
                    match &out {
                        Ok((ReportStatus::Recorded, _)) => Metrics::add(&metrics.installed, 1),
                        Ok(_) => {}
                        Err(_) => Metrics::add(&metrics.refused, 1),
                    }
                    let _ = job.answer.send(out);
                }
            }
            // The batch did not commit (or its commit's answer was lost): each report again,
            // alone, as before batching. One recorded meanwhile answers `already_recorded`.
            Err(e) => {
                tracing::warn!(error = %e, reports = jobs.len(), "a batch of reports failed; recording them one by one");
                for job in jobs {
                    let out = alone(&store, &keys, &metrics, &job.user, &job.report).await;
                    let _ = job.answer.send(out);
                }
            }
        }
    }
}

/// Reports on PostgreSQL at most this many at once, each in its own transaction.
const SIDE_BY_SIDE: usize = crate::store::PG_POOL as usize / 2;

/// PostgreSQL keeps writers apart row by row and flushes commits that arrive together in one
/// write of its log, so reports run side by side, each in a transaction of its own ([`alone`]),
/// up to [`SIDE_BY_SIDE`] at once (the rest of the pool stays for reads, field authentication
/// and the sequencer). A batch would run its reports' statements one round trip after another
/// while the other stations wait: 32 stations at once had a p99 of 73 ms so.
async fn run_side_by_side(
    store: Store,
    keys: Arc<Custody>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Job>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(SIDE_BY_SIDE));
    while let Some(job) = rx.recv().await {
        // The semaphore is never closed, so this waits for a slot and never fails; were it to,
        // the report is answered with the fault, not dropped.
        let slot = match slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            Err(_) => {
                let _ = job
                    .answer
                    .send(Err(AppError::bug("the reporter's slots were closed")));
                continue;
            }
        };
        let (store, keys, metrics) = (store.clone(), keys.clone(), metrics.clone());
        tokio::spawn(async move {
            let out = alone(&store, &keys, &metrics, &job.user, &job.report).await;
            let _ = job.answer.send(out);
            drop(slot);
        });
    }
}

/// One batch in one transaction: each report in a savepoint; a refused report rolls back to
/// its savepoint and is audited as refused. A fault of any report (a database error, an
/// invariant) fails the whole batch, which [`run`] then records report by report.
async fn batch(
    tx: &mut Conn,
    keys: &Custody,
    work: &[(User, Report)],
) -> Result<Vec<Result<(ReportStatus, Challenge), AppError>>, AppError> {
    let mut out = Vec::with_capacity(work.len());
    for (user, r) in work {
        let factory = user.factory()?;
        db::query("SAVEPOINT report").execute(&mut *tx).await?;
        match recorded(tx, keys, user, &factory, r).await {
            Ok(v) => {
                db::query("RELEASE SAVEPOINT report")
                    .execute(&mut *tx)
                    .await?;
                out.push(Ok(v));
            }
            Err(e) if e.code().status() >= 500 => return Err(e),
            Err(e) => {
                db::query("ROLLBACK TO SAVEPOINT report")
                    .execute(&mut *tx)
                    .await?;
                db::query("RELEASE SAVEPOINT report")
                    .execute(&mut *tx)
                    .await?;
                audit::append(
                    tx,
                    &user.username,
                    "report.refused",
                    refusal(r, &factory, &e),
                )
                .await?;
                out.push(Err(e));
            }
        }
    }
    Ok(out)
}

/// A report's checks and writes, its audit entry and the closed-loop challenge, inside the
/// caller's transaction.
async fn recorded(
    tx: &mut Conn,
    keys: &Custody,
    user: &User,
    factory: &FactoryId,
    r: &Report,
) -> Result<(ReportStatus, Challenge), AppError> {
    let outcome = report_in(tx, keys, user, factory, r).await?;
    let action = match outcome {
        ReportStatus::Recorded => "report",
        ReportStatus::AlreadyRecorded => "report.duplicate",
    };
    audit::append(
        tx,
        &user.username,
        action,
        json!({
            "apparatus_id": r.apparatus_id.as_str(), "product_serial": r.product_serial.as_str(),
            "factory": factory.as_str(), "station": r.station, "receipt": hex::encode(r.receipt.0),
        }),
    )
    .await?;
    Ok((outcome, super::field::challenge(keys, r.apparatus_id)))
}

/// A refused report's audit detail: the code only, never the error's text.
fn refusal(r: &Report, factory: &FactoryId, e: &AppError) -> serde_json::Value {
    json!({
        "apparatus_id": r.apparatus_id.as_str(), "product_serial": r.product_serial.as_str(),
        "factory": factory.as_str(), "station": r.station, "reason": e.code().as_str(),
    })
}

/// One report in a transaction of its own (a batch that failed is recorded so).
async fn alone(
    store: &Store,
    keys: &Custody,
    metrics: &Metrics,
    user: &User,
    r: &Report,
) -> Result<(ReportStatus, Challenge), AppError> {
    let factory = user.factory()?;
    let result = store
        .write(
            &(keys, user, r, &factory),
            |tx, (keys, user, r, factory)| Box::pin(recorded(tx, keys, user, factory, r)),
        )
        .await;
    match result {
        Ok((outcome, c)) => {
            if outcome == ReportStatus::Recorded {
                Metrics::add(&metrics.installed, 1);
            }
            Ok((outcome, c))
        }
        // A fault or an outage is not a refusal: the report may even have been recorded (a
        // commit whose answer was lost), and the station sends it again.
        Err(e) if e.code().status() >= 500 => Err(e),
        Err(e) => {
            Metrics::add(&metrics.refused, 1);
            let detail = refusal(r, &factory, &e);
            let audited = store
                .write(&(user, detail), |tx, (user, detail)| {
                    Box::pin(audit::append(
                        tx,
                        &user.username,
                        "report.refused",
                        detail.clone(),
                    ))
                })
                .await;
            // The station is told why its report was refused even when the refusal could not
            // be written down; the log says that it was not.
            if let Err(a) = audited {
                tracing::error!(error = %a, "a refused report could not be audited");
            }
            Err(e)
        }
    }
}

async fn report_in(
    conn: &mut Conn,
    keys: &Custody,
    user: &User,
    factory: &FactoryId,
    r: &Report,
) -> Result<ReportStatus, AppError> {
    let id = r.apparatus_id;
    let entry = db::query(pick(
        conn,
        "SELECT pass_sealed, state, factory_id, product_code FROM auth_info WHERE apparatus_id = $1",
        "SELECT pass_sealed, state, factory_id, product_code FROM auth_info WHERE apparatus_id = $1 FOR UPDATE",
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(TableError::UnknownApparatus(id))?;
    let pass = open_pass(keys, &id, &entry.try_get::<Vec<u8>, _>("pass_sealed")?)?;
    let cv = conversion_value(&id, &pass);
    // The receipt first: a report without a valid proof learns nothing about other units.
    let record = db::query(
        "SELECT sealed, key_id, nonce_sealed FROM factory_records WHERE apparatus_id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(rec) = record {
        let sealed = SealedRecord::parse(&rec.try_get::<Vec<u8>, _>("sealed")?)
            .map_err(|e| AppError::bug(format!("stored record of {id} unreadable: {e}")))?;
        let issue_nonce: [u8; 16] = match rec.try_get::<Option<Vec<u8>>, _>("nonce_sealed")? {
            Some(n) => keys
                .open(&nonce_ctx(&id), &n)?
                .as_slice()
                .try_into()
                .map_err(|_| {
                    AppError::bug(format!("stored issue nonce of {id} has a wrong length"))
                })?,
            // Issued before the server kept nonces: open the record, as it did then.
            None => {
                let key = match load_key(conn, keys, key_id_of(rec.try_get("key_id")?)?).await? {
                    RecordKey::Memory(key) => key,
                    // Token custody is newer than kept nonces: every record it issued has one.
                    RecordKey::Token(..) => {
                        return Err(AppError::bug(format!(
                            "the record of {id} has no kept issue nonce, and its key is in the token"
                        )));
                    }
                };
                sealed
                    .open(&key, &id, None)
                    .map_err(|_| AppError::bug(format!("stored record of {id} does not open")))?
                    .issue_nonce
            }
        };
        r.receipt
            .verify(
                &cv,
                &ReceiptInput {
                    apparatus_id: &id,
                    product_serial: &r.product_serial,
                    issue_nonce: &issue_nonce,
                    record_digest: &sealed.digest(),
                },
            )
            .map_err(|_| TableError::BadReceipt(id))?;
    }
    let installed_serial =
        db::query("SELECT product_serial FROM installed_devices WHERE apparatus_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get::<String, _>("product_serial"))
            .transpose()?;
    let stage = Stage::parse(&entry.try_get::<String, _>("state")?)?;
    let state = match (stage, installed_serial) {
        (Stage::Unissued, _) => EntryState::Unissued,
        (Stage::Installed, Some(s)) => EntryState::Installed {
            product_serial: ProductSerial::new(&s)?,
        },
        (Stage::Installed, None) => {
            return Err(AppError::bug(format!(
                "entry {id} is installed but table 704 does not have it"
            )));
        }
        (Stage::Issued, _) => {
            let field = |name: &str| -> Result<String, AppError> {
                entry
                    .try_get::<Option<String>, _>(name)?
                    .ok_or_else(|| AppError::bug(format!("issued entry {id} has no {name}")))
            };
            EntryState::Issued {
                factory: FactoryId::new(&field("factory_id")?)?,
                product: ProductCode::new(&field("product_code")?)?,
            }
        }
    };
    let holder = db::query("SELECT apparatus_id FROM installed_devices WHERE product_serial = $1")
        .bind(r.product_serial.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get::<String, _>("apparatus_id"))
        .transpose()?
        .map(|s| ApparatusId::new(&s))
        .transpose()?;
    match decide_install(
        &id,
        Some(&state),
        factory,
        &r.product_serial,
        holder.as_ref(),
    )? {
        InstallDecision::AlreadyRecorded => Ok(ReportStatus::AlreadyRecorded),
        InstallDecision::Record => {
            db::query(
                "INSERT INTO installed_devices (apparatus_id, conversion_sealed, product_serial, factory_id, \
                 technician, station, receipt, installed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.as_str())
            .bind(keys.seal(&cv_ctx(&id), cv.expose_secret())?)
            .bind(r.product_serial.as_str())
            .bind(factory.as_str())
            .bind(user.username.as_str())
            .bind(r.station.as_str())
            .bind(hex::encode(r.receipt.0))
            .bind(now_millis())
            .execute(&mut *conn)
            .await?;
            db::query("UPDATE auth_info SET state = $1 WHERE apparatus_id = $2")
                .bind(Stage::Installed.as_str())
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?;
            db::query("UPDATE factory_records SET product_serial = $1 WHERE apparatus_id = $2")
                .bind(r.product_serial.as_str())
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(ReportStatus::Recorded)
        }
    }
}

/// A station's word that it locked an installed unit (protocol `Lock`, answered `Locked`).
#[derive(Debug, Clone)]
pub struct LockReport {
    /// The identity the unit holds.
    pub apparatus_id: ApparatusId,
    /// The unit.
    pub product_serial: ProductSerial,
    /// The station that locked it.
    pub station: String,
}

/// Records that an installed unit was locked (table 704's `locked_ms`), exactly once: a
/// repeat succeeds and keeps the first time. Only the factory that installed the unit may,
/// and only for the unit it was installed in ([`imprint_core::decide_lock`]).
///
/// What this is worth: the device's `Locked` reply carries no proof (protocol version 1), so
/// this is the station's word, as the report of a lock is in the vendor tools; it tells the
/// operator which units a station says it locked, and which it did not (docs/server.md).
pub async fn record_lock(
    state: &AppState,
    user: &User,
    r: &LockReport,
) -> Result<ReportStatus, AppError> {
    let factory = user.factory()?;
    check_station(&r.station)?;
    state
        .store
        .write(&(user, &factory, r), |tx, (user, factory, r)| {
            Box::pin(async move {
                let id = r.apparatus_id;
                let known = db::query("SELECT apparatus_id FROM auth_info WHERE apparatus_id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                let row = db::query(pick(
                    tx,
                    "SELECT factory_id, product_serial, locked_ms FROM installed_devices WHERE apparatus_id = $1",
                    "SELECT factory_id, product_serial, locked_ms FROM installed_devices WHERE apparatus_id = $1 FOR UPDATE",
                ))
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let installed = match &row {
                    Some(row) => Some((
                        FactoryId::new(&row.try_get::<String, _>("factory_id")?)?,
                        ProductSerial::new(&row.try_get::<String, _>("product_serial")?)?,
                        row.try_get::<Option<i64>, _>("locked_ms")?.is_some(),
                    )),
                    None => None,
                };
                let decision = decide_lock(
                    &id,
                    known,
                    installed.as_ref().map(|(f, s, locked)| InstalledUnit {
                        factory: f,
                        product_serial: s,
                        locked: *locked,
                    }),
                    factory,
                    &r.product_serial,
                )?;
                let (status, action) = match decision {
                    InstallDecision::Record => {
                        db::query("UPDATE installed_devices SET locked_ms = $1 WHERE apparatus_id = $2")
                            .bind(now_millis())
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await?;
                        (ReportStatus::Recorded, "lock")
                    }
                    InstallDecision::AlreadyRecorded => (ReportStatus::AlreadyRecorded, "lock.duplicate"),
                };
                audit::append(tx, &user.username, action, json!({
                    "apparatus_id": id.as_str(), "product_serial": r.product_serial.as_str(),
                    "factory": factory.as_str(), "station": r.station,
                }))
                .await?;
                Ok(status)
            })
        })
        .await
}

/// A CSV cell that a spreadsheet will show as text, never run as a formula: a cell that starts
/// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP, "CSV
/// Injection"). Station and technician names come from the factory, so every CSV the server
/// writes goes through here.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// Table 704 without secrets, as CSV (every cell through [`csv_cell`]).
pub async fn export_installed(state: &AppState) -> Result<String, AppError> {
    let rows = db::query(
        "SELECT apparatus_id, product_serial, factory_id, technician, station, receipt, installed_ms, revoked_ms, locked_ms \
         FROM installed_devices ORDER BY installed_ms, apparatus_id",
    )
    .fetch_all(&mut state.store.read().await?)
    .await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "apparatus_id",
        "product_serial",
        "factory",
        "technician",
        "station",
        "receipt",
        "installed_at_ms",
        "revoked_at_ms",
        "locked_at_ms",
    ];
    w.write_record(header)
        .map_err(|e| AppError::bug(e.to_string()))?;
    for r in rows {
        let fields: Vec<String> = vec![
            r.try_get("apparatus_id")?,
            r.try_get("product_serial")?,
            r.try_get("factory_id")?,
            r.try_get("technician")?,
            r.try_get("station")?,
            r.try_get("receipt")?,
            r.try_get::<i64, _>("installed_ms")?.to_string(),
            r.try_get::<Option<i64>, _>("revoked_ms")?
                .map(|t| t.to_string())
                .unwrap_or_default(),
            r.try_get::<Option<i64>, _>("locked_ms")?
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ];
        w.write_record(fields.iter().map(|f| csv_cell(f).into_owned()))
            .map_err(|e| AppError::bug(e.to_string()))?;
    }
    String::from_utf8(w.into_inner().map_err(|e| AppError::bug(e.to_string()))?)
        .map_err(|e| AppError::bug(e.to_string()))
}
