//! What the console reads: the factories overview, the line's activity and the audit log's
//! search, each against what the flow did.

use axum::http::{Method, StatusCode};
use imprint_device::sim::SimDevice;
use serde_json::{Value, json};

use crate::{Env, PRODUCT, install};

/// Two units installed by fa's technician at line-1, one refused report from line-1, one
/// record open; then a lease of 3 records.
async fn line() -> (Env, Vec<String>, Vec<String>) {
    let env = Env::new(20, 10).await;
    let recs = env.issue(&env.tech, 3).await;
    let mut ids = Vec::new();
    let mut serials = Vec::new();
    for (n, r) in recs.iter().take(2).enumerate() {
        let mut dev = SimDevice::demo(n as u32 + 1);
        let (receipt, serial) = install(&mut dev, r);
        let id = r["apparatus_id"].as_str().unwrap().to_string();
        assert_eq!(
            env.report(&env.tech, &id, &serial, &receipt).await.0,
            StatusCode::OK
        );
        ids.push(id);
        serials.push(serial);
    }
    // A forged report of the third record: refused, and audited.
    let id2 = recs[2]["apparatus_id"].as_str().unwrap();
    let (s, _) = env
        .report(&env.tech, id2, "SN-FORGED", &"ab".repeat(32))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/leases",
            Some(&env.tech),
            json!({ "product_code": PRODUCT, "count": 3, "hours": 8 }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (env, ids, serials)
}

#[tokio::test]
async fn the_overview_counts_what_the_line_did() {
    let (env, _, _) = line().await;
    for token in [&env.admin, &env.auditor] {
        let (s, v) = env
            .call(Method::GET, "/api/v1/factories", Some(token), Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let fa = &v["factories"][0];
        assert_eq!(fa["factory_id"], "fa");
        assert_eq!(fa["installed"], 2);
        // 3 issued + 3 leased: 6 of the quota of 10 used, 4 open (1 issued, 3 leased).
        assert_eq!(
            fa["quotas"],
            json!([{ "product_code": PRODUCT, "limit": 10, "used": 6, "open": 4 }])
        );
        let lease = &fa["leases"][0];
        assert_eq!(
            (lease["records"].as_u64(), lease["open"].as_u64()),
            (Some(3), Some(3))
        );
        assert!(lease["not_after_ms"].as_u64().unwrap() > v["now_ms"].as_u64().unwrap());
        let fb = &v["factories"][1];
        assert_eq!(
            (fb["factory_id"].as_str(), fb["installed"].as_u64()),
            (Some("fb"), Some(0))
        );
        assert_eq!(fb["leases"], json!([]));
        // 20 generated, 6 issued.
        assert_eq!(
            v["pools"],
            json!([{ "product_code": PRODUCT, "key_id": 1, "available": 14 }])
        );
    }
    let (s, v) = env
        .call(
            Method::GET,
            "/api/v1/factories",
            Some(&env.tech),
            Value::Null,
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
}

#[tokio::test]
async fn activity_counts_installs_by_hour_and_station_and_lists_refusals() {
    let (env, _, _) = line().await;
    let (s, v) = env
        .call(
            Method::GET,
            "/api/v1/activity?hours=2",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let installs = v["installs"].as_array().unwrap();
    assert_eq!(installs.len(), 1, "{v}");
    assert_eq!(
        (
            installs[0]["factory_id"].as_str(),
            installs[0]["station"].as_str()
        ),
        (Some("fa"), Some("line-1"))
    );
    assert_eq!(installs[0]["count"], 2);
    let hour = installs[0]["hour_ms"].as_u64().unwrap();
    assert_eq!(hour % 3_600_000, 0);
    assert!(hour >= v["from_ms"].as_u64().unwrap() && hour <= v["now_ms"].as_u64().unwrap());
    let refused = v["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{v}");
    assert_eq!(
        (
            refused[0]["technician"].as_str(),
            refused[0]["reason"].as_str(),
            refused[0]["product_serial"].as_str(),
            refused[0]["station"].as_str()
        ),
        (
            Some("tech-a"),
            Some("bad_receipt"),
            Some("SN-FORGED"),
            Some("line-1")
        )
    );
    let (s, _) = env
        .call(
            Method::GET,
            "/api/v1/activity?hours=x",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A station's name is text for people: no control characters (it would reach the log and
    // the console escaped, and PostgreSQL's jsonb refuses \u0000).
    let recs = env.issue(&env.tech, 1).await;
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/report",
            Some(&env.tech),
            json!({ "apparatus_id": recs[0]["apparatus_id"], "product_serial": "SN-1", "receipt": "00".repeat(32), "station": "line\u{0}" }),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{v}"
    );
}

async fn search(env: &Env, query: &str) -> (StatusCode, Value) {
    env.call(
        Method::GET,
        &format!("/api/v1/audit?{query}"),
        Some(&env.auditor),
        Value::Null,
    )
    .await
}

fn actions(v: &Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_audit_log_is_searched_by_unit_actor_action_and_station_newest_first() {
    let (env, ids, serials) = line().await;
    // By apparatus ID and by product serial: the same unit's entries.
    let (s, by_id) = search(&env, &format!("unit={}&before=999999", ids[0])).await;
    assert_eq!(s, StatusCode::OK, "{by_id}");
    assert_eq!(actions(&by_id), ["report"]);
    let (_, by_serial) = search(&env, &format!("unit={}&before=999999", serials[0])).await;
    assert_eq!(by_serial["entries"], by_id["entries"]);
    // By action, newest first, and paged below a sequence number.
    let (_, reports) = search(&env, "action=report&before=18446744073709551615").await;
    let seqs: Vec<u64> = reports["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] > seqs[1], "newest first: {seqs:?}");
    assert!(reports["latest"].as_u64().unwrap() >= seqs[0]);
    let (_, older) = search(&env, &format!("action=report&before={}", seqs[0])).await;
    assert_eq!(older["entries"].as_array().unwrap().len(), 1);
    assert_eq!(older["entries"][0]["seq"].as_u64(), Some(seqs[1]));
    // By station: the two reports and the refusal; by actor and action together.
    let (_, line1) = search(&env, "station=line-1&from=1").await;
    assert_eq!(actions(&line1), ["report", "report", "report.refused"]);
    let (_, tech) = search(&env, "actor=tech-a&action=report.refused").await;
    assert_eq!(actions(&tech), ["report.refused"]);
    assert!(
        tech["entries"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("SN-FORGED")
    );
    // Nothing matches: an empty page, not an error.
    let (s, none) = search(&env, "actor=nobody").await;
    assert_eq!(
        (s, none["entries"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    // Bad input: both directions, a unit that is neither an ID nor a serial.
    let (s, v) = search(&env, "from=1&before=5").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (s, v) = search(&env, "unit=no%20such%20thing").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    assert!(v["message"].as_str().unwrap().contains("unit"), "{v}");
}
