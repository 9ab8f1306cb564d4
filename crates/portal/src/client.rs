//! The station's client of the server's API, over any [`Transport`]: fetch in the page
//! (`web::api`), the real server's router in-process in the native tests. The same code
//! builds every request and reads every answer in both, through the contract's types
//! (`imprint-api`), so what the tests exercise is what the page runs.

use imprint_api::{
    ChallengeRequest, Endpoint, ErrorBody, ErrorCode, IssueRequest, LeaseAnswer, LeaseKey,
    LeaseRequest, ListProducts, LockedRequest, LoginAnswer, LoginRequest, Logout, Media, Method,
    Records, ReportRequest, ReportStatus, SessionToken, VerifyRequest,
};
use imprint_core::{
    ApparatusId, AuthResponse, Challenge, ChipId, ProductCode, ProductSerial, Receipt,
};

use crate::error::ServerError;
use crate::state::journal::Record;
use crate::station::{Reported, Server};

/// One HTTP exchange with the server. An `Err` means no answer at all (offline).
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends a request: method, full path, the bearer token if any, a JSON body if any.
    /// Returns the status and the body text.
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<String>,
    ) -> Result<(u16, String), String>;
}

impl<T: Transport> Transport for &T {
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<String>,
    ) -> Result<(u16, String), String> {
        (**self).send(method, path, bearer, json).await
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

async fn call<T: Transport, E: Endpoint>(
    t: &T,
    token: Option<&SessionToken>,
    e: &E,
) -> Result<E::Answer, ServerError> {
    let route = E::OP.route();
    let body = match route.takes {
        Media::Json => Some(crate::json::to_string(e).map_err(|e| {
            ServerError::Request(format!("the request could not be written ({e})"))
        })?),
        Media::Csv | Media::None => None,
    };
    let bearer = token.map(SessionToken::bearer);
    let (status, text) = t
        .send(route.method, &e.path(), bearer.as_deref(), body)
        .await
        .map_err(ServerError::Offline)?;
    read(status, &text)
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

/// A signed-in station's connection to the server.
#[derive(Clone, Debug)]
pub struct Client<T> {
    /// How requests travel.
    pub transport: T,
    /// The session.
    pub token: SessionToken,
    /// Station name, recorded with every report.
    pub station: String,
}

impl<T: Transport> Client<T> {
    async fn call<E: Endpoint>(&self, e: &E) -> Result<E::Answer, ServerError> {
        call(&self.transport, Some(&self.token), e).await
    }

    /// Fetches `count` new records for the product.
    pub async fn issue(
        &self,
        product_code: ProductCode,
        count: u64,
    ) -> Result<Vec<Record>, ServerError> {
        let out = self
            .call(&IssueRequest {
                product_code,
                count,
                chip_id: None,
            })
            .await?;
        Ok(out.records.into_iter().map(Record::from).collect())
    }

    /// The products (table 500), to learn at sign-in whether the line's product is chip-bound.
    pub async fn products(&self) -> Result<Vec<imprint_api::Product>, ServerError> {
        Ok(self.call(&ListProducts).await?.products)
    }

    /// The server's lease signing key, to pin while online.
    pub async fn lease_key(&self) -> Result<[u8; 32], ServerError> {
        Ok(self.call(&LeaseKey).await?.public_key.0)
    }

    /// Takes an offline lease of `count` records for `hours`.
    pub async fn lease(
        &self,
        product_code: ProductCode,
        count: u64,
        hours: u64,
    ) -> Result<LeaseAnswer, ServerError> {
        self.call(&LeaseRequest {
            product_code,
            count,
            hours,
        })
        .await
    }

    /// The records issued to this factory and not yet installed (after a reload).
    pub async fn open_records(&self) -> Result<Vec<Record>, ServerError> {
        let out = self.call(&Records).await?;
        Ok(out.records.into_iter().map(Record::from).collect())
    }

    /// Returns a record that was issued and never installed to the server's pool (a record
    /// this station will not use: signing out and handing the records back).
    pub async fn release(&self, apparatus_id: ApparatusId) -> Result<(), ServerError> {
        self.call(&imprint_api::ReleaseRequest { apparatus_id })
            .await
            .map(|_| ())
    }

    /// Who the session is for: a session kept over a page reload is checked with this.
    pub async fn me(&self) -> Result<imprint_api::UserInfo, ServerError> {
        Ok(self.call(&imprint_api::Me).await?.user)
    }

    /// Proofs that reported units are in the server's audit log (see
    /// [`crate::state::audit`]).
    pub async fn install_proofs(
        &self,
        request: &imprint_api::InstallProofsRequest,
    ) -> Result<imprint_api::InstallProofs, ServerError> {
        self.call(request).await
    }

    /// Ends the session on the server.
    pub async fn logout(&self) -> Result<(), ServerError> {
        self.call(&Logout).await.map(|_| ())
    }
}

impl<T: Transport> Server for Client<T> {
    async fn issue_for_chip(
        &self,
        product_code: ProductCode,
        chip: &ChipId,
    ) -> Result<Record, ServerError> {
        let out = self
            .call(&IssueRequest {
                product_code,
                count: 1,
                chip_id: Some(*chip),
            })
            .await?;
        match <[imprint_api::Record; 1]>::try_from(out.records) {
            Ok([r]) => Ok(Record {
                chip: Some(*chip),
                ..Record::from(r)
            }),
            Err(records) => Err(ServerError::Unintelligible {
                status: 200,
                detail: format!(
                    "it sent {} records for one chip-bound unit, not one",
                    records.len()
                ),
            }),
        }
    }

    async fn report(
        &self,
        apparatus_id: &ApparatusId,
        product_serial: &ProductSerial,
        receipt: &Receipt,
    ) -> Result<Reported, ServerError> {
        let out = self
            .call(&ReportRequest {
                apparatus_id: *apparatus_id,
                product_serial: *product_serial,
                receipt: *receipt,
                station: self.station.clone(),
            })
            .await?;
        Ok(Reported {
            status: out.status,
            challenge: Some(out.challenge),
        })
    }

    async fn locked(
        &self,
        apparatus_id: &ApparatusId,
        product_serial: &ProductSerial,
    ) -> Result<ReportStatus, ServerError> {
        Ok(self
            .call(&LockedRequest {
                apparatus_id: *apparatus_id,
                product_serial: *product_serial,
                station: self.station.clone(),
            })
            .await?
            .status)
    }

    async fn challenge(&self, apparatus_id: &ApparatusId) -> Result<Challenge, ServerError> {
        Ok(self
            .call(&ChallengeRequest {
                apparatus_id: *apparatus_id,
            })
            .await?
            .challenge)
    }

    async fn verify(
        &self,
        apparatus_id: &ApparatusId,
        challenge: &Challenge,
        response: &AuthResponse,
    ) -> Result<bool, ServerError> {
        Ok(self
            .call(&VerifyRequest {
                apparatus_id: *apparatus_id,
                challenge: *challenge,
                response: *response,
            })
            .await?
            .authenticated)
    }
}
