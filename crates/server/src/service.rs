//! The server's operations. Each is one transaction under the write lock: it reads the facts
//! the rule in `imprint-core` needs, calls the rule, writes the outcome and its audit entry,
//! and commits; a failure rolls everything back. Refused reports are audited in a transaction
//! of their own, so the refusal is on record even though nothing else changed.

use imprint_api::error::LineError;
use imprint_api::{Bytes, Generated, LeaseAnswer, Product, Record, Remapped, ReportStatus};
use imprint_core::tables::{EntryState, plan_issue, plan_remap};
use imprint_core::{
    ApparatusId, AuthInfo, AuthResponse, Binding, Challenge, FactoryId, KeyId, PassPhrase,
    PreWriteKey, ProductCode, ProductSerial, Quota, Receipt, ReceiptInput, SealedRecord,
    TableError, conversion_value, tables::InstallDecision, tables::decide_install,
};
use serde_json::json;
use sqlx::{Row, SqliteConnection};

use crate::auth::User;
use crate::error::AppError;
use crate::kek::Kek;
use crate::metrics::Metrics;
use crate::{AppState, audit, now_millis};

/// How long an authentication challenge may be answered.
pub const CHALLENGE_MILLIS: i64 = 60_000;

fn key_ctx(k: KeyId) -> String {
    format!("700/{k}")
}
fn pass_ctx(id: &ApparatusId) -> String {
    format!("702/{id}")
}
fn cv_ctx(id: &ApparatusId) -> String {
    format!("704/{id}")
}

fn key_id_of(v: i64) -> Result<KeyId, AppError> {
    KeyId::new(
        u32::try_from(v).map_err(|_| AppError::bug(format!("stored key id {v} out of range")))?,
    )
    .map_err(AppError::from)
}

async fn load_key(
    conn: &mut SqliteConnection,
    kek: &Kek,
    key_id: KeyId,
) -> Result<PreWriteKey, AppError> {
    let row = sqlx::query("SELECT key_sealed FROM pre_write_keys WHERE key_id = ?")
        .bind(i64::from(key_id.get()))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(AppError::Rule(TableError::UnknownKeyId(key_id)))?;
    let sealed: Vec<u8> = row.try_get("key_sealed")?;
    let bytes = kek.open(&key_ctx(key_id), &sealed)?;
    PreWriteKey::from_bytes(&bytes)
        .map_err(|_| AppError::bug("stored pre-write key has a wrong length"))
}

fn open_pass(kek: &Kek, id: &ApparatusId, sealed: &[u8]) -> Result<PassPhrase, AppError> {
    let bytes = kek.open(&pass_ctx(id), sealed)?;
    PassPhrase::from_bytes(&bytes).map_err(|_| AppError::bug("stored pass phrase is invalid"))
}

async fn key_exists(conn: &mut SqliteConnection, key_id: KeyId) -> Result<bool, AppError> {
    Ok(sqlx::query("SELECT 1 FROM pre_write_keys WHERE key_id = ?")
        .bind(i64::from(key_id.get()))
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

async fn product_key(
    conn: &mut SqliteConnection,
    code: &ProductCode,
) -> Result<Option<KeyId>, AppError> {
    let row = sqlx::query("SELECT key_id FROM product_codes WHERE product_code = ?")
        .bind(code.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| key_id_of(r.try_get("key_id")?)).transpose()
}

/// Adds a pre-write key (table 700) with fresh random bytes. The key never leaves the server
/// except into devices' write modules through the maker's own provisioning of its model.
pub async fn add_key(state: &AppState, actor: &str, key_id: KeyId) -> Result<(), AppError> {
    add_key_bytes(
        state,
        actor,
        key_id,
        PreWriteKey::generate(&mut crate::rng()),
    )
    .await
}

/// Adds a pre-write key with given bytes (import from the maker's key ceremony, demo keys).
pub async fn add_key_bytes(
    state: &AppState,
    actor: &str,
    key_id: KeyId,
    key: PreWriteKey,
) -> Result<(), AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    if key_exists(&mut tx, key_id).await? {
        return Err(TableError::DuplicateKeyId(key_id).into());
    }
    sqlx::query("INSERT INTO pre_write_keys (key_id, key_sealed, created_at) VALUES (?, ?, ?)")
        .bind(i64::from(key_id.get()))
        .bind(state.kek.seal(&key_ctx(key_id), key.expose_secret()))
        .bind(now_millis().to_string())
        .execute(&mut *tx)
        .await?;
    audit::append(&mut tx, actor, "key.add", json!({ "key_id": key_id.get() })).await?;
    tx.commit().await?;
    Ok(())
}

/// The key identifiers in table 700.
pub async fn list_keys(state: &AppState) -> Result<Vec<KeyId>, AppError> {
    let rows = sqlx::query("SELECT key_id FROM pre_write_keys ORDER BY key_id")
        .fetch_all(&state.pool)
        .await?;
    rows.iter()
        .map(|r| key_id_of(r.try_get("key_id")?))
        .collect()
}

/// Maps a product code to a key identifier (table 500). On a remap, records issued for the
/// product but not installed are sealed again under the new key, so the factory's next
/// download opens on new-key devices; entries move to the new key identifier.
pub async fn map_product(
    state: &AppState,
    actor: &str,
    code: ProductCode,
    new_key: KeyId,
) -> Result<Remapped, AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let current = product_key(&mut tx, &code).await?;
    let exists = key_exists(&mut tx, new_key).await?;
    let old = plan_remap(current, new_key, exists)?;
    let mut resealed = 0u64;
    if old.is_some() {
        let key = load_key(&mut tx, &state.kek, new_key).await?;
        let rows = sqlx::query(
            "SELECT apparatus_id, pass_sealed FROM auth_info WHERE state = 'issued' AND product_code = ?",
        )
        .bind(code.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut rng = crate::rng();
        for r in rows {
            let id = ApparatusId::new(&r.try_get::<String, _>("apparatus_id")?)?;
            let pass = open_pass(&state.kek, &id, &r.try_get::<Vec<u8>, _>("pass_sealed")?)?;
            let sealed = SealedRecord::seal(&mut rng, &key, new_key, &Binding::Model, &id, &pass);
            sqlx::query("UPDATE auth_info SET key_id = ? WHERE apparatus_id = ?")
                .bind(i64::from(new_key.get()))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE factory_records SET sealed = ?, key_id = ? WHERE apparatus_id = ?")
                .bind(sealed.as_bytes())
                .bind(i64::from(new_key.get()))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            resealed += 1;
        }
        sqlx::query("UPDATE product_codes SET key_id = ? WHERE product_code = ?")
            .bind(i64::from(new_key.get()))
            .bind(code.as_str())
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query("INSERT INTO product_codes (product_code, key_id) VALUES (?, ?)")
            .bind(code.as_str())
            .bind(i64::from(new_key.get()))
            .execute(&mut *tx)
            .await?;
    }
    let out = Remapped {
        old_key_id: old,
        new_key_id: new_key,
        resealed,
    };
    audit::append(&mut tx, actor, "product.map", json!({ "product_code": code.as_str(), "old_key_id": out.old_key_id.map(KeyId::get), "new_key_id": new_key.get(), "resealed": resealed })).await?;
    tx.commit().await?;
    Ok(out)
}

/// Product codes and their key identifiers.
pub async fn list_products(state: &AppState) -> Result<Vec<Product>, AppError> {
    let rows = sqlx::query("SELECT product_code, key_id FROM product_codes ORDER BY product_code")
        .fetch_all(&state.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Product {
                product_code: ProductCode::new(&r.try_get::<String, _>("product_code")?)?,
                key_id: key_id_of(r.try_get("key_id")?)?,
            })
        })
        .collect()
}

async fn next_seq(conn: &mut SqliteConnection) -> Result<i64, AppError> {
    let row = sqlx::query("SELECT COALESCE(MAX(created_seq), 0) AS s FROM auth_info")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<i64, _>("s")? + 1)
}

/// Rows per multi-row statement: far below SQLite's variable limit, large enough that the
/// per-statement cost stops mattering.
const CHUNK: usize = 200;

/// Inserts unissued entries, sealing each pass phrase at rest, in multi-row statements.
async fn insert_entries(
    conn: &mut SqliteConnection,
    kek: &Kek,
    entries: &[(ApparatusId, PassPhrase, KeyId, i64)],
) -> Result<(), AppError> {
    for chunk in entries.chunks(CHUNK) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO auth_info (apparatus_id, pass_sealed, key_id, state, created_seq) ",
        );
        q.push_values(chunk, |mut b, (id, pass, key_id, seq)| {
            b.push_bind(id.as_str())
                .push_bind(kek.seal(&pass_ctx(id), pass.expose_secret()))
                .push_bind(i64::from(key_id.get()))
                .push_bind("unissued")
                .push_bind(*seq);
        });
        if let Err(e) = q.build().execute(&mut *conn).await {
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                for (id, ..) in chunk {
                    let dup = sqlx::query("SELECT 1 FROM auth_info WHERE apparatus_id = ?")
                        .bind(id.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                    if dup.is_some() {
                        return Err(TableError::DuplicateApparatusId(*id).into());
                    }
                }
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// Generates `count` entries (table 702) under `key_id`: apparatus IDs `prefix` + a 10-digit
/// number continuing the sequence, and random 160-bit pass phrases.
pub async fn generate(
    state: &AppState,
    actor: &str,
    key_id: KeyId,
    count: u64,
    prefix: &str,
) -> Result<Generated, AppError> {
    if count == 0 || count > 1_000_000 {
        return Err(AppError::BadRequest(
            "count must be from 1 to 1000000 per request".into(),
        ));
    }
    if prefix.len() > 20 {
        return Err(AppError::BadRequest(
            "prefix: at most 20 characters, so IDs fit in 32".into(),
        ));
    }
    // The prefix is the client's: check it here, so that a bad one is the client's error and
    // every ID built from it below is valid by construction.
    ApparatusId::new(&format!("{prefix}0000000000"))
        .map_err(|e| AppError::BadRequest(format!("prefix: {e}")))?;
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    if !key_exists(&mut tx, key_id).await? {
        return Err(TableError::UnknownKeyId(key_id).into());
    }
    let start = next_seq(&mut tx).await?;
    let mut rng = crate::rng();
    let first = ApparatusId::new(&format!("{prefix}{start:010}"))?;
    let last = ApparatusId::new(&format!("{prefix}{:010}", start + count as i64 - 1))?;
    let mut done = 0i64;
    while done < count as i64 {
        let n = (count as i64 - done).min(10 * CHUNK as i64);
        let batch = (done..done + n)
            .map(|i| -> Result<_, AppError> {
                Ok((
                    ApparatusId::new(&format!("{prefix}{:010}", start + i))?,
                    PassPhrase::generate(&mut rng),
                    key_id,
                    start + i,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        insert_entries(&mut tx, &state.kek, &batch).await?;
        done += n;
    }
    audit::append(
        &mut tx,
        actor,
        "authinfo.generate",
        json!({ "key_id": key_id.get(), "count": count, "first": first.as_str(), "last": last.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(Generated { count, first, last })
}

/// Imports entries from CSV `apparatus_id,pass_phrase,key_id` (a header line with those names
/// is allowed). All or nothing: any bad line and nothing is imported; every bad line is
/// reported with its number and reason.
pub async fn import_csv(
    state: &AppState,
    actor: &str,
    text: &str,
) -> Result<Result<u64, Vec<LineError>>, AppError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut parsed: Vec<(u64, ApparatusId, PassPhrase, KeyId)> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i as u64 + 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(LineError {
                    line,
                    reason: format!("not CSV: {e}"),
                });
                continue;
            }
        };
        if line == 1 && rec.get(0) == Some("apparatus_id") {
            continue;
        }
        if rec.len() != 3 {
            errors.push(LineError {
                line,
                reason: format!(
                    "expected 3 fields (apparatus_id,pass_phrase,key_id), found {}",
                    rec.len()
                ),
            });
            continue;
        }
        let id = ApparatusId::new(rec.get(0).unwrap_or(""));
        let pass = PassPhrase::new(rec.get(1).unwrap_or(""));
        let key = rec.get(2).unwrap_or("").parse::<KeyId>();
        match (id, pass, key) {
            (Ok(id), Ok(pass), Ok(key)) => {
                if let Some(prev) = seen.insert(id, line) {
                    errors.push(LineError {
                        line,
                        reason: format!("apparatus ID {id} also on line {prev}"),
                    });
                } else {
                    parsed.push((line, id, pass, key));
                }
            }
            (id, pass, key) => {
                for e in [id.err(), pass.err(), key.err()].into_iter().flatten() {
                    errors.push(LineError {
                        line,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    if parsed.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 0,
            reason: "the file has no entries".into(),
        });
    }
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let mut known = std::collections::HashMap::new();
    for (line, id, _, key) in &parsed {
        let exists = match known.get(key) {
            Some(e) => *e,
            None => {
                let e = key_exists(&mut tx, *key).await?;
                known.insert(*key, e);
                e
            }
        };
        if !exists {
            errors.push(LineError {
                line: *line,
                reason: format!("no pre-write key with identifier {key}; add the key first"),
            });
        }
        let dup = sqlx::query("SELECT 1 FROM auth_info WHERE apparatus_id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if dup.is_some() {
            errors.push(LineError {
                line: *line,
                reason: format!("apparatus ID {id} already exists"),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Ok(Err(errors));
    }
    let start = next_seq(&mut tx).await?;
    let count = parsed.len() as u64;
    let entries: Vec<_> = parsed
        .into_iter()
        .enumerate()
        .map(|(i, (_, id, pass, key))| (id, pass, key, start + i as i64))
        .collect();
    insert_entries(&mut tx, &state.kek, &entries).await?;
    audit::append(&mut tx, actor, "authinfo.import", json!({ "count": count })).await?;
    tx.commit().await?;
    Ok(Ok(count))
}

/// Adds a factory.
pub async fn add_factory(
    state: &AppState,
    actor: &str,
    factory: FactoryId,
    name: &str,
) -> Result<(), AppError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(AppError::BadRequest(
            "factory name: 1 to 200 characters".into(),
        ));
    }
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let exists = sqlx::query("SELECT 1 FROM factories WHERE factory_id = ?")
        .bind(factory.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_some() {
        return Err(AppError::Conflict(format!(
            "factory '{factory}' already exists"
        )));
    }
    sqlx::query("INSERT INTO factories (factory_id, name) VALUES (?, ?)")
        .bind(factory.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        actor,
        "factory.add",
        json!({ "factory": factory.as_str(), "name": name }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a factory's quota for a product code (records it may ever receive, returns counted
/// back).
pub async fn set_quota(
    state: &AppState,
    actor: &str,
    factory: FactoryId,
    product: ProductCode,
    limit: u64,
) -> Result<(), AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    if sqlx::query("SELECT 1 FROM factories WHERE factory_id = ?")
        .bind(factory.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .is_none()
    {
        return Err(AppError::NotFound(format!("no factory '{factory}'")));
    }
    if product_key(&mut tx, &product).await?.is_none() {
        return Err(TableError::UnknownProduct(product).into());
    }
    let limit = i64::try_from(limit).map_err(|_| AppError::BadRequest("quota too large".into()))?;
    sqlx::query(
        "INSERT INTO quotas (factory_id, product_code, quota_limit, used) VALUES (?, ?, ?, 0) \
         ON CONFLICT (factory_id, product_code) DO UPDATE SET quota_limit = excluded.quota_limit",
    )
    .bind(factory.as_str())
    .bind(product.as_str())
    .bind(limit)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        actor,
        "quota.set",
        json!({ "factory": factory.as_str(), "product_code": product.as_str(), "limit": limit }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Issues `count` sealed records of `product` to the technician's factory, within its quota.
pub async fn issue(
    state: &AppState,
    user: &User,
    product: ProductCode,
    count: u64,
) -> Result<Vec<Record>, AppError> {
    let factory = user.factory()?;
    expire_leases(state, now_millis()).await?;
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let out = issue_in(&mut tx, &state.kek, &factory, product, count, None).await?;
    audit::append(
        &mut tx,
        &user.username,
        "issue",
        json!({
            "factory": factory.as_str(), "product_code": product.as_str(), "count": out.len(),
            "apparatus_ids": out.iter().map(|r| r.apparatus_id.as_str()).collect::<Vec<_>>(),
        }),
    )
    .await?;
    tx.commit().await?;
    Metrics::add(&state.metrics.issued, out.len() as u64);
    Ok(out)
}

/// The shared part of issuing and leasing: rules, sealing, table writes, quota.
async fn issue_in(
    tx: &mut SqliteConnection,
    kek: &Kek,
    factory: &FactoryId,
    product: ProductCode,
    count: u64,
    lease_id: Option<&str>,
) -> Result<Vec<Record>, AppError> {
    if count > 10_000 {
        return Err(AppError::BadRequest(
            "at most 10000 records per request".into(),
        ));
    }
    let key = product_key(&mut *tx, &product).await?;
    let quota = sqlx::query(
        "SELECT quota_limit, used FROM quotas WHERE factory_id = ? AND product_code = ?",
    )
    .bind(factory.as_str())
    .bind(product.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| -> Result<Quota, sqlx::Error> {
        Ok(Quota {
            limit: r.try_get::<i64, _>("quota_limit")?.max(0) as u64,
            used: r.try_get::<i64, _>("used")?.max(0) as u64,
        })
    })
    .transpose()?
    .unwrap_or_default();
    let mut candidates = Vec::new();
    if let Some(k) = key {
        let rows = sqlx::query("SELECT apparatus_id, pass_sealed FROM auth_info WHERE key_id = ? AND state = 'unissued' ORDER BY created_seq LIMIT ?")
            .bind(i64::from(k.get()))
            .bind(i64::try_from(count.min(quota.remaining())).unwrap_or(0))
            .fetch_all(&mut *tx)
            .await?;
        for r in rows {
            let id = ApparatusId::new(&r.try_get::<String, _>("apparatus_id")?)?;
            let pass = open_pass(kek, &id, &r.try_get::<Vec<u8>, _>("pass_sealed")?)?;
            candidates.push(AuthInfo {
                apparatus_id: id,
                pass_phrase: pass,
                key_id: k,
                state: EntryState::Unissued,
            });
        }
    }
    let (key_id, picked) = plan_issue(&product, key, quota, count, candidates.iter())?;
    let pre_write_key = load_key(&mut *tx, kek, key_id).await?;
    let mut rng = crate::rng();
    let now = now_millis().to_string();
    let mut out = Vec::with_capacity(picked.len());
    for chunk in picked.chunks(CHUNK) {
        let sealed: Vec<SealedRecord> = chunk
            .iter()
            .map(|e| {
                SealedRecord::seal(
                    &mut rng,
                    &pre_write_key,
                    key_id,
                    &Binding::Model,
                    &e.apparatus_id,
                    &e.pass_phrase,
                )
            })
            .collect();
        let mut upd = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "UPDATE auth_info SET state = 'issued', factory_id = ",
        );
        upd.push_bind(factory.as_str())
            .push(", product_code = ")
            .push_bind(product.as_str())
            .push(" WHERE state = 'unissued' AND apparatus_id IN (");
        let mut ids = upd.separated(", ");
        for e in chunk {
            ids.push_bind(e.apparatus_id.as_str());
        }
        upd.push(")");
        let changed = upd.build().execute(&mut *tx).await?.rows_affected();
        if changed != chunk.len() as u64 {
            return Err(AppError::bug(format!(
                "issued {changed} of {} picked entries",
                chunk.len()
            )));
        }
        let mut ins = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO factory_records (apparatus_id, sealed, key_id, factory_id, product_code, issued_at, lease_id) ",
        );
        ins.push_values(chunk.iter().zip(&sealed), |mut b, (e, rec)| {
            b.push_bind(e.apparatus_id.as_str())
                .push_bind(rec.as_bytes().to_vec())
                .push_bind(i64::from(key_id.get()))
                .push_bind(factory.as_str())
                .push_bind(product.as_str())
                .push_bind(now.clone())
                .push_bind(lease_id);
        });
        ins.build().execute(&mut *tx).await?;
        for (e, rec) in chunk.iter().zip(&sealed) {
            out.push(Record {
                apparatus_id: e.apparatus_id,
                key_id,
                sealed: rec.clone(),
                product_code: product,
            });
        }
    }
    sqlx::query("UPDATE quotas SET used = used + ? WHERE factory_id = ? AND product_code = ?")
        .bind(out.len() as i64)
        .bind(factory.as_str())
        .bind(product.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(out)
}

/// How long after a lease's deadline its unreported records stay reserved, so that units
/// installed offline can still be reported; then they go back to the pool.
pub const LEASE_GRACE_MILLIS: i64 = 24 * 60 * 60 * 1000;

async fn signing_key(
    conn: &mut SqliteConnection,
    kek: &Kek,
) -> Result<ed25519_dalek::SigningKey, AppError> {
    let row = sqlx::query("SELECT key_sealed FROM server_keys WHERE name = 'lease-signing'")
        .fetch_optional(&mut *conn)
        .await?;
    let bytes = match row {
        Some(r) => kek.open(
            "server/lease-signing",
            &r.try_get::<Vec<u8>, _>("key_sealed")?,
        )?,
        None => {
            use rand_core::Rng;
            let mut b = zeroize::Zeroizing::new(vec![0u8; 32]);
            crate::rng().fill_bytes(&mut b);
            sqlx::query("INSERT INTO server_keys (name, key_sealed) VALUES ('lease-signing', ?)")
                .bind(kek.seal("server/lease-signing", &b))
                .execute(&mut *conn)
                .await?;
            b
        }
    };
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| AppError::bug("lease key has a wrong length"))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&arr))
}

/// The public key stations verify leases with.
pub async fn lease_public_key(state: &AppState) -> Result<[u8; 32], AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let key = signing_key(&mut tx, &state.kek).await?;
    tx.commit().await?;
    Ok(key.verifying_key().to_bytes())
}

/// Issues `count` records as a lease valid for `hours`, signed by the server.
pub async fn lease(
    state: &AppState,
    user: &User,
    product: ProductCode,
    count: u64,
    hours: u64,
) -> Result<LeaseAnswer, AppError> {
    let factory = user.factory()?;
    if !(1..=168).contains(&hours) {
        return Err(AppError::BadRequest("a lease lasts 1 to 168 hours".into()));
    }
    expire_leases(state, now_millis()).await?;
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let mut lease_id = [0u8; 16];
    {
        use rand_core::Rng;
        crate::rng().fill_bytes(&mut lease_id);
    }
    let id_hex = hex::encode(lease_id);
    let issued_at = now_millis();
    let not_after = issued_at + (hours as i64) * 3_600_000;
    sqlx::query("INSERT INTO leases (lease_id, factory_id, product_code, issued_at, not_after, record_count) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&id_hex)
        .bind(factory.as_str())
        .bind(product.as_str())
        .bind(issued_at)
        .bind(not_after)
        .bind(count as i64)
        .execute(&mut *tx)
        .await?;
    let records = issue_in(&mut tx, &state.kek, &factory, product, count, Some(&id_hex)).await?;
    let core_lease = imprint_core::Lease {
        lease_id,
        factory,
        product,
        issued_at_ms: issued_at as u64,
        not_after_ms: not_after as u64,
        records: records
            .iter()
            .map(|r| imprint_core::LeaseRecord {
                apparatus_id: r.apparatus_id,
                record: r.sealed.clone(),
            })
            .collect(),
    };
    let key = signing_key(&mut tx, &state.kek).await?;
    let signature = core_lease.sign(&key);
    audit::append(
        &mut tx,
        &user.username,
        "lease",
        json!({
            "lease_id": id_hex, "factory": factory.as_str(), "product_code": product.as_str(),
            "count": records.len(), "not_after_ms": not_after,
        }),
    )
    .await?;
    tx.commit().await?;
    Metrics::add(&state.metrics.issued, records.len() as u64);
    Ok(LeaseAnswer {
        lease_id: Bytes(lease_id),
        factory,
        product_code: product,
        issued_at_ms: issued_at as u64,
        not_after_ms: not_after as u64,
        records,
        public_key: Bytes(key.verifying_key().to_bytes()),
        signature: Bytes(signature),
    })
}

/// Returns to the pool the unreported records of leases past their deadline plus
/// [`LEASE_GRACE_MILLIS`]. Returns how many records went back.
pub async fn expire_leases(state: &AppState, now: i64) -> Result<u64, AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let due = sqlx::query("SELECT lease_id, factory_id, product_code FROM leases WHERE expired_at IS NULL AND not_after + ? < ?")
        .bind(LEASE_GRACE_MILLIS)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let mut total = 0u64;
    for lease in due {
        let lease_id: String = lease.try_get("lease_id")?;
        let factory: String = lease.try_get("factory_id")?;
        let product: String = lease.try_get("product_code")?;
        let open = sqlx::query("SELECT apparatus_id FROM factory_records WHERE lease_id = ? AND product_serial IS NULL")
            .bind(&lease_id)
            .fetch_all(&mut *tx)
            .await?;
        for r in &open {
            let id: String = r.try_get("apparatus_id")?;
            sqlx::query("DELETE FROM factory_records WHERE apparatus_id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE auth_info SET state = 'unissued', factory_id = NULL, product_code = NULL WHERE apparatus_id = ? AND state = 'issued'")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        let n = open.len() as i64;
        sqlx::query(
            "UPDATE quotas SET used = CASE WHEN used > ? THEN used - ? ELSE 0 END WHERE factory_id = ? AND product_code = ?",
        )
        .bind(n)
        .bind(n)
        .bind(&factory)
        .bind(&product)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE leases SET expired_at = ? WHERE lease_id = ?")
            .bind(now)
            .bind(&lease_id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            "system",
            "lease.expire",
            json!({ "lease_id": lease_id, "returned": n }),
        )
        .await?;
        total += n as u64;
    }
    tx.commit().await?;
    Ok(total)
}

/// The records issued to the technician's factory and not yet installed (to resume after a
/// reload, or to hand back).
pub async fn open_records(state: &AppState, user: &User) -> Result<Vec<Record>, AppError> {
    let factory = user.factory()?;
    let rows = sqlx::query("SELECT apparatus_id, sealed, key_id, product_code FROM factory_records WHERE factory_id = ? AND product_serial IS NULL ORDER BY apparatus_id")
        .bind(factory.as_str())
        .fetch_all(&state.pool)
        .await?;
    rows.iter()
        .map(|r| {
            let apparatus_id = ApparatusId::new(&r.try_get::<String, _>("apparatus_id")?)?;
            Ok(Record {
                apparatus_id,
                key_id: key_id_of(r.try_get("key_id")?)?,
                sealed: SealedRecord::parse(&r.try_get::<Vec<u8>, _>("sealed")?).map_err(|e| {
                    AppError::bug(format!("stored record of {apparatus_id} unreadable: {e}"))
                })?,
                product_code: ProductCode::new(&r.try_get::<String, _>("product_code")?)?,
            })
        })
        .collect()
}

/// A station's report of one installation.
#[derive(Debug, Clone)]
pub struct Report {
    /// The identity installed.
    pub apparatus_id: ApparatusId,
    /// The unit.
    pub product_serial: ProductSerial,
    /// The device's receipt.
    pub receipt: Receipt,
    /// The station it was done at.
    pub station: String,
}

/// Records an installation: checks the receipt, then the rules, then writes table 704.
/// Exactly once: the same report again succeeds with no change; a refused report is audited.
///
/// An accepted report also returns a fresh challenge for the station's closed-loop check,
/// stored in the same transaction: one round trip and one durable commit fewer per unit than
/// asking `challenge` separately (docs/benchmarks.md, station time per unit).
pub async fn report(
    state: &AppState,
    user: &User,
    r: &Report,
) -> Result<(ReportStatus, Challenge), AppError> {
    let factory = user.factory()?;
    if r.station.is_empty() || r.station.len() > 64 {
        return Err(AppError::BadRequest("station: 1 to 64 characters".into()));
    }
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let result = report_in(&mut tx, &state.kek, user, &factory, r).await;
    match result {
        Ok(outcome) => {
            let action = match outcome {
                ReportStatus::Recorded => "report",
                ReportStatus::AlreadyRecorded => "report.duplicate",
            };
            audit::append(&mut tx, &user.username, action, json!({
                "apparatus_id": r.apparatus_id.as_str(), "product_serial": r.product_serial.as_str(),
                "factory": factory.as_str(), "station": r.station, "receipt": hex::encode(r.receipt.0),
            })).await?;
            let c = store_challenge(&mut tx, r.apparatus_id).await?;
            tx.commit().await?;
            if outcome == ReportStatus::Recorded {
                Metrics::add(&state.metrics.installed, 1);
            }
            Ok((outcome, c))
        }
        Err(e) => {
            tx.rollback().await?;
            Metrics::add(&state.metrics.refused, 1);
            // The code only: never the error's text, which for a fault holds internal detail.
            let reason = e.code().as_str();
            let mut tx = state.pool.begin().await?;
            audit::append(&mut tx, &user.username, "report.refused", json!({
                "apparatus_id": r.apparatus_id.as_str(), "product_serial": r.product_serial.as_str(),
                "factory": factory.as_str(), "station": r.station, "reason": reason,
            })).await?;
            tx.commit().await?;
            Err(e)
        }
    }
}

async fn report_in(
    conn: &mut SqliteConnection,
    kek: &Kek,
    user: &User,
    factory: &FactoryId,
    r: &Report,
) -> Result<ReportStatus, AppError> {
    let id = r.apparatus_id;
    let entry = sqlx::query(
        "SELECT pass_sealed, state, factory_id, product_code FROM auth_info WHERE apparatus_id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(TableError::UnknownApparatus(id))?;
    let pass = open_pass(kek, &id, &entry.try_get::<Vec<u8>, _>("pass_sealed")?)?;
    let cv = conversion_value(&id, &pass);
    // The receipt first: a report without a valid proof learns nothing about other units.
    let record = sqlx::query("SELECT sealed, key_id FROM factory_records WHERE apparatus_id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(rec) = record {
        let key = load_key(conn, kek, key_id_of(rec.try_get("key_id")?)?).await?;
        let sealed = SealedRecord::parse(&rec.try_get::<Vec<u8>, _>("sealed")?)
            .map_err(|e| AppError::bug(format!("stored record of {id} unreadable: {e}")))?;
        let opened = sealed
            .open(&key, &id, None)
            .map_err(|_| AppError::bug(format!("stored record of {id} does not open")))?;
        r.receipt
            .verify(
                &cv,
                &ReceiptInput {
                    apparatus_id: &id,
                    product_serial: &r.product_serial,
                    issue_nonce: &opened.issue_nonce,
                    record_digest: &sealed.digest(),
                },
            )
            .map_err(|_| TableError::BadReceipt(id))?;
    }
    let state_text: String = entry.try_get("state")?;
    let installed_serial =
        sqlx::query("SELECT product_serial FROM installed_devices WHERE apparatus_id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get::<String, _>("product_serial"))
            .transpose()?;
    let state = match (state_text.as_str(), installed_serial) {
        ("unissued", _) => EntryState::Unissued,
        ("installed", Some(s)) => EntryState::Installed {
            product_serial: ProductSerial::new(&s)?,
        },
        ("issued", _) => EntryState::Issued {
            factory: FactoryId::new(
                &entry
                    .try_get::<Option<String>, _>("factory_id")?
                    .unwrap_or_default(),
            )?,
            product: ProductCode::new(
                &entry
                    .try_get::<Option<String>, _>("product_code")?
                    .unwrap_or_default(),
            )?,
        },
        (other, _) => {
            return Err(AppError::bug(format!(
                "entry {id} in impossible state {other}"
            )));
        }
    };
    let holder = sqlx::query("SELECT apparatus_id FROM installed_devices WHERE product_serial = ?")
        .bind(r.product_serial.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get::<String, _>("apparatus_id"))
        .transpose()?
        .map(|s| ApparatusId::new(&s))
        .transpose()?;
    match decide_install(
        &id,
        Some(&state),
        factory,
        &r.product_serial,
        holder.as_ref(),
    )? {
        InstallDecision::AlreadyRecorded => Ok(ReportStatus::AlreadyRecorded),
        InstallDecision::Record => {
            let now = now_millis().to_string();
            sqlx::query("INSERT INTO installed_devices (apparatus_id, conversion_sealed, product_serial, factory_id, technician, station, receipt, installed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(id.as_str())
                .bind(kek.seal(&cv_ctx(&id), cv.expose_secret()))
                .bind(r.product_serial.as_str())
                .bind(factory.as_str())
                .bind(&user.username)
                .bind(&r.station)
                .bind(hex::encode(r.receipt.0))
                .bind(&now)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE auth_info SET state = 'installed' WHERE apparatus_id = ?")
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE factory_records SET product_serial = ? WHERE apparatus_id = ?")
                .bind(r.product_serial.as_str())
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(ReportStatus::Recorded)
        }
    }
}

/// Hands an issued, never-installed record back to the pool (a unit scrapped, a batch
/// cancelled); the quota is given back. The record can never be installed under its old seal.
pub async fn release(state: &AppState, user: &User, id: ApparatusId) -> Result<(), AppError> {
    let factory = user.factory()?;
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let row =
        sqlx::query("SELECT state, factory_id, product_code FROM auth_info WHERE apparatus_id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(TableError::UnknownApparatus(id))?;
    let st: String = row.try_get("state")?;
    let owner: Option<String> = row.try_get("factory_id")?;
    match st.as_str() {
        "unissued" => return Err(TableError::NotIssued(id).into()),
        "installed" => {
            return Err(AppError::Conflict(format!(
                "{id} is installed; revoke it instead"
            )));
        }
        _ if owner.as_deref() != Some(factory.as_str()) => {
            return Err(TableError::NotYourRecord(id).into());
        }
        _ => {}
    }
    let product: Option<String> = row.try_get("product_code")?;
    sqlx::query("DELETE FROM factory_records WHERE apparatus_id = ?")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE auth_info SET state = 'unissued', factory_id = NULL, product_code = NULL WHERE apparatus_id = ?").bind(id.as_str()).execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE quotas SET used = used - 1 WHERE factory_id = ? AND product_code = ? AND used > 0",
    )
    .bind(factory.as_str())
    .bind(product.as_deref())
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        &user.username,
        "release",
        json!({ "apparatus_id": id.as_str(), "factory": factory.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Issues a single-use challenge for an installed, unrevoked apparatus ID.
pub async fn challenge(state: &AppState, id: ApparatusId) -> Result<Challenge, AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let c = store_challenge(&mut tx, id).await?;
    tx.commit().await?;
    Ok(c)
}

/// Makes a challenge for `id`, valid for [`CHALLENGE_MILLIS`], and drops expired ones.
async fn store_challenge(
    conn: &mut SqliteConnection,
    id: ApparatusId,
) -> Result<Challenge, AppError> {
    let c = Challenge::generate(&mut crate::rng());
    sqlx::query("DELETE FROM challenges WHERE expires_at < ?")
        .bind(now_millis())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO challenges (challenge, apparatus_id, expires_at) VALUES (?, ?, ?)")
        .bind(c.0.to_vec())
        .bind(id.as_str())
        .bind(now_millis() + CHALLENGE_MILLIS)
        .execute(&mut *conn)
        .await?;
    Ok(c)
}

/// Checks a device's answer. The challenge is consumed whatever the outcome. Unknown,
/// revoked and wrong all answer `false`, and every attempt is audited.
pub async fn verify(
    state: &AppState,
    id: ApparatusId,
    c: Challenge,
    response: AuthResponse,
) -> Result<bool, AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let fresh = sqlx::query("DELETE FROM challenges WHERE challenge = ? AND apparatus_id = ? AND expires_at >= ? RETURNING challenge")
        .bind(c.0.to_vec())
        .bind(id.as_str())
        .bind(now_millis())
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    let device = sqlx::query(
        "SELECT conversion_sealed, revoked_at FROM installed_devices WHERE apparatus_id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let mut ok = false;
    let mut why = "unknown challenge";
    if fresh {
        why = "not installed";
        if let Some(d) = device {
            why = "revoked";
            if d.try_get::<Option<String>, _>("revoked_at")?.is_none() {
                let cv_bytes = state
                    .kek
                    .open(&cv_ctx(&id), &d.try_get::<Vec<u8>, _>("conversion_sealed")?)?;
                let cv = imprint_core::ConversionValue::from_bytes(&cv_bytes)
                    .map_err(|_| AppError::bug("stored conversion value invalid"))?;
                ok = response.verify(&cv, &id, &c).is_ok();
                why = if ok { "ok" } else { "wrong response" };
            }
        }
    }
    audit::append(
        &mut tx,
        "device",
        if ok { "auth.ok" } else { "auth.fail" },
        json!({ "apparatus_id": id.as_str(), "reason": why }),
    )
    .await?;
    tx.commit().await?;
    Metrics::add(
        if ok {
            &state.metrics.auth_ok
        } else {
            &state.metrics.auth_fail
        },
        1,
    );
    Ok(ok)
}

/// Revokes an installed apparatus ID: it fails authentication from now on.
pub async fn revoke(state: &AppState, actor: &str, id: ApparatusId) -> Result<(), AppError> {
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let n = sqlx::query(
        "UPDATE installed_devices SET revoked_at = ? WHERE apparatus_id = ? AND revoked_at IS NULL",
    )
    .bind(now_millis().to_string())
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound(format!(
            "{id} is not an installed, unrevoked device"
        )));
    }
    audit::append(
        &mut tx,
        actor,
        "revoke",
        json!({ "apparatus_id": id.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A CSV cell that a spreadsheet will show as text, never run as a formula: a cell that starts
/// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP, "CSV
/// Injection"). Station and technician names come from the factory, so every CSV the server
/// writes goes through here.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// Table 704 without secrets, as CSV (every cell through [`csv_cell`]).
pub async fn export_installed(state: &AppState) -> Result<String, AppError> {
    let rows = sqlx::query("SELECT apparatus_id, product_serial, factory_id, technician, station, receipt, installed_at, revoked_at FROM installed_devices ORDER BY installed_at, apparatus_id")
        .fetch_all(&state.pool)
        .await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "apparatus_id",
        "product_serial",
        "factory",
        "technician",
        "station",
        "receipt",
        "installed_at_ms",
        "revoked_at_ms",
    ];
    w.write_record(header)
        .map_err(|e| AppError::bug(e.to_string()))?;
    for r in rows {
        let fields: Vec<String> = vec![
            r.try_get("apparatus_id")?,
            r.try_get("product_serial")?,
            r.try_get("factory_id")?,
            r.try_get("technician")?,
            r.try_get("station")?,
            r.try_get("receipt")?,
            r.try_get("installed_at")?,
            r.try_get::<Option<String>, _>("revoked_at")?
                .unwrap_or_default(),
        ];
        w.write_record(fields.iter().map(|f| csv_cell(f).into_owned()))
            .map_err(|e| AppError::bug(e.to_string()))?;
    }
    String::from_utf8(w.into_inner().map_err(|e| AppError::bug(e.to_string()))?)
        .map_err(|e| AppError::bug(e.to_string()))
}
