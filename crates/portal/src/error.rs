//! Why talking to a unit or to the server failed. Here, apart from the flow and the
//! diagnostics, because both use them: the flow ([`crate::station`]) returns them and
//! [`crate::state::diagnose`] turns them into what the technician reads.

use imprint_api::ErrorCode;

/// Why talking to the unit failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The unit went away (cable pulled, power lost).
    Disconnected,
    /// No answer in time.
    Timeout,
    /// The answer is not a valid frame or message.
    Garbage(String),
    /// The browser refused (permission, another program holds it, ...): DOMException name
    /// and message.
    Browser {
        /// e.g. "SecurityError", "NetworkError".
        name: String,
        /// The browser's message.
        message: String,
    },
}

/// Why a server call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerError {
    /// The server could not be reached (no connection, no answer).
    Offline(String),
    /// The server refused: its stable error code and its message.
    Refused {
        /// What it refused with.
        code: ErrorCode,
        /// The server's message, for a person.
        message: String,
    },
    /// The station could not write the request (a bug of the station; nothing was sent).
    Request(String),
    /// The server answered, but with something this station does not understand (another
    /// version, a proxy's error page): not offline, and not a refusal either.
    Unintelligible {
        /// The HTTP status of the answer.
        status: u16,
        /// What did not fit.
        detail: String,
    },
}
