//! Request and answer bodies of every route. Field names and JSON forms are the API; the
//! OpenAPI document is generated from these definitions (feature `openapi`).
//!
//! Identifiers are checked on the way in (an `ApparatusId` that deserialises is a valid
//! apparatus ID); byte strings are exact-length hex. A body with a missing, unknown-typed or
//! invalid field is refused as a whole with `bad_request`, naming the field.

use core::fmt;

use imprint_core::{
    ApparatusId, AuthResponse, Challenge, ChipId, FactoryId, KeyId, ProductCode, ProductSerial,
    Receipt, SealedRecord,
};
use serde::{Deserialize, Serialize};

use crate::{Endpoint, Op, Role};

/// A fixed-length byte string, lower-case hex in JSON (`2 * N` digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bytes<const N: usize>(#[serde(with = "imprint_core::serde::hex_array")] pub [u8; N]);

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", imprint_core::serde::HexDisplay(&self.0))
    }
}

impl<const N: usize> fmt::Display for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", imprint_core::serde::HexDisplay(&self.0))
    }
}

/// A session token: 32 random bytes, 64 hex digits in JSON and in `Authorization: Bearer`.
/// A credential: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionToken(#[serde(with = "imprint_core::serde::hex_array")] pub [u8; 32]);

impl SessionToken {
    /// The `Authorization` header's value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", imprint_core::serde::HexDisplay(&self.0))
    }

    /// Parses the hex form (as sent after `Bearer `).
    pub fn from_hex(text: &str) -> Option<SessionToken> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(text, &mut b).ok()?;
        Some(SessionToken(b))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// `POST /login`. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// User name: 1 to 64 characters of `A-Z a-z 0-9 . _ - @`.
    pub username: String,
    /// Password.
    #[cfg_attr(feature = "openapi", schema(format = Password))]
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The `status` of an accepted report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// A new row in table 704.
    Recorded,
    /// The same report was accepted before; nothing changed.
    AlreadyRecorded,
}

/// A session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginAnswer {
    /// The session token, for `Authorization: Bearer <token>`; valid for 12 hours.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub token: SessionToken,
    /// Who signed in.
    pub user: UserInfo,
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// The technician's factory (none for admins and auditors).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::FactoryIdText>))]
    pub factory: Option<FactoryId>,
}

/// `GET /me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeAnswer {
    /// The caller.
    pub user: UserInfo,
}

/// `POST /logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoggedOut {
    /// Always true: the session is gone.
    pub ok: bool,
}

/// `GET /keys`: key identifiers only, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    /// The key identifiers of table 700, ascending.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::KeyIdNumber>))]
    pub key_ids: Vec<KeyId>,
}

/// `POST /keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddKeyRequest {
    /// The new key identifier (1 to 4294967295, unused).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
}

/// A key was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyAdded {
    /// Its identifier.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
}

/// A row of table 500.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// Its current key identifier.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
    /// Whether its records are bound to one chip each (issued one at a time, for a named
    /// chip; never in a lease).
    #[serde(default)]
    pub chip_bound: bool,
    /// Whether stations lock its units after the closed-loop check passes (protocol `Lock`:
    /// the identity becomes permanent and no record is ever written into the unit again).
    /// Changed with `PUT /products/{code}/lock-units`; a station reads it at sign-in.
    #[serde(default)]
    pub lock_units: bool,
}

/// `PUT /products/{code}/lock-units`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockUnitsRequest {
    /// Lock the product's units after the closed-loop check (true), or leave them unlocked.
    pub lock_units: bool,
}

/// `GET /products`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductList {
    /// Table 500.
    pub products: Vec<Product>,
}

/// `PUT /products/{code}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MapProductRequest {
    /// The key identifier to map the product code to.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
    /// For a new product: whether its records are bound to one chip each (default false).
    /// Fixed when the product is first mapped; a remap that gives another value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip_bound: Option<bool>,
}

/// The outcome of mapping a product code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Remapped {
    /// The key before (none for a new product code).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::KeyIdNumber>))]
    pub old_key_id: Option<KeyId>,
    /// The key now.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub new_key_id: KeyId,
    /// Records issued for the product but not installed, sealed again under the new key.
    pub resealed: u64,
}

/// `POST /auth-info/generate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenerateRequest {
    /// The key identifier the entries are bound to.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
    /// How many, 1 to 1000000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub count: u64,
    /// Apparatus ID prefix, at most 20 characters (default `IMP-`); a 10-digit sequence number follows.
    #[serde(default = "default_prefix")]
    #[cfg_attr(feature = "openapi", schema(default = "IMP-", max_length = 20))]
    pub prefix: String,
}

/// What `generate` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Generated {
    /// How many entries.
    pub count: u64,
    /// The first apparatus ID.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub first: ApparatusId,
    /// The last apparatus ID.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub last: ApparatusId,
}

/// `POST /auth-info/import`: the whole file was imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Imported {
    /// How many entries.
    pub imported: u64,
}

/// `POST /factories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddFactoryRequest {
    /// The factory's identifier.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::FactoryIdText))]
    pub factory_id: FactoryId,
    /// Its name, for people.
    pub name: String,
}

/// A factory was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactoryAdded {
    /// Its identifier.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::FactoryIdText))]
    pub factory_id: FactoryId,
}

/// `PUT /factories/{factory}/quotas/{product}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetQuotaRequest {
    /// How many records the factory may ever receive for the product.
    pub limit: u64,
}

/// A quota was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaSet {
    /// The factory.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::FactoryIdText))]
    pub factory_id: FactoryId,
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// The limit.
    pub limit: u64,
}

/// `POST /users`. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddUserRequest {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ - @`.
    pub username: String,
    /// At least 10 characters.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 10))]
    pub password: String,
    /// The role.
    pub role: Role,
    /// For technicians (required), the factory they work for; none for the other roles.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::FactoryIdText>))]
    #[serde(default)]
    pub factory_id: Option<FactoryId>,
}

/// A user was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserAdded {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// `GET /users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    /// Every user, by name.
    pub users: Vec<UserRow>,
}

/// A user as an admin sees them (never a password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserRow {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// A technician's factory.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::FactoryIdText>))]
    pub factory_id: Option<FactoryId>,
    /// Whether the user is disabled (cannot sign in; their sessions were ended).
    pub disabled: bool,
    /// Their sessions open now.
    pub sessions: u64,
}

/// `PUT /users/{username}/disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetDisabledRequest {
    /// Disable (true: their sessions end, they cannot sign in) or enable again.
    pub disabled: bool,
}

/// `PUT /users/{username}/password`. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetPasswordRequest {
    /// The new password, at least 10 characters. The user's sessions end.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 10))]
    pub password: String,
}

impl fmt::Debug for SetPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetPasswordRequest { password: <redacted> }")
    }
}

/// `PUT /users/{username}/role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetRoleRequest {
    /// The role.
    pub role: Role,
    /// For a technician (required), the factory; none for the other roles. The user's
    /// sessions end, so a station signed in for the old factory signs in again.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::FactoryIdText>))]
    #[serde(default)]
    pub factory_id: Option<FactoryId>,
}

/// `POST /devices/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    /// The revoked identity.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub revoked: ApparatusId,
}

/// `GET /factories`: every factory with its quotas, open records and offline leases, and each
/// product's pool of unissued entries, for the console's overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactoryList {
    /// The factories, by identifier.
    pub factories: Vec<FactoryOverview>,
    /// Each product code's pool: entries under its current key not issued yet.
    pub pools: Vec<PoolLevel>,
    /// The server's clock when it answered (Unix ms), to tell the leases' time left.
    pub now_ms: u64,
}

/// One factory at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactoryOverview {
    /// Its identifier.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::FactoryIdText))]
    pub factory_id: FactoryId,
    /// Its name.
    pub name: String,
    /// Its quotas, by product code.
    pub quotas: Vec<QuotaUse>,
    /// Its offline leases that have not expired, soonest expiry first.
    pub leases: Vec<LeaseOverview>,
    /// Units it installed, ever.
    pub installed: u64,
}

/// A factory's quota for one product code and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUse {
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// Records it may ever receive.
    pub limit: u64,
    /// Records it received (a record handed back is counted back).
    pub used: u64,
    /// Of those, issued and not installed yet (open at the factory).
    pub open: u64,
}

/// An offline lease not expired yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseOverview {
    /// Its identifier.
    pub lease_id: String,
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// Records it carried.
    pub records: u64,
    /// Of those, not installed yet.
    pub open: u64,
    /// When it expires (Unix ms).
    pub not_after_ms: u64,
}

/// A product code's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolLevel {
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// Its current key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
    /// Entries of table 702 under that key, not issued yet.
    pub available: u64,
}

/// `GET /activity` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ActivityQuery {
    /// How many hours back (default 8, at most 168).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u64>,
}

/// `GET /activity`: the line's recent work, for the console's live view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activity {
    /// The first hour counted (Unix ms, on the hour).
    pub from_ms: u64,
    /// The server's clock when it answered (Unix ms).
    pub now_ms: u64,
    /// Installs per hour, factory and station, oldest hour first; hours without installs left out.
    pub installs: Vec<InstallCount>,
    /// Refused reports in that time, newest first (at most 100).
    pub refused: Vec<RefusedReport>,
}

/// Installs in one hour by one station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallCount {
    /// The hour's start (Unix ms).
    pub hour_ms: u64,
    /// The factory.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::FactoryIdText))]
    pub factory_id: FactoryId,
    /// The station, as it named itself.
    pub station: String,
    /// Units installed.
    pub count: u64,
}

/// A report the server refused, from the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedReport {
    /// The audit entry.
    pub seq: u64,
    /// When (Unix ms).
    pub at_ms: u64,
    /// The technician.
    pub technician: String,
    /// Their factory.
    pub factory: String,
    /// The station.
    pub station: String,
    /// The unit's apparatus ID, as reported.
    pub apparatus_id: String,
    /// The unit's product serial, as reported.
    pub product_serial: String,
    /// The error code it was refused with (see the error codes).
    pub reason: String,
}

/// `GET /audit` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct AuditQuery {
    /// Oldest first, from this sequence number on (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Newest first, below this sequence number (any number above the latest entry's: the
    /// newest page). Not with `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Only entries by this actor (a user name, `device`, `cli`, `system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only entries of this action (`report`, `report.refused`, `issue`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only entries about this unit (its report, a refused report, its lock, its revocation):
    /// its apparatus ID, or its product serial once installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Only entries a station sent (its reports, refused reports and locks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
}

/// One audit entry, as stored (docs/server.md says how to recompute `hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Position, from 1.
    pub seq: u64,
    /// Unix time in milliseconds, as decimal text (hashed as stored).
    pub at: String,
    /// Who (user name, `device`, `cli`, `system`).
    pub actor: String,
    /// What (`authinfo.import`, `issue`, `report`, `auth.ok`, ...).
    pub action: String,
    /// JSON detail, as text (never a secret).
    pub detail: String,
    /// The previous entry's hash (64 hex digits; zeros for the first).
    pub prev_hash: String,
    /// This entry's hash (64 hex digits).
    pub hash: String,
}

/// `GET /audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// The entries, by sequence number (ascending with `from`, descending with `before`).
    pub entries: Vec<AuditEntry>,
    /// The sequence number of the log's latest entry (0: the log is empty), for paging.
    #[serde(default)]
    pub latest: u64,
}

/// `GET /audit/verify` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct VerifyAuditQuery {
    /// A checkpoint saved earlier: a signed checkpoint (the text of `GET /audit/checkpoint`'s
    /// `checkpoint`, URL-encoded), or a chain head `seq:hash` from an earlier verification.
    #[serde(default)]
    pub checkpoint: Option<String>,
}

/// The outcome of verifying the audit log: its hash chain, its Merkle tree against the latest
/// signed checkpoint, and a checkpoint saved earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's hash: `entries:head` is a chain head to pass as the next checkpoint.
    pub head: String,
    /// The latest signed checkpoint, checked against the entries (save it: it is the
    /// checkpoint for the next verification); absent while the log is empty.
    pub checkpoint: Option<String>,
    /// Whether every check passed.
    pub ok: bool,
    /// The first problem found, if any.
    pub problem: Option<String>,
}

/// `GET /audit/checkpoint`: the log's latest signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditCheckpoint {
    /// The signed checkpoint (C2SP tlog-checkpoint in a signed note, docs/audit.md).
    pub checkpoint: String,
    /// Its tree size (the checkpoint's second line).
    pub size: u64,
    /// The latest checkpoint that the log's witnesses cosigned, with their cosignature lines
    /// (C2SP tlog-cosignature) after the log's signature; absent without witnesses.
    pub witnessed: Option<String>,
    /// The log's verifier key, `NAME+KEYID+KEY`: pin it once, from a source you trust, and
    /// check every checkpoint with the pinned key, not this one.
    pub key: String,
}

/// `GET /audit/proof/inclusion` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct InclusionQuery {
    /// The entry's sequence number (its leaf is `seq - 1`).
    pub seq: u64,
    /// The tree size of a signed checkpoint, at least `seq`.
    pub size: u64,
}

/// `GET /audit/proof/inclusion`: an RFC 9162 inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    /// The leaf index (`seq - 1`).
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The proof's hashes from the leaf up, base64.
    pub hashes: Vec<String>,
}

/// `POST /audit/installs`: proofs that these units' installations are in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallProofsRequest {
    /// The units, by the identity each holds: 1 to 100.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::ApparatusIdText>, min_items = 1, max_items = 100))]
    pub apparatus_ids: Vec<ApparatusId>,
    /// The size of the checkpoint the caller holds, for a consistency proof from it (0 or
    /// absent: none held).
    #[serde(default)]
    pub since: Option<u64>,
}

/// One installation's entry and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallProof {
    /// The unit's identity.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
    /// Its `report` entry, with the fields of its leaf (docs/audit.md).
    pub entry: AuditEntry,
    /// The inclusion proof at the checkpoint's size, base64, from the leaf up.
    pub hashes: Vec<String>,
}

/// `POST /audit/installs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallProofs {
    /// The latest signed checkpoint, which every proof here leads to.
    pub checkpoint: String,
    /// The log's verifier key (pin it; check with the pinned one).
    pub key: String,
    /// The consistency proof from `since` to the checkpoint's size (empty without `since`,
    /// or when `since` is past the checkpoint: the caller sees the log shrank).
    pub consistency: Vec<String>,
    /// The installations found, of the caller's factory for a technician; a unit whose
    /// report is not in the log (yet) is left out.
    pub installs: Vec<InstallProof>,
}

/// `GET /audit/proof/consistency` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ConsistencyQuery {
    /// The older tree size.
    pub old: u64,
    /// The newer tree size, of a signed checkpoint.
    pub new: u64,
}

/// `GET /audit/proof/consistency`: an RFC 9162 consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    /// The older tree size.
    pub old: u64,
    /// The newer tree size.
    pub new: u64,
    /// The proof's hashes, base64.
    pub hashes: Vec<String>,
}

/// `POST /issue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssueRequest {
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// How many records: 1 to 10000, and within the factory's quota; 1 with `chip_id`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub count: u64,
    /// For a chip-bound product: the chip ID of the unit the record is for (its GetInfo
    /// reply's). The record is sealed under a key of that chip alone (format 0x02) and opens in
    /// no other unit. Required for a chip-bound product, refused for any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::ChipIdHex>))]
    pub chip_id: Option<ChipId>,
}

/// A row of table 708 as a factory receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record {
    /// The identity, in clear.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
    /// The key identifier it is sealed under.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::KeyIdNumber))]
    pub key_id: KeyId,
    /// The sealed record (docs/protocol.md), hex.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SealedRecordHex))]
    pub sealed: SealedRecord,
    /// The product code it was issued for.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
}

/// `POST /issue`, `GET /records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordList {
    /// The records.
    pub records: Vec<Record>,
}

/// `POST /leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseRequest {
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// How many records: 1 to 10000, and within the factory's quota.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub count: u64,
    /// Validity, 1 to 168 hours.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 168))]
    pub hours: u64,
}

/// A signed offline lease (docs/protocol.md, "Offline lease").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseAnswer {
    /// Lease ID.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex16))]
    pub lease_id: Bytes<16>,
    /// The factory.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::FactoryIdText))]
    pub factory: FactoryId,
    /// The product code.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductCodeText))]
    pub product_code: ProductCode,
    /// Issued at (Unix ms).
    pub issued_at_ms: u64,
    /// No install after this instant (Unix ms).
    pub not_after_ms: u64,
    /// The records.
    pub records: Vec<Record>,
    /// The server's Ed25519 public key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub public_key: Bytes<32>,
    /// Ed25519 signature over the lease's signed bytes.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex64))]
    pub signature: Bytes<64>,
}

/// `POST /report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRequest {
    /// The identity installed.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
    /// The unit's product serial.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductSerialText))]
    pub product_serial: ProductSerial,
    /// The device's receipt (docs/protocol.md).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub receipt: Receipt,
    /// The station's name, recorded with the installation: 1 to 64 bytes, no control characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub station: String,
}

/// An accepted report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportAnswer {
    /// New, or accepted before.
    pub status: ReportStatus,
    /// A fresh challenge for the station's closed-loop check.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub challenge: Challenge,
    /// How long the challenge may be answered.
    pub expires_in_ms: u64,
}

/// `POST /locked`: a unit whose installation is recorded was locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockedRequest {
    /// The identity the unit holds.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
    /// The unit's product serial: the one its installation was recorded with.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ProductSerialText))]
    pub product_serial: ProductSerial,
    /// The station that locked it: 1 to 64 bytes, no control characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub station: String,
}

/// A recorded lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockedAnswer {
    /// New, or recorded before (the time of the first is kept).
    pub status: ReportStatus,
}

/// `POST /release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseRequest {
    /// An issued record never installed.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
}

/// A record went back to the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Released {
    /// Its identity.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub released: ApparatusId,
}

/// `GET /lease-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseKeyAnswer {
    /// The Ed25519 public key that signs leases.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub public_key: Bytes<32>,
}

/// `POST /auth/challenge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeRequest {
    /// The device's identity.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
}

/// A single-use challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeAnswer {
    /// The challenge.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub challenge: Challenge,
    /// How long it may be answered.
    pub expires_in_ms: u64,
}

/// `POST /auth/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyRequest {
    /// The device's identity.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ApparatusIdText))]
    pub apparatus_id: ApparatusId,
    /// The challenge it answers.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub challenge: Challenge,
    /// Its answer (docs/protocol.md).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Hex32))]
    pub response: AuthResponse,
}

/// The outcome of a field authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyAnswer {
    /// Whether the answer proves the identity.
    pub authenticated: bool,
}

fn default_prefix() -> String {
    "IMP-".into()
}

impl fmt::Debug for AddUserRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddUserRequest")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("factory_id", &self.factory_id)
            .finish_non_exhaustive()
    }
}

/// `POST /logout` (no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Logout;

/// `GET /me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Me;

/// `GET /keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListKeys;

/// `GET /products`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListProducts;

/// `GET /records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Records;

/// `GET /lease-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseKey;

/// `PUT /products/{code}` with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProduct {
    /// The product code.
    pub code: ProductCode,
    /// The body.
    pub body: MapProductRequest,
}

/// `PUT /products/{code}/lock-units` with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLockUnits {
    /// The product code.
    pub code: ProductCode,
    /// The body.
    pub body: LockUnitsRequest,
}

/// `PUT /factories/{factory}/quotas/{product}` with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetQuota {
    /// The factory.
    pub factory: FactoryId,
    /// The product code.
    pub product: ProductCode,
    /// The body.
    pub body: SetQuotaRequest,
}

/// `POST /devices/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    /// The identity to revoke.
    pub apparatus_id: ApparatusId,
}

impl Serialize for MapProduct {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.body.serialize(s)
    }
}

impl Serialize for SetLockUnits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.body.serialize(s)
    }
}

impl Serialize for SetQuota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.body.serialize(s)
    }
}

impl Serialize for Revoke {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl Endpoint for LoginRequest {
    const OP: Op = Op::Login;
    type Answer = LoginAnswer;
}

impl Endpoint for Logout {
    const OP: Op = Op::Logout;
    type Answer = LoggedOut;
}

impl Endpoint for Me {
    const OP: Op = Op::Me;
    type Answer = MeAnswer;
}

impl Endpoint for ListKeys {
    const OP: Op = Op::ListKeys;
    type Answer = KeyList;
}

impl Endpoint for AddKeyRequest {
    const OP: Op = Op::AddKey;
    type Answer = KeyAdded;
}

impl Endpoint for ListProducts {
    const OP: Op = Op::ListProducts;
    type Answer = ProductList;
}

impl Endpoint for MapProduct {
    const OP: Op = Op::MapProduct;
    type Answer = Remapped;

    fn path(&self) -> String {
        format!("{}/products/{}", crate::PREFIX, self.code)
    }
}

impl Endpoint for SetLockUnits {
    const OP: Op = Op::SetLockUnits;
    type Answer = Product;

    fn path(&self) -> String {
        format!("{}/products/{}/lock-units", crate::PREFIX, self.code)
    }
}

impl Endpoint for GenerateRequest {
    const OP: Op = Op::Generate;
    type Answer = Generated;
}

impl Endpoint for AddFactoryRequest {
    const OP: Op = Op::AddFactory;
    type Answer = FactoryAdded;
}

impl Endpoint for SetQuota {
    const OP: Op = Op::SetQuota;
    type Answer = QuotaSet;

    fn path(&self) -> String {
        format!(
            "{}/factories/{}/quotas/{}",
            crate::PREFIX,
            self.factory,
            self.product
        )
    }
}

impl Endpoint for AddUserRequest {
    const OP: Op = Op::AddUser;
    type Answer = UserAdded;
}

impl Endpoint for Revoke {
    const OP: Op = Op::Revoke;
    type Answer = Revoked;

    fn path(&self) -> String {
        format!("{}/devices/{}/revoke", crate::PREFIX, self.apparatus_id)
    }
}

/// `GET /installed.csv`. Its answer is CSV text, not JSON: read it with a client's call for
/// text (imprint-client's `call_text`), which never reads it as this endpoint's `Answer`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExportInstalled;

impl Endpoint for ExportInstalled {
    const OP: Op = Op::ExportInstalled;
    type Answer = ();
}

/// `GET /users`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ListUsers;

impl Endpoint for ListUsers {
    const OP: Op = Op::ListUsers;
    type Answer = UserList;
}

/// A request about one user: its name in the path, its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForUser<B> {
    /// The user's name.
    pub username: String,
    /// The body.
    pub body: B,
}

impl<B: Serialize> Serialize for ForUser<B> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.body.serialize(s)
    }
}

/// `/users/{username}/...`: the name as one path segment (a user name's characters,
/// `A-Z a-z 0-9 . _ - @`, need no escaping).
fn user_path(username: &str, tail: &str) -> String {
    format!("{}/users/{username}/{tail}", crate::PREFIX)
}

impl Endpoint for ForUser<SetDisabledRequest> {
    const OP: Op = Op::SetUserDisabled;
    type Answer = UserRow;

    fn path(&self) -> String {
        user_path(&self.username, "disabled")
    }
}

impl Endpoint for ForUser<SetPasswordRequest> {
    const OP: Op = Op::SetPassword;
    type Answer = UserRow;

    fn path(&self) -> String {
        user_path(&self.username, "password")
    }
}

impl Endpoint for ForUser<SetRoleRequest> {
    const OP: Op = Op::SetRole;
    type Answer = UserRow;

    fn path(&self) -> String {
        user_path(&self.username, "role")
    }
}

/// `GET /factories`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ListFactories;

impl Endpoint for ListFactories {
    const OP: Op = Op::ListFactories;
    type Answer = FactoryList;
}

impl Endpoint for ActivityQuery {
    const OP: Op = Op::Activity;
    type Answer = Activity;

    fn query(&self) -> Result<Option<String>, String> {
        query_of(self)
    }
}

impl Endpoint for AuditQuery {
    const OP: Op = Op::ReadAudit;
    type Answer = AuditPage;

    fn query(&self) -> Result<Option<String>, String> {
        query_of(self)
    }
}

impl Endpoint for VerifyAuditQuery {
    const OP: Op = Op::VerifyAudit;
    type Answer = AuditVerification;

    fn query(&self) -> Result<Option<String>, String> {
        query_of(self)
    }
}

/// `POST /auth-info/import`: the CSV text (`apparatus_id,pass_phrase,key_id`, one entry per
/// line). Its `Debug` leaves the text out: it holds pass phrases.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportCsv(pub String);

impl fmt::Debug for ImportCsv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImportCsv({} bytes)", self.0.len())
    }
}

impl Serialize for ImportCsv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl Endpoint for ImportCsv {
    const OP: Op = Op::Import;
    type Answer = Imported;

    fn csv(&self) -> Option<&str> {
        Some(&self.0)
    }
}

/// `query` as a query string (none when every field is absent).
fn query_of<Q: Serialize>(query: &Q) -> Result<Option<String>, String> {
    let q = serde_urlencoded::to_string(query).map_err(|e| format!("the query: {e}"))?;
    Ok((!q.is_empty()).then_some(q))
}

impl Endpoint for IssueRequest {
    const OP: Op = Op::Issue;
    type Answer = RecordList;
}

impl Endpoint for LeaseRequest {
    const OP: Op = Op::Lease;
    type Answer = LeaseAnswer;
}

impl Endpoint for Records {
    const OP: Op = Op::Records;
    type Answer = RecordList;
}

impl Endpoint for ReportRequest {
    const OP: Op = Op::Report;
    type Answer = ReportAnswer;
}

impl Endpoint for InstallProofsRequest {
    const OP: Op = Op::AuditInstalls;
    type Answer = InstallProofs;
}

impl Endpoint for LockedRequest {
    const OP: Op = Op::Locked;
    type Answer = LockedAnswer;
}

impl Endpoint for ReleaseRequest {
    const OP: Op = Op::Release;
    type Answer = Released;
}

impl Endpoint for LeaseKey {
    const OP: Op = Op::LeaseKey;
    type Answer = LeaseKeyAnswer;
}

impl Endpoint for ChallengeRequest {
    const OP: Op = Op::Challenge;
    type Answer = ChallengeAnswer;
}

impl Endpoint for VerifyRequest {
    const OP: Op = Op::Verify;
    type Answer = VerifyAnswer;
}
