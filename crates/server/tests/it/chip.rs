//! Chip-bound products: each record is sealed (format 0x02) for the chip the station names,
//! opens in that unit only, is issued one at a time and never leased, and a remap seals it
//! again for the same chip.

use axum::http::{Method, StatusCode};
use imprint_core::Reply;
use imprint_device::sim::SimDevice;
use serde_json::{Value, json};

use crate::Env;

const CHIPPED: &str = "CAM-C200";

/// The product CAM-C200, chip-bound, on key 1, with a quota for factory fa.
async fn chip_bound_product(env: &Env) {
    let a = Some(env.admin.as_str());
    let (s, v) = env
        .call(
            Method::PUT,
            &format!("/api/v1/products/{CHIPPED}"),
            a,
            json!({"key_id": 1, "chip_bound": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = env
        .call(
            Method::PUT,
            &format!("/api/v1/factories/fa/quotas/{CHIPPED}"),
            a,
            json!({"limit": 10}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn issue_for(env: &Env, body: Value) -> (StatusCode, Value) {
    env.call(Method::POST, "/api/v1/issue", Some(&env.tech), body)
        .await
}

#[tokio::test]
async fn a_chip_bound_record_installs_in_its_unit_only() {
    let env = Env::new(20, 10).await;
    chip_bound_product(&env).await;
    let (s, v) = env
        .call(
            Method::GET,
            "/api/v1/products",
            Some(&env.admin),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let listed: Vec<(String, bool)> = v["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["product_code"].as_str().unwrap().to_string(),
                p["chip_bound"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(listed.contains(&(CHIPPED.to_string(), true)), "{listed:?}");
    assert!(
        listed.contains(&(crate::PRODUCT.to_string(), false)),
        "{listed:?}"
    );

    let mut unit = SimDevice::demo(7);
    let mut other = SimDevice::demo(8);
    let chip = unit.usb_serial();
    let (s, v) = issue_for(
        &env,
        json!({"product_code": CHIPPED, "count": 1, "chip_id": chip}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rec = v["records"][0].clone();
    let bytes = hex::decode(rec["sealed"].as_str().unwrap()).unwrap();
    assert_eq!(
        (bytes[0], bytes[1]),
        (0x02, 0x01),
        "format 0x02, chip-bound"
    );
    // Another unit of the same model cannot open it.
    assert!(
        matches!(crate::install_reply(&mut other, &rec), Reply::Error(_)),
        "a chip-bound record opened in another unit"
    );
    // Its own unit installs it, and the report is recorded.
    let (receipt, serial) = crate::install(&mut unit, &rec);
    let (s, v) = env
        .report(
            &env.tech,
            rec["apparatus_id"].as_str().unwrap(),
            &serial,
            &receipt,
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("recorded")),
        "{v}"
    );
}

#[tokio::test]
async fn chip_bound_issues_are_one_per_named_chip_and_never_leased() {
    let env = Env::new(20, 10).await;
    chip_bound_product(&env).await;
    let chip = SimDevice::demo(3).usb_serial();
    for (body, says) in [
        (
            json!({"product_code": CHIPPED, "count": 1}),
            "with the unit's chip_id",
        ),
        (
            json!({"product_code": CHIPPED, "count": 2, "chip_id": chip}),
            "one record per unit",
        ),
        (
            json!({"product_code": crate::PRODUCT, "count": 1, "chip_id": chip}),
            "not chip-bound",
        ),
        (
            json!({"product_code": CHIPPED, "count": 1, "chip_id": "XYZ"}),
            "chip ID",
        ),
    ] {
        let (s, v) = issue_for(&env, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let (s, v) = env
        .call(
            Method::POST,
            "/api/v1/leases",
            Some(&env.tech),
            json!({"product_code": CHIPPED, "count": 2, "hours": 8}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("a lease cannot know"),
        "{v}"
    );
    // Nothing was issued by the refusals: the quota is untouched.
    let (s, v) = issue_for(
        &env,
        json!({"product_code": CHIPPED, "count": 1, "chip_id": chip}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let used: i64 = sqlx::Row::get(
        &sqlx::query("SELECT used FROM quotas WHERE factory_id = 'fa' AND product_code = $1")
            .bind(CHIPPED)
            .fetch_one(env.state.store.pool())
            .await
            .unwrap(),
        "used",
    );
    assert_eq!(used, 1);
    // A product's binding is fixed when it is first mapped.
    let (s, v) = env
        .call(
            Method::PUT,
            &format!("/api/v1/products/{CHIPPED}"),
            Some(&env.admin),
            json!({"key_id": 2, "chip_bound": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn a_remap_seals_an_outstanding_chip_bound_record_again_for_the_same_chip() {
    let env = Env::new(20, 10).await;
    chip_bound_product(&env).await;
    // Units that hold keys 1 and 2, as units built across a key rotation would.
    let both = |n| SimDevice::new(imprint_device::sim::demo_config(n, "CAM-X100", &[1, 2]));
    let mut unit = both(5);
    let mut other = both(6);
    let (s, v) = issue_for(
        &env,
        json!({"product_code": CHIPPED, "count": 1, "chip_id": unit.usb_serial()}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["records"][0]["apparatus_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = env
        .call(
            Method::PUT,
            &format!("/api/v1/products/{CHIPPED}"),
            Some(&env.admin),
            json!({"key_id": 2}),
        )
        .await;
    assert_eq!(
        (s, v["resealed"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    let (_, v) = env
        .call(Method::GET, "/api/v1/records", Some(&env.tech), json!(null))
        .await;
    let rec = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["apparatus_id"] == id.as_str())
        .unwrap()
        .clone();
    let bytes = hex::decode(rec["sealed"].as_str().unwrap()).unwrap();
    assert_eq!(
        &bytes[..6],
        &[0x02, 0x01, 0, 0, 0, 2],
        "v2, chip-bound, key 2"
    );
    assert!(matches!(
        crate::install_reply(&mut other, &rec),
        Reply::Error(_)
    ));
    let (receipt, serial) = crate::install(&mut unit, &rec);
    let (s, v) = env.report(&env.tech, &id, &serial, &receipt).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("recorded")),
        "{v}"
    );
}
