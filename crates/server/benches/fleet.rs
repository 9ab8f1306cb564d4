//! Field authentication at fleet scale, measured from outside: the real `imprint serve` pinned
//! to one core (`taskset -c 0`), this load generator pinned to the other, many devices at once,
//! each a keep-alive HTTP/1.1 connection doing challenge + verify in a loop. Beside it, in the
//! same run, a bare loop of the HMAC check on one core.
//!
//! Run: `cargo bench -p imprint-server --bench fleet -- [--seconds S] [--clients C]
//! [--devices D]`, with `DATABASE_URL=postgres://...` for PostgreSQL (default: the SQLite file
//! in a fresh data folder). Prints the rows of docs/benchmarks.md.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use imprint_core::{
    ApparatusId, AuthResponse, Challenge, ConversionValue, FactoryId, KeyId, ProductCode, Reply,
    Request as DevRequest, conversion_value,
};
use imprint_device::sim::{SimDevice, demo_key};
use imprint_server::store::Store;
use imprint_server::{AppState, auth, kek::Kek, service};

const BIN: &str = env!("CARGO_BIN_EXE_imprint");

struct Args {
    seconds: u64,
    clients: usize,
    devices: u64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        clients: 64,
        devices: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok());
        match flag.as_str() {
            "--seconds" => a.seconds = value().expect("--seconds N"),
            "--clients" => a.clients = value().expect("--clients N") as usize,
            "--devices" => a.devices = value().expect("--devices N"),
            // cargo bench passes --bench; nothing else is ours.
            _ => {}
        }
    }
    a
}

/// Runs this process again pinned to core 1 (the server gets core 0), when `taskset` is there.
fn pin_self() -> Option<std::process::ExitCode> {
    if std::env::var_os("IMPRINT_BENCH_PINNED").is_some() {
        return None;
    }
    if Command::new("taskset").arg("--version").output().is_err() {
        eprintln!("taskset not found: server and load generator share the cores");
        return None;
    }
    let me = std::env::current_exe().unwrap();
    let status = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(me)
        .args(std::env::args().skip(1))
        .env("IMPRINT_BENCH_PINNED", "1")
        .status()
        .unwrap();
    Some(if status.success() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn main() -> std::process::ExitCode {
    if let Some(code) = pin_self() {
        return code;
    }
    let a = args();
    let database = std::env::var("DATABASE_URL").ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("imprint-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let devices = rt.block_on(set_up(&dir, database.as_deref(), a.devices));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = serve(&dir, database.as_deref(), port);
    let server_pid = server.id();
    let floor = rt.block_on(load(port, &devices, a.clients, a.seconds.min(5), true));
    let cpu_before = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    let result = rt.block_on(load(port, &devices, a.clients, a.seconds, false));
    // The load ran one second of warm-up and then `seconds`.
    let wall = (a.seconds + 1) as f64;
    let server_cpu = (cpu_seconds(server_pid) - cpu_before.0) / wall;
    let load_cpu = (cpu_seconds(std::process::id()) - cpu_before.1) / wall;
    server.kill().unwrap();
    server.wait().unwrap();
    let bare = bare_hmac_per_second(&devices[0]);
    let used = rt.block_on(async {
        use sqlx::Row;
        let store = open(&dir, database.as_deref()).await;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM used_challenges")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get("n");
        store.close().await;
        n
    });
    let backend = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("\n| field authentication, {backend}, server on 1 core | value |\n| --- | --- |");
    println!(
        "| challenge + verify pairs per second ({} clients, {} s) | {:.0} |",
        a.clients,
        a.seconds,
        result.pairs as f64 / result.elapsed.as_secs_f64()
    );
    println!(
        "| pair latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(result.percentile(0.50)),
        ms(result.percentile(0.99)),
        ms(result.percentile(1.0))
    );
    println!(
        "| CPU used: server / load generator | {:.0}% / {:.0}% of a core |",
        server_cpu * 100.0,
        load_cpu * 100.0
    );
    println!("| used challenges on disk after the run | {used} |");
    println!("| bare HMAC check per second, one core (baseline) | {bare:.0} |");
    println!(
        "| HTTP floor: pairs of requests to an unserved path per second (baseline) | {:.0} |",
        floor.pairs as f64 / floor.elapsed.as_secs_f64()
    );
    assert!(
        used >= result.pairs as i64,
        "every verify answered was made durable first"
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::process::ExitCode::SUCCESS
}

/// User and system CPU time of a process so far, from /proc (0 where there is none).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).map_or(0.0, |t| {
        t.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn open(dir: &std::path::Path, database: Option<&str>) -> Store {
    match database {
        Some(url) => Store::open(url).await.unwrap(),
        None => Store::open_sqlite(&dir.join("imprint.db")).await.unwrap(),
    }
}

/// A data folder with `n` installed devices; their IDs and conversion values.
async fn set_up(
    dir: &std::path::Path,
    database: Option<&str>,
    n: u64,
) -> Vec<(ApparatusId, ConversionValue)> {
    let mut init = Command::new(BIN);
    init.arg("--data-dir")
        .arg(dir)
        .arg("init")
        .env("IMPRINT_ADMIN_PASSWORD", "password-123");
    if let Some(url) = database {
        init.env("DATABASE_URL", url);
    }
    let out = init.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = AppState::new(
        open(dir, database).await,
        Kek::load_file(&dir.join("kek.key")).unwrap(),
    );
    let k1 = KeyId::new(1).unwrap();
    service::add_key_bytes(&state, "bench", k1, demo_key(k1))
        .await
        .unwrap();
    let p = ProductCode::new("CAM-X100").unwrap();
    service::map_product(&state, "bench", p, k1, None)
        .await
        .unwrap();
    service::generate(&state, "bench", k1, n, "FLEET-")
        .await
        .unwrap();
    let f = FactoryId::new("fa").unwrap();
    service::add_factory(&state, "bench", f, "A").await.unwrap();
    service::set_quota(&state, "bench", f, p, n).await.unwrap();
    let mut tx = state.store.begin().await.unwrap();
    auth::create_user(
        &mut tx,
        "bench",
        "tech",
        "password-123",
        "technician",
        Some("fa"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tech = auth::User {
        username: "tech".into(),
        role: auth::Role::Technician,
        factory: Some("fa".into()),
    };
    let mut out = Vec::new();
    let mut left = n;
    let mut unit = 0u32;
    while left > 0 {
        let take = left.min(10_000);
        for rec in service::issue(&state, &tech, p, take, None).await.unwrap() {
            let mut dev = SimDevice::demo(unit);
            unit += 1;
            dev.transfer_out(
                &DevRequest::Install {
                    apparatus_id: rec.apparatus_id,
                    record: rec.sealed.clone(),
                }
                .encode(1),
            )
            .unwrap();
            let (_, reply) = Reply::decode(&dev.transfer_in(1024).unwrap()).unwrap();
            let Reply::Installed(receipt) = reply else {
                panic!("{reply:?}")
            };
            let report = service::Report {
                apparatus_id: rec.apparatus_id,
                product_serial: dev.config().product_serial,
                receipt,
                station: "bench".into(),
            };
            service::report(&state, &tech, &report).await.unwrap();
            let opened = rec
                .sealed
                .open(&demo_key(k1), &rec.apparatus_id, None)
                .unwrap();
            out.push((
                rec.apparatus_id,
                conversion_value(&rec.apparatus_id, &opened.pass_phrase),
            ));
        }
        left -= take;
    }
    state.store.close().await;
    out
}

fn serve(dir: &std::path::Path, database: Option<&str>, port: u16) -> Child {
    let mut cmd = if Command::new("taskset").arg("--version").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = database {
        cmd.env("DATABASE_URL", url);
    }
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

struct Load {
    pairs: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l.get(i).copied().unwrap_or_default()
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16) -> Sender {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::task::spawn_local(conn);
    sender
}

async fn post(sender: &mut Sender, path: &str, body: String) -> serde_json::Value {
    let req = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let floor = path == FLOOR;
    assert_eq!(status.is_success(), !floor, "{path}: {status} {bytes:?}");
    serde_json::from_slice(&bytes).unwrap()
}

/// A path no route serves: the router, its middleware and a JSON 404, and no work. Two of these
/// per pair are what HTTP alone costs this server on this machine.
const FLOOR: &str = "/api/v1/no-such-route";

/// `clients` devices at once, each challenge + verify in a loop, for `seconds` after one second
/// of warm-up.
async fn load(
    port: u16,
    devices: &[(ApparatusId, ConversionValue)],
    clients: usize,
    seconds: u64,
    floor: bool,
) -> Load {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let warm = Instant::now() + Duration::from_secs(1);
            let end = warm + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for c in 0..clients {
                let mine: Vec<(ApparatusId, ConversionValue)> =
                    devices.iter().skip(c).step_by(clients).cloned().collect();
                tasks.push(tokio::task::spawn_local(async move {
                    let mut sender = connect(port).await;
                    let mut latencies = Vec::new();
                    let mut i = 0;
                    loop {
                        let start = Instant::now();
                        if start >= end {
                            break;
                        }
                        let (id, cv) = &mine[i % mine.len()];
                        i += 1;
                        if floor {
                            post(&mut sender, FLOOR, String::new()).await;
                            post(&mut sender, FLOOR, String::new()).await;
                            if start >= warm {
                                latencies.push(start.elapsed());
                            }
                            continue;
                        }
                        let v = post(
                            &mut sender,
                            "/api/v1/auth/challenge",
                            format!(r#"{{"apparatus_id":"{id}"}}"#),
                        )
                        .await;
                        let mut c = [0u8; 32];
                        hex::decode_to_slice(v["challenge"].as_str().unwrap(), &mut c).unwrap();
                        let c = Challenge(c);
                        let r = AuthResponse::compute(cv, id, &c);
                        let v = post(
                            &mut sender,
                            "/api/v1/auth/verify",
                            format!(
                                r#"{{"apparatus_id":"{id}","challenge":"{}","response":"{}"}}"#,
                                hex::encode(c.0),
                                hex::encode(r.0)
                            ),
                        )
                        .await;
                        assert_eq!(v["authenticated"], true, "{v}");
                        if start >= warm {
                            latencies.push(start.elapsed());
                        }
                    }
                    latencies
                }));
            }
            let mut latencies = Vec::new();
            for t in tasks {
                latencies.extend(t.await.unwrap());
            }
            Load {
                pairs: latencies.len() as u64,
                elapsed: Duration::from_secs(seconds),
                latencies,
            }
        })
        .await
}

fn bare_hmac_per_second((id, cv): &(ApparatusId, ConversionValue)) -> f64 {
    let c = Challenge([1; 32]);
    let r = AuthResponse::compute(cv, id, &c);
    let n = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        assert!(std::hint::black_box(&r).verify(cv, id, &c).is_ok());
    }
    f64::from(n) / t.elapsed().as_secs_f64()
}
