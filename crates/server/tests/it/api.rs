//! Every endpoint, the role matrix, and bad input of every class.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use imprint_api::{Access, Op, Role};

use crate::{Env, PRODUCT};

#[tokio::test]
async fn health_and_sign_in() {
    let env = Env::new(5, 10).await;
    let (s, v) = env.call(Method::GET, "/healthz", None, Value::Null).await;
    assert_eq!((s, v["text"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = env
        .call(Method::GET, "/api/v1/me", Some(&env.tech), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["user"]["factory"], "fa");
    assert_eq!(v["user"]["role"], "technician");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same_and_are_audited() {
    let env = Env::new(0, 10).await;
    let bad = |u: &'static str, p: &'static str| json!({ "username": u, "password": p });
    let (s1, v1) = env
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            bad("admin", "wrong-password"),
        )
        .await;
    let (s2, v2) = env
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            bad("nobody", "wrong-password"),
        )
        .await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(v1, v2);
    assert_eq!(
        env.audit_actions()
            .await
            .iter()
            .filter(|a| *a == "login.fail")
            .count(),
        2
    );
}

#[tokio::test]
async fn no_token_bad_token_and_logout() {
    let env = Env::new(0, 10).await;
    let (s, v) = env
        .call(Method::GET, "/api/v1/keys", None, Value::Null)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["message"].as_str().unwrap().contains("sign in"));
    let (s, _) = env
        .call(Method::GET, "/api/v1/keys", Some("deadbeef"), Value::Null)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let token = env.login("admin").await;
    let (s, _) = env
        .call(Method::POST, "/api/v1/logout", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .call(Method::GET, "/api/v1/keys", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// A concrete request for each operation: path (parameters filled in) and body. An exhaustive
/// match, so a new operation cannot be left out of the role matrix.
fn sample(op: Op) -> (String, Value) {
    let path = |p: &str| format!("/api/v1{p}");
    match op {
        Op::Login => (
            path("/login"),
            json!({"username": "admin", "password": "password-123"}),
        ),
        Op::Logout => (path("/logout"), Value::Null),
        Op::Me => (path("/me"), Value::Null),
        Op::ListKeys => (path("/keys"), Value::Null),
        Op::AddKey => (path("/keys"), json!({"key_id": 50})),
        Op::ListProducts => (path("/products"), Value::Null),
        Op::MapProduct => (path("/products/NEW-P"), json!({"key_id": 2})),
        Op::SetLockUnits => (
            path(&format!("/products/{PRODUCT}/lock-units")),
            json!({"lock_units": true}),
        ),
        Op::Generate => (
            path("/auth-info/generate"),
            json!({"key_id": 2, "count": 1}),
        ),
        Op::Import => (path("/auth-info/import"), Value::Null),
        Op::AddFactory => (path("/factories"), json!({"factory_id": "fx", "name": "X"})),
        Op::SetQuota => (path("/factories/fa/quotas/CAM-X100"), json!({"limit": 100})),
        Op::AddUser => (
            path("/users"),
            json!({"username": "u1", "password": "password-123", "role": "auditor"}),
        ),
        Op::ListUsers => (path("/users"), Value::Null),
        Op::SetUserDisabled => (path("/users/tech-b/disabled"), json!({"disabled": false})),
        Op::SetPassword => (
            path("/users/tech-b/password"),
            json!({"password": "password-123"}),
        ),
        Op::SetRole => (
            path("/users/tech-b/role"),
            json!({"role": "technician", "factory_id": "fb"}),
        ),
        Op::ListFactories => (path("/factories"), Value::Null),
        Op::Activity => (path("/activity"), Value::Null),
        Op::Revoke => (path("/devices/IMP-0000000001/revoke"), Value::Null),
        Op::ExportInstalled => (path("/installed.csv"), Value::Null),
        Op::ReadAudit => (path("/audit"), Value::Null),
        Op::VerifyAudit => (path("/audit/verify"), Value::Null),
        Op::AuditCheckpoint => (path("/audit/checkpoint"), Value::Null),
        Op::AuditInclusion => (path("/audit/proof/inclusion?seq=1&size=1"), Value::Null),
        Op::AuditConsistency => (path("/audit/proof/consistency?old=1&new=1"), Value::Null),
        Op::AuditInstalls => (
            path("/audit/installs"),
            json!({"apparatus_ids": ["IMP-0000000001"]}),
        ),
        Op::Issue => (path("/issue"), json!({"product_code": PRODUCT, "count": 1})),
        Op::Lease => (
            path("/leases"),
            json!({"product_code": PRODUCT, "count": 1, "hours": 1}),
        ),
        Op::Records => (path("/records"), Value::Null),
        Op::Report => (
            path("/report"),
            json!({"apparatus_id": "IMP-0000000001", "product_serial": "S", "receipt": "00".repeat(32), "station": "s"}),
        ),
        Op::Locked => (
            path("/locked"),
            json!({"apparatus_id": "IMP-0000000001", "product_serial": "S", "station": "s"}),
        ),
        Op::Release => (path("/release"), json!({"apparatus_id": "IMP-0000000001"})),
        Op::LeaseKey => (path("/lease-key"), Value::Null),
        Op::Challenge => (
            path("/auth/challenge"),
            json!({"apparatus_id": "IMP-0000000001"}),
        ),
        Op::Verify => (
            path("/auth/verify"),
            json!({"apparatus_id": "IMP-0000000001", "challenge": "00".repeat(32), "response": "00".repeat(32)}),
        ),
        Op::OpenApi => (path("/openapi.json"), Value::Null),
    }
}

/// Every role against every operation of the contract: the roles the contract names get past
/// the guard (no 401/403), the others get 403, and without a session every guarded route
/// answers 401. The router enforces what the contract documents.
#[tokio::test]
async fn role_matrix() {
    let env = Env::new(20, 100).await;
    let roles = [
        (Role::Admin, env.admin.clone()),
        (Role::Technician, env.tech.clone()),
        (Role::Auditor, env.auditor.clone()),
    ];
    for op in Op::ALL {
        let route = op.route();
        let method = imprint_server::api::method(route.method);
        let (path, body) = sample(op);
        let (s, v) = env.call(method.clone(), &path, None, body.clone()).await;
        match route.access {
            Access::Public => assert!(
                s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                "{op:?} is public: {s} {v}"
            ),
            Access::Roles(_) => {
                assert_eq!(s, StatusCode::UNAUTHORIZED, "{op:?} without a session: {v}");
                assert_eq!(v["error"], "unauthorized", "{op:?}");
            }
        }
        for (role, token) in &roles {
            // A fresh session per try: logout would end the shared one.
            let token = if op == Op::Logout {
                env.login(match role {
                    Role::Admin => "admin",
                    Role::Technician => "tech-a",
                    Role::Auditor => "auditor",
                })
                .await
            } else {
                token.clone()
            };
            let (s, v) = env
                .call(method.clone(), &path, Some(&token), body.clone())
                .await;
            if route.access.allows(*role) {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{role:?} {op:?}: {s} {v}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{role:?} {op:?}: {v}");
                assert_eq!(v["error"], "forbidden");
            }
        }
    }
}

#[tokio::test]
async fn keys_and_products_refuse_bad_input() {
    let env = Env::new(0, 10).await;
    let a = Some(env.admin.as_str());
    let (s, v) = env
        .call(Method::POST, "/api/v1/keys", a, json!({"key_id": 0}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = env
        .call(Method::POST, "/api/v1/keys", a, json!({"key_id": 1}))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate_key_id"))
    );
    let (s, v) = env
        .call(Method::POST, "/api/v1/keys", a, json!({"key_id": "seven"}))
        .await;
    // A mistyped field is the one error body with `bad_request`, naming the field.
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("key_id"), "{v}");
    let (s, v) = env
        .call(
            Method::PUT,
            "/api/v1/products/CAM-X100",
            a,
            json!({"key_id": 9}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_key_id"))
    );
    let (s, v) = env
        .call(
            Method::PUT,
            "/api/v1/products/CAM-X100",
            a,
            json!({"key_id": 1}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("same_key"))
    );
    let (s, v) = env
        .call(
            Method::PUT,
            "/api/v1/products/BAD%20CODE",
            a,
            json!({"key_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("product code"));
    let (s, v) = env.call(Method::GET, "/api/v1/keys", a, Value::Null).await;
    assert_eq!((s, v["key_ids"].clone()), (StatusCode::OK, json!([1, 2])));
    assert!(!v.to_string().contains("key_sealed"));
}

#[tokio::test]
async fn generate_refuses_bad_counts_and_unknown_keys() {
    let env = Env::new(0, 10).await;
    let a = Some(env.admin.as_str());
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/auth-info/generate",
            a,
            json!({"key_id": 1, "count": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/auth-info/generate",
            a,
            json!({"key_id": 7, "count": 3}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_key_id"))
    );
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/auth-info/generate",
            a,
            json!({"key_id": 1, "count": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["first"].as_str(), v["last"].as_str()),
        (Some("IMP-0000000001"), Some("IMP-0000000003"))
    );
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/auth-info/generate",
            a,
            json!({"key_id": 1, "count": 2, "prefix": "X"}),
        )
        .await;
    assert_eq!(
        (s, v["first"].as_str()),
        (StatusCode::OK, Some("X0000000004"))
    );
}

#[tokio::test]
async fn csv_import_is_all_or_nothing_with_line_numbers() {
    let env = Env::new(0, 10).await;
    let a = Some(env.admin.as_str());
    let bad = "apparatus_id,pass_phrase,key_id\n\
               GOOD-1,SECRET-pass-0000000001,1\n\
               BAD ID,SECRET-pass-0000000002,1\n\
               GOOD-2,short,1\n\
               GOOD-3,SECRET-pass-0000000003,9\n\
               GOOD-1,SECRET-pass-0000000004,1\n\
               GOOD-4,SECRET-pass-0000000005\n\
               GOOD-5,SECRET-pass-0000000006,0\n";
    let (s, v) = env
        .call_text(Method::POST, "/api/v1/auth-info/import", a, bad)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let lines: Vec<u64> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7, 8]);
    assert!(
        !v.to_string().contains("SECRET-pass"),
        "errors must not echo pass phrases: {v}"
    );
    assert!(v.to_string().contains("also on line 2"));
    assert!(v.to_string().contains("no pre-write key with identifier 9"));
    // Nothing was imported: the good line can be imported alone now.
    let good = "GOOD-1,SECRET-pass-0000000001,1\nGOOD-2,\"quoted,comma\"\"pass-phrase\",1\n";
    let (s, v) = env
        .call_text(Method::POST, "/api/v1/auth-info/import", a, good)
        .await;
    assert_eq!(
        (s, v["imported"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{v}"
    );
    let (s, v) = env
        .call_text(Method::POST, "/api/v1/auth-info/import", a, good)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v.to_string().contains("already exists"));
    let (s, _) = env
        .call_text(Method::POST, "/api/v1/auth-info/import", a, "")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        env.audit_actions()
            .await
            .iter()
            .filter(|a| *a == "authinfo.import")
            .count(),
        1
    );
}

/// Everything the database holds, as bytes to search: the SQLite file itself (after a
/// checkpoint moves the WAL into it), or on PostgreSQL every table's rows as text with binary
/// columns decoded from their hex form.
pub async fn stored_bytes(env: &Env) -> Vec<u8> {
    use sqlx::Row;
    let pool = env.state.store.pool();
    if !crate::on_postgres() {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .unwrap();
        return std::fs::read(env.dir.join("imprint.db")).unwrap();
    }
    let mut out = Vec::new();
    let tables = sqlx::query(
        "SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for t in tables {
        let table: String = t.try_get("t").unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(string_agg(x::text, ' '), '') AS v FROM \"{table}\" x"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        let text: String = rows.try_get("v").unwrap();
        out.extend_from_slice(text.as_bytes());
        // bytea prints as \x0123...: decode each such run too.
        for run in text.split("\\x").skip(1) {
            let hex: String = run.chars().take_while(char::is_ascii_hexdigit).collect();
            out.extend(hex::decode(&hex[..hex.len() / 2 * 2]).unwrap());
        }
    }
    assert!(out.len() > 1000, "the tables hold the test's data");
    out
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_never_answered() {
    let env = Env::new(0, 10).await;
    let a = Some(env.admin.as_str());
    let (s, _) = env
        .call_text(
            Method::POST,
            "/api/v1/auth-info/import",
            a,
            "AT-REST-1,CLEARTEXT-SECRET-XYZ-123,1\n",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let key1 = imprint_device::sim::demo_key(imprint_core::KeyId::new(1).unwrap());
    let stored = stored_bytes(&env).await;
    assert!(
        !stored.windows(22).any(|w| w == b"CLEARTEXT-SECRET-XYZ-1"),
        "pass phrase in clear in the database"
    );
    assert!(
        !stored.windows(32).any(|w| w == key1.expose_secret()),
        "pre-write key in clear in the database"
    );
    // A different key-encryption key cannot open them: a clear error, not garbage.
    let other = imprint_server::custody::Custody::from(imprint_server::kek::Kek::generate().0);
    let row: (Vec<u8>,) =
        sqlx::query_as("SELECT pass_sealed FROM auth_info WHERE apparatus_id = 'AT-REST-1'")
            .fetch_one(env.state.store.pool())
            .await
            .unwrap();
    let err = other.open("702/AT-REST-1", &row.0).unwrap_err().to_string();
    assert!(
        err.contains("other keys than those it was sealed under"),
        "{err}"
    );
    // Moved to another row: refused too.
    assert!(env.state.custody.open("702/OTHER", &row.0).is_err());
}

#[tokio::test]
async fn factories_quotas_and_users_validate_their_input() {
    let env = Env::new(0, 10).await;
    let a = Some(env.admin.as_str());
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/factories",
            a,
            json!({"factory_id": "fa", "name": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = env
        .call(
            Method::PUT,
            "/api/v1/factories/nope/quotas/CAM-X100",
            a,
            json!({"limit": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = env
        .call(
            Method::PUT,
            "/api/v1/factories/fa/quotas/NOPE",
            a,
            json!({"limit": 5}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_product"))
    );
    for (body, why) in [
        (
            json!({"username": "t1", "password": "password-123", "role": "technician"}),
            "bound to a factory",
        ),
        (
            json!({"username": "t1", "password": "short", "role": "auditor"}),
            "too short",
        ),
        (
            json!({"username": "t 1", "password": "password-123", "role": "auditor"}),
            "user name",
        ),
        (
            json!({"username": "t1", "password": "password-123", "role": "root"}),
            "unknown variant `root`",
        ),
        (
            json!({"username": "t1", "password": "password-123", "role": "admin", "factory_id": "fa"}),
            "only technicians",
        ),
    ] {
        let (s, v) = env.call(Method::POST, "/api/v1/users", a, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
    }
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/users",
            a,
            json!({"username": "admin", "password": "password-123", "role": "auditor"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let env = Env::new(3, 10).await;
    env.issue(&env.tech, 2).await;
    env.report(&env.tech, "IMP-0000000001", "SN-1", &"00".repeat(32))
        .await;
    let (s, v) = env.call(Method::GET, "/metrics", None, Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("imprint_records_issued_total 2"), "{text}");
    assert!(text.contains("imprint_reports_refused_total 1"));
    assert!(text.contains("imprint_records_installed_total 0"));
    assert!(text.contains("# TYPE imprint_request_duration_seconds histogram"));
    let count: u64 = text
        .lines()
        .find(|l| l.starts_with("imprint_request_duration_seconds_count"))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 6, "every request is timed ({count})");
}

/// The served document is the committed `docs/openapi.json`, byte for byte: a change of the
/// contract that is not committed to the docs fails here. Every operation in it is served (not
/// 404/405) and carries a security requirement exactly when it needs a session.
#[tokio::test]
async fn openapi_document_is_the_committed_one_and_matches_the_router() {
    let env = Env::new(0, 10).await;
    let req = axum::http::Request::get("/api/v1/openapi.json")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(env.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let served = String::from_utf8(
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        served == committed,
        "docs/openapi.json is not the served document; regenerate it with\n  cargo run -p imprint-server -- openapi > docs/openapi.json"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(ops, Op::ALL.len());
    for op in Op::ALL {
        let route = op.route();
        let (path, _) = sample(op);
        let method = imprint_server::api::method(route.method);
        let (s, v) = env.call(method, &path, None, json!({})).await;
        assert!(
            s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
            "{op:?}: {s} {v}"
        );
        let o =
            &doc["paths"][format!("/api/v1{}", route.path)][route.method.as_str().to_lowercase()];
        assert_eq!(
            o["security"].is_array(),
            route.access != Access::Public,
            "{op:?}"
        );
    }
    let (s, v) = env
        .call(Method::GET, "/api/v1/no-such-route", None, Value::Null)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, v) = env
        .call(Method::DELETE, "/api/v1/issue", None, Value::Null)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let env = Env::new(0, 10).await;
    sqlx::query("UPDATE sessions SET expires_at = 0")
        .execute(env.state.store.pool())
        .await
        .unwrap();
    let (s, v) = env
        .call(Method::GET, "/api/v1/me", Some(&env.admin), Value::Null)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["message"].as_str().unwrap().contains("sign in again"));
}

#[tokio::test]
async fn audit_reads_page_by_page() {
    let env = Env::new(2, 10).await;
    let (_, all) = env
        .call(
            Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    let n = all["entries"].as_array().unwrap().len();
    assert!(n > 5);
    let (_, page) = env
        .call(
            Method::GET,
            "/api/v1/audit?from=3&limit=2",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    let seqs: Vec<i64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    let (s, _) = env
        .call(
            Method::GET,
            "/api/v1/audit/verify?checkpoint=nonsense",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_portal_is_served_on_the_same_origin_with_the_wasm_mime_type() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let env = Env::new(0, 10).await;
    let portal = env.dir.join("portal");
    std::fs::create_dir_all(&portal).unwrap();
    std::fs::write(
        portal.join("index.html"),
        "<!doctype html><title>Imprint</title>",
    )
    .unwrap();
    std::fs::write(portal.join("imprint_portal_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let app = imprint_server::app_with_portal(env.state.clone(), &portal);
    let get = |path: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let res = get("/imprint_portal_bg.wasm").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/wasm");
    let res = get("/").await;
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // A portal route on reload gets index.html; the API still answers as the API.
    let res = get("/station/3").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let res = get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .clone()
        .oneshot(Request::get("/api/v1/keys").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// What is shipped: the precompressed file the browser accepts (brotli before gzip), each
/// with `Vary: Accept-Encoding`; content-hashed names cached for a year, everything else
/// revalidated.
#[tokio::test]
async fn the_portal_ships_precompressed_files_and_caches_only_hashed_names_for_good() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let env = Env::new(0, 10).await;
    let portal = env.dir.join("portal");
    std::fs::create_dir_all(&portal).unwrap();
    let js = "imprint_portal-0123456789abcdef.js";
    for (name, body) in [
        ("index.html", "<!doctype html><title>Imprint</title>"),
        ("index.html.br", "BR-INDEX"),
        (js, "export default 1;"),
        (&format!("{js}.br") as &str, "BR-JS"),
        (&format!("{js}.gz") as &str, "GZ-JS"),
        ("style.css", "body{}"),
    ] {
        std::fs::write(portal.join(name), body).unwrap();
    }
    let app = imprint_server::app_with_portal(env.state.clone(), &portal);
    let get = |path: String, accept: &'static str| {
        let app = app.clone();
        async move {
            let mut req = Request::get(path);
            if !accept.is_empty() {
                req = req.header("accept-encoding", accept);
            }
            let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let h = res.headers().clone();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let header = |n: &str| {
                h.get(n)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            (
                header("content-encoding"),
                header("cache-control"),
                header("vary"),
                String::from_utf8(body.to_vec()).unwrap(),
            )
        }
    };
    let year = "public, max-age=31536000, immutable";
    let (enc, cache, vary, body) = get(format!("/{js}"), "gzip, deflate, br").await;
    assert_eq!(
        (enc.as_str(), cache.as_str(), body.as_str()),
        ("br", year, "BR-JS")
    );
    assert!(
        vary.to_ascii_lowercase().contains("accept-encoding"),
        "{vary}"
    );
    let (enc, _, _, body) = get(format!("/{js}"), "gzip").await;
    assert_eq!((enc.as_str(), body.as_str()), ("gzip", "GZ-JS"));
    let (enc, cache, _, body) = get(format!("/{js}"), "").await;
    assert_eq!(
        (enc.as_str(), cache.as_str(), body.as_str()),
        ("", year, "export default 1;")
    );
    // index.html names the hashed files: revalidated at every load, precompressed too.
    let (enc, cache, _, body) = get("/".into(), "br").await;
    assert_eq!(
        (enc.as_str(), cache.as_str(), body.as_str()),
        ("br", "no-cache", "BR-INDEX")
    );
    let (_, cache, _, _) = get("/style.css".into(), "br").await;
    assert_eq!(cache, "no-cache", "a name without its hash may change");
    // A hashed name that is not there (a file of an earlier build) is not found, and not
    // cached; it does not get index.html for a year.
    let app2 = app.clone();
    let res = app2
        .oneshot(
            Request::get("/imprint_portal-fedcba9876543210.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["cache-control"], "no-cache");
    // A portal route on reload: index.html, not cached for good.
    let (_, cache, _, body) = get("/station/3".into(), "").await;
    assert_eq!(
        (cache.as_str(), body.as_str()),
        ("no-cache", "<!doctype html><title>Imprint</title>")
    );
    for (path, hashed) in [
        ("/a-0123456789abcdef.js", true),
        ("/imprint_portal-0123456789abcdef_bg.wasm", true),
        ("/x/style-0123456789abcdef.css", true),
        ("/a-0123456789ABCDEF.js", false),
        ("/a-0123456789abcde.js", false),
        ("/-0123456789abcdef.js", false),
        ("/a-0123456789abcdef.html", false),
        ("/imprint_portal.js", false),
    ] {
        assert_eq!(imprint_server::is_content_hashed(path), hashed, "{path}");
    }
}

#[tokio::test]
async fn a_database_that_is_away_answers_unavailable_with_retry_after() {
    let env = Env::new(3, 10).await;
    env.state.store.close().await;
    let req = axum::http::Request::builder()
        .uri("/api/v1/records")
        .header("authorization", format!("Bearer {}", env.tech))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(env.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "2");
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "unavailable", "{v}");
    assert!(v["incident"].is_string(), "{v}");
    assert!(v["message"].as_str().unwrap().contains("try again"), "{v}");
}
