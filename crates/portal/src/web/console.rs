//! The console for admins and auditors: a module of its own (crates/console), imported only
//! once one of them signs in, so that the station's shipped bytes carry none of it. The
//! station hands it the session and steps aside; the console keeps the session in this tab
//! (sessionStorage `imprint.console`) and signs out by forgetting it and reloading the page.

use imprint_api::LoginAnswer;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export function import_console(name) {
  return import(new URL(name, document.baseURI).href).then(async (m) => {
    await m.default();
    return m;
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn import_console(name: &str) -> Result<js_sys::Promise, JsValue>;
}

/// The module's file, beside the portal's own, as trunk names it.
const MODULE: &str = "imprint-console.js";

/// The key the console keeps its session under in this tab.
const KEPT: &str = "imprint.console";

/// Whether this tab holds a console session (a reload should bring the console back).
pub fn kept() -> bool {
    web_sys::window()
        .and_then(|w| w.session_storage().ok().flatten())
        .and_then(|s| s.get_item(KEPT).ok().flatten())
        .is_some()
}

async fn load() -> Result<JsValue, String> {
    let module = super::training::module_file("imprint-console", MODULE);
    let why = |e: JsValue| {
        let m = js_sys::Reflect::get(&e, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_default();
        format!("the console could not load {module} ({m}); is the portal fully deployed?")
    };
    JsFuture::from(import_console(&module).map_err(why)?)
        .await
        .map_err(why)
}

fn function(m: &JsValue, name: &str) -> Result<js_sys::Function, String> {
    js_sys::Reflect::get(m, &name.into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| format!("the console module has no {name}()"))
}

/// Opens the console for an admin's or an auditor's fresh session.
pub async fn open(answer: &LoginAnswer) -> Result<(), String> {
    let m = load().await?;
    let token = hex::encode(answer.token.0);
    function(&m, "start")?
        .call3(
            &m,
            &token.into(),
            &answer.user.username.as_str().into(),
            &answer.user.role.as_str().into(),
        )
        .map(|_| ())
        .map_err(|e| {
            e.as_string()
                .unwrap_or_else(|| "the console did not start".into())
        })
}

/// Brings the console back after a reload; whether it did.
pub async fn resume() -> Result<bool, String> {
    let m = load().await?;
    let done = function(&m, "resume")?
        .call0(&m)
        .map_err(|_| "the console did not start".to_string())?;
    Ok(done.as_bool().unwrap_or(false))
}
