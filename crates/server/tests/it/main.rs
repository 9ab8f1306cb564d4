//! imprint-server's tests: the real router over a real database, driven with `oneshot`, and
//! simulated devices from imprint-device doing the installs. `process.rs` runs the real binary
//! and kills it mid-batch.
//!
//! The database is a fresh SQLite file per test; with `IMPRINT_TEST_DATABASE=postgres` it is a
//! fresh database per test in the PostgreSQL cluster at `IMPRINT_TEST_POSTGRES` (`cargo xtask
//! test` starts one and runs the suite both ways; `cargo xtask postgres` starts one by hand).
//!
//! The keys are in a fresh `kek.key`'s custody per test; with `IMPRINT_TEST_PKCS11=MODULE`
//! (and `IMPRINT_TEST_PKCS11_TOKEN`, `IMPRINT_TEST_PKCS11_PIN`) they are in that PKCS#11 token,
//! which `cargo xtask test` makes with SoftHSM2 and runs the suite on once more.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api;
mod audit;
mod chip;
mod console;
mod fleet;
mod flow;
mod hsm;
mod migrate;
mod model;
mod process;
mod store;
mod surface;
mod users;

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use imprint_core::{ApparatusId, KeyId, ProductSerial, Reply, Request as DevRequest, SealedRecord};
use imprint_device::sim::SimDevice;
use imprint_server::custody::Custody;
use imprint_server::store::Store;
use imprint_server::{AppState, kek::Kek, service};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A server on a fresh SQLite file in a temporary folder, with the demo set-up.
pub struct Env {
    pub app: Router,
    pub state: AppState,
    pub dir: PathBuf,
    pub admin: String,
    pub tech: String,
    pub tech_b: String,
    pub auditor: String,
    /// The database's URL, for more servers on it ([`Env::peer`]).
    pub db_url: String,
    kek: [u8; 32],
    /// Whether dropping this removes the folder (a peer shares its first server's).
    owns_dir: bool,
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    use rand_core::Rng;
    let mut b = [0u8; 8];
    imprint_server::rng().fill_bytes(&mut b);
    let dir = std::env::temp_dir().join(format!("imprint-test-{tag}-{}", hex::encode(b)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub const PRODUCT: &str = "CAM-X100";

/// Whether this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    match std::env::var("IMPRINT_TEST_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("IMPRINT_TEST_DATABASE={other}: use sqlite or postgres"),
    }
}

/// A fresh, empty PostgreSQL database in the test cluster; its URL.
pub async fn postgres_database() -> String {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("IMPRINT_TEST_POSTGRES").expect(
        "IMPRINT_TEST_DATABASE=postgres needs IMPRINT_TEST_POSTGRES, the URL of a cluster \
         (cargo xtask test sets both; cargo xtask postgres starts one by hand)",
    );
    let name = format!("t_{}", imprint_server::random_id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    conn.close().await.unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// The `DATABASE_URL` a test gives the binary: a fresh PostgreSQL database on that run of the
/// suite, none (the SQLite file in the data folder) otherwise.
pub async fn database_url() -> Option<String> {
    if on_postgres() {
        Some(postgres_database().await)
    } else {
        None
    }
}

/// The PKCS#11 module, token label and PIN of this run of the suite, if its keys are in a token.
pub fn token_args() -> Option<(PathBuf, String, String)> {
    let module = std::env::var_os("IMPRINT_TEST_PKCS11")?;
    let label = std::env::var("IMPRINT_TEST_PKCS11_TOKEN").expect(
        "IMPRINT_TEST_PKCS11 needs IMPRINT_TEST_PKCS11_TOKEN and IMPRINT_TEST_PKCS11_PIN \
         (cargo xtask test sets all three)",
    );
    let pin = std::env::var("IMPRINT_TEST_PKCS11_PIN").expect("IMPRINT_TEST_PKCS11_PIN");
    Some((PathBuf::from(module), label, pin))
}

/// Whether this run of the suite keeps its keys in a PKCS#11 token.
pub fn on_token() -> bool {
    token_args().is_some()
}

/// The keys of a test's server: the token of the run (prepared by the first test that opens
/// it), or the file key `kek`.
pub fn custody(kek: &[u8; 32]) -> Custody {
    static PREPARED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let Some((module, label, pin)) = token_args() else {
        return Custody::from(Kek::from_bytes(kek));
    };
    let mut prepared = PREPARED.lock().unwrap_or_else(|p| p.into_inner());
    let token = imprint_server::pkcs11::Token::open(&module, &label, &pin).unwrap();
    let custody = if *prepared
        || token
            .find(imprint_server::custody::LABEL_AT_REST)
            .unwrap()
            .is_some()
    {
        Custody::in_token(token).unwrap()
    } else {
        Custody::prepare_token(token).unwrap()
    };
    *prepared = true;
    custody
}

impl Env {
    /// Keys 1 and 2 (the simulated devices' demo keys), CAM-X100 -> key 1, `entries` entries,
    /// factories fa (quota `quota`) and fb (quota 100), and one user per role.
    pub async fn new(entries: u64, quota: u64) -> Env {
        let dir = temp_dir("srv");
        let (_, kek_bytes) = Kek::generate();
        let db_url = database_url()
            .await
            .unwrap_or_else(|| imprint_server::store::sqlite_url(&dir.join("imprint.db")));
        let store = Store::open(&db_url).await.unwrap();
        let keys = custody(&kek_bytes);
        keys.check(&store, true).await.unwrap();
        let state = AppState::new(store, keys);
        for k in [1, 2] {
            let id = KeyId::new(k).unwrap();
            service::add_key_bytes(&state, "test", id, imprint_device::sim::demo_key(id))
                .await
                .unwrap();
        }
        let product = imprint_core::ProductCode::new(PRODUCT).unwrap();
        service::map_product(&state, "test", product, KeyId::new(1).unwrap(), None)
            .await
            .unwrap();
        if entries > 0 {
            service::generate(&state, "test", KeyId::new(1).unwrap(), entries, "IMP-")
                .await
                .unwrap();
        }
        for (f, q) in [("fa", quota), ("fb", 100)] {
            let f = imprint_core::FactoryId::new(f).unwrap();
            service::add_factory(&state, "test", f, "Factory")
                .await
                .unwrap();
            service::set_quota(&state, "test", f, product, q)
                .await
                .unwrap();
        }
        {
            let mut tx = state.store.begin().await.unwrap();
            for (u, r, f) in [
                ("admin", "admin", None),
                ("tech-a", "technician", Some("fa")),
                ("tech-b", "technician", Some("fb")),
                ("auditor", "auditor", None),
            ] {
                imprint_server::auth::create_user(&mut tx, "test", u, "password-123", r, f)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        let app = imprint_server::app(state.clone());
        let mut env = Env {
            app,
            state,
            dir,
            admin: String::new(),
            tech: String::new(),
            tech_b: String::new(),
            auditor: String::new(),
            db_url,
            kek: *kek_bytes,
            owns_dir: true,
        };
        env.admin = env.login("admin").await;
        env.tech = env.login("tech-a").await;
        env.tech_b = env.login("tech-b").await;
        env.auditor = env.login("auditor").await;
        env
    }

    /// Another server on the same database, as a second `imprint serve` process would be: its
    /// own pool, router, throttle and metrics, and nothing shared in memory. The sessions are in
    /// the database, so the tokens work on it too.
    pub async fn peer(&self) -> Env {
        let state = AppState::new(Store::open(&self.db_url).await.unwrap(), custody(&self.kek));
        Env {
            app: imprint_server::app(state.clone()),
            state,
            dir: self.dir.clone(),
            admin: self.admin.clone(),
            tech: self.tech.clone(),
            tech_b: self.tech_b.clone(),
            auditor: self.auditor.clone(),
            db_url: self.db_url.clone(),
            kek: self.kek,
            owns_dir: false,
        }
    }

    pub async fn login(&self, user: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/login",
                None,
                json!({ "username": user, "password": "password-123" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// One request through the router; returns status and JSON (or `{"text": ...}`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = if body.is_null() {
            req.body(Body::empty()).unwrap()
        } else {
            req.header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        self.send(req).await
    }

    pub async fn call_text(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "text/csv");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "text": text }));
        (status, v)
    }

    pub async fn issue(&self, token: &str, count: u64) -> Vec<Value> {
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/issue",
                Some(token),
                json!({ "product_code": PRODUCT, "count": count }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["records"].as_array().unwrap().clone()
    }

    pub async fn report(
        &self,
        token: &str,
        id: &str,
        serial: &str,
        receipt: &str,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/v1/report",
            Some(token),
            json!({ "apparatus_id": id, "product_serial": serial, "receipt": receipt, "station": "line-1" }),
        )
        .await
    }

    pub async fn audit_actions(&self) -> Vec<String> {
        let (_, v) = self
            .call(
                Method::GET,
                "/api/v1/audit?limit=1000",
                Some(&self.auditor),
                Value::Null,
            )
            .await;
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Installs a 708 record (as JSON from the API) into a simulated device, as the portal would;
/// returns the receipt hex and the unit's serial.
pub fn install(dev: &mut SimDevice, record: &Value) -> (String, String) {
    let receipt = match install_reply(dev, record) {
        Reply::Installed(receipt) => receipt,
        other => panic!("device refused: {other:?}"),
    };
    (
        hex::encode(receipt.0),
        dev.config().product_serial.to_string(),
    )
}

/// The unit's reply to installing `record` (a record as the API answers it).
pub fn install_reply(dev: &mut SimDevice, record: &Value) -> Reply {
    let id = ApparatusId::new(record["apparatus_id"].as_str().unwrap()).unwrap();
    let sealed =
        SealedRecord::parse(&hex::decode(record["sealed"].as_str().unwrap()).unwrap()).unwrap();
    dev.transfer_out(
        &DevRequest::Install {
            apparatus_id: id,
            record: sealed,
        }
        .encode(1),
    )
    .unwrap();
    let bytes = dev.transfer_in(1024).unwrap();
    Reply::decode(&bytes).unwrap().1
}

pub fn serial(s: &str) -> ProductSerial {
    ProductSerial::new(s).unwrap()
}
