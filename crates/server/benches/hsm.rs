//! Keys in a PKCS#11 token against keys in memory, for docs/benchmarks.md ("Keys in an HSM").
//!
//! Run: `cargo xtask bench` (it makes a SoftHSM2 token for it), or by hand with a token that
//! holds no Imprint keys yet:
//! `IMPRINT_BENCH_PKCS11=/usr/lib/softhsm/libsofthsm2.so IMPRINT_BENCH_PKCS11_TOKEN=LABEL
//! IMPRINT_BENCH_PKCS11_PIN=PIN cargo bench -p imprint-server --bench hsm -- [records]`
//! (default 1,000,000; `SOFTHSM2_CONF` as the token was made with).
//!
//! Measures in one run:
//! 1. records sealed per second by 1, 2 and 4 workers, through the token (each worker on a
//!    session of its own) and in memory (the same workers, the same record);
//! 2. issuing N records end to end (generate, then issue in requests of 10,000) with the keys
//!    in the token, and with them in `kek.key`, each on a fresh SQLite file.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use imprint_core::{
    ApparatusId, Binding, FactoryId, KeyId, PassPhrase, ProductCode, SealKey, SealedRecord,
};
use imprint_server::custody::{Custody, RecordKey};
use imprint_server::kek::Kek;
use imprint_server::pkcs11::{Token, Usage};
use imprint_server::store::Store;
use imprint_server::{AppState, auth, service};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!(
            "{name} is not set: this benchmark needs a PKCS#11 token with no Imprint keys in it; `cargo xtask bench` makes a SoftHSM2 one and runs it"
        );
        std::process::exit(2)
    })
}

fn token() -> Token {
    Token::open(
        &PathBuf::from(var("IMPRINT_BENCH_PKCS11")),
        &var("IMPRINT_BENCH_PKCS11_TOKEN"),
        &var("IMPRINT_BENCH_PKCS11_PIN"),
    )
    .unwrap()
}

/// Records sealed per second by `workers` threads for `secs`, each sealing with `key`.
fn seal_rate<K: SealKey + Sync>(key: &K, workers: usize, secs: f64) -> f64
where
    K::Error: std::fmt::Debug,
{
    let id = ApparatusId::new("IMP-0000000001").unwrap();
    let pass = PassPhrase::generate(&mut imprint_server::rng());
    let kid = KeyId::new(1).unwrap();
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut rng = imprint_server::rng();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    SealedRecord::seal_with(&mut rng, key, kid, &Binding::Model, &id, &pass)
                        .unwrap();
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

async fn issue_run(custody: Custody, n: u64) -> (Duration, Duration) {
    let dir = std::env::temp_dir().join(format!(
        "imprint-bench-hsm-{}-{}",
        std::process::id(),
        imprint_server::random_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open_sqlite(&dir.join("imprint.db")).await.unwrap();
    custody.check(&store, true).await.unwrap();
    let state = AppState::new(store, custody);
    let k1 = KeyId::new(1).unwrap();
    service::add_key_bytes(&state, "bench", k1, imprint_device::sim::demo_key(k1))
        .await
        .unwrap();
    let p = ProductCode::new("CAM-X100").unwrap();
    service::map_product(&state, "bench", p, k1, None)
        .await
        .unwrap();
    let f = FactoryId::new("fa").unwrap();
    service::add_factory(&state, "bench", f, "A").await.unwrap();
    service::set_quota(&state, "bench", f, p, n).await.unwrap();
    let tech = auth::User {
        username: "tech".into(),
        role: auth::Role::Technician,
        factory: Some("fa".into()),
    };
    let t = Instant::now();
    service::generate(&state, "bench", k1, n, "IMP-")
        .await
        .unwrap();
    let generated = t.elapsed();
    let t = Instant::now();
    let mut issued = 0;
    while issued < n {
        let batch = (n - issued).min(10_000);
        issued += service::issue(&state, &tech, p, batch, None)
            .await
            .unwrap()
            .len() as u64;
    }
    let issuing = t.elapsed();
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    (generated, issuing)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let secs = 3.0;

    // 1. Sealing alone: the same record, in the token and in memory.
    let token = token();
    let memory = RecordKey::Memory(imprint_device::sim::demo_key(KeyId::new(1).unwrap()));
    let handle = token
        .import(
            &format!("imprint/bench/{}", imprint_server::random_id()),
            Usage::PreWrite,
            imprint_device::sim::demo_key(KeyId::new(1).unwrap()).expose_secret(),
        )
        .unwrap();
    let in_token = RecordKey::Token(&token, handle);
    println!("## Keys in an HSM: SoftHSM2 against memory\n");
    println!("| workers | sealed/s in the token | sealed/s in memory | token / memory |");
    println!("| --- | --- | --- | --- |");
    for workers in [1, 2, 4] {
        let t = seal_rate(&in_token, workers, secs);
        let m = seal_rate(&memory, workers, secs);
        println!("| {workers} | {t:.0} | {m:.0} | {:.3}x |", t / m);
    }
    token.destroy(handle).unwrap();

    // 2. Issuing N records with each custody, in the same run.
    let (g_file, i_file) = issue_run(Custody::from(Kek::generate().0), n).await;
    let (g_tok, i_tok) = issue_run(Custody::prepare_token(token).unwrap(), n).await;
    println!(
        "\n| issuing {n} records | generate 702 | issue 708 in requests of 10,000 | end to end |"
    );
    println!("| --- | --- | --- | --- |");
    for (name, g, i) in [
        ("keys in kek.key", g_file, i_file),
        ("keys in the token", g_tok, i_tok),
    ] {
        println!(
            "| {name} | {:.2} s ({:.0}/s) | {:.2} s ({:.0}/s) | {:.0}/s |",
            g.as_secs_f64(),
            rate(n, g),
            i.as_secs_f64(),
            rate(n, i),
            rate(n, g + i)
        );
    }
    println!(
        "\nissuing with the keys in the token: {:.2}x the rate with kek.key (end to end), {:.2}x (issue alone); goal >= 0.25x",
        rate(n, g_tok + i_tok) / rate(n, g_file + i_file),
        rate(n, i_tok) / rate(n, i_file)
    );
}
