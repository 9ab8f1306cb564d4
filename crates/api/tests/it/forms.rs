//! The JSON form of the bodies: typed values inside, hex and text only at the edge.

use imprint_api::{ErrorBody, ErrorCode, Record, ReportRequest, SessionToken};
use imprint_core::{ApparatusId, Receipt};
use serde_json::json;

/// A sealed record from the published vectors (crates/core/tests/vectors/sealed_records.json).
fn vector_record() -> (String, String, u32) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/vectors/sealed_records.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = &v["valid"][0];
    (
        first["apparatus_id"].as_str().unwrap().to_string(),
        first["sealed"].as_str().unwrap().to_string(),
        first["key_id"].as_u64().unwrap() as u32,
    )
}

#[test]
fn a_record_reads_and_writes_the_same_text() {
    let (id, sealed, key) = vector_record();
    let text =
        json!({"apparatus_id": id, "key_id": key, "sealed": sealed, "product_code": "CAM-X100"});
    let r: Record = serde_json::from_value(text.clone()).unwrap();
    assert_eq!(r.apparatus_id, ApparatusId::new(&id).unwrap());
    assert_eq!(r.sealed.key_id().get(), key);
    assert_eq!(serde_json::to_value(&r).unwrap(), text);
}

#[test]
fn bad_fields_are_refused_with_the_rule_never_replaced() {
    let (id, sealed, key) = vector_record();
    let ok =
        json!({"apparatus_id": id, "key_id": key, "sealed": sealed, "product_code": "CAM-X100"});
    let cases = [
        ("apparatus_id", json!("has space"), "apparatus ID"),
        ("apparatus_id", json!("A".repeat(33)), "apparatus ID"),
        ("key_id", json!(0), "key identifier"),
        ("key_id", json!(-1), "invalid value"),
        ("sealed", json!("abc"), "hex"),
        ("sealed", json!(&sealed[..20]), "sealed record"),
        ("sealed", json!("zz".repeat(60)), "hex"),
        ("product_code", json!(""), "product code"),
    ];
    for (field, value, says) in cases {
        let mut v = ok.clone();
        v[field] = value.clone();
        let e = serde_json::from_value::<Record>(v).unwrap_err().to_string();
        assert!(e.contains(says), "{field} = {value}: {e}");
    }
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("sealed");
    let e = serde_json::from_value::<Record>(missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `sealed`"), "{e}");
}

#[test]
fn a_receipt_is_exactly_64_hex_digits() {
    let body = |r: &str| json!({"apparatus_id": "IMP-1", "product_serial": "SN1", "receipt": r, "station": "st"});
    let good: ReportRequest = serde_json::from_value(body(&"ab".repeat(32))).unwrap();
    assert_eq!(good.receipt, Receipt([0xab; 32]));
    assert_eq!(
        serde_json::to_value(&good).unwrap()["receipt"],
        json!("ab".repeat(32))
    );
    let upper: ReportRequest = serde_json::from_value(body(&"AB".repeat(32))).unwrap();
    assert_eq!(upper.receipt, good.receipt);
    for bad in [
        "ab".repeat(31),
        "ab".repeat(33),
        "g".repeat(64),
        String::new(),
    ] {
        let e = serde_json::from_value::<ReportRequest>(body(&bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex digits"), "{bad}: {e}");
    }
}

#[test]
fn a_session_token_is_redacted_in_debug() {
    let t = SessionToken([7; 32]);
    assert!(!format!("{t:?}").contains("0707"));
    assert_eq!(t.bearer(), format!("Bearer {}", "07".repeat(32)));
    assert_eq!(SessionToken::from_hex(&"07".repeat(32)), Some(t));
    assert_eq!(SessionToken::from_hex("07"), None);
}

#[test]
fn the_error_body_reads_with_and_without_its_optional_parts() {
    let b: ErrorBody =
        serde_json::from_value(json!({"error": "over_quota", "message": "m"})).unwrap();
    assert_eq!(b.error, ErrorCode::OverQuota);
    assert!(b.lines.is_empty() && b.incident.is_none());
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        json!({"error": "over_quota", "message": "m"})
    );
}
