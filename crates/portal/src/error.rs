//! Why talking to a unit or to the server failed. Here, apart from the flow and the
//! diagnostics, because both use them: the flow ([`crate::station`]) returns them and
//! [`crate::state::diagnose`] turns them into what the technician reads.

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

pub use imprint_client::ServerError;
