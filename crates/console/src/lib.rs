//! The Imprint console: the page an admin or an auditor gets after signing in to the portal.
//!
//! A WebAssembly module of its own (the station's shipped bytes do not grow), which the portal
//! imports once an admin or auditor has signed in. Admins see the factories, their quotas and
//! leases, the products and their keys (with a guided key rotation), the entries (generate, or
//! import a CSV file all or nothing) and the line's activity; auditors see the activity and the
//! audit log, paged and searched, with its verification. It talks to the server only through
//! `imprint-client` in the contract's types, and never receives a secret: the API it uses has
//! none to give.
//!
//! [`state`] is pure and tested natively; `web` (wasm32 only) draws the pages with Leptos.

pub mod state;

#[cfg(target_arch = "wasm32")]
pub mod web;
