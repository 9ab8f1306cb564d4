//! The Imprint management and authentication server.
//!
//! - [`app`] builds the HTTP API (axum) over an [`AppState`]; tests drive it with `oneshot`.
//! - [`store`] the tables (700, 500, 702, 704, 708 and the rest) on SQLite or PostgreSQL: opening,
//!   migrations, write transactions that the database serialises and that are retried when it
//!   aborts one.
//! - [`custody`] where the keys live (`kek.key`, or a PKCS#11 token through [`pkcs11`]) and
//!   sealing of secrets at rest; [`kek`] the key file.
//! - [`audit`] appends to and verifies the hash-chained audit log.
//! - [`auth`] users, passwords (argon2), sessions and roles.
//! - [`service`] the operations, by concern (keys, entries, factories, issue, report, field
//!   authentication, leases), each one transaction that calls the rules of `imprint-core` and
//!   appends its audit entry.
//! - [`api`] the HTTP handlers: parse, check the role, call the service, answer.

pub mod api;
pub mod audit;
pub mod auth;
pub mod custody;
pub mod error;
pub mod kek;
pub mod metrics;
pub mod pkcs11;
pub mod service;
pub mod store;
pub mod throttle;
pub mod tls;

use std::sync::Arc;

pub use error::AppError;

/// Everything a request needs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: store::Store,
    /// The keys: `kek.key` or a PKCS#11 token.
    pub custody: Arc<custody::Custody>,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The allowances of failed sign-ins per user name and address (the counts are in the
    /// database).
    pub throttle: throttle::Throttle,
    /// Checks field authentications in batches, one commit per batch.
    pub verifier: service::Verifier,
}

impl AppState {
    /// State over an open store. Starts the process's [`service::Verifier`], so it must be
    /// called inside a Tokio runtime.
    pub fn new(store: store::Store, custody: impl Into<custody::Custody>) -> Self {
        let custody = Arc::new(custody.into());
        let metrics = Arc::new(metrics::Metrics::default());
        Self {
            verifier: service::Verifier::start(store.clone(), custody.clone(), metrics.clone()),
            store,
            custody,
            metrics,
            throttle: throttle::Throttle::default(),
        }
    }
}

/// The router: the API only.
pub fn app(state: AppState) -> axum::Router {
    api::router(state)
}

/// The router, also serving the portal's built files from `portal` on the same origin (so the
/// portal needs no CORS and its session never leaves the origin). Unknown paths get
/// `index.html`, so the portal's own routes survive a reload. `.wasm` is served as
/// `application/wasm`, which browsers require for streaming compilation.
pub fn app_with_portal(state: AppState, portal: &std::path::Path) -> axum::Router {
    let files = tower_http::services::ServeDir::new(portal).fallback(
        tower_http::services::ServeFile::new(portal.join("index.html")),
    );
    api::router(state).fallback_service(files)
}

/// The operating system's randomness (all keys, nonces, pass phrases, tokens).
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// A random ID of 8 bytes as 16 hex digits: it names one request or one fault in the log and
/// tells nothing else.
pub fn random_id() -> String {
    use rand_core::Rng;
    let mut b = [0u8; 8];
    rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Unix time in milliseconds.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
