//! What the server's benchmarks share: a fresh SQLite store with a key, a product, a factory
//! with a quota and its technician.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use imprint_core::{FactoryId, KeyId, ProductCode};
use imprint_server::store::Store;
use imprint_server::{AppState, auth, kek::Kek, service};

pub(crate) fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("imprint-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) async fn fresh(tag: &str, quota: u64) -> (AppState, std::path::PathBuf) {
    fresh_on(tag, quota, None).await
}

/// A fresh, empty database on the PostgreSQL cluster whose URL is `admin`; its URL.
pub(crate) async fn postgres_database(admin: &str, tag: &str) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("bench_{tag}_{}", imprint_server::random_id());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    conn.close().await.unwrap();
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// [`fresh`], on a fresh database of the PostgreSQL cluster at `postgres` when given.
pub(crate) async fn fresh_on(
    tag: &str,
    quota: u64,
    postgres: Option<&str>,
) -> (AppState, std::path::PathBuf) {
    let dir = temp(tag);
    let store = match postgres {
        Some(admin) => Store::open(&postgres_database(admin, tag).await)
            .await
            .unwrap(),
        None => Store::open_sqlite(&dir.join("imprint.db")).await.unwrap(),
    };
    let state = AppState::new(store, Kek::generate().0);
    let k1 = KeyId::new(1).unwrap();
    service::add_key_bytes(&state, "bench", k1, imprint_device::sim::demo_key(k1))
        .await
        .unwrap();
    let p = ProductCode::new("CAM-X100").unwrap();
    service::map_product(&state, "bench", p, k1, None)
        .await
        .unwrap();
    let f = FactoryId::new("fa").unwrap();
    service::add_factory(&state, "bench", f, "A").await.unwrap();
    service::set_quota(&state, "bench", f, p, quota)
        .await
        .unwrap();
    let mut tx = state.store.begin().await.unwrap();
    auth::create_user(
        &mut tx,
        "bench",
        "tech",
        "password-123",
        "technician",
        Some("fa"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (state, dir)
}

pub(crate) fn tech() -> auth::User {
    auth::User {
        username: "tech".into(),
        role: auth::Role::Technician,
        factory: Some("fa".into()),
    }
}

pub(crate) fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The `p` quantile of `sorted` latencies (nearest rank).
pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted.get(i).copied().unwrap_or_default()
}

/// The unit a latency table prints in.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    /// Microseconds, one decimal.
    Micros,
    /// Milliseconds, two decimals.
    Millis,
}

/// A table row: `| label | mean | p50 | p99 | max |` of `lat`, in `unit`.
pub(crate) fn row(label: &str, mut lat: Vec<Duration>, unit: Unit) {
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
    let show = |d: Duration| match unit {
        Unit::Micros => format!("{:.1}", d.as_secs_f64() * 1e6),
        Unit::Millis => format!("{:.2}", d.as_secs_f64() * 1e3),
    };
    println!(
        "| {label} | {} | {} | {} | {} |",
        show(mean),
        show(pct(&lat, 0.5)),
        show(pct(&lat, 0.99)),
        show(pct(&lat, 1.0))
    );
}
