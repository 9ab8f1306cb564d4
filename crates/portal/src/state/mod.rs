//! The station's pure state: no browser, tested natively.
//!
//! - [`bench`]: the tiles, what each leads with and which buttons its state offers.
//! - [`chart`]: the figures' line charts as SVG text.
//! - [`journal`]: every record and how far it got, persisted before each irreversible step.
//! - [`diagnose`]: every failure mapped to a title, a detail and a fix.
//! - [`analytics`]: units per hour, first-pass yield, retries.
//! - [`lease`]: offline leases checked against the server's pinned key.
//! - [`audit`]: the units this station reported, proven in the server's audit log (the check
//!   itself is imprint-proofs, a module of its own in the page).

pub mod analytics;
/// The audit-log check's state and types (crates/proofs).
pub mod audit {
    pub use imprint_proofs::*;
}
pub mod bench;
pub mod chart;
pub mod diagnose;
pub mod journal;
pub mod lease;
