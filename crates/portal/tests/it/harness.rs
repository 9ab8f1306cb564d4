//! Real components for the station flow outside the browser: a link over the simulated device
//! and the real server's router in-process.

use axum::body::Body;
use axum::http::Request as HttpRequest;
use http_body_util::BodyExt;
use imprint_api::{Method, SessionToken};
use imprint_core::{
    ApparatusId, AuthResponse, Challenge, FrameAssembler, ProductSerial, Receipt, Reply, Request,
};
use imprint_device::sim::SimDevice;
use imprint_portal::client::{Client, Transport};
use imprint_portal::state::journal::Journal;
use imprint_portal::station::{
    Link, LinkError, Observer, Phase, Reported, Server, ServerError, garbage,
};
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

/// The real imprint-server, in-process, with the demo set-up, reached through the portal's
/// own client ([`Client`]) over a [`Transport`] that hands each request to the real router;
/// `online` can be switched off.
pub struct InProcess {
    pub state: imprint_server::AppState,
    pub app: axum::Router,
    pub token: SessionToken,
    pub online: std::cell::Cell<bool>,
    /// Paths that fail as if the server were unreachable while `online` holds for the rest:
    /// an outage that starts mid-flow.
    pub unreachable: std::cell::RefCell<Vec<&'static str>>,
    /// Every request made through the transport, as "METHOD PATH".
    pub calls: std::cell::RefCell<Vec<String>>,
    dir: std::path::PathBuf,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Transport for InProcess {
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<imprint_client::Payload>,
    ) -> Result<(u16, String), String> {
        if !self.online.get() || self.unreachable.borrow().iter().any(|p| path.ends_with(p)) {
            return Err("connection refused".into());
        }
        self.calls
            .borrow_mut()
            .push(format!("{} {path}", method.as_str()));
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
            imprint_server::store::Store::open_sqlite(&dir.join("imprint.db"))
                .await
                .unwrap(),
            imprint_server::kek::Kek::generate().0,
        );
        let k1 = KeyId::new(1).unwrap();
        service::add_key_bytes(&state, "t", k1, imprint_device::sim::demo_key(k1))
            .await
            .unwrap();
        let p = ProductCode::new("CAM-X100").unwrap();
        service::map_product(&state, "t", p, k1, None)
            .await
            .unwrap();
        service::generate(&state, "t", k1, entries, "IMP-")
            .await
            .unwrap();
        let f = FactoryId::new("fa").unwrap();
        service::add_factory(&state, "t", f, "A").await.unwrap();
        service::set_quota(&state, "t", f, p, entries)
            .await
            .unwrap();
        // The chip-bound model, as in `imprint demo`: its units hold key 2.
        let k2 = KeyId::new(2).unwrap();
        service::add_key_bytes(&state, "t", k2, imprint_device::sim::demo_key(k2))
            .await
            .unwrap();
        let c = ProductCode::new(imprint_device::sim::DEMO_CHIP_PRODUCT).unwrap();
        service::map_product(&state, "t", c, k2, Some(true))
            .await
            .unwrap();
        service::generate(&state, "t", k2, entries, "IMPC-")
            .await
            .unwrap();
        service::set_quota(&state, "t", f, c, entries)
            .await
            .unwrap();
        // A second factory and its technician, for a PC shared by two factories.
        let fb = FactoryId::new("fb").unwrap();
        service::add_factory(&state, "t", fb, "B").await.unwrap();
        service::set_quota(&state, "t", fb, p, entries)
            .await
            .unwrap();
        for (name, password, factory) in
            [("ana", "password-123", "fa"), ("ben", "password-456", "fb")]
        {
            let mut tx = state.store.begin().await.unwrap();
            imprint_server::auth::create_user(
                &mut tx,
                "t",
                name,
                password,
                "technician",
                Some(factory),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let app = imprint_server::app(state.clone());
        let mut s = InProcess {
            state,
            app,
            token: SessionToken([0; 32]),
            online: std::cell::Cell::new(true),
            unreachable: Default::default(),
            calls: Default::default(),
            dir,
        };
        // Signed in through the portal's own client, as the page does.
        let answer = imprint_portal::client::login(&s, "ana", "password-123")
            .await
            .unwrap();
        s.token = answer.token;
        s
    }

    /// Signs in as another technician (ana of factory `fa` is signed in to start with; ben,
    /// password `password-456`, is of factory `fb`): the client speaks for that one from now on.
    pub async fn sign_in_as(&mut self, user: &str, password: &str) {
        self.token = imprint_portal::client::login(&*self, user, password)
            .await
            .unwrap()
            .token;
    }

    /// The portal's client over this server, as the page holds it after sign-in.
    pub fn client(&self) -> Client<&InProcess> {
        Client {
            transport: self,
            token: self.token.clone(),
            station: "st-1".into(),
        }
    }

    /// Fetches records into the journal, as "Fetch records" does.
    pub async fn fetch(&self, journal: &mut Journal, count: u64) {
        let records = self
            .client()
            .issue(imprint_core::ProductCode::new("CAM-X100").unwrap(), count)
            .await
            .unwrap();
        journal.add_records(records);
    }

    /// Makes the product `code` lock its units (or not), as `imprint lock-units` does.
    pub async fn lock_units(&self, code: &str, on: bool) {
        imprint_server::service::set_lock_units(
            &self.state,
            "t",
            imprint_core::ProductCode::new(code).unwrap(),
            on,
        )
        .await
        .unwrap();
    }

    /// The apparatus IDs the server has recorded as locked (the export's `locked_at_ms`).
    pub async fn locked(&self) -> Vec<ApparatusId> {
        let csv = imprint_server::service::export_installed(&self.state)
            .await
            .unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == "locked_at_ms").unwrap();
        lines
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (!f[at].is_empty()).then(|| ApparatusId::new(f[0]).unwrap())
            })
            .collect()
    }

    /// Apparatus ID -> product serial, from the installed-devices export.
    pub async fn installed(&self) -> Vec<(ApparatusId, ProductSerial)> {
        let csv = imprint_server::service::export_installed(&self.state)
            .await
            .unwrap();
        csv.lines()
            .skip(1)
            .map(|l| {
                let mut f = l.split(',');
                (
                    ApparatusId::new(f.next().unwrap()).unwrap(),
                    ProductSerial::new(f.next().unwrap()).unwrap(),
                )
            })
            .collect()
    }
}

/// The flow's server is the portal's own client over the in-process server.
impl Server for InProcess {
    async fn issue_for_chip(
        &self,
        product_code: imprint_core::ProductCode,
        chip: &imprint_core::ChipId,
    ) -> Result<imprint_portal::state::journal::Record, ServerError> {
        self.client().issue_for_chip(product_code, chip).await
    }

    async fn report(
        &self,
        apparatus_id: &ApparatusId,
        product_serial: &ProductSerial,
        receipt: &Receipt,
    ) -> Result<Reported, ServerError> {
        self.client()
            .report(apparatus_id, product_serial, receipt)
            .await
    }

    async fn challenge(&self, apparatus_id: &ApparatusId) -> Result<Challenge, ServerError> {
        self.client().challenge(apparatus_id).await
    }

    async fn locked(
        &self,
        apparatus_id: &ApparatusId,
        product_serial: &ProductSerial,
    ) -> Result<imprint_api::ReportStatus, ServerError> {
        self.client().locked(apparatus_id, product_serial).await
    }

    async fn verify(
        &self,
        apparatus_id: &ApparatusId,
        challenge: &Challenge,
        response: &AuthResponse,
    ) -> Result<bool, ServerError> {
        self.client()
            .verify(apparatus_id, challenge, response)
            .await
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
        self.saved = Some(journal.to_json().unwrap());
    }
}
