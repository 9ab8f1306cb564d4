//! Offline leases as the station receives them: verified with the server's pinned Ed25519 key
//! before any record of them is used (docs/protocol.md, "Offline lease").

use imprint_api::LeaseAnswer;
use imprint_core::{Lease, LeaseError, LeaseRecord};

use crate::state::journal::Record;

/// A lease whose fields all parse, waiting for its signature to be checked.
///
/// The check is split from the parsing so the page can use the browser's own Ed25519
/// (WebCrypto) and leave `ed25519-dalek` and SHA-512 out of its module (9.9 KB gzipped less,
/// docs/benchmarks.md);
/// natively, and in tests, [`accept`] checks with imprint-core.
#[derive(Debug)]
pub struct Unverified {
    lease: Lease,
    records: Vec<Record>,
    key: [u8; 32],
    signature: [u8; 64],
}

/// A lease as the server sent it (its fields typed and checked as they were read), with the
/// key pinned at the first online sign-in, ready for its signature to be checked.
pub fn parse(lease: &LeaseAnswer, pinned_key: &[u8; 32]) -> Unverified {
    Unverified {
        lease: Lease {
            lease_id: lease.lease_id.0,
            factory: lease.factory,
            product: lease.product_code,
            issued_at_ms: lease.issued_at_ms,
            not_after_ms: lease.not_after_ms,
            records: lease
                .records
                .iter()
                .map(|r| LeaseRecord {
                    apparatus_id: r.apparatus_id,
                    record: r.sealed.clone(),
                })
                .collect(),
        },
        records: lease.records.iter().cloned().map(Record::from).collect(),
        key: *pinned_key,
        signature: lease.signature.0,
    }
}

impl Unverified {
    /// The pinned public key (raw Ed25519, 32 bytes).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The signature (64 bytes).
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The bytes the server signed (docs/protocol.md, "Offline lease").
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.lease.signed_bytes()
    }

    /// Given the outcome of the signature check, the lease's records, each carrying its
    /// deadline; or why the lease is refused.
    pub fn finish(self, signature_valid: bool, now_ms: u64) -> Result<Vec<Record>, String> {
        if !signature_valid {
            return Err(LeaseError::BadSignature.to_string());
        }
        let not_after_ms = self.lease.not_after_ms;
        if now_ms > not_after_ms {
            return Err(LeaseError::Expired { not_after_ms }.to_string());
        }
        Ok(self
            .records
            .into_iter()
            .map(|mut r| {
                r.not_after_ms = Some(not_after_ms);
                r
            })
            .collect())
    }
}

/// Checks a lease against the key pinned at the first online sign-in with imprint-core's
/// Ed25519; returns its records, each carrying the lease's deadline.
pub fn accept(
    lease: &LeaseAnswer,
    pinned_key: &[u8; 32],
    now_ms: u64,
) -> Result<Vec<Record>, String> {
    let u = parse(lease, pinned_key);
    // Deadline 0 here: the deadline is checked once, in `finish`, for both paths.
    match u.lease.verify(&u.key, &u.signature, 0) {
        Ok(()) => u.finish(true, now_ms),
        Err(LeaseError::BadSignature) => u.finish(false, now_ms),
        Err(e) => Err(e.to_string()),
    }
}
