//! Errors: what the client may know, and what only the log may know.
//!
//! Every handler returns `Result<_, AppError>`. The response carries a stable `error` code and
//! a message a person can act on; `Internal` causes go to the log only, and no variant ever
//! carries a secret (identifiers are fine, pass phrases and keys never).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use imprint_core::{IdError, TableError};
use serde_json::json;

/// A failed request or command.
#[derive(Debug)]
pub enum AppError {
    /// The request is malformed (bad identifier, bad CSV, missing field).
    BadRequest(String),
    /// No valid session token, or wrong user name or password.
    Unauthorized(String),
    /// The caller's role may not do this.
    Forbidden(String),
    /// A rule of the tables refused the request.
    Rule(TableError),
    /// The thing named does not exist.
    NotFound(String),
    /// The request conflicts with the current state.
    Conflict(String),
    /// Start-up or configuration problem (CLI).
    Config(String),
    /// A bug or an I/O failure: logged, and reported to the client without detail.
    Internal(String),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::BadRequest(m)
            | AppError::Unauthorized(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::Conflict(m)
            | AppError::Config(m)
            | AppError::Internal(m) => f.write_str(m),
            AppError::Rule(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AppError {}

impl From<IdError> for AppError {
    fn from(e: IdError) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

impl From<TableError> for AppError {
    fn from(e: TableError) -> Self {
        AppError::Rule(e)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(format!("database: {e}"))
    }
}

impl From<sqlx::migrate::MigrateError> for AppError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        AppError::Config(format!("database migration failed: {e}"))
    }
}

/// The stable code and HTTP status of a table rule's refusal.
pub fn rule_code(e: &TableError) -> (StatusCode, &'static str) {
    match e {
        TableError::NothingRequested => (StatusCode::BAD_REQUEST, "nothing_requested"),
        TableError::UnknownKeyId(_) => (StatusCode::NOT_FOUND, "unknown_key_id"),
        TableError::UnknownProduct(_) => (StatusCode::NOT_FOUND, "unknown_product"),
        TableError::UnknownApparatus(_) => (StatusCode::NOT_FOUND, "unknown_apparatus"),
        TableError::OverQuota { .. } => (StatusCode::FORBIDDEN, "over_quota"),
        TableError::NotYourRecord(_) => (StatusCode::FORBIDDEN, "not_your_record"),
        TableError::NotEnoughEntries { .. } => (StatusCode::CONFLICT, "not_enough_entries"),
        TableError::NotIssued(_) => (StatusCode::CONFLICT, "not_issued"),
        TableError::AlreadyInstalled { .. } => (StatusCode::CONFLICT, "already_installed"),
        TableError::SerialTaken { .. } => (StatusCode::CONFLICT, "serial_taken"),
        TableError::BadReceipt(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_receipt"),
        TableError::SameKey(_) => (StatusCode::CONFLICT, "same_key"),
        TableError::DuplicateKeyId(_) => (StatusCode::CONFLICT, "duplicate_key_id"),
        TableError::DuplicateApparatusId(_) => (StatusCode::CONFLICT, "duplicate_apparatus_id"),
        _ => (StatusCode::CONFLICT, "refused"),
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            AppError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.clone()),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            AppError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            AppError::Rule(e) => {
                let (s, c) = rule_code(e);
                (s, c, e.to_string())
            }
            AppError::Config(m) | AppError::Internal(m) => {
                tracing::error!(cause = %m, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the cause is in the server log".to_string(),
                )
            }
        };
        (status, Json(json!({ "error": code, "message": message }))).into_response()
    }
}
