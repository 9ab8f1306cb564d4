//! Model-based: random sequences of issues, reports, releases, quota changes and remaps run
//! against the in-memory `Tables` of imprint-core (the reference) and against the server's
//! store (SQLite, and on the PostgreSQL run of the suite PostgreSQL as well); after every
//! operation the outcomes agree, and at the end so do the tables.
//!
//! Each side seals its own records (with its own random nonces), so each side's receipt comes
//! from a simulated unit that installed that side's record: the same unit, the same serial, a
//! receipt valid for that side or, when the operation says so, spoiled.

use std::collections::BTreeMap;

use imprint_api::ErrorCode;
use imprint_core::tables::{EntryState, InstallDecision, InstallReport, Tables};
use imprint_core::{
    ApparatusId, FactoryId, KeyId, PassPhrase, ProductCode, ProductSerial, Quota, Receipt, Reply,
    Request as DevRequest, SealedRecord,
};
use imprint_device::sim::{DEMO_PRODUCT, SimDevice, demo_config, demo_key};
use imprint_server::auth::{Role, User};
use imprint_server::kek::Kek;
use imprint_server::store::Store;
use imprint_server::{AppError, AppState, service};
use proptest::prelude::*;
use sqlx::Row;

const ENTRIES: u32 = 12;
const FACTORIES: [&str; 2] = ["fa", "fb"];

#[derive(Debug, Clone)]
enum Op {
    Issue {
        factory: usize,
        count: u64,
    },
    /// Reports the `pick`-th identity (of all, issued or not) as installed in unit `unit`.
    Report {
        factory: usize,
        pick: u32,
        unit: u32,
        good: bool,
    },
    Release {
        factory: usize,
        pick: u32,
    },
    Quota {
        factory: usize,
        limit: u64,
    },
    Remap {
        key: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..4u64).prop_map(|(factory, count)| Op::Issue { factory, count }),
        6 => (0..2usize, 0..ENTRIES + 1, 0..5u32, prop::bool::weighted(0.85))
            .prop_map(|(factory, pick, unit, good)| Op::Report { factory, pick, unit, good }),
        2 => (0..2usize, 0..ENTRIES + 1).prop_map(|(factory, pick)| Op::Release { factory, pick }),
        1 => (0..2usize, 0..10u64).prop_map(|(factory, limit)| Op::Quota { factory, limit }),
        1 => (1..4u32).prop_map(|key| Op::Remap { key }),
    ]
}

/// An outcome both sides can give: success with what it says, or the error's code.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Issued(Vec<ApparatusId>),
    Recorded,
    AlreadyRecorded,
    Done,
    Refused(ErrorCode),
}

fn id(n: u32) -> ApparatusId {
    // `generate` numbers from 1 with ten digits; pick ENTRIES is one that does not exist.
    ApparatusId::new(&format!("IMP-{:010}", n + 1)).unwrap()
}

fn product() -> ProductCode {
    ProductCode::new(crate::PRODUCT).unwrap()
}

fn tech(factory: usize) -> User {
    User {
        username: format!("tech-{}", FACTORIES[factory]),
        role: Role::Technician,
        factory: Some(FACTORIES[factory].to_string()),
    }
}

/// Unit `unit` (holding keys 1 to 3) installs `sealed`; its receipt and serial.
fn install(unit: u32, apparatus_id: ApparatusId, sealed: SealedRecord) -> (Receipt, ProductSerial) {
    let mut dev = SimDevice::new(demo_config(unit, DEMO_PRODUCT, &[1, 2, 3]));
    dev.transfer_out(
        &DevRequest::Install {
            apparatus_id,
            record: sealed,
        }
        .encode(1),
    )
    .unwrap();
    let (_, reply) = Reply::decode(&dev.transfer_in(1024).unwrap()).unwrap();
    let Reply::Installed(receipt) = reply else {
        panic!("the unit refused a record: {reply:?}")
    };
    (receipt, dev.config().product_serial)
}

fn serial_of(unit: u32) -> ProductSerial {
    ProductSerial::new(&format!("SIM-{unit:06}")).unwrap()
}

fn spoil(mut r: Receipt, good: bool) -> Receipt {
    if !good {
        r.0[0] ^= 1;
    }
    r
}

struct Model {
    tables: Tables,
    rng: imprint_server::ServerRng,
}

impl Model {
    fn new() -> Model {
        let mut tables = Tables::default();
        for k in 1..=3 {
            let k = KeyId::new(k).unwrap();
            tables.keys.insert(k, demo_key(k)).unwrap();
        }
        let mut rng = imprint_server::rng();
        tables
            .map_product(&mut rng, product(), KeyId::new(1).unwrap())
            .unwrap();
        for n in 0..ENTRIES {
            tables
                .add_auth_info(
                    id(n),
                    PassPhrase::generate(&mut rng),
                    KeyId::new(1).unwrap(),
                )
                .unwrap();
        }
        for f in FACTORIES {
            tables.quotas.insert(
                (FactoryId::new(f).unwrap(), product()),
                Quota { limit: 4, used: 0 },
            );
        }
        Model { tables, rng }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let t = &mut self.tables;
        let refused = |e: imprint_core::TableError| Outcome::Refused(ErrorCode::of_rule(&e));
        match *op {
            Op::Issue { factory, count } => {
                let f = FactoryId::new(FACTORIES[factory]).unwrap();
                match t.issue(&mut self.rng, f, product(), count) {
                    Ok(recs) => Outcome::Issued(recs.iter().map(|r| r.apparatus_id).collect()),
                    Err(e) => refused(e),
                }
            }
            Op::Report {
                factory,
                pick,
                unit,
                good,
            } => {
                let apparatus_id = id(pick);
                let (receipt, product_serial) = match t.factory_records.get(&apparatus_id) {
                    Some(r) => {
                        let (receipt, serial) = install(unit, apparatus_id, r.sealed.clone());
                        (spoil(receipt, good), serial)
                    }
                    None => (Receipt([0x5a; 32]), serial_of(unit)),
                };
                let report = InstallReport {
                    factory: FactoryId::new(FACTORIES[factory]).unwrap(),
                    apparatus_id,
                    product_serial,
                    receipt,
                };
                match t.report(&report) {
                    Ok(InstallDecision::Record) => Outcome::Recorded,
                    Ok(InstallDecision::AlreadyRecorded) => Outcome::AlreadyRecorded,
                    Err(e) => refused(e),
                }
            }
            Op::Release { factory, pick } => {
                let f = FactoryId::new(FACTORIES[factory]).unwrap();
                match t.release(&f, &id(pick)) {
                    Ok(()) => Outcome::Done,
                    // The server answers `conflict` here, with "revoke it instead".
                    Err(imprint_core::TableError::AlreadyInstalled { .. }) => {
                        Outcome::Refused(ErrorCode::Conflict)
                    }
                    Err(e) => refused(e),
                }
            }
            Op::Quota { factory, limit } => {
                let f = FactoryId::new(FACTORIES[factory]).unwrap();
                t.quotas.entry((f, product())).or_default().limit = limit;
                Outcome::Done
            }
            Op::Remap { key } => {
                match t.map_product(&mut self.rng, product(), KeyId::new(key).unwrap()) {
                    Ok(_) => Outcome::Done,
                    Err(e) => refused(e),
                }
            }
        }
    }

    /// Where every entry is, and each factory's quota use.
    fn summary(&self) -> Summary {
        let stages = self
            .tables
            .auth
            .values()
            .map(|e| {
                let stage = match &e.state {
                    EntryState::Unissued => "unissued".to_string(),
                    EntryState::Issued { factory, .. } => format!("issued to {factory}"),
                    EntryState::Installed { product_serial } => {
                        format!("installed in {product_serial}")
                    }
                };
                (e.apparatus_id.to_string(), (stage, e.key_id.get()))
            })
            .collect();
        let used = self
            .tables
            .quotas
            .iter()
            .map(|((f, _), q)| (f.to_string(), q.used))
            .collect();
        Summary { stages, used }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Summary {
    /// Apparatus ID -> (stage, key identifier).
    stages: BTreeMap<String, (String, u32)>,
    /// Factory -> records used of its quota.
    used: BTreeMap<String, u64>,
}

struct Server {
    state: AppState,
}

impl Server {
    async fn new(store: Store) -> Server {
        let state = AppState::new(store, crate::custody(&Kek::generate().1));
        for k in 1..=3 {
            let k = KeyId::new(k).unwrap();
            service::add_key_bytes(&state, "t", k, demo_key(k))
                .await
                .unwrap();
        }
        service::map_product(&state, "t", product(), KeyId::new(1).unwrap(), None)
            .await
            .unwrap();
        service::generate(&state, "t", KeyId::new(1).unwrap(), ENTRIES.into(), "IMP-")
            .await
            .unwrap();
        for f in FACTORIES {
            let f = FactoryId::new(f).unwrap();
            service::add_factory(&state, "t", f, "F").await.unwrap();
            service::set_quota(&state, "t", f, product(), 4)
                .await
                .unwrap();
        }
        Server { state }
    }

    async fn record_of(&self, apparatus_id: ApparatusId) -> Option<SealedRecord> {
        sqlx::query("SELECT sealed FROM factory_records WHERE apparatus_id = $1")
            .bind(apparatus_id.as_str())
            .fetch_optional(self.state.store.pool())
            .await
            .unwrap()
            .map(|r| SealedRecord::parse(&r.get::<Vec<u8>, _>("sealed")).unwrap())
    }

    async fn apply(&self, op: &Op) -> Outcome {
        let st = &self.state;
        let refused = |e: AppError| Outcome::Refused(e.code());
        match *op {
            Op::Issue { factory, count } => {
                match service::issue(st, &tech(factory), product(), count, None).await {
                    Ok(recs) => Outcome::Issued(recs.iter().map(|r| r.apparatus_id).collect()),
                    Err(e) => refused(e),
                }
            }
            Op::Report {
                factory,
                pick,
                unit,
                good,
            } => {
                let apparatus_id = id(pick);
                let (receipt, product_serial) = match self.record_of(apparatus_id).await {
                    Some(sealed) => {
                        let (receipt, serial) = install(unit, apparatus_id, sealed);
                        (spoil(receipt, good), serial)
                    }
                    None => (Receipt([0x5a; 32]), serial_of(unit)),
                };
                let report = service::Report {
                    apparatus_id,
                    product_serial,
                    receipt,
                    station: "model".into(),
                };
                match service::report(st, &tech(factory), &report).await {
                    Ok((imprint_api::ReportStatus::Recorded, _)) => Outcome::Recorded,
                    Ok((imprint_api::ReportStatus::AlreadyRecorded, _)) => Outcome::AlreadyRecorded,
                    Err(e) => refused(e),
                }
            }
            Op::Release { factory, pick } => {
                match service::release(st, &tech(factory), id(pick)).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => refused(e),
                }
            }
            Op::Quota { factory, limit } => {
                let f = FactoryId::new(FACTORIES[factory]).unwrap();
                match service::set_quota(st, "t", f, product(), limit).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => refused(e),
                }
            }
            Op::Remap { key } => {
                match service::map_product(st, "t", product(), KeyId::new(key).unwrap(), None).await
                {
                    Ok(_) => Outcome::Done,
                    Err(e) => refused(e),
                }
            }
        }
    }

    async fn summary(&self) -> Summary {
        let pool = self.state.store.pool();
        let rows = sqlx::query(
            "SELECT a.apparatus_id, a.state, a.factory_id, a.key_id, d.product_serial \
             FROM auth_info a LEFT JOIN installed_devices d ON d.apparatus_id = a.apparatus_id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let stages = rows
            .iter()
            .map(|r| {
                let state: String = r.get("state");
                let stage = match state.as_str() {
                    "issued" => format!("issued to {}", r.get::<String, _>("factory_id")),
                    "installed" => format!("installed in {}", r.get::<String, _>("product_serial")),
                    other => other.to_string(),
                };
                let key: i64 = r.get("key_id");
                (r.get("apparatus_id"), (stage, key as u32))
            })
            .collect();
        let used = sqlx::query("SELECT factory_id, used FROM quotas")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("factory_id"), r.get::<i64, _>("used") as u64))
            .collect();
        Summary { stages, used }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_stores_agree_with_the_tables(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = crate::temp_dir("model");
            let mut servers = vec![(
                "SQLite",
                Server::new(Store::open_sqlite(&dir.join("imprint.db")).await.unwrap()).await,
            )];
            if crate::on_postgres() {
                let url = crate::postgres_database().await;
                servers.push(("PostgreSQL", Server::new(Store::open(&url).await.unwrap()).await));
            }
            let mut model = Model::new();
            for (i, op) in ops.iter().enumerate() {
                let expected = model.apply(op);
                for (name, server) in &servers {
                    let got = server.apply(op).await;
                    assert_eq!(got, expected, "{name}, operation {i}: {op:?}");
                }
            }
            for (name, server) in &servers {
                assert_eq!(server.summary().await, model.summary(), "{name}: the tables differ");
                server.state.store.close().await;
            }
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}
