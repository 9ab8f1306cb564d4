//! The contract of Imprint's HTTP API (`/api/v1`): every route with the roles allowed on it,
//! every request and answer body, every error code.
//!
//! Why a crate of its own: the server, the portal, the portal's native test harness and the
//! end-to-end test all speak this API. With one definition they cannot drift: the server
//! serialises these types, the portal parses the same types, and a field renamed on one side
//! is a compile error on the other. Bytes are typed (`Receipt`, `SealedRecord`, [`Bytes`]);
//! hex exists only in JSON, through serde.
//!
//! - [`Op`] names every operation; [`Op::route`] says its method, path, roles and summary. The
//!   server builds its router from [`Op::ALL`] and enforces [`Route::access`] there, so a route
//!   cannot be documented for one role and served to another.
//! - [`Endpoint`] ties a request body to its operation and its answer, for typed clients.
//! - [`error`]: [`ErrorCode`] and [`ErrorBody`], the one error body every failure answers with.
//! - [`body`]: the request and answer bodies.
//! - `openapi` (feature `openapi`): the OpenAPI 3.1 document, generated from these types.

pub mod body;
pub mod error;
#[cfg(feature = "openapi")]
pub mod openapi;

pub use body::*;
pub use error::{ErrorBody, ErrorCode};

use serde::{Deserialize, Serialize};

/// Where the API lives on the server.
pub const PREFIX: &str = "/api/v1";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The management center: keys, products, entries, factories, users.
    Admin,
    /// A factory technician, bound to one factory: issue, report, release.
    Technician,
    /// Reads the audit log and the installed-devices export; changes nothing.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Technician, Role::Auditor];

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (sign-in itself, field authentication, the lease key).
    Public,
    /// A signed-in user with one of these roles.
    Roles(&'static [Role]),
}

impl Access {
    /// Whether a signed-in user of `role` may call it.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public => true,
            Access::Roles(r) => r.contains(&role),
        }
    }
}

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// What a route takes and gives besides JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// JSON (`application/json`).
    Json,
    /// CSV text (`text/csv`).
    Csv,
    /// Nothing.
    None,
}

/// One route: method, path under [`PREFIX`], who may call it, what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path under [`PREFIX`], with `{param}` placeholders (axum's syntax).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What it does, one line.
    pub summary: &'static str,
    /// What the request body is.
    pub takes: Media,
    /// What a successful answer is.
    pub gives: Media,
}

const ADMIN: Access = Access::Roles(&[Role::Admin]);
const READERS: Access = Access::Roles(&[Role::Admin, Role::Auditor]);
const TECH: Access = Access::Roles(&[Role::Technician]);
const SIGNED_IN: Access = Access::Roles(&[Role::Admin, Role::Technician, Role::Auditor]);

/// Every operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST /login`
    Login,
    /// `POST /logout`
    Logout,
    /// `GET /me`
    Me,
    /// `GET /keys`
    ListKeys,
    /// `POST /keys`
    AddKey,
    /// `GET /products`
    ListProducts,
    /// `PUT /products/{code}`
    MapProduct,
    /// `PUT /products/{code}/lock-units`
    SetLockUnits,
    /// `POST /auth-info/generate`
    Generate,
    /// `POST /auth-info/import`
    Import,
    /// `POST /factories`
    AddFactory,
    /// `PUT /factories/{factory}/quotas/{product}`
    SetQuota,
    /// `POST /users`
    AddUser,
    /// `GET /users`
    ListUsers,
    /// `PUT /users/{username}/disabled`
    SetUserDisabled,
    /// `PUT /users/{username}/password`
    SetPassword,
    /// `PUT /users/{username}/role`
    SetRole,
    /// `GET /factories`.
    ListFactories,
    /// `GET /activity`.
    Activity,
    /// `POST /devices/{id}/revoke`
    Revoke,
    /// `GET /installed.csv`
    ExportInstalled,
    /// `GET /audit`
    ReadAudit,
    /// `GET /audit/verify`
    VerifyAudit,
    /// `GET /audit/checkpoint`
    AuditCheckpoint,
    /// `GET /audit/proof/inclusion`
    AuditInclusion,
    /// `GET /audit/proof/consistency`
    AuditConsistency,
    /// `POST /audit/installs`
    AuditInstalls,
    /// `POST /issue`
    Issue,
    /// `POST /leases`
    Lease,
    /// `GET /records`
    Records,
    /// `POST /report`
    Report,
    /// `POST /locked`
    Locked,
    /// `POST /release`
    Release,
    /// `GET /lease-key`
    LeaseKey,
    /// `POST /auth/challenge`
    Challenge,
    /// `POST /auth/verify`
    Verify,
    /// `GET /openapi.json`
    OpenApi,
}

const fn route(
    method: Method,
    path: &'static str,
    access: Access,
    takes: Media,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        access,
        summary,
        takes,
        gives: Media::Json,
    }
}

impl Op {
    /// Every operation, in the order of the documentation.
    pub const ALL: [Op; 37] = [
        Op::Login,
        Op::Logout,
        Op::Me,
        Op::ListKeys,
        Op::AddKey,
        Op::ListProducts,
        Op::MapProduct,
        Op::SetLockUnits,
        Op::Generate,
        Op::Import,
        Op::AddFactory,
        Op::SetQuota,
        Op::AddUser,
        Op::ListUsers,
        Op::SetUserDisabled,
        Op::SetPassword,
        Op::SetRole,
        Op::ListFactories,
        Op::Activity,
        Op::Revoke,
        Op::ExportInstalled,
        Op::ReadAudit,
        Op::VerifyAudit,
        Op::AuditCheckpoint,
        Op::AuditInclusion,
        Op::AuditConsistency,
        Op::AuditInstalls,
        Op::Issue,
        Op::Lease,
        Op::Records,
        Op::Report,
        Op::Locked,
        Op::Release,
        Op::LeaseKey,
        Op::Challenge,
        Op::Verify,
        Op::OpenApi,
    ];

    /// The operation's route. An exhaustive match: an operation without a route does not
    /// compile.
    pub const fn route(self) -> Route {
        use Media::{Json, None};
        use Method::{Get, Post, Put};
        match self {
            Op::Login => route(
                Post,
                "/login",
                Access::Public,
                Json,
                "Sign in; returns a session token",
            ),
            Op::Logout => route(Post, "/logout", SIGNED_IN, None, "End the session"),
            Op::Me => route(Get, "/me", SIGNED_IN, None, "The signed-in user"),
            Op::ListKeys => route(
                Get,
                "/keys",
                ADMIN,
                None,
                "Key identifiers of table 700 (never key material)",
            ),
            Op::AddKey => route(Post, "/keys", ADMIN, Json, "Add a random pre-write key"),
            Op::ListProducts => route(
                Get,
                "/products",
                SIGNED_IN,
                None,
                "Table 500: product codes, key identifiers, whether each is chip-bound and whether its units are locked (a station reads it at sign-in)",
            ),
            Op::MapProduct => route(
                Put,
                "/products/{code}",
                ADMIN,
                Json,
                "Map or remap a product code; outstanding records are re-sealed",
            ),
            Op::SetLockUnits => route(
                Put,
                "/products/{code}/lock-units",
                ADMIN,
                Json,
                "Whether stations lock the product's units after the closed-loop check",
            ),
            Op::Generate => route(
                Post,
                "/auth-info/generate",
                ADMIN,
                Json,
                "Generate entries of table 702",
            ),
            Op::Import => route(
                Post,
                "/auth-info/import",
                ADMIN,
                Media::Csv,
                "Import entries from CSV (text/csv body: apparatus_id,pass_phrase,key_id); all or nothing",
            ),
            Op::AddFactory => route(Post, "/factories", ADMIN, Json, "Add a factory"),
            Op::SetQuota => route(
                Put,
                "/factories/{factory}/quotas/{product}",
                ADMIN,
                Json,
                "Set a factory's quota for a product code",
            ),
            Op::AddUser => route(Post, "/users", ADMIN, Json, "Add a user"),
            Op::ListUsers => route(
                Get,
                "/users",
                ADMIN,
                None,
                "Every user: role, factory, whether disabled, sessions open (never a password)",
            ),
            Op::SetUserDisabled => route(
                Put,
                "/users/{username}/disabled",
                ADMIN,
                Json,
                "Disable a user (their sessions end, they cannot sign in) or enable them again",
            ),
            Op::SetPassword => route(
                Put,
                "/users/{username}/password",
                ADMIN,
                Json,
                "Give a user a new password (their sessions end)",
            ),
            Op::SetRole => route(
                Put,
                "/users/{username}/role",
                ADMIN,
                Json,
                "Change a user's role and factory (their sessions end)",
            ),
            Op::ListFactories => route(
                Get,
                "/factories",
                READERS,
                None,
                "Every factory with its quotas (used, open), unexpired leases and units installed; each product's pool",
            ),
            Op::Activity => route(
                Get,
                "/activity",
                READERS,
                None,
                "Installs per hour, factory and station, and refused reports, over the last hours (query: hours)",
            ),
            Op::Revoke => route(
                Post,
                "/devices/{id}/revoke",
                ADMIN,
                None,
                "Revoke an installed apparatus ID",
            ),
            Op::ExportInstalled => Route {
                gives: Media::Csv,
                ..route(
                    Get,
                    "/installed.csv",
                    READERS,
                    None,
                    "Table 704 without secrets, as CSV",
                )
            },
            Op::ReadAudit => route(
                Get,
                "/audit",
                READERS,
                None,
                "Audit log entries (query: from, limit)",
            ),
            Op::VerifyAudit => route(
                Get,
                "/audit/verify",
                READERS,
                None,
                "Verify the audit log: its chain, its tree against the latest signed checkpoint, and a checkpoint saved earlier (query: checkpoint)",
            ),
            Op::AuditCheckpoint => route(
                Get,
                "/audit/checkpoint",
                Access::Public,
                None,
                "The audit log's latest signed checkpoint and its verifier key",
            ),
            Op::AuditInclusion => route(
                Get,
                "/audit/proof/inclusion",
                READERS,
                None,
                "An inclusion proof of one entry in a signed tree size (query: seq, size)",
            ),
            Op::AuditConsistency => route(
                Get,
                "/audit/proof/consistency",
                READERS,
                None,
                "A consistency proof between two tree sizes (query: old, new)",
            ),
            Op::AuditInstalls => route(
                Post,
                "/audit/installs",
                SIGNED_IN,
                Json,
                "Proofs that units' installations are in the audit log (a technician: of their factory's units), at the latest checkpoint, with a consistency proof from the caller's",
            ),
            Op::Issue => route(
                Post,
                "/issue",
                TECH,
                Json,
                "Issue sealed records (table 708) to the technician's factory",
            ),
            Op::Lease => route(
                Post,
                "/leases",
                TECH,
                Json,
                "Issue records as a signed offline lease",
            ),
            Op::Records => route(
                Get,
                "/records",
                TECH,
                None,
                "Records issued to the factory and not yet installed",
            ),
            Op::Report => route(
                Post,
                "/report",
                TECH,
                Json,
                "Report an installation with the device's receipt (exactly once); answers the status and a fresh challenge for the closed-loop check",
            ),
            Op::Locked => route(
                Post,
                "/locked",
                TECH,
                Json,
                "Record that an installed unit was locked (exactly once; the station's word: the device's Locked reply carries no proof)",
            ),
            Op::Release => route(
                Post,
                "/release",
                TECH,
                Json,
                "Return an issued, never-installed record to the pool",
            ),
            Op::LeaseKey => route(
                Get,
                "/lease-key",
                Access::Public,
                None,
                "The Ed25519 public key that signs leases",
            ),
            Op::Challenge => route(
                Post,
                "/auth/challenge",
                Access::Public,
                Json,
                "A single-use challenge for a device",
            ),
            Op::Verify => route(
                Post,
                "/auth/verify",
                Access::Public,
                Json,
                "Check a device's answer to a challenge",
            ),
            Op::OpenApi => route(Get, "/openapi.json", Access::Public, None, "This document"),
        }
    }

    /// The full path of a route without parameters (`/api/v1/issue`).
    pub fn path(self) -> String {
        let mut p = String::from(PREFIX);
        p.push_str(self.route().path);
        p
    }
}

/// A request body tied to its operation and its answer, for typed clients: a client that
/// sends an `IssueRequest` gets a `RecordList` back, from the path the server serves it on.
pub trait Endpoint: Serialize {
    /// The operation.
    const OP: Op;
    /// A successful answer's body.
    type Answer: Serialize + for<'de> Deserialize<'de>;

    /// The path to call, with parameters filled in.
    fn path(&self) -> String {
        Self::OP.path()
    }

    /// The query string to add to [`Endpoint::path`] (none for most), or why it cannot be
    /// written: a query is never sent without the filters it was given.
    fn query(&self) -> Result<Option<String>, String> {
        Ok(None)
    }

    /// The CSV text of a request to a route that takes CSV ([`Media::Csv`]); none for the
    /// others, whose body is this value as JSON.
    fn csv(&self) -> Option<&str> {
        None
    }
}
