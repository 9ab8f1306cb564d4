//! Server throughput and latency, for docs/benchmarks.md.
//!
//! Run: `cargo bench -p imprint-server --bench server -- [records]` (default 1,000,000).
//! Measures in one run, on one fresh SQLite file each:
//! 1. issuing N records end to end (generate table 702, then issue table 708 in requests of
//!    10,000: unseal, seal, persist, audit) against a bare seal loop, bare SQLite inserts of the
//!    same rows (sqlx, 200 rows a statement; rusqlite, a prepared statement a row) and the
//!    Python script of issue 16 (`benches/python/issue.py`, run if python3 has `cryptography`);
//! 2. report latency with 32 stations reporting at once through the HTTP router.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Instant;

use imprint_core::{
    ApparatusId, Binding, KeyId, PassPhrase, PreWriteKey, ProductCode, SealedRecord,
};
use imprint_server::{auth, service};

mod common;
use common::{fresh_on, rate, tech, temp};

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let product = ProductCode::new("CAM-X100").unwrap();
    // `DATABASE_URL=postgres://...`: the same runs on PostgreSQL (a fresh database each),
    // against `COPY` and a 200-row insert of the same rows there.
    let pg = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let on = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("## Server benchmark, {n} records, {on}\n");

    // 1a. End to end: generate, then issue in requests of 10,000.
    let (state, dir) = fresh_on("issue", n, pg.as_deref()).await;
    let t = Instant::now();
    service::generate(&state, "bench", KeyId::new(1).unwrap(), n, "IMP-")
        .await
        .unwrap();
    let generated = t.elapsed();
    let t = Instant::now();
    let mut issued = 0;
    while issued < n {
        let batch = (n - issued).min(10_000);
        issued += service::issue(&state, &tech(), product, batch, None)
            .await
            .unwrap()
            .len() as u64;
    }
    let issuing = t.elapsed();
    let end_to_end = generated + issuing;
    let db_size = match &pg {
        Some(_) => imprint_server::db::query("SELECT pg_database_size(current_database()) AS n")
            .fetch_one(&mut state.store.read().await.unwrap())
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap() as u64,
        None => {
            std::fs::metadata(dir.join("imprint.db")).map_or(0, |m| m.len())
                + std::fs::metadata(dir.join("imprint.db-wal")).map_or(0, |m| m.len())
        }
    };
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    // 1b. Bare seal loop over the same kind of inputs.
    let mut rng = imprint_server::rng();
    let key = PreWriteKey::generate(&mut rng);
    let kid = KeyId::new(1).unwrap();
    let inputs: Vec<(ApparatusId, PassPhrase)> = (0..n)
        .map(|i| {
            (
                ApparatusId::new(&format!("IMP-{i:010}")).unwrap(),
                PassPhrase::generate(&mut rng),
            )
        })
        .collect();
    let t = Instant::now();
    let sealed: Vec<Vec<u8>> = inputs
        .iter()
        .map(|(id, p)| {
            SealedRecord::seal(&mut rng, &key, kid, &Binding::Model, id, p)
                .as_bytes()
                .to_vec()
        })
        .collect();
    let seal_loop = t.elapsed();

    let (batch_loop, insert_loop) = match &pg {
        Some(url) => postgres_baselines(url, &inputs, &sealed).await,
        None => sqlite_baselines(&inputs, &sealed).await,
    };

    // 1e. The Python script of issue 16, measured in the same run (SQLite's runs only).
    let python = match pg {
        Some(_) => Err("a SQLite script; this run is on PostgreSQL".to_string()),
        None => python_baseline(n),
    };

    let slower = rate(n, seal_loop).min(rate(n, batch_loop));
    println!("| run | time | records/s |\n| --- | --- | --- |");
    println!(
        "| generate {n} entries (702: random pass phrase, sealed at rest, insert, audit) | {:.2} s | {:.0} |",
        generated.as_secs_f64(),
        rate(n, generated)
    );
    println!(
        "| issue {n} records in requests of 10,000 (unseal, seal, update 702, insert 708, quota, audit) | {:.2} s | {:.0} |",
        issuing.as_secs_f64(),
        rate(n, issuing)
    );
    println!(
        "| **end to end: generate + issue** | {:.2} s | **{:.0}** |",
        end_to_end.as_secs_f64(),
        rate(n, end_to_end)
    );
    println!(
        "| bare seal loop (same inputs) | {:.2} s | {:.0} |",
        seal_loop.as_secs_f64(),
        rate(n, seal_loop)
    );
    println!(
        "| bare {on} insert of the sealed rows, 200 rows per statement, sqlx (one transaction) | {:.2} s | {:.0} |",
        batch_loop.as_secs_f64(),
        rate(n, batch_loop)
    );
    let bulk = if pg.is_some() {
        "`COPY ... FROM STDIN` of the sealed rows (text format, one transaction)"
    } else {
        "bare SQLite insert of the sealed rows, one prepared statement per row, rusqlite (one transaction)"
    };
    println!(
        "| {bulk} | {:.2} s | {:.0} |",
        insert_loop.as_secs_f64(),
        rate(n, insert_loop)
    );
    match &python {
        Ok(r) => println!(
            "| Python script (`benches/python/issue.py`: AESGCM, sqlite3 executemany, one transaction) | {:.2} s | {r:.0} |",
            n as f64 / r
        ),
        Err(why) => println!("| Python script | not run: {why} | |"),
    }
    println!(
        "\nEnd to end / slower of (seal loop, batched insert) = {:.2} (goal >= 0.5); / {} = {:.2}; / Python script = {} (goal >= 1.5). Database size after: {:.0} MB.\n",
        rate(n, end_to_end) / slower,
        if pg.is_some() {
            "COPY"
        } else {
            "rusqlite insert"
        },
        rate(n, end_to_end) / rate(n, insert_loop),
        python.as_ref().map_or("not run".to_string(), |r| format!(
            "{:.2}",
            rate(n, end_to_end) / r
        )),
        db_size as f64 / 1e6
    );

    // 2. Report latency, 32 stations at once through the router.
    let stations = 32u32;
    let per_station = 20u32;
    let total = u64::from(stations * per_station);
    let (state, dir) = fresh_on("report", total, pg.as_deref()).await;
    service::generate(&state, "bench", KeyId::new(1).unwrap(), total, "R-")
        .await
        .unwrap();
    let recs = service::issue(&state, &tech(), product, total, None)
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let id = r.apparatus_id;
        let sealed = r.sealed.clone();
        let mut dev = imprint_device::sim::SimDevice::demo(i as u32);
        dev.transfer_out(
            &imprint_core::Request::Install {
                apparatus_id: id,
                record: sealed,
            }
            .encode(1),
        )
        .unwrap();
        let (_, imprint_core::Reply::Installed(receipt)) =
            imprint_core::Reply::decode(&dev.transfer_in(1024).unwrap()).unwrap()
        else {
            panic!()
        };
        jobs.push(serde_json::json!({"apparatus_id": r.apparatus_id, "product_serial": dev.config().product_serial.as_str(), "receipt": hex::encode(receipt.0), "station": format!("s{}", i % 32)}).to_string());
    }
    let app = imprint_server::app(state.clone());
    let (token, _) = auth::login(&state, "tech", "password-123", None)
        .await
        .unwrap();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..stations as usize {
        let mine: Vec<String> = jobs
            .iter()
            .skip(s)
            .step_by(stations as usize)
            .cloned()
            .collect();
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let mut lat = Vec::new();
            for body in mine {
                let req = axum::http::Request::post("/api/v1/report")
                    .header("authorization", token.bearer())
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap();
                let start = Instant::now();
                let res = app.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), 200);
                lat.push(start.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = t.elapsed();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!("| report latency, {stations} stations x {per_station} reports | ms |\n| --- | --- |");
    println!(
        "| p50 | {:.2} |\n| p95 | {:.2} |\n| p99 | {:.2} |\n| max | {:.2} |",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    println!("| throughput | {:.0} reports/s |", rate(total, wall));
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `benches/python/issue.py` on `n` records: its records/s, or why it did not run (no
/// python3, no `cryptography`: `pip install cryptography`).
fn python_baseline(n: u64) -> Result<f64, String> {
    let dir = temp("python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/issue.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(n.to_string())
        .arg(&dir)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("records/s ")
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            format!(
                "{} (pip install cryptography)",
                err.lines().last().unwrap_or("no output")
            )
        })
}

/// The bare SQLite inserts of the sealed rows: 200-row statements through sqlx, and one
/// prepared statement per row through rusqlite (SQLite itself); each one transaction, the
/// store's settings (WAL, `synchronous = FULL`).
async fn sqlite_baselines(
    inputs: &[(ApparatusId, PassPhrase)],
    sealed: &[Vec<u8>],
) -> (std::time::Duration, std::time::Duration) {
    let dir = temp("insert");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join("bare.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await
        .unwrap();
    sqlx::query(BARE_TABLE).execute(&pool).await.unwrap();
    let t = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    for chunk in inputs.iter().zip(sealed).collect::<Vec<_>>().chunks(200) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO bare ");
        q.push_values(chunk, |mut b, ((id, _), s)| {
            b.push_bind(id.as_str())
                .push_bind(s.to_vec())
                .push_bind(1i64)
                .push_bind("fa")
                .push_bind("CAM-X100")
                .push_bind("0");
        });
        q.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let batch_loop = t.elapsed();
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let dir = temp("rusqlite");
    let conn = rusqlite::Connection::open(dir.join("bare.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    conn.execute_batch(BARE_TABLE).unwrap();
    let t = Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    {
        let mut stmt = conn
            .prepare("INSERT INTO bare VALUES (?1, ?2, 1, 'fa', 'CAM-X100', '0')")
            .unwrap();
        for ((id, _), s) in inputs.iter().zip(sealed) {
            stmt.execute(rusqlite::params![id.as_str(), s]).unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    let insert_loop = t.elapsed();
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    (batch_loop, insert_loop)
}

/// The same on PostgreSQL, each in a fresh database: 200-row statements through sqlx's own
/// PostgreSQL driver, and `COPY bare FROM STDIN` (text format, the blob as `\\x` hex), each
/// one transaction.
async fn postgres_baselines(
    admin: &str,
    inputs: &[(ApparatusId, PassPhrase)],
    sealed: &[Vec<u8>],
) -> (std::time::Duration, std::time::Duration) {
    use sqlx::Connection;
    let table = BARE_TABLE.replace("BLOB", "BYTEA");
    let url = common::postgres_database(admin, "bare").await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(table.clone()))
        .execute(&mut conn)
        .await
        .unwrap();
    let t = Instant::now();
    let mut tx = conn.begin().await.unwrap();
    for chunk in inputs.iter().zip(sealed).collect::<Vec<_>>().chunks(200) {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO bare ");
        q.push_values(chunk, |mut b, ((id, _), s)| {
            b.push_bind(id.as_str())
                .push_bind(s.to_vec())
                .push_bind(1i64)
                .push_bind("fa")
                .push_bind("CAM-X100")
                .push_bind("0");
        });
        q.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let batch_loop = t.elapsed();
    conn.close().await.unwrap();

    let url = common::postgres_database(admin, "copy").await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(table))
        .execute(&mut conn)
        .await
        .unwrap();
    let t = Instant::now();
    let mut tx = conn.begin().await.unwrap();
    let mut copy = tx.copy_in_raw("COPY bare FROM STDIN").await.unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    for ((id, _), s) in inputs.iter().zip(sealed) {
        buf.extend_from_slice(id.as_str().as_bytes());
        buf.extend_from_slice(b"\t\\\\x");
        buf.extend_from_slice(hex::encode(s).as_bytes());
        buf.extend_from_slice(b"\t1\tfa\tCAM-X100\t0\n");
        if buf.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buf)).await.unwrap();
        }
    }
    copy.send(buf).await.unwrap();
    let rows = copy.finish().await.unwrap();
    assert_eq!(rows, inputs.len() as u64);
    tx.commit().await.unwrap();
    let copy_loop = t.elapsed();
    conn.close().await.unwrap();
    (batch_loop, copy_loop)
}

/// The table of the bare baselines (`BLOB` becomes `BYTEA` on PostgreSQL).
const BARE_TABLE: &str = "CREATE TABLE bare (apparatus_id TEXT PRIMARY KEY, sealed BLOB NOT NULL, key_id BIGINT NOT NULL, factory_id TEXT NOT NULL, product_code TEXT NOT NULL, issued_at TEXT NOT NULL)";
