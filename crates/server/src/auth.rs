//! Users, passwords, sessions and roles.
//!
//! Passwords are stored as argon2id hashes. A session token is 32 random bytes given to the
//! client once; the database keeps only its SHA-256, so a copied database yields no session.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use imprint_core::FactoryId;
use rand_core::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection};

use crate::error::AppError;
use crate::{AppState, audit, now_millis};

/// How long a session lasts: one shift.
pub const SESSION_MILLIS: i64 = 12 * 60 * 60 * 1000;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    fn parse(s: &str) -> Result<Role, AppError> {
        match s {
            "admin" => Ok(Role::Admin),
            "technician" => Ok(Role::Technician),
            "auditor" => Ok(Role::Auditor),
            other => Err(AppError::BadRequest(format!(
                "unknown role '{other}': use admin, technician or auditor"
            ))),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Auditor => "auditor",
        }
    }
}

/// The signed-in caller.
#[derive(Debug, Clone, Serialize)]
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
    conn: &mut SqliteConnection,
    actor: &str,
    username: &str,
    password: &str,
    role: &str,
    factory: Option<&str>,
) -> Result<(), AppError> {
    check_username(username)?;
    let role = Role::parse(role)?;
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
        let exists = sqlx::query("SELECT 1 FROM factories WHERE factory_id = ?")
            .bind(f)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(AppError::NotFound(format!("no factory '{f}'")));
        }
    }
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))?
        .to_string();
    let taken = sqlx::query("SELECT 1 FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(AppError::Conflict(format!(
            "user '{username}' already exists"
        )));
    }
    sqlx::query(
        "INSERT INTO users (username, password_hash, role, factory_id) VALUES (?, ?, ?, ?)",
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
/// in about the same time.
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<(String, User), AppError> {
    let row = sqlx::query("SELECT password_hash, role, factory_id FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(&state.pool)
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
    let _guard = state.write_lock.lock().await;
    let mut tx = state.pool.begin().await?;
    let (Some(row), true) = (row, verified) else {
        audit::append(&mut tx, username, "login.fail", serde_json::json!({})).await?;
        tx.commit().await?;
        return Err(AppError::Unauthorized("wrong user name or password".into()));
    };
    let user = User {
        username: username.to_string(),
        role: Role::parse(&row.try_get::<String, _>("role")?)?,
        factory: row.try_get("factory_id")?,
    };
    let mut raw = [0u8; 32];
    crate::rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    sqlx::query("INSERT INTO sessions (token_hash, username, expires_at) VALUES (?, ?, ?)")
        .bind(token_hash(&token))
        .bind(username)
        .bind(now_millis() + SESSION_MILLIS)
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        username,
        "login",
        serde_json::json!({ "role": user.role.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok((token, user))
}

/// Ends a session.
pub async fn logout(state: &AppState, token: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash(token))
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// The bearer token of a request.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts)
            .ok_or_else(|| AppError::Unauthorized("sign in first (no session token)".into()))?;
        let row = sqlx::query(
            "SELECT u.username, u.role, u.factory_id FROM sessions s JOIN users u ON u.username = s.username \
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash(token))
        .bind(now_millis())
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| AppError::Unauthorized("the session expired or is unknown; sign in again".into()))?;
        Ok(User {
            username: row.try_get("username")?,
            role: Role::parse(&row.try_get::<String, _>("role")?)?,
            factory: row.try_get("factory_id")?,
        })
    }
}
