//! The audit log detects edited, deleted, reordered and cut-off entries.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::Env;

async fn verify(env: &Env, checkpoint: Option<&str>) -> Value {
    let path = match checkpoint {
        Some(c) => format!("/api/v1/audit/verify?checkpoint={c}"),
        None => "/api/v1/audit/verify".into(),
    };
    let (s, v) = env
        .call(Method::GET, &path, Some(&env.auditor), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    v
}

#[tokio::test]
async fn an_intact_log_verifies_and_every_action_is_there() {
    let env = Env::new(3, 10).await;
    env.issue(&env.tech, 1).await;
    let v = verify(&env, None).await;
    assert_eq!(v["ok"], true, "{v}");
    let actions = env.audit_actions().await;
    for a in [
        "key.add",
        "product.map",
        "authinfo.generate",
        "factory.add",
        "quota.set",
        "user.create",
        "login",
        "issue",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    // No secret in the log.
    let (_, log) = env
        .call(
            Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    assert!(!log.to_string().contains("password-123"));
}

#[tokio::test]
async fn edits_deletions_reorders_and_truncation_are_detected() {
    let env = Env::new(3, 10).await;
    env.issue(&env.tech, 2).await;
    let good = verify(&env, None).await;
    let n = good["entries"].as_i64().unwrap();
    let checkpoint = format!("{n}:{}", good["head"].as_str().unwrap());
    assert_eq!(verify(&env, Some(&checkpoint)).await["ok"], true);
    let pool = env.state.store.pool();

    // Edit one entry's detail.
    sqlx::query("UPDATE audit_log SET detail = '{\"count\":999}' WHERE seq = 3")
        .execute(pool)
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert_eq!(v["ok"], false);
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("entry 3 was altered"),
        "{v}"
    );
    sqlx::query("DELETE FROM audit_log")
        .execute(pool)
        .await
        .unwrap();

    // Rebuild a clean log, then delete a middle entry.
    let env = Env::new(3, 10).await;
    let pool = env.state.store.pool();
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(pool)
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("entry 4 is missing"),
        "{v}"
    );

    // Swap two entries' positions.
    let env = Env::new(3, 10).await;
    let pool = env.state.store.pool();
    sqlx::query("UPDATE audit_log SET seq = -1 WHERE seq = 5")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET seq = 5 WHERE seq = 6")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET seq = 6 WHERE seq = -1")
        .execute(pool)
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("removed or reordered"),
        "{v}"
    );

    // Cut the tail: the chain alone still holds, the saved checkpoint catches it.
    let env = Env::new(3, 10).await;
    let good = verify(&env, None).await;
    let n = good["entries"].as_i64().unwrap();
    let checkpoint = format!("{n}:{}", good["head"].as_str().unwrap());
    sqlx::query("DELETE FROM audit_log WHERE seq >= $1")
        .bind(n - 1)
        .execute(env.state.store.pool())
        .await
        .unwrap();
    assert_eq!(verify(&env, None).await["ok"], true);
    let v = verify(&env, Some(&checkpoint)).await;
    assert!(v["problem"].as_str().unwrap().contains("cut off"), "{v}");
}
