//! The real binary, killed with SIGKILL in the middle of a batch of reports and restarted:
//! every record is afterwards either installed or not, none lost, none doubled, and the
//! stations' retries converge.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imprint_device::sim::SimDevice;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_imprint");

/// A data folder, its database and its keys, as the binary is given them: `DATABASE_URL` on
/// the PostgreSQL run, the folder's SQLite file otherwise; on the token run of the suite, a
/// fresh SoftHSM2 token of its own (every `imprint init` prepares one token).
pub struct Site {
    pub dir: std::path::PathBuf,
    pub db: Option<String>,
    token: Option<String>,
}

impl Site {
    pub fn new(tag: &str, db: Option<String>) -> Site {
        let dir = crate::temp_dir(tag);
        let token = crate::token_args().map(|(_, _, pin)| {
            let label = format!("t-{}", imprint_server::random_id());
            let out = Command::new("softhsm2-util")
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    &label,
                    "--so-pin",
                    "0000",
                    "--pin",
                    &pin,
                ])
                .output()
                .expect("softhsm2-util (cargo xtask test installs SoftHSM2)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            label
        });
        Site { dir, db, token }
    }

    /// The binary on this site.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .env_remove("DATABASE_URL")
            .env_remove("IMPRINT_PKCS11_MODULE")
            .env("IMPRINT_ADMIN_PASSWORD", "password-123")
            .env("IMPRINT_USER_PASSWORD", "password-123");
        if let Some(url) = &self.db {
            cmd.env("DATABASE_URL", url);
        }
        if let (Some(label), Some((module, _, pin))) = (&self.token, crate::token_args()) {
            cmd.env("IMPRINT_PKCS11_MODULE", module)
                .env("IMPRINT_PKCS11_TOKEN", label)
                .env("IMPRINT_PKCS11_PIN", pin);
        }
        cmd
    }

    /// Runs a command, which must succeed; its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `init`, demo key 1 for CAM-X100 (on the token run wrapped with `openssl` to the token's
    /// import key, as docs/server.md tells a brand owner; otherwise from a file of hex, as a
    /// key ceremony hands it over), `entries` entries named `prefix`..., factory fa with a
    /// quota of `entries`, and the technician "tech" of fa.
    pub fn set_up(&self, entries: u64, prefix: &str) {
        self.run(&["init"]);
        let key = imprint_device::sim::demo_key(imprint_core::KeyId::new(1).unwrap());
        if self.token.is_some() {
            self.import_wrapped("1", key.expose_secret()).unwrap();
        } else {
            let key_file = self.dir.join("key-1.hex");
            std::fs::write(&key_file, hex::encode(key.expose_secret())).unwrap();
            self.run(&["keys", "import", "1", key_file.to_str().unwrap()]);
            std::fs::remove_file(&key_file).unwrap();
        }
        self.run(&["map-product", crate::PRODUCT, "1"]);
        let n = entries.to_string();
        self.run(&[
            "generate", "--key-id", "1", "--count", &n, "--prefix", prefix,
        ]);
        self.run(&["add-factory", "fa", "A"]);
        self.run(&["quota", "fa", crate::PRODUCT, &n]);
        self.run(&["add-user", "tech", "technician", "--factory", "fa"]);
    }

    /// Wraps `key` with `openssl pkeyutl` to the token's import key, as docs/server.md
    /// ("Keys in an HSM") tells a brand owner, and imports it as key `id`; the command's error
    /// output if it fails.
    pub fn import_wrapped(&self, id: &str, key: &[u8]) -> Result<(), String> {
        self.import_wrapped_checked(id, key, None)
    }

    /// [`Site::import_wrapped`], giving `check` as the check value instead of the key's own.
    pub fn import_wrapped_checked(
        &self,
        id: &str,
        key: &[u8],
        check: Option<&str>,
    ) -> Result<(), String> {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&self.dir)
                .output()
                .expect("the openssl command");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        std::fs::write(
            self.dir.join("import.pem"),
            self.run(&["keys", "import-key"]),
        )
        .unwrap();
        std::fs::write(self.dir.join("key.bin"), key).unwrap();
        openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "import.pem",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-pkeyopt",
            "rsa_mgf1_md:sha1",
            "-in",
            "key.bin",
            "-out",
            "key.wrapped",
        ]);
        // The check value, as docs/server.md computes it.
        std::fs::write(self.dir.join("ones.bin"), [0x01u8; 16]).unwrap();
        let block = openssl(&[
            "enc",
            "-aes-256-ecb",
            "-nopad",
            "-K",
            &hex::encode(key),
            "-in",
            "ones.bin",
        ]);
        std::fs::remove_file(self.dir.join("key.bin")).unwrap();
        let check = check.map_or_else(|| hex::encode(&block[..3]), str::to_string);
        let out = self
            .cmd()
            .args(["keys", "import", id, "--wrapped"])
            .arg(self.dir.join("key.wrapped"))
            .args(["--check", &check])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// `imprint serve` on `port`, once it listens.
    pub fn start(&self, port: u16) -> Child {
        let child = self
            .cmd()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port);
        child
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("kill", rt.block_on(crate::database_url()));
    site.set_up(150, "K-");
    site.run(&["keys", "add", "7"]);
    assert_eq!(site.run(&["keys", "list"]).trim(), "1\n7");

    let port = free_port();
    let mut server = site.start(port);
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
    let mut server = site.start(port);
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

#[test]
fn the_cli_reports_bad_input_clearly() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("cli", rt.block_on(crate::database_url()));
    let (dir, db) = (&site.dir, site.db.as_deref());
    let imprint = |args: &[&str]| site.cmd().args(args).output().unwrap();
    // No keys yet (no kek.key, or a token without Imprint's keys): a clear message.
    let out = imprint(&["keys", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imprint init"), "{err}");
    assert!(imprint(&["init"]).status.success());
    assert!(imprint(&["keys", "add", "3"]).status.success());
    assert!(imprint(&["map-product", "CAM-X100", "3"]).status.success());
    let csv = dir.join("entries.csv");
    std::fs::write(
        &csv,
        "A-1,SECRET-pass-phrase-1,3\nA 2,SECRET-pass-phrase-2,3\nA-3,short,3\n",
    )
    .unwrap();
    let out = imprint(&["import", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("entries.csv:2:") && err.contains("entries.csv:3:"),
        "{err}"
    );
    assert!(!err.contains("SECRET-pass-phrase"), "{err}");
    std::fs::write(&csv, "A-1,SECRET-pass-phrase-1,3\n").unwrap();
    let out = imprint(&["import", csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1"));
    let out = imprint(&["generate", "--key-id", "3", "--count", "5"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("generated 5 entries"));
    let out = imprint(&["export-installed"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("apparatus_id,product_serial"));
    let out = imprint(&["audit", "verify"]);
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
    let out = imprint(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 2 was altered"));
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
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&target)
        .args(["map-product", "BAD CODE", "1"])
        .env_remove("DATABASE_URL")
        .env_remove("IMPRINT_PKCS11_MODULE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("product code") && !err.contains("stored"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// A PostgreSQL cluster of this test's own, so that crashing it disturbs no other test: made
/// with the binaries of the suite's cluster (`IMPRINT_TEST_PG_BIN`), as the user those run as
/// (`IMPRINT_TEST_PG_RUNAS`, `postgres` when the suite runs as root).
struct OwnCluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    run_as: Option<String>,
    port: u16,
}

impl OwnCluster {
    fn start() -> OwnCluster {
        let cluster = OwnCluster::init();
        cluster.up();
        cluster
    }

    /// A fresh cluster, configured and not started.
    fn init() -> OwnCluster {
        let bin = std::path::PathBuf::from(
            std::env::var("IMPRINT_TEST_PG_BIN")
                .expect("the PostgreSQL run needs IMPRINT_TEST_PG_BIN (cargo xtask test sets it)"),
        );
        let run_as = std::env::var("IMPRINT_TEST_PG_RUNAS")
            .ok()
            .filter(|u| !u.is_empty());
        let dir = crate::temp_dir("pgown");
        let cluster = OwnCluster {
            dir,
            bin,
            run_as,
            port: free_port(),
        };
        cluster.give(&cluster.dir);
        let data = cluster.dir.join("data");
        cluster.pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "imprint",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.configure(&format!(
            "port = {}\nunix_socket_directories = '{}'\nlisten_addresses = '127.0.0.1'\nmax_connections = 200\n",
            cluster.port,
            cluster.dir.display()
        ));
        cluster
    }

    /// Appends to postgresql.conf.
    fn configure(&self, lines: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("data/postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, lines.as_bytes()).unwrap();
    }

    /// Writes a file into the data folder, owned by the user the cluster runs as, private.
    fn put(&self, name: &str, text: &str) {
        let path = self.dir.join("data").join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        self.give(&path);
    }

    fn give(&self, path: &std::path::Path) {
        if let Some(user) = &self.run_as {
            let ok = Command::new("chown").arg(user).arg(path).status().unwrap();
            assert!(ok.success());
        }
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let out = cmd.args(args).current_dir(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").to_str().unwrap().to_string()
    }

    fn up(&self) {
        let log = self.dir.join("log");
        self.pg(
            "pg_ctl",
            &[
                "-w",
                "-D",
                &self.data(),
                "-l",
                log.to_str().unwrap(),
                "start",
            ],
        );
    }

    /// Stops it as a crash would: no checkpoint, the WAL replayed at the next start.
    fn crash(&self) {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://imprint@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let _ = cmd
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one station saw: the identities it was issued, and the reports acknowledged.
#[derive(Default)]
struct Seen {
    issued: Vec<String>,
    acked: Vec<(String, String)>,
}

#[test]
fn three_servers_on_postgresql_survive_a_sigkill_and_a_database_crash_mid_batch() {
    if !crate::on_postgres() {
        eprintln!("runs on the PostgreSQL run of the suite (IMPRINT_TEST_DATABASE=postgres)");
        return;
    }
    const STATIONS: usize = 32;
    const ROUNDS: usize = 6;
    const PER_ISSUE: usize = 2;
    let cluster = OwnCluster::start();
    let url = cluster.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("fleet", Some(url.clone()));
    // Twice what the stations install: answers lost in a crash leave records open.
    site.set_up((STATIONS * ROUNDS * PER_ISSUE * 2) as u64, "F-");

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let servers: Vec<std::sync::Mutex<Child>> = ports
        .iter()
        .map(|&p| std::sync::Mutex::new(site.start(p)))
        .collect();
    let (_, v) = http(
        ports[0],
        "POST",
        "/api/v1/login",
        None,
        &json!({"username": "tech", "password": "password-123"}),
    )
    .unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let acked_total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let retries = std::sync::atomic::AtomicUsize::new(0);

    // One request, to the station's server of the moment; on a failure (refused connection,
    // a reset, a 5xx while the database is away) the next server, until it is answered.
    let ask = |first: usize, path: &str, body: &Value| -> Value {
        let mut n = first;
        loop {
            assert!(
                Instant::now() < deadline,
                "{path} unanswered for two minutes"
            );
            match http(ports[n % 3], "POST", path, Some(&token), body) {
                Ok((200, v)) => return v,
                Ok((s, v)) if (400..500).contains(&s) => panic!("{path} refused: {s} {v}"),
                _ => {
                    retries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    };
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let stations: Vec<_> = (0..STATIONS)
            .map(|station| {
                let ask = &ask;
                let acked_total = acked_total.clone();
                scope.spawn(move || {
                    let mut seen = Seen::default();
                    for round in 0..ROUNDS {
                        let v = ask(
                            station + round,
                            "/api/v1/issue",
                            &json!({"product_code": crate::PRODUCT, "count": PER_ISSUE}),
                        );
                        for (k, rec) in v["records"].as_array().unwrap().iter().enumerate() {
                            let id = rec["apparatus_id"].as_str().unwrap().to_string();
                            seen.issued.push(id.clone());
                            let n = (station * 1000 + round * 10 + k) as u32;
                            let mut dev = SimDevice::demo(n);
                            let (receipt, serial) = crate::install(&mut dev, rec);
                            let body = json!({"apparatus_id": id, "product_serial": serial, "receipt": receipt, "station": format!("s{station}")});
                            let v = ask(station + round + k + 1, "/api/v1/report", &body);
                            assert!(
                                matches!(v["status"].as_str(), Some("recorded" | "already_recorded")),
                                "{v}"
                            );
                            seen.acked.push((id, serial));
                            acked_total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    seen
                })
            })
            .collect();
        let all = STATIONS * ROUNDS * PER_ISSUE;
        let wait_for = |n: usize| {
            while acked_total.load(std::sync::atomic::Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "the stations stalled");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        // One server killed with SIGKILL a fifth of the way through, and restarted.
        wait_for(all / 5);
        {
            let mut s = servers[1].lock().unwrap();
            s.kill().unwrap();
            s.wait().unwrap();
            *s = site.start(ports[1]);
        }
        // Then the database itself crashes, half way through, and comes back.
        wait_for(all / 2);
        assert!(
            acked_total.load(std::sync::atomic::Ordering::SeqCst) < all,
            "the crash should land mid-batch"
        );
        cluster.crash();
        std::thread::sleep(Duration::from_millis(500));
        cluster.up();
        stations.into_iter().map(|s| s.join().unwrap()).collect()
    });

    let retries = retries.into_inner();
    eprintln!("requests the stations sent again after a failure: {retries}");
    assert!(
        retries > 0,
        "the kill and the crash went unnoticed: they came too late"
    );
    let issued: Vec<&String> = seen.iter().flat_map(|s| &s.issued).collect();
    let unique: std::collections::HashSet<&&String> = issued.iter().collect();
    assert_eq!(unique.len(), issued.len(), "an identity was issued twice");
    let acked: std::collections::HashMap<&String, &String> = seen
        .iter()
        .flat_map(|s| &s.acked)
        .map(|(i, s)| (i, s))
        .collect();
    assert_eq!(acked.len(), STATIONS * ROUNDS * PER_ISSUE);
    rt.block_on(async {
        use sqlx::Row;
        let store = imprint_server::store::Store::open(&url).await.unwrap();
        let rows = sqlx::query("SELECT apparatus_id, product_serial FROM installed_devices")
            .fetch_all(store.pool())
            .await
            .unwrap();
        let installed: std::collections::HashMap<String, String> = rows
            .iter()
            .map(|r| (r.get("apparatus_id"), r.get("product_serial")))
            .collect();
        assert_eq!(installed.len(), acked.len(), "a report too many or too few");
        for (id, serial) in &acked {
            assert_eq!(
                installed.get(*id),
                Some(*serial),
                "the report of {id} was lost"
            );
        }
        // Records whose issue answer was lost in a crash are open, not gone: the quota
        // counts exactly the installed and the open ones.
        let n = |sql: &'static str| {
            let pool = store.pool().clone();
            async move {
                sqlx::query(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .get::<i64, _>("n")
            }
        };
        let open =
            n("SELECT COUNT(*) AS n FROM factory_records WHERE product_serial IS NULL").await;
        let issued_state = n("SELECT COUNT(*) AS n FROM auth_info WHERE state <> 'unissued'").await;
        let used = n("SELECT used AS n FROM quotas").await;
        assert_eq!(used, installed.len() as i64 + open);
        assert_eq!(issued_state, used);
        store.close().await;
    });
    // One audit order, unbroken across the kill and the crash.
    let out = site.run(&["audit", "verify"]);
    assert!(out.contains("audit log intact"), "{out}");
    for s in &servers {
        let mut s = s.lock().unwrap();
        s.kill().unwrap();
        s.wait().unwrap();
    }
}

#[tokio::test]
async fn postgresql_over_tls_checks_the_server_and_a_plain_connection_is_refused() {
    if !crate::on_postgres() {
        eprintln!("runs on the PostgreSQL run of the suite (IMPRINT_TEST_DATABASE=postgres)");
        return;
    }
    use imprint_server::store::Store;
    let cluster = OwnCluster::init();
    // The operators' own CA, and the database server's certificate from it.
    let ca = |cn: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (rcgen::Issuer::new(p, key), cert)
    };
    let (issuer, ca_cert) = ca("Brand owner operations CA");
    let (_, other_ca) = ca("Someone else's CA");
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    cluster.put("server.crt", &server_cert.pem());
    cluster.put("server.key", &server_key.serialize_pem());
    cluster.configure("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    cluster.put(
        "pg_hba.conf",
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    );
    cluster.up();
    let roots = |name: &str, pem: &str| {
        let path = cluster.dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ours = roots("ca.crt", &ca_cert.pem());
    let theirs = roots("other-ca.crt", &other_ca.pem());
    let base = cluster.url();
    // Verified against the operators' CA: connects, migrates, works.
    let store = Store::open(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        ours.display()
    ))
    .await
    .unwrap();
    sqlx::query("SELECT COUNT(*) FROM users")
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    // Without TLS the database refuses; against another CA, or the public roots, the server
    // refuses the database's certificate.
    for (url, why) in [
        (format!("{base}?sslmode=disable"), "a plain connection"),
        (
            format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                theirs.display()
            ),
            "another CA",
        ),
        (format!("{base}?sslmode=verify-full"), "the public roots"),
    ] {
        let e = Store::open(&url).await.unwrap_err().to_string();
        eprintln!("{why}: {e}");
        assert!(e.contains("cannot open database"), "{why}: {e}");
    }
}

/// The sequencer killed mid-batch: 40,000 entries pending (as if written by as many business
/// transactions), `imprint serve` processes sequencing them (three on PostgreSQL, one on
/// SQLite), one killed with SIGKILL while entries are still pending, then restarted. Every
/// entry ends up in the log exactly once, none pending, and the log verifies (chain, tree,
/// signed checkpoint).
#[test]
fn the_sequencer_killed_mid_batch_sequences_every_entry_once() {
    use sqlx::Row;
    const N: i64 = 40_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("seqkill", rt.block_on(crate::database_url()));
    site.set_up(5, "Q-");
    let url = site
        .db
        .clone()
        .unwrap_or_else(|| imprint_server::store::sqlite_url(&site.dir.join("imprint.db")));
    let store = rt
        .block_on(imprint_server::store::Store::open(&url))
        .unwrap();
    let count = |sql: &'static str| -> i64 {
        rt.block_on(async {
            sqlx::query(sql)
                .fetch_one(store.pool())
                .await
                .unwrap()
                .get::<i64, _>("n")
        })
    };
    // The set-up's own entries are sequenced by the first server; the pending ones added here
    // have details {"n": i}.
    rt.block_on(async {
        let mut tx = store.begin().await.unwrap();
        for chunk in (0..N).collect::<Vec<_>>().chunks(200) {
            let sql = format!(
                "INSERT INTO audit_pending (at_ms, actor, action, detail) VALUES {}",
                imprint_server::store::values(chunk.len(), 4)
            );
            let mut q = imprint_server::db::query(imprint_server::store::bulk(&tx, sql));
            for i in chunk {
                q = q
                    .bind(1_700_000_000_000i64 + i)
                    .bind("load")
                    .bind("test.entry")
                    .bind(format!("{{\"n\":{i}}}"));
            }
            q.execute(&mut tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    });
    let before = count("SELECT COUNT(*) AS n FROM audit_pending");
    assert!(before >= N);

    let servers = if site.db.is_some() { 3 } else { 1 };
    let ports: Vec<u16> = (0..servers).map(|_| free_port()).collect();
    let mut children: Vec<Child> = ports.iter().map(|p| site.start(*p)).collect();
    // Kill the first while entries are still pending, after it has started on them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = count("SELECT COUNT(*) AS n FROM audit_pending");
        if pending < before && pending > 0 {
            break;
        }
        assert!(
            pending > 0,
            "all {before} entries were sequenced before the kill: make N larger"
        );
        assert!(Instant::now() < deadline, "the sequencer did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    children[0].kill().unwrap();
    children[0].wait().unwrap();
    children[0] = site.start(ports[0]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count("SELECT COUNT(*) AS n FROM audit_pending") > 0 {
        assert!(Instant::now() < deadline, "entries stayed pending");
        std::thread::sleep(Duration::from_millis(50));
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'test.entry'"),
        N,
        "each entry sequenced once"
    );
    assert_eq!(
        count("SELECT COUNT(DISTINCT detail) AS n FROM audit_log WHERE action = 'test.entry'"),
        N,
        "no entry lost, none twice"
    );
    let out = site.run(&["audit", "verify"]);
    assert!(out.contains("audit log intact"), "{out}");
    rt.block_on(store.close());
}

/// `imprint audit prove` writes a bundle for a unit's installation; `imprint audit check-proof`
/// checks it under the key `imprint audit key` printed, with no data folder; an altered bundle,
/// or another key, is refused.
#[test]
fn a_units_installation_is_proven_by_a_bundle_anyone_checks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("prove", rt.block_on(crate::database_url()));
    site.set_up(3, "P-");
    let port = free_port();
    let mut server = site.start(port);
    let (_, v) = http(
        port,
        "POST",
        "/api/v1/login",
        None,
        &json!({"username": "tech", "password": "password-123"}),
    )
    .unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let (_, v) = http(
        port,
        "POST",
        "/api/v1/issue",
        Some(&token),
        &json!({"product_code": crate::PRODUCT, "count": 1}),
    )
    .unwrap();
    let rec = v["records"][0].clone();
    let id = rec["apparatus_id"].as_str().unwrap().to_string();
    let (receipt, serial) = crate::install(&mut SimDevice::demo(0), &rec);
    let body = json!({"apparatus_id": id, "product_serial": serial, "receipt": receipt, "station": "line-1"});
    let (s, v) = http(port, "POST", "/api/v1/report", Some(&token), &body).unwrap();
    assert_eq!(s, 200, "{v}");
    server.kill().unwrap();
    server.wait().unwrap();

    let key = site.run(&["audit", "key"]).trim().to_string();
    let bundle = site.run(&["audit", "prove", "--apparatus", &id]);
    let v: Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(v["entry"]["action"], "report");
    assert!(v["entry"]["detail"].as_str().unwrap().contains(&serial));
    let file = site.dir.join("proof.json");
    std::fs::write(&file, &bundle).unwrap();
    // Checked with no data folder and no database.
    let check = |file: &std::path::Path, key: &str| {
        Command::new(BIN)
            .args(["--data-dir", "/nonexistent/imprint", "audit", "check-proof"])
            .arg(file)
            .args(["--key", key])
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = check(&file, &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("proven"));

    // Another serial in the entry: the leaf changes, the proof no longer leads to the root.
    let altered = bundle.replace(&serial, "SN-FORGED");
    std::fs::write(&file, &altered).unwrap();
    let out = check(&file, &key);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inclusion proof"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another log's key.
    std::fs::write(&file, &bundle).unwrap();
    let other = imprint_core::note::VerifierKey {
        name: key.split('+').next().unwrap().to_string(),
        public: [9; 32],
    };
    let out = check(&file, &other.to_string());
    assert!(!out.status.success());
    // An installation the log does not record.
    let out = site
        .cmd()
        .args(["audit", "prove", "--apparatus", "P-0000000099"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("records no installation"));
}

/// `imprint serve --witness URL=KEY`: the serving process sends its checkpoints to a real
/// witness by itself, and `GET /audit/checkpoint` then gives the witnessed one, its cosignature
/// valid under the witness's key. A witness that is not there is only logged.
#[test]
fn a_serving_process_gets_its_checkpoints_witnessed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("witness", rt.block_on(crate::database_url()));
    site.set_up(3, "W-");
    let key = imprint_core::note::VerifierKey::parse(site.run(&["audit", "key"]).trim()).unwrap();
    let dir = site.dir.join("witness");
    let cosigner = imprint_witness::Witness::init(&dir, "witness.test/w9").unwrap();
    let witness = imprint_witness::Witness::open(
        &dir,
        vec![imprint_witness::Log {
            origin: key.name.clone(),
            key: key.clone(),
        }],
    )
    .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        axum::serve(
            listener,
            imprint_witness::http::router(std::sync::Arc::new(witness)),
        )
        .await
        .unwrap()
    });
    let port = free_port();
    let mut server = site
        .cmd()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--witness", &format!("http://{addr}={cosigner}")])
        // A second witness that is not there: logged, and the first is still served.
        .args(["--witness", &format!("http://127.0.0.1:1={cosigner}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let witnessed = loop {
        let (s, v) = http(port, "GET", "/api/v1/audit/checkpoint", None, &Value::Null).unwrap();
        assert_eq!(s, 200, "{v}");
        if let Some(w) = v["witnessed"].as_str() {
            break w.to_string();
        }
        assert!(Instant::now() < deadline, "no witnessed checkpoint: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    let note = imprint_core::note::Note::parse(&witnessed).unwrap();
    note.verify(&key).unwrap();
    assert!(cosigner.verify(&note).is_ok(), "{witnessed}");
    // A bad --witness is refused at start, with what is wrong.
    let out = site
        .cmd()
        .args(["serve", "--witness", "ftp://x=y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("witness"));
}
