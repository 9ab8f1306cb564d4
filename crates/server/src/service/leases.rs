//! Offline leases: signed bundles of records a station may use through an outage, and their
//! expiry back to the pool.

use crate::db;
use imprint_api::{Bytes, LeaseAnswer};
use imprint_core::ProductCode;
use serde_json::json;

use super::issue::issue_in;
use super::{Stage, pick};
use crate::auth::User;
use crate::custody::SigningKey;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::{AppState, audit, now_millis};

/// How long after a lease's deadline its unreported records stay reserved, so that units
/// installed offline can still be reported; then they go back to the pool.
pub const LEASE_GRACE_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// The public key stations verify leases with.
pub async fn lease_public_key(state: &AppState) -> Result<[u8; 32], AppError> {
    state
        .custody
        .public_key(&state.store, SigningKey::Lease)
        .await
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
    let answer = state
        .store
        .write(&(state, user), |tx, (state, user)| {
            Box::pin(async move {
                let mut lease_id = [0u8; 16];
                {
                    use rand_core::Rng;
                    crate::rng().fill_bytes(&mut lease_id);
                }
                let id_hex = hex::encode(lease_id);
                let issued_at = now_millis();
                let not_after = issued_at + (hours as i64) * 3_600_000;
                db::query(
                    "INSERT INTO leases (lease_id, factory_id, product_code, issued_at, not_after, record_count) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id_hex.as_str())
                .bind(factory.as_str())
                .bind(product.as_str())
                .bind(issued_at)
                .bind(not_after)
                .bind(count as i64)
                .execute(&mut *tx)
                .await?;
                let records =
                    issue_in(tx, &state.custody, &factory, product, count, Some(&id_hex), None).await?;
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
                let (public_key, signature) =
                    state
                        .custody
                        .sign_ed25519(tx, SigningKey::Lease, &core_lease.signed_bytes())
                        .await?;
                audit::append(
                    tx,
                    &user.username,
                    "lease",
                    json!({
                        "lease_id": id_hex, "factory": factory.as_str(), "product_code": product.as_str(),
                        "count": records.len(), "not_after_ms": not_after,
                    }),
                )
                .await?;
                Ok(LeaseAnswer {
                    lease_id: Bytes(lease_id),
                    factory,
                    product_code: product,
                    issued_at_ms: issued_at as u64,
                    not_after_ms: not_after as u64,
                    records,
                    public_key: Bytes(public_key),
                    signature: Bytes(signature),
                })
            })
        })
        .await?;
    Metrics::add(&state.metrics.issued, answer.records.len() as u64);
    Ok(answer)
}

/// Returns to the pool the unreported records of leases past their deadline plus
/// [`LEASE_GRACE_MILLIS`]. Returns how many records went back.
///
/// Several processes sweep at once: each due lease's row is locked (PostgreSQL, skipping
/// those another sweep holds), and a lease already expired is not expired again.
pub async fn expire_leases(state: &AppState, now: i64) -> Result<u64, AppError> {
    state
        .store
        .write(&(), |tx, ()| {
            Box::pin(async move {
                let due = db::query(pick(
                    tx,
                    "SELECT lease_id, factory_id, product_code FROM leases WHERE expired_at IS NULL AND not_after + $1 < $2",
                    "SELECT lease_id, factory_id, product_code FROM leases WHERE expired_at IS NULL AND not_after + $1 < $2 \
                     FOR UPDATE SKIP LOCKED",
                ))
                .bind(LEASE_GRACE_MILLIS)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let mut total = 0u64;
                let mut expired = Vec::new();
                for lease in due {
                    let lease_id: String = lease.try_get("lease_id")?;
                    let factory: String = lease.try_get("factory_id")?;
                    let product: String = lease.try_get("product_code")?;
                    let open = db::query(
                        "SELECT apparatus_id FROM factory_records WHERE lease_id = $1 AND product_serial IS NULL",
                    )
                    .bind(lease_id.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut returned = 0i64;
                    for r in &open {
                        let id: String = r.try_get("apparatus_id")?;
                        // The entry's row first, locked on PostgreSQL: every writer of its
                        // record (report, release, issue, remap) holds that lock, so what is
                        // read next stays true until the commit. Then only a record still this
                        // lease's and still open goes back: since the read above, the unit may
                        // have been reported, or the record released and issued anew.
                        let locked = db::query(pick(
                            tx,
                            "SELECT state FROM auth_info WHERE apparatus_id = $1",
                            "SELECT state FROM auth_info WHERE apparatus_id = $1 FOR UPDATE",
                        ))
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                        let still = db::query(
                            "SELECT apparatus_id FROM factory_records \
                             WHERE apparatus_id = $1 AND lease_id = $2 AND product_serial IS NULL",
                        )
                        .bind(id.as_str())
                        .bind(lease_id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                        if locked.is_none() || still.is_none() {
                            continue;
                        }
                        let back = db::query(
                            "UPDATE auth_info SET state = $1, factory_id = NULL, product_code = NULL \
                             WHERE apparatus_id = $2 AND state = $3",
                        )
                        .bind(Stage::Unissued.as_str())
                        .bind(id.as_str())
                        .bind(Stage::Issued.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if back == 1 {
                            db::query("DELETE FROM factory_records WHERE apparatus_id = $1")
                                .bind(id.as_str())
                                .execute(&mut *tx)
                                .await?;
                            returned += 1;
                        }
                    }
                    db::query(
                        "UPDATE quotas SET used = CASE WHEN used > $1 THEN used - $1 ELSE 0 END \
                         WHERE factory_id = $2 AND product_code = $3",
                    )
                    .bind(returned)
                    .bind(factory.as_str())
                    .bind(product.as_str())
                    .execute(&mut *tx)
                    .await?;
                    db::query("UPDATE leases SET expired_at = $1 WHERE lease_id = $2")
                        .bind(now)
                        .bind(lease_id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    total += returned as u64;
                    expired.push((lease_id, returned));
                }
                // The audit entries last: the log's lock is then held only for the commit.
                for (lease_id, returned) in expired {
                    audit::append(
                        tx,
                        "system",
                        "lease.expire",
                        json!({ "lease_id": lease_id, "returned": returned }),
                    )
                    .await?;
                }
                Ok(total)
            })
        })
        .await
}
