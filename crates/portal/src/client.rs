//! The station's calls to the server, over any [`Transport`] (imprint-client): fetch in the
//! page (`web::api`), the real server's router in-process in the native tests.

pub use imprint_client::{Transport, call, login, read};

use imprint_api::{
    ChallengeRequest, Endpoint, IssueRequest, LeaseAnswer, LeaseKey, LeaseRequest, ListProducts,
    LockedRequest, Logout, Records, ReportRequest, ReportStatus, SessionToken, VerifyRequest,
};
use imprint_core::{
    ApparatusId, AuthResponse, Challenge, ChipId, ProductCode, ProductSerial, Receipt,
};

use crate::error::ServerError;
use crate::state::journal::Record;
use crate::station::{Reported, Server};

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

    /// The same answer as [`Client::install_proofs`], as its JSON text unread: the page hands
    /// it to the audit-log check's module (imprint-proofs), which reads and checks it.
    pub async fn install_proofs_text(
        &self,
        request: &imprint_api::InstallProofsRequest,
    ) -> Result<String, ServerError> {
        imprint_client::call_unread(&self.transport, Some(&self.token), request).await
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
