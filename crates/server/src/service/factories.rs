//! Factories and their quotas.

use crate::db;
use imprint_core::{FactoryId, ProductCode, TableError};
use serde_json::json;

use super::product_key;
use crate::error::AppError;
use crate::{AppState, audit};

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
    state
        .store
        .write(&(actor, name), |tx, (actor, name)| {
            Box::pin(async move {
                let exists = db::query("SELECT factory_id FROM factories WHERE factory_id = $1")
                    .bind(factory.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_some() {
                    return Err(AppError::Conflict(format!(
                        "factory '{factory}' already exists"
                    )));
                }
                db::query("INSERT INTO factories (factory_id, name) VALUES ($1, $2)")
                    .bind(factory.as_str())
                    .bind(*name)
                    .execute(&mut *tx)
                    .await?;
                audit::append(
                    tx,
                    actor,
                    "factory.add",
                    json!({ "factory": factory.as_str(), "name": name }),
                )
                .await
            })
        })
        .await
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
    let limit = i64::try_from(limit).map_err(|_| AppError::BadRequest("quota too large".into()))?;
    state
        .store
        .write(&actor, |tx, actor| {
            Box::pin(async move {
                if db::query("SELECT factory_id FROM factories WHERE factory_id = $1")
                    .bind(factory.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_none()
                {
                    return Err(AppError::NotFound(format!("no factory '{factory}'")));
                }
                if product_key(tx, &product).await?.is_none() {
                    return Err(TableError::UnknownProduct(product).into());
                }
                db::query(
                    "INSERT INTO quotas (factory_id, product_code, quota_limit, used) VALUES ($1, $2, $3, 0) \
                     ON CONFLICT (factory_id, product_code) DO UPDATE SET quota_limit = excluded.quota_limit",
                )
                .bind(factory.as_str())
                .bind(product.as_str())
                .bind(limit)
                .execute(&mut *tx)
                .await?;
                audit::append(
                    tx,
                    actor,
                    "quota.set",
                    json!({ "factory": factory.as_str(), "product_code": product.as_str(), "limit": limit }),
                )
                .await
            })
        })
        .await
}
