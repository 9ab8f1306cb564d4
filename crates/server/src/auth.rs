//! Users, passwords, sessions and roles.
//!
//! Passwords are stored as argon2id hashes. A session token is 32 random bytes given to the
//! client once; the database keeps only its SHA-256, so a copied database yields no session.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use imprint_api::SessionToken;
use imprint_core::FactoryId;
use rand_core::Rng;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::error::AppError;
use crate::store::Conn;
use crate::{AppState, audit, now_millis};

/// How long a session lasts: one shift.
pub const SESSION_MILLIS: i64 = 12 * 60 * 60 * 1000;

pub use imprint_api::Role;

fn parse_role(s: &str) -> Result<Role, AppError> {
    Role::parse(s).ok_or_else(|| {
        AppError::BadRequest(format!(
            "unknown role '{s}': use admin, technician or auditor"
        ))
    })
}

fn stored_role(s: &str) -> Result<Role, AppError> {
    Role::parse(s).ok_or_else(|| AppError::bug(format!("a stored role is not valid: '{s}'")))
}

/// The signed-in caller.
#[derive(Debug, Clone)]
pub struct User {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// The technician's factory.
    pub factory: Option<String>,
}

impl User {
    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AppError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "a {} may not do this",
                self.role.as_str()
            )))
        }
    }

    /// The technician's factory (only technicians have one).
    pub fn factory(&self) -> Result<FactoryId, AppError> {
        self.require(&[Role::Technician])?;
        let f = self
            .factory
            .as_deref()
            .ok_or_else(|| AppError::Forbidden("this technician is bound to no factory".into()))?;
        Ok(FactoryId::new(f)?)
    }
}

fn check_username(name: &str) -> Result<(), AppError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "user name: 1 to 64 characters of A-Z a-z 0-9 . _ - @".into(),
        ))
    }
}

/// Creates a user. Technicians must name an existing factory; others must not.
pub async fn create_user(
    conn: &mut Conn,
    actor: &str,
    username: &str,
    password: &str,
    role: &str,
    factory: Option<&str>,
) -> Result<(), AppError> {
    check_username(username)?;
    let role = parse_role(role)?;
    if password.chars().count() < 10 {
        return Err(AppError::BadRequest(
            "password too short: at least 10 characters".into(),
        ));
    }
    match (role, factory) {
        (Role::Technician, None) => {
            return Err(AppError::BadRequest(
                "a technician must be bound to a factory".into(),
            ));
        }
        (Role::Admin | Role::Auditor, Some(_)) => {
            return Err(AppError::BadRequest(
                "only technicians are bound to a factory".into(),
            ));
        }
        _ => {}
    }
    if let Some(f) = factory {
        let exists = sqlx::query("SELECT 1 FROM factories WHERE factory_id = $1")
            .bind(f)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(AppError::NotFound(format!("no factory '{f}'")));
        }
    }
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AppError::bug(format!("password hashing failed: {e}")))?
        .to_string();
    let taken = sqlx::query("SELECT 1 FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(AppError::Conflict(format!(
            "user '{username}' already exists"
        )));
    }
    sqlx::query(
        "INSERT INTO users (username, password_hash, role, factory_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(factory)
    .execute(&mut *conn)
    .await?;
    audit::append(
        conn,
        actor,
        "user.create",
        serde_json::json!({ "username": username, "role": role.as_str(), "factory": factory }),
    )
    .await
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Checks a password and opens a session. Wrong user and wrong password give the same answer
/// in about the same time. Failed attempts are braked per user name and per client address
/// ([`crate::throttle`]) and audited; a name that is no user is written to the audit log only
/// as a keyed tag, because a technician who types the password into the name field would
/// otherwise put it into a log that can never be edited.
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
    addr: Option<std::net::IpAddr>,
) -> Result<(SessionToken, User), AppError> {
    let tag = state.custody.name_tag(username);
    if let Err(retry_after_secs) = state
        .throttle
        .check(state.store.pool(), tag, addr, now_millis())
        .await?
    {
        let detail =
            serde_json::json!({ "name_tag": hex::encode(tag), "retry_after_s": retry_after_secs });
        state
            .store
            .write(&detail, |tx, detail| {
                Box::pin(audit::append(
                    tx,
                    "unknown",
                    "login.throttled",
                    detail.clone(),
                ))
            })
            .await?;
        crate::metrics::Metrics::add(&state.metrics.login_throttled, 1);
        return Err(AppError::Throttled { retry_after_secs });
    }
    let row = sqlx::query("SELECT password_hash, role, factory_id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(state.store.pool())
        .await?;
    // A hash to check against when the user does not exist, so timing does not tell.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0nIOHOHhGhXqTnyrDmkKO9o2JW7WFzCBJUBy8tYlgNE";
    let stored: String = match &row {
        Some(r) => r.try_get("password_hash")?,
        None => DUMMY.to_string(),
    };
    let verified = Argon2::default()
        .verify_password(password.as_bytes(), stored.as_str())
        .is_ok();
    let (Some(row), true) = (row.as_ref(), verified) else {
        crate::metrics::Metrics::add(&state.metrics.login_fail, 1);
        let (actor, detail) = match row {
            Some(_) => (username, serde_json::json!({})),
            None => (
                "unknown",
                serde_json::json!({ "name_tag": hex::encode(tag) }),
            ),
        };
        let throttle = state.throttle;
        state
            .store
            .write(&(actor, detail), |tx, (actor, detail)| {
                Box::pin(async move {
                    throttle.failed(tx, tag, addr, now_millis()).await?;
                    audit::append(tx, actor, "login.fail", detail.clone()).await
                })
            })
            .await?;
        return Err(AppError::Unauthorized("wrong user name or password".into()));
    };
    let user = User {
        username: username.to_string(),
        role: stored_role(&row.try_get::<String, _>("role")?)?,
        factory: row.try_get("factory_id")?,
    };
    let mut raw = [0u8; 32];
    crate::rng().fill_bytes(&mut raw);
    let token = SessionToken(raw);
    let hash = token_hash(&hex::encode(raw));
    state
        .store
        .write(&(&hash, &user), |tx, (hash, user)| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, username, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(hash.as_slice())
                .bind(user.username.as_str())
                .bind(now_millis() + SESSION_MILLIS)
                .execute(&mut *tx)
                .await?;
                audit::append(
                    tx,
                    &user.username,
                    "login",
                    serde_json::json!({ "role": user.role.as_str() }),
                )
                .await
            })
        })
        .await?;
    Ok((token, user))
}

/// Ends the session of the request's bearer token. A write like any other: under the write
/// lock, in a transaction.
pub async fn logout(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let token = bearer(headers)
        .ok_or_else(|| AppError::Unauthorized("sign in first (no session token)".into()))?;
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(state.store.pool())
        .await?;
    Ok(())
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The user of a request's session (the route guard calls this once per request).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<User, AppError> {
    let token = bearer(headers)
        .ok_or_else(|| AppError::Unauthorized("sign in first (no session token)".into()))?;
    let row = sqlx::query(
        "SELECT u.username, u.role, u.factory_id FROM sessions s JOIN users u ON u.username = s.username \
         WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(now_millis())
    .fetch_optional(state.store.pool())
    .await?
    .ok_or_else(|| {
        AppError::Unauthorized("the session expired or is unknown; sign in again".into())
    })?;
    Ok(User {
        username: row.try_get("username")?,
        role: stored_role(&row.try_get::<String, _>("role")?)?,
        factory: row.try_get("factory_id")?,
    })
}

/// A handler's [`User`] is the one the route's guard authenticated and checked
/// (`api::guard`); a route without a guard has none, which is a bug of the router.
impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, AppError> {
        parts.extensions.get::<User>().cloned().ok_or_else(|| {
            AppError::bug("a handler takes a User but its route has no session guard")
        })
    }
}
