//! The server, over fetch on the page's own origin (the server serves the portal).
//!
//! Bodies are typed both ways and go through [`crate::json`] (the browser's own JSON), so the
//! page carries no JSON parser.

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::state::journal::Record;
use crate::station::{Reported, Server, ServerError};

/// A signed-in station's connection to the server.
#[derive(Clone, Debug)]
pub struct HttpServer {
    /// Session token.
    pub token: String,
    /// Station name, recorded with every report.
    pub station: String,
}

/// Who signed in.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct User {
    /// User name.
    pub username: String,
    /// Role.
    pub role: String,
    /// The technician's factory.
    pub factory: Option<String>,
}

/// The server's refusal (`{"error": code, "message": text}`).
#[derive(Deserialize)]
struct Refusal {
    error: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct LoginOut {
    token: String,
    user: User,
}

#[derive(Deserialize)]
struct RecordsOut {
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct LeaseKeyOut {
    public_key: String,
}

#[derive(Deserialize)]
struct ReportOut {
    status: String,
    challenge: Option<String>,
}

#[derive(Deserialize)]
struct ChallengeOut {
    challenge: String,
}

#[derive(Deserialize)]
struct VerifyOut {
    authenticated: bool,
}

fn offline(e: impl ToString) -> ServerError {
    ServerError::Offline(e.to_string())
}

/// Sends a request and reads its JSON answer: a `T` on success, the server's refusal otherwise.
async fn send<T: DeserializeOwned>(
    req: Result<Request, gloo_net::Error>,
) -> Result<T, ServerError> {
    let res: Response = req.map_err(offline)?.send().await.map_err(offline)?;
    let text = res.text().await.map_err(offline)?;
    if res.ok() {
        crate::json::from_str(&text)
            .map_err(|e| offline(format!("the server's answer did not fit ({e})")))
    } else {
        let r: Refusal = crate::json::from_str(&text).unwrap_or(Refusal {
            error: None,
            message: None,
        });
        Err(ServerError::Refused {
            code: r.error.unwrap_or_else(|| format!("http_{}", res.status())),
            message: r.message.unwrap_or_else(|| "the server refused".into()),
        })
    }
}

fn challenge_bytes(hex_text: &str) -> Result<[u8; 32], ServerError> {
    let mut c = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut c)
        .map_err(|_| offline("the server sent a malformed challenge"))?;
    Ok(c)
}

fn with_json(b: RequestBuilder, body: &impl Serialize) -> Result<Request, gloo_net::Error> {
    let text = crate::json::to_string(body).map_err(gloo_net::Error::GlooError)?;
    b.header("content-type", "application/json").body(text)
}

/// Signs in.
pub async fn login(username: &str, password: &str) -> Result<(String, User), ServerError> {
    #[derive(Serialize)]
    struct In<'a> {
        username: &'a str,
        password: &'a str,
    }
    let out: LoginOut = send(with_json(
        Request::post("/api/v1/login"),
        &In { username, password },
    ))
    .await?;
    Ok((out.token, out.user))
}

impl HttpServer {
    fn auth(&self, b: RequestBuilder) -> RequestBuilder {
        b.header("authorization", &format!("Bearer {}", self.token))
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ServerError> {
        send(with_json(self.auth(Request::post(path)), body)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ServerError> {
        send(self.auth(Request::get(path)).build()).await
    }

    /// Fetches `count` new records for the product.
    pub async fn issue(&self, product_code: &str, count: u64) -> Result<Vec<Record>, ServerError> {
        #[derive(Serialize)]
        struct In<'a> {
            product_code: &'a str,
            count: u64,
        }
        let out: RecordsOut = self
            .post(
                "/api/v1/issue",
                &In {
                    product_code,
                    count,
                },
            )
            .await?;
        Ok(out.records)
    }

    /// The server's lease signing key (hex), to pin while online.
    pub async fn lease_key(&self) -> Result<String, ServerError> {
        let out: LeaseKeyOut = self.get("/api/v1/lease-key").await?;
        Ok(out.public_key)
    }

    /// Takes an offline lease of `count` records for `hours`.
    pub async fn lease(
        &self,
        product_code: &str,
        count: u64,
        hours: u64,
    ) -> Result<crate::state::lease::LeaseOut, ServerError> {
        #[derive(Serialize)]
        struct In<'a> {
            product_code: &'a str,
            count: u64,
            hours: u64,
        }
        self.post(
            "/api/v1/leases",
            &In {
                product_code,
                count,
                hours,
            },
        )
        .await
    }

    /// The records issued to this factory and not yet installed (after a reload).
    pub async fn open_records(&self) -> Result<Vec<Record>, ServerError> {
        let out: RecordsOut = self.get("/api/v1/records").await?;
        Ok(out.records)
    }
}

impl Server for HttpServer {
    async fn report(
        &self,
        apparatus_id: &str,
        product_serial: &str,
        receipt_hex: &str,
    ) -> Result<Reported, ServerError> {
        #[derive(Serialize)]
        struct In<'a> {
            apparatus_id: &'a str,
            product_serial: &'a str,
            receipt: &'a str,
            station: &'a str,
        }
        let out: ReportOut = self
            .post(
                "/api/v1/report",
                &In {
                    apparatus_id,
                    product_serial,
                    receipt: receipt_hex,
                    station: &self.station,
                },
            )
            .await?;
        Ok(Reported {
            status: out.status,
            challenge: out.challenge.as_deref().map(challenge_bytes).transpose()?,
        })
    }

    async fn challenge(&self, apparatus_id: &str) -> Result<[u8; 32], ServerError> {
        #[derive(Serialize)]
        struct In<'a> {
            apparatus_id: &'a str,
        }
        let out: ChallengeOut = self
            .post("/api/v1/auth/challenge", &In { apparatus_id })
            .await?;
        challenge_bytes(&out.challenge)
    }

    async fn verify(
        &self,
        apparatus_id: &str,
        challenge: &[u8; 32],
        response: &[u8; 32],
    ) -> Result<bool, ServerError> {
        #[derive(Serialize)]
        struct In<'a> {
            apparatus_id: &'a str,
            challenge: String,
            response: String,
        }
        let out: VerifyOut = self
            .post(
                "/api/v1/auth/verify",
                &In {
                    apparatus_id,
                    challenge: hex::encode(challenge),
                    response: hex::encode(response),
                },
            )
            .await?;
        Ok(out.authenticated)
    }
}
