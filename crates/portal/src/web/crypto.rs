//! The browser's own cryptography (WebCrypto), where the page would otherwise carry a Rust
//! copy: Ed25519 for checking offline leases (imprint-proofs' `webcrypto`, shared with the
//! audit-log check's module).

use imprint_api::LeaseAnswer;
use imprint_proofs::webcrypto::ed25519_verify;

use crate::state::journal::Record;
use crate::state::lease::Unverified;

/// Checks a lease against the pinned key with WebCrypto; its records, or why it is refused.
pub async fn accept_lease(
    lease: &LeaseAnswer,
    pinned_key: &[u8; 32],
    now_ms: u64,
) -> Result<Vec<Record>, String> {
    let u: Unverified = crate::state::lease::parse(lease, pinned_key);
    let valid = ed25519_verify(u.public_key(), &u.signed_bytes(), u.signature())
        .await
        .map_err(|e| format!("the server's lease key: {e}"))?;
    u.finish(valid, now_ms)
}
