//! The page: sign-in, then the station: one tile per unit, the always-visible log, line
//! figures, diagnostics and the training switch. Components stay thin: the work is in
//! [`crate::station`] and [`crate::state`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;

use crate::state::analytics::{Outcome, keep_recent};
use crate::state::bench::{Action, Status, Tile};
use crate::state::diagnose::{Diagnosis, Severity};
use crate::state::journal::Journal;
use crate::station::{Observer, Phase, ServerError, Setup, provision};
use imprint_api::{Role, SessionToken, UserInfo};
use imprint_core::{ApparatusId, FactoryId, ProductCode};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::web::api::{Fetch, HttpServer};
use crate::web::storage;
use crate::web::usb::{self, WebUsbLink};

/// A signed-in station.
#[derive(Clone, Debug)]
struct Session {
    server: HttpServer,
    user: UserInfo,
    /// The technician's factory: whose journal, records and lease the station works with.
    factory: FactoryId,
    product: ProductCode,
    /// Whether the product is chip-bound (table 500, read at sign-in): each unit's record is
    /// then fetched for its chip as it is plugged in, and there is no pool, fetch or lease.
    chip_bound: bool,
    /// Whether the product locks its units after their check (table 500, read at sign-in).
    lock_units: bool,
    /// When the server's session ends (Unix ms): a kept session is not used after it.
    expires_ms: u64,
}

/// How long a session lasts on the server (`LoginAnswer`: "valid for 12 hours").
const SESSION_MS: u64 = 12 * 3_600_000;

/// A session as kept in this tab's sessionStorage over a reload.
#[derive(Serialize, Deserialize)]
struct KeptSession {
    token: SessionToken,
    station: String,
    user: UserInfo,
    product: ProductCode,
    chip_bound: bool,
    #[serde(default)]
    lock_units: bool,
    expires_ms: u64,
}

impl Session {
    fn keep(&self) {
        let kept = KeptSession {
            token: self.server.token.clone(),
            station: self.server.station.clone(),
            user: self.user.clone(),
            product: self.product,
            chip_bound: self.chip_bound,
            lock_units: self.lock_units,
            expires_ms: self.expires_ms,
        };
        if let Ok(text) = crate::json::to_string(&kept) {
            storage::keep_session(Some(&text));
        }
    }

    /// The session kept in this tab, if there is one, it reads, and it has not expired.
    fn kept() -> Option<Session> {
        let k: KeptSession = crate::json::from_str(&storage::kept_session()?).ok()?;
        let factory = k.user.factory?;
        (now_ms() < k.expires_ms).then_some(Session {
            server: Client {
                transport: Fetch,
                token: k.token,
                station: k.station,
            },
            user: k.user,
            factory,
            product: k.product,
            chip_bound: k.chip_bound,
            lock_units: k.lock_units,
            expires_ms: k.expires_ms,
        })
    }
}

/// Everything the station's parts share. Copy handles only, so closures can take it freely.
#[derive(Clone, Copy)]
struct Ctx {
    session: RwSignal<Option<Session>>,
    tiles: RwSignal<Vec<Tile>>,
    log: RwSignal<Vec<String>>,
    outcomes: RwSignal<Vec<Outcome>>,
    pool: RwSignal<usize>,
    pending: RwSignal<usize>,
    /// Locked units whose lock the server has not recorded yet (owed, like pending reports).
    locks_owed: RwSignal<usize>,
    /// Reports the server refused for good (final; not pending).
    refused: RwSignal<usize>,
    /// Units this station reported and saw proven in the server's audit log.
    in_log: RwSignal<u64>,
    /// Why this station no longer trusts the server's audit log (stays until sign-out).
    audit_alarm: RwSignal<Option<String>>,
    /// Why pending reports are not being sent, when the server refused for a reason that is
    /// not the report's (the session ended): what to do.
    held: RwSignal<Option<String>>,
    /// The signed-in factory's journal (an empty one of no factory when signed out).
    journal: StoredValue<Rc<RefCell<Journal>>, LocalStorage>,
    /// The factory's journal did not read: the station stops and shows it.
    damaged: RwSignal<Option<storage::Damaged>>,
    /// Counts sign-ins: a loop of an earlier session sees it changed and stops.
    epoch: StoredValue<u32, LocalStorage>,
    /// The log changed since it was last stored.
    log_dirty: StoredValue<bool, LocalStorage>,
    /// The tiles changed since they were last stored.
    bench_dirty: StoredValue<bool, LocalStorage>,
    /// The time, once a second: green tiles fold into the done list by it.
    now: RwSignal<u64>,
    /// The `navigator.usb` the connect/disconnect listeners are on (once each).
    listening: StoredValue<Option<JsValue>, LocalStorage>,
    /// Signing out: no unit starts until the page is signed in again.
    leaving: StoredValue<bool, LocalStorage>,
    /// A line for the sign-in page (why the technician is back there).
    notice: RwSignal<Option<String>>,
    devices: StoredValue<HashMap<String, JsValue>, LocalStorage>,
    training: StoredValue<Option<crate::web::training::SimBus>, LocalStorage>,
    /// Training mode: its module is on its way (loading), or its units can be plugged (on).
    training_loading: RwSignal<bool>,
    training_on: RwSignal<bool>,
    sim_index: StoredValue<HashMap<String, u32>, LocalStorage>,
    hidden: RwSignal<bool>,
    /// An admin or an auditor signed in: the console (crates/console) has the page.
    console: RwSignal<bool>,
}

/// Where the server's lease key is pinned at the first online sign-in (hex).
const LEASE_KEY: &str = "imprint.lease-key";

/// Where the audit log's verifier key is pinned at its first answer (`NAME+KEYID+KEY`).
const LOG_KEY: &str = "imprint.log-key";

/// The lease key pinned at the first online sign-in.
fn pinned_lease_key() -> Result<[u8; 32], String> {
    let text = storage::get(LEASE_KEY).ok_or("no lease key pinned yet: sign in online once")?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| "the pinned lease key is damaged: tell the operator".to_string())?;
    Ok(key)
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn clock() -> String {
    clock_at(now_ms())
}

/// The time of day of `ms` (Unix ms), local, HH:MM.
fn clock_hm(ms: u64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// The time of day of `ms` (Unix ms), local, HH:MM:SS.
fn clock_at(ms: u64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    format!(
        "{:02}:{:02}:{:02}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}

impl Ctx {
    /// Adds records to `journal` (the one taken before the request went out: if the
    /// technician signed out meanwhile, the records are still that factory's) and saves it;
    /// returns how many were new.
    fn add_records(
        &self,
        journal: &Rc<RefCell<Journal>>,
        records: Vec<crate::state::journal::Record>,
    ) -> usize {
        let n = journal.borrow_mut().add_records(records);
        if let Err(e) = storage::save_journal(&journal.borrow()) {
            self.say(format!("could not save the journal: {e}"));
        }
        self.refresh_pool();
        n
    }

    fn say(&self, line: String) {
        let stamped = format!("{} {line}", clock());
        self.log.update(|l| {
            l.push(stamped);
            if l.len() > storage::LOG_LINES + 500 {
                l.drain(..500);
            }
        });
        self.log_dirty.set_value(true);
    }

    /// Stores the factory's log if it changed.
    fn save_log(&self) {
        if !self.log_dirty.get_value() {
            return;
        }
        if let Some(s) = self.session.get_untracked() {
            self.log_dirty.set_value(false);
            if let Err(e) = storage::save_log(&s.factory, &self.log.get_untracked()) {
                web_sys::console::warn_1(&JsValue::from_str(&e));
            }
        }
    }

    fn set_tile(&self, unit: &str, f: impl FnOnce(&mut Tile)) {
        self.tiles.update(|tiles| {
            if let Some(t) = tiles.iter_mut().find(|t| t.unit == unit) {
                f(t);
            } else {
                let mut t = Tile::new(unit);
                f(&mut t);
                tiles.push(t);
            }
            crate::state::bench::keep_recent(tiles, now_ms());
        });
        self.bench_dirty.set_value(true);
    }

    /// Stores the bench (this tab) if it changed.
    fn save_bench(&self) {
        if !self.bench_dirty.get_value() {
            return;
        }
        if let Some(s) = self.session.get_untracked() {
            self.bench_dirty.set_value(false);
            storage::save_bench(&s.factory, &self.tiles.get_untracked());
        }
    }

    fn refresh_pool(&self) {
        let product = self
            .session
            .with_untracked(|s| s.as_ref().map(|s| s.product));
        let (n, p, l, r, a) = self.journal.with_value(|j| {
            let j = j.borrow();
            let ready = product.map_or(0, |code| j.ready(&code, now_ms()));
            (
                ready,
                j.unreported().count(),
                j.unrecorded_locks().count(),
                j.refused().count(),
                j.audit.proven,
            )
        });
        self.in_log.set(a);
        self.pool.set(n);
        self.pending.set(p);
        self.locks_owed.set(l);
        self.refused.set(r);
    }
}

/// Forwards the flow's progress to a tile and the log, and persists the journal.
struct TileObserver {
    ctx: Ctx,
    unit: String,
}

impl Observer for TileObserver {
    fn phase(&mut self, phase: Phase) {
        self.ctx.set_tile(&self.unit, |t| t.phase = phase);
    }
    fn unit_info(&mut self, info: &imprint_core::DeviceInfo) {
        let serial = info.product_serial;
        self.ctx.set_tile(&self.unit, |t| t.label = Some(serial));
    }
    fn log(&mut self, line: String) {
        self.ctx.say(line);
    }
    fn save(&mut self, journal: &Journal) {
        if let Err(e) = storage::save_journal(journal) {
            self.ctx.say(format!("could not save the journal: {e}"));
        }
    }
}

/// Runs the flow for one unit (a fresh start or a resume after a replug).
fn start_unit(ctx: Ctx, device: JsValue) {
    let unit = usb::serial_of(&device);
    if unit.is_empty() {
        ctx.say("a unit without a USB serial number: it cannot be told apart after a replug; set it aside".into());
        return;
    }
    if ctx.tiles.with_untracked(|t| {
        t.iter()
            .any(|t| t.unit == unit && t.status == Status::Working)
    }) {
        return;
    }
    let Some(session) = ctx.session.get_untracked() else {
        return;
    };
    if ctx.leaving.get_value() {
        ctx.say(format!("unit {unit} waits: the station is signing out"));
        return;
    }
    ctx.devices.update_value(|d| {
        d.insert(unit.clone(), device.clone());
    });
    // A unit another factory's journal on this station knows (written, or maybe written, by
    // one of its technicians) is theirs: nothing of this factory goes near it.
    let ours = ctx
        .journal
        .with_value(|j| j.borrow().for_unit(&unit).is_some());
    if !ours
        && let Some((factory, finished)) = storage::unit_of_another_factory(&unit, &session.factory)
    {
        let d = match factory {
            Some(f) => Diagnosis::other_factory(f.as_str(), finished),
            None => Diagnosis::in_earlier_journal(),
        };
        ctx.say(format!("unit {unit}: {}: {} {}", d.title, d.detail, d.fix));
        ctx.set_tile(&unit, |t| t.stopped(Phase::Info, d));
        return;
    }
    let setup = Setup {
        product_code: session.product,
        chip_bound: session.chip_bound,
        closed_loop: true,
        lock_units: session.lock_units,
        now_ms: now_ms(),
    };
    // A unit finished earlier (checked and locked where its product locks, or its report
    // refused for good) and plugged in again is shown again, not counted again: the journal
    // says so, whatever the bench keeps.
    let was_done = ctx.journal.with_value(|j| {
        j.borrow()
            .for_unit(&unit)
            .is_some_and(|e| e.step.is_finished() && !crate::station::lock_due(&e.step, &setup))
    });
    ctx.set_tile(&unit, Tile::start);
    spawn_local(async move {
        let started = js_sys::Date::now();
        let journal = ctx.journal.get_value();
        let mut obs = TileObserver {
            ctx,
            unit: unit.clone(),
        };
        let result = match WebUsbLink::open(device).await {
            Ok(mut link) => {
                let r = provision(&mut link, &session.server, &journal, &setup, &mut obs).await;
                link.close().await;
                r
            }
            Err(e) => Err(crate::station::Failure {
                phase: Phase::Info,
                diagnosis: Diagnosis::from_link(&e),
            }),
        };
        let attempts = journal
            .borrow()
            .for_unit(&unit)
            .map_or(1, |e| e.attempts.max(1));
        let outcome = |ok, recoveries| Outcome {
            at_ms: now_ms(),
            station: session.server.station.clone(),
            technician: session.user.username.clone(),
            ok,
            attempts,
            recoveries,
            duration_ms: (js_sys::Date::now() - started).max(0.0) as u64,
        };
        match result {
            Ok(s) => {
                ctx.say(format!(
                    "unit {unit}: {} installed in {}{}",
                    s.apparatus_id,
                    s.product_serial,
                    if s.resumed { " (resumed)" } else { "" }
                ));
                let mut recoveries = Vec::new();
                ctx.set_tile(&unit, |t| {
                    recoveries = t.done(s.apparatus_id, s.resumed, now_ms());
                });
                if !was_done {
                    ctx.outcomes.update(|o| {
                        o.push(outcome(true, recoveries));
                        keep_recent(o, now_ms());
                    });
                }
                take_off_line(ctx, &unit);
            }
            Err(f) => {
                ctx.say(format!(
                    "unit {unit}: {} ({:?}): {}",
                    f.diagnosis.title, f.phase, f.diagnosis.detail
                ));
                let mut recoveries = Vec::new();
                ctx.set_tile(&unit, |t| {
                    t.stopped(f.phase, f.diagnosis.clone());
                    recoveries = t.recoveries.clone();
                });
                if f.diagnosis.severity == Severity::SetAside && !was_done {
                    ctx.outcomes.update(|o| {
                        o.push(outcome(false, recoveries));
                        keep_recent(o, now_ms());
                    });
                    take_off_line(ctx, &unit);
                }
            }
        }
        let _ = storage::save_outcomes(&ctx.outcomes.get_untracked());
        ctx.refresh_pool();
    });
}

/// In training, a finished unit (green, or red and set aside) leaves the bench as it would on
/// a line: it is unplugged, so a reload brings back only the units still being worked on.
fn take_off_line(ctx: Ctx, unit: &str) {
    if let Some(i) = ctx.sim_index.with_value(|m| m.get(unit).copied()) {
        ctx.training.with_value(|b| {
            if let Some(b) = b {
                let _ = b.unplug(i);
            }
        });
    }
}

/// The header's line on what the station owes the server: reports, and locks to record.
fn owed_text(reports: usize, locks: usize, held: Option<String>) -> String {
    let what = match (reports, locks) {
        (r, 0) => format!("{r} report(s) pending"),
        (0, l) => format!("{l} lock(s) not yet recorded"),
        (r, l) => format!("{r} report(s) and {l} lock(s) pending"),
    };
    match held {
        None => format!("{what}: kept on this station, sent when the server answers"),
        Some(why) => format!("{what}, kept on this station and not sent: {why}"),
    }
}

/// While signed in, reports every few seconds the installations the server has not recorded
/// yet (written while it was unreachable), and keeps the pending count on screen.
/// Stops when the session it was started for ends.
async fn reconciler(ctx: Ctx, epoch: u32) {
    loop {
        usb::sleep(5_000).await;
        if ctx.epoch.get_value() != epoch {
            return;
        }
        let Some(session) = ctx.session.get_untracked() else {
            return;
        };
        check_audit(ctx, &session).await;
        if ctx.epoch.get_value() != epoch {
            return;
        }
        if ctx.pending.get_untracked() == 0 && ctx.locks_owed.get_untracked() == 0 {
            continue;
        }
        let journal = ctx.journal.get_value();
        let r = crate::station::reconcile(&session.server, &journal).await;
        if ctx.epoch.get_value() != epoch {
            return;
        }
        if (r.recorded > 0 || r.locks_recorded > 0 || !r.refused.is_empty())
            && let Err(e) = storage::save_journal(&journal.borrow())
        {
            ctx.say(format!("could not save the journal: {e}"));
        }
        if r.recorded > 0 {
            ctx.say(format!(
                "server back: {} pending report(s) recorded, {} left",
                r.recorded, r.pending
            ));
        }
        if r.locks_recorded > 0 {
            ctx.say(format!(
                "server back: {} lock(s) recorded, {} left",
                r.locks_recorded, r.locks_pending
            ));
        }
        ctx.held.set(r.held.as_ref().map(|e| {
            let d = Diagnosis::from_server(e);
            format!("{} {}", d.detail, d.fix)
        }));
        for (id, e) in &r.refused {
            let ServerError::Refused { code, message } = e else {
                continue;
            };
            let d = Diagnosis::report_refused(*code, message);
            ctx.say(format!(
                "report of {id} refused for good: {} {}",
                d.detail, d.fix
            ));
            let unit = journal
                .borrow()
                .get(id)
                .and_then(|e| e.step.unit().map(str::to_string));
            // Set aside as if the flow had been refused: counted, and in training off the bench.
            if let Some(unit) = unit {
                let mut recoveries = Vec::new();
                ctx.set_tile(&unit, |t| {
                    t.stopped(Phase::Report, d.clone());
                    recoveries = t.recoveries.clone();
                });
                ctx.outcomes.update(|o| {
                    o.push(Outcome {
                        at_ms: now_ms(),
                        station: session.server.station.clone(),
                        technician: session.user.username.clone(),
                        ok: false,
                        attempts: 1,
                        recoveries,
                        duration_ms: 0,
                    });
                    keep_recent(o, now_ms());
                });
                let _ = storage::save_outcomes(&ctx.outcomes.get_untracked());
                take_off_line(ctx, &unit);
            }
        }
        if let Some(e) = &r.unintelligible {
            let d = Diagnosis::from_server(e);
            ctx.say(format!("{}: {} {}", d.title, d.detail, d.fix));
        }
        ctx.refresh_pool();
    }
}

/// Asks the server for the proofs that the units this station reported are in its audit log,
/// and has them checked from the bytes by the audit-log check's module (imprint-proofs, loaded
/// on first use: `web::proofs`): the checkpoint under the pinned key (WebCrypto), the log only
/// ever growing, each unit's entry being its report. An alarm stays on screen; provisioning
/// goes on.
async fn check_audit(ctx: Ctx, session: &Session) {
    use crate::state::audit::Outcome;
    if ctx.audit_alarm.get_untracked().is_some() {
        return;
    }
    let journal = ctx.journal.get_value();
    let Some(request) = journal.borrow().audit.request() else {
        return;
    };
    let answer = match session.server.install_proofs_text(&request).await {
        Ok(a) => a,
        Err(ServerError::Offline(_)) => return,
        Err(e) => {
            let d = Diagnosis::from_server(&e);
            ctx.say(format!(
                "audit log: proofs not read: {} {}",
                d.detail, d.fix
            ));
            return;
        }
    };
    let pinned = storage::get(LOG_KEY);
    let state = crate::json::to_string(&journal.borrow().audit);
    let outcome = match state {
        Ok(state) => {
            crate::web::proofs::check(answer, pinned.clone(), state, session.factory.as_str()).await
        }
        Err(e) => Outcome::NoVerdict(format!(
            "the station's audit state could not be written ({e})"
        )),
    };
    match outcome {
        Outcome::Checked { checked, key } => {
            if pinned.is_none() {
                storage::set(LOG_KEY, &key);
            }
            let n = journal.borrow_mut().audit.apply(checked);
            if let Err(e) = storage::save_journal(&journal.borrow()) {
                ctx.say(format!("could not save the journal: {e}"));
            }
            if n > 0 {
                ctx.say(format!("{n} unit(s) proven in the server's audit log"));
            }
            ctx.refresh_pool();
        }
        Outcome::NoVerdict(why) => ctx.say(format!("audit log: no verdict: {why}")),
        Outcome::Alarm(alarm) => {
            ctx.say(format!("AUDIT ALARM: {alarm}"));
            ctx.audit_alarm.set(Some(alarm));
        }
    }
}

/// Listens for units plugged and unplugged (kiosk policy, training, or granted before).
fn listen(ctx: Ctx) {
    let Some(usb) = usb::navigator_usb() else {
        return;
    };
    // Once per `navigator.usb` (training mode puts its own in place).
    if ctx
        .listening
        .with_value(|l| l.as_ref().is_some_and(|l| js_sys::Object::is(l, &usb)))
    {
        return;
    }
    ctx.listening.set_value(Some(usb.clone()));
    let on_connect = Closure::<dyn Fn(JsValue)>::new(move |e: JsValue| {
        let device = js_sys::Reflect::get(&e, &"device".into()).unwrap_or(JsValue::UNDEFINED);
        ctx.say(format!("unit {} plugged in", usb::serial_of(&device)));
        start_unit(ctx, device);
    });
    let on_disconnect = Closure::<dyn Fn(JsValue)>::new(move |e: JsValue| {
        let device = js_sys::Reflect::get(&e, &"device".into()).unwrap_or(JsValue::UNDEFINED);
        let unit = usb::serial_of(&device);
        ctx.say(format!("unit {unit} unplugged"));
        if ctx
            .tiles
            .with_untracked(|t| t.iter().any(|t| t.unit == unit))
        {
            ctx.set_tile(&unit, Tile::unplugged);
        }
    });
    if let Ok(add) = js_sys::Reflect::get(&usb, &"addEventListener".into())
        .and_then(|f| f.dyn_into::<js_sys::Function>())
    {
        let _ = add.call2(&usb, &"connect".into(), on_connect.as_ref());
        let _ = add.call2(&usb, &"disconnect".into(), on_disconnect.as_ref());
    }
    on_connect.forget();
    on_disconnect.forget();
}

/// Starts the station for a session (a sign-in, or a session kept over a reload): the
/// factory's own journal and log, its in-doubt units, the journal of an earlier version taken
/// over by the server's word, and training mode if it was on in this tab.
fn enter(ctx: Ctx, session: Session) {
    let journal = match storage::load_journal(&session.factory) {
        Ok(j) => j,
        Err(damaged) => {
            web_sys::console::error_1(&JsValue::from_str(&damaged.message));
            session.keep();
            ctx.damaged.set(Some(damaged));
            return;
        }
    };
    ctx.epoch.update_value(|e| *e += 1);
    ctx.journal.set_value(Rc::new(RefCell::new(journal)));
    ctx.log.set(storage::load_log(&session.factory));
    ctx.log_dirty.set_value(false);
    // The bench as this tab left it (a reload, a sign-in again): units mid-way wait to be
    // plugged in again, and that counts as a recovery.
    let mut tiles = storage::load_bench(&session.factory);
    for t in &mut tiles {
        t.restored();
    }
    ctx.tiles.set(tiles);
    ctx.bench_dirty.set_value(true);
    ctx.held.set(None);
    ctx.audit_alarm.set(None);
    ctx.say(format!(
        "signed in: {} of {} at {}, product {}",
        session.user.username, session.factory, session.server.station, session.product
    ));
    let in_doubt = ctx
        .journal
        .with_value(|j| j.borrow().units_mid_way().count());
    if in_doubt > 0 {
        ctx.say(format!("{in_doubt} unit(s) of {} were mid-way when the station last stopped: plug those units in again to finish them", session.factory));
    }
    session.keep();
    ctx.session.set(Some(session.clone()));
    ctx.refresh_pool();
    if storage::training_was_on() && !ctx.training_on.get_untracked() {
        start_training(ctx);
    }
}

/// Takes over from the station's journal of an earlier version (one for every factory) the
/// entries that the server lists as this factory's open records; the rest wait for their
/// factories.
async fn adopt_unowned(ctx: Ctx, session: Session, old: Result<Journal, storage::Damaged>) {
    let mut old = match old {
        Ok(j) => j,
        Err(d) => {
            ctx.say(format!("the station's journal of an earlier version does not read ({}): it is kept as it is; tell the operator", d.message));
            return;
        }
    };
    let journal = ctx.journal.get_value();
    let epoch = ctx.epoch.get_value();
    let open: std::collections::HashSet<ApparatusId> = match session.server.open_records().await {
        Ok(records) => records.into_iter().map(|r| r.apparatus_id).collect(),
        Err(e) => {
            ctx.say(format!(
                "the journal of an earlier version is kept for later: {}",
                Diagnosis::from_server(&e).detail
            ));
            return;
        }
    };
    if ctx.epoch.get_value() != epoch {
        // Signed out meanwhile: the next sign-in of this factory shares it out.
        return;
    }
    let n = journal.borrow_mut().adopt(&mut old, |id| open.contains(id));
    if let Err(e) = storage::save_journal(&journal.borrow()) {
        ctx.say(format!("could not save the journal: {e}"));
        return;
    }
    if let Err(e) = storage::save_unowned_journal(&old) {
        ctx.say(format!(
            "could not save the journal of an earlier version: {e}"
        ));
    }
    if n > 0 {
        ctx.say(format!(
            "took over {n} record(s) of {} from the station's journal of an earlier version; {} left for other factories",
            session.factory,
            old.entries.len()
        ));
    }
    ctx.refresh_pool();
}

/// Signs out: hands the unused records back first if asked, stores the log, ends the session
/// on the server and forgets it in this tab. The factory's journal stays, with what is
/// mid-way, for its next sign-in.
async fn leave(ctx: Ctx, hand_back: bool) {
    let Some(session) = ctx.session.get_untracked() else {
        return;
    };
    // No unit starts from here on (a kiosk plug-in, Connect unit): none can take a record
    // being handed back.
    ctx.leaving.set_value(true);
    let journal = ctx.journal.get_value();
    if hand_back {
        let unused: Vec<ApparatusId> = journal.borrow().unused().map(|r| r.apparatus_id).collect();
        let mut back = 0;
        for id in unused {
            match session.server.release(id).await {
                Ok(()) => {
                    if let Err(e) = journal.borrow_mut().released(&id) {
                        ctx.say(format!("{id} handed back but still in the journal: {e}"));
                    }
                    back += 1;
                }
                Err(e) => {
                    ctx.say(format!(
                        "{id} kept: the server did not take it back ({})",
                        Diagnosis::from_server(&e).detail
                    ));
                }
            }
        }
        if let Err(e) = storage::save_journal(&journal.borrow()) {
            ctx.say(format!("could not save the journal: {e}"));
        }
        ctx.say(format!("{back} unused record(s) handed back to the server"));
    }
    ctx.say(format!("signed out: {}", session.user.username));
    let _ = session.server.logout().await;
    if ctx.training_on.get_untracked() {
        // Training's simulated units stand in for `navigator.usb` until the page is loaded
        // again: the next technician starts on real units (training's units stay in the tab).
        storage::keep_training_off();
        end_of_shift(ctx);
        if let Some(w) = web_sys::window() {
            let _ = w.location().reload();
        }
        return;
    }
    signed_out(ctx);
    ctx.leaving.set_value(false);
}

/// Back to the sign-in page: the factory's log stored, its session forgotten in this tab,
/// nothing of its journal, tiles or log left on screen for the next technician.
fn signed_out(ctx: Ctx) {
    end_of_shift(ctx);
    ctx.epoch.update_value(|e| *e += 1);
    ctx.tiles.set(Vec::new());
    ctx.log.set(Vec::new());
    ctx.journal
        .set_value(Rc::new(RefCell::new(Journal::default())));
    ctx.refresh_pool();
    ctx.session.set(None);
}

/// What a sign-out stores: the factory's log, its bench with only the units left mid-way (the
/// next sign-in of the factory finds those, not the finished ones, which are on the server and
/// in the log), and no session in this tab.
fn end_of_shift(ctx: Ctx) {
    ctx.save_log();
    ctx.tiles.update(|t| t.retain(Tile::is_mid_way));
    ctx.bench_dirty.set_value(true);
    ctx.save_bench();
    storage::keep_session(None);
}

/// Turns training mode on: loads its module, puts its simulated units in place of USB, and
/// brings back the units still plugged in from before a reload.
fn start_training(ctx: Ctx) {
    ctx.training_loading.set(true);
    spawn_local(async move {
        match crate::web::training::start().await {
            Ok(bus) => {
                ctx.training.set_value(Some(bus.clone()));
                ctx.training_on.set(true);
                storage::keep_training_on();
                listen(ctx);
                ctx.say(
                    "training mode: simulated units replace USB; nothing here touches hardware"
                        .into(),
                );
                // Units still plugged in from before a reload come back and resume.
                let n = bus.restore().unwrap_or(0);
                for i in 0..n {
                    let serial = usb::serial_of(&bus.device(i));
                    ctx.sim_index.update_value(|m| {
                        m.insert(serial, i);
                    });
                }
                if n > 0 {
                    ctx.say(format!(
                        "training: {n} simulated unit(s) still plugged in from before the reload"
                    ));
                }
            }
            Err(e) => ctx.say(e),
        }
        ctx.training_loading.set(false);
    });
}

#[component]
fn Login(ctx: Ctx) -> impl IntoView {
    let user = RwSignal::new(String::new());
    let pass = RwSignal::new(String::new());
    let station =
        RwSignal::new(storage::get("imprint.station").unwrap_or_else(|| "station-1".into()));
    let product =
        RwSignal::new(storage::get("imprint.product").unwrap_or_else(|| "CAM-X100".into()));
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        spawn_local(async move {
            // Only a technician's sign-in needs the product code (admins and auditors get the
            // console); it is checked before signing in, so a typo costs no session.
            let code = ProductCode::new(product.get_untracked().trim());
            match crate::client::login(&Fetch, &user.get_untracked(), &pass.get_untracked()).await {
                Ok(answer) if answer.user.role == Role::Technician && code.is_err() => {
                    let server = Client {
                        transport: Fetch,
                        token: answer.token,
                        station: String::new(),
                    };
                    let _ = server.logout().await;
                    if let Err(e) = code {
                        error.set(Some(format!("Product code: {e}")));
                    }
                }
                Ok(answer) if answer.user.role == Role::Technician => {
                    let Ok(code) = code else { return };
                    let server = Client {
                        transport: Fetch,
                        token: answer.token,
                        station: station.get_untracked(),
                    };
                    // The product must be one the server knows, and how it is configured
                    // decides the flow: a chip-bound product's records are fetched per unit.
                    let known = match server.products().await {
                        Ok(list) => list
                            .iter()
                            .find(|p| p.product_code == code)
                            .map(|p| (p.chip_bound, p.lock_units))
                            .ok_or_else(|| format!("Product code {code} is not configured on the server: check the work order, or ask the operator to map it.")),
                        Err(e) => Err(Diagnosis::from_server(&e).detail),
                    };
                    let known = known.and_then(|c| {
                        answer.user.factory.map(|f| (c, f)).ok_or_else(|| {
                            "This technician is bound to no factory: ask the operator.".to_string()
                        })
                    });
                    match known {
                        Ok(((chip_bound, lock_units), factory)) => {
                            storage::set("imprint.station", &station.get_untracked());
                            storage::set("imprint.product", code.as_str());
                            ctx.notice.set(None);
                            enter(
                                ctx,
                                Session {
                                    server,
                                    user: answer.user,
                                    factory,
                                    product: code,
                                    chip_bound,
                                    lock_units,
                                    expires_ms: now_ms() + SESSION_MS,
                                },
                            );
                        }
                        Err(why) => {
                            let _ = server.logout().await;
                            error.set(Some(why));
                        }
                    }
                }
                // Admins and auditors get the console, a module of its own.
                Ok(answer) => match crate::web::console::open(&answer).await {
                    Ok(()) => ctx.console.set(true),
                    Err(why) => error.set(Some(why)),
                },
                Err(e) => error.set(Some(Diagnosis::from_server(&e).detail)),
            }
            busy.set(false);
        });
    };
    view! {
        <main class="login">
            <h1>"Imprint station"</h1>
            <form on:submit=submit>
                <label>"User"<input id="user" autocomplete="username" prop:value=move || user.get() on:input=move |e| user.set(event_target_value(&e))/></label>
                <label>"Password"<input id="pass" type="password" autocomplete="current-password" prop:value=move || pass.get() on:input=move |e| pass.set(event_target_value(&e))/></label>
                <label>"Station"<input id="station" prop:value=move || station.get() on:input=move |e| station.set(event_target_value(&e))/></label>
                <label>"Product code"<input id="product" prop:value=move || product.get() on:input=move |e| product.set(event_target_value(&e))/></label>
                <button id="signin" type="submit" disabled=move || busy.get()>"Sign in"</button>
                <p class="hint">"Admins and auditors: sign in here too; the console opens (station and product code are for technicians)."</p>
                <Show when=move || error.get().is_some()>
                    <p class="error">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <Show when=move || ctx.notice.get().is_some()>
                    <p class="notice" id="notice">{move || ctx.notice.get().unwrap_or_default()}</p>
                </Show>
            </form>
        </main>
    }
}

#[component]
fn TileView(tile: Tile, ctx: Ctx) -> impl IntoView {
    let (class, icon, headline) = match &tile.status {
        Status::Working => ("tile working", "…", format!("{}…", tile.phase.label())),
        Status::Done {
            apparatus_id,
            resumed,
        } => (
            "tile ok",
            "✓",
            format!("{apparatus_id}{}", if *resumed { " (resumed)" } else { "" }),
        ),
        Status::Failed(d) => (
            if d.severity == Severity::SetAside {
                "tile bad"
            } else {
                "tile retry"
            },
            "✗",
            d.title.clone(),
        ),
        Status::Unplugged => (
            "tile retry",
            "⏏",
            "Unplugged: plug it back in to continue".to_string(),
        ),
    };
    let failed = match &tile.status {
        Status::Failed(d) => Some(d.clone()),
        _ => None,
    };
    let unit = tile.unit.clone();
    let lock_units = ctx
        .session
        .with_untracked(|s| s.as_ref().is_some_and(|s| s.lock_units));
    let percent = match tile.status {
        Status::Done { .. } => 100,
        _ => tile.phase.percent(lock_units),
    };
    let steps = Phase::steps(lock_units)
        .iter()
        .map(|p| {
            let cls = if *p < tile.phase || matches!(tile.status, Status::Done { .. }) {
                "step past"
            } else if *p == tile.phase {
                "step now"
            } else {
                "step"
            };
            view! { <span class=cls>{p.label()}</span> }
        })
        .collect_view();
    let is_training = ctx.training.with_value(Option::is_some);
    let title = tile.title();
    // The USB serial under the product serial, on one line (cut with an ellipsis, in full on
    // hover), once the label is known; before that it is the title.
    let usb = tile.label.is_some().then(|| unit.clone());
    let buttons = tile
        .actions(is_training)
        .into_iter()
        .map(|a| {
            let u = unit.clone();
            match a {
                Action::Retry => view! {
                    <button class="retry" on:click=move |_| {
                        if let Some(dev) = ctx.devices.with_value(|d| d.get(&u).cloned()) { start_unit(ctx, dev) }
                    }>"Retry"</button>
                }
                .into_any(),
                Action::PullCable => view! {
                    <button class="pull" on:click=move |_| {
                        if let Some(i) = ctx.sim_index.with_value(|m| m.get(&u).copied()) {
                            ctx.training.with_value(|b| if let Some(b) = b { let _ = b.unplug(i); });
                        }
                    }>"Pull cable"</button>
                }
                .into_any(),
                Action::PlugBack => view! {
                    <button class="plug" on:click=move |_| {
                        if let Some(i) = ctx.sim_index.with_value(|m| m.get(&u).copied()) {
                            ctx.training.with_value(|b| if let Some(b) = b { let _ = b.replug(i); });
                        }
                    }>"Plug back"</button>
                }
                .into_any(),
                Action::SetAside => view! {
                    <button class="set-aside" title="the unit is set aside: move its tile to the done list" on:click=move |_| {
                        ctx.set_tile(&u, |t| t.finished_at_ms = Some(now_ms()));
                    }>"Set aside ✓"</button>
                }
                .into_any(),
            }
        })
        .collect_view();
    view! {
        <section class=class data-unit=unit.clone()>
            <header><span class="icon">{icon}</span><span class="unit"><b class="label">{title}</b>{usb.map(|u| view! { <span class="usb" title=u.clone()>{u.clone()}</span> })}</span></header>
            <p class="headline">{headline}</p>
            <div class="bar"><div class="fill" style=format!("width:{percent}%")></div></div>
            <div class="steps">{steps}</div>
            {failed.map(|d| view! { <p class="detail">{d.detail}</p><p class="fix">"What to do: "{d.fix}</p> })}
            <footer>{buttons}</footer>
        </section>
    }
}

/// Finished units, newest first, one line each (`bench::done_list`): green ones a few seconds
/// after they finish, red ones once set aside.
#[component]
fn DoneList(ctx: Ctx) -> impl IntoView {
    let html = move || {
        let now = ctx.now.get();
        ctx.tiles
            .with(|t| crate::state::bench::done_list(t, now, clock_hm))
    };
    view! { <div inner_html=html></div> }
}

/// The line's figures (`chart::figures_html`), redrawn when an outcome is added and every
/// second (the window moves).
#[component]
fn Figures(ctx: Ctx) -> impl IntoView {
    let html = move || {
        // Redrawn by the clock's tick, drawn at the time now: an outcome recorded since the
        // last tick is in the window.
        ctx.now.track();
        let now = now_ms();
        ctx.outcomes
            .with(|o| crate::state::chart::figures_html(o, now, clock_hm))
    };
    view! { <section class="figures" inner_html=html></section> }
}

#[component]
fn Station(ctx: Ctx) -> impl IntoView {
    let fetch_busy = RwSignal::new(false);
    let chip_bound = move || {
        ctx.session
            .with(|s| s.as_ref().is_some_and(|s| s.chip_bound))
    };
    let support = usb::navigator_usb().is_some();
    // No record ready on a model-bound line: fetching comes first, and the page says so.
    let needs_records = move || ctx.pool.get() == 0 && !chip_bound();
    let secure = web_sys::window()
        .map(|w| w.is_secure_context())
        .unwrap_or(false);
    let fetch = move |_| {
        let Some(s) = ctx.session.get_untracked() else {
            return;
        };
        fetch_busy.set(true);
        let journal = ctx.journal.get_value();
        spawn_local(async move {
            match s.server.issue(s.product, 10).await {
                Ok(records) => {
                    let n = ctx.add_records(&journal, records);
                    ctx.say(format!("fetched {n} records of {}", s.product));
                }
                Err(e) => ctx.say(format!(
                    "fetch failed: {}",
                    Diagnosis::from_server(&e).detail
                )),
            }
            ctx.refresh_pool();
            fetch_busy.set(false);
        });
    };
    let take_lease = move |_| {
        let Some(s) = ctx.session.get_untracked() else {
            return;
        };
        fetch_busy.set(true);
        let journal = ctx.journal.get_value();
        spawn_local(async move {
            match s.server.lease(s.product, 20, 8).await {
                Ok(lease) => {
                    let checked = match pinned_lease_key() {
                        Ok(key) => crate::web::crypto::accept_lease(&lease, &key, now_ms()).await,
                        Err(e) => Err(e),
                    };
                    match checked {
                        Ok(records) => {
                            let n = ctx.add_records(&journal, records);
                            // Rounded, not cut: a lease of 8 hours read a second later is 8 h.
                            let hours = (lease.not_after_ms.saturating_sub(now_ms()) + 1_800_000)
                                / 3_600_000;
                            ctx.say(format!("lease {}: {n} records, signature checked, usable offline until {} ({hours} h)", lease.lease_id, clock_at(lease.not_after_ms)));
                        }
                        Err(e) => ctx.say(format!("lease refused: {e}")),
                    }
                }
                Err(e) => ctx.say(format!(
                    "lease failed: {}",
                    Diagnosis::from_server(&e).detail
                )),
            }
            ctx.refresh_pool();
            fetch_busy.set(false);
        });
    };
    let connect = move |_| {
        spawn_local(async move {
            match usb::request_unit().await {
                Ok(dev) => start_unit(ctx, dev),
                Err(e) => {
                    let d = Diagnosis::from_link(&e);
                    ctx.say(format!("{}: {} {}", d.title, d.detail, d.fix));
                }
            }
        });
    };
    // The number of the last good unit plugged: a unit with a duplicated serial label takes it.
    let last_good = StoredValue::new_local(None::<u32>);
    let plug = move |kind: &'static str| {
        let n = match kind {
            "duplicate-serial" => match last_good.get_value() {
                Some(n) => n,
                None => {
                    ctx.say(
                        "training: plug a good unit first; the duplicate takes its serial".into(),
                    );
                    return;
                }
            },
            _ => (js_sys::Math::random() * 1e6) as u32,
        };
        if kind == "demo" {
            last_good.set_value(Some(n));
        }
        // A good unit is of the line's model: the chip-bound one when the product is.
        let kind = match kind {
            "demo"
                if ctx
                    .session
                    .with_untracked(|s| s.as_ref().is_some_and(|s| s.chip_bound)) =>
            {
                "chip-bound"
            }
            other => other,
        };
        ctx.training.with_value(|b| {
            if let Some(bus) = b
                && let Ok(i) = bus.plug(kind, n)
            {
                let serial = usb::serial_of(&bus.device(i));
                ctx.sim_index.update_value(|m| {
                    m.insert(serial, i);
                });
            }
        });
    };
    let training_on = ctx.training_on;
    let training_loading = ctx.training_loading;
    let sim = move |kind: &'static str, fault: &'static str, arg: u32| {
        move |_| {
            plug(kind);
            if fault != "none" {
                // The unit just plugged is the last one: set its fault before its install.
                ctx.training.with_value(|b| {
                    if let Some(bus) = b
                        && let Some(last) = bus.count().checked_sub(1)
                    {
                        crate::web::training::set_fault(&bus.device(last), fault, arg);
                    }
                });
            }
        }
    };
    let download = move |_| storage::download_log(&ctx.log.get_untracked().join("\n"));
    // Signing out with units mid-way or records unused first says what becomes of them.
    let signing_out = RwSignal::new(false);
    let leaving = move |hand_back: bool| {
        move |_| {
            signing_out.set(false);
            spawn_local(leave(ctx, hand_back));
        }
    };
    let sign_out = move |_| {
        let (mid, unused) = ctx.journal.with_value(|j| {
            let j = j.borrow();
            (j.units_mid_way().count(), j.unused().count())
        });
        let working = ctx
            .tiles
            .with_untracked(|t| t.iter().any(|t| t.status == Status::Working));
        if working || mid > 0 || unused > 0 {
            signing_out.set(true);
        } else {
            spawn_local(leave(ctx, false));
        }
    };
    let factory = move || {
        ctx.session
            .with(|s| s.as_ref().map(|s| s.factory.to_string()))
            .unwrap_or_default()
    };
    view! {
        <header class="top">
            <h1>"Imprint station"</h1>
            <span class="who">{move || ctx.session.get().map(|s| format!("{} · {} · {} · {}", s.user.username, s.user.factory.map(|f| f.to_string()).unwrap_or_default(), s.server.station, s.product)).unwrap_or_default()}</span>
            <span class="pool" id="pool">{move || if chip_bound() { "chip-bound: each unit's record is fetched as it is plugged in".to_string() } else { format!("{} records ready", ctx.pool.get()) }}</span>
            <Show when=move || { ctx.pending.get() + ctx.locks_owed.get() > 0 }>
                <span class="pending" id="pending">{move || owed_text(ctx.pending.get(), ctx.locks_owed.get(), ctx.held.get())}</span>
            </Show>
            {move || {
                ctx.pool.get();
                ctx.now.get();
                ctx.journal.with_value(|j| j.borrow().lease_left(now_ms())).map(|(n, until)| view! {
                    <span class="lease" id="lease-badge" title="records of an offline lease: usable without the server until then">{format!("offline lease: {n} left, until {}", clock_hm(until))}</span>
                })
            }}
            <Show when=move || { ctx.in_log.get() > 0 }>
                <span class="in-log" id="in-log" title="units this station reported, found in the server's audit log and checked from its signed checkpoint">{move || format!("{} unit(s) proven in the audit log", ctx.in_log.get())}</span>
            </Show>
            {move || ctx.audit_alarm.get().map(|a| view! {
                <span class="refused" id="audit-alarm" title="the server's audit log was changed behind this station's back">{format!("Audit alarm: {a}")}</span>
            })}
            <Show when=move || { ctx.refused.get() > 0 }>
                <span class="refused" id="refused" title="the server will not accept these units' reports: set them aside for the operator">{move || format!("{} report(s) refused: units set aside, see the red tiles and the log", ctx.refused.get())}</span>
            </Show>
            <button id="fetch" class=move || if needs_records() { "primary" } else { "" } on:click=fetch disabled=move || fetch_busy.get() || chip_bound() title=move || if chip_bound() { "not for a chip-bound product: each unit's record is fetched for its chip" } else { "10 records for the next units" }>"Fetch 10 records"</button>
            <button id="lease" on:click=take_lease disabled=move || fetch_busy.get() || chip_bound() title=move || if chip_bound() { "not for a chip-bound product: its records need the server, one per unit" } else { "20 signed records usable for 8 hours without the server" }>"Take offline lease"</button>
            <button id="connect" class=move || if needs_records() { "" } else { "primary" } on:click=connect disabled=!support>"Connect unit"</button>
            <button id="training" on:click=move |_| start_training(ctx) disabled=move || training_loading.get() || training_on.get()>"Training mode"</button>
            <button id="download" on:click=download>"Download log"</button>
            <button id="sign-out" on:click=sign_out>"Sign out"</button>
        </header>
        <Show when=move || signing_out.get()>
            <section class="banner warn sign-out" id="sign-out-panel">
                {move || {
                    let (mid, unused) = ctx.journal.with_value(|j| {
                        let j = j.borrow();
                        (j.units_mid_way().count(), j.unused().count())
                    });
                    let working = ctx.tiles.with(|t| t.iter().filter(|t| t.status == Status::Working).count());
                    let f = factory();
                    if working > 0 {
                        view! {
                            <p><b>{format!("{working} unit(s) are being written right now.")}</b>" Wait until they finish, then sign out."</p>
                            <button on:click=move |_| signing_out.set(false)>"Stay signed in"</button>
                        }.into_any()
                    } else {
                        view! {
                            {(mid > 0).then(|| view! { <p id="sign-out-mid"><b>{format!("{mid} unit(s) of {f} are mid-way.")}</b>{format!(" Their records stay on this station with {f}: a technician of {f} signs in here and plugs them in to finish them. A technician of another factory who plugs one in is told to set it aside.")}</p> })}
                            {(unused > 0).then(|| view! { <p id="sign-out-unused"><b>{format!("{unused} unused record(s) of {f}.")}</b>{format!(" They stay on this station for {f}'s next sign-in, or can be handed back to the server now if {f} will not use this station again.")}</p> })}
                            <button id="sign-out-keep" class="primary" on:click=leaving(false)>"Sign out"</button>
                            {(unused > 0).then(|| view! { <button id="sign-out-release" on:click=leaving(true)>{format!("Hand back {unused} record(s) and sign out")}</button> })}
                            <button on:click=move |_| signing_out.set(false)>"Stay signed in"</button>
                        }.into_any()
                    }
                }}
            </section>
        </Show>
        <Show when=needs_records>
            <p class="banner warn" id="fetch-first"><b>"No records on this station yet."</b>" Click \"Fetch 10 records\" (or take an offline lease) before plugging units in: without one a unit waits with \"No record for this unit\"."</p>
        </Show>
        {(!support).then(|| { let d = Diagnosis::no_webusb(secure); view! { <p class="banner bad" id="no-webusb"><b>{d.title}</b>" "{d.detail}" "{d.fix}</p> } })}
        <Show when=move || ctx.hidden.get()>
            <p class="banner warn">"This tab is hidden: browsers slow hidden tabs down, which slows the line. Keep the station in front."</p>
        </Show>
        <Show when=move || training_on.get()>
            <section class="training">
                <b>"Training: plug a simulated unit"</b>
                <button id="sim-demo" on:click=sim("demo", "none", 0)>"Good unit"</button>
                <button id="sim-unplug" on:click=sim("demo", "unplug-after-install", 0)>"Cable pulled mid-write"</button>
                <button id="sim-power" on:click=sim("demo", "power-cut", 300)>"Power cut mid-write"</button>
                <button id="sim-garbage" on:click=sim("demo", "garbage", 0)>"Answers garbage"</button>
                <button id="sim-slow" on:click=sim("demo", "slow", 800)>"Slow unit"</button>
                <button id="sim-wrong" on:click=sim("wrong-model", "none", 0)>"Wrong model"</button>
                <button id="sim-locked" on:click=sim("locked", "none", 0)>"Already locked"</button>
                <button id="sim-lock-fails" on:click=sim("demo", "lock-fails", 0) title="the unit's flash refuses the lock once, where the product locks its units">"Lock write fails"</button>
                <Show when=move || !chip_bound()>
                    <button id="sim-duplicate" on:click=sim("duplicate-serial", "none", 0) title="the serial label of the last good unit on another chip: the server refuses its report">"Duplicate serial label"</button>
                </Show>
                <Show when=chip_bound>
                    <button id="sim-clone" on:click=sim("demo", "claims-other-chip", 0) title="reports another unit's chip ID, as a cloned or counterfeit unit would">"Cloned chip ID"</button>
                </Show>
            </section>
        </Show>
        <div class="layout">
            <div class="tiles" id="tiles">
                <For each=move || { let now = ctx.now.get(); ctx.tiles.get().into_iter().filter(|t| !t.folded(now)).collect::<Vec<_>>() } key=|t| (t.unit.clone(), format!("{:?}{:?}{:?}", t.phase, t.status, t.finished_at_ms)) children=move |t| view! { <TileView tile=t ctx=ctx/> }/>
                <Show when=move || { let now = ctx.now.get(); ctx.tiles.with(|t| t.iter().all(|t| t.folded(now))) }>
                    <p class="empty">"Plug in a unit and click \"Connect unit\" (or turn on training mode). Several units can run at once."</p>
                </Show>
                <DoneList ctx=ctx/>
            </div>
            <aside>
                <Figures ctx=ctx/>
                <section class="log">
                    <h2>"Log"</h2>
                    <pre id="log">{move || ctx.log.get().iter().rev().take(200).cloned().collect::<Vec<_>>().join("\n")}</pre>
                </section>
            </aside>
        </div>
    }
}

/// The station stopped because its stored journal does not read: the message, the damaged
/// text to download, and a way to set it aside (kept under a key of its own) and start empty.
/// Nothing here writes the journal.
#[component]
fn DamagedJournal(damaged: storage::Damaged) -> impl IntoView {
    let text = damaged.text.clone();
    let download = move |_| storage::download(&text, "imprint-damaged-journal.json");
    let result = RwSignal::new(None::<String>);
    let kept = damaged.clone();
    let set_aside = move |_| match storage::set_damaged_journal_aside(&kept) {
        Ok(key) => {
            result.set(Some(format!(
                "kept as {key}; reloading with an empty journal"
            )));
            if let Some(w) = web_sys::window() {
                let _ = w.location().reload();
            }
        }
        Err(e) => result.set(Some(e)),
    };
    view! {
        <main class="login" id="journal-damaged">
            <h1>"Station stopped"</h1>
            <p class="banner bad"><b>{damaged.message}</b></p>
            <p>"The journal says which unit holds which record. Nothing has been changed or overwritten. Download it and send it to the operator before anything else: units that were mid-way can be matched from it."</p>
            <button id="download-journal" class="primary" on:click=download>"Download the damaged journal"</button>
            <p>"Once it is downloaded and the operator agrees, the station can start again with an empty journal; the damaged one stays in this browser under a key of its own."</p>
            <button id="set-aside" on:click=set_aside>"Keep it aside and start empty"</button>
            <p>{move || result.get().unwrap_or_default()}</p>
        </main>
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx {
        session: RwSignal::new(None),
        tiles: RwSignal::new(Vec::new()),
        log: RwSignal::new(Vec::new()),
        outcomes: RwSignal::new(storage::load_outcomes()),
        pool: RwSignal::new(0),
        pending: RwSignal::new(0),
        locks_owed: RwSignal::new(0),
        refused: RwSignal::new(0),
        in_log: RwSignal::new(0),
        audit_alarm: RwSignal::new(None),
        held: RwSignal::new(None),
        journal: StoredValue::new_local(Rc::new(RefCell::new(Journal::default()))),
        damaged: RwSignal::new(None),
        epoch: StoredValue::new_local(0),
        log_dirty: StoredValue::new_local(false),
        bench_dirty: StoredValue::new_local(false),
        now: RwSignal::new(now_ms()),
        listening: StoredValue::new_local(None),
        notice: RwSignal::new(None),
        leaving: StoredValue::new_local(false),
        devices: StoredValue::new_local(HashMap::new()),
        training: StoredValue::new_local(None),
        training_loading: RwSignal::new(false),
        training_on: RwSignal::new(false),
        sim_index: StoredValue::new_local(HashMap::new()),
        hidden: RwSignal::new(false),
        console: RwSignal::new(false),
    };
    if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
        // Hidden tabs are throttled: warn.
        let d2 = doc.clone();
        let on_vis = Closure::<dyn Fn()>::new(move || {
            ctx.hidden
                .set(d2.visibility_state() == web_sys::VisibilityState::Hidden)
        });
        let _ = doc
            .add_event_listener_with_callback("visibilitychange", on_vis.as_ref().unchecked_ref());
        on_vis.forget();
    }
    // The page's clock, once a second, apart from the reconciler (whose requests can take
    // long): green tiles fold, the lease badge and the figures move on; the log and the bench
    // are stored when they changed.
    spawn_local(async move {
        loop {
            usb::sleep(1_000).await;
            ctx.now.set(now_ms());
            ctx.save_log();
            ctx.save_bench();
        }
    });
    if let Some(w) = web_sys::window() {
        // The log's last lines reach storage before the page goes (reload, closed tab).
        let on_hide = Closure::<dyn Fn()>::new(move || ctx.save_log());
        let _ = w.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
        on_hide.forget();
    }
    // Signed in: pick up units granted before (after a reload) and listen for new ones.
    Effect::new(move |_| {
        if let Some(session) = ctx.session.get() {
            let for_units = session.clone();
            listen(ctx);
            spawn_local(reconciler(ctx, ctx.epoch.get_value()));
            spawn_local(async move {
                match session.server.lease_key().await.map(hex::encode) {
                    Ok(key) => match storage::get(LEASE_KEY) {
                        None => storage::set(LEASE_KEY, &key),
                        Some(pinned) if pinned != key => ctx.say(
                            "WARNING: the server's lease key differs from the one this station pinned; leases will be refused. Tell the operator.".into(),
                        ),
                        Some(_) => {}
                    },
                    Err(e) => ctx.say(format!("could not read the lease key: {}", Diagnosis::from_server(&e).detail)),
                }
            });
            spawn_local(async move {
                // The journal of an earlier version is shared out first: a unit of ours that
                // is only in it would otherwise be taken for another factory's.
                if let Some(old) = storage::load_unowned_journal() {
                    adopt_unowned(ctx, for_units, old).await;
                }
                if let Ok(units) = usb::granted_units().await {
                    for d in units {
                        start_unit(ctx, d);
                    }
                }
            });
        }
    });
    // A session kept in this tab over a reload carries on, checked with the server: one it
    // ended sends the technician back to sign in; an unreachable server keeps it (the station
    // works offline on a lease).
    if crate::web::console::kept() {
        ctx.console.set(true);
        spawn_local(async move {
            match crate::web::console::resume().await {
                Ok(true) => {}
                Ok(false) => ctx.console.set(false),
                Err(why) => {
                    ctx.notice.set(Some(why));
                    ctx.console.set(false);
                }
            }
        });
    }
    match Session::kept() {
        Some(session) => {
            let server = session.server.clone();
            enter(ctx, session);
            spawn_local(async move {
                if let Err(ServerError::Refused {
                    code: imprint_api::ErrorCode::Unauthorized,
                    ..
                }) = server.me().await
                {
                    ctx.notice.set(Some("Your session ended on the server: sign in again. Nothing on this station was lost.".into()));
                    signed_out(ctx);
                }
            });
        }
        None => storage::keep_session(None),
    }
    view! {
        <Show when=move || !ctx.console.get()>
        <Show when=move || ctx.damaged.get().is_none() fallback=move || view! { <DamagedJournal damaged=ctx.damaged.get().unwrap_or_else(|| storage::Damaged { message: String::new(), key: String::new(), text: String::new() })/> }>
            <Show when=move || ctx.session.get().is_some() fallback=move || view! { <Login ctx=ctx/> }>
                <Station ctx=ctx/>
            </Show>
        </Show>
        </Show>
    }
}
