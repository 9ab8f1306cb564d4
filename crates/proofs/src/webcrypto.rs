//! The browser's own cryptography (WebCrypto), where a page would otherwise carry a Rust copy:
//! Ed25519 for the log's checkpoints here, and for offline leases in the station (which links
//! this function alone).

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn subtle() -> Result<web_sys::SubtleCrypto, String> {
    // `crypto.subtle` exists only in secure contexts (https or localhost), like WebUSB.
    let crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .ok_or("this browser has no WebCrypto")?;
    Ok(crypto.subtle())
}

fn algorithm(name: &str) -> Object {
    let o = Object::new();
    let _ = Reflect::set(&o, &"name".into(), &name.into());
    o
}

fn js_error(e: &JsValue) -> String {
    Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| "WebCrypto failed".into())
}

/// Checks an Ed25519 signature with WebCrypto. `Ok(false)` is a signature that does not match;
/// `Err` is a key the browser refuses or a browser without Ed25519 in WebCrypto (older ones;
/// checked here in Chromium 156).
pub async fn ed25519_verify(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<bool, String> {
    let subtle = subtle()?;
    let alg = algorithm("Ed25519");
    let key_data: Object = Uint8Array::from(&public_key[..]).into();
    let usages = Array::of1(&"verify".into());
    let key = subtle
        .import_key_with_object("raw", &key_data, &alg, false, &usages)
        .map_err(|e| js_error(&e))?;
    let key: web_sys::CryptoKey = JsFuture::from(key)
        .await
        .map_err(|e| format!("the key was refused: {}", js_error(&e)))?
        .unchecked_into();
    let ok = subtle
        .verify_with_object_and_u8_array_and_u8_array(&alg, &key, signature, message)
        .map_err(|e| js_error(&e))?;
    let ok = JsFuture::from(ok).await.map_err(|e| js_error(&e))?;
    Ok(ok.as_bool().unwrap_or(false))
}
