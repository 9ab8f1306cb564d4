//! A client of the server's API over any [`Transport`] (one HTTP exchange): [`fetch::Fetch`]
//! in the browser, the real server's router in-process in the native tests. The same code
//! builds every request and reads every answer in both, through the contract's types
//! (`imprint-api`), so what the tests exercise is what the page runs. The station
//! (crates/portal) and the console (crates/console) both talk to the server through it.

pub mod json;

#[cfg(target_arch = "wasm32")]
pub mod fetch;

use imprint_api::error::LineError;
use imprint_api::{
    Endpoint, ErrorBody, ErrorCode, LoginAnswer, LoginRequest, Media, Method, SessionToken,
};

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
    /// The server refused a file (`bad_csv`) for the lines it names, and took nothing from it.
    BadLines {
        /// The server's message, for a person.
        message: String,
        /// Each bad line: its number and what is wrong with it.
        lines: Vec<LineError>,
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

/// A request's body: its text and what it is (JSON or CSV). Its `Debug` shows the length
/// only: the text may hold a password or an imported file's pass phrases.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    /// JSON or CSV.
    pub media: Media,
    /// The text.
    pub text: String,
}

impl core::fmt::Debug for Payload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Payload({:?}, {} bytes)", self.media, self.text.len())
    }
}

impl Payload {
    /// Its `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.media {
            Media::Csv => "text/csv",
            Media::Json | Media::None => "application/json",
        }
    }
}

/// One HTTP exchange with the server. An `Err` means no answer at all (offline).
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends a request: method, full path, the bearer token if any, a body if any.
    /// Returns the status and the body text.
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Payload>,
    ) -> Result<(u16, String), String>;
}

impl<T: Transport> Transport for &T {
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Payload>,
    ) -> Result<(u16, String), String> {
        (**self).send(method, path, bearer, body).await
    }
}

/// Reads an answer: the endpoint's answer on success, the server's refusal otherwise; an
/// answer that fits neither is [`ServerError::Unintelligible`], never taken for offline. A
/// server that answers `unavailable` (its database is away for a moment) is as good as
/// offline: the station keeps what it has and tries again, as it does when the network is
/// down.
pub fn read<A: for<'de> serde::Deserialize<'de>>(
    status: u16,
    text: &str,
) -> Result<A, ServerError> {
    if (200..300).contains(&status) {
        return crate::json::from_str(text).map_err(|e| ServerError::Unintelligible {
            status,
            detail: format!("its answer does not fit this station ({e})"),
        });
    }
    match crate::json::from_str::<ErrorBody>(text) {
        Ok(b) if b.error == ErrorCode::Unavailable => Err(ServerError::Offline(b.message)),
        Ok(b) if b.error == ErrorCode::BadCsv && !b.lines.is_empty() => {
            Err(ServerError::BadLines {
                message: b.message,
                lines: b.lines,
            })
        }
        Ok(b) => Err(ServerError::Refused {
            code: b.error,
            message: b.message,
        }),
        Err(e) => Err(ServerError::Unintelligible {
            status,
            detail: format!("an error this station does not understand ({e})"),
        }),
    }
}

/// The path of `e` with its query string.
fn full_path<E: Endpoint>(e: &E) -> Result<String, ServerError> {
    let mut path = e.path();
    if let Some(q) = e.query().map_err(ServerError::Request)? {
        path.push('?');
        path.push_str(&q);
    }
    Ok(path)
}

/// Calls the endpoint `e` is the body of, with the session `token` if any, and reads its
/// answer as [`read`] does.
pub async fn call<T: Transport, E: Endpoint>(
    t: &T,
    token: Option<&SessionToken>,
    e: &E,
) -> Result<E::Answer, ServerError> {
    let (status, text) = exchange(t, token, e).await?;
    read(status, &text)
}

/// Calls the endpoint as [`call`] does, but returns a successful answer's text unread, for a
/// caller that hands it to code of its own (the station gives the audit log's proofs to the
/// module that checks them, so that the station carries no reader of them); a refusal or a
/// failure reads as [`call`]'s do.
pub async fn call_unread<T: Transport, E: Endpoint>(
    t: &T,
    token: Option<&SessionToken>,
    e: &E,
) -> Result<String, ServerError> {
    let (status, text) = exchange(t, token, e).await?;
    if (200..300).contains(&status) {
        return Ok(text);
    }
    read::<()>(status, &text).map(|()| text)
}

/// One exchange for `e`: its body written as its route takes it; the status and the text.
async fn exchange<T: Transport, E: Endpoint>(
    t: &T,
    token: Option<&SessionToken>,
    e: &E,
) -> Result<(u16, String), ServerError> {
    let route = E::OP.route();
    let body = match route.takes {
        Media::Json => Some(Payload {
            media: Media::Json,
            text: crate::json::to_string(e).map_err(|e| {
                ServerError::Request(format!("the request could not be written ({e})"))
            })?,
        }),
        Media::Csv => Some(Payload {
            media: Media::Csv,
            text: e
                .csv()
                .ok_or_else(|| ServerError::Request("this request has no CSV text".into()))?
                .to_owned(),
        }),
        Media::None => None,
    };
    let bearer = token.map(SessionToken::bearer);
    t.send(route.method, &full_path(e)?, bearer.as_deref(), body)
        .await
        .map_err(ServerError::Offline)
}

/// Signs in.
pub async fn login<T: Transport>(
    t: &T,
    username: &str,
    password: &str,
) -> Result<LoginAnswer, ServerError> {
    call(
        t,
        None,
        &LoginRequest {
            username: username.into(),
            password: password.into(),
        },
    )
    .await
}

/// Calls an endpoint whose answer is text rather than JSON (CSV: `GET /installed.csv`) and
/// returns the text; a refusal or a failure reads as [`call`]'s do.
pub async fn call_text<T: Transport, E: Endpoint>(
    t: &T,
    token: Option<&SessionToken>,
    e: &E,
) -> Result<String, ServerError> {
    let route = E::OP.route();
    if route.gives != Media::Csv {
        return Err(ServerError::Request(format!(
            "{} answers JSON: call it with call",
            e.path()
        )));
    }
    let bearer = token.map(SessionToken::bearer);
    let (status, text) = t
        .send(route.method, &full_path(e)?, bearer.as_deref(), None)
        .await
        .map_err(ServerError::Offline)?;
    if (200..300).contains(&status) {
        return Ok(text);
    }
    read::<()>(status, &text).map(|()| text)
}
