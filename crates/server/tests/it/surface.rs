//! What the server shows of itself: one error body for every failure, faults as faults,
//! metrics that move, a brake on password guessing, an audit log without typed names, CSV
//! that a spreadsheet cannot run, and one log line per request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use imprint_server::throttle::{Allowance, Throttle};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{Env, install};

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({ "text": String::from_utf8_lossy(&bytes) }));
    (status, v, headers)
}

fn post(path: &str, token: Option<&str>, content_type: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder().method(Method::POST).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(c) = content_type {
        b = b.header("content-type", c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Not JSON, a missing field, a wrong type, no content type, an empty body, CSV without its
/// type: each is the one error body with `bad_request` and a message naming what is wrong.
#[tokio::test]
async fn malformed_bodies_answer_the_error_body() {
    let env = Env::new(2, 10).await;
    let t = Some(env.tech.as_str());
    let json = Some("application/json");
    let cases: [(Request<Body>, &str); 7] = [
        (post("/api/v1/issue", t, json, "{not json"), "JSON"),
        (
            post("/api/v1/issue", t, json, r#"{"count": 1}"#),
            "missing field `product_code`",
        ),
        (
            post(
                "/api/v1/issue",
                t,
                json,
                r#"{"product_code": "CAM-X100", "count": "one"}"#,
            ),
            "count",
        ),
        (
            post(
                "/api/v1/issue",
                t,
                None,
                r#"{"product_code": "CAM-X100", "count": 1}"#,
            ),
            "content-type: application/json",
        ),
        (post("/api/v1/issue", t, json, ""), "JSON"),
        (
            post(
                "/api/v1/report",
                t,
                json,
                r#"{"apparatus_id": "IMP-1", "product_serial": "S", "receipt": "00", "station": "s"}"#,
            ),
            "64 hex digits",
        ),
        (
            post(
                "/api/v1/auth-info/import",
                Some(env.admin.as_str()),
                json,
                "a,b,1",
            ),
            "text/csv",
        ),
    ];
    for (req, says) in cases {
        let (s, v, h) = send(&env.app, req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "bad_request", "{v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{says}: {v}");
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
}

/// A row the database holds that does not parse is the server's fault: 500 with an incident
/// ID, never a 400 that blames the client.
#[tokio::test]
async fn a_corrupt_row_is_a_server_fault_with_an_incident_id() {
    let env = Env::new(2, 10).await;
    env.issue(&env.tech, 1).await;
    sqlx::query("UPDATE factory_records SET product_code = 'not a code!'")
        .execute(env.state.store.pool())
        .await
        .unwrap();
    let (s, v) = env
        .call(Method::GET, "/api/v1/records", Some(&env.tech), Value::Null)
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["error"], "internal");
    let incident = v["incident"].as_str().unwrap();
    assert_eq!(incident.len(), 16);
    assert!(v["message"].as_str().unwrap().contains(incident));
    assert!(
        !v["message"].as_str().unwrap().contains("not a code"),
        "{v}"
    );
}

/// Field authentication and sign-in failures move their counters.
#[tokio::test]
async fn every_documented_counter_moves() {
    let env = Env::new(3, 10).await;
    let recs = env.issue(&env.tech, 1).await;
    let mut dev = imprint_device::sim::SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    let id = recs[0]["apparatus_id"].as_str().unwrap();
    let (s, v) = env.report(&env.tech, id, &serial, &receipt).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for good in [true, false] {
        let c = crate::flow::challenge(&env, id).await;
        let response = if good {
            crate::flow::answer(&mut dev, c)
        } else {
            imprint_core::AuthResponse([0; 32])
        };
        assert_eq!(crate::flow::verify(&env, id, c, response).await, good);
    }
    env.report(&env.tech, id, "OTHER-SERIAL", &receipt).await;
    env.call(
        Method::POST,
        "/api/v1/login",
        None,
        json!({"username": "admin", "password": "wrong-password"}),
    )
    .await;
    let (_, m) = env.call(Method::GET, "/metrics", None, Value::Null).await;
    let text = m["text"].as_str().unwrap();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("imprint_records_issued_total"), 1);
    assert_eq!(value("imprint_records_installed_total"), 1);
    assert_eq!(value("imprint_reports_refused_total"), 1);
    assert_eq!(value("imprint_auth_ok_total"), 1);
    assert_eq!(value("imprint_auth_fail_total"), 1);
    assert_eq!(value("imprint_login_failures_total"), 1);
    assert_eq!(value("imprint_login_throttled_total"), 0);
    assert!(value("imprint_request_duration_seconds_count") >= 8);
    // Every counter the docs list is one this test reads.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/server.md"))
            .unwrap();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = l.split(' ').next().unwrap();
        assert!(docs.contains(name), "docs/server.md does not list {name}");
    }
}

/// Past the allowance, sign-in answers 429 with Retry-After before checking any password, and
/// says so in the audit log; when the wait is over the right password works.
#[tokio::test]
async fn failed_sign_ins_are_throttled_and_the_right_password_works_after_the_wait() {
    let env = Env::new(0, 10).await;
    let mut state = env.state.clone();
    state.throttle = Throttle::new(
        Allowance {
            burst: std::num::NonZeroU32::new(3).unwrap(),
            every: Duration::from_millis(1500),
        },
        Allowance {
            burst: std::num::NonZeroU32::new(100).unwrap(),
            every: Duration::from_millis(10),
        },
    );
    let app = imprint_server::app(state);
    let login = |p: &str| {
        post(
            "/api/v1/login",
            None,
            Some("application/json"),
            &json!({"username": "admin", "password": p}).to_string(),
        )
    };
    for _ in 0..4 {
        let (s, _, _) = send(&app, login("wrong-password")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, v, h) = send(&app, login("password-123")).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts")),
        "{v}"
    );
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert!(
        env.audit_actions()
            .await
            .iter()
            .any(|a| a == "login.throttled")
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (s, v, _) = send(&app, login("password-123")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A name that is no user never reaches the audit log: it may be a password typed into the
/// wrong field. It is there as a keyed tag, the same for the same name.
#[tokio::test]
async fn an_unknown_sign_in_name_is_audited_only_as_a_tag() {
    let env = Env::new(0, 10).await;
    let typed = "Secret-Pa55word!";
    for _ in 0..2 {
        env.call(
            Method::POST,
            "/api/v1/login",
            None,
            json!({"username": typed, "password": "x"}),
        )
        .await;
    }
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    let text = v.to_string();
    assert!(
        !text.contains(typed),
        "the typed name reached the audit log"
    );
    let tags: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login.fail")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0], tags[1]);
    assert!(tags[0].contains("name_tag"), "{}", tags[0]);
}

/// A station name such as `=HYPERLINK(...)` is text in the export, never a formula.
#[tokio::test]
async fn the_installed_export_neutralises_formulas() {
    let env = Env::new(2, 10).await;
    let recs = env.issue(&env.tech, 1).await;
    let mut dev = imprint_device::sim::SimDevice::demo(7);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    let evil = "=HYPERLINK(\"http://x\")";
    let (s, v) = env
        .call(Method::POST, "/api/v1/report", Some(&env.tech), json!({"apparatus_id": recs[0]["apparatus_id"], "product_serial": serial, "receipt": receipt, "station": evil}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/installed.csv",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    let csv = v["text"].as_str().unwrap();
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    for cell in ["=", "+1", "-1", "@x", "\tx", "\rx"] {
        assert!(
            imprint_server::service::csv_cell(cell).starts_with('\''),
            "{cell:?}"
        );
    }
    assert_eq!(imprint_server::service::csv_cell("IMP-1"), "IMP-1");
}

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One structured line per request, with the route template, status, user and request ID,
/// and never the token, the password or the body.
#[tokio::test]
async fn one_log_line_per_request_without_secrets() {
    let env = Env::new(2, 10).await;
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (s, _) = env
        .call(
            Method::PUT,
            "/api/v1/products/CAM-X100",
            Some(&env.admin),
            json!({"key_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    env.call(
        Method::POST,
        "/api/v1/login",
        None,
        json!({"username": "admin", "password": "password-123"}),
    )
    .await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let request_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("imprint_server::request"))
        .collect();
    assert_eq!(request_lines.len(), 2, "{text}");
    let put = request_lines[0];
    for part in [
        "method=PUT",
        "route=\"/api/v1/products/{code}\"",
        "status=200",
        "user=\"admin\"",
        "request_id=",
    ] {
        assert!(put.contains(part), "{part} not in {put}");
    }
    assert!(
        !text.contains(&env.admin),
        "a session token reached the log"
    );
    assert!(!text.contains("password-123"), "a password reached the log");
}

#[test]
fn the_brake_counts_a_burst_then_one_failure_per_interval() {
    use imprint_server::throttle::{Step, on_failure};
    let a = Allowance {
        burst: std::num::NonZeroU32::new(3).unwrap(),
        every: Duration::from_millis(1000),
    };
    let mut tat = None;
    for expected in [1000, 2000, 3000] {
        assert_eq!(on_failure(a, tat, 0), Step::Counted { tat_ms: expected });
        tat = Some(expected);
    }
    // The fourth at once waits until one interval has passed; it is not counted.
    assert_eq!(on_failure(a, tat, 0), Step::Blocked { until_ms: 1000 });
    assert_eq!(on_failure(a, tat, 1000), Step::Counted { tat_ms: 4000 });
    // After a quiet spell the whole burst is back.
    assert_eq!(
        on_failure(a, Some(4000), 60_000),
        Step::Counted { tat_ms: 61_000 }
    );
}
