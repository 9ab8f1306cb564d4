//! Users, passwords, sessions and roles.
//!
//! Passwords are stored as argon2id hashes. A session token is 32 random bytes given to the
//! client once; the database keeps only its SHA-256, so a copied database yields no session.

use crate::db;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use imprint_api::SessionToken;
use imprint_core::FactoryId;
use rand_core::Rng;
use sha2::{Digest, Sha256};

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

/// A password an admin gives: at least 10 characters, hashed with argon2id.
fn password_hash(password: &str) -> Result<String, AppError> {
    if password.chars().count() < 10 {
        return Err(AppError::BadRequest(
            "password too short: at least 10 characters".into(),
        ));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::bug(format!("password hashing failed: {e}")))
}

/// A role and its factory, as they must go together: a technician works for one factory that
/// exists, the other roles for none.
async fn check_binding(conn: &mut Conn, role: Role, factory: Option<&str>) -> Result<(), AppError> {
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
        let exists = db::query("SELECT 1 FROM factories WHERE factory_id = $1")
            .bind(f)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(AppError::NotFound(format!("no factory '{f}'")));
        }
    }
    Ok(())
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
    let hash = password_hash(password)?;
    check_binding(conn, role, factory).await?;
    let taken = db::query("SELECT 1 FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(AppError::Conflict(format!(
            "user '{username}' already exists"
        )));
    }
    db::query(
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
        .check(&mut state.store.read().await?, tag, addr, now_millis())
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
    let row = db::query(
        "SELECT password_hash, role, factory_id, disabled_ms FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(&mut state.store.read().await?)
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
    // The right password of a disabled user: said so (the password proved who asks), audited.
    if row.try_get::<Option<i64>, _>("disabled_ms")?.is_some() {
        state
            .store
            .write(&username, |tx, username| {
                Box::pin(audit::append(
                    tx,
                    username,
                    "login.disabled",
                    serde_json::json!({}),
                ))
            })
            .await?;
        return Err(AppError::Unauthorized(
            "this account is disabled: ask an admin to enable it".into(),
        ));
    }
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
        .write(&(&hash, &user, &stored), |tx, (hash, user, stored)| {
            Box::pin(async move {
                // Only while the user is as the password was checked against: a new password
                // or a disable that came in between wins, and no session outlives it.
                let opened = db::query(
                    "INSERT INTO sessions (token_hash, username, expires_at) SELECT $1, $2, $3 \
                     WHERE EXISTS (SELECT 1 FROM users WHERE username = $4 AND password_hash = $5 AND disabled_ms IS NULL)",
                )
                .bind(hash.as_slice())
                .bind(user.username.as_str())
                .bind(now_millis() + SESSION_MILLIS)
                .bind(user.username.as_str())
                .bind(stored.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if opened == 0 {
                    return Err(AppError::Unauthorized(
                        "the account changed while signing in (new password, or disabled): sign in again".into(),
                    ));
                }
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
    db::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(&mut state.store.read().await?)
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
    let row = db::query(
        "SELECT u.username, u.role, u.factory_id FROM sessions s JOIN users u ON u.username = s.username \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_ms IS NULL",
    )
    .bind(token_hash(token))
    .bind(now_millis())
    .fetch_optional(&mut state.store.read().await?)
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

/// A user as an admin sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// A technician's factory.
    pub factory: Option<String>,
    /// Whether disabled.
    pub disabled: bool,
    /// Sessions open now.
    pub sessions: u64,
}

const USER_STATE: &str = "SELECT u.username, u.role, u.factory_id, u.disabled_ms, \
     (SELECT COUNT(*) FROM sessions s WHERE s.username = u.username AND s.expires_at > $1) AS sessions \
     FROM users u";

fn user_state(r: &db::Row) -> Result<UserState, AppError> {
    Ok(UserState {
        username: r.try_get("username")?,
        role: stored_role(&r.try_get::<String, _>("role")?)?,
        factory: r.try_get("factory_id")?,
        disabled: r.try_get::<Option<i64>, _>("disabled_ms")?.is_some(),
        sessions: u64::try_from(r.try_get::<i64, _>("sessions")?)
            .map_err(|_| AppError::bug("a negative count of sessions"))?,
    })
}

/// Every user, by name.
pub async fn list_users(conn: &mut Conn) -> Result<Vec<UserState>, AppError> {
    db::query(format!("{USER_STATE} ORDER BY u.username"))
        .bind(now_millis())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(user_state)
        .collect()
}

/// " FOR UPDATE" on PostgreSQL; nothing on SQLite, whose write transaction holds the whole
/// database already.
fn for_update(conn: &Conn) -> &'static str {
    if crate::store::backend_of(conn) == crate::store::Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    }
}

/// One user (locked for the change that follows); `not_found` if there is none.
async fn user_for_change(conn: &mut Conn, username: &str) -> Result<UserState, AppError> {
    check_username(username)?;
    let lock = for_update(conn);
    db::query(format!(
        "SELECT username FROM users WHERE username = $1{lock}"
    ))
    .bind(username)
    .fetch_optional(&mut *conn)
    .await?;
    let row = db::query(format!("{USER_STATE} WHERE u.username = $2"))
        .bind(now_millis())
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no user '{username}'")))?;
    user_state(&row)
}

/// The enabled admins, locked in name order before any other user row (PostgreSQL), so that
/// two admins changing each other at once take turns instead of deadlocking, and the second
/// sees the first's change.
async fn lock_admins(conn: &mut Conn) -> Result<Vec<String>, AppError> {
    let lock = for_update(conn);
    db::query(format!(
        "SELECT username FROM users WHERE role = 'admin' AND disabled_ms IS NULL ORDER BY username{lock}"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>("username"))
    .collect()
}

/// Refuses a change that would leave no enabled admin: nobody could then manage the server
/// from the API or the console (only `imprint add-user` on the server would). `admins` are
/// the enabled admins as [`lock_admins`] locked them.
fn keep_an_admin(admins: &[String], leaving: &UserState) -> Result<(), AppError> {
    if leaving.role != Role::Admin || leaving.disabled {
        return Ok(());
    }
    let others = admins.iter().filter(|a| **a != leaving.username).count();
    if others == 0 {
        return Err(AppError::Conflict(format!(
            "'{}' is the last enabled admin: add or enable another admin first",
            leaving.username
        )));
    }
    Ok(())
}

async fn end_sessions(conn: &mut Conn, username: &str) -> Result<(), AppError> {
    db::query("DELETE FROM sessions WHERE username = $1")
        .bind(username)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Disables a user (their sessions end; they cannot sign in) or enables them again. Audited,
/// also when nothing changes.
pub async fn set_disabled(
    conn: &mut Conn,
    actor: &str,
    username: &str,
    disabled: bool,
) -> Result<UserState, AppError> {
    let admins = lock_admins(conn).await?;
    let user = user_for_change(conn, username).await?;
    if disabled {
        keep_an_admin(&admins, &user)?;
        db::query("UPDATE users SET disabled_ms = COALESCE(disabled_ms, $1) WHERE username = $2")
            .bind(now_millis())
            .bind(username)
            .execute(&mut *conn)
            .await?;
        end_sessions(conn, username).await?;
    } else {
        db::query("UPDATE users SET disabled_ms = NULL WHERE username = $1")
            .bind(username)
            .execute(&mut *conn)
            .await?;
    }
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    audit::append(
        conn,
        actor,
        action,
        serde_json::json!({ "username": username }),
    )
    .await?;
    user_for_change(conn, username).await
}

/// Gives a user a new password; their sessions end. The audit entry names the user, never the
/// password.
pub async fn set_password(
    conn: &mut Conn,
    actor: &str,
    username: &str,
    password: &str,
) -> Result<UserState, AppError> {
    let hash = password_hash(password)?;
    user_for_change(conn, username).await?;
    db::query("UPDATE users SET password_hash = $1 WHERE username = $2")
        .bind(hash)
        .bind(username)
        .execute(&mut *conn)
        .await?;
    end_sessions(conn, username).await?;
    audit::append(
        conn,
        actor,
        "user.password",
        serde_json::json!({ "username": username }),
    )
    .await?;
    user_for_change(conn, username).await
}

/// Changes a user's role and factory; their sessions end, so a station signed in for the old
/// factory signs in again for the new one.
pub async fn set_role(
    conn: &mut Conn,
    actor: &str,
    username: &str,
    role: Role,
    factory: Option<&str>,
) -> Result<UserState, AppError> {
    let admins = lock_admins(conn).await?;
    let user = user_for_change(conn, username).await?;
    check_binding(conn, role, factory).await?;
    if role != Role::Admin {
        keep_an_admin(&admins, &user)?;
    }
    db::query("UPDATE users SET role = $1, factory_id = $2 WHERE username = $3")
        .bind(role.as_str())
        .bind(factory)
        .bind(username)
        .execute(&mut *conn)
        .await?;
    end_sessions(conn, username).await?;
    audit::append(
        conn,
        actor,
        "user.role",
        serde_json::json!({ "username": username, "role": role.as_str(), "factory": factory }),
    )
    .await?;
    user_for_change(conn, username).await
}
