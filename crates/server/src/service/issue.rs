//! Sealed records to factories (table 708): issue within quota, release, open records.

use crate::db;
use imprint_api::Record;
use imprint_core::tables::{EntryState, plan_issue};
use imprint_core::{
    ApparatusId, AuthInfo, Binding, ChipId, FactoryId, ProductCode, Quota, SealedRecord, TableError,
};
use serde_json::json;

use super::entries::CHUNK;
use super::{Stage, key_id_of, load_key, nonce_ctx, open_pass, pick};
use crate::auth::User;
use crate::custody::Custody;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::{self, Conn};
use crate::{AppState, audit, now_millis};

/// The most records one request may take.
pub(super) const MAX_ISSUE: u64 = 10_000;

/// Issues `count` sealed records of `product` to the technician's factory, within its quota.
///
/// `chip`: for a chip-bound product, the chip of the one unit the record is for.
pub async fn issue(
    state: &AppState,
    user: &User,
    product: ProductCode,
    count: u64,
    chip: Option<ChipId>,
) -> Result<Vec<Record>, AppError> {
    let factory = user.factory()?;
    super::leases::expire_leases(state, now_millis()).await?;
    let out = state
        .store
        .write(&(state, user), |tx, (state, user)| {
            Box::pin(async move {
                let out =
                    issue_in(tx, &state.custody, &factory, product, count, None, chip).await?;
                audit::append(
                    tx,
                    &user.username,
                    "issue",
                    json!({
                        "factory": factory.as_str(), "product_code": product.as_str(), "count": out.len(),
                        "apparatus_ids": out.iter().map(|r| r.apparatus_id.as_str()).collect::<Vec<_>>(),
                    }),
                )
                .await?;
                Ok(out)
            })
        })
        .await?;
    Metrics::add(&state.metrics.issued, out.len() as u64);
    Ok(out)
}

/// The shared part of issuing and leasing: rules, sealing, table writes, quota.
///
/// With several writers: the factory's quota row is locked first (on PostgreSQL; SQLite's
/// writer is alone anyway), so two issues to one factory and product take turns and each
/// sees what the other used; the pool is reserved with `FOR UPDATE SKIP LOCKED`, so issues to
/// different factories take different entries without waiting for each other; the quota is
/// then raised by a conditional update that cannot pass the limit.
pub(super) async fn issue_in(
    tx: &mut Conn,
    keys: &Custody,
    factory: &FactoryId,
    product: ProductCode,
    count: u64,
    lease_id: Option<&str>,
    chip: Option<ChipId>,
) -> Result<Vec<Record>, AppError> {
    if count > MAX_ISSUE {
        return Err(AppError::BadRequest(
            "at most 10000 records per request".into(),
        ));
    }
    // The product's row is read `FOR SHARE` on PostgreSQL: a remap (which locks it `FOR
    // UPDATE`) waits for issues under way and then re-seals what they issued, and an issue that
    // comes after a remap reads the new key. Issues of one product do not wait for each other.
    let row = db::query(pick(
        tx,
        "SELECT key_id, chip_bound FROM product_codes WHERE product_code = $1",
        "SELECT key_id, chip_bound FROM product_codes WHERE product_code = $1 FOR SHARE",
    ))
    .bind(product.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let key = row
        .as_ref()
        .map(|r| key_id_of(r.try_get("key_id")?))
        .transpose()?;
    let chip_bound = match &row {
        Some(r) => r.try_get::<i64, _>("chip_bound")? == 1,
        None => false,
    };
    let binding = binding_for(product, chip_bound, chip, count, lease_id.is_some())?;
    let quota = db::query(pick(
        tx,
        "SELECT quota_limit, used FROM quotas WHERE factory_id = $1 AND product_code = $2",
        "SELECT quota_limit, used FROM quotas WHERE factory_id = $1 AND product_code = $2 FOR UPDATE",
    ))
    .bind(factory.as_str())
    .bind(product.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| -> Result<Quota, AppError> {
        Ok(Quota {
            limit: stored_count(r.try_get("quota_limit")?)?,
            used: stored_count(r.try_get("used")?)?,
        })
    })
    .transpose()?
    .unwrap_or_default();
    let mut candidates = Vec::new();
    if let Some(k) = key {
        let take = i64::try_from(count.min(quota.remaining()))
            .map_err(|_| AppError::bug("a count over 10000 passed the check"))?;
        let rows = db::query(pick(
            tx,
            "SELECT apparatus_id, pass_sealed FROM auth_info WHERE key_id = $1 AND state = $2 \
             ORDER BY created_seq LIMIT $3",
            "SELECT apparatus_id, pass_sealed FROM auth_info WHERE key_id = $1 AND state = $2 \
             ORDER BY created_seq LIMIT $3 FOR UPDATE SKIP LOCKED",
        ))
        .bind(i64::from(k.get()))
        .bind(Stage::Unissued.as_str())
        .bind(take)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let id = ApparatusId::new(&r.try_get::<String, _>("apparatus_id")?)?;
            let pass = open_pass(keys, &id, &r.try_get::<Vec<u8>, _>("pass_sealed")?)?;
            candidates.push(AuthInfo {
                apparatus_id: id,
                pass_phrase: pass,
                key_id: k,
                state: EntryState::Unissued,
            });
        }
    }
    let (key_id, picked) = plan_issue(&product, key, quota, count, candidates.iter())?;
    let pre_write_key = load_key(&mut *tx, keys, key_id).await?;
    let mut rng = crate::rng();
    let now = now_millis();
    let mut out = Vec::with_capacity(picked.len());
    for chunk in picked.chunks(CHUNK) {
        let sealed: Vec<(SealedRecord, [u8; 16])> = chunk
            .iter()
            .map(|e| {
                SealedRecord::seal_with(
                    &mut rng,
                    &pre_write_key,
                    key_id,
                    &binding,
                    &e.apparatus_id,
                    &e.pass_phrase,
                )
            })
            .collect::<Result<_, AppError>>()?;
        let sql = format!(
            "UPDATE auth_info SET state = $1, factory_id = $2, product_code = $3 \
             WHERE state = $4 AND apparatus_id IN ({})",
            store::list(5, chunk.len())
        );
        let mut upd = db::query(store::bulk(tx, sql))
            .bind(Stage::Issued.as_str())
            .bind(factory.as_str())
            .bind(product.as_str())
            .bind(Stage::Unissued.as_str());
        for e in chunk {
            upd = upd.bind(e.apparatus_id.as_str());
        }
        let changed = upd.execute(&mut *tx).await?.rows_affected();
        if changed != chunk.len() as u64 {
            return Err(AppError::bug(format!(
                "issued {changed} of {} picked entries",
                chunk.len()
            )));
        }
        let sql = format!(
            "INSERT INTO factory_records (apparatus_id, sealed, key_id, factory_id, product_code, issued_ms, lease_id, nonce_sealed, chip_id) VALUES {}",
            store::values(chunk.len(), 9)
        );
        let mut ins = db::query(store::bulk(tx, sql));
        for (e, (rec, nonce)) in chunk.iter().zip(&sealed) {
            ins = ins
                .bind(e.apparatus_id.as_str())
                .bind(rec.as_bytes())
                .bind(i64::from(key_id.get()))
                .bind(factory.as_str())
                .bind(product.as_str())
                .bind(now)
                .bind(lease_id)
                .bind(keys.seal(&nonce_ctx(&e.apparatus_id), nonce)?)
                .bind(chip.map(|c| c.to_string()));
        }
        ins.execute(&mut *tx).await?;
        for (e, (rec, _)) in chunk.iter().zip(sealed) {
            out.push(Record {
                apparatus_id: e.apparatus_id,
                key_id,
                sealed: rec,
                product_code: product,
            });
        }
    }
    let raised = db::query(
        "UPDATE quotas SET used = used + $1 WHERE factory_id = $2 AND product_code = $3 \
         AND used + $1 <= quota_limit",
    )
    .bind(out.len() as i64)
    .bind(factory.as_str())
    .bind(product.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if raised != 1 && !out.is_empty() {
        return Err(AppError::bug(
            "the quota moved under its own lock while records were issued",
        ));
    }
    Ok(out)
}

/// The binding of the records of one issue, or why there is none: a chip-bound product's
/// records are sealed one at a time for a named chip, online only; any other product's for the
/// model.
fn binding_for(
    product: ProductCode,
    chip_bound: bool,
    chip: Option<ChipId>,
    count: u64,
    leased: bool,
) -> Result<Binding, AppError> {
    match (chip_bound, chip) {
        (true, Some(_)) if count != 1 => Err(AppError::BadRequest(format!(
            "product {product} is chip-bound: ask for one record per unit (count 1) with its chip_id"
        ))),
        (true, Some(c)) => Ok(Binding::Chip(c)),
        (true, None) if leased => Err(AppError::BadRequest(format!(
            "product {product} is chip-bound: each record is sealed for one unit's chip, which a lease cannot know; fetch its records online, one per unit"
        ))),
        (true, None) => Err(AppError::BadRequest(format!(
            "product {product} is chip-bound: ask for one record per unit, with the unit's chip_id"
        ))),
        (false, Some(_)) => Err(AppError::BadRequest(format!(
            "product {product} is not chip-bound: ask without a chip_id"
        ))),
        (false, None) => Ok(Binding::Model),
    }
}

/// A count read from the database, which is never negative.
pub(super) fn stored_count(n: i64) -> Result<u64, AppError> {
    u64::try_from(n).map_err(|_| AppError::bug(format!("a stored count is negative: {n}")))
}

/// Hands an issued, never-installed record back to the pool (a unit scrapped, a batch
/// cancelled); the quota is given back. The record can never be installed under its old seal.
pub async fn release(state: &AppState, user: &User, id: ApparatusId) -> Result<(), AppError> {
    let factory = user.factory()?;
    state
        .store
        .write(user, |tx, user| {
            Box::pin(async move {
                let row = db::query(pick(
                    tx,
                    "SELECT state, factory_id, product_code FROM auth_info WHERE apparatus_id = $1",
                    "SELECT state, factory_id, product_code FROM auth_info WHERE apparatus_id = $1 FOR UPDATE",
                ))
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(TableError::UnknownApparatus(id))?;
                let owner: Option<String> = row.try_get("factory_id")?;
                match Stage::parse(&row.try_get::<String, _>("state")?)? {
                    Stage::Unissued => return Err(TableError::NotIssued(id).into()),
                    Stage::Installed => {
                        return Err(AppError::Conflict(format!(
                            "{id} is installed; revoke it instead"
                        )));
                    }
                    Stage::Issued if owner.as_deref() != Some(factory.as_str()) => {
                        return Err(TableError::NotYourRecord(id).into());
                    }
                    Stage::Issued => {}
                }
                let product: Option<String> = row.try_get("product_code")?;
                db::query("DELETE FROM factory_records WHERE apparatus_id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                db::query(
                    "UPDATE auth_info SET state = $1, factory_id = NULL, product_code = NULL WHERE apparatus_id = $2",
                )
                .bind(Stage::Unissued.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                db::query(
                    "UPDATE quotas SET used = used - 1 WHERE factory_id = $1 AND product_code = $2 AND used > 0",
                )
                .bind(factory.as_str())
                .bind(product.as_deref())
                .execute(&mut *tx)
                .await?;
                audit::append(
                    tx,
                    &user.username,
                    "release",
                    json!({ "apparatus_id": id.as_str(), "factory": factory.as_str() }),
                )
                .await
            })
        })
        .await
}

/// The records issued to the technician's factory and not yet installed (to resume after a
/// reload, or to hand back).
pub async fn open_records(state: &AppState, user: &User) -> Result<Vec<Record>, AppError> {
    let factory = user.factory()?;
    let rows = db::query(
        "SELECT apparatus_id, sealed, key_id, product_code FROM factory_records \
         WHERE factory_id = $1 AND product_serial IS NULL ORDER BY apparatus_id",
    )
    .bind(factory.as_str())
    .fetch_all(&mut state.store.read().await?)
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
