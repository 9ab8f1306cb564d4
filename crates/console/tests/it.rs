//! The console's pure state, and its requests through imprint-client against the real server's
//! router in-process: what the pages show is computed from what the server really answers.
//! Native only (the pages themselves are driven in the end-to-end test).

#![cfg(not(target_arch = "wasm32"))]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::body::Body;
use axum::http::Request as HttpRequest;
use http_body_util::BodyExt;
use imprint_api::{
    Activity, ActivityQuery, AuditEntry, AuditPage, FactoryList, FactoryOverview, ImportCsv,
    InstallCount, LeaseOverview, ListFactories, Method, PoolLevel, QuotaUse, SessionToken,
};
use imprint_client::{Payload, ServerError, Transport, call, login};
use imprint_console::state::activity::{installs, refusal_meaning};
use imprint_console::state::audit::{Field, PAGE, Pager, Search, to_csv};
use imprint_console::state::overview::{Level, alerts, bar, drawable, duration, outstanding};
use imprint_core::{FactoryId, KeyId, ProductCode};
use tower::ServiceExt;

fn code(s: &str) -> ProductCode {
    ProductCode::new(s).unwrap()
}

fn quota(limit: u64, used: u64, open: u64) -> QuotaUse {
    QuotaUse {
        product_code: code("CAM-X100"),
        limit,
        used,
        open,
    }
}

fn factory(id: &str, quotas: Vec<QuotaUse>, leases: Vec<LeaseOverview>) -> FactoryOverview {
    FactoryOverview {
        factory_id: FactoryId::new(id).unwrap(),
        name: id.to_uppercase(),
        quotas,
        leases,
        installed: 0,
    }
}

fn list(factories: Vec<FactoryOverview>, available: u64) -> FactoryList {
    FactoryList {
        factories,
        pools: vec![PoolLevel {
            product_code: code("CAM-X100"),
            key_id: KeyId::new(1).unwrap(),
            available,
        }],
        now_ms: 1_000_000,
    }
}

#[test]
fn quotas_and_pools_raise_alerts_before_a_line_stops() {
    // Plenty left everywhere: no alert.
    let calm = list(vec![factory("fa", vec![quota(100, 50, 5)], vec![])], 1000);
    assert_eq!(alerts(&calm), []);
    // Less than a tenth left: low; all used: out, listed first.
    let l = list(
        vec![
            factory("fa", vec![quota(100, 91, 0)], vec![]),
            factory("fb", vec![quota(10, 10, 2)], vec![]),
        ],
        1000,
    );
    let a = alerts(&l);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0].level, Level::Out);
    assert!(
        a[0].text
            .starts_with("fb: quota for CAM-X100 used up (10 of 10)"),
        "{a:?}"
    );
    assert_eq!(a[1].level, Level::Low);
    assert!(a[1].text.contains("9 left"), "{a:?}");
    // The pool holds fewer entries than the quotas still allow: low; none: out.
    let short = list(vec![factory("fa", vec![quota(100, 0, 0)], vec![])], 40);
    assert_eq!(drawable(&short, &code("CAM-X100")), 100);
    let a = alerts(&short);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].level, Level::Low);
    assert!(
        a[0].text
            .contains("40 entries in the pool, the factories' quotas allow 100 more")
    );
    let empty = list(vec![factory("fa", vec![quota(100, 0, 0)], vec![])], 0);
    assert_eq!(alerts(&empty)[0].level, Level::Out);
    // A pool nobody may draw from any more raises nothing.
    let done = list(vec![factory("fa", vec![quota(5, 5, 0)], vec![])], 0);
    assert!(alerts(&done).iter().all(|a| !a.text.contains("pool")));
}

#[test]
fn a_lease_about_to_expire_with_records_left_is_an_alert() {
    let lease = |open: u64, in_ms: u64| LeaseOverview {
        lease_id: "L-1".into(),
        product_code: code("CAM-X100"),
        records: 10,
        open,
        not_after_ms: 1_000_000 + in_ms,
    };
    let soon = list(
        vec![factory("fa", vec![], vec![lease(3, 40 * 60_000)])],
        1000,
    );
    let a = alerts(&soon);
    assert_eq!(a.len(), 1);
    assert!(
        a[0].text
            .contains("expires in 40 min with 3 record(s) not installed"),
        "{a:?}"
    );
    // Later, or with every record used: nothing to do.
    assert_eq!(
        alerts(&list(
            vec![factory("fa", vec![], vec![lease(3, 5 * 3_600_000)])],
            1000
        )),
        []
    );
    assert_eq!(
        alerts(&list(
            vec![factory("fa", vec![], vec![lease(0, 60_000)])],
            1000
        )),
        []
    );
}

#[test]
fn a_quota_bar_shows_installed_and_open_parts_of_the_limit() {
    assert_eq!(bar(&quota(10, 6, 4)), (20, 40));
    assert_eq!(bar(&quota(0, 0, 0)), (0, 0));
    // Over the limit (a quota lowered after issuing): never more than the whole bar.
    let (done, open) = bar(&quota(10, 15, 3));
    assert!(done + open <= 100, "{done} {open}");
    // Open can never exceed used.
    assert_eq!(bar(&quota(100, 5, 50)), (0, 5));
    assert_eq!(duration(0), "under a minute");
    assert_eq!(duration(40 * 60_000), "40 min");
    assert_eq!(duration(3 * 3_600_000), "3 h");
    assert_eq!(duration(7 * 3_600_000 + 59 * 60_000), "7 h 59 min");
    let l = list(
        vec![
            factory("fa", vec![quota(10, 6, 4)], vec![]),
            factory("fb", vec![quota(10, 1, 1)], vec![]),
        ],
        0,
    );
    assert_eq!(outstanding(&l, &code("CAM-X100")), 5);
    assert_eq!(outstanding(&l, &code("CAM-C200")), 0);
}

#[test]
fn installs_become_one_series_per_factory_and_station_over_every_hour() {
    let hour = 3_600_000u64;
    let c = |h: u64, f: &str, s: &str, n: u64| InstallCount {
        hour_ms: 100 * hour + h * hour,
        factory_id: FactoryId::new(f).unwrap(),
        station: s.into(),
        count: n,
    };
    let a = Activity {
        from_ms: 100 * hour,
        now_ms: 103 * hour + 5,
        installs: vec![
            c(0, "fa", "line-1", 4),
            c(2, "fa", "line-1", 6),
            c(3, "fb", "<b>x</b>", 1),
        ],
        refused: vec![],
    };
    let i = installs(&a);
    assert_eq!(i.total, 11);
    assert_eq!(
        i.series,
        vec![
            (
                "fa / line-1".to_string(),
                vec![Some(4), Some(0), Some(6), Some(0)]
            ),
            (
                "fb / <b>x</b>".to_string(),
                vec![Some(0), Some(0), Some(0), Some(1)]
            ),
        ]
    );
    let html = i.to_html(|ms| format!("{:02}:00", (ms / hour) % 24));
    assert!(html.contains("Units installed per hour, by factory and station"));
    assert!(
        html.contains("&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>x</b>"),
        "a station's name is text"
    );
    // An hour outside the answer's range is not drawn (and does not panic).
    let odd = Activity {
        installs: vec![c(9, "fa", "line-1", 1)],
        ..a
    };
    assert_eq!(installs(&odd).total, 0);
    let none = installs(&Activity {
        from_ms: 0,
        now_ms: 0,
        installs: vec![],
        refused: vec![],
    });
    assert!(
        none.to_html(|_| String::new())
            .contains("no units installed in these hours")
    );
    assert!(refusal_meaning("bad_receipt").contains("forged"));
    assert!(refusal_meaning("something_new").contains("docs/server.md"));
}

fn entry(seq: u64, detail: &str) -> AuditEntry {
    AuditEntry {
        seq,
        at: "1700000000000".into(),
        actor: "tech-ana".into(),
        action: "report".into(),
        detail: detail.into(),
        prev_hash: "0".repeat(64),
        hash: "1".repeat(64),
    }
}

#[test]
fn a_search_becomes_the_query_and_pages_go_newest_first() {
    let q = Search {
        field: Field::All,
        term: "ignored".into(),
    }
    .query(u64::MAX)
    .unwrap();
    assert_eq!(
        (q.before, q.limit, q.unit.clone()),
        (Some(u64::MAX), Some(PAGE), None)
    );
    let q = Search {
        field: Field::Unit,
        term: " SIM-000001 ".into(),
    }
    .query(500)
    .unwrap();
    assert_eq!(
        (q.unit.as_deref(), q.before),
        (Some("SIM-000001"), Some(500))
    );
    let q = Search {
        field: Field::Station,
        term: "line-1".into(),
    }
    .query(9)
    .unwrap();
    assert_eq!(q.station.as_deref(), Some("line-1"));
    let q = Search {
        field: Field::Action,
        term: "report".into(),
    }
    .query_of(7, imprint_console::state::audit::EXPORT_PAGE)
    .unwrap();
    assert_eq!(
        (q.limit, q.before, q.action.as_deref()),
        (Some(1000), Some(7), Some("report"))
    );
    let e = Search {
        field: Field::Actor,
        term: "  ".into(),
    }
    .query(9)
    .unwrap_err();
    assert!(e.contains("Technician or user"), "{e}");
    for f in Field::ALL {
        assert_eq!(Field::of_key(f.key()), Some(f));
    }
    // Paging: older from a full page, back to newer; a short page is the last.
    let mut p = Pager::new();
    assert!(p.at_newest());
    let full = AuditPage {
        entries: (0..PAGE).map(|i| entry(1000 - i, "{}")).collect(),
        latest: 1000,
    };
    assert!(p.older(&full));
    assert_eq!((p.before(), p.number()), (1000 - (PAGE - 1), 2));
    let short = AuditPage {
        entries: vec![entry(3, "{}")],
        latest: 1000,
    };
    assert!(!Pager::has_older(&short));
    assert!(!p.older(&short));
    assert!(p.newer());
    assert!(p.at_newest() && !p.newer());
    assert_eq!(p.before(), u64::MAX);
}

#[test]
fn an_export_is_csv_that_no_spreadsheet_runs() {
    let mut e = entry(7, "{\"station\":\"line, 1\"}");
    e.actor = "=HYPERLINK(\"x\")".into();
    let csv = to_csv(&[e]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("seq,at_ms,actor,action,detail,hash"));
    let row = lines.next().unwrap();
    assert!(row.starts_with("7,1700000000000,\"'=HYPERLINK(\"\"x\"\")\",report,\"{\"\"station\"\":\"\"line, 1\"\"}\","), "{row}");
}

/// The real server's router, in-process, as a transport of imprint-client.
struct InProcess {
    app: axum::Router,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Transport for InProcess {
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Payload>,
    ) -> Result<(u16, String), String> {
        let mut req = HttpRequest::builder()
            .method(imprint_server::api::method(method))
            .uri(path);
        if let Some(b) = bearer {
            req = req.header("authorization", b);
        }
        let req = match body {
            Some(p) => req
                .header("content-type", p.content_type())
                .body(Body::from(p.text)),
            None => req.body(Body::empty()),
        }
        .map_err(|e| e.to_string())?;
        let res = self
            .app
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

async fn server() -> (InProcess, SessionToken) {
    use imprint_server::service;
    use rand_core::Rng;
    let mut b = [0u8; 8];
    imprint_server::rng().fill_bytes(&mut b);
    let dir = std::env::temp_dir().join(format!("imprint-console-test-{}", hex::encode(b)));
    std::fs::create_dir_all(&dir).unwrap();
    let state = imprint_server::AppState::new(
        imprint_server::store::Store::open_sqlite(&dir.join("imprint.db"))
            .await
            .unwrap(),
        imprint_server::kek::Kek::generate().0,
    );
    let k1 = KeyId::new(1).unwrap();
    service::add_key_bytes(&state, "t", k1, imprint_device::sim::demo_key(k1))
        .await
        .unwrap();
    service::map_product(&state, "t", code("CAM-X100"), k1, None)
        .await
        .unwrap();
    service::generate(&state, "t", k1, 30, "IMP-")
        .await
        .unwrap();
    let fa = FactoryId::new("fa").unwrap();
    service::add_factory(&state, "t", fa, "A").await.unwrap();
    service::set_quota(&state, "t", fa, code("CAM-X100"), 28)
        .await
        .unwrap();
    let mut tx = state.store.begin().await.unwrap();
    imprint_server::auth::create_user(&mut tx, "t", "boss", "password-123", "admin", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let server = InProcess {
        app: imprint_server::app(state),
        _dir: TempDir(dir),
    };
    let token = login(&server, "boss", "password-123").await.unwrap().token;
    (server, token)
}

#[tokio::test]
async fn the_overview_from_the_real_server_raises_the_pools_alert() {
    let (s, token) = server().await;
    let o = call(&s, Some(&token), &ListFactories).await.unwrap();
    assert_eq!(o.factories.len(), 1);
    assert_eq!(o.pools[0].available, 30);
    // 28 of quota left, 30 in the pool: calm.
    assert_eq!(alerts(&o), []);
    let a = call(&s, Some(&token), &ActivityQuery { hours: Some(3) })
        .await
        .unwrap();
    assert_eq!(installs(&a).series.len(), 0);
}

#[tokio::test]
async fn a_file_with_a_bad_line_is_refused_line_by_line_and_nothing_is_imported() {
    let (s, token) = server().await;
    let good = "apparatus_id,pass_phrase,key_id\nCSV-0001,correct-horse-battery-1,1\nCSV-0002,correct-horse-battery-2,1\n";
    let bad = format!("{good}CSV-0003,tiny9pw,1\n");
    match call(&s, Some(&token), &ImportCsv(bad)).await {
        Err(ServerError::BadLines { lines, message }) => {
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0].line, 4);
            assert!(
                !lines[0].reason.contains("tiny9pw"),
                "no pass phrase in a reason: {}",
                lines[0].reason
            );
            assert!(!message.is_empty());
        }
        other => panic!("expected the file refused by line, got {other:?}"),
    }
    let o = call(&s, Some(&token), &ListFactories).await.unwrap();
    assert_eq!(o.pools[0].available, 30, "nothing imported");
    let done = call(&s, Some(&token), &ImportCsv(good.into()))
        .await
        .unwrap();
    assert_eq!(done.imported, 2);
    let o = call(&s, Some(&token), &ListFactories).await.unwrap();
    assert_eq!(o.pools[0].available, 32);
    // The log has both imports' outcomes, found by action, newest first.
    let q = Search {
        field: Field::Action,
        term: "authinfo.import".into(),
    }
    .query(u64::MAX)
    .unwrap();
    let page = call(&s, Some(&token), &q).await.unwrap();
    assert_eq!(
        page.entries.len(),
        1,
        "the refused file left no import entry"
    );
    assert!(page.entries[0].detail.contains("\"count\":2"));
}

#[tokio::test]
async fn the_installed_export_is_read_as_text_and_json_answers_are_not() {
    let (s, token) = server().await;
    let csv = imprint_client::call_text(&s, Some(&token), &imprint_api::ExportInstalled)
        .await
        .unwrap();
    assert!(
        csv.starts_with("apparatus_id,product_serial,factory"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1, "no unit installed yet");
    match imprint_client::call_text(&s, Some(&token), &ListFactories).await {
        Err(ServerError::Request(why)) => assert!(why.contains("answers JSON"), "{why}"),
        other => panic!("{other:?}"),
    }
    match imprint_client::call_text(&s, None, &imprint_api::ExportInstalled).await {
        Err(ServerError::Refused { code, .. }) => {
            assert_eq!(code, imprint_api::ErrorCode::Unauthorized)
        }
        other => panic!("{other:?}"),
    }
    let unknown = imprint_api::Revoke {
        apparatus_id: imprint_core::ApparatusId::new("IMP-0000009999").unwrap(),
    };
    match call(&s, Some(&token), &unknown).await {
        Err(ServerError::Refused { code, .. }) => {
            assert_eq!(code, imprint_api::ErrorCode::NotFound)
        }
        other => panic!("{other:?}"),
    }
}
