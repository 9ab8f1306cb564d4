//! What the console's audit page costs on the server, for docs/benchmarks.md.
//!
//! Run: `cargo bench -p imprint-server --bench console -- [log size]` (default 1,000,000).
//! Fills a fresh SQLite log with that many entries (50 technicians, 40 stations, reports with
//! one refusal in a hundred and a field authentication in ten), then times pages of
//! `GET /api/v1/audit` through the real router (session check, query, JSON answer), 50 entries
//! each, newest first: the newest page, pages at random depths, and searches by actor,
//! action, unit and station; beside a one-row primary-key read of the log in the same run.
//! Then `GET /factories` and `GET /activity` with that many units installed (over 30 days)
//! and 10,000 records open.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use imprint_server::{audit, auth, tlog};
use rand_core::Rng;
use tower::ServiceExt;

mod common;
use common::{Unit, fresh, rate, row};

/// The `i`th entry of the filled log.
fn entry(i: u64) -> audit::NewEntry {
    let station = format!("line-{}", i % 40);
    let id = format!("IMP-{i:010}");
    let (action, detail) = if i % 10 == 3 {
        ("auth.ok", serde_json::json!({"apparatus_id": id}))
    } else if i % 100 == 7 {
        (
            "report.refused",
            serde_json::json!({"apparatus_id": id, "product_serial": format!("SN-{i:08}"), "factory": "fa", "station": station, "reason": "bad_receipt"}),
        )
    } else {
        (
            "report",
            serde_json::json!({"apparatus_id": id, "product_serial": format!("SN-{i:08}"), "factory": "fa", "station": station, "receipt": "00".repeat(32)}),
        )
    };
    audit::NewEntry {
        actor: if action == "auth.ok" {
            "device".into()
        } else {
            format!("tech-{}", i % 50)
        },
        action: action.into(),
        detail,
    }
}

/// The auditor's session token, signed in through the router.
async fn login(app: &axum::Router) -> String {
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/login")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"username":"auditor","password":"password-123"}"#,
        ))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// A search's query string, from a random sequence number below the log's end.
type Query<'a> = Box<dyn Fn(u64) -> String + 'a>;

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.replace([',', '_'], "").parse().ok())
        .unwrap_or(1_000_000);
    let (state, dir) = fresh("console", 1).await;
    {
        let mut tx = state.store.begin().await.unwrap();
        auth::create_user(&mut tx, "bench", "auditor", "password-123", "auditor", None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let t = Instant::now();
    let mut done = 0u64;
    while done < n {
        let part = (n - done).min(100_000);
        let mut tx = state.store.begin().await.unwrap();
        let entries: Vec<_> = (done..done + part).map(entry).collect();
        audit::append_many(&mut tx, &entries).await.unwrap();
        tx.commit().await.unwrap();
        done += part;
    }
    tlog::sequence(&state.store, &state.custody).await.unwrap();
    println!(
        "log of {n} entries written and sequenced in {:.1} s ({:.0} entries/s)",
        t.elapsed().as_secs_f64(),
        rate(n, t.elapsed())
    );
    let app = imprint_server::app(state.clone());
    let call = |path: String, token: Option<String>| {
        let app = app.clone();
        async move {
            let mut req = Request::builder().uri(path);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            assert!(
                status.is_success(),
                "{status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let session = login(&app).await;
    let latest = n + 8;
    let mut rng = imprint_server::rng();
    let mut below = || 1 + rng.next_u64() % latest;
    let runs = 200;
    println!(
        "\n| `GET /api/v1/audit`, 50 entries a page, newest first, {runs} each | mean ms | p50 | p99 | max |\n| --- | --- | --- | --- | --- |"
    );
    let mut pk = Vec::new();
    let mut conn = state.store.read().await.unwrap();
    for _ in 0..runs {
        let seq = below() as i64;
        let t = Instant::now();
        let r = imprint_server::db::query("SELECT seq, detail FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        pk.push(t.elapsed());
        assert!(r.is_none_or(|r| r.try_get::<i64, _>("seq").unwrap() == seq));
    }
    drop(conn);
    let cases: Vec<(&str, Query)> = vec![
        (
            "the newest page",
            Box::new(|_| "before=18446744073709551615".into()),
        ),
        (
            "a page at a random depth",
            Box::new(|b| format!("before={b}")),
        ),
        (
            "one technician's (2% of the log), random depth",
            Box::new(|b| format!("actor=tech-17&before={b}")),
        ),
        (
            "refused reports (1% of the log), newest",
            Box::new(|_| "action=report.refused&before=18446744073709551615".into()),
        ),
        (
            "one station's (2%), random depth",
            Box::new(|b| format!("station=line-23&before={b}")),
        ),
        (
            "one unit (its report), by apparatus ID",
            Box::new(|b| format!("unit=IMP-{:010}&before=18446744073709551615", b % n)),
        ),
        (
            "an actor with no entries",
            Box::new(|_| "actor=nobody&before=18446744073709551615".into()),
        ),
    ];
    for (label, query) in &cases {
        let mut lat = Vec::new();
        for _ in 0..runs {
            let path = format!("/api/v1/audit?limit=50&{}", query(below()));
            let t = Instant::now();
            let v = call(path, Some(session.clone())).await;
            lat.push(t.elapsed());
            assert!(v["entries"].is_array());
        }
        row(label, lat, Unit::Millis);
    }
    row(
        "baseline: one-row primary-key read of `audit_log`",
        pk,
        Unit::Millis,
    );
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    // The overview and the activity with that many units installed, over 30 days (about
    // 11,000 in the last 8 hours), and 10,000 records open at the factory.
    let (state, dir) = fresh("console-704", n + 10_000).await;
    {
        let mut tx = state.store.begin().await.unwrap();
        auth::create_user(&mut tx, "bench", "auditor", "password-123", "auditor", None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let t = Instant::now();
    // At most 1,000,000 per call.
    for part in [n, 10_000] {
        imprint_server::service::generate(
            &state,
            "bench",
            imprint_core::KeyId::new(1).unwrap(),
            part,
            "IMP-",
        )
        .await
        .unwrap();
    }
    let now = imprint_server::now_millis();
    let mut tx = state.store.begin().await.unwrap();
    // Rows as the flow leaves them, written directly: the reads are what is measured.
    imprint_server::db::query(
        "UPDATE auth_info SET state = 'installed', factory_id = 'fa', product_code = 'CAM-X100' WHERE created_seq <= $1",
    )
    .bind(n as i64)
    .execute(&mut tx)
    .await
    .unwrap();
    imprint_server::db::query(
        "INSERT INTO installed_devices (apparatus_id, conversion_sealed, product_serial, factory_id, technician, station, receipt, installed_ms) \
         SELECT apparatus_id, pass_sealed, 'SN-' || created_seq, 'fa', 'tech', 'line-' || (created_seq % 40), '', $1 - created_seq * 2592 \
         FROM auth_info WHERE created_seq <= $2",
    )
    .bind(now)
    .bind(n as i64)
    .execute(&mut tx)
    .await
    .unwrap();
    imprint_server::db::query(
        "UPDATE auth_info SET state = 'issued', factory_id = 'fa', product_code = 'CAM-X100' WHERE created_seq > $1",
    )
    .bind(n as i64)
    .execute(&mut tx)
    .await
    .unwrap();
    imprint_server::db::query(
        "INSERT INTO factory_records (apparatus_id, sealed, key_id, factory_id, product_code, issued_ms) \
         SELECT apparatus_id, pass_sealed, 1, 'fa', 'CAM-X100', $1 FROM auth_info WHERE created_seq > $2",
    )
    .bind(now)
    .bind(n as i64)
    .execute(&mut tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    println!(
        "\n{n} units installed and 10,000 records open, set up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let app = imprint_server::app(state.clone());
    let token = login(&app).await;
    println!(
        "\n| with {n} units installed, {runs} each | mean ms | p50 | p99 | max |\n| --- | --- | --- | --- | --- |"
    );
    for (label, path) in [
        ("`GET /api/v1/factories`", "/api/v1/factories"),
        ("`GET /api/v1/activity` (8 hours)", "/api/v1/activity"),
        (
            "`GET /api/v1/activity?hours=168` (a week)",
            "/api/v1/activity?hours=168",
        ),
    ] {
        let mut lat = Vec::new();
        let mut last = serde_json::Value::Null;
        for _ in 0..runs {
            let mut req = Request::builder().uri(path);
            req = req.header("authorization", format!("Bearer {token}"));
            let t = Instant::now();
            let res = app
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            lat.push(t.elapsed());
            last = serde_json::from_slice(&bytes).unwrap();
        }
        if path == "/api/v1/factories" {
            assert_eq!(
                last["factories"][0]["installed"].as_u64(),
                Some(n),
                "{last}"
            );
        }
        row(label, lat, Unit::Millis);
    }
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
