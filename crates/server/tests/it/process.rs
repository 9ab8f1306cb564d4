//! The real binary, killed with SIGKILL in the middle of a batch of reports and restarted:
//! every record is afterwards either installed or not, none lost, none doubled, and the
//! stations' retries converge.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imprint_device::sim::SimDevice;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_imprint");

/// The binary with the test's database: `DATABASE_URL` on the PostgreSQL run, the data
/// folder's SQLite file otherwise.
fn bin(db: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL");
    if let Some(url) = db {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

fn start(dir: &std::path::Path, db: Option<&str>, port: u16) -> Child {
    let child = bin(db)
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    child
}

/// Waits up to 20 s for something to listen on `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 client over a TCP socket on loopback (no extra dependency).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), std::io::Error> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sigkill_mid_batch_loses_and_doubles_nothing() {
    let dir = crate::temp_dir("kill");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(crate::database_url());
    let db = db.as_deref();
    // Set up with the CLI itself.
    let cli = |args: &[&str]| {
        let out = bin(db)
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .env("IMPRINT_ADMIN_PASSWORD", "password-123")
            .env("IMPRINT_USER_PASSWORD", "password-123")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    cli(&["init"]);
    cli(&["keys", "add", "7"]);
    assert_eq!(cli(&["keys", "list"]).trim(), "7");
    // The simulated devices hold demo key 1, which only the library can add (the CLI makes
    // random keys), so the rest of the set-up goes through the service.
    rt.block_on(async {
        let store = match db {
            Some(url) => imprint_server::store::Store::open(url).await.unwrap(),
            None => imprint_server::store::Store::open_sqlite(&dir.join("imprint.db"))
                .await
                .unwrap(),
        };
        let state = imprint_server::AppState::new(
            store,
            imprint_server::kek::Kek::load_file(&dir.join("kek.key")).unwrap(),
        );
        let k1 = imprint_core::KeyId::new(1).unwrap();
        imprint_server::service::add_key_bytes(
            &state,
            "test",
            k1,
            imprint_device::sim::demo_key(k1),
        )
        .await
        .unwrap();
        let p = imprint_core::ProductCode::new(crate::PRODUCT).unwrap();
        imprint_server::service::map_product(&state, "test", p, k1)
            .await
            .unwrap();
        imprint_server::service::generate(&state, "test", k1, 150, "K-")
            .await
            .unwrap();
        let f = imprint_core::FactoryId::new("fa").unwrap();
        imprint_server::service::add_factory(&state, "test", f, "A")
            .await
            .unwrap();
        imprint_server::service::set_quota(&state, "test", f, p, 150)
            .await
            .unwrap();
        let mut tx = state.store.begin().await.unwrap();
        imprint_server::auth::create_user(
            &mut tx,
            "test",
            "tech",
            "password-123",
            "technician",
            Some("fa"),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        state.store.close().await;
    });

    let port = free_port();
    let mut server = start(&dir, db, port);
    let login = |port| {
        http(
            port,
            "POST",
            "/api/v1/login",
            None,
            &json!({"username": "tech", "password": "password-123"}),
        )
        .unwrap()
        .1["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token = login(port);
    let (_, v) = http(
        port,
        "POST",
        "/api/v1/issue",
        Some(&token),
        &json!({"product_code": crate::PRODUCT, "count": 150}),
    )
    .unwrap();
    let recs = v["records"].as_array().unwrap().clone();
    assert_eq!(recs.len(), 150);
    // The station's journal: every unit installed, receipts known.
    let journal: Vec<(String, String, String)> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut dev = SimDevice::demo(i as u32);
            let (receipt, serial) = crate::install(&mut dev, r);
            (
                r["apparatus_id"].as_str().unwrap().to_string(),
                serial,
                receipt,
            )
        })
        .collect();
    // Report in a background thread; kill the server part-way through.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reporter = {
        let journal = journal.clone();
        let token = token.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for (id, serial, receipt) in &journal {
                let body = json!({"apparatus_id": id, "product_serial": serial, "receipt": receipt, "station": "s1"});
                match http(port, "POST", "/api/v1/report", Some(&token), &body) {
                    Ok((200, _)) => acked.push(id.clone()),
                    _ => break,
                }
                progress.store(acked.len(), std::sync::atomic::Ordering::SeqCst);
            }
            acked
        })
    };
    // Kill once a few reports are through, in the middle of the stream of requests.
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(std::sync::atomic::Ordering::SeqCst) < 10
        && !reporter.is_finished()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let acked = reporter.join().unwrap();
    assert!(
        acked.len() < journal.len(),
        "the kill should land mid-batch (acked {})",
        acked.len()
    );

    // Restart; everything acknowledged before the kill is there.
    let mut server = start(&dir, db, port);
    let token = login(port);
    // Records still open for the factory, after checking the audit chain survived the kill.
    let open_records = |token: &str| -> usize {
        let (_, v) = http(
            port,
            "POST",
            "/api/v1/login",
            None,
            &json!({"username": "admin", "password": "password-123"}),
        )
        .unwrap();
        let admin = v["token"].as_str().unwrap().to_string();
        let (s, v) = http(
            port,
            "GET",
            "/api/v1/audit/verify",
            Some(&admin),
            &Value::Null,
        )
        .unwrap();
        assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "{v}");
        let (_, v) = http(port, "GET", "/api/v1/records", Some(token), &Value::Null).unwrap();
        v["records"].as_array().unwrap().len()
    };
    let open_after_kill = open_records(&token);
    assert!(
        open_after_kill <= journal.len() - acked.len(),
        "an acknowledged report was lost"
    );
    // The station retries every report from its journal: each is recorded or already recorded.
    let mut outcomes = std::collections::HashMap::new();
    for (id, serial, receipt) in &journal {
        let body = json!({"apparatus_id": id, "product_serial": serial, "receipt": receipt, "station": "s1"});
        let (s, v) = http(port, "POST", "/api/v1/report", Some(&token), &body).unwrap();
        assert_eq!(s, 200, "{v}");
        *outcomes
            .entry(v["status"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(outcomes.values().sum::<usize>(), 150);
    assert!(outcomes.get("already_recorded").copied().unwrap_or(0) >= acked.len());
    assert_eq!(
        open_records(&token),
        0,
        "every record installed exactly once, none left in limbo"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn https_with_the_certificate_from_init_and_no_plain_http_off_loopback() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read, Write};

    let dir = crate::temp_dir("tls");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["init", "--tls-name", "station-7.factory.lan"])
        .env("IMPRINT_ADMIN_PASSWORD", "password-123")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["kek.key", "tls.key"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f} must be private");
        }
    }
    // A second init refuses to overwrite the key-encryption key.
    let again = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .arg("init")
        .env("IMPRINT_ADMIN_PASSWORD", "password-123")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));
    // Plain http on a non-loopback address is refused before anything listens.
    let lan = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--listen", "0.0.0.0:1"])
        .output()
        .unwrap();
    assert!(!lan.status.success());
    assert!(String::from_utf8_lossy(&lan.stderr).contains("add --tls"));

    let port = free_port();
    let mut server = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--tls", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("tls.crt")).unwrap())
        .unwrap();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    for name in ["localhost", "station-7.factory.lan"] {
        let conn = rustls::ClientConnection::new(
            config.clone(),
            ServerName::try_from(name.to_string()).unwrap(),
        )
        .unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        let _ = tls.read_to_string(&mut resp);
        assert!(resp.starts_with("HTTP/1.1 200"), "{name}: {resp}");
        assert!(resp.ends_with("ok"));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn imprint(dir: &std::path::Path, db: Option<&str>, args: &[&str]) -> std::process::Output {
    bin(db)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("IMPRINT_ADMIN_PASSWORD", "password-123")
        .env("IMPRINT_USER_PASSWORD", "password-123")
        .output()
        .unwrap()
}

#[test]
fn the_cli_reports_bad_input_clearly() {
    let dir = crate::temp_dir("cli");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(crate::database_url());
    let db = db.as_deref();
    // No key file yet: a clear message, not a panic.
    let out = imprint(&dir, db, &["keys", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `imprint init` first"));
    assert!(imprint(&dir, db, &["init"]).status.success());
    assert!(imprint(&dir, db, &["keys", "add", "3"]).status.success());
    assert!(
        imprint(&dir, db, &["map-product", "CAM-X100", "3"])
            .status
            .success()
    );
    let csv = dir.join("entries.csv");
    std::fs::write(
        &csv,
        "A-1,SECRET-pass-phrase-1,3\nA 2,SECRET-pass-phrase-2,3\nA-3,short,3\n",
    )
    .unwrap();
    let out = imprint(&dir, db, &["import", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("entries.csv:2:") && err.contains("entries.csv:3:"),
        "{err}"
    );
    assert!(!err.contains("SECRET-pass-phrase"), "{err}");
    std::fs::write(&csv, "A-1,SECRET-pass-phrase-1,3\n").unwrap();
    let out = imprint(&dir, db, &["import", csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1"));
    let out = imprint(&dir, db, &["generate", "--key-id", "3", "--count", "5"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("generated 5 entries"));
    let out = imprint(&dir, db, &["export-installed"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("apparatus_id,product_serial"));
    let out = imprint(&dir, db, &["audit", "verify"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("audit log intact"));
    // Tamper with the database behind the server's back: `audit verify` says where.
    rt.block_on(async {
        let store = match db {
            Some(url) => imprint_server::store::Store::open(url).await.unwrap(),
            None => imprint_server::store::Store::open_sqlite(&dir.join("imprint.db"))
                .await
                .unwrap(),
        };
        sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
    });
    let out = imprint(&dir, db, &["audit", "verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 2 was altered"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_sets_up_in_seconds() {
    let dir = crate::temp_dir("demo");
    let start = Instant::now();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["demo", "--no-serve"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tech-ana / demo-tech-pass"));
    assert!(dir.join("imprint-demo/imprint.db").exists());
    // Not a speed target (that lives in docs/benchmarks.md): a guard against a hang.
    assert!(start.elapsed() < Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `imprint demo --data-dir DIR` uses DIR, replaces only a previous demo there, and refuses any
/// other folder without touching it.
#[test]
fn demo_honours_its_data_dir_and_replaces_only_a_previous_demo() {
    let work = crate::temp_dir("demo-dir");
    let demo = |dir: &std::path::Path| {
        Command::new(BIN)
            .current_dir(&work)
            .arg("--data-dir")
            .arg(dir)
            .args(["demo", "--no-serve", "--entries", "10"])
            .output()
            .unwrap()
    };
    let target = work.join("my-demo");
    let out = demo(&target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.join("imprint.db").exists());
    assert!(target.join(".imprint-demo").exists());
    assert!(
        !work.join("imprint-demo").exists(),
        "the default folder was used instead"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("my-demo"));
    // Again: the previous demo is replaced.
    let out = demo(&target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A folder that is not a demo is refused and left as it was.
    let precious = work.join("real-data");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("imprint.db"), b"the brand owner's data").unwrap();
    let out = demo(&precious);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to replace") && err.contains(".imprint-demo"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(precious.join("imprint.db")).unwrap(),
        b"the brand owner's data"
    );
    // A bad identifier on the command line is the user's error, named as such.
    let out = imprint(&target, None, &["map-product", "BAD CODE", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("product code") && !err.contains("stored"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
