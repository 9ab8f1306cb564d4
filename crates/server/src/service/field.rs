//! Field authentication of installed devices (challenge-response), and revocation.

use imprint_core::{ApparatusId, AuthResponse, Challenge};
use serde_json::json;
use sqlx::Row;

use super::cv_ctx;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::Conn;
use crate::{AppState, audit, now_millis};

/// How long an authentication challenge may be answered.
pub const CHALLENGE_MILLIS: i64 = 60_000;

/// Issues a single-use challenge for an apparatus ID.
pub async fn challenge(state: &AppState, id: ApparatusId) -> Result<Challenge, AppError> {
    state
        .store
        .write(&(), |tx, ()| Box::pin(store_challenge(tx, id)))
        .await
}

/// Makes a challenge for `id`, valid for [`CHALLENGE_MILLIS`], and drops expired ones.
pub(super) async fn store_challenge(
    conn: &mut Conn,
    id: ApparatusId,
) -> Result<Challenge, AppError> {
    let c = Challenge::generate(&mut crate::rng());
    sqlx::query("DELETE FROM challenges WHERE expires_at < $1")
        .bind(now_millis())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO challenges (challenge, apparatus_id, expires_at) VALUES ($1, $2, $3)")
        .bind(c.0.as_slice())
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
    let ok = state
        .store
        .write(state, |tx, state| {
            Box::pin(async move {
                let fresh = sqlx::query(
                    "DELETE FROM challenges WHERE challenge = $1 AND apparatus_id = $2 AND expires_at >= $3 RETURNING challenge",
                )
                .bind(c.0.as_slice())
                .bind(id.as_str())
                .bind(now_millis())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                let device = sqlx::query(
                    "SELECT conversion_sealed, revoked_ms FROM installed_devices WHERE apparatus_id = $1",
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
                        if d.try_get::<Option<i64>, _>("revoked_ms")?.is_none() {
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
                    tx,
                    "device",
                    if ok { "auth.ok" } else { "auth.fail" },
                    json!({ "apparatus_id": id.as_str(), "reason": why }),
                )
                .await?;
                Ok(ok)
            })
        })
        .await?;
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
    state
        .store
        .write(&actor, |tx, actor| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE installed_devices SET revoked_ms = $1 WHERE apparatus_id = $2 AND revoked_ms IS NULL",
                )
                .bind(now_millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(AppError::NotFound(format!(
                        "{id} is not an installed, unrevoked device"
                    )));
                }
                audit::append(tx, actor, "revoke", json!({ "apparatus_id": id.as_str() })).await
            })
        })
        .await
}
