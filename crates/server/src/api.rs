//! The HTTP API (JSON), over the contract in `imprint-api`.
//!
//! The router is built from [`Op::ALL`]: each operation's route comes from [`Op::route`],
//! its handler from [`handler`] (an exhaustive match), and its access rule is enforced by a
//! guard layered on that route, before the handler runs. So a route cannot be served to a role
//! its documentation does not name. Handlers parse nothing by hand: bodies, paths and queries
//! are the contract's types, and a body that does not fit answers the one error body with
//! `bad_request`.

use crate::db;
use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Json, Router};
use imprint_api::{
    Access, Activity, ActivityQuery, AddFactoryRequest, AddKeyRequest, AddUserRequest, AuditEntry,
    AuditPage, AuditQuery, AuditVerification, Bytes, ChallengeAnswer, ChallengeRequest,
    FactoryAdded, FactoryList, GenerateRequest, Generated, Imported, IssueRequest, KeyAdded,
    KeyList, LeaseAnswer, LeaseKeyAnswer, LeaseRequest, LockUnitsRequest, LockedAnswer,
    LockedRequest, LoggedOut, LoginAnswer, LoginRequest, MapProductRequest, MeAnswer, Method, Op,
    Product, ProductList, QuotaSet, RecordList, ReleaseRequest, Released, Remapped, ReportAnswer,
    ReportRequest, Revoked, SetDisabledRequest, SetPasswordRequest, SetQuotaRequest,
    SetRoleRequest, UserAdded, UserInfo, UserList, UserRow, VerifyAnswer, VerifyAuditQuery,
    VerifyRequest,
};
use imprint_core::{ApparatusId, FactoryId, ProductCode};
use serde::de::DeserializeOwned;

use crate::auth::User;
use crate::error::AppError;
use crate::{AppState, audit, auth, service, tlog};

type ApiResult<T> = Result<Json<T>, AppError>;

/// A JSON body of the contract. A body that is not JSON, lacks a field or has one of the wrong
/// type or form is refused with `bad_request` and serde's words for what did not fit (which
/// name the field, never echo a value).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(AppError::BadRequest(json_problem(&e))),
        }
    }
}

fn json_problem(e: &JsonRejection) -> String {
    match e {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON with `content-type: application/json`".into()
        }
        other => other.body_text(),
    }
}

/// Path parameters of the contract's types (a product code, a factory ID, an apparatus ID).
pub struct PathOf<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathOf<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathOf(p.0))
            .map_err(|e: PathRejection| AppError::BadRequest(e.body_text()))
    }
}

/// A query string of the contract's types.
pub struct QueryOf<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryOf<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryOf(q.0))
            .map_err(|e: QueryRejection| AppError::BadRequest(e.body_text()))
    }
}

/// The client's address, when the server was started with connect info (the real server is;
/// in-process tests are not).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

fn handler(op: Op) -> MethodRouter<AppState> {
    match op {
        Op::Login => post(login),
        Op::Logout => post(logout),
        Op::Me => get(me),
        Op::ListKeys => get(list_keys),
        Op::AddKey => post(add_key),
        Op::ListProducts => get(list_products),
        Op::MapProduct => put(map_product),
        Op::SetLockUnits => put(set_lock_units),
        Op::Generate => post(generate),
        Op::Import => post(import),
        Op::AddFactory => post(add_factory),
        Op::SetQuota => put(set_quota),
        Op::AddUser => post(add_user),
        Op::ListUsers => get(list_users),
        Op::SetUserDisabled => put(set_user_disabled),
        Op::SetPassword => put(set_password),
        Op::SetRole => put(set_role),
        Op::Revoke => post(revoke),
        Op::ExportInstalled => get(export_installed),
        Op::ListFactories => get(list_factories),
        Op::Activity => get(activity),
        Op::ReadAudit => get(read_audit),
        Op::VerifyAudit => get(verify_audit),
        Op::AuditCheckpoint => get(audit_checkpoint),
        Op::AuditInclusion => get(audit_inclusion),
        Op::AuditConsistency => get(audit_consistency),
        Op::AuditInstalls => post(audit_installs),
        Op::Issue => post(issue),
        Op::Lease => post(lease),
        Op::Records => get(records),
        Op::Report => post(report),
        Op::Locked => post(locked),
        Op::Release => post(release),
        Op::LeaseKey => get(lease_key),
        Op::Challenge => post(challenge),
        Op::Verify => post(verify),
        Op::OpenApi => get(openapi_json),
    }
}

/// Who signed in, on the response, for the request log line.
#[derive(Clone, Debug)]
pub struct SignedIn(pub String);

/// The access rule of one route, enforced before its handler: the session is looked up once,
/// the role checked against [`Op::route`]'s access, and the [`User`] handed to the handler.
async fn guard(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let Access::Roles(roles) = access else {
        return Ok(next.run(req).await);
    };
    let user = auth::authenticate(&state, req.headers()).await?;
    if !roles.contains(&user.role) {
        return Err(AppError::Forbidden(format!(
            "a {} may not do this",
            user.role.as_str()
        )));
    }
    let name = SignedIn(user.username.clone());
    req.extensions_mut().insert(user);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(name);
    Ok(res)
}

/// The router over a state.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for op in Op::ALL {
        let route = op.route();
        let served = handler(op).route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), route.access),
            guard,
        ));
        api = api.route(route.path, served);
    }
    // Unknown API paths and methods are the JSON error, never the portal's index.html.
    let api = api
        .fallback(|| async {
            AppError::NotFound("no such API route; see /api/v1/openapi.json".into())
        })
        .method_not_allowed_fallback(|| async {
            AppError::MethodNotAllowed(
                "this path does not take this method; see /api/v1/openapi.json".into(),
            )
        });
    Router::new()
        .nest(imprint_api::PREFIX, api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), timed))
        .with_state(state)
}

/// The OpenAPI 3.1 document, generated from the contract.
pub fn openapi() -> String {
    imprint_api::openapi::document_json()
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi()).into_response()
}

/// Times every request for the latency histogram, tells the client how long the server took
/// (`Server-Timing: app;dur=<ms>`), and writes one log line per request: method, route
/// template, status, latency, user and request ID; never a body, a token or a secret.
async fn timed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let request_id = crate::random_id();
    let mut res = next.run(req).await;
    let took = start.elapsed();
    state.metrics.observe(took);
    let timing = format!("app;dur={:.2}", took.as_secs_f64() * 1000.0);
    if let Ok(v) = header::HeaderValue::from_str(&timing) {
        res.headers_mut().insert("server-timing", v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    let user = res
        .extensions()
        .get::<SignedIn>()
        .map(|u| u.0.as_str())
        .unwrap_or("-");
    tracing::info!(
        target: "imprint_server::request",
        %method,
        route = route.as_deref().unwrap_or("(unmatched)"),
        status = res.status().as_u16(),
        ms = took.as_secs_f64() * 1000.0,
        user,
        request_id,
        "request"
    );
    res
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    db::query("SELECT 1")
        .execute(&mut state.store.read().await?)
        .await?;
    Ok("ok")
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Body(b): Body<LoginRequest>,
) -> ApiResult<LoginAnswer> {
    let (token, user) = auth::login(&state, &b.username, &b.password, addr).await?;
    Ok(Json(LoginAnswer {
        token,
        user: user.info()?,
    }))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _user: User,
) -> ApiResult<LoggedOut> {
    auth::logout(&state, &headers).await?;
    Ok(Json(LoggedOut { ok: true }))
}

async fn me(user: User) -> ApiResult<MeAnswer> {
    Ok(Json(MeAnswer { user: user.info()? }))
}

async fn list_keys(State(state): State<AppState>, _user: User) -> ApiResult<KeyList> {
    Ok(Json(KeyList {
        key_ids: service::list_keys(&state).await?,
    }))
}

async fn add_key(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<AddKeyRequest>,
) -> ApiResult<KeyAdded> {
    service::add_key(&state, &user.username, b.key_id).await?;
    Ok(Json(KeyAdded { key_id: b.key_id }))
}

async fn list_products(State(state): State<AppState>, _user: User) -> ApiResult<ProductList> {
    Ok(Json(ProductList {
        products: service::list_products(&state).await?,
    }))
}

async fn map_product(
    State(state): State<AppState>,
    user: User,
    PathOf(code): PathOf<ProductCode>,
    Body(b): Body<MapProductRequest>,
) -> ApiResult<Remapped> {
    Ok(Json(
        service::map_product(&state, &user.username, code, b.key_id, b.chip_bound).await?,
    ))
}

async fn set_lock_units(
    State(state): State<AppState>,
    user: User,
    PathOf(code): PathOf<ProductCode>,
    Body(b): Body<LockUnitsRequest>,
) -> ApiResult<Product> {
    Ok(Json(
        service::set_lock_units(&state, &user.username, code, b.lock_units).await?,
    ))
}

async fn generate(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<GenerateRequest>,
) -> ApiResult<Generated> {
    Ok(Json(
        service::generate(&state, &user.username, b.key_id, b.count, &b.prefix).await?,
    ))
}

async fn import(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Imported> {
    let csv_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/csv") || t.starts_with("text/plain"));
    if !csv_type {
        return Err(AppError::BadRequest(
            "the body must be CSV with `content-type: text/csv`".into(),
        ));
    }
    match service::import_csv(&state, &user.username, &body).await? {
        Ok(n) => Ok(Json(Imported { imported: n })),
        Err(lines) => Err(AppError::BadCsv(lines)),
    }
}

async fn add_factory(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<AddFactoryRequest>,
) -> ApiResult<FactoryAdded> {
    service::add_factory(&state, &user.username, b.factory_id, &b.name).await?;
    Ok(Json(FactoryAdded {
        factory_id: b.factory_id,
    }))
}

async fn set_quota(
    State(state): State<AppState>,
    user: User,
    PathOf((factory, product)): PathOf<(FactoryId, ProductCode)>,
    Body(b): Body<SetQuotaRequest>,
) -> ApiResult<QuotaSet> {
    service::set_quota(&state, &user.username, factory, product, b.limit).await?;
    Ok(Json(QuotaSet {
        factory_id: factory,
        product_code: product,
        limit: b.limit,
    }))
}

async fn add_user(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<AddUserRequest>,
) -> ApiResult<UserAdded> {
    state
        .store
        .write(&(&user, &b), |tx, (user, b)| {
            Box::pin(auth::create_user(
                tx,
                &user.username,
                &b.username,
                &b.password,
                b.role.as_str(),
                b.factory_id.as_ref().map(FactoryId::as_str),
            ))
        })
        .await?;
    Ok(Json(UserAdded {
        username: b.username,
        role: b.role,
    }))
}

fn user_row(u: auth::UserState) -> Result<UserRow, AppError> {
    Ok(UserRow {
        username: u.username,
        role: u.role,
        factory_id: u.factory.as_deref().map(FactoryId::new).transpose()?,
        disabled: u.disabled,
        sessions: u.sessions,
    })
}

async fn list_users(State(state): State<AppState>, _user: User) -> ApiResult<UserList> {
    let mut conn = state.store.read().await?;
    let users = auth::list_users(&mut conn)
        .await?
        .into_iter()
        .map(user_row)
        .collect::<Result<_, _>>()?;
    Ok(Json(UserList { users }))
}

async fn set_user_disabled(
    State(state): State<AppState>,
    user: User,
    PathOf(name): PathOf<String>,
    Body(b): Body<SetDisabledRequest>,
) -> ApiResult<UserRow> {
    let u = state
        .store
        .write(&(&user, &name, b.disabled), |tx, (user, name, disabled)| {
            Box::pin(auth::set_disabled(tx, &user.username, name, *disabled))
        })
        .await?;
    Ok(Json(user_row(u)?))
}

async fn set_password(
    State(state): State<AppState>,
    user: User,
    PathOf(name): PathOf<String>,
    Body(b): Body<SetPasswordRequest>,
) -> ApiResult<UserRow> {
    let u = state
        .store
        .write(&(&user, &name, &b), |tx, (user, name, b)| {
            Box::pin(auth::set_password(tx, &user.username, name, &b.password))
        })
        .await?;
    Ok(Json(user_row(u)?))
}

async fn set_role(
    State(state): State<AppState>,
    user: User,
    PathOf(name): PathOf<String>,
    Body(b): Body<SetRoleRequest>,
) -> ApiResult<UserRow> {
    let u = state
        .store
        .write(&(&user, &name, &b), |tx, (user, name, b)| {
            Box::pin(auth::set_role(
                tx,
                &user.username,
                name,
                b.role,
                b.factory_id.as_ref().map(FactoryId::as_str),
            ))
        })
        .await?;
    Ok(Json(user_row(u)?))
}

async fn revoke(
    State(state): State<AppState>,
    user: User,
    PathOf(id): PathOf<ApparatusId>,
) -> ApiResult<Revoked> {
    service::revoke(&state, &user.username, id).await?;
    Ok(Json(Revoked { revoked: id }))
}

async fn export_installed(
    State(state): State<AppState>,
    _user: User,
) -> Result<impl IntoResponse, AppError> {
    let csv = service::export_installed(&state).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

async fn list_factories(State(state): State<AppState>, _user: User) -> ApiResult<FactoryList> {
    Ok(Json(service::factories(&state).await?))
}

async fn activity(
    State(state): State<AppState>,
    _user: User,
    QueryOf(q): QueryOf<ActivityQuery>,
) -> ApiResult<Activity> {
    Ok(Json(service::activity(&state, q.hours.unwrap_or(8)).await?))
}

async fn read_audit(
    State(state): State<AppState>,
    _user: User,
    QueryOf(q): QueryOf<AuditQuery>,
) -> ApiResult<AuditPage> {
    let page = match (q.from, q.before) {
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "from and before: one or the other, not both".into(),
            ));
        }
        (from, None) => audit::Page::From(
            i64::try_from(from.unwrap_or(1))
                .map_err(|_| AppError::BadRequest("from: too large".into()))?,
        ),
        (None, Some(before)) => audit::Page::Before(i64::try_from(before).unwrap_or(i64::MAX)),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as i64;
    // What was committed before this request is in the page.
    tlog::sequence_before_read(&state.store, &state.custody).await;
    let mut conn = state.store.read().await?;
    let subject = match q.unit.as_deref() {
        Some(unit) => Some(service::unit_subject(&mut conn, unit).await?),
        None => None,
    };
    let filter = audit::Filter {
        actor: q.actor,
        action: q.action,
        subject,
        station: q.station,
    };
    let entries = audit::search(&mut conn, &filter, page, limit).await?;
    let latest = count(audit::latest(&mut conn).await?)?;
    Ok(Json(AuditPage {
        latest,
        entries: entries
            .into_iter()
            .map(|e| {
                Ok(AuditEntry {
                    seq: count(e.seq)?,
                    at: e.at,
                    actor: e.actor,
                    action: e.action,
                    detail: e.detail,
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                })
            })
            .collect::<Result<_, AppError>>()?,
    }))
}

async fn verify_audit(
    State(state): State<AppState>,
    _user: User,
    QueryOf(q): QueryOf<VerifyAuditQuery>,
) -> ApiResult<AuditVerification> {
    let saved = q
        .checkpoint
        .as_deref()
        .map(tlog::Saved::parse)
        .transpose()?;
    let v = tlog::verify(&state.store, &state.custody, saved.as_ref()).await?;
    Ok(Json(AuditVerification {
        entries: count(v.entries)?,
        head: v.head,
        checkpoint: v.checkpoint,
        ok: v.problem.is_none(),
        problem: v.problem,
    }))
}

/// Public: a checkpoint reveals a size and a hash, and witnesses must read it without an
/// account. It is the latest the sequencer signed (within about a second), not made here, so
/// that anonymous requests do not write (but the very first, before any checkpoint).
async fn audit_checkpoint(
    State(state): State<AppState>,
) -> ApiResult<imprint_api::AuditCheckpoint> {
    let key = tlog::verifier_key(&state.store, &state.custody).await?;
    let mut conn = state.store.read().await?;
    let latest = match tlog::latest(&mut conn).await? {
        Some(c) => Some(c),
        // Only until the log's first checkpoint: a new server's entries may not be sequenced
        // yet. Read again after: another sequencer (this process's own, or another process's)
        // may have signed it while this one waited for the lock.
        None => {
            tlog::sequence_before_read(&state.store, &state.custody).await;
            tlog::latest(&mut conn).await?
        }
    }
    .ok_or_else(|| {
        AppError::NotFound("the audit log has no entries yet, so no checkpoint".into())
    })?;
    Ok(Json(imprint_api::AuditCheckpoint {
        checkpoint: latest.note,
        size: latest.size,
        key: key.to_string(),
        witnessed: crate::witness::witnessed(&state.store).await?,
    }))
}

async fn audit_inclusion(
    State(state): State<AppState>,
    _user: User,
    QueryOf(q): QueryOf<imprint_api::InclusionQuery>,
) -> ApiResult<imprint_api::InclusionProof> {
    if q.seq == 0 {
        return Err(AppError::BadRequest(
            "seq: entries are numbered from 1".into(),
        ));
    }
    tlog::sequence_before_read(&state.store, &state.custody).await;
    let mut conn = state.store.read().await?;
    let index = q.seq - 1;
    let hashes = tlog::prove(
        &mut conn,
        tlog::Proof::Inclusion {
            index,
            size: q.size,
        },
    )
    .await?;
    Ok(Json(imprint_api::InclusionProof {
        index,
        size: q.size,
        hashes: hashes.iter().map(tlog::base64).collect(),
    }))
}

async fn audit_consistency(
    State(state): State<AppState>,
    _user: User,
    QueryOf(q): QueryOf<imprint_api::ConsistencyQuery>,
) -> ApiResult<imprint_api::ConsistencyProof> {
    tlog::sequence_before_read(&state.store, &state.custody).await;
    let mut conn = state.store.read().await?;
    let hashes = tlog::prove(
        &mut conn,
        tlog::Proof::Consistency {
            old: q.old,
            new: q.new,
        },
    )
    .await?;
    Ok(Json(imprint_api::ConsistencyProof {
        old: q.old,
        new: q.new,
        hashes: hashes.iter().map(tlog::base64).collect(),
    }))
}

async fn audit_installs(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<imprint_api::InstallProofsRequest>,
) -> ApiResult<imprint_api::InstallProofs> {
    // A technician sees their own factory's installations only.
    let factory = match user.role {
        auth::Role::Technician => Some(user.factory()?),
        _ => None,
    };
    Ok(Json(
        tlog::install_proofs(
            &state.store,
            &state.custody,
            factory.as_ref().map(|f| f.as_str()),
            &b.apparatus_ids,
            b.since,
        )
        .await?,
    ))
}

/// A sequence number or count read from the database, which is never negative.
fn count(n: i64) -> Result<u64, AppError> {
    u64::try_from(n).map_err(|_| AppError::bug(format!("a stored count is negative: {n}")))
}

async fn issue(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<IssueRequest>,
) -> ApiResult<RecordList> {
    let records = service::issue(&state, &user, b.product_code, b.count, b.chip_id).await?;
    Ok(Json(RecordList { records }))
}

async fn records(State(state): State<AppState>, user: User) -> ApiResult<RecordList> {
    Ok(Json(RecordList {
        records: service::open_records(&state, &user).await?,
    }))
}

async fn report(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<ReportRequest>,
) -> ApiResult<ReportAnswer> {
    let r = service::Report {
        apparatus_id: b.apparatus_id,
        product_serial: b.product_serial,
        receipt: b.receipt,
        station: b.station,
    };
    let (status, challenge) = service::report(&state, &user, &r).await?;
    Ok(Json(ReportAnswer {
        status,
        challenge,
        expires_in_ms: service::CHALLENGE_MILLIS as u64,
    }))
}

async fn locked(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<LockedRequest>,
) -> ApiResult<LockedAnswer> {
    let r = service::LockReport {
        apparatus_id: b.apparatus_id,
        product_serial: b.product_serial,
        station: b.station,
    };
    Ok(Json(LockedAnswer {
        status: service::record_lock(&state, &user, &r).await?,
    }))
}

async fn lease(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<LeaseRequest>,
) -> ApiResult<LeaseAnswer> {
    Ok(Json(
        service::lease(&state, &user, b.product_code, b.count, b.hours).await?,
    ))
}

async fn lease_key(State(state): State<AppState>) -> ApiResult<LeaseKeyAnswer> {
    Ok(Json(LeaseKeyAnswer {
        public_key: Bytes(service::lease_public_key(&state).await?),
    }))
}

async fn release(
    State(state): State<AppState>,
    user: User,
    Body(b): Body<ReleaseRequest>,
) -> ApiResult<Released> {
    service::release(&state, &user, b.apparatus_id).await?;
    Ok(Json(Released {
        released: b.apparatus_id,
    }))
}

async fn challenge(
    State(state): State<AppState>,
    Body(b): Body<ChallengeRequest>,
) -> ApiResult<ChallengeAnswer> {
    let c = service::challenge(&state.custody, b.apparatus_id);
    Ok(Json(ChallengeAnswer {
        challenge: c,
        expires_in_ms: service::CHALLENGE_MILLIS as u64,
    }))
}

async fn verify(
    State(state): State<AppState>,
    Body(b): Body<VerifyRequest>,
) -> ApiResult<VerifyAnswer> {
    let ok = service::verify(&state, b.apparatus_id, b.challenge, b.response).await?;
    Ok(Json(VerifyAnswer { authenticated: ok }))
}

/// What a signed-in user is in the contract.
impl User {
    /// As the contract's [`UserInfo`].
    pub fn info(&self) -> Result<UserInfo, AppError> {
        Ok(UserInfo {
            username: self.username.clone(),
            role: self.role,
            factory: self.factory.as_deref().map(FactoryId::new).transpose()?,
        })
    }
}

/// The methods the contract uses, as axum's.
pub fn method(m: Method) -> axum::http::Method {
    match m {
        Method::Get => axum::http::Method::GET,
        Method::Post => axum::http::Method::POST,
        Method::Put => axum::http::Method::PUT,
    }
}
