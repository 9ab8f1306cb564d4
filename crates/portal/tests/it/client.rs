//! The portal's client reads every kind of answer as what it is: the contract's answer, the
//! server's refusal by its code, no answer (offline), or an answer it does not understand
//! (which is neither offline nor a refusal).

use imprint_api::{ErrorCode, Method, RecordList};
use imprint_core::ProductCode;
use imprint_portal::client::{Client, Transport, read};
use imprint_portal::error::ServerError;
use imprint_portal::state::diagnose::Diagnosis;
use imprint_portal::state::journal::Journal;
use imprint_portal::station::reconcile;

use crate::harness::InProcess;

#[test]
fn answers_refusals_and_garbage_are_told_apart() {
    let ok: RecordList = read(200, r#"{"records": []}"#).unwrap();
    assert!(ok.records.is_empty());
    assert_eq!(
        read::<RecordList>(
            403,
            r#"{"error": "over_quota", "message": "quota exceeded"}"#
        ),
        Err(ServerError::Refused {
            code: ErrorCode::OverQuota,
            message: "quota exceeded".into()
        })
    );
    // A server whose database is away for a moment is as good as offline: try again later.
    assert_eq!(
        read::<RecordList>(
            503,
            r#"{"error": "unavailable", "message": "the server cannot reach its database"}"#
        ),
        Err(ServerError::Offline(
            "the server cannot reach its database".into()
        ))
    );
    for (status, text) in [
        (200, "<html>proxy login</html>"),
        (200, r#"{"records": [{"apparatus_id": "A"}]}"#),
        (502, "<html>Bad Gateway</html>"),
        (
            403,
            r#"{"error": "a_code_from_the_future", "message": "m"}"#,
        ),
    ] {
        let e = read::<RecordList>(status, text).unwrap_err();
        assert!(
            matches!(e, ServerError::Unintelligible { status: s, .. } if s == status),
            "{status} {text}: {e:?}"
        );
        let d = Diagnosis::from_server(&e);
        assert!(d.title.contains("not understood"), "{d:?}");
    }
}

/// A server that answers every request with a proxy's error page.
struct Proxy;

impl Transport for Proxy {
    async fn send(
        &self,
        _: Method,
        _: &str,
        _: Option<&str>,
        _: Option<imprint_client::Payload>,
    ) -> Result<(u16, String), String> {
        Ok((502, "<html><h1>502 Bad Gateway</h1></html>".into()))
    }
}

/// Reconciling against an answer the station does not understand stops, keeps every report
/// pending, and says why, instead of passing for offline.
#[tokio::test]
async fn reconciling_against_garbage_says_so_and_loses_nothing() {
    let server = InProcess::new(3).await;
    let mut journal = Journal::default();
    server.fetch(&mut journal, 2).await;
    server.online.set(false);
    for n in 1..=2 {
        let mut dev = imprint_device::sim::SimDevice::demo(n);
        let mut link = crate::harness::SimLink {
            dev: &mut dev,
            seq: 0,
        };
        let cell = std::cell::RefCell::new(std::mem::take(&mut journal));
        let setup = imprint_portal::station::Setup {
            product_code: ProductCode::new("CAM-X100").unwrap(),
            chip_bound: false,
            closed_loop: true,
            lock_units: false,
            now_ms: 0,
        };
        let mut rec = crate::harness::Recorder::default();
        let _ =
            imprint_portal::station::provision(&mut link, &server, &cell, &setup, &mut rec).await;
        journal = cell.into_inner();
    }
    assert_eq!(journal.unreported().count(), 2);
    let proxy = Client {
        transport: Proxy,
        token: server.token.clone(),
        station: "st-1".into(),
    };
    let cell = std::cell::RefCell::new(journal);
    let r = reconcile(&proxy, &cell).await;
    assert_eq!((r.recorded, r.pending), (0, 2));
    assert!(
        matches!(
            r.unintelligible,
            Some(ServerError::Unintelligible { status: 502, .. })
        ),
        "{r:?}"
    );
    // The real server answers: both are recorded.
    server.online.set(true);
    let r = reconcile(&server, &cell).await;
    assert_eq!((r.recorded, r.pending), (2, 0), "{r:?}");
}
