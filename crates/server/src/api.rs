//! The HTTP API (JSON). Each handler parses its input into core types, checks the caller's
//! role, calls [`crate::service`] and answers. Routes are under `/api/v1`.
//!
//! The routes, with the roles allowed on each, are the table [`ROUTES`]; the router and the
//! OpenAPI document (`GET /api/v1/openapi.json`) are both built from it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use imprint_core::{
    ApparatusId, AuthResponse, Challenge, FactoryId, KeyId, ProductCode, ProductSerial, Receipt,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Role, User};
use crate::error::AppError;
use crate::{AppState, audit, auth, service};

type ApiResult = Result<Json<Value>, AppError>;

/// One documented route. The router is built from this table, so the OpenAPI document
/// served at `/api/v1/openapi.json` cannot drift from what is served.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method.
    pub method: &'static str,
    /// Path under `/api/v1`, with `{param}` placeholders.
    pub path: &'static str,
    /// Roles allowed; empty means public.
    pub roles: &'static [&'static str],
    /// What it does.
    pub summary: &'static str,
    /// JSON body fields (name, JSON type), if it takes a JSON body.
    pub body: &'static [(&'static str, &'static str)],
}

const ADMIN: &[&str] = &["admin"];
const READERS: &[&str] = &["admin", "auditor"];
const TECH: &[&str] = &["technician"];
const ANYONE_SIGNED_IN: &[&str] = &["admin", "technician", "auditor"];
const PUBLIC: &[&str] = &[];

/// Every route of the API.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "POST",
        path: "/login",
        roles: PUBLIC,
        summary: "Sign in; returns a session token",
        body: &[("username", "string"), ("password", "string")],
    },
    RouteDoc {
        method: "POST",
        path: "/logout",
        roles: ANYONE_SIGNED_IN,
        summary: "End the session",
        body: &[],
    },
    RouteDoc {
        method: "GET",
        path: "/me",
        roles: ANYONE_SIGNED_IN,
        summary: "The signed-in user",
        body: &[],
    },
    RouteDoc {
        method: "GET",
        path: "/keys",
        roles: ADMIN,
        summary: "Key identifiers of table 700 (never key material)",
        body: &[],
    },
    RouteDoc {
        method: "POST",
        path: "/keys",
        roles: ADMIN,
        summary: "Add a random pre-write key",
        body: &[("key_id", "integer")],
    },
    RouteDoc {
        method: "GET",
        path: "/products",
        roles: READERS,
        summary: "Table 500: product codes and key identifiers",
        body: &[],
    },
    RouteDoc {
        method: "PUT",
        path: "/products/{code}",
        roles: ADMIN,
        summary: "Map or remap a product code; outstanding records are re-sealed",
        body: &[("key_id", "integer")],
    },
    RouteDoc {
        method: "POST",
        path: "/auth-info/generate",
        roles: ADMIN,
        summary: "Generate entries of table 702",
        body: &[
            ("key_id", "integer"),
            ("count", "integer"),
            ("prefix", "string"),
        ],
    },
    RouteDoc {
        method: "POST",
        path: "/auth-info/import",
        roles: ADMIN,
        summary: "Import entries from CSV (text/csv body: apparatus_id,pass_phrase,key_id); all or nothing",
        body: &[],
    },
    RouteDoc {
        method: "POST",
        path: "/factories",
        roles: ADMIN,
        summary: "Add a factory",
        body: &[("factory_id", "string"), ("name", "string")],
    },
    RouteDoc {
        method: "PUT",
        path: "/factories/{factory}/quotas/{product}",
        roles: ADMIN,
        summary: "Set a factory's quota for a product code",
        body: &[("limit", "integer")],
    },
    RouteDoc {
        method: "POST",
        path: "/users",
        roles: ADMIN,
        summary: "Add a user",
        body: &[
            ("username", "string"),
            ("password", "string"),
            ("role", "string"),
            ("factory_id", "string"),
        ],
    },
    RouteDoc {
        method: "POST",
        path: "/devices/{id}/revoke",
        roles: ADMIN,
        summary: "Revoke an installed apparatus ID",
        body: &[],
    },
    RouteDoc {
        method: "GET",
        path: "/installed.csv",
        roles: READERS,
        summary: "Table 704 without secrets, as CSV",
        body: &[],
    },
    RouteDoc {
        method: "GET",
        path: "/audit",
        roles: READERS,
        summary: "Audit log entries (query: from, limit)",
        body: &[],
    },
    RouteDoc {
        method: "GET",
        path: "/audit/verify",
        roles: READERS,
        summary: "Verify the audit hash chain (query: checkpoint=seq:hash)",
        body: &[],
    },
    RouteDoc {
        method: "POST",
        path: "/issue",
        roles: TECH,
        summary: "Issue sealed records (table 708) to the technician's factory",
        body: &[("product_code", "string"), ("count", "integer")],
    },
    RouteDoc {
        method: "POST",
        path: "/leases",
        roles: TECH,
        summary: "Issue records as a signed offline lease",
        body: &[
            ("product_code", "string"),
            ("count", "integer"),
            ("hours", "integer"),
        ],
    },
    RouteDoc {
        method: "GET",
        path: "/records",
        roles: TECH,
        summary: "Records issued to the factory and not yet installed",
        body: &[],
    },
    RouteDoc {
        method: "POST",
        path: "/report",
        roles: TECH,
        summary: "Report an installation with the device's receipt (exactly once); answers the status and a fresh challenge for the closed-loop check",
        body: &[
            ("apparatus_id", "string"),
            ("product_serial", "string"),
            ("receipt", "string"),
            ("station", "string"),
        ],
    },
    RouteDoc {
        method: "POST",
        path: "/release",
        roles: TECH,
        summary: "Return an issued, never-installed record to the pool",
        body: &[("apparatus_id", "string")],
    },
    RouteDoc {
        method: "GET",
        path: "/lease-key",
        roles: PUBLIC,
        summary: "The Ed25519 public key that signs leases",
        body: &[],
    },
    RouteDoc {
        method: "POST",
        path: "/auth/challenge",
        roles: PUBLIC,
        summary: "A single-use challenge for a device",
        body: &[("apparatus_id", "string")],
    },
    RouteDoc {
        method: "POST",
        path: "/auth/verify",
        roles: PUBLIC,
        summary: "Check a device's answer to a challenge",
        body: &[
            ("apparatus_id", "string"),
            ("challenge", "string"),
            ("response", "string"),
        ],
    },
    RouteDoc {
        method: "GET",
        path: "/openapi.json",
        roles: PUBLIC,
        summary: "This document",
        body: &[],
    },
];

fn handler(r: &RouteDoc) -> Option<axum::routing::MethodRouter<AppState>> {
    Some(match (r.method, r.path) {
        ("POST", "/login") => post(login),
        ("POST", "/logout") => post(logout),
        ("GET", "/me") => get(me),
        ("GET", "/keys") => get(list_keys),
        ("POST", "/keys") => post(add_key),
        ("GET", "/products") => get(list_products),
        ("PUT", "/products/{code}") => put(map_product),
        ("POST", "/auth-info/generate") => post(generate),
        ("POST", "/auth-info/import") => post(import),
        ("POST", "/factories") => post(add_factory),
        ("PUT", "/factories/{factory}/quotas/{product}") => put(set_quota),
        ("POST", "/users") => post(add_user),
        ("POST", "/devices/{id}/revoke") => post(revoke),
        ("GET", "/installed.csv") => get(export_installed),
        ("GET", "/audit") => get(read_audit),
        ("GET", "/audit/verify") => get(verify_audit),
        ("POST", "/issue") => post(issue),
        ("POST", "/leases") => post(lease),
        ("GET", "/records") => get(records),
        ("POST", "/report") => post(report),
        ("POST", "/release") => post(release),
        ("GET", "/lease-key") => get(lease_key),
        ("POST", "/auth/challenge") => post(challenge),
        ("POST", "/auth/verify") => post(verify),
        ("GET", "/openapi.json") => get(openapi_json),
        _ => return None,
    })
}

/// The router over a state.
///
/// # Panics
/// If a route in [`ROUTES`] has no handler: a programming error caught by every test run.
#[allow(clippy::panic)]
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for r in ROUTES {
        let Some(h) = handler(r) else {
            panic!(
                "route {} {} is documented but has no handler",
                r.method, r.path
            );
        };
        api = api.route(r.path, h);
    }
    // Unknown API paths are a JSON 404, never the portal's index.html.
    let api = api.fallback(|| async {
        AppError::NotFound("no such API route; see /api/v1/openapi.json".into())
    });
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), timed))
        .with_state(state)
}

/// The OpenAPI 3.1 document, generated from [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let Value::Object(mut op) = json!({
            "summary": r.summary,
            "description": if r.roles.is_empty() { "Public.".to_string() } else { format!("Roles: {}.", r.roles.join(", ")) },
            "parameters": params,
            "responses": {
                "200": { "description": "Success" },
                "400": { "description": "Malformed input", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "401": { "description": "No valid session" },
                "403": { "description": "Role not allowed, or over quota / not your record" },
                "404": { "description": "Unknown key, product, factory or apparatus ID" },
                "409": { "description": "Conflicts with the current state" },
                "422": { "description": "Receipt not valid, or CSV with bad lines" }
            }
        }) else {
            continue;
        };
        if !r.roles.is_empty() {
            op.insert("security".into(), json!([{ "session": [] }]));
        }
        if !r.body.is_empty() {
            let props: serde_json::Map<String, Value> = r
                .body
                .iter()
                .map(|(n, t)| (n.to_string(), json!({ "type": t })))
                .collect();
            op.insert("requestBody".into(), json!({ "required": true, "content": { "application/json": { "schema": { "type": "object", "properties": props } } } }));
        }
        if let Value::Object(entry) = paths
            .entry(format!("/api/v1{}", r.path))
            .or_insert_with(|| json!({}))
        {
            entry.insert(r.method.to_lowercase(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Imprint management and authentication server", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "session": { "type": "http", "scheme": "bearer", "description": "Token from POST /api/v1/login" } },
            "schemas": { "Error": { "type": "object", "properties": { "error": { "type": "string" }, "message": { "type": "string" } } } }
        }
    })
}

async fn openapi_json() -> Json<Value> {
    Json(openapi())
}

/// Times every request for the latency histogram, and tells the client how long the server
/// took (`Server-Timing: app;dur=<ms>`): browser devtools and the station benchmark can then
/// tell server time from network and page time.
async fn timed(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let start = std::time::Instant::now();
    let mut res = next.run(req).await;
    let took = start.elapsed();
    state.metrics.observe(took);
    let timing = format!("app;dur={:.2}", took.as_secs_f64() * 1000.0);
    if let Ok(v) = header::HeaderValue::from_str(&timing) {
        res.headers_mut().insert("server-timing", v);
    }
    res
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

fn hex32(what: &str, s: &str) -> Result<[u8; 32], AppError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| AppError::BadRequest(format!("{what}: 64 hex digits expected")))?;
    Ok(out)
}

async fn healthz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    sqlx::query("SELECT 1").execute(&state.pool).await?;
    Ok("ok")
}

#[derive(Deserialize)]
struct LoginIn {
    username: String,
    password: String,
}

async fn login(State(state): State<AppState>, Json(b): Json<LoginIn>) -> ApiResult {
    let (token, user) = auth::login(&state, &b.username, &b.password).await?;
    Ok(Json(json!({ "token": token, "user": user })))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, _user: User) -> ApiResult {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    auth::logout(&state, token).await?;
    Ok(Json(json!({ "ok": true })))
}

async fn me(user: User) -> ApiResult {
    Ok(Json(json!({ "user": user })))
}

async fn list_keys(State(state): State<AppState>, user: User) -> ApiResult {
    user.require(&[Role::Admin])?;
    Ok(Json(
        json!({ "key_ids": service::list_keys(&state).await? }),
    ))
}

#[derive(Deserialize)]
struct KeyIn {
    key_id: u32,
}

async fn add_key(State(state): State<AppState>, user: User, Json(b): Json<KeyIn>) -> ApiResult {
    user.require(&[Role::Admin])?;
    service::add_key(&state, &user.username, KeyId::new(b.key_id)?).await?;
    Ok(Json(json!({ "key_id": b.key_id })))
}

async fn list_products(State(state): State<AppState>, user: User) -> ApiResult {
    user.require(&[Role::Admin, Role::Auditor])?;
    let list: Vec<Value> = service::list_products(&state)
        .await?
        .into_iter()
        .map(|(p, k)| json!({ "product_code": p, "key_id": k }))
        .collect();
    Ok(Json(json!({ "products": list })))
}

async fn map_product(
    State(state): State<AppState>,
    user: User,
    Path(code): Path<String>,
    Json(b): Json<KeyIn>,
) -> ApiResult {
    user.require(&[Role::Admin])?;
    let r = service::map_product(
        &state,
        &user.username,
        ProductCode::new(&code)?,
        KeyId::new(b.key_id)?,
    )
    .await?;
    Ok(Json(json!(r)))
}

#[derive(Deserialize)]
struct GenerateIn {
    key_id: u32,
    count: u64,
    #[serde(default = "default_prefix")]
    prefix: String,
}

fn default_prefix() -> String {
    "IMP-".into()
}

async fn generate(
    State(state): State<AppState>,
    user: User,
    Json(b): Json<GenerateIn>,
) -> ApiResult {
    user.require(&[Role::Admin])?;
    let g = service::generate(
        &state,
        &user.username,
        KeyId::new(b.key_id)?,
        b.count,
        &b.prefix,
    )
    .await?;
    Ok(Json(json!(g)))
}

async fn import(
    State(state): State<AppState>,
    user: User,
    body: String,
) -> Result<axum::response::Response, AppError> {
    user.require(&[Role::Admin])?;
    Ok(match service::import_csv(&state, &user.username, &body).await? {
        Ok(n) => Json(json!({ "imported": n })).into_response(),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "bad_csv", "message": format!("{} bad line(s); nothing was imported", errors.len()), "lines": errors })),
        )
            .into_response(),
    })
}

#[derive(Deserialize)]
struct FactoryIn {
    factory_id: String,
    name: String,
}

async fn add_factory(
    State(state): State<AppState>,
    user: User,
    Json(b): Json<FactoryIn>,
) -> ApiResult {
    user.require(&[Role::Admin])?;
    service::add_factory(
        &state,
        &user.username,
        FactoryId::new(&b.factory_id)?,
        &b.name,
    )
    .await?;
    Ok(Json(json!({ "factory_id": b.factory_id })))
}

#[derive(Deserialize)]
struct QuotaIn {
    limit: u64,
}

async fn set_quota(
    State(state): State<AppState>,
    user: User,
    Path((factory, product)): Path<(String, String)>,
    Json(b): Json<QuotaIn>,
) -> ApiResult {
    user.require(&[Role::Admin])?;
    service::set_quota(
        &state,
        &user.username,
        FactoryId::new(&factory)?,
        ProductCode::new(&product)?,
        b.limit,
    )
    .await?;
    Ok(Json(
        json!({ "factory_id": factory, "product_code": product, "limit": b.limit }),
    ))
}

#[derive(Deserialize)]
struct UserIn {
    username: String,
    password: String,
    role: String,
    factory_id: Option<String>,
}

async fn add_user(State(state): State<AppState>, user: User, Json(b): Json<UserIn>) -> ApiResult {
    user.require(&[Role::Admin])?;
    let _w = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    auth::create_user(
        &mut tx,
        &user.username,
        &b.username,
        &b.password,
        &b.role,
        b.factory_id.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({ "username": b.username, "role": b.role })))
}

async fn revoke(State(state): State<AppState>, user: User, Path(id): Path<String>) -> ApiResult {
    user.require(&[Role::Admin])?;
    service::revoke(&state, &user.username, ApparatusId::new(&id)?).await?;
    Ok(Json(json!({ "revoked": id })))
}

async fn export_installed(
    State(state): State<AppState>,
    user: User,
) -> Result<impl IntoResponse, AppError> {
    user.require(&[Role::Admin, Role::Auditor])?;
    let csv = service::export_installed(&state).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

#[derive(Deserialize)]
struct AuditQuery {
    from: Option<i64>,
    limit: Option<i64>,
}

async fn read_audit(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    user.require(&[Role::Admin, Role::Auditor])?;
    let mut conn = state.pool.acquire().await?;
    let entries = audit::read(
        &mut conn,
        q.from.unwrap_or(1),
        q.limit.unwrap_or(100).clamp(1, 1000),
    )
    .await?;
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
struct VerifyQuery {
    /// A checkpoint `seq:hash` saved from an earlier verification.
    checkpoint: Option<String>,
}

async fn verify_audit(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<VerifyQuery>,
) -> ApiResult {
    user.require(&[Role::Admin, Role::Auditor])?;
    let checkpoint = match &q.checkpoint {
        Some(c) => {
            let (seq, hash) = c
                .split_once(':')
                .ok_or_else(|| AppError::BadRequest("checkpoint: seq:hash expected".into()))?;
            let seq: i64 = seq
                .parse()
                .map_err(|_| AppError::BadRequest("checkpoint: seq must be a number".into()))?;
            Some((seq, hash.to_string()))
        }
        None => None,
    };
    let mut conn = state.pool.acquire().await?;
    let v = audit::verify(
        &mut conn,
        checkpoint.as_ref().map(|(s, h)| (*s, h.as_str())),
    )
    .await?;
    Ok(Json(json!(v)))
}

#[derive(Deserialize)]
struct IssueIn {
    product_code: String,
    count: u64,
}

async fn issue(State(state): State<AppState>, user: User, Json(b): Json<IssueIn>) -> ApiResult {
    user.require(&[Role::Technician])?;
    let records =
        service::issue(&state, &user, ProductCode::new(&b.product_code)?, b.count).await?;
    Ok(Json(json!({ "records": records })))
}

async fn records(State(state): State<AppState>, user: User) -> ApiResult {
    user.require(&[Role::Technician])?;
    Ok(Json(
        json!({ "records": service::open_records(&state, &user).await? }),
    ))
}

#[derive(Deserialize)]
struct ReportIn {
    apparatus_id: String,
    product_serial: String,
    receipt: String,
    station: String,
}

async fn report(State(state): State<AppState>, user: User, Json(b): Json<ReportIn>) -> ApiResult {
    user.require(&[Role::Technician])?;
    let r = service::Report {
        apparatus_id: ApparatusId::new(&b.apparatus_id)?,
        product_serial: ProductSerial::new(&b.product_serial)?,
        receipt: Receipt(hex32("receipt", &b.receipt)?),
        station: b.station,
    };
    let (outcome, c) = service::report(&state, &user, &r).await?;
    Ok(Json(json!({
        "status": outcome,
        "challenge": hex::encode(c.0),
        "expires_in_ms": service::CHALLENGE_MILLIS,
    })))
}

#[derive(Deserialize)]
struct LeaseIn {
    product_code: String,
    count: u64,
    hours: u64,
}

async fn lease(State(state): State<AppState>, user: User, Json(b): Json<LeaseIn>) -> ApiResult {
    user.require(&[Role::Technician])?;
    let l = service::lease(
        &state,
        &user,
        ProductCode::new(&b.product_code)?,
        b.count,
        b.hours,
    )
    .await?;
    Ok(Json(json!(l)))
}

async fn lease_key(State(state): State<AppState>) -> ApiResult {
    Ok(Json(
        json!({ "public_key": hex::encode(service::lease_public_key(&state).await?) }),
    ))
}

#[derive(Deserialize)]
struct IdIn {
    apparatus_id: String,
}

async fn release(State(state): State<AppState>, user: User, Json(b): Json<IdIn>) -> ApiResult {
    user.require(&[Role::Technician])?;
    service::release(&state, &user, ApparatusId::new(&b.apparatus_id)?).await?;
    Ok(Json(json!({ "released": b.apparatus_id })))
}

async fn challenge(State(state): State<AppState>, Json(b): Json<IdIn>) -> ApiResult {
    let c = service::challenge(&state, ApparatusId::new(&b.apparatus_id)?).await?;
    Ok(Json(
        json!({ "challenge": hex::encode(c.0), "expires_in_ms": service::CHALLENGE_MILLIS }),
    ))
}

#[derive(Deserialize)]
struct VerifyIn {
    apparatus_id: String,
    challenge: String,
    response: String,
}

async fn verify(State(state): State<AppState>, Json(b): Json<VerifyIn>) -> ApiResult {
    let ok = service::verify(
        &state,
        ApparatusId::new(&b.apparatus_id)?,
        Challenge(hex32("challenge", &b.challenge)?),
        AuthResponse(hex32("response", &b.response)?),
    )
    .await?;
    Ok(Json(json!({ "authenticated": ok })))
}
