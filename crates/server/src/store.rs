//! The store: the server's tables on SQLite (the embedded default) or PostgreSQL, behind one
//! interface.
//!
//! Both backends run the same SQL ([`crate::db`]), with `$1`-style parameters. Reads go through
//! sqlx's `Any` driver on either database, and so do PostgreSQL's write transactions; SQLite's
//! write transactions run on one writer connection of the process through rusqlite (sqlx's
//! SQLite driver costs a thread hand-off per statement). Where the databases differ, the code
//! asks [`Store::backend`]: how a write transaction begins, how the pool of unissued entries is
//! reserved, how the audit log keeps one order.
//!
//! Concurrency is the database's, not the process's: every write is a transaction
//! ([`Store::write`]) that the database serialises where it must (`BEGIN IMMEDIATE` on SQLite;
//! row locks, `FOR UPDATE SKIP LOCKED` and conditional updates on PostgreSQL), and a transaction
//! the database aborted as a serialisation failure or deadlock is run again. So several server
//! processes may share one database, and nothing read from it is cached between requests.

use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::error::AppError;

pub use crate::db::Conn;
use crate::db::Writer;

/// A future borrowed from a transaction (what [`Store::write`]'s closure returns).
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 't>>;

/// Which database a [`Store`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file (WAL, `synchronous = FULL`): the embedded default.
    Sqlite,
    /// A PostgreSQL database, shared by any number of server processes.
    Postgres,
}

/// How many times a transaction the database aborted (serialisation failure, deadlock, busy)
/// is run again before the request fails.
const ATTEMPTS: u32 = 8;

/// The server's tables.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite's writer connection: every write transaction of the process, one at a time.
    /// Queueing here, rather than in SQLite's busy handler (which sleeps and polls), keeps many
    /// stations' writes flowing in one process; `BEGIN IMMEDIATE` keeps writers apart across
    /// processes. `None` on PostgreSQL.
    writer: Option<Arc<tokio::sync::Mutex<rusqlite::Connection>>>,
}

/// How long a SQLite writer waits for another process's write transaction before the attempt
/// fails as busy (and [`Store::write`] runs it again).
const SQLITE_BUSY_WAIT: Duration = Duration::from_secs(10);

/// Connections per process. PostgreSQL's default `max_connections` is 100: several processes
/// at this size fit under it with room for the operators' own tools.
pub const PG_POOL: u32 = 16;

impl Store {
    /// Opens the database named by `url` (`sqlite://PATH` or `postgres://...`), creating a
    /// SQLite file if needed, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, AppError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(AppError::Config(format!(
                "database URL must start with sqlite:// or postgres://, not {}",
                redact(url)
            )));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| AppError::Config(format!("bad database URL {}: {e}", redact(url))))?;
        let pool = match backend {
            // WAL with `synchronous = FULL`: a transaction that returned is on disk, so a server
            // killed with SIGKILL right after answering loses nothing it answered for.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(8)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(PG_POOL)
                .acquire_timeout(Duration::from_secs(10)),
        }
        .connect_with(options)
        .await
        .map_err(|e| AppError::Config(format!("cannot open database {}: {e}", redact(url))))?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let writer = match backend {
            Backend::Sqlite => {
                let writer = Arc::new(tokio::sync::Mutex::new(open_writer(url)?));
                spawn_checkpointer(open_writer(url)?, Arc::downgrade(&writer));
                Some(writer)
            }
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            backend,
            writer,
        })
    }

    /// Opens (creating if needed) a SQLite file.
    pub async fn open_sqlite(path: &Path) -> Result<Store, AppError> {
        Store::open(&sqlite_url(path)).await
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for reads (each read is one statement, so it needs no
    /// transaction) and for tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `body` in one write transaction and commits it. A transaction the database aborted
    /// because of another writer (serialisation failure, deadlock, SQLite busy, and on
    /// PostgreSQL a unique key that a concurrent transaction took first) is rolled back and run
    /// again, up to [`ATTEMPTS`] times, so `body` must do nothing outside the transaction that
    /// it cannot do twice. Any other error rolls back and is returned.
    ///
    /// `body` gets what it needs through `ctx` rather than by capturing it: a closure that
    /// captured a borrow could not return a future borrowing the transaction as well.
    pub async fn write<C, T, F>(&self, ctx: &C, mut body: F) -> Result<T, AppError>
    where
        C: Sync + ?Sized,
        T: Send,
        F: for<'t> FnMut(&'t mut Conn, &'t C) -> TxFuture<'t, T> + Send,
    {
        let mut attempt = 1;
        loop {
            let outcome = match self.begin().await {
                Ok(mut tx) => match body(&mut tx, ctx).await {
                    Ok(value) => tx.commit().await.map(|()| value),
                    // Rolled back before the answer, not by dropping the transaction: sqlx
                    // only queues the ROLLBACK of a dropped one until its connection is next
                    // used, and until then its row locks stay. A refused release kept the
                    // entry it had locked, and an issue on another connection, which skips
                    // locked rows, found the pool empty (seen on PostgreSQL).
                    Err(e) => {
                        if let Err(r) = tx.rollback().await {
                            tracing::warn!(error = %r, "a failed transaction did not roll back cleanly");
                        }
                        Err(e)
                    }
                },
                // `BEGIN IMMEDIATE` itself meets SQLite's busy when another process writes.
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if attempt < ATTEMPTS && self.is_transient(&e) => {
                    tracing::debug!(attempt, error = %e, "transaction aborted by another writer; running it again");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Whether the database aborted the transaction because of a concurrent one, so that
    /// running it again can succeed: PostgreSQL's `serialization_failure` (40001),
    /// `deadlock_detected` (40P01) and `unique_violation` (23505: every operation checks for
    /// the row it inserts first, so a violation means a concurrent writer got there between);
    /// SQLite's `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6) with their extended codes.
    pub fn is_transient(&self, e: &AppError) -> bool {
        let AppError::Internal(cause) = e else {
            return false;
        };
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = cause.downcast_ref::<rusqlite::Error>()
        {
            return matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            );
        }
        let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() else {
            return false;
        };
        let code = db.code();
        match self.backend {
            Backend::Postgres => matches!(code.as_deref(), Some("40001" | "40P01" | "23505")),
            Backend::Sqlite => code
                .as_deref()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 5 || c & 0xff == 6),
        }
    }

    /// A write transaction of one attempt, for callers that hold it across several steps of
    /// their own (the CLI's set-up, tests); it ends with [`Conn::commit`] (dropped, it rolls
    /// back). Prefer [`Store::write`].
    pub async fn begin(&self) -> Result<Conn, AppError> {
        let Some(writer) = &self.writer else {
            return Ok(Conn::Tx(self.pool.begin().await?));
        };
        let guard = writer.clone().lock_owned().await;
        // Without waiting first: the lock is free unless another process writes, and a
        // statement that does not wait need not leave this task.
        guard.busy_timeout(Duration::ZERO)?;
        let w = Writer(Some(guard));
        let w = match begin_immediate(w) {
            Ok(w) => w,
            Err((w, e)) if self.is_transient(&e) => {
                // Another process holds SQLite's write lock: wait for it off the runtime.
                tokio::task::spawn_blocking(move || {
                    w.conn()?.busy_timeout(SQLITE_BUSY_WAIT)?;
                    begin_immediate(w).map_err(|(_, e)| e)
                })
                .await
                .map_err(|e| AppError::bug(format!("SQLite's BEGIN did not finish: {e}")))??
            }
            Err((_, e)) => return Err(e),
        };
        Ok(Conn::Sqlite(w))
    }

    /// A connection for reads outside a transaction (each read is one statement).
    pub async fn read(&self) -> Result<Conn, AppError> {
        Ok(Conn::Pooled(self.pool.acquire().await?))
    }
}

/// `BEGIN IMMEDIATE` on SQLite's writer; on failure the writer comes back with the error.
fn begin_immediate(w: Writer) -> Result<Writer, (Writer, AppError)> {
    let begun = w
        .conn()
        .and_then(|c| Ok(c.execute_batch("BEGIN IMMEDIATE")?));
    match begun {
        Ok(()) => Ok(w),
        Err(e) => Err((w, e)),
    }
}

/// SQLite's writer connection, after the migrations: the same settings as the pool's
/// (WAL, `synchronous = FULL`, foreign keys) and a statement cache that holds the service's
/// statements.
fn open_writer(url: &str) -> Result<rusqlite::Connection, AppError> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| AppError::Config(format!("bad database URL {}: {e}", redact(url))))?;
    let path = options.get_filename();
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| AppError::Config(format!("cannot open database {}: {e}", path.display())))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )?;
    // A statement that writes many rows (every bulk insert) inside a transaction keeps a
    // statement journal, to undo just that statement if it fails midway. With the default
    // `temp_store` that journal spills to a temporary file past 64 KiB: one `pwrite` per page
    // the statement touches, a third of the sequencer's time. In memory it is a copy.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(SQLITE_BUSY_WAIT)?;
    conn.set_prepared_statement_cache_capacity(256);
    // The write-ahead log is copied into the database by the checkpointer's own connection
    // ([`spawn_checkpointer`]), not by whichever commit crosses SQLite's threshold: that commit
    // would copy and fsync the database file while every other writer waits behind it.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// How often the checkpointer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies SQLite's write-ahead log into the database every [`CHECKPOINT_EVERY`] on a connection
/// of its own, `PASSIVE` (alongside the writer, which goes on appending), for as long as the
/// store is open. SQLite also checkpoints when the last connection closes.
fn spawn_checkpointer(
    conn: rusqlite::Connection,
    alive: std::sync::Weak<tokio::sync::Mutex<rusqlite::Connection>>,
) {
    let conn = Arc::new(std::sync::Mutex::new(conn));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 {
                return;
            }
            let conn = conn.clone();
            let done = tokio::task::spawn_blocking(move || {
                let conn = conn
                    .lock()
                    .map_err(|_| "the checkpointer's connection is poisoned".to_string())?;
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .map_err(|e| e.to_string())
            })
            .await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the SQLite checkpoint failed; the write-ahead log grows until one succeeds")
                }
                Err(e) => tracing::warn!(error = %e, "the SQLite checkpoint did not finish"),
            }
        }
    });
}

/// Which database a connection is to (the service's functions get a connection, not the
/// store).
pub fn backend_of(conn: &Conn) -> Backend {
    conn.backend()
}

/// The URL of a SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// A URL as it may be shown: without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// 2, 4, 8 ... ms, capped at 100 ms, with jitter, so that writers that collided do not
/// collide again in step.
fn backoff(attempt: u32) -> Duration {
    use rand_core::Rng;
    let base = (1u64 << attempt.min(6)).min(100);
    let jitter = u64::from(crate::rng().next_u32() % 1000);
    Duration::from_micros(base * 1000 + jitter * base)
}

/// A statement with many parameters (a multi-row insert, a long `IN` list), its `$1 .. $n`
/// written for this connection's database. On SQLite they become plain `?`: looking up a
/// numbered parameter costs SQLite a scan of all of them, so a statement of 1,600 numbered
/// parameters spends most of its time finding them (measured: issuing ran at a quarter of its
/// speed). The `$` numbers must run 1, 2, 3 ... in the text, each once, as the builders below
/// write them and the binds follow.
pub fn bulk(conn: &Conn, sql: String) -> String {
    if backend_of(conn) == Backend::Postgres {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut expected = 1u64;
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0u64;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + u64::from(d);
                chars.next();
            }
            debug_assert_eq!(
                n, expected,
                "bulk statements number their parameters in order"
            );
            expected += 1;
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// `($1, $2, ...), ($n, ...)`: placeholders for a multi-row `VALUES` of `rows` rows of `cols`
/// columns (sqlx's query builder writes `?`, which PostgreSQL does not take through `Any`).
pub fn values(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// `$from, $from+1, ...`: `n` placeholders for an `IN (...)` list.
pub fn list(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
