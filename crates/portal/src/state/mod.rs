//! The station's pure state: no browser, tested natively.
//!
//! - [`journal`]: every record and how far it got, persisted before each irreversible step.
//! - [`diagnose`]: every failure mapped to a title, a detail and a fix.
//! - [`analytics`]: units per hour, first-pass yield, retries.

pub mod analytics;
pub mod diagnose;
pub mod journal;
