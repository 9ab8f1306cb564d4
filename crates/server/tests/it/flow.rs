//! The provisioning flow end to end with simulated devices: issue, install, report, release,
//! remap, field authentication, and many stations at once.

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use imprint_core::{AuthResponse, Challenge, Reply, Request as DevRequest};
use imprint_device::sim::SimDevice;
use serde_json::{Value, json};

use crate::{Env, PRODUCT, install};

#[tokio::test]
async fn issue_respects_quota_and_the_pool() {
    let env = Env::new(10, 5).await;
    let recs = env.issue(&env.tech, 3).await;
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter()
            .all(|r| r["key_id"] == 1 && r["product_code"] == PRODUCT)
    );
    assert!(recs.iter().all(|r| !r.to_string().contains("pass")));
    let over = json!({"product_code": PRODUCT, "count": 3});
    let (s, v) = env
        .call(Method::POST, "/api/v1/issue", Some(&env.tech), over)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("over_quota"))
    );
    assert!(v["message"].as_str().unwrap().contains("2 left"));
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/issue",
            Some(&env.tech),
            json!({"product_code": "NOPE", "count": 1}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_product"))
    );
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/issue",
            Some(&env.tech),
            json!({"product_code": PRODUCT, "count": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Factory b: 7 entries left in the pool for 8 asked.
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/issue",
            Some(&env.tech_b),
            json!({"product_code": PRODUCT, "count": 8}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_enough_entries"))
    );
    // Nothing changed by the refusals.
    let (_, v) = env
        .call(Method::GET, "/api/v1/records", Some(&env.tech), Value::Null)
        .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/records",
            Some(&env.tech_b),
            Value::Null,
        )
        .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn install_report_exactly_once_with_a_real_device() {
    let env = Env::new(5, 10).await;
    let recs = env.issue(&env.tech, 2).await;
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    let id = recs[0]["apparatus_id"].as_str().unwrap();
    let (s, v) = env.report(&env.tech, id, &serial, &receipt).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("recorded")),
        "{v}"
    );
    let (s, v) = env.report(&env.tech, id, &serial, &receipt).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("already_recorded"))
    );
    // Installed-devices export shows it, with the technician, and no secret.
    let (s, v) = env
        .call(
            Method::GET,
            "/api/v1/installed.csv",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = v["text"].as_str().unwrap();
    assert!(
        csv.contains(&format!("{id},{serial},fa,tech-a,line-1")),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 2);
    let actions = env.audit_actions().await;
    assert!(
        actions.contains(&"report".to_string())
            && actions.contains(&"report.duplicate".to_string())
    );
}

#[tokio::test]
async fn forged_moved_and_conflicting_reports_are_refused_and_audited() {
    let env = Env::new(5, 10).await;
    let recs = env.issue(&env.tech, 2).await;
    let id0 = recs[0]["apparatus_id"].as_str().unwrap();
    let id1 = recs[1]["apparatus_id"].as_str().unwrap();
    // Forged: the factory invents a completion.
    let (s, v) = env.report(&env.tech, id0, "SN-X", &"ab".repeat(32)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_receipt"))
    );
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    // The genuine receipt reported for another unit: refused.
    let (s, v) = env.report(&env.tech, id0, "SIM-999999", &receipt).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_receipt"))
    );
    // Another factory reporting it: refused.
    let (s, v) = env.report(&env.tech_b, id0, &serial, &receipt).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_record"))
    );
    assert_eq!(
        env.report(&env.tech, id0, &serial, &receipt).await.0,
        StatusCode::OK
    );
    // A second identity for the same unit: refused (a unit takes one identity).
    let mut other = SimDevice::demo(1); // same serial SIM-000001, a unit swapped on the bench
    let (receipt1, serial1) = install(&mut other, &recs[1]);
    let (s, v) = env.report(&env.tech, id1, &serial1, &receipt1).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("serial_taken"))
    );
    // Malformed inputs.
    let (s, _) = env.report(&env.tech, id1, &serial1, "xyz").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env.report(&env.tech, "IMP NOPE", &serial1, &receipt1).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = env
        .report(&env.tech, "IMP-9999999999", &serial1, &receipt1)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_apparatus"))
    );
    let refused = env
        .audit_actions()
        .await
        .iter()
        .filter(|a| *a == "report.refused")
        .count();
    assert_eq!(
        refused, 5,
        "every refusal with a parseable request is on record"
    );
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/installed.csv",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    assert_eq!(
        v["text"].as_str().unwrap().lines().count(),
        2,
        "exactly one installation recorded"
    );
}

#[tokio::test]
async fn a_refused_write_holds_no_lock_after_its_answer() {
    // A refused release locks its entry first. If its rollback waited for the connection's
    // next use, the entry stayed locked and an issue right after it (on another connection,
    // skipping locked rows) found no entry: seen on PostgreSQL as a spurious not_enough_entries,
    // once, under the load of the whole suite (sqlx flushes a dropped transaction's ROLLBACK
    // in a task of its own, which races the next request). A race, so this loop catches it
    // only under load; the explicit rollback in `Store::write` closes it by construction.
    let env = Env::new(1, 1).await;
    for _ in 0..50 {
        let recs = env.issue(&env.tech, 1).await;
        let id = recs[0]["apparatus_id"].as_str().unwrap();
        for expected in [StatusCode::OK, StatusCode::CONFLICT] {
            let (s, v) = env
                .call(
                    Method::POST,
                    "/api/v1/release",
                    Some(&env.tech),
                    json!({"apparatus_id": id}),
                )
                .await;
            assert_eq!(s, expected, "{v}");
        }
    }
}

#[tokio::test]
async fn released_records_go_back_to_the_pool_and_their_old_seal_is_dead() {
    let env = Env::new(2, 2).await;
    let recs = env.issue(&env.tech, 2).await;
    let id = recs[0]["apparatus_id"].as_str().unwrap();
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/release",
            Some(&env.tech_b),
            json!({"apparatus_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/release",
            Some(&env.tech),
            json!({"apparatus_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/release",
            Some(&env.tech),
            json!({"apparatus_id": id}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_issued"))
    );
    // Quota given back: one more can be issued, and it is the same identity sealed afresh.
    let again = env.issue(&env.tech, 1).await;
    assert_eq!(again[0]["apparatus_id"], recs[0]["apparatus_id"]);
    assert_ne!(again[0]["sealed"], recs[0]["sealed"]);
    // A device that got the old seal produces a receipt the server refuses.
    let mut dev = SimDevice::demo(3);
    let (old_receipt, serial) = install(&mut dev, &recs[0]);
    let (s, v) = env.report(&env.tech, id, &serial, &old_receipt).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_receipt"))
    );
}

#[tokio::test]
async fn key_rotation_reseals_outstanding_records() {
    let env = Env::new(4, 10).await;
    let recs = env.issue(&env.tech, 2).await;
    let (s, v) = env
        .call(
            Method::PUT,
            &format!("/api/v1/products/{PRODUCT}"),
            Some(&env.admin),
            json!({"key_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["old_key_id"].as_u64(), v["resealed"].as_u64()),
        (Some(1), Some(2))
    );
    let (_, v) = env
        .call(Method::GET, "/api/v1/records", Some(&env.tech), Value::Null)
        .await;
    let fresh = v["records"].as_array().unwrap().clone();
    assert!(fresh.iter().all(|r| r["key_id"] == 2));
    // An old-key unit cannot open the new record; a new-key unit can, and the report is accepted.
    let mut old_unit = SimDevice::demo(1);
    let id = imprint_core::ApparatusId::new(fresh[0]["apparatus_id"].as_str().unwrap()).unwrap();
    let sealed = imprint_core::SealedRecord::parse(
        &hex::decode(fresh[0]["sealed"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    old_unit
        .transfer_out(
            &DevRequest::Install {
                apparatus_id: id,
                record: sealed,
            }
            .encode(1),
        )
        .unwrap();
    let (_, reply) = Reply::decode(&old_unit.transfer_in(1024).unwrap()).unwrap();
    assert_eq!(reply, Reply::Error(imprint_core::ErrorCode::UnknownKey));
    let mut new_unit = SimDevice::new(imprint_device::sim::demo_config(2, PRODUCT, &[2]));
    let (receipt, serial) = install(&mut new_unit, &fresh[0]);
    assert_eq!(
        env.report(&env.tech, id.as_str(), &serial, &receipt)
            .await
            .0,
        StatusCode::OK
    );
    // The remaining unissued entries are on key 1; the product now wants key 2.
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/issue",
            Some(&env.tech),
            json!({"product_code": PRODUCT, "count": 1}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_enough_entries"))
    );
    assert_eq!(recs.len(), 2);
}

pub async fn challenge(env: &Env, id: &str) -> Challenge {
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/auth/challenge",
            None,
            json!({"apparatus_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    Challenge(
        hex::decode(v["challenge"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    )
}

pub fn answer(dev: &mut SimDevice, c: Challenge) -> AuthResponse {
    dev.transfer_out(&DevRequest::Challenge(c).encode(2))
        .unwrap();
    match Reply::decode(&dev.transfer_in(1024).unwrap()).unwrap().1 {
        Reply::AuthResponse { response, .. } => response,
        other => panic!("{other:?}"),
    }
}

pub async fn verify(env: &Env, id: &str, c: Challenge, r: AuthResponse) -> bool {
    let body =
        json!({"apparatus_id": id, "challenge": hex::encode(c.0), "response": hex::encode(r.0)});
    let (s, v) = env
        .call(Method::POST, "/api/v1/auth/verify", None, body)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["authenticated"].as_bool().unwrap()
}

#[tokio::test]
async fn field_authentication_single_use_challenges_and_revocation() {
    let env = Env::new(3, 10).await;
    let recs = env.issue(&env.tech, 1).await;
    let id = recs[0]["apparatus_id"].as_str().unwrap();
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    // Not yet reported: not installed, so not authenticated.
    let c = challenge(&env, id).await;
    assert!(!verify(&env, id, c, answer(&mut dev, c)).await);
    env.report(&env.tech, id, &serial, &receipt).await;
    let c = challenge(&env, id).await;
    let r = answer(&mut dev, c);
    assert!(verify(&env, id, c, r).await);
    assert!(
        !verify(&env, id, c, r).await,
        "a challenge is single use: replay refused"
    );
    let c = challenge(&env, id).await;
    assert!(!verify(&env, id, c, AuthResponse([7; 32])).await);
    // Another device's answer for this ID fails.
    let c = challenge(&env, id).await;
    let mut stranger = SimDevice::already_provisioned(9, id, false);
    assert!(!verify(&env, id, c, answer(&mut stranger, c)).await);
    // Revoked: fails from now on.
    let (s, _) = env
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/revoke"),
            Some(&env.admin),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let c = challenge(&env, id).await;
    assert!(!verify(&env, id, c, answer(&mut dev, c)).await);
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/auth/verify",
            None,
            json!({"apparatus_id": id, "challenge": "zz", "response": "00"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let actions = env.audit_actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "auth.ok").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "auth.fail").count(), 5);
}

/// 32 stations issue and report at the same time: no identity is issued twice, every report
/// lands once, quotas hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_stations() {
    let env = std::sync::Arc::new(Env::new(400, 1000).await);
    let mut tasks = Vec::new();
    for station in 0..32u32 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for round in 0..3u32 {
                let recs = env.issue(&env.tech, 3).await;
                for (k, r) in recs.iter().enumerate() {
                    let mut dev = SimDevice::demo(station * 100 + round * 10 + k as u32);
                    let (receipt, serial) = install(&mut dev, r);
                    let id = r["apparatus_id"].as_str().unwrap().to_string();
                    let (s, v) = env.report(&env.tech, &id, &serial, &receipt).await;
                    assert_eq!(s, StatusCode::OK, "{v}");
                    done.push(id);
                }
            }
            done
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (288, 288),
        "an identity was issued twice"
    );
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/installed.csv",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    assert_eq!(v["text"].as_str().unwrap().lines().count(), 289);
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/audit/verify",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(v["ok"], true, "{v}");
}

/// Reports that arrive together share a batch (one transaction, a savepoint each): forged and
/// duplicated ones among them are refused and audited, and change nothing of the others,
/// which are all recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_at_once_are_recorded_together_and_a_refusal_among_them_changes_nothing_else() {
    let env = std::sync::Arc::new(Env::new(40, 100).await);
    let recs = env.issue(&env.tech, 24).await;
    let mut tasks = Vec::new();
    for (n, r) in recs.iter().enumerate() {
        let env = env.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut dev = SimDevice::demo(500 + n as u32);
            let (receipt, serial) = install(&mut dev, &r);
            let id = r["apparatus_id"].as_str().unwrap().to_string();
            // Every fourth report is forged; every sixth is sent twice at once.
            let receipt = if n % 4 == 1 { "ab".repeat(32) } else { receipt };
            let twice = n % 6 == 0;
            let first = env.report(&env.tech, &id, &serial, &receipt);
            let (a, b) = if twice {
                let (a, b) = tokio::join!(first, env.report(&env.tech, &id, &serial, &receipt));
                (a.0, Some(b.0))
            } else {
                (first.await.0, None)
            };
            (n, a, b)
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        let (n, a, b) = t.await.unwrap();
        if n % 4 == 1 {
            assert_eq!(a, StatusCode::UNPROCESSABLE_ENTITY, "report {n} was forged");
        } else {
            assert_eq!(a, StatusCode::OK, "report {n}");
            assert!(
                b.is_none_or(|b| b == StatusCode::OK),
                "report {n} sent twice"
            );
            recorded += 1;
        }
    }
    assert_eq!(recorded, 18);
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/installed.csv",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    assert_eq!(v["text"].as_str().unwrap().lines().count(), 1 + 18);
    let actions = env.audit_actions().await;
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!((count("report"), count("report.refused")), (18, 6));
    // Each unit sent twice: recorded once, the other answered as already recorded.
    assert_eq!(count("report.duplicate"), 4);
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/audit/verify",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn offline_leases_are_signed_counted_and_expire_back_to_the_pool() {
    let env = Env::new(10, 6).await;
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/leases",
            Some(&env.tech),
            json!({"product_code": PRODUCT, "count": 4, "hours": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, lease) = env
        .call(
            Method::POST,
            "/api/v1/leases",
            Some(&env.tech),
            json!({"product_code": PRODUCT, "count": 4, "hours": 8}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{lease}");
    // The station checks the lease with the public key it fetched while online.
    let (_, k) = env
        .call(Method::GET, "/api/v1/lease-key", None, Value::Null)
        .await;
    assert_eq!(k["public_key"], lease["public_key"]);
    let parsed = imprint_core::Lease {
        lease_id: hex::decode(lease["lease_id"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
        factory: imprint_core::FactoryId::new(lease["factory"].as_str().unwrap()).unwrap(),
        product: imprint_core::ProductCode::new(lease["product_code"].as_str().unwrap()).unwrap(),
        issued_at_ms: lease["issued_at_ms"].as_u64().unwrap(),
        not_after_ms: lease["not_after_ms"].as_u64().unwrap(),
        records: lease["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| imprint_core::LeaseRecord {
                apparatus_id: imprint_core::ApparatusId::new(r["apparatus_id"].as_str().unwrap())
                    .unwrap(),
                record: imprint_core::SealedRecord::parse(
                    &hex::decode(r["sealed"].as_str().unwrap()).unwrap(),
                )
                .unwrap(),
            })
            .collect(),
    };
    let pk: [u8; 32] = hex::decode(k["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sig: [u8; 64] = hex::decode(lease["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let now = imprint_server::now_millis() as u64;
    assert_eq!(parsed.verify(&pk, &sig, now), Ok(()));
    assert!(parsed.not_after_ms - parsed.issued_at_ms == 8 * 3_600_000);
    // The lease counts against the quota (6): 4 leased + 3 more is too many.
    let (s, _) = env
        .call(
            Method::POST,
            "/api/v1/issue",
            Some(&env.tech),
            json!({"product_code": PRODUCT, "count": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Offline: two units installed; one reported on reconnect within the deadline.
    let recs = lease["records"].as_array().unwrap();
    let mut d0 = SimDevice::demo(1);
    let (r0, s0) = install(&mut d0, &recs[0]);
    let mut d1 = SimDevice::demo(2);
    let (r1, s1) = install(&mut d1, &recs[1]);
    assert_eq!(
        env.report(
            &env.tech,
            recs[0]["apparatus_id"].as_str().unwrap(),
            &s0,
            &r0
        )
        .await
        .0,
        StatusCode::OK
    );
    // Within the grace period nothing is returned.
    let deadline = parsed.not_after_ms as i64;
    assert_eq!(
        imprint_server::service::expire_leases(&env.state, deadline + 1)
            .await
            .unwrap(),
        0
    );
    // Reported late but within the grace period: accepted.
    assert_eq!(
        env.report(
            &env.tech,
            recs[1]["apparatus_id"].as_str().unwrap(),
            &s1,
            &r1
        )
        .await
        .0,
        StatusCode::OK
    );
    // After the grace period the 2 unreported records go back to the pool, quota given back.
    let after = deadline + imprint_server::service::LEASE_GRACE_MILLIS + 1;
    assert_eq!(
        imprint_server::service::expire_leases(&env.state, after)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        imprint_server::service::expire_leases(&env.state, after)
            .await
            .unwrap(),
        0,
        "once only"
    );
    let (_, v) = env
        .call(Method::GET, "/api/v1/records", Some(&env.tech), Value::Null)
        .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 0);
    // A unit installed from an expired lease record and reported too late is refused.
    let mut d2 = SimDevice::demo(3);
    let (r2, s2) = install(&mut d2, &recs[2]);
    let (s, v) = env
        .report(
            &env.tech,
            recs[2]["apparatus_id"].as_str().unwrap(),
            &s2,
            &r2,
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_issued")),
        "{v}"
    );
    assert_eq!(
        env.issue(&env.tech, 4).await.len(),
        4,
        "quota and pool given back"
    );
    let actions = env.audit_actions().await;
    assert!(
        actions.contains(&"lease".to_string()) && actions.contains(&"lease.expire".to_string())
    );
}

#[tokio::test]
async fn challenges_expire_and_installed_records_cannot_be_released() {
    let env = Env::new(2, 10).await;
    let recs = env.issue(&env.tech, 1).await;
    let id = recs[0]["apparatus_id"].as_str().unwrap();
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    env.report(&env.tech, id, &serial, &receipt).await;
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/release",
            Some(&env.tech),
            json!({"apparatus_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(v["message"].as_str().unwrap().contains("revoke it instead"));
    let apparatus = imprint_core::ApparatusId::new(id).unwrap();
    let c = imprint_server::service::field::challenge_until(
        &env.state.custody,
        apparatus,
        imprint_server::now_millis() - 1,
    );
    assert!(
        !verify(&env, id, c, answer(&mut dev, c)).await,
        "an expired challenge is refused"
    );
    // A challenge made for another ID, or altered, does not check.
    let other = imprint_core::ApparatusId::new("IMP-9999999999").unwrap();
    let c = imprint_server::service::field::challenge(&env.state.custody, other);
    assert!(
        !verify(&env, id, c, answer(&mut dev, c)).await,
        "made for another ID"
    );
    let mut c = challenge(&env, id).await;
    c.0[3] ^= 1;
    assert!(
        !verify(&env, id, c, answer(&mut dev, c)).await,
        "an altered expiry"
    );
    let (s, _) = env.report(&env.tech, id, &serial, &receipt).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env.call(Method::POST, "/api/v1/report", Some(&env.tech), json!({"apparatus_id": id, "product_serial": serial, "receipt": receipt, "station": "x".repeat(65)})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_factories_racing_for_a_small_pool_never_share_an_identity() {
    let env = std::sync::Arc::new(Env::new(30, 100).await);
    let mut tasks = Vec::new();
    for t in 0..10 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            let token = if t % 2 == 0 {
                env.tech.clone()
            } else {
                env.tech_b.clone()
            };
            let (s, v) = env
                .call(
                    Method::POST,
                    "/api/v1/issue",
                    Some(&token),
                    json!({"product_code": PRODUCT, "count": 4}),
                )
                .await;
            match s {
                StatusCode::OK => v["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["apparatus_id"].as_str().unwrap().to_string())
                    .collect(),
                StatusCode::CONFLICT => Vec::new(),
                other => panic!("{other} {v}"),
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an identity went to two requests");
    assert_eq!(
        all.len(),
        28,
        "7 requests of 4 fit a pool of 30; the rest were refused whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_report_from_two_stations_at_once_is_recorded_once() {
    let env = std::sync::Arc::new(Env::new(2, 10).await);
    let recs = env.issue(&env.tech, 1).await;
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    let id = recs[0]["apparatus_id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (env, id, serial, receipt) = (env.clone(), id.clone(), serial.clone(), receipt.clone());
        tasks.push(tokio::spawn(async move {
            env.report(&env.tech, &id, &serial, &receipt).await.1["status"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "recorded").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "already_recorded").count(),
        7
    );
}

/// A product's lock setting, and the record of a lock: after the report only, once, by the
/// factory that installed the unit and for the unit it is in; audited; in the export.
#[tokio::test]
async fn a_lock_is_recorded_once_after_the_report_by_the_installing_factory() {
    let env = Env::new(5, 10).await;
    let products = |v: &Value| {
        v["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["product_code"] == PRODUCT)
            .unwrap()["lock_units"]
            .clone()
    };
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/products",
            Some(&env.tech),
            Value::Null,
        )
        .await;
    assert_eq!(products(&v), json!(false), "{v}");
    let set = |on: bool| json!({ "lock_units": on });
    let lock_path = format!("/api/v1/products/{PRODUCT}/lock-units");
    let (s, _) = env
        .call(Method::PUT, &lock_path, Some(&env.tech), set(true))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only an admin sets it");
    let (s, v) = env
        .call(Method::PUT, &lock_path, Some(&env.admin), set(true))
        .await;
    assert_eq!(
        (s, v["lock_units"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (s, v) = env
        .call(
            Method::PUT,
            "/api/v1/products/NO-SUCH/lock-units",
            Some(&env.admin),
            set(true),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_product"))
    );
    let (_, v) = env
        .call(
            Method::GET,
            "/api/v1/products",
            Some(&env.tech),
            Value::Null,
        )
        .await;
    assert_eq!(products(&v), json!(true));

    let recs = env.issue(&env.tech, 1).await;
    let id = recs[0]["apparatus_id"].as_str().unwrap();
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    let lock =
        |serial: &str| json!({"apparatus_id": id, "product_serial": serial, "station": "line-1"});
    // Before the report: the server has no installation to lock.
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/locked",
            Some(&env.tech),
            lock(&serial),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_installed")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("report the installation")
    );
    env.report(&env.tech, id, &serial, &receipt).await;
    // The unit locks: its identity is permanent, and nothing is written into it again.
    dev.transfer_out(
        &DevRequest::Lock {
            apparatus_id: imprint_core::ApparatusId::new(id).unwrap(),
        }
        .encode(7),
    )
    .unwrap();
    assert_eq!(
        Reply::decode(&dev.transfer_in(64).unwrap()).unwrap().1,
        Reply::Locked
    );
    // Another factory, and another unit's serial, are refused.
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/locked",
            Some(&env.tech_b),
            lock(&serial),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_record"))
    );
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/locked",
            Some(&env.tech),
            lock("OTHER-SN"),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_installed"))
    );
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/locked",
            Some(&env.tech),
            json!({"apparatus_id": "IMP-NOSUCH", "product_serial": serial, "station": "line-1"}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_apparatus"))
    );
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/locked",
            Some(&env.tech),
            lock(&serial),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("recorded")),
        "{v}"
    );
    let export = || async {
        let (_, v) = env
            .call(
                Method::GET,
                "/api/v1/installed.csv",
                Some(&env.auditor),
                Value::Null,
            )
            .await;
        v["text"].as_str().unwrap().to_string()
    };
    let first = export().await;
    let header = first.lines().next().unwrap();
    assert!(header.ends_with(",revoked_at_ms,locked_at_ms"), "{header}");
    let row = first.lines().nth(1).unwrap().to_string();
    let locked_at: u64 = row
        .rsplit(',')
        .next()
        .unwrap()
        .parse()
        .expect("a lock time");
    assert!(locked_at > 0, "{row}");
    // Again: already recorded, and the first time is kept.
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/locked",
            Some(&env.tech),
            lock(&serial),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("already_recorded"))
    );
    assert_eq!(export().await.lines().nth(1).unwrap(), row);
    let actions = env.audit_actions().await;
    for a in ["product.lock_units", "lock", "lock.duplicate"] {
        assert!(actions.contains(&a.to_string()), "{a} in {actions:?}");
    }
}
