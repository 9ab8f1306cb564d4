//! Several servers on one database, as several `imprint serve` processes behind a load balancer
//! would be: each has its own connection pool and memory, and only the database is shared. On
//! the PostgreSQL run these are several pools on one PostgreSQL database; on the SQLite run,
//! several pools on one file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use imprint_device::sim::SimDevice;
use serde_json::{Value, json};

use crate::flow::{answer, challenge, verify};
use crate::{Env, PRODUCT, install};

const SERVERS: usize = 3;
const STATIONS: usize = 32;
const ROUNDS: usize = 3;
const PER_ISSUE: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_stations_on_three_servers_never_double_issue_nor_lose_a_report() {
    let first = Env::new((STATIONS * ROUNDS * PER_ISSUE) as u64 + 10, 100).await;
    let mut servers = vec![];
    for _ in 1..SERVERS {
        servers.push(Arc::new(first.peer().await));
    }
    let first = Arc::new(first);
    servers.insert(0, first.clone());
    let mut tasks = Vec::new();
    for station in 0..STATIONS {
        let servers = servers.clone();
        tasks.push(tokio::spawn(async move {
            // Half the stations are factory a's, half factory b's.
            let token = if station % 2 == 0 {
                servers[0].tech.clone()
            } else {
                servers[0].tech_b.clone()
            };
            let mut issued = Vec::new();
            let mut recorded = Vec::new();
            for round in 0..ROUNDS {
                // Each request goes to the next server, as a round-robin balancer sends them.
                let server = &servers[(station + round) % SERVERS];
                let recs = server.issue(&token, PER_ISSUE as u64).await;
                assert_eq!(recs.len(), PER_ISSUE);
                for (k, rec) in recs.iter().enumerate() {
                    let id = rec["apparatus_id"].as_str().unwrap().to_string();
                    issued.push(id.clone());
                    let n = (station * 100 + round * 10 + k) as u32;
                    let mut dev = SimDevice::demo(n);
                    let (receipt, serial) = install(&mut dev, rec);
                    let other = &servers[(station + round + 1 + k) % SERVERS];
                    let (s, v) = other.report(&token, &id, &serial, &receipt).await;
                    assert_eq!(
                        (s, v["status"].as_str()),
                        (StatusCode::OK, Some("recorded")),
                        "{v}"
                    );
                    recorded.push((id, serial));
                }
            }
            (issued, recorded)
        }));
    }
    let mut issued = Vec::new();
    let mut recorded = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        issued.extend(i);
        recorded.extend(r);
    }
    let total = STATIONS * ROUNDS * PER_ISSUE;
    let unique: HashSet<&String> = issued.iter().collect();
    assert_eq!(
        (issued.len(), unique.len()),
        (total, total),
        "an identity was issued twice"
    );
    // Every acknowledged report is in table 704, once, under its own serial.
    let csv = imprint_server::service::export_installed(&servers[2].state)
        .await
        .unwrap();
    let installed: HashMap<String, String> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect();
    assert_eq!(installed.len(), total);
    for (id, serial) in &recorded {
        assert_eq!(installed.get(id), Some(serial), "report of {id} lost");
    }
    // The quota counted every record once, on every server's view.
    for server in &servers {
        let (s, v) = server
            .call(
                Method::POST,
                "/api/v1/issue",
                Some(&server.tech),
                json!({"product_code": PRODUCT, "count": 100}),
            )
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("over_quota")),
            "{v}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{} left", 100 - STATIONS / 2 * ROUNDS * PER_ISSUE)),
            "{v}"
        );
    }
    // One audit order, unbroken, with every issue and report in it once.
    let (s, v) = servers[1]
        .call(
            Method::GET,
            "/api/v1/audit/verify",
            Some(&servers[1].auditor),
            Value::Null,
        )
        .await;
    assert_eq!((s, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let actions = servers[0].audit_actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "issue").count(),
        STATIONS * ROUNDS
    );
    assert_eq!(actions.iter().filter(|a| *a == "report").count(), total);
}

#[tokio::test]
async fn a_change_through_one_server_holds_on_the_next_request_to_another() {
    let a = Env::new(20, 100).await;
    let b = a.peer().await;
    // A user added through a signs in through b.
    let (s, v) = a
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&a.admin),
            json!({"username": "tech-c", "password": "password-123", "role": "technician", "factory_id": "fa"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tech_c = b.login("tech-c").await;
    // A quota lowered through a holds on b.
    let (s, v) = a
        .call(
            Method::PUT,
            &format!("/api/v1/factories/fa/quotas/{PRODUCT}"),
            Some(&a.admin),
            json!({"limit": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let recs = b.issue(&tech_c, 2).await;
    let (s, v) = b
        .call(
            Method::POST,
            "/api/v1/issue",
            Some(&tech_c),
            json!({"product_code": PRODUCT, "count": 2}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("over_quota")),
        "{v}"
    );
    // A remap through a: b's next download is sealed under the new key.
    let (s, v) = a
        .call(
            Method::PUT,
            &format!("/api/v1/products/{PRODUCT}"),
            Some(&a.admin),
            json!({"key_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = b
        .call(Method::GET, "/api/v1/records", Some(&tech_c), Value::Null)
        .await;
    let open = v["records"].as_array().unwrap();
    assert_eq!(open.len(), 2);
    assert!(open.iter().all(|r| r["key_id"] == 2), "{v}");
    assert!(recs.iter().all(|r| r["key_id"] == 1));
    // Installed and reported through b, revoked through a: b refuses it at once.
    let mut dev = SimDevice::new(imprint_device::sim::demo_config(
        5,
        imprint_device::sim::DEMO_PRODUCT,
        &[2],
    ));
    let (receipt, serial) = install(&mut dev, &open[0]);
    let id = open[0]["apparatus_id"].as_str().unwrap();
    let (s, v) = b.report(&tech_c, id, &serial, &receipt).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = challenge(&b, id).await;
    assert!(verify(&b, id, c, answer(&mut dev, c)).await);
    let (s, _) = a
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/revoke"),
            Some(&a.admin),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let c = challenge(&b, id).await;
    assert!(
        !verify(&b, id, c, answer(&mut dev, c)).await,
        "revoked on a, accepted on b"
    );
    // A sign-out through a ends the session on b.
    let (s, _) = a
        .call(Method::POST, "/api/v1/logout", Some(&tech_c), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = b
        .call(Method::GET, "/api/v1/records", Some(&tech_c), Value::Null)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remap_while_stations_issue_leaves_no_open_record_under_the_old_key() {
    use sqlx::Row;
    let a = Arc::new(Env::new(400, 400).await);
    // Entries under the new key too, for the issues after the remap.
    imprint_server::service::generate(
        &a.state,
        "test",
        imprint_core::KeyId::new(2).unwrap(),
        400,
        "NEW-",
    )
    .await
    .unwrap();
    let b = Arc::new(a.peer().await);
    let issuing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (server, issuing) = (
            if t % 2 == 0 { a.clone() } else { b.clone() },
            issuing.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while issuing.load(std::sync::atomic::Ordering::SeqCst) && n < 20 {
                server.issue(&server.tech, 2).await;
                n += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (s, v) = a
        .call(
            Method::PUT,
            &format!("/api/v1/products/{PRODUCT}"),
            Some(&a.admin),
            json!({"key_id": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A few more issues after the remap, then stop.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    issuing.store(false, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let stale: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM factory_records r JOIN product_codes p ON p.product_code = r.product_code \
         WHERE r.product_serial IS NULL AND r.key_id <> p.key_id",
    )
    .fetch_one(a.state.store.pool())
    .await
    .unwrap()
    .get("n");
    assert_eq!(stale, 0, "records issued during the remap kept the old key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_challenge_answered_on_two_servers_at_once_authenticates_once() {
    let a = Arc::new(Env::new(4, 10).await);
    let b = Arc::new(a.peer().await);
    let recs = a.issue(&a.tech, 1).await;
    let id = recs[0]["apparatus_id"].as_str().unwrap().to_string();
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = install(&mut dev, &recs[0]);
    a.report(&a.tech, &id, &serial, &receipt).await;
    for _ in 0..5 {
        // One challenge, its right answer sent 40 times at once, half to each server: the
        // answers share batches, and batches of both servers race for the one use.
        let c = challenge(&a, &id).await;
        let r = answer(&mut dev, c);
        let mut tasks = Vec::new();
        for n in 0..40 {
            let server = if n % 2 == 0 { a.clone() } else { b.clone() };
            let id = id.clone();
            tasks.push(tokio::spawn(
                async move { verify(&server, &id, c, r).await },
            ));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 1, "a challenge authenticates exactly once");
    }
    // Many devices' answers at once, on both servers: each its own, all accepted.
    let recs = a.issue(&a.tech, 3).await;
    let mut devs = Vec::new();
    for (n, rec) in recs.iter().enumerate() {
        let mut dev = SimDevice::demo(10 + n as u32);
        let (receipt, serial) = install(&mut dev, rec);
        let id = rec["apparatus_id"].as_str().unwrap().to_string();
        a.report(&a.tech, &id, &serial, &receipt).await;
        devs.push((id, dev));
    }
    let mut tasks = Vec::new();
    for round in 0..30 {
        for (id, dev) in devs.iter_mut() {
            let server = if round % 2 == 0 { a.clone() } else { b.clone() };
            let c = challenge(&server, id).await;
            let r = answer(dev, c);
            let id = id.clone();
            tasks.push(tokio::spawn(
                async move { verify(&server, &id, c, r).await },
            ));
        }
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let (s, v) = a
        .call(
            Method::GET,
            "/api/v1/audit/verify",
            Some(&a.auditor),
            Value::Null,
        )
        .await;
    assert_eq!((s, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
}

#[tokio::test]
async fn failed_sign_ins_spread_over_two_servers_are_braked_as_on_one() {
    let a = Env::new(0, 10).await;
    let b = a.peer().await;
    // Five failures per name are allowed; the sixth starts a wait. Spread over two servers,
    // each sees three: braked all the same.
    for n in 0..6 {
        let server = if n % 2 == 0 { &a } else { &b };
        assert_eq!(
            sign_in(server, "wrong-password").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        sign_in(&a, "password-123").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        sign_in(&b, "password-123").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn sign_in(env: &Env, password: &str) -> StatusCode {
    let body = json!({"username": "admin", "password": password});
    env.call(Method::POST, "/api/v1/login", None, body).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_sign_ins_at_the_same_moment_all_count() {
    use imprint_server::throttle::{Allowance, Throttle};
    use sqlx::Row;
    let a = Arc::new(Env::new(0, 10).await);
    let b = Arc::new(a.peer().await);
    // An allowance of an hour per failure: after n failures the key's time is n hours ahead,
    // to the millisecond, if every failure counted.
    let hour = std::time::Duration::from_secs(3600);
    let brake = Throttle::new(
        Allowance {
            burst: std::num::NonZeroU32::new(1000).unwrap(),
            every: hour,
        },
        Allowance {
            burst: std::num::NonZeroU32::new(1000).unwrap(),
            every: hour,
        },
    );
    let start = imprint_server::now_millis();
    let mut tasks = Vec::new();
    for n in 0..24 {
        let server = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            server
                .state
                .store
                .write(&brake, |tx, brake| {
                    Box::pin(brake.failed(tx, [7; 16], None, imprint_server::now_millis()))
                })
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let tat: i64 = sqlx::query("SELECT tat_ms FROM login_brakes WHERE brake_key LIKE 'name:%'")
        .fetch_one(a.state.store.pool())
        .await
        .unwrap()
        .get("tat_ms");
    let hours = (tat - start) as f64 / 3_600_000.0;
    assert!(
        (24.0..24.01).contains(&hours),
        "24 failures at once counted as {hours:.3} hours"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_whose_stored_value_does_not_open_fails_alone_not_its_batch() {
    let env = Arc::new(Env::new(4, 10).await);
    let recs = env.issue(&env.tech, 2).await;
    let mut devs = Vec::new();
    for (n, rec) in recs.iter().enumerate() {
        let mut dev = SimDevice::demo(20 + n as u32);
        let (receipt, serial) = install(&mut dev, rec);
        let id = rec["apparatus_id"].as_str().unwrap().to_string();
        env.report(&env.tech, &id, &serial, &receipt).await;
        devs.push((id, dev));
    }
    // The first device's sealed conversion value, damaged behind the server's back.
    sqlx::query("UPDATE installed_devices SET conversion_sealed = $1 WHERE apparatus_id = $2")
        .bind(vec![0u8; 60])
        .bind(devs[0].0.as_str())
        .execute(env.state.store.pool())
        .await
        .unwrap();
    for _ in 0..10 {
        let mut tasks = Vec::new();
        for (id, dev) in devs.iter_mut() {
            let c = challenge(&env, id).await;
            let r = answer(dev, c);
            let (env, id) = (env.clone(), id.clone());
            tasks.push(tokio::spawn(async move { verify(&env, &id, c, r).await }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(results, vec![false, true]);
    }
}
