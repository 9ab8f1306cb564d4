//! What the station keeps in the browser (localStorage): the journal, the line outcomes, the
//! station's settings. No secret is ever stored: there is none in the browser (records are
//! sealed; receipts and identities are not secret).

use wasm_bindgen::JsCast;

use crate::state::analytics::Outcome;
use crate::state::journal::Journal;

const JOURNAL: &str = "imprint.journal.v2";
const OUTCOMES: &str = "imprint.outcomes.v1";

fn store() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
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

/// Persists the journal. Failing here matters (private mode, full storage): it is reported.
pub fn save_journal(journal: &Journal) -> Result<(), String> {
    let text = journal.to_json()?;
    store()
        .ok_or_else(|| "this browser gives the station no storage (private window?)".to_string())?
        .set_item(JOURNAL, &text)
        .map_err(|_| "the browser refused to save the journal (storage full?)".to_string())
}

/// A stored journal that does not read: why, and its text as stored (for download).
#[derive(Debug, Clone, PartialEq)]
pub struct Damaged {
    /// What is wrong.
    pub message: String,
    /// The stored text, untouched.
    pub text: String,
}

/// Loads the journal saved by an earlier run of the page. A damaged one is reported with its
/// text and left where it is: it is never replaced by an empty journal, which would forget
/// which unit holds which record.
pub fn load_journal() -> Result<Journal, Damaged> {
    match get(JOURNAL) {
        Some(text) => Journal::from_json(&text).map_err(|message| Damaged { message, text }),
        None => Ok(Journal::default()),
    }
}

/// Moves a damaged journal aside, under a key of its own that nothing overwrites, so the
/// station can start with an empty one; returns that key.
pub fn set_damaged_journal_aside(text: &str) -> Result<String, String> {
    let s = store().ok_or("this browser gives the station no storage")?;
    let key = format!("imprint.journal.damaged.{}", js_sys::Date::now() as u64);
    s.set_item(&key, text).map_err(|_| {
        "the browser refused to keep the damaged journal (storage full?)".to_string()
    })?;
    s.remove_item(JOURNAL)
        .map_err(|_| "the browser refused to clear the journal".to_string())?;
    Ok(key)
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
