//! What the station keeps in the browser. In localStorage: each factory's journal and log, the
//! line outcomes, the station's settings. In sessionStorage (this tab only, gone when it is
//! closed): the session and training mode, so that a reload keeps them and a closed tab does
//! not leave a session behind on a shared PC; and each factory's bench of tiles. No secret of a device is ever stored: there is
//! none in the browser (records are sealed; receipts and identities are not secret). The
//! session token is the one credential, and it lives only as long as the tab.

use imprint_core::FactoryId;
use wasm_bindgen::JsCast;

use crate::state::analytics::Outcome;
use crate::state::journal::Journal;

/// A factory's journal is stored under this prefix and the factory's ID.
const JOURNAL_PREFIX: &str = "imprint.journal.v3.";
/// The one journal of a station from before journals were kept per factory.
const UNOWNED_JOURNAL: &str = "imprint.journal.v2";
const OUTCOMES: &str = "imprint.outcomes.v1";
const LOG_PREFIX: &str = "imprint.log.v1.";
const SESSION: &str = "imprint.session.v1";
const TRAINING: &str = "imprint.training";
const BENCH_PREFIX: &str = "imprint.bench.v1.";

/// How many log lines a factory's stored log keeps (the most recent): a shift's worth at about
/// six lines a unit.
pub const LOG_LINES: usize = 3000;

fn store() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn tab_store() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

fn journal_key(factory: &FactoryId) -> String {
    format!("{JOURNAL_PREFIX}{factory}")
}

/// Reads a value.
pub fn get(key: &str) -> Option<String> {
    store()?.get_item(key).ok()?
}

/// Writes a value (best effort: settings only).
pub fn set(key: &str, value: &str) {
    if let Some(s) = store() {
        let _ = s.set_item(key, value);
    }
}

fn put(key: &str, text: &str) -> Result<(), String> {
    store()
        .ok_or_else(|| "this browser gives the station no storage (private window?)".to_string())?
        .set_item(key, text)
        .map_err(|_| "the browser refused to save the journal (storage full?)".to_string())
}

/// Persists a factory's journal, under its factory's key. Failing here matters (private mode,
/// full storage): it is reported.
pub fn save_journal(journal: &Journal) -> Result<(), String> {
    let factory = journal
        .factory
        .as_ref()
        .ok_or("a journal of no factory (a bug of the station: tell the operator)")?;
    put(&journal_key(factory), &journal.to_json()?)
}

/// A stored journal that does not read: why, where, and its text as stored (for download).
#[derive(Debug, Clone, PartialEq)]
pub struct Damaged {
    /// What is wrong.
    pub message: String,
    /// Where it is stored.
    pub key: String,
    /// The stored text, untouched.
    pub text: String,
}

fn load(key: &str) -> Option<Result<Journal, Damaged>> {
    let text = get(key)?;
    Some(Journal::from_json(&text).map_err(|message| Damaged {
        message,
        key: key.to_string(),
        text,
    }))
}

/// Loads `factory`'s journal saved by an earlier run of the page (an empty one if there is
/// none). A damaged one is reported with its text and left where it is: it is never replaced
/// by an empty journal, which would forget which unit holds which record. A journal stored
/// under the factory's key that names another factory is damaged too.
pub fn load_journal(factory: &FactoryId) -> Result<Journal, Damaged> {
    let key = journal_key(factory);
    match load(&key) {
        None => Ok(Journal::of(*factory)),
        Some(Ok(j)) if j.factory == Some(*factory) => Ok(j),
        Some(Ok(j)) => Err(Damaged {
            message: format!(
                "the journal stored for {factory} names another factory ({}): download it and tell the operator",
                j.factory
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
            key,
            text: get(&journal_key(factory)).unwrap_or_default(),
        }),
        Some(Err(d)) => Err(d),
    }
}

/// The station's journal from before journals were kept per factory, if there is one.
pub fn load_unowned_journal() -> Option<Result<Journal, Damaged>> {
    load(UNOWNED_JOURNAL)
}

/// Keeps what is left of the unowned journal for the other factories, or removes it when
/// nothing is.
pub fn save_unowned_journal(journal: &Journal) -> Result<(), String> {
    if journal.entries.is_empty() {
        if let Some(s) = store() {
            let _ = s.remove_item(UNOWNED_JOURNAL);
        }
        Ok(())
    } else {
        put(UNOWNED_JOURNAL, &journal.to_json()?)
    }
}

/// The other factories' journals on this station that know `unit`: the first such factory
/// (`None`: the station's journal of an earlier version, not shared out yet), and whether that
/// unit is finished there (checked, or its report refused for good). Journals that do not read
/// are skipped here (each is reported when its own factory signs in).
pub fn unit_of_another_factory(unit: &str, mine: &FactoryId) -> Option<(Option<FactoryId>, bool)> {
    let s = store()?;
    let len = s.length().ok()?;
    let own = journal_key(mine);
    (0..len)
        .filter_map(|i| s.key(i).ok().flatten())
        .filter(|k| k.starts_with(JOURNAL_PREFIX) && *k != own)
        .chain(std::iter::once(UNOWNED_JOURNAL.to_string()))
        .filter_map(|k| load(&k)?.ok())
        .find_map(|j| {
            let e = j.for_unit(unit)?;
            Some((j.factory, e.step.is_finished()))
        })
}

/// Moves a damaged journal aside, under a key of its own that nothing overwrites, so the
/// station can start with an empty one; returns that key.
pub fn set_damaged_journal_aside(damaged: &Damaged) -> Result<String, String> {
    let s = store().ok_or("this browser gives the station no storage")?;
    let key = format!("imprint.journal.damaged.{}", js_sys::Date::now() as u64);
    s.set_item(&key, &damaged.text).map_err(|_| {
        "the browser refused to keep the damaged journal (storage full?)".to_string()
    })?;
    s.remove_item(&damaged.key)
        .map_err(|_| "the browser refused to clear the journal".to_string())?;
    Ok(key)
}

/// Persists a factory's log (the last [`LOG_LINES`] lines).
pub fn save_log(factory: &FactoryId, lines: &[String]) -> Result<(), String> {
    let from = lines.len().saturating_sub(LOG_LINES);
    let text = crate::json::to_string(&lines.get(from..).unwrap_or_default())?;
    store()
        .ok_or("no storage")?
        .set_item(&format!("{LOG_PREFIX}{factory}"), &text)
        .map_err(|_| "the browser refused to save the log (storage full?)".to_string())
}

/// A factory's stored log (empty if there is none or it does not read: the log is a record
/// for people, not state the station acts on).
pub fn load_log(factory: &FactoryId) -> Vec<String> {
    get(&format!("{LOG_PREFIX}{factory}"))
        .and_then(|t| crate::json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Keeps the session (as JSON) for this tab; `None` forgets it.
pub fn keep_session(json: Option<&str>) {
    if let Some(s) = tab_store() {
        let _ = match json {
            Some(text) => s.set_item(SESSION, text),
            None => s.remove_item(SESSION),
        };
    }
}

/// The session kept for this tab.
pub fn kept_session() -> Option<String> {
    tab_store()?.get_item(SESSION).ok()?
}

/// Keeps a factory's tiles for this tab (best effort: the journal, not the tiles, is what the
/// station acts on).
pub fn save_bench(factory: &FactoryId, tiles: &[crate::state::bench::Tile]) {
    if let (Some(s), Ok(text)) = (tab_store(), crate::json::to_string(&tiles)) {
        let _ = s.set_item(&format!("{BENCH_PREFIX}{factory}"), &text);
    }
}

/// A factory's tiles kept in this tab (none if there are none or they do not read).
pub fn load_bench(factory: &FactoryId) -> Vec<crate::state::bench::Tile> {
    tab_store()
        .and_then(|s| s.get_item(&format!("{BENCH_PREFIX}{factory}")).ok()?)
        .and_then(|t| crate::json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Whether training mode was on in this tab.
pub fn training_was_on() -> bool {
    tab_store()
        .and_then(|s| s.get_item(TRAINING).ok()?)
        .is_some()
}

/// Forgets that training mode was on in this tab (a sign-out: the next technician starts on
/// real units).
pub fn keep_training_off() {
    if let Some(s) = tab_store() {
        let _ = s.remove_item(TRAINING);
    }
}

/// Remembers that training mode is on in this tab.
pub fn keep_training_on() {
    if let Some(s) = tab_store() {
        let _ = s.set_item(TRAINING, "on");
    }
}

/// Persists the line outcomes.
pub fn save_outcomes(outcomes: &[Outcome]) -> Result<(), String> {
    let text = crate::json::to_string(&outcomes)?;
    store()
        .ok_or("no storage")?
        .set_item(OUTCOMES, &text)
        .map_err(|_| "storage refused".to_string())
}

/// Loads the line outcomes.
pub fn load_outcomes() -> Vec<Outcome> {
    get(OUTCOMES)
        .and_then(|t| crate::json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Offers the log as a text file.
pub fn download_log(text: &str) {
    download(text, "imprint-station-log.txt");
}

/// Offers `text` as a file named `name`.
pub fn download(text: &str, name: &str) {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("text/plain");
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if let Some(a) = doc
        .create_element("a")
        .ok()
        .and_then(|e| e.dyn_into::<web_sys::HtmlAnchorElement>().ok())
    {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}
