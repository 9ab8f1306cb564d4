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
pub mod db;
pub mod error;
pub mod kek;
pub mod metrics;
pub mod pkcs11;
pub mod service;
pub mod store;
pub mod throttle;
pub mod tlog;
pub mod tls;
pub mod witness;

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
    /// Records installation reports in batches, one commit per batch.
    pub reporter: service::Reporter,
}

impl AppState {
    /// State over an open store. Starts the process's [`service::Verifier`] and
    /// [`service::Reporter`], so it must be called inside a Tokio runtime.
    pub fn new(store: store::Store, custody: impl Into<custody::Custody>) -> Self {
        let custody = Arc::new(custody.into());
        let metrics = Arc::new(metrics::Metrics::default());
        Self {
            verifier: service::Verifier::start(store.clone(), custody.clone(), metrics.clone()),
            reporter: service::Reporter::start(store.clone(), custody.clone(), metrics.clone()),
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
///
/// What is shipped is what `cargo xtask portal` precompressed: `FILE.br` (brotli) or `FILE.gz`
/// when the browser accepts it, else `FILE`. A file whose name carries its content's hash
/// (`name-<16 hex digits>.ext`, [`is_content_hashed`]) never changes under that name and is
/// cached for a year, `immutable`; every other file (`index.html`, which names the hashed ones)
/// is revalidated on every load (`no-cache`), so a new portal is picked up at the next reload.
pub fn app_with_portal(state: AppState, portal: &std::path::Path) -> axum::Router {
    let files = tower_http::services::ServeDir::new(portal)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(
            tower_http::services::ServeFile::new(portal.join("index.html"))
                .precompressed_br()
                .precompressed_gzip(),
        );
    let files = tower::ServiceBuilder::new()
        .layer(axum::middleware::map_response(cache_headers))
        .service(files);
    api::router(state).fallback_service(files)
}

/// `Cache-Control` and `Vary` for a file of the portal (see [`app_with_portal`]).
async fn cache_headers<B>(
    uri: axum::http::Uri,
    mut res: axum::http::Response<B>,
) -> axum::http::Response<B> {
    let hashed = is_content_hashed(uri.path());
    let html = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    if hashed && html {
        // A hashed name that is not in the folder (a partial deploy, an old tab asking for a
        // file of the build before) got the index.html fallback: it is not found, and must not
        // be kept for a year under that name.
        *res.status_mut() = axum::http::StatusCode::NOT_FOUND;
    }
    let cache = if res.status().is_success() && hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let h = res.headers_mut();
    h.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static(cache),
    );
    // The same URL answers brotli, gzip or plain by the request's Accept-Encoding: a cache in
    // between must keep them apart.
    if !h.contains_key(axum::http::header::VARY) {
        h.insert(
            axum::http::header::VARY,
            axum::http::HeaderValue::from_static("accept-encoding"),
        );
    }
    res
}

/// Whether the last segment of `path` names a file by its content's hash, as `cargo xtask
/// portal` names the portal's files: `stem-<16 lowercase hex digits>` then `.js`, `.css` or
/// `_bg.wasm` (wasm-bindgen's name for the module).
pub fn is_content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(stem) = name
        .strip_suffix("_bg.wasm")
        .or_else(|| name.strip_suffix(".js"))
        .or_else(|| name.strip_suffix(".css"))
    else {
        return false;
    };
    match stem.rsplit_once('-') {
        Some((base, hash)) => {
            !base.is_empty()
                && hash.len() == 16
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

/// The server's randomness (all keys, nonces, pass phrases, tokens): a ChaCha20 generator per
/// thread, seeded from the operating system on its first use and again after every
/// [`RESEED_BYTES`] it gave, as rand's `ThreadRng` is. Asking the operating system for each
/// 12-byte nonce cost a `getrandom` system call per nonce, about a tenth of issuing a record
/// (`docs/benchmarks.md`); the generator's output is as unpredictable as its seed.
pub fn rng() -> ServerRng {
    ServerRng
}

/// After this many bytes a thread's generator takes a fresh seed from the operating system.
pub const RESEED_BYTES: usize = 64 * 1024;

/// A handle on the generator of whichever thread uses it (see [`rng`]): it holds no state, so a
/// task that moves to another thread draws from that thread's generator.
#[derive(Clone, Copy, Debug)]
pub struct ServerRng;

struct Seeded {
    rng: rand_chacha::ChaCha20Rng,
    given: usize,
}

thread_local! {
    static RNG: std::cell::RefCell<Option<Seeded>> = const { std::cell::RefCell::new(None) };
}

impl ServerRng {
    fn with<T>(bytes: usize, f: impl FnOnce(&mut rand_chacha::ChaCha20Rng) -> T) -> T {
        use rand_core::SeedableRng;
        RNG.with_borrow_mut(|slot| {
            let fresh = slot.as_ref().is_none_or(|s| s.given >= RESEED_BYTES);
            if fresh {
                let mut seed = [0u8; 32];
                // As before this generator: without the operating system's randomness the
                // server cannot make a key or a nonce, and must not go on.
                #[allow(clippy::expect_used)]
                getrandom::fill(&mut seed).expect("the operating system gives no randomness");
                *slot = Some(Seeded {
                    rng: rand_chacha::ChaCha20Rng::from_seed(seed),
                    given: 0,
                });
                zeroize::Zeroize::zeroize(&mut seed);
            }
            #[allow(clippy::expect_used)]
            let s = slot.as_mut().expect("seeded above");
            s.given += bytes;
            f(&mut s.rng)
        })
    }
}

impl rand_core::TryRng for ServerRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        use rand_core::Rng;
        Ok(ServerRng::with(4, |r| r.next_u32()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        use rand_core::Rng;
        Ok(ServerRng::with(8, |r| r.next_u64()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        use rand_core::Rng;
        ServerRng::with(dst.len(), |r| r.fill_bytes(dst));
        Ok(())
    }
}

impl rand_core::TryCryptoRng for ServerRng {}

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

#[cfg(test)]
mod tests {
    use rand_core::Rng;

    use super::*;

    #[test]
    fn each_thread_draws_its_own_stream_and_reseeds_as_it_goes() {
        let draw = || {
            let mut b = [0u8; 32];
            rng().fill_bytes(&mut b);
            b
        };
        let here = draw();
        let there = std::thread::spawn(draw).join().unwrap_or_default();
        assert_ne!(here, there, "two threads' generators are seeded apart");
        assert_ne!(here, draw(), "one thread's draws follow on");
        // Past the reseed point and on: the generator is seeded again, not exhausted.
        let mut big = vec![0u8; RESEED_BYTES + 100];
        rng().fill_bytes(&mut big);
        let given = RNG.with_borrow(|s| s.as_ref().map(|s| s.given));
        rng().fill_bytes(&mut big);
        let after = RNG.with_borrow(|s| s.as_ref().map(|s| s.given));
        assert_eq!(
            after,
            Some(big.len()),
            "reseeded before the second draw (was {given:?})"
        );
        assert!(big.iter().any(|&b| b != 0));
    }
}
