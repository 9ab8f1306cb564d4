//! The Imprint station (portal): a Leptos page that provisions units over WebUSB.
//!
//! The logic is browser-free and tested natively: [`state`] (journal, diagnostics, line
//! figures) and [`station`] (the per-unit flow over the [`station::Link`] and
//! [`station::Server`] traits). The browser parts implement those traits over WebUSB and
//! fetch, and draw the page.

pub mod json;
pub mod state;
pub mod station;

#[cfg(target_arch = "wasm32")]
pub mod web;
