//! The audit-log check (crates/proofs) as a module of its own, imported the first time the
//! station has units to prove and kept for the page's life: the proofs' parsers, the tree's
//! hashing and the answer's reader are then not part of what every page load ships.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::state::audit::Outcome;

#[wasm_bindgen(inline_js = r#"
let loaded = null;
export function import_proofs(name) {
  if (!loaded) {
    loaded = import(new URL(name, document.baseURI).href)
      .then(async (m) => { await m.default(); return m; })
      .catch((e) => { loaded = null; throw e; });
  }
  return loaded;
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn import_proofs(name: &str) -> Result<js_sys::Promise, JsValue>;
}

/// The module's file, beside the portal's own, as trunk names it.
const MODULE: &str = "imprint-proofs.js";

fn message(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_default()
}

/// Checks the server's answer (its JSON text) with the module; a module that does not load or
/// answer is no verdict, never an alarm.
pub async fn check(
    answer: String,
    pinned: Option<String>,
    state: String,
    factory: &str,
) -> Outcome {
    match run(answer, pinned, state, factory).await {
        Ok(outcome) => outcome,
        Err(why) => Outcome::NoVerdict(why),
    }
}

async fn run(
    answer: String,
    pinned: Option<String>,
    state: String,
    factory: &str,
) -> Result<Outcome, String> {
    let module = super::training::module_file("imprint-proofs", MODULE);
    let why = |e: JsValue| {
        format!(
            "the audit-log check could not load {module} ({}); is the portal fully deployed?",
            message(&e)
        )
    };
    let m = JsFuture::from(import_proofs(&module).map_err(why)?)
        .await
        .map_err(why)?;
    let f: js_sys::Function = js_sys::Reflect::get(&m, &"check".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or("the audit-log check's module has no check()")?;
    let args = js_sys::Array::of4(
        &answer.into(),
        &pinned.map_or(JsValue::UNDEFINED, JsValue::from),
        &state.into(),
        &factory.into(),
    );
    let promise: js_sys::Promise = f
        .apply(&m, &args)
        .map_err(|e| format!("the audit-log check failed ({})", message(&e)))?
        .dyn_into()
        .map_err(|_| "the audit-log check did not answer a promise".to_string())?;
    let text = JsFuture::from(promise)
        .await
        .map_err(|e| format!("the audit-log check failed ({})", message(&e)))?
        .as_string()
        .ok_or("the audit-log check answered no text")?;
    crate::json::from_str(&text)
        .map_err(|e| format!("the audit-log check's verdict does not read ({e})"))
}
