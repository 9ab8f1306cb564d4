//! Statements on either database: one SQL text, its arguments, its rows.
//!
//! The service writes each statement once, with `$1`-style parameters, and runs it on a
//! [`Conn`]. On PostgreSQL, and for reads on SQLite, that is sqlx's `Any` driver. A write
//! transaction on SQLite runs on the store's one writer connection through rusqlite instead,
//! in the calling task: sqlx's SQLite driver hands every statement to a worker thread and back
//! and copies every argument and row through `Any`, which measured 65 to 90 µs a statement on
//! the build machine, where rusqlite's prepared statement takes about 1 µs
//! (`docs/benchmarks.md`). SQLite has one writer at a time anyway, so nothing is lost by
//! running its statements where the transaction is.
//!
//! The API follows sqlx's (`query(..).bind(..).fetch_optional(&mut conn)`, `row.try_get`), so
//! that a statement reads the same whichever database runs it.

use std::borrow::Cow;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::Row as _;
use tokio::sync::OwnedMutexGuard;

use crate::error::AppError;
use crate::store::Backend;

/// A connection as the service gets it: a write transaction ([`crate::store::Store::write`],
/// [`crate::store::Store::begin`]) or a connection for reads ([`crate::store::Store::read`]).
pub enum Conn {
    /// A write transaction on SQLite's writer connection.
    Sqlite(Writer),
    /// A write transaction on PostgreSQL.
    Tx(sqlx::Transaction<'static, sqlx::Any>),
    /// A pooled connection, for reads (either database) outside a transaction.
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

/// SQLite's writer connection, held for one transaction. If it is dropped with the transaction
/// still open (a request cancelled mid-way, an error before commit), the transaction is rolled
/// back here, so the next writer starts clean.
pub struct Writer(pub(crate) Option<OwnedMutexGuard<rusqlite::Connection>>);

impl Writer {
    pub(crate) fn conn(&self) -> Result<&rusqlite::Connection, AppError> {
        self.0
            .as_deref()
            .ok_or_else(|| AppError::bug("SQLite's writer used after its transaction ended"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_deref()
            && !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "an abandoned SQLite transaction did not roll back");
        }
    }
}

impl Conn {
    /// Which database this connection is to.
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Tx(tx) => backend_of_any(tx),
            Conn::Pooled(c) => backend_of_any(c),
        }
    }

    /// Commits a write transaction; SQLite's commit (its fsync) runs on a blocking thread.
    pub async fn commit(self) -> Result<(), AppError> {
        self.finish("COMMIT").await
    }

    /// Rolls a write transaction back.
    pub async fn rollback(self) -> Result<(), AppError> {
        self.finish("ROLLBACK").await
    }

    async fn finish(self, verb: &'static str) -> Result<(), AppError> {
        match self {
            Conn::Sqlite(mut w) => {
                let guard = w.0.take().ok_or_else(|| {
                    AppError::bug("SQLite's writer used after its transaction ended")
                })?;
                // The guard moves into the blocking task: if this future is dropped meanwhile,
                // the commit still completes before the next writer gets the connection.
                tokio::task::spawn_blocking(move || {
                    let w = Writer(Some(guard));
                    w.conn()?.execute_batch(verb).map_err(AppError::from)
                })
                .await
                .map_err(|e| AppError::bug(format!("SQLite's {verb} did not finish: {e}")))?
            }
            Conn::Tx(tx) if verb == "COMMIT" => Ok(tx.commit().await?),
            Conn::Tx(tx) => Ok(tx.rollback().await?),
            Conn::Pooled(_) => Err(AppError::bug(format!(
                "{verb} on a connection that holds no transaction"
            ))),
        }
    }

    fn any(&mut self) -> Option<&mut sqlx::AnyConnection> {
        match self {
            Conn::Sqlite(_) => None,
            Conn::Tx(tx) => Some(&mut **tx),
            Conn::Pooled(c) => Some(&mut **c),
        }
    }
}

fn backend_of_any(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// A column's type, for a NULL argument: PostgreSQL wants a NULL typed as its column.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer column.
    Int,
    /// A text column.
    Text,
    /// A byte column.
    Blob,
}

/// One argument or one column value. Its `Debug` shows the kind and size only: a value may be
/// sealed material, a password hash or a token's hash.
#[derive(Clone)]
pub enum Value {
    /// NULL, typed as a column of this kind.
    Null(Kind),
    /// An integer.
    Int(i64),
    /// A floating-point number (computed columns only).
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(t) => write!(f, "text of {} bytes", t.len()),
            Value::Blob(b) => write!(f, "{} bytes", b.len()),
            other => f.write_str(other.kind()),
        }
    }
}

impl Value {
    /// What kind of value this is, for an error message (never the value: it may be sealed
    /// material or a hash).
    fn kind(&self) -> &'static str {
        match self {
            Value::Null(_) => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

/// What can be bound to a parameter.
pub trait Arg {
    /// The type of a NULL of this argument's type.
    const KIND: Kind;
    /// The argument as it is bound.
    fn into_value(self) -> Value;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            const KIND: Kind = Kind::Int;
            fn into_value(self) -> Value {
                Value::Int(i64::from(self))
            }
        }
    )*};
}
int_arg!(i64, i32, u32, bool);

impl Arg for &str {
    const KIND: Kind = Kind::Text;
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl Arg for String {
    const KIND: Kind = Kind::Text;
    fn into_value(self) -> Value {
        Value::Text(self)
    }
}
impl Arg for &String {
    const KIND: Kind = Kind::Text;
    fn into_value(self) -> Value {
        Value::Text(self.clone())
    }
}
impl Arg for &[u8] {
    const KIND: Kind = Kind::Blob;
    fn into_value(self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl Arg for Vec<u8> {
    const KIND: Kind = Kind::Blob;
    fn into_value(self) -> Value {
        Value::Blob(self)
    }
}
impl Arg for &Vec<u8> {
    const KIND: Kind = Kind::Blob;
    fn into_value(self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<const N: usize> Arg for &[u8; N] {
    const KIND: Kind = Kind::Blob;
    fn into_value(self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl<T: Arg> Arg for Option<T> {
    const KIND: Kind = T::KIND;
    fn into_value(self) -> Value {
        match self {
            Some(v) => v.into_value(),
            None => Value::Null(T::KIND),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null(_) => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A statement and its arguments.
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Value>,
}

/// A statement, its parameters written `$1`, `$2` ... (or all `?`, see [`crate::store::bulk`]).
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// What a statement changed.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    rows: u64,
}

impl Done {
    /// How many rows the statement inserted, changed or deleted.
    pub fn rows_affected(&self) -> u64 {
        self.rows
    }
}

impl Query {
    /// The next parameter's argument.
    pub fn bind(mut self, value: impl Arg) -> Query {
        self.args.push(value.into_value());
        self
    }

    /// Runs a statement that returns no rows.
    pub async fn execute(self, conn: &mut Conn) -> Result<Done, AppError> {
        if let Conn::Sqlite(w) = conn {
            let mut stmt = self.prepare(w.conn()?)?;
            let rows = stmt.raw_execute()? as u64;
            return Ok(Done { rows });
        }
        let any = conn.any().ok_or_else(|| AppError::bug("no connection"))?;
        let done = sqlx::Executor::execute(any, self.into_sqlx()).await?;
        Ok(Done {
            rows: done.rows_affected(),
        })
    }

    /// Every row.
    pub async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<Row>, AppError> {
        self.rows(conn, usize::MAX).await
    }

    /// The first row, if any.
    pub async fn fetch_optional(self, conn: &mut Conn) -> Result<Option<Row>, AppError> {
        Ok(self.rows(conn, 1).await?.pop())
    }

    /// The first row; none is an error.
    pub async fn fetch_one(self, conn: &mut Conn) -> Result<Row, AppError> {
        self.rows(conn, 1)
            .await?
            .pop()
            .ok_or_else(|| AppError::bug("a query that returns a row returned none"))
    }

    async fn rows(self, conn: &mut Conn, most: usize) -> Result<Vec<Row>, AppError> {
        if let Conn::Sqlite(w) = conn {
            let mut stmt = self.prepare(w.conn()?)?;
            let names: Arc<[String]> = stmt.column_names().iter().map(|n| n.to_string()).collect();
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while out.len() < most
                && let Some(r) = rows.next()?
            {
                let mut values = Vec::with_capacity(names.len());
                for i in 0..names.len() {
                    values.push(match r.get_ref(i)? {
                        ValueRef::Null => Value::Null(Kind::Text),
                        ValueRef::Integer(i) => Value::Int(i),
                        ValueRef::Real(f) => Value::Real(f),
                        ValueRef::Text(t) => Value::Text(
                            std::str::from_utf8(t)
                                .map_err(|e| {
                                    AppError::bug(format!("a stored text is not UTF-8: {e}"))
                                })?
                                .to_owned(),
                        ),
                        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                    });
                }
                out.push(Row(Inner::Sqlite {
                    names: names.clone(),
                    values,
                }));
            }
            return Ok(out);
        }
        let any = conn.any().ok_or_else(|| AppError::bug("no connection"))?;
        let rows = if most == 1 {
            sqlx::Executor::fetch_optional(any, self.into_sqlx())
                .await?
                .into_iter()
                .collect()
        } else {
            sqlx::Executor::fetch_all(any, self.into_sqlx()).await?
        };
        Ok(rows.into_iter().map(|r| Row(Inner::Any(r))).collect())
    }

    /// The statement prepared (from the connection's cache) with its arguments bound. A
    /// parameter named `$n` takes the n-th argument, wherever and however often it appears;
    /// `?` parameters take them in order.
    fn prepare<'c>(
        &self,
        conn: &'c rusqlite::Connection,
    ) -> Result<rusqlite::CachedStatement<'c>, AppError> {
        let mut stmt = conn.prepare_cached(&self.sql)?;
        let count = stmt.parameter_count();
        if count != self.args.len() {
            return Err(AppError::bug(format!(
                "a statement of {count} parameter(s) got {} argument(s)",
                self.args.len()
            )));
        }
        for i in 1..=count {
            let slot = match stmt.parameter_name(i) {
                None => i,
                Some(name) => name
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=count).contains(n))
                    .ok_or_else(|| {
                        AppError::bug(format!(
                            "a statement's parameter {name} is not $1..${count}"
                        ))
                    })?,
            };
            let arg = self
                .args
                .get(slot - 1)
                .ok_or_else(|| AppError::bug("a statement's parameter has no argument"))?;
            stmt.raw_bind_parameter(i, arg)?;
        }
        Ok(stmt)
    }

    fn into_sqlx(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = match self.sql {
            Cow::Borrowed(s) => sqlx::query(s),
            Cow::Owned(s) => sqlx::query(sqlx::AssertSqlSafe(s)),
        };
        for v in self.args {
            q = match v {
                Value::Null(Kind::Int) => q.bind(None::<i64>),
                Value::Null(Kind::Text) => q.bind(None::<String>),
                Value::Null(Kind::Blob) => q.bind(None::<Vec<u8>>),
                Value::Int(i) => q.bind(i),
                Value::Real(f) => q.bind(f),
                Value::Text(s) => q.bind(s),
                Value::Blob(b) => q.bind(b),
            };
        }
        q
    }
}

/// One row of a result.
pub struct Row(Inner);

/// The row's column names only: a value may be sealed material or a hash.
impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = match &self.0 {
            Inner::Sqlite { names, .. } => names.iter().map(String::as_str).collect(),
            Inner::Any(r) => r.columns().iter().map(sqlx::Column::name).collect(),
        };
        f.debug_struct("Row")
            .field("columns", &names)
            .finish_non_exhaustive()
    }
}

enum Inner {
    Sqlite {
        names: Arc<[String]>,
        values: Vec<Value>,
    },
    Any(sqlx::any::AnyRow),
}

/// A column, by name or by position.
pub trait Column: sqlx::ColumnIndex<sqlx::any::AnyRow> + Copy + std::fmt::Display {
    /// Where this column is among `names`.
    fn position(self, names: &[String]) -> Option<usize>;
}

impl Column for &str {
    fn position(self, names: &[String]) -> Option<usize> {
        names.iter().position(|n| n == self)
    }
}

impl Column for usize {
    fn position(self, names: &[String]) -> Option<usize> {
        (self < names.len()).then_some(self)
    }
}

/// What a column can be read as.
pub trait Get: Sized + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> {
    /// The value as a `Self`, if it is of this type.
    fn get(value: &Value) -> Option<Self>;
}

impl Get for i64 {
    fn get(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl Get for bool {
    fn get(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl Get for f64 {
    fn get(value: &Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(*f),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl Get for String {
    fn get(value: &Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Get for Vec<u8> {
    fn get(value: &Value) -> Option<Self> {
        match value {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<T: Get> Get for Option<T> {
    fn get(value: &Value) -> Option<Self> {
        match value {
            Value::Null(_) => Some(None),
            v => T::get(v).map(Some),
        }
    }
}

impl Row {
    /// Column `col` as a `T`; a missing column or one of another type is an error (a fault of
    /// the server: its own schema did not hold what the code expects).
    pub fn try_get<T: Get, I: Column>(&self, col: I) -> Result<T, AppError> {
        match &self.0 {
            Inner::Any(r) => Ok(r.try_get(col)?),
            Inner::Sqlite { names, values } => {
                let v = col
                    .position(names)
                    .and_then(|i| values.get(i))
                    .ok_or_else(|| AppError::bug(format!("no column {col} in the result")))?;
                T::get(v).ok_or_else(|| {
                    AppError::bug(format!(
                        "column {col} holds {}, not a {}",
                        v.kind(),
                        std::any::type_name::<T>()
                    ))
                })
            }
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Internal(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::{Arg, Value};

    #[test]
    fn a_value_prints_its_kind_and_size_never_its_content() {
        let shown = format!(
            "{:?} {:?} {:?}",
            "hunter2-pass".into_value(),
            b"sealed-bytes".into_value(),
            None::<i64>.into_value()
        );
        assert_eq!(shown, "text of 12 bytes 12 bytes NULL");
        assert!(!format!("{:?}", Value::Int(7)).contains('7'));
    }
}
