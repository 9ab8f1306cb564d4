//! The server's operations, by concern. Each is one write transaction ([`Store::write`]): it
//! reads the facts the rule in `imprint-core` needs, calls the rule, writes the outcome and its
//! audit entry, and commits; a failure rolls everything back, and a transaction the database
//! aborted for another writer runs again. Refused reports are audited in a transaction of their
//! own, so the refusal is on record even though nothing else changed.
//!
//! - [`keys`]: pre-write keys (table 700) and product codes (table 500), remaps.
//! - [`entries`]: authentication information (table 702), generated or imported.
//! - [`factories`]: factories and their quotas.
//! - [`issue`]: sealed records to factories (table 708), release, open records.
//! - [`report`]: installation reports (table 704), the installed-devices export.
//! - [`field`]: challenge-response authentication of installed devices, revocation.
//! - [`leases`]: signed offline leases and their expiry.
//! - [`overview`]: what the console shows at a glance (reads only).
//!
//! [`Store::write`]: crate::store::Store::write

pub mod entries;
pub mod factories;
pub mod field;
pub mod issue;
pub mod keys;
pub mod leases;
pub mod overview;
pub mod report;

pub use entries::{generate, import_csv};
pub use factories::{add_factory, set_quota};
pub use field::{CHALLENGE_MILLIS, Verifier, challenge, revoke, verify};
pub use issue::{issue, open_records, release};
pub use keys::{
    add_key, add_key_bytes, add_key_wrapped, list_keys, list_products, map_product, set_lock_units,
};
pub use leases::{LEASE_GRACE_MILLIS, expire_leases, lease, lease_public_key};
pub use overview::{activity, factories, unit_subject};
pub use report::{LockReport, Report, Reporter, csv_cell, export_installed, record_lock, report};

use crate::db;
use imprint_core::{ApparatusId, KeyId, PassPhrase, ProductCode, TableError};

use crate::custody::{Custody, RecordKey, StoredKey};
use crate::error::AppError;
use crate::store::Conn;

/// What each secret is sealed for at rest: the context binds a sealed value to its row, so a
/// value copied into another row does not open.
fn key_ctx(k: KeyId) -> String {
    format!("700/{k}")
}
fn pass_ctx(id: &ApparatusId) -> String {
    format!("702/{id}")
}
fn cv_ctx(id: &ApparatusId) -> String {
    format!("704/{id}")
}
fn nonce_ctx(id: &ApparatusId) -> String {
    format!("708/{id}/nonce")
}

/// Where an entry of table 702 is, as its `state` column holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// In the pool, never issued.
    Unissued,
    /// Sealed and issued to a factory, not installed.
    Issued,
    /// Installed (table 704 has it).
    Installed,
}

impl Stage {
    /// The column's text.
    fn as_str(self) -> &'static str {
        match self {
            Stage::Unissued => "unissued",
            Stage::Issued => "issued",
            Stage::Installed => "installed",
        }
    }

    /// A stored stage; any other text is a fault of the store (the column's CHECK forbids it).
    fn parse(s: &str) -> Result<Stage, AppError> {
        match s {
            "unissued" => Ok(Stage::Unissued),
            "issued" => Ok(Stage::Issued),
            "installed" => Ok(Stage::Installed),
            other => Err(AppError::bug(format!(
                "an entry is in an unknown state '{other}'"
            ))),
        }
    }
}

fn key_id_of(v: i64) -> Result<KeyId, AppError> {
    KeyId::new(
        u32::try_from(v).map_err(|_| AppError::bug(format!("stored key id {v} out of range")))?,
    )
    .map_err(AppError::from)
}

/// The pre-write key of a row of table 700, ready to seal: in memory (file custody) or a
/// handle in the token.
async fn load_key<'k>(
    conn: &mut Conn,
    keys: &'k Custody,
    key_id: KeyId,
) -> Result<RecordKey<'k>, AppError> {
    let row = db::query("SELECT key_sealed, token_label FROM pre_write_keys WHERE key_id = $1")
        .bind(i64::from(key_id.get()))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(AppError::Rule(TableError::UnknownKeyId(key_id)))?;
    let stored = match row.try_get::<Option<String>, _>("token_label")? {
        Some(label) => StoredKey::Token(label),
        None => StoredKey::Sealed(row.try_get("key_sealed")?),
    };
    keys.record_key(key_id, &key_ctx(key_id), stored)
}

fn open_pass(keys: &Custody, id: &ApparatusId, sealed: &[u8]) -> Result<PassPhrase, AppError> {
    let bytes = keys.open(&pass_ctx(id), sealed)?;
    PassPhrase::from_bytes(&bytes).map_err(|_| AppError::bug("stored pass phrase is invalid"))
}

async fn key_exists(conn: &mut Conn, key_id: KeyId) -> Result<bool, AppError> {
    Ok(
        db::query("SELECT key_id FROM pre_write_keys WHERE key_id = $1")
            .bind(i64::from(key_id.get()))
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

async fn product_key(conn: &mut Conn, code: &ProductCode) -> Result<Option<KeyId>, AppError> {
    let row = db::query("SELECT key_id FROM product_codes WHERE product_code = $1")
        .bind(code.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| key_id_of(r.try_get("key_id")?)).transpose()
}

/// The statement for this connection's database: `sqlite` or `postgres`, which differ only
/// where PostgreSQL, with many writers at once, must lock rows (`FOR UPDATE`, `SKIP LOCKED`)
/// that SQLite's one writer has to itself anyway.
pub(crate) fn pick(conn: &Conn, sqlite: &'static str, postgres: &'static str) -> &'static str {
    match crate::store::backend_of(conn) {
        crate::store::Backend::Postgres => postgres,
        crate::store::Backend::Sqlite => sqlite,
    }
}
