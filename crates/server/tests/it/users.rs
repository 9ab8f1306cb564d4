//! Users managed through the API (the console's Users page): listed without secrets, disabled
//! and enabled, given a new password, moved to another role or factory; each change ends the
//! user's sessions, and the last enabled admin stays.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Env;

async fn put(env: &Env, path: &str, body: Value) -> (StatusCode, Value) {
    env.call(
        Method::PUT,
        &format!("/api/v1/users/{path}"),
        Some(&env.admin),
        body,
    )
    .await
}

async fn me(env: &Env, token: &str) -> StatusCode {
    env.call(Method::GET, "/api/v1/me", Some(token), Value::Null)
        .await
        .0
}

async fn login_as(env: &Env, user: &str, password: &str) -> (StatusCode, Value) {
    env.call(
        Method::POST,
        "/api/v1/login",
        None,
        json!({ "username": user, "password": password }),
    )
    .await
}

#[tokio::test]
async fn users_are_listed_with_their_sessions_and_never_a_password() {
    let env = Env::new(1, 10).await;
    let (s, v) = env
        .call(Method::GET, "/api/v1/users", Some(&env.admin), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let users = v["users"].as_array().unwrap();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "auditor", "tech-a", "tech-b"]);
    assert_eq!(
        users[2],
        json!({ "username": "tech-a", "role": "technician", "factory_id": "fa", "disabled": false, "sessions": 1 })
    );
    let text = v.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{text}"
    );
    let (s, _) = env
        .call(
            Method::GET,
            "/api/v1/users",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_disabled_user_loses_their_sessions_and_cannot_sign_in_until_enabled() {
    let env = Env::new(1, 10).await;
    assert_eq!(me(&env, &env.tech).await, StatusCode::OK);
    let (s, v) = put(&env, "tech-a/disabled", json!({ "disabled": true })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["disabled"].as_bool(), v["sessions"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(
        me(&env, &env.tech).await,
        StatusCode::UNAUTHORIZED,
        "the session ended"
    );
    let (s, v) = login_as(&env, "tech-a", "password-123").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["message"].as_str().unwrap().contains("disabled"), "{v}");
    // A wrong password says nothing about the account.
    let (_, v) = login_as(&env, "tech-a", "not-the-password").await;
    assert!(!v["message"].as_str().unwrap().contains("disabled"), "{v}");
    let (s, v) = put(&env, "tech-a/disabled", json!({ "disabled": false })).await;
    assert_eq!((s, v["disabled"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(
        login_as(&env, "tech-a", "password-123").await.0,
        StatusCode::OK
    );
    let actions = env.audit_actions().await;
    for a in ["user.disable", "login.disabled", "user.enable"] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}

#[tokio::test]
async fn a_new_password_ends_the_sessions_and_the_old_one_stops_working() {
    let env = Env::new(1, 10).await;
    let (s, v) = put(&env, "tech-a/password", json!({ "password": "short" })).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    assert_eq!(
        me(&env, &env.tech).await,
        StatusCode::OK,
        "a refused change changes nothing"
    );
    let (s, v) = put(
        &env,
        "tech-a/password",
        json!({ "password": "a-brand-new-password" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(me(&env, &env.tech).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_as(&env, "tech-a", "password-123").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_as(&env, "tech-a", "a-brand-new-password").await.0,
        StatusCode::OK
    );
    let (_, log) = env
        .call(
            Method::GET,
            "/api/v1/audit?action=user.password",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    let text = log.to_string();
    assert!(
        text.contains("tech-a") && !text.contains("a-brand-new-password"),
        "{text}"
    );
}

#[tokio::test]
async fn a_role_change_keeps_role_and_factory_together() {
    let env = Env::new(1, 10).await;
    for (body, status) in [
        (json!({ "role": "technician" }), StatusCode::BAD_REQUEST),
        (
            json!({ "role": "auditor", "factory_id": "fa" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "role": "technician", "factory_id": "nowhere" }),
            StatusCode::NOT_FOUND,
        ),
        (json!({ "role": "boss" }), StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = put(&env, "tech-a/role", body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
    }
    assert_eq!(me(&env, &env.tech).await, StatusCode::OK);
    // Moved to the other factory: the session ends; signed in again, they work for fb.
    let (s, v) = put(
        &env,
        "tech-a/role",
        json!({ "role": "technician", "factory_id": "fb" }),
    )
    .await;
    assert_eq!(
        (s, v["factory_id"].as_str()),
        (StatusCode::OK, Some("fb")),
        "{v}"
    );
    assert_eq!(me(&env, &env.tech).await, StatusCode::UNAUTHORIZED);
    let (_, v) = login_as(&env, "tech-a", "password-123").await;
    assert_eq!(v["user"]["factory"], "fb", "{v}");
    let (s, v) = put(&env, "tech-a/role", json!({ "role": "auditor" })).await;
    assert_eq!(
        (s, v["role"].as_str(), v["factory_id"].as_str()),
        (StatusCode::OK, Some("auditor"), None)
    );
    let (s, _) = put(&env, "nobody/role", json!({ "role": "auditor" })).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = put(&env, "bad%20name/disabled", json!({ "disabled": true })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_disabled_or_demoted() {
    let env = Env::new(1, 10).await;
    let (s, v) = put(&env, "admin/disabled", json!({ "disabled": true })).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("last enabled admin"),
        "{v}"
    );
    let (s, _) = put(&env, "admin/role", json!({ "role": "auditor" })).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(me(&env, &env.admin).await, StatusCode::OK);
    // With a second admin, the first may go.
    let (s, v) = put(&env, "auditor/role", json!({ "role": "admin" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = put(&env, "admin/disabled", json!({ "disabled": true })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(me(&env, &env.admin).await, StatusCode::UNAUTHORIZED);
}

/// Two admins disabling each other at the same moment: one wins, the other is refused, and an
/// enabled admin is left (on PostgreSQL the enabled admins are locked first, in name order).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_disabling_each_other_at_once_leave_one() {
    let env = std::sync::Arc::new(Env::new(1, 10).await);
    let (s, _) = put(&env, "auditor/role", json!({ "role": "admin" })).await;
    assert_eq!(s, StatusCode::OK);
    let second = env.login("auditor").await;
    let (a, b) = tokio::join!(
        env.call(
            Method::PUT,
            "/api/v1/users/auditor/disabled",
            Some(&env.admin),
            json!({ "disabled": true })
        ),
        env.call(
            Method::PUT,
            "/api/v1/users/admin/disabled",
            Some(&second),
            json!({ "disabled": true })
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    // The loser is refused as the last admin, or finds its own session ended by the winner.
    assert_eq!(statuses[0], StatusCode::OK, "{a:?} {b:?}");
    assert!(
        matches!(statuses[1], StatusCode::CONFLICT | StatusCode::UNAUTHORIZED),
        "{a:?} {b:?}"
    );
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/audit?action=user.disable",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    let survivor = if a.0 == StatusCode::OK {
        &env.admin
    } else {
        &second
    };
    let (s, v2) = env
        .call(Method::GET, "/api/v1/users", Some(survivor), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v2} {v}");
    let enabled_admins = v2["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "admin" && u["disabled"] == false)
        .count();
    assert_eq!(enabled_admins, 1, "{v2}");
}
