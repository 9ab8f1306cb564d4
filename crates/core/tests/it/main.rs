//! imprint-core's test suite: one binary, run natively by `cargo test` and in headless
//! Chromium by `wasm-pack test --headless --chrome` (see the README). Vectors are compiled in
//! with `include_str!` because a browser test has no file system.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod fixed_rng;
mod ids;
mod lease;
mod note;
mod protocol;
mod seal;
mod tables;
mod tlog;
mod vectors;
#[cfg(target_arch = "wasm32")]
mod webcrypto;

#[cfg(not(target_arch = "wasm32"))]
mod props;

/// A deterministic RNG for tests (ChaCha20 with a fixed seed).
pub fn rng(seed: u8) -> rand_chacha::ChaCha20Rng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::from_seed([seed; 32])
}

pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}
