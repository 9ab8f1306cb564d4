//! The server over fetch on the page's own origin: imprint-client's [`Fetch`] under the
//! station's [`Client`].

pub use imprint_client::fetch::Fetch;

use crate::client::Client;

/// A signed-in station's connection to the server, over fetch.
pub type HttpServer = Client<Fetch>;
