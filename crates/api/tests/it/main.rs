//! The contract's own tests: JSON forms, routes, error codes and the generated document.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod forms;
#[cfg(feature = "openapi")]
mod openapi;
mod routes;
