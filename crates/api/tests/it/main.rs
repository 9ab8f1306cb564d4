//! The contract's own tests: JSON forms, routes, error codes and the generated document.

mod forms;
#[cfg(feature = "openapi")]
mod openapi;
mod routes;
