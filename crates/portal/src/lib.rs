//! The Imprint station (portal): a Leptos page that provisions units over WebUSB.
//!
//! The logic is browser-free and tested natively: [`state`] (journal, diagnostics, line
//! figures), [`station`] (the per-unit flow over the [`station::Link`] and
//! [`station::Server`] traits) and [`client`] (the server's API over a [`client::Transport`],
//! in the contract's types from `imprint-api`). The browser parts implement the link over
//! WebUSB and the transport over fetch, and draw the page.

pub mod client;
pub mod error;
pub use imprint_client::json;
pub mod state;
pub mod station;

#[cfg(target_arch = "wasm32")]
pub mod web;
