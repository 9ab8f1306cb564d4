//! Pre-write keys (table 700) and product codes (table 500).

use crate::db;
use imprint_api::Product;
use imprint_api::Remapped;
use imprint_core::tables::plan_remap;
use imprint_core::{
    ApparatusId, Binding, ChipId, KeyId, PreWriteKey, ProductCode, SealedRecord, TableError,
};
use serde_json::json;

use super::{
    Stage, key_ctx, key_exists, key_id_of, load_key, nonce_ctx, open_pass, pick, product_key,
};
use crate::custody::{KeySource, StoredKey};
use crate::error::AppError;
use crate::{AppState, audit, now_millis};

/// Adds a pre-write key (table 700) with fresh random bytes. The key never leaves the server
/// except into devices' write modules through the maker's own provisioning of its model.
pub async fn add_key(state: &AppState, actor: &str, key_id: KeyId) -> Result<(), AppError> {
    put_key(state, actor, key_id, KeySource::Generate).await
}

/// Adds a pre-write key with given bytes (import from the maker's key ceremony, demo keys).
pub async fn add_key_bytes(
    state: &AppState,
    actor: &str,
    key_id: KeyId,
    key: PreWriteKey,
) -> Result<(), AppError> {
    put_key(state, actor, key_id, KeySource::Clear(key)).await
}

/// Adds a pre-write key the brand owner encrypted to the token's import key
/// ([`crate::custody::Custody::import_key_pem`]): it is unwrapped inside the token and never
/// in clear on this server.
pub async fn add_key_wrapped(
    state: &AppState,
    actor: &str,
    key_id: KeyId,
    wrapped: Vec<u8>,
    check: [u8; 3],
) -> Result<(), AppError> {
    put_key(state, actor, key_id, KeySource::Wrapped { wrapped, check }).await
}

/// Makes the key in its custody, then writes its row; a row that cannot be written (the ID is
/// taken) takes the key it was made for out of the token again.
async fn put_key(
    state: &AppState,
    actor: &str,
    key_id: KeyId,
    source: KeySource,
) -> Result<(), AppError> {
    let stored = state
        .custody
        .new_pre_write_key(key_id, &key_ctx(key_id), source)?;
    let written = state
        .store
        .write(&(actor, &stored), |tx, (actor, stored)| {
            Box::pin(async move {
                if key_exists(tx, key_id).await? {
                    return Err(TableError::DuplicateKeyId(key_id).into());
                }
                let (sealed, label): (&[u8], Option<&str>) = match stored {
                    StoredKey::Sealed(b) => (b, None),
                    StoredKey::Token(l) => (&[], Some(l)),
                };
                db::query(
                    "INSERT INTO pre_write_keys (key_id, key_sealed, token_label, created_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(i64::from(key_id.get()))
                .bind(sealed)
                .bind(label)
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
                let held = if label.is_some() { "token" } else { "file" };
                audit::append(tx, actor, "key.add", json!({ "key_id": key_id.get(), "held": held })).await
            })
        })
        .await;
    // Only when the row surely was not written: after another error (a commit whose answer
    // was lost) the row may hold the label, and the key must stay.
    if matches!(written, Err(AppError::Rule(TableError::DuplicateKeyId(_))))
        && let Err(e) = state.custody.discard(&stored)
    {
        tracing::error!(key_id = key_id.get(), error = %e, "a pre-write key made for a row that was not written stays in the token");
    }
    written
}

/// The key identifiers in table 700.
pub async fn list_keys(state: &AppState) -> Result<Vec<KeyId>, AppError> {
    let rows = db::query("SELECT key_id FROM pre_write_keys ORDER BY key_id")
        .fetch_all(&mut state.store.read().await?)
        .await?;
    rows.iter()
        .map(|r| key_id_of(r.try_get("key_id")?))
        .collect()
}

/// Maps a product code to a key identifier (table 500). On a remap, records issued for the
/// product but not installed are sealed again under the new key, so the factory's next
/// download opens on new-key devices; entries move to the new key identifier.
///
/// `chip_bound`: for a new product, whether its records are bound to one chip each (default
/// no); for a mapped one it must be `None` or what it is.
pub async fn map_product(
    state: &AppState,
    actor: &str,
    code: ProductCode,
    new_key: KeyId,
    chip_bound: Option<bool>,
) -> Result<Remapped, AppError> {
    state
        .store
        .write(&(state, actor), |tx, (state, actor)| {
            Box::pin(async move {
                // The product's row first, locked on PostgreSQL: two remaps of one product
                // take turns, and the issued entries read below stay this product's.
                let current = match db::query(pick(
                    tx,
                    "SELECT key_id, chip_bound FROM product_codes WHERE product_code = $1",
                    "SELECT key_id, chip_bound FROM product_codes WHERE product_code = $1 FOR UPDATE",
                ))
                .bind(code.as_str())
                .fetch_optional(&mut *tx)
                .await?
                {
                    Some(r) => Some((
                        key_id_of(r.try_get("key_id")?)?,
                        r.try_get::<i64, _>("chip_bound")? == 1,
                    )),
                    None => None,
                };
                if let (Some((_, is)), Some(asked)) = (current, chip_bound)
                    && is != asked
                {
                    return Err(AppError::Conflict(format!(
                        "product {code} is {}: a product's binding is fixed when it is first mapped",
                        if is { "chip-bound" } else { "model-bound" }
                    )));
                }
                let bound = current.map_or(chip_bound.unwrap_or(false), |(_, is)| is);
                let current = current.map(|(k, _)| k);
                let exists = key_exists(tx, new_key).await?;
                let old = plan_remap(current, new_key, exists)?;
                let mut resealed = 0u64;
                if old.is_some() {
                    let key = load_key(tx, &state.custody, new_key).await?;
                    let rows = db::query(pick(
                        tx,
                        "SELECT a.apparatus_id, a.pass_sealed, f.chip_id FROM auth_info a JOIN factory_records f ON f.apparatus_id = a.apparatus_id WHERE a.state = $1 AND a.product_code = $2",
                        "SELECT a.apparatus_id, a.pass_sealed, f.chip_id FROM auth_info a JOIN factory_records f ON f.apparatus_id = a.apparatus_id WHERE a.state = $1 AND a.product_code = $2 FOR UPDATE",
                    ))
                    .bind(Stage::Issued.as_str())
                    .bind(code.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut rng = crate::rng();
                    for r in rows {
                        let id = ApparatusId::new(&r.try_get::<String, _>("apparatus_id")?)?;
                        let pass =
                            open_pass(&state.custody, &id, &r.try_get::<Vec<u8>, _>("pass_sealed")?)?;
                        // A chip-bound record is sealed again for the chip it was issued for.
                        let binding = match r.try_get::<Option<String>, _>("chip_id")? {
                            Some(hex) => Binding::Chip(ChipId::from_hex(&hex).map_err(|e| {
                                AppError::bug(format!("stored chip ID of {id} unreadable: {e}"))
                            })?),
                            None => Binding::Model,
                        };
                        let (sealed, nonce) = SealedRecord::seal_with(
                            &mut rng,
                            &key,
                            new_key,
                            &binding,
                            &id,
                            &pass,
                        )?;
                        db::query("UPDATE auth_info SET key_id = $1 WHERE apparatus_id = $2")
                            .bind(i64::from(new_key.get()))
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await?;
                        db::query(
                            "UPDATE factory_records SET sealed = $1, key_id = $2, nonce_sealed = $3 WHERE apparatus_id = $4",
                        )
                        .bind(sealed.as_bytes())
                        .bind(i64::from(new_key.get()))
                        .bind(state.custody.seal(&nonce_ctx(&id), &nonce)?)
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                        resealed += 1;
                    }
                    db::query("UPDATE product_codes SET key_id = $1 WHERE product_code = $2")
                        .bind(i64::from(new_key.get()))
                        .bind(code.as_str())
                        .execute(&mut *tx)
                        .await?;
                } else {
                    if product_key(tx, &code).await?.is_some() {
                        return Err(AppError::bug("a product appeared during its own mapping"));
                    }
                    db::query("INSERT INTO product_codes (product_code, key_id, chip_bound) VALUES ($1, $2, $3)")
                        .bind(code.as_str())
                        .bind(i64::from(new_key.get()))
                        .bind(i64::from(bound))
                        .execute(&mut *tx)
                        .await?;
                }
                let out = Remapped {
                    old_key_id: old,
                    new_key_id: new_key,
                    resealed,
                };
                audit::append(
                    tx,
                    actor,
                    "product.map",
                    json!({ "product_code": code.as_str(), "old_key_id": out.old_key_id.map(KeyId::get), "new_key_id": new_key.get(), "resealed": resealed, "chip_bound": bound }),
                )
                .await?;
                Ok(out)
            })
        })
        .await
}

/// Product codes, their key identifiers and settings.
pub async fn list_products(state: &AppState) -> Result<Vec<Product>, AppError> {
    let rows = db::query(
        "SELECT product_code, key_id, chip_bound, lock_units FROM product_codes ORDER BY product_code",
    )
    .fetch_all(&mut state.store.read().await?)
    .await?;
    rows.iter().map(product_of).collect()
}

fn product_of(r: &db::Row) -> Result<Product, AppError> {
    Ok(Product {
        product_code: ProductCode::new(&r.try_get::<String, _>("product_code")?)?,
        key_id: key_id_of(r.try_get("key_id")?)?,
        chip_bound: r.try_get::<i64, _>("chip_bound")? == 1,
        lock_units: r.try_get::<i64, _>("lock_units")? == 1,
    })
}

/// Sets whether stations lock the product's units after the closed-loop check. Takes effect
/// at each station's next sign-in; units already provisioned stay as they are. Audited, also
/// when nothing changes (an operator's confirmation is worth recording).
pub async fn set_lock_units(
    state: &AppState,
    actor: &str,
    code: ProductCode,
    lock_units: bool,
) -> Result<Product, AppError> {
    state
        .store
        .write(&(actor,), |tx, (actor,)| {
            Box::pin(async move {
                let changed = db::query("UPDATE product_codes SET lock_units = $1 WHERE product_code = $2")
                    .bind(i64::from(lock_units))
                    .bind(code.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    return Err(TableError::UnknownProduct(code).into());
                }
                let row = db::query(
                    "SELECT product_code, key_id, chip_bound, lock_units FROM product_codes WHERE product_code = $1",
                )
                .bind(code.as_str())
                .fetch_one(&mut *tx)
                .await?;
                audit::append(
                    tx,
                    actor,
                    "product.lock_units",
                    json!({ "product_code": code.as_str(), "lock_units": lock_units }),
                )
                .await?;
                product_of(&row)
            })
        })
        .await
}
