//! Opening the database.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::AppError;

/// Opens (creating if needed) the SQLite file and brings its schema up to date.
///
/// WAL with `synchronous = FULL`: a transaction that returned is on disk, so a server killed
/// with SIGKILL right after answering loses nothing it answered for.
pub async fn open(path: &Path) -> Result<sqlx::SqlitePool, AppError> {
    let url = format!("sqlite://{}", path.display());
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(|e| AppError::Config(format!("bad database path {}: {e}", path.display())))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|e| AppError::Config(format!("cannot open database {}: {e}", path.display())))?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}
