//! JSON text for what the station stores and sends.
//!
//! Natively this is serde_json. In the browser it is the browser's own `JSON.parse` and
//! `JSON.stringify`, with serde-wasm-bindgen between JavaScript values and Rust types: the page
//! then carries no JSON parser of its own, which took 7.8 KB gzipped off the shipped module
//! (docs/benchmarks.md, "Portal: shipped size"). Both produce and accept the same text, which the
//! journal fixture in `tests/vectors/` checks on both sides.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises `value` to JSON text.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    imp::to_string(value)
}

/// Parses JSON text into a `T`; the error says what did not fit.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    imp::from_str(text)
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;

    pub(super) fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
        serde_json::to_string(value).map_err(|e| e.to_string())
    }

    pub(super) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use wasm_bindgen::JsValue;

    /// What a thrown JavaScript error says.
    fn message(e: &JsValue) -> String {
        js_sys::Reflect::get(e, &JsValue::from_str("message"))
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_else(|| "not valid JSON".into())
    }

    pub(super) fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
        // Maps as plain objects and absent options as null, as serde_json writes them.
        let v = value
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| e.to_string())?;
        js_sys::JSON::stringify(&v)
            .map_err(|e| message(&e))?
            .as_string()
            .ok_or_else(|| "JSON.stringify gave no text".into())
    }

    pub(super) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
        let v = js_sys::JSON::parse(text).map_err(|e| message(&e))?;
        serde_wasm_bindgen::from_value(v).map_err(|e| e.to_string())
    }
}
