//! Offline leases as the station receives them: verified with the server's pinned Ed25519 key
//! before any record of them is used (docs/protocol.md, "Offline lease").

use imprint_core::{ApparatusId, FactoryId, Lease, LeaseRecord, ProductCode, SealedRecord};
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

/// Checks a lease against the key pinned at the first online sign-in; returns its records,
/// each carrying the lease's deadline.
pub fn accept(lease: &LeaseOut, pinned_key_hex: &str, now_ms: u64) -> Result<Vec<Record>, String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(pinned_key_hex, &mut key).map_err(|_| bad("server key"))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&lease.signature, &mut sig).map_err(|_| bad("signature"))?;
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
    let core = Lease {
        lease_id,
        factory: FactoryId::new(&lease.factory).map_err(|e| bad(&e.to_string()))?,
        product: ProductCode::new(&lease.product_code).map_err(|e| bad(&e.to_string()))?,
        issued_at_ms: lease.issued_at_ms,
        not_after_ms: lease.not_after_ms,
        records,
    };
    core.verify(&key, &sig, now_ms).map_err(|e| e.to_string())?;
    Ok(lease
        .records
        .iter()
        .cloned()
        .map(|mut r| {
            r.not_after_ms = Some(lease.not_after_ms);
            r
        })
        .collect())
}
