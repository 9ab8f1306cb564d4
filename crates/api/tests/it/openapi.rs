//! The generated document describes every operation fully enough to implement a client from.

use imprint_api::{Media, Op, openapi};
use serde_json::Value;

fn doc() -> Value {
    serde_json::from_str(&openapi::document_json()).unwrap()
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_operation_has_its_answer_its_errors_and_its_body() {
    let d = doc();
    for op in Op::ALL {
        let r = op.route();
        let path = format!("/api/v1{}", r.path);
        let o = &d["paths"][&path][r.method.as_str().to_lowercase()];
        assert!(o.is_object(), "{op:?} missing at {path}");
        let ok = &o["responses"]["200"]["content"];
        let media = if r.gives == Media::Csv {
            "text/csv"
        } else {
            "application/json"
        };
        assert!(
            ok[media]["schema"].is_object(),
            "{op:?}: no schema for its answer"
        );
        assert!(
            o["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap()
                .ends_with("/ErrorBody")
        );
        assert!(o["responses"]["500"].is_object(), "{op:?}");
        if r.takes == Media::Json {
            assert_eq!(o["requestBody"]["required"], Value::Bool(true), "{op:?}");
        }
    }
}

#[test]
fn every_reference_resolves_and_required_fields_are_marked() {
    let d = doc();
    let mut all = Vec::new();
    refs(&d, &mut all);
    assert!(all.len() > 50);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            d["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    let report = &d["components"]["schemas"]["ReportRequest"];
    let required: Vec<&str> = report["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in ["apparatus_id", "product_serial", "receipt", "station"] {
        assert!(required.contains(&f), "{f} not required: {required:?}");
    }
    let hex32 = &d["components"]["schemas"]["Hex32"];
    assert_eq!(hex32["minLength"], 64);
    assert_eq!(hex32["maxLength"], 64);
    let id = &d["components"]["schemas"]["ApparatusIdText"];
    assert_eq!(id["maxLength"], 32);
    let codes = d["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(codes.len(), imprint_api::ErrorCode::ALL.len());
}
