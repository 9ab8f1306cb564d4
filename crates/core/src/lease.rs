//! Offline leases: a bundle of sealed records the server signs (Ed25519) for one factory and
//! product, valid until a deadline, so a station can keep provisioning through a network outage
//! and report later. The portal verifies the signature and the deadline before using a record.
//!
//! Signed bytes (all integers big-endian, "short" = u8 length + bytes):
//!
//! ```text
//! "imprint/v1/lease" | lease ID (16) | short factory | short product code
//! | issued_at_ms u64 | not_after_ms u64 | count u32
//! | count x ( short apparatus ID | short sealed record )
//! ```
//!
//! Why sign at all when the records are sealed already: the signature stops a compromised
//! station or proxy from adding, removing or relabelling records in a lease, or stretching its
//! deadline; the count and deadline bound what an outage can be used for.

use alloc::vec::Vec;
use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::codec::put_short;
use crate::ids::{ApparatusId, FactoryId, ProductCode};
use crate::seal::SealedRecord;

const LABEL: &[u8] = b"imprint/v1/lease";

/// One record of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The identity, in clear.
    pub apparatus_id: ApparatusId,
    /// Its sealed record.
    pub record: SealedRecord,
}

/// A lease's content (what is signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Random lease identifier.
    pub lease_id: [u8; 16],
    /// The factory it was issued to.
    pub factory: FactoryId,
    /// The product code of its records.
    pub product: ProductCode,
    /// When it was issued (Unix milliseconds).
    pub issued_at_ms: u64,
    /// After this instant (Unix milliseconds) no record of it may be installed.
    pub not_after_ms: u64,
    /// The records (the count limit is their number).
    pub records: Vec<LeaseRecord>,
}

/// Why a lease may not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// The signature does not match: the lease was altered or not made by this server.
    BadSignature,
    /// The public key is not a valid Ed25519 key.
    BadKey,
    /// The lease's deadline has passed.
    Expired {
        /// The deadline.
        not_after_ms: u64,
    },
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::BadSignature => f.write_str(
                "the lease's signature does not match: it was altered or does not come from this server; do not use it",
            ),
            LeaseError::BadKey => f.write_str("the server's lease key is not a valid Ed25519 key"),
            LeaseError::Expired { .. } => f.write_str(
                "the lease has expired: reconnect to the server to report what was installed and get a new lease",
            ),
        }
    }
}

impl core::error::Error for LeaseError {}

impl Lease {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.records.len() * 200);
        v.extend_from_slice(LABEL);
        v.extend_from_slice(&self.lease_id);
        put_short(&mut v, self.factory.as_bytes());
        put_short(&mut v, self.product.as_bytes());
        v.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        v.extend_from_slice(&self.not_after_ms.to_be_bytes());
        v.extend_from_slice(&(self.records.len() as u32).to_be_bytes());
        for r in &self.records {
            put_short(&mut v, r.apparatus_id.as_bytes());
            put_short(&mut v, r.record.as_bytes());
        }
        v
    }

    /// Signs the lease (server side).
    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.signed_bytes()).to_bytes()
    }

    /// Checks the signature against the server's public key, then the deadline.
    pub fn verify(
        &self,
        public_key: &[u8; 32],
        signature: &[u8; 64],
        now_ms: u64,
    ) -> Result<(), LeaseError> {
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| LeaseError::BadKey)?;
        key.verify(&self.signed_bytes(), &Signature::from_bytes(signature))
            .map_err(|_| LeaseError::BadSignature)?;
        if now_ms > self.not_after_ms {
            return Err(LeaseError::Expired {
                not_after_ms: self.not_after_ms,
            });
        }
        Ok(())
    }
}
