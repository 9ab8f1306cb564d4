//! Offline leases as the station receives them: verified with the server's pinned Ed25519 key
//! before any record of them is used (docs/protocol.md, "Offline lease").

use imprint_core::{
    ApparatusId, FactoryId, Lease, LeaseError, LeaseRecord, ProductCode, SealedRecord,
};
use serde::Deserialize;

use crate::state::journal::Record;

/// A lease as the server sends it (`POST /api/v1/leases`).
#[derive(Debug, Clone, Deserialize)]
pub struct LeaseOut {
    /// Lease ID, hex.
    pub lease_id: String,
    /// Factory.
    pub factory: String,
    /// Product code.
    pub product_code: String,
    /// Issued at (Unix ms).
    pub issued_at_ms: u64,
    /// Deadline (Unix ms).
    pub not_after_ms: u64,
    /// The records.
    pub records: Vec<Record>,
    /// Signature, hex.
    pub signature: String,
}

fn bad(what: &str) -> String {
    format!("the lease is malformed ({what}); do not use it")
}

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

/// Parses a lease and the key pinned at the first online sign-in.
pub fn parse(lease: &LeaseOut, pinned_key_hex: &str) -> Result<Unverified, String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(pinned_key_hex, &mut key).map_err(|_| bad("server key"))?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&lease.signature, &mut signature).map_err(|_| bad("signature"))?;
    let mut lease_id = [0u8; 16];
    hex::decode_to_slice(&lease.lease_id, &mut lease_id).map_err(|_| bad("lease ID"))?;
    let records = lease
        .records
        .iter()
        .map(|r| -> Result<LeaseRecord, String> {
            Ok(LeaseRecord {
                apparatus_id: ApparatusId::new(&r.apparatus_id).map_err(|e| bad(&e.to_string()))?,
                record: hex::decode(&r.sealed)
                    .ok()
                    .and_then(|b| SealedRecord::parse(&b).ok())
                    .ok_or_else(|| bad("sealed record"))?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Unverified {
        lease: Lease {
            lease_id,
            factory: FactoryId::new(&lease.factory).map_err(|e| bad(&e.to_string()))?,
            product: ProductCode::new(&lease.product_code).map_err(|e| bad(&e.to_string()))?,
            issued_at_ms: lease.issued_at_ms,
            not_after_ms: lease.not_after_ms,
            records,
        },
        records: lease.records.clone(),
        key,
        signature,
    })
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
pub fn accept(lease: &LeaseOut, pinned_key_hex: &str, now_ms: u64) -> Result<Vec<Record>, String> {
    let u = parse(lease, pinned_key_hex)?;
    // Deadline 0 here: the deadline is checked once, in `finish`, for both paths.
    match u.lease.verify(&u.key, &u.signature, 0) {
        Ok(()) => u.finish(true, now_ms),
        Err(LeaseError::BadSignature) => u.finish(false, now_ms),
        Err(e) => Err(e.to_string()),
    }
}
