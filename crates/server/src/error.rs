//! Errors: what the client may know, and what only the log may know.
//!
//! Every handler returns `Result<_, AppError>`. The response is always the contract's
//! [`ErrorBody`]: a stable [`ErrorCode`] and a message a person can act on. A fault of the
//! server (the database, a stored value that does not parse, a broken invariant) answers 500
//! with an incident ID; its cause, with its source chain, goes to the log under that same ID.
//! No variant ever carries a secret (identifiers are fine, pass phrases and keys never).

use std::error::Error as StdError;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imprint_api::error::LineError;
use imprint_api::{ErrorBody, ErrorCode};
use imprint_core::{IdError, TableError};

/// A fault's cause, kept whole for the log.
pub type Cause = Box<dyn StdError + Send + Sync>;

/// A failed request or command.
#[derive(Debug)]
pub enum AppError {
    /// The request is malformed (bad identifier, missing field, not JSON).
    BadRequest(String),
    /// No valid session token, or wrong user name or password.
    Unauthorized(String),
    /// Too many failed sign-ins; try again after this many seconds.
    Throttled {
        /// Seconds until the next attempt is taken.
        retry_after_secs: u64,
    },
    /// The caller's role may not do this.
    Forbidden(String),
    /// A rule of the tables refused the request.
    Rule(TableError),
    /// A CSV import with bad lines; nothing was imported.
    BadCsv(Vec<LineError>),
    /// The thing named does not exist.
    NotFound(String),
    /// The method is not served on this path.
    MethodNotAllowed(String),
    /// The request conflicts with the current state.
    Conflict(String),
    /// Start-up or configuration problem (CLI).
    Config(String),
    /// The database cannot be reached just now (a broken connection, a pool that found none,
    /// PostgreSQL restarting). Answered 503 with `Retry-After`; the cause goes to the log.
    Unavailable(Cause),
    /// A fault of the server: a broken invariant ([`AppError::bug`]), a database error, a
    /// stored value that does not parse. Logged with its source; the client sees an incident
    /// ID.
    Internal(Cause),
}

impl AppError {
    /// A fault described by us (an invariant that did not hold).
    pub fn bug(what: impl Into<String>) -> AppError {
        AppError::Internal(what.into().into())
    }

    /// The same error for each of several requests that shared one transaction (a batch of
    /// field authentications): the same variant, its cause kept as text.
    pub fn shared(&self) -> AppError {
        match self {
            AppError::Unavailable(_) => AppError::Unavailable(self.to_string().into()),
            AppError::Internal(_) => AppError::Internal(self.to_string().into()),
            other => AppError::bug(format!("a batch failed with a request's error: {other}")),
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::BadRequest(_) => ErrorCode::BadRequest,
            AppError::Unauthorized(_) => ErrorCode::Unauthorized,
            AppError::Throttled { .. } => ErrorCode::TooManyAttempts,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::Rule(e) => ErrorCode::of_rule(e),
            AppError::BadCsv(_) => ErrorCode::BadCsv,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::Config(_) | AppError::Internal(_) => ErrorCode::Internal,
            AppError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::BadRequest(m)
            | AppError::Unauthorized(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::MethodNotAllowed(m)
            | AppError::Conflict(m)
            | AppError::Config(m) => f.write_str(m),
            AppError::Throttled { retry_after_secs } => write!(
                f,
                "too many failed sign-ins; try again in {retry_after_secs} s"
            ),
            AppError::Rule(e) => write!(f, "{e}"),
            AppError::BadCsv(lines) => {
                write!(f, "{} bad line(s); nothing was imported", lines.len())
            }
            AppError::Internal(e) | AppError::Unavailable(e) => {
                write!(f, "{e}")?;
                let mut source = e.source();
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
        }
    }
}

impl StdError for AppError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            AppError::Internal(e) | AppError::Unavailable(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A value read back from the database that is not valid: a fault of the store, never of the
/// client. (Client input is parsed by serde at the API edge, with its own `bad_request`.)
impl From<IdError> for AppError {
    fn from(e: IdError) -> Self {
        AppError::Internal(format!("a stored value is not valid: {e}").into())
    }
}

impl From<TableError> for AppError {
    fn from(e: TableError) -> Self {
        AppError::Rule(e)
    }
}

/// A database error is a fault of the server, except when the database is away: then the
/// request may be sent again in a moment.
impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if database_away(&e) {
            AppError::Unavailable(Box::new(e))
        } else {
            AppError::Internal(Box::new(e))
        }
    }
}

/// Whether `e` says the database cannot be reached now, rather than that it refused or that
/// something is wrong: no connection, a broken one, no free connection in time, or
/// PostgreSQL's connection exceptions (class 08), shutdown or start-up in progress (57P01,
/// 57P02, 57P03), no connection slot left (53300), and a write that reached a standby during a
/// failover (25006). A TLS failure is not among them: a certificate that does not check is a
/// fault of the set-up, to be fixed, not waited out.
fn database_away(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // 08P01, a protocol violation, is this server's own fault (a statement sent with
            // the wrong number of arguments), not a database gone away.
            (c.starts_with("08") && &*c != "08P01")
                || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300" | "25006")
        }),
        _ => false,
    }
}

impl From<sqlx::migrate::MigrateError> for AppError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        AppError::Config(format!("database migration failed: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let code = self.code();
        // Every code's status is a standard one (400 to 500), valid by construction.
        #[allow(clippy::expect_used)]
        let status =
            StatusCode::from_u16(code.status()).expect("every error code has a valid HTTP status");
        let mut body = ErrorBody {
            error: code,
            message: self.to_string(),
            lines: Vec::new(),
            incident: None,
        };
        let mut retry_after = None;
        match self {
            AppError::Config(_) | AppError::Internal(_) => {
                let id = crate::random_id();
                tracing::error!(incident = %id, cause = %self, "request failed: server fault");
                body.message =
                    format!("internal error; the cause is in the server log under incident {id}");
                body.incident = Some(id);
            }
            AppError::Unavailable(_) => {
                let id = crate::random_id();
                tracing::warn!(incident = %id, cause = %self, "request failed: database unavailable");
                body.message = format!(
                    "the server cannot reach its database just now; try again in a moment (incident {id})"
                );
                body.incident = Some(id);
                retry_after = Some(2);
            }
            AppError::BadCsv(lines) => body.lines = lines,
            AppError::Throttled { retry_after_secs } => retry_after = Some(retry_after_secs),
            _ => {}
        }
        let mut res = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
