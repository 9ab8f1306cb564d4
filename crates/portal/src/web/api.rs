//! The server, over fetch on the page's own origin (the server serves the portal).

use gloo_net::http::{Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::journal::Record;
use crate::station::{Server, ServerError};

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

/// A field of a JSON answer (`Null` when absent).
fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

async fn answer(res: Result<Response, gloo_net::Error>) -> Result<Value, ServerError> {
    let res = res.map_err(|e| ServerError::Offline(e.to_string()))?;
    let ok = res.ok();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    if ok {
        Ok(v)
    } else {
        Err(ServerError::Refused {
            code: field(&v, "error").as_str().unwrap_or("error").to_string(),
            message: field(&v, "message")
                .as_str()
                .unwrap_or("the server refused")
                .to_string(),
        })
    }
}

/// Signs in.
pub async fn login(username: &str, password: &str) -> Result<(String, User), ServerError> {
    let req = Request::post("/api/v1/login")
        .json(&json!({ "username": username, "password": password }))
        .map_err(|e| ServerError::Offline(e.to_string()))?;
    let v = answer(req.send().await).await?;
    let user: User = serde_json::from_value(field(&v, "user").clone())
        .map_err(|e| ServerError::Offline(e.to_string()))?;
    Ok((
        field(&v, "token").as_str().unwrap_or_default().to_string(),
        user,
    ))
}

impl HttpServer {
    async fn post(&self, path: &str, body: Value) -> Result<Value, ServerError> {
        let req = Request::post(path)
            .header("authorization", &format!("Bearer {}", self.token))
            .json(&body)
            .map_err(|e| ServerError::Offline(e.to_string()))?;
        answer(req.send().await).await
    }

    async fn get(&self, path: &str) -> Result<Value, ServerError> {
        answer(
            Request::get(path)
                .header("authorization", &format!("Bearer {}", self.token))
                .send()
                .await,
        )
        .await
    }

    /// Fetches `count` new records for the product.
    pub async fn issue(&self, product_code: &str, count: u64) -> Result<Vec<Record>, ServerError> {
        let v = self
            .post(
                "/api/v1/issue",
                json!({ "product_code": product_code, "count": count }),
            )
            .await?;
        serde_json::from_value(field(&v, "records").clone())
            .map_err(|e| ServerError::Offline(e.to_string()))
    }

    /// The server's lease signing key (hex), to pin while online.
    pub async fn lease_key(&self) -> Result<String, ServerError> {
        let v = self.get("/api/v1/lease-key").await?;
        Ok(field(&v, "public_key")
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Takes an offline lease of `count` records for `hours`.
    pub async fn lease(
        &self,
        product_code: &str,
        count: u64,
        hours: u64,
    ) -> Result<crate::state::lease::LeaseOut, ServerError> {
        let v = self
            .post(
                "/api/v1/leases",
                json!({ "product_code": product_code, "count": count, "hours": hours }),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| ServerError::Offline(e.to_string()))
    }

    /// The records issued to this factory and not yet installed (after a reload).
    pub async fn open_records(&self) -> Result<Vec<Record>, ServerError> {
        let v = self.get("/api/v1/records").await?;
        serde_json::from_value(field(&v, "records").clone())
            .map_err(|e| ServerError::Offline(e.to_string()))
    }
}

impl Server for HttpServer {
    async fn report(
        &self,
        apparatus_id: &str,
        product_serial: &str,
        receipt_hex: &str,
    ) -> Result<String, ServerError> {
        let v = self
            .post(
                "/api/v1/report",
                json!({ "apparatus_id": apparatus_id, "product_serial": product_serial, "receipt": receipt_hex, "station": self.station }),
            )
            .await?;
        Ok(field(&v, "status").as_str().unwrap_or_default().to_string())
    }

    async fn challenge(&self, apparatus_id: &str) -> Result<[u8; 32], ServerError> {
        let v = self
            .post(
                "/api/v1/auth/challenge",
                json!({ "apparatus_id": apparatus_id }),
            )
            .await?;
        let mut c = [0u8; 32];
        hex::decode_to_slice(field(&v, "challenge").as_str().unwrap_or_default(), &mut c)
            .map_err(|_| ServerError::Offline("the server sent a malformed challenge".into()))?;
        Ok(c)
    }

    async fn verify(
        &self,
        apparatus_id: &str,
        challenge: &[u8; 32],
        response: &[u8; 32],
    ) -> Result<bool, ServerError> {
        let v = self
            .post(
                "/api/v1/auth/verify",
                json!({ "apparatus_id": apparatus_id, "challenge": hex::encode(challenge), "response": hex::encode(response) }),
            )
            .await?;
        Ok(field(&v, "authenticated").as_bool().unwrap_or(false))
    }
}
