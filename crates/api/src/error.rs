//! The one error body: every failure of `/api/v1` answers with an [`ErrorBody`] and a status
//! that follows from its [`ErrorCode`], whatever went wrong (a malformed body, a missing
//! session, a rule of the tables, a fault of the server).

use imprint_core::TableError;
use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. Clients match on these, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed: not JSON, a missing or mistyped field, a bad identifier,
    /// wrong hex, a wrong content type. The message names the field and the rule.
    BadRequest,
    /// 422: a CSV import with bad lines; `lines` says which and why; nothing was imported.
    BadCsv,
    /// 401: no session, an expired one, or a wrong user name or password.
    Unauthorized,
    /// 429: too many failed sign-ins for this user name or from this address; wait for the
    /// `Retry-After` header's seconds.
    TooManyAttempts,
    /// 403: the caller's role may not call this route, or the user is bound to no factory.
    Forbidden,
    /// 404: no such route, user, factory, or installed device.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (a user or factory that exists).
    Conflict,
    /// 500: a fault of the server. The message carries an `incident` ID that is in the log.
    Internal,
    /// 503: the server cannot reach its database just now (restarting, failing over). Nothing
    /// was changed, or, when the connection broke at the commit, the change may have been
    /// made: a report is safe to send again (exactly once), an issue's records are found with
    /// `GET /records`. Try again after the `Retry-After` header's seconds.
    Unavailable,
    /// 400: zero records asked for.
    NothingRequested,
    /// 404: no such key identifier in table 700.
    UnknownKeyId,
    /// 404: no such product code in table 500.
    UnknownProduct,
    /// 404: no such apparatus ID in table 702.
    UnknownApparatus,
    /// 403: more records asked for than the factory's quota allows.
    OverQuota,
    /// 403: the record was issued to another factory.
    NotYourRecord,
    /// 409: not enough unissued entries under the product's key.
    NotEnoughEntries,
    /// 409: the entry was never issued (or was released).
    NotIssued,
    /// 409: the apparatus ID is installed in another unit.
    AlreadyInstalled,
    /// 409: the unit already has another identity.
    SerialTaken,
    /// 422: the receipt does not prove that a device opened this record.
    BadReceipt,
    /// 409: the product code already uses that key.
    SameKey,
    /// 409: the key identifier exists.
    DuplicateKeyId,
    /// 409: the apparatus ID exists.
    DuplicateApparatusId,
    /// 409: a lock was reported for an identity not recorded as installed in that unit.
    NotInstalled,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::BadRequest,
        ErrorCode::BadCsv,
        ErrorCode::Unauthorized,
        ErrorCode::TooManyAttempts,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::NothingRequested,
        ErrorCode::UnknownKeyId,
        ErrorCode::UnknownProduct,
        ErrorCode::UnknownApparatus,
        ErrorCode::OverQuota,
        ErrorCode::NotYourRecord,
        ErrorCode::NotEnoughEntries,
        ErrorCode::NotIssued,
        ErrorCode::AlreadyInstalled,
        ErrorCode::SerialTaken,
        ErrorCode::BadReceipt,
        ErrorCode::SameKey,
        ErrorCode::DuplicateKeyId,
        ErrorCode::DuplicateApparatusId,
        ErrorCode::NotInstalled,
    ];

    /// The HTTP status the server answers this code with.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::NothingRequested => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::OverQuota | ErrorCode::NotYourRecord => 403,
            ErrorCode::NotFound
            | ErrorCode::UnknownKeyId
            | ErrorCode::UnknownProduct
            | ErrorCode::UnknownApparatus => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict
            | ErrorCode::NotEnoughEntries
            | ErrorCode::NotIssued
            | ErrorCode::AlreadyInstalled
            | ErrorCode::SerialTaken
            | ErrorCode::SameKey
            | ErrorCode::DuplicateKeyId
            | ErrorCode::DuplicateApparatusId
            | ErrorCode::NotInstalled => 409,
            ErrorCode::BadCsv | ErrorCode::BadReceipt => 422,
            ErrorCode::TooManyAttempts => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The code as it is written in JSON (`over_quota`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadCsv => "bad_csv",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NothingRequested => "nothing_requested",
            ErrorCode::UnknownKeyId => "unknown_key_id",
            ErrorCode::UnknownProduct => "unknown_product",
            ErrorCode::UnknownApparatus => "unknown_apparatus",
            ErrorCode::OverQuota => "over_quota",
            ErrorCode::NotYourRecord => "not_your_record",
            ErrorCode::NotEnoughEntries => "not_enough_entries",
            ErrorCode::NotIssued => "not_issued",
            ErrorCode::AlreadyInstalled => "already_installed",
            ErrorCode::SerialTaken => "serial_taken",
            ErrorCode::BadReceipt => "bad_receipt",
            ErrorCode::SameKey => "same_key",
            ErrorCode::DuplicateKeyId => "duplicate_key_id",
            ErrorCode::DuplicateApparatusId => "duplicate_apparatus_id",
            ErrorCode::NotInstalled => "not_installed",
        }
    }

    /// The code of a refusal by a rule of the tables.
    pub const fn of_rule(e: &TableError) -> ErrorCode {
        match e {
            TableError::NothingRequested => ErrorCode::NothingRequested,
            TableError::UnknownKeyId(_) => ErrorCode::UnknownKeyId,
            TableError::UnknownProduct(_) => ErrorCode::UnknownProduct,
            TableError::UnknownApparatus(_) => ErrorCode::UnknownApparatus,
            TableError::OverQuota { .. } => ErrorCode::OverQuota,
            TableError::NotYourRecord(_) => ErrorCode::NotYourRecord,
            TableError::NotEnoughEntries { .. } => ErrorCode::NotEnoughEntries,
            TableError::NotIssued(_) => ErrorCode::NotIssued,
            TableError::AlreadyInstalled { .. } => ErrorCode::AlreadyInstalled,
            TableError::SerialTaken { .. } => ErrorCode::SerialTaken,
            TableError::BadReceipt(_) => ErrorCode::BadReceipt,
            TableError::SameKey(_) => ErrorCode::SameKey,
            TableError::DuplicateKeyId(_) => ErrorCode::DuplicateKeyId,
            TableError::DuplicateApparatusId(_) => ErrorCode::DuplicateApparatusId,
            TableError::NotInstalled { .. } => ErrorCode::NotInstalled,
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bad line of a CSV import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineError {
    /// 1-based line number in the file (0: the file as a whole, e.g. empty).
    pub line: u64,
    /// What is wrong (never the pass phrase itself).
    pub reason: String,
}

/// The body of every failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The stable code.
    pub error: ErrorCode,
    /// What happened and what to do, for a person. Never a secret.
    pub message: String,
    /// For `bad_csv`: every bad line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineError>,
    /// For `internal`: the incident ID, also written in the server's log line of the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}
