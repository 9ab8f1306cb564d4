//! The page's browser-only pieces that have a native twin, checked against the same vectors:
//! JSON through the browser's own parser.

use imprint_portal::state::journal::{Journal, Step};
use wasm_bindgen_test::wasm_bindgen_test;

/// The stored journal text from the vector file (read with the browser's JSON.parse).
fn journal_text() -> String {
    let file = js_sys::JSON::parse(include_str!("../vectors/journal.json")).unwrap();
    js_sys::Reflect::get(&file, &"text".into())
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
fn the_browser_reads_and_writes_the_journal_as_the_native_code_does() {
    let text = journal_text();
    let j = Journal::from_json(&text).unwrap();
    assert_eq!(j.entries.len(), 5);
    assert_eq!(j.entries[0].record.not_after_ms, Some(1_767_225_600_000));
    assert_eq!(j.entries[0].step, Step::Pool);
    assert_eq!(j.entries[1].step.unit(), Some("u-1"));
    assert!(matches!(j.entries[4].step, Step::Verified { .. }));
    assert_eq!(j.to_json(), text, "byte for byte, as serde_json writes it");
    let err = Journal::from_json("{\"entries\": [tru").unwrap_err();
    assert!(err.contains("damaged"), "{err}");
    let err = Journal::from_json("{\"entries\": [{\"step\": \"pool\"}]}").unwrap_err();
    assert!(err.contains("damaged"), "{err}");
}
