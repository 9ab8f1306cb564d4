//! What the console shows at a glance: every factory with its quotas, open records and
//! leases, each product's pool, installs per hour and refused reports. Reads only, none in a
//! write transaction: the activity reads the hours asked for on indexes (migrations
//! `0012_console` / `0010_console`); the overview counts each factory's units and each pool on
//! indexes, which grows with the tables (docs/benchmarks.md).

use crate::db;
use imprint_api::{
    Activity, FactoryList, FactoryOverview, InstallCount, LeaseOverview, PoolLevel, QuotaUse,
    RefusedReport,
};
use imprint_core::{ApparatusId, FactoryId, ProductCode, ProductSerial};

use super::key_id_of;
use crate::error::AppError;
use crate::store::Conn;
use crate::{AppState, now_millis};

const HOUR_MS: i64 = 3_600_000;

fn count(n: i64) -> Result<u64, AppError> {
    u64::try_from(n).map_err(|_| AppError::bug(format!("a stored count is negative: {n}")))
}

/// The factory `id` of the list (rows of a factory the list lacks, added since it was read,
/// are left out: they are in the next overview).
fn of<'a>(list: &'a mut [FactoryOverview], id: &str) -> Option<&'a mut FactoryOverview> {
    list.iter_mut().find(|f| f.factory_id.as_str() == id)
}

/// `GET /factories`.
pub async fn factories(state: &AppState) -> Result<FactoryList, AppError> {
    let now = now_millis();
    let pool = &mut state.store.read().await?;
    let mut factories = Vec::new();
    for r in db::query("SELECT factory_id, name FROM factories ORDER BY factory_id")
        .fetch_all(&mut *pool)
        .await?
    {
        factories.push(FactoryOverview {
            factory_id: FactoryId::new(&r.try_get::<String, _>("factory_id")?)?,
            name: r.try_get("name")?,
            quotas: Vec::new(),
            leases: Vec::new(),
            installed: 0,
        });
    }
    for r in db::query(
        "SELECT factory_id, product_code, quota_limit, used FROM quotas ORDER BY factory_id, product_code",
    )
    .fetch_all(&mut *pool)
    .await?
    {
        let f: String = r.try_get("factory_id")?;
        if let Some(fo) = of(&mut factories, &f) {
            fo.quotas.push(QuotaUse {
                product_code: ProductCode::new(&r.try_get::<String, _>("product_code")?)?,
                limit: count(r.try_get("quota_limit")?)?,
                used: count(r.try_get("used")?)?,
                open: 0,
            });
        }
    }
    for r in db::query(
        "SELECT factory_id, product_code, COUNT(*) AS n FROM factory_records \
         WHERE product_serial IS NULL GROUP BY factory_id, product_code",
    )
    .fetch_all(&mut *pool)
    .await?
    {
        let f: String = r.try_get("factory_id")?;
        let p: String = r.try_get("product_code")?;
        if let Some(fo) = of(&mut factories, &f)
            && let Some(q) = fo.quotas.iter_mut().find(|q| q.product_code.as_str() == p)
        {
            q.open = count(r.try_get("n")?)?;
        }
    }
    for r in
        db::query("SELECT factory_id, COUNT(*) AS n FROM installed_devices GROUP BY factory_id")
            .fetch_all(&mut *pool)
            .await?
    {
        let f: String = r.try_get("factory_id")?;
        if let Some(fo) = of(&mut factories, &f) {
            fo.installed = count(r.try_get("n")?)?;
        }
    }
    for r in db::query(
        "SELECT l.lease_id, l.factory_id, l.product_code, l.not_after, l.record_count, \
         (SELECT COUNT(*) FROM factory_records r WHERE r.lease_id = l.lease_id AND r.product_serial IS NULL) AS open \
         FROM leases l WHERE l.expired_at IS NULL AND l.not_after > $1 ORDER BY l.not_after",
    )
    .bind(now)
    .fetch_all(&mut *pool)
    .await?
    {
        let f: String = r.try_get("factory_id")?;
        if let Some(fo) = of(&mut factories, &f) {
            fo.leases.push(LeaseOverview {
                lease_id: r.try_get("lease_id")?,
                product_code: ProductCode::new(&r.try_get::<String, _>("product_code")?)?,
                records: count(r.try_get("record_count")?)?,
                open: count(r.try_get("open")?)?,
                not_after_ms: count(r.try_get("not_after")?)?,
            });
        }
    }
    let mut pools = Vec::new();
    for r in db::query(
        "SELECT p.product_code, p.key_id, \
         (SELECT COUNT(*) FROM auth_info a WHERE a.key_id = p.key_id AND a.state = 'unissued') AS n \
         FROM product_codes p ORDER BY p.product_code",
    )
    .fetch_all(&mut *pool)
    .await?
    {
        pools.push(PoolLevel {
            product_code: ProductCode::new(&r.try_get::<String, _>("product_code")?)?,
            key_id: key_id_of(r.try_get("key_id")?)?,
            available: count(r.try_get("n")?)?,
        });
    }
    Ok(FactoryList {
        factories,
        pools,
        now_ms: count(now)?,
    })
}

/// `GET /activity`: the last `hours` hours (1 to 168), counted from the top of the first.
pub async fn activity(state: &AppState, hours: u64) -> Result<Activity, AppError> {
    let now = now_millis();
    let hours = hours.clamp(1, 168) as i64;
    let from = (now / HOUR_MS - (hours - 1)) * HOUR_MS;
    let pool = &mut state.store.read().await?;
    let mut installs = Vec::new();
    for r in db::query(
        "SELECT (installed_ms / 3600000) * 3600000 AS hour, factory_id, station, COUNT(*) AS n \
         FROM installed_devices WHERE installed_ms >= $1 \
         GROUP BY (installed_ms / 3600000) * 3600000, factory_id, station \
         ORDER BY hour, factory_id, station",
    )
    .bind(from)
    .fetch_all(&mut *pool)
    .await?
    {
        installs.push(InstallCount {
            hour_ms: count(r.try_get("hour")?)?,
            factory_id: FactoryId::new(&r.try_get::<String, _>("factory_id")?)?,
            station: r.try_get("station")?,
            count: count(r.try_get("n")?)?,
        });
    }
    // What was refused before this request is in the answer.
    crate::tlog::sequence_before_read(&state.store, &state.custody).await;
    let mut refused = Vec::new();
    for r in db::query(
        "SELECT seq, at_ms, actor, detail FROM audit_log \
         WHERE action = 'report.refused' AND at_ms >= $1 ORDER BY at_ms DESC, seq DESC LIMIT 100",
    )
    .bind(from)
    .fetch_all(&mut *pool)
    .await?
    {
        let detail: String = r.try_get("detail")?;
        let d: serde_json::Value = serde_json::from_str(&detail)
            .map_err(|e| AppError::bug(format!("a refused report's detail does not read: {e}")))?;
        let seq = count(r.try_get("seq")?)?;
        // Every refused report is written with these fields (service::report): one without
        // them is a fault of the log, said so, never shown as an empty refusal.
        let text = |k: &str| -> Result<String, AppError> {
            d.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    AppError::bug(format!("refused report {seq} has no {k} in its detail"))
                })
        };
        refused.push(RefusedReport {
            seq,
            at_ms: count(r.try_get("at_ms")?)?,
            technician: r.try_get("actor")?,
            factory: text("factory")?,
            station: text("station")?,
            apparatus_id: text("apparatus_id")?,
            product_serial: text("product_serial")?,
            reason: text("reason")?,
        });
    }
    Ok(Activity {
        from_ms: count(from)?,
        now_ms: count(now)?,
        installs,
        refused,
    })
}

/// The apparatus ID an audit search for `unit` means: `unit` itself if it is an apparatus ID
/// of table 702, else the unit installed under that product serial if there is one, else
/// `unit` as an apparatus ID (which finds nothing). Text that is neither is refused.
pub async fn unit_subject(conn: &mut Conn, unit: &str) -> Result<String, AppError> {
    if let Ok(id) = ApparatusId::new(unit)
        && db::query("SELECT 1 AS one FROM auth_info WHERE apparatus_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .is_some()
    {
        return Ok(id.as_str().to_string());
    }
    if let Ok(serial) = ProductSerial::new(unit)
        && let Some(r) =
            db::query("SELECT apparatus_id FROM installed_devices WHERE product_serial = $1")
                .bind(serial.as_str())
                .fetch_optional(&mut *conn)
                .await?
    {
        return r.try_get("apparatus_id");
    }
    match ApparatusId::new(unit) {
        Ok(id) => Ok(id.as_str().to_string()),
        Err(e) => Err(AppError::BadRequest(format!(
            "unit: neither an apparatus ID nor an installed product serial ({e})"
        ))),
    }
}
