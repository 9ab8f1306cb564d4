//! The browser parts: the entry points the portal calls, the session kept in this tab, and
//! the pages ([`app`]).

pub mod app;

use imprint_api::{Role, SessionToken, UserInfo};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

/// Where this tab keeps the console's session over a reload (sessionStorage: this tab only,
/// gone when it closes, as the station keeps its own). The portal looks for this key to know
/// that a reload should bring the console back.
const KEPT: &str = "imprint.console";

/// The console's styles, added to the page when the console starts: the station's stylesheet
/// does not carry them.
const STYLE: &str = include_str!("../../console.css");

/// A signed-in admin or auditor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// The session's token.
    pub token: SessionToken,
    /// Who signed in.
    pub user: UserInfo,
}

fn tab() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// Starts the console for a session the portal has just opened (an admin's or an auditor's).
/// `token` is the session token as hex, `role` its role as the API names it.
#[wasm_bindgen]
pub fn start(token: &str, username: &str, role: &str) -> Result<(), JsValue> {
    let token: SessionToken = imprint_client::json::from_str(&format!("\"{token}\""))
        .map_err(|e| JsValue::from_str(&format!("the session token does not read: {e}")))?;
    let role: Role = imprint_client::json::from_str(&format!("\"{role}\""))
        .map_err(|e| JsValue::from_str(&format!("unknown role: {e}")))?;
    if role == Role::Technician {
        return Err(JsValue::from_str(
            "technicians use the station, not the console",
        ));
    }
    let session = Session {
        token,
        user: UserInfo {
            username: username.into(),
            role,
            factory: None,
        },
    };
    if let (Some(s), Ok(text)) = (tab(), imprint_client::json::to_string(&session)) {
        let _ = s.set_item(KEPT, &text);
    }
    mount(session);
    Ok(())
}

/// Brings the console back after a reload, if this tab holds its session; whether it did.
/// A session the server has ended is found out at the first request, which says so.
#[wasm_bindgen]
pub fn resume() -> bool {
    let kept = tab()
        .and_then(|s| s.get_item(KEPT).ok().flatten())
        .and_then(|t| imprint_client::json::from_str::<Session>(&t).ok());
    match kept {
        Some(session) => {
            mount(session);
            true
        }
        None => {
            forget();
            false
        }
    }
}

/// Forgets the session kept in this tab.
fn forget() {
    if let Some(s) = tab() {
        let _ = s.remove_item(KEPT);
    }
}

/// Forgets the session and reloads the page, which then shows the portal's sign-in.
fn leave() {
    forget();
    if let Some(w) = web_sys::window() {
        let _ = w.location().reload();
    }
}

fn mount(session: Session) {
    if let Some(doc) = web_sys::window().and_then(|w| w.document())
        && let Ok(style) = doc.create_element("style")
    {
        style.set_text_content(Some(STYLE));
        if let Some(head) = doc.head() {
            let _ = head.append_child(&style);
        }
    }
    leptos::mount::mount_to_body(move || {
        leptos::view! { <app::Console session=session.clone()/> }
    });
}
