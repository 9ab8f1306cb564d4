//! The console's pure state, tested natively: what the pages show, computed from the
//! server's answers.

pub mod activity;
pub mod audit;
pub mod overview;
