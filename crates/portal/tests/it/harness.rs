//! Real components for the station flow outside the browser: a link over the simulated device
//! and the real server's router in-process.

use axum::body::Body;
use axum::http::Request as HttpRequest;
use http_body_util::BodyExt;
use imprint_core::{FrameAssembler, Reply, Request};
use imprint_device::sim::SimDevice;
use imprint_portal::state::journal::{Journal, Record};
use imprint_portal::station::{
    Link, LinkError, Observer, Phase, Reported, Server, ServerError, garbage,
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The simulated unit on its simulated cable, spoken to exactly as the WebUSB driver does:
/// one transfer out, then transfers in until a whole frame is there.
pub struct SimLink<'a> {
    pub dev: &'a mut SimDevice,
    pub seq: u8,
}

impl Link for SimLink<'_> {
    async fn call(&mut self, req: &Request) -> Result<Reply, LinkError> {
        self.seq = self.seq.wrapping_add(1);
        self.dev
            .transfer_out(&req.encode(self.seq))
            .map_err(|_| LinkError::Disconnected)?;
        let mut asm = FrameAssembler::new();
        loop {
            let chunk = self
                .dev
                .transfer_in(64)
                .map_err(|_| LinkError::Disconnected)?;
            if chunk.is_empty() {
                // The real driver would wait for its timeout here.
                return Err(LinkError::Timeout);
            }
            asm.push(&chunk);
            match asm.next_frame() {
                Some(Ok(f)) => {
                    return Reply::from_parts(f.kind, &f.payload).map_err(|e| garbage(&e));
                }
                Some(Err(e)) => return Err(garbage(&imprint_core::ProtocolError::Frame(e.error))),
                None => {}
            }
        }
    }

    fn unit(&self) -> String {
        self.dev.usb_serial()
    }
}

/// The real imprint-server, in-process, with the demo set-up; `online` can be switched off.
pub struct InProcess {
    pub state: imprint_server::AppState,
    pub app: axum::Router,
    pub token: String,
    pub online: std::cell::Cell<bool>,
    /// Every request made through [`InProcess::call`], as "METHOD PATH".
    pub calls: std::cell::RefCell<Vec<String>>,
    dir: std::path::PathBuf,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl InProcess {
    pub async fn new(entries: u64) -> InProcess {
        use imprint_core::{FactoryId, KeyId, ProductCode};
        use imprint_server::service;
        use rand_core::Rng;
        let mut b = [0u8; 8];
        imprint_server::rng().fill_bytes(&mut b);
        let dir = std::env::temp_dir().join(format!("imprint-portal-test-{}", hex::encode(b)));
        std::fs::create_dir_all(&dir).unwrap();
        let state = imprint_server::AppState::new(
            imprint_server::db::open(&dir.join("imprint.db"))
                .await
                .unwrap(),
            imprint_server::kek::Kek::generate().0,
        );
        let k1 = KeyId::new(1).unwrap();
        service::add_key_bytes(&state, "t", k1, imprint_device::sim::demo_key(k1))
            .await
            .unwrap();
        let p = ProductCode::new("CAM-X100").unwrap();
        service::map_product(&state, "t", p, k1).await.unwrap();
        service::generate(&state, "t", k1, entries, "IMP-")
            .await
            .unwrap();
        let f = FactoryId::new("fa").unwrap();
        service::add_factory(&state, "t", f, "A").await.unwrap();
        service::set_quota(&state, "t", f, p, entries)
            .await
            .unwrap();
        let mut tx = state.pool.begin().await.unwrap();
        imprint_server::auth::create_user(
            &mut tx,
            "t",
            "ana",
            "password-123",
            "technician",
            Some("fa"),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let (token, _) = imprint_server::auth::login(&state, "ana", "password-123")
            .await
            .unwrap();
        let app = imprint_server::app(state.clone());
        InProcess {
            state,
            app,
            token,
            online: std::cell::Cell::new(true),
            calls: Default::default(),
            dir,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, ServerError> {
        if !self.online.get() {
            return Err(ServerError::Offline("connection refused".into()));
        }
        self.calls.borrow_mut().push(format!("{method} {path}"));
        let req = HttpRequest::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(if body.is_null() {
                Body::empty()
            } else {
                Body::from(body.to_string())
            })
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let ok = res.status().is_success();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if ok {
            Ok(v)
        } else {
            Err(ServerError::Refused {
                code: v["error"].as_str().unwrap_or("").into(),
                message: v["message"].as_str().unwrap_or("").into(),
            })
        }
    }

    pub async fn fetch(&self, journal: &mut Journal, count: u64) {
        let v = self
            .call(
                "POST",
                "/api/v1/issue",
                json!({"product_code": "CAM-X100", "count": count}),
            )
            .await
            .unwrap();
        let records: Vec<Record> = serde_json::from_value(v["records"].clone()).unwrap();
        journal.add_records(records);
    }

    /// Apparatus ID -> product serial, from the installed-devices export.
    pub async fn installed(&self) -> Vec<(String, String)> {
        let csv = imprint_server::service::export_installed(&self.state)
            .await
            .unwrap();
        csv.lines()
            .skip(1)
            .map(|l| {
                let mut f = l.split(',');
                (f.next().unwrap().to_string(), f.next().unwrap().to_string())
            })
            .collect()
    }
}

impl Server for InProcess {
    async fn report(
        &self,
        apparatus_id: &str,
        product_serial: &str,
        receipt_hex: &str,
    ) -> Result<Reported, ServerError> {
        let v = self
            .call("POST", "/api/v1/report", json!({"apparatus_id": apparatus_id, "product_serial": product_serial, "receipt": receipt_hex, "station": "st-1"}))
            .await?;
        Ok(Reported {
            status: v["status"].as_str().unwrap_or("").to_string(),
            challenge: v["challenge"]
                .as_str()
                .map(|c| hex::decode(c).unwrap().try_into().unwrap()),
        })
    }

    async fn challenge(&self, apparatus_id: &str) -> Result<[u8; 32], ServerError> {
        let v = self
            .call(
                "POST",
                "/api/v1/auth/challenge",
                json!({"apparatus_id": apparatus_id}),
            )
            .await?;
        Ok(hex::decode(v["challenge"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap())
    }

    async fn verify(
        &self,
        apparatus_id: &str,
        challenge: &[u8; 32],
        response: &[u8; 32],
    ) -> Result<bool, ServerError> {
        let v = self
            .call("POST", "/api/v1/auth/verify", json!({"apparatus_id": apparatus_id, "challenge": hex::encode(challenge), "response": hex::encode(response)}))
            .await?;
        Ok(v["authenticated"].as_bool().unwrap_or(false))
    }
}

/// Records phases and log lines, and keeps the last saved journal text (what localStorage
/// would hold).
#[derive(Default)]
pub struct Recorder {
    pub phases: Vec<Phase>,
    pub log: Vec<String>,
    pub saved: Option<String>,
}

impl Observer for Recorder {
    fn phase(&mut self, phase: Phase) {
        self.phases.push(phase);
    }
    fn log(&mut self, line: String) {
        self.log.push(line);
    }
    fn save(&mut self, journal: &Journal) {
        self.saved = Some(journal.to_json());
    }
}
