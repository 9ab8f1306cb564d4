//! `imprint`: the management and authentication server and its admin commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imprint_core::{ApparatusId, FactoryId, KeyId, ProductCode};
use imprint_server::custody::Custody;
use imprint_server::kek::Kek;
use imprint_server::pkcs11::Token;
use imprint_server::store::Store;
use imprint_server::{AppError, AppState, auth, db, service};

#[derive(Parser)]
#[command(
    name = "imprint",
    version,
    about = "Imprint management and authentication server"
)]
struct Cli {
    /// Folder holding the database (imprint.db) and the key-encryption key (kek.key).
    /// Default: `imprint-data`, and `imprint-demo` for `imprint demo`.
    #[arg(long, env = "IMPRINT_DATA", global = true)]
    data_dir: Option<PathBuf>,
    /// The database: `postgres://USER@HOST:PORT/DB` for PostgreSQL (several `imprint serve`
    /// processes may share one); default the SQLite file imprint.db in the data folder. The
    /// key-encryption key stays in the data folder either way.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database: Option<String>,
    /// Keep the keys in a PKCS#11 token (an HSM) through this module, the vendor's library
    /// (SoftHSM2's: /usr/lib/softhsm/libsofthsm2.so). Without it, kek.key in the data folder.
    /// Chosen at `imprint init`; every later command must give the same.
    #[arg(long, env = "IMPRINT_PKCS11_MODULE", global = true)]
    pkcs11_module: Option<PathBuf>,
    /// The token's label (the token is found by label, not by slot number).
    #[arg(
        long,
        env = "IMPRINT_PKCS11_TOKEN",
        global = true,
        default_value = "imprint"
    )]
    pkcs11_token: String,
    /// A file holding the token user's PIN. Without it, the PIN is read from the environment
    /// variable IMPRINT_PKCS11_PIN. Never on the command line, where `ps` would show it.
    #[arg(long, env = "IMPRINT_PKCS11_PIN_FILE", global = true)]
    pkcs11_pin_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the data folder, the key-encryption key, the database and the first admin.
    Init {
        /// The admin's user name.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// The admin's password (or IMPRINT_ADMIN_PASSWORD); generated and printed if absent.
        #[arg(long, env = "IMPRINT_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// Extra host names or addresses for the self-signed TLS certificate (the station's
        /// LAN name), besides localhost and 127.0.0.1.
        #[arg(long)]
        tls_name: Vec<String>,
    },
    /// Serves the API.
    Serve {
        /// Address to listen on. Loopback by default; any other address requires --tls.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Serve https with tls.crt/tls.key from the data folder (made by `imprint init`).
        #[arg(long)]
        tls: bool,
        /// Folder with the portal's built files, served on the same origin as the API.
        #[arg(long, env = "IMPRINT_PORTAL")]
        portal: Option<PathBuf>,
        /// A witness to send the audit log's checkpoints to, `URL=KEY`: its add-checkpoint
        /// URL (plain http) and its cosigner key (`imprint-witness key`). Repeatable.
        #[arg(long = "witness")]
        witnesses: Vec<imprint_server::witness::Peer>,
    },
    /// A fresh demo in the data folder (default `imprint-demo`; a previous demo there is
    /// replaced, any other folder refused): demo keys matching the simulated devices, products
    /// CAM-X100 and the chip-bound CAM-C200, two factories with quotas, entries, logins; then
    /// serves. With --pkcs11-module
    /// the keys go into that token, which must hold no Imprint keys yet.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Authentication-information entries to generate.
        #[arg(long, default_value_t = 3000)]
        entries: u64,
        /// Set everything up, print the logins, and exit without serving.
        #[arg(long)]
        no_serve: bool,
        /// Folder with the portal's built files, served on the same origin as the API.
        #[arg(long, env = "IMPRINT_PORTAL")]
        portal: Option<PathBuf>,
    },
    /// Table 700: pre-write keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Table 500: map a product code to a key identifier (remaps re-seal what is outstanding).
    MapProduct {
        /// Product code.
        product_code: ProductCode,
        /// Key identifier.
        key_id: KeyId,
        /// A new product's records are each bound to one chip (sealed for the unit's chip ID,
        /// one at a time, never leased). Fixed when the product is first mapped.
        #[arg(long)]
        chip_bound: bool,
    },
    /// Table 500: whether stations lock a product's units after the closed-loop check (the
    /// identity becomes permanent; no record is ever written into the unit again).
    LockUnits {
        /// Product code.
        product_code: ProductCode,
        /// `on` or `off`.
        setting: Switch,
    },
    /// Table 702: generate entries.
    Generate {
        /// Key identifier the entries are bound to.
        #[arg(long)]
        key_id: KeyId,
        /// How many.
        #[arg(long)]
        count: u64,
        /// Apparatus ID prefix.
        #[arg(long, default_value = "IMP-")]
        prefix: String,
    },
    /// Table 702: import entries from CSV (apparatus_id,pass_phrase,key_id); all or nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Table 704 without secrets, as CSV on standard output.
    ExportInstalled,
    /// Adds a factory.
    AddFactory {
        /// Factory ID.
        factory_id: FactoryId,
        /// Display name.
        name: String,
    },
    /// Sets a factory's quota for a product code.
    Quota {
        /// Factory ID.
        factory_id: FactoryId,
        /// Product code.
        product_code: ProductCode,
        /// Records it may receive in total.
        limit: u64,
    },
    /// Adds a user (password from IMPRINT_USER_PASSWORD).
    AddUser {
        /// User name.
        username: String,
        /// admin, technician or auditor.
        role: String,
        /// The technician's factory.
        #[arg(long)]
        factory: Option<String>,
        /// Password.
        #[arg(long, env = "IMPRINT_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Prints the OpenAPI 3.1 document of the API (the same as `GET /api/v1/openapi.json`
    /// and `docs/openapi.json`).
    Openapi,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verifies the whole log: its hash chain, its Merkle tree and the latest signed
    /// checkpoint, and a checkpoint saved earlier (`imprint audit verify`).
    Verify {
        /// A checkpoint saved from an earlier run: a file holding a signed checkpoint, or a
        /// chain head `seq:hash` (catches cut-off entries and rewritten history).
        #[arg(long)]
        checkpoint: Option<String>,
    },
    /// Proves one entry is in the log: writes a proof bundle (JSON: the entry, its inclusion
    /// proof, the signed checkpoint) that anyone checks without the server.
    Prove {
        /// The recorded installation of this apparatus ID.
        #[arg(long, conflicts_with = "seq", required_unless_present = "seq")]
        apparatus: Option<ApparatusId>,
        /// The entry with this number.
        #[arg(long)]
        seq: Option<u64>,
        /// A file holding a signed checkpoint saved earlier, to prove against (default: the
        /// latest).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Prints the log's verifier key (`NAME+KEYID+KEY`): hand it to auditors and witnesses
    /// once, out of band, to pin.
    Key,
    /// Checks a proof bundle from `imprint audit prove` under the log's pinned key, without
    /// the database.
    CheckProof {
        /// The bundle (JSON).
        file: PathBuf,
        /// The log's verifier key (`NAME+KEYID+KEY`), pinned beforehand.
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Adds a random pre-write key (made in the token with --pkcs11-module).
    Add {
        /// Key identifier.
        key_id: KeyId,
    },
    /// Imports a pre-write key from a file of 64 hex digits (a key ceremony's output), or with
    /// --wrapped from the file of it encrypted to the token's import key. With --pkcs11-module
    /// the key goes into the token, sensitive and unextractable from then on; destroy the file
    /// afterwards.
    Import {
        /// Key identifier.
        key_id: KeyId,
        /// The file with the key's 64 hex digits, or with --wrapped its RSA-OAEP ciphertext.
        file: PathBuf,
        /// The file holds the key encrypted to `imprint keys import-key`'s public key
        /// (RSA-OAEP, SHA-1, MGF1-SHA-1), as bytes: it is unwrapped inside the token.
        #[arg(long, requires = "check")]
        wrapped: bool,
        /// With --wrapped: the key's check value, 6 hex digits (the first 3 bytes of
        /// AES-256-ECB of sixteen 0x01 bytes under the key); a key that does not match is
        /// refused.
        #[arg(long)]
        check: Option<String>,
    },
    /// Prints the token's import public key (PEM), made by `imprint init`: a brand owner
    /// encrypts an existing pre-write key to it so that the key is never in clear on the
    /// server.
    ImportKey,
    /// Lists key identifiers (never key material).
    List,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "imprint_server=info,imprint=info".into()),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imprint: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the server's data and keys are: the data folder, the database, the key custody.
struct Site {
    dir: PathBuf,
    database: Option<String>,
    token: Option<TokenArgs>,
}

/// `--pkcs11-module`, `--pkcs11-token` and where the PIN comes from.
struct TokenArgs {
    module: PathBuf,
    label: String,
    pin_file: Option<PathBuf>,
}

impl TokenArgs {
    fn pin(&self) -> Result<zeroize::Zeroizing<String>, AppError> {
        let pin = zeroize::Zeroizing::new(match &self.pin_file {
            Some(f) => std::fs::read_to_string(f).map_err(|e| {
                AppError::Config(format!("cannot read the PIN file {}: {e}", f.display()))
            })?,
            None => std::env::var("IMPRINT_PKCS11_PIN").map_err(|_| {
                AppError::Config(
                    "the token's PIN is needed: --pkcs11-pin-file FILE or IMPRINT_PKCS11_PIN"
                        .into(),
                )
            })?,
        });
        Ok(zeroize::Zeroizing::new(
            pin.trim_end_matches(['\r', '\n']).to_string(),
        ))
    }
}

impl Site {
    /// The store named by `--database`, or the SQLite file in the data folder.
    async fn store(&self) -> Result<Store, AppError> {
        match &self.database {
            Some(url) => Store::open(url).await,
            None => Store::open_sqlite(&self.dir.join("imprint.db")).await,
        }
    }

    /// The keys: made (`create`, for `imprint init`) or found, in kek.key or in the token.
    fn custody(&self, create: bool) -> Result<Custody, AppError> {
        let kek = self.dir.join("kek.key");
        match (&self.token, create) {
            (None, true) => Kek::create_file(&kek).map(Custody::from),
            (None, false) => Kek::load_file(&kek).map(Custody::from),
            (Some(t), _) => {
                let token = Token::open(&t.module, &t.label, &t.pin()?)?;
                if create {
                    Custody::prepare_token(token)
                } else {
                    Custody::in_token(token)
                }
            }
        }
    }

    /// The keys first: a folder without them is not touched (no database file is made).
    async fn open(&self) -> Result<AppState, AppError> {
        let custody = self.custody(false)?;
        let store = self.store().await?;
        custody.check(&store, false).await?;
        Ok(AppState::new(store, custody))
    }
}

fn random_password() -> String {
    use rand_core::Rng;
    let mut b = [0u8; 12];
    imprint_server::rng().fill_bytes(&mut b);
    hex::encode(b)
}

async fn init(
    site: &Site,
    admin: &str,
    password: Option<String>,
    tls_names: &[String],
) -> Result<AppState, AppError> {
    let dir = site.dir.as_path();
    std::fs::create_dir_all(dir)
        .map_err(|e| AppError::Config(format!("cannot create {}: {e}", dir.display())))?;
    if site.database.is_none() && dir.join("imprint.db").exists() {
        return Err(AppError::Config(format!(
            "{} already holds a database",
            dir.display()
        )));
    }
    let store = site.store().await?;
    let users: i64 = db::Row::try_get(
        &db::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&mut store.read().await?)
            .await?,
        "n",
    )?;
    if users > 0 {
        return Err(AppError::Config(
            "the database already has users: it was initialised before".into(),
        ));
    }
    let custody = site.custody(true)?;
    custody.check(&store, true).await?;
    imprint_server::tls::create_self_signed(dir, tls_names)?;
    let where_keys = match custody.token() {
        Some(t) => format!("the keys are in the PKCS#11 token '{}'", t.label()),
        None => "keep kek.key safe and apart from backups of imprint.db".into(),
    };
    let state = AppState::new(store, custody);
    let (password, shown) = match password {
        Some(p) => (p, false),
        None => (random_password(), true),
    };
    let mut tx = state.store.begin().await?;
    auth::create_user(&mut tx, "cli", admin, &password, "admin", None).await?;
    tx.commit().await?;
    println!("initialised {} ({where_keys})", dir.display());
    if shown {
        println!("admin user '{admin}', password (shown once): {password}");
    }
    Ok(state)
}

async fn serve(
    state: AppState,
    listen: SocketAddr,
    tls: Option<&Path>,
    portal: Option<&Path>,
    witnesses: Vec<imprint_server::witness::Peer>,
) -> Result<(), AppError> {
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(AppError::Config(format!(
            "refusing plain http on {listen}: browsers allow WebUSB only on https or localhost, and secrets would cross the LAN in clear; add --tls"
        )));
    }
    spawn_lease_sweeper(state.clone());
    imprint_server::tlog::spawn(state.store.clone(), state.custody.clone(), witnesses);
    let app = match portal {
        Some(dir) if dir.join("index.html").is_file() => {
            tracing::info!("serving the portal from {}", dir.display());
            imprint_server::app_with_portal(state, dir)
        }
        Some(dir) => {
            return Err(AppError::Config(format!(
                "{} has no index.html: build the portal first",
                dir.display()
            )));
        }
        None => imprint_server::app(state),
    };
    if let Some(dir) = tls {
        tracing::info!("imprint serving on https://{listen}");
        return imprint_server::tls::serve(app, listen, dir).await;
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AppError::Config(format!("cannot listen on {listen}: {e}")))?;
    tracing::info!("imprint serving on http://{listen}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| AppError::bug(format!("server: {e}")))
}

/// Leases past their deadline and grace period give their unreported records back.
fn spawn_lease_sweeper(sweeper: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            match service::expire_leases(&sweeper, imprint_server::now_millis()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(returned = n, "expired leases returned records to the pool")
                }
                Err(e) => tracing::warn!(error = %e, "lease expiry sweep failed"),
            }
        }
    });
}

/// On or off, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// The file that marks a folder as made by `imprint demo`, so a later demo may replace it.
const DEMO_MARKER: &str = ".imprint-demo";

/// Clears `dir` for a new demo: a previous demo (or an empty folder) is removed; any other
/// folder is refused, so that `--data-dir` pointed at real data never deletes it.
fn clear_demo_dir(dir: &Path) -> Result<(), AppError> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", dir.display())))?
        .next()
        .is_none();
    if !empty && !dir.join(DEMO_MARKER).is_file() {
        return Err(AppError::Config(format!(
            "refusing to replace {}: it is not a folder made by `imprint demo` (no {DEMO_MARKER} in it); pick another --data-dir",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(dir)
        .map_err(|e| AppError::Config(format!("cannot replace {}: {e}", dir.display())))
}

async fn demo(site: Site, entries: u64) -> Result<AppState, AppError> {
    let dir = site.dir.as_path();
    clear_demo_dir(dir)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| AppError::Config(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::write(
        dir.join(DEMO_MARKER),
        "made by `imprint demo`; replaced by the next one\n",
    )
    .map_err(|e| AppError::Config(format!("cannot write {}: {e}", dir.display())))?;
    let state = init(&site, "admin", Some("demo-admin-pass".into()), &[]).await?;
    let who = "demo";
    for k in [1u32, 2] {
        let key_id = KeyId::new(k)?;
        service::add_key_bytes(&state, who, key_id, imprint_device::sim::demo_key(key_id)).await?;
    }
    let product = ProductCode::new(imprint_device::sim::DEMO_PRODUCT)?;
    service::map_product(&state, who, product, KeyId::new(1)?, None).await?;
    service::set_lock_units(&state, who, product, true).await?;
    service::generate(&state, who, KeyId::new(1)?, entries, "IMP-").await?;
    // The chip-bound model: each record is sealed for one unit's chip, fetched as it is plugged.
    let chip_product = ProductCode::new(imprint_device::sim::DEMO_CHIP_PRODUCT)?;
    service::map_product(&state, who, chip_product, KeyId::new(2)?, Some(true)).await?;
    service::generate(&state, who, KeyId::new(2)?, entries, "IMPC-").await?;
    for (f, name, quota) in [
        ("acme-sz", "ACME Shenzhen", 1000u64),
        ("contoso-pl", "Contoso Poland", 200),
    ] {
        let factory = FactoryId::new(f)?;
        service::add_factory(&state, who, factory, name).await?;
        service::set_quota(&state, who, factory, product, quota).await?;
        service::set_quota(&state, who, factory, chip_product, quota).await?;
    }
    let mut tx = state.store.begin().await?;
    auth::create_user(
        &mut tx,
        who,
        "tech-ana",
        "demo-tech-pass",
        "technician",
        Some("acme-sz"),
    )
    .await?;
    auth::create_user(
        &mut tx,
        who,
        "tech-ben",
        "demo-tech-pass",
        "technician",
        Some("contoso-pl"),
    )
    .await?;
    auth::create_user(&mut tx, who, "auditor", "demo-audit-pass", "auditor", None).await?;
    tx.commit().await?;
    println!(
        "demo data in {}: keys 1 and 2 (the simulated devices' demo keys), product {product} -> key 1 (units locked after their check), chip-bound product {chip_product} -> key 2,",
        dir.display()
    );
    println!(
        "{entries} entries of each key, factories acme-sz (quota 1000 of each product) and contoso-pl (quota 200)."
    );
    println!(
        "logins: admin / demo-admin-pass, tech-ana / demo-tech-pass (acme-sz), tech-ben / demo-tech-pass (contoso-pl), auditor / demo-audit-pass"
    );
    Ok(state)
}

async fn run(cli: Cli) -> Result<(), AppError> {
    let demo_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("imprint-demo"));
    let site = Site {
        dir: cli
            .data_dir
            .unwrap_or_else(|| PathBuf::from("imprint-data")),
        database: cli.database,
        token: cli.pkcs11_module.map(|module| TokenArgs {
            module,
            label: cli.pkcs11_token,
            pin_file: cli.pkcs11_pin_file,
        }),
    };
    match cli.command {
        Command::Init {
            admin,
            admin_password,
            tls_name,
        } => init(&site, &admin, admin_password, &tls_name)
            .await
            .map(|_| ()),
        Command::Serve {
            listen,
            tls,
            portal,
            witnesses,
        } => {
            serve(
                site.open().await?,
                listen,
                tls.then_some(site.dir.as_path()),
                portal.as_deref(),
                witnesses,
            )
            .await
        }
        Command::Demo {
            listen,
            entries,
            no_serve,
            portal,
        } => {
            if site.database.is_some() {
                return Err(AppError::Config(
                    "the demo runs on its own SQLite file in its folder; drop --database (and DATABASE_URL)".into(),
                ));
            }
            let site = Site {
                dir: demo_dir,
                ..site
            };
            let state = demo(site, entries).await?;
            if no_serve {
                Ok(())
            } else {
                serve(state, listen, None, portal.as_deref(), Vec::new()).await
            }
        }
        Command::Keys(KeysCmd::Add { key_id }) => {
            service::add_key(&site.open().await?, "cli", key_id).await
        }
        Command::Keys(KeysCmd::ImportKey) => {
            print!("{}", site.open().await?.custody.import_key_pem()?);
            Ok(())
        }
        Command::Keys(KeysCmd::Import {
            key_id,
            file,
            wrapped: true,
            check,
        }) => {
            let mut kcv = [0u8; 3];
            hex::decode_to_slice(check.unwrap_or_default().trim(), &mut kcv).map_err(|_| {
                AppError::BadRequest("--check: the key check value is 6 hex digits".into())
            })?;
            let bytes = std::fs::read(&file)
                .map_err(|e| AppError::Config(format!("cannot read {}: {e}", file.display())))?;
            service::add_key_wrapped(&site.open().await?, "cli", key_id, bytes, kcv).await?;
            println!("imported key {key_id} into the token");
            Ok(())
        }
        Command::Keys(KeysCmd::Import {
            key_id,
            file,
            wrapped: false,
            ..
        }) => {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(&file).map_err(|e| {
                    AppError::Config(format!("cannot read {}: {e}", file.display()))
                })?);
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text.trim(), bytes.as_mut_slice()).map_err(|_| {
                AppError::BadRequest(format!(
                    "{} does not hold a pre-write key: 64 hex digits (32 bytes) expected",
                    file.display()
                ))
            })?;
            let key = imprint_core::PreWriteKey::from_array(*bytes);
            service::add_key_bytes(&site.open().await?, "cli", key_id, key).await?;
            println!("imported key {key_id}; destroy {} now", file.display());
            Ok(())
        }
        Command::Keys(KeysCmd::List) => {
            for k in service::list_keys(&site.open().await?).await? {
                println!("{k}");
            }
            Ok(())
        }
        Command::MapProduct {
            product_code,
            key_id,
            chip_bound,
        } => {
            let state = site.open().await?;
            let known = service::list_products(&state)
                .await?
                .iter()
                .any(|p| p.product_code == product_code);
            // A remap without the flag keeps the binding; the flag on a remap must match it.
            let binding = (chip_bound || !known).then_some(chip_bound);
            let r = service::map_product(&state, "cli", product_code, key_id, binding).await?;
            println!(
                "{product_code} -> key {} (was {:?}); {} outstanding records re-sealed",
                r.new_key_id,
                r.old_key_id.map(|k| k.get()),
                r.resealed
            );
            Ok(())
        }
        Command::LockUnits {
            product_code,
            setting,
        } => {
            let p = service::set_lock_units(
                &site.open().await?,
                "cli",
                product_code,
                setting == Switch::On,
            )
            .await?;
            println!(
                "{}: stations {} its units after the closed-loop check (from their next sign-in)",
                p.product_code,
                if p.lock_units { "lock" } else { "do not lock" }
            );
            Ok(())
        }
        Command::Generate {
            key_id,
            count,
            prefix,
        } => {
            let g = service::generate(&site.open().await?, "cli", key_id, count, &prefix).await?;
            println!("generated {} entries: {} .. {}", g.count, g.first, g.last);
            Ok(())
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| AppError::Config(format!("cannot read {}: {e}", file.display())))?;
            match service::import_csv(&site.open().await?, "cli", &text).await? {
                Ok(n) => {
                    println!("imported {n} entries");
                    Ok(())
                }
                Err(lines) => {
                    for l in &lines {
                        eprintln!("{}:{}: {}", file.display(), l.line, l.reason);
                    }
                    Err(AppError::BadRequest(format!(
                        "{} bad line(s); nothing was imported",
                        lines.len()
                    )))
                }
            }
        }
        Command::ExportInstalled => {
            print!("{}", service::export_installed(&site.open().await?).await?);
            Ok(())
        }
        Command::AddFactory { factory_id, name } => {
            service::add_factory(&site.open().await?, "cli", factory_id, &name).await
        }
        Command::Quota {
            factory_id,
            product_code,
            limit,
        } => service::set_quota(&site.open().await?, "cli", factory_id, product_code, limit).await,
        Command::AddUser {
            username,
            role,
            factory,
            password,
        } => {
            let state = site.open().await?;
            let mut tx = state.store.begin().await?;
            auth::create_user(
                &mut tx,
                "cli",
                &username,
                &password,
                &role,
                factory.as_deref(),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        Command::Audit(AuditCmd::Verify { checkpoint }) => {
            let state = site.open().await?;
            let saved = match &checkpoint {
                Some(c) if std::path::Path::new(c).is_file() => {
                    let text = std::fs::read_to_string(c).map_err(|e| {
                        AppError::Config(format!("cannot read the checkpoint file {c}: {e}"))
                    })?;
                    Some(imprint_server::tlog::Saved::Note(text))
                }
                Some(c) => Some(imprint_server::tlog::Saved::parse(c)?),
                None => None,
            };
            let v =
                imprint_server::tlog::verify(&state.store, &state.custody, saved.as_ref()).await?;
            println!("{} entries; chain head {}:{}", v.entries, v.entries, v.head);
            if let Some(cp) = &v.checkpoint {
                print!("latest signed checkpoint (save it for the next run):\n{cp}");
            }
            match v.problem {
                None => {
                    println!("audit log intact");
                    Ok(())
                }
                Some(p) => Err(AppError::Conflict(format!("audit log damaged: {p}"))),
            }
        }
        Command::Audit(AuditCmd::Prove {
            apparatus,
            seq,
            checkpoint,
        }) => {
            let state = site.open().await?;
            let target = match (apparatus, seq) {
                (Some(id), _) => imprint_server::tlog::Target::Installed(id),
                (None, Some(seq)) => imprint_server::tlog::Target::Seq(seq),
                (None, None) => {
                    return Err(AppError::BadRequest("--apparatus or --seq".into()));
                }
            };
            let saved = checkpoint
                .map(|p| {
                    std::fs::read_to_string(&p).map_err(|e| {
                        AppError::Config(format!(
                            "cannot read the checkpoint file {}: {e}",
                            p.display()
                        ))
                    })
                })
                .transpose()?;
            let bundle = imprint_server::tlog::prove_entry(
                &state.store,
                &state.custody,
                &target,
                saved.as_deref(),
            )
            .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&bundle)
                    .map_err(|e| AppError::bug(format!("a bundle as JSON: {e}")))?
            );
            Ok(())
        }
        Command::Audit(AuditCmd::Key) => {
            let state = site.open().await?;
            let key = imprint_server::tlog::verifier_key(&state.store, &state.custody).await?;
            println!("{key}");
            Ok(())
        }
        Command::Audit(AuditCmd::CheckProof { file, key }) => {
            let key = imprint_core::note::VerifierKey::parse(&key)
                .map_err(|e| AppError::BadRequest(format!("--key: {e}")))?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| AppError::Config(format!("cannot read {}: {e}", file.display())))?;
            let bundle: imprint_server::tlog::Bundle =
                serde_json::from_str(&text).map_err(|e| {
                    AppError::BadRequest(format!("{} is not a proof bundle: {e}", file.display()))
                })?;
            let cp = imprint_server::tlog::check_bundle(&bundle, &key)
                .map_err(|e| AppError::Conflict(format!("the proof does not hold: {e}")))?;
            let e = &bundle.entry;
            println!(
                "entry {} ({} by {} at {} ms: {}) is in the log {} of {} entries, root {}: proven",
                e.seq,
                e.action,
                e.actor,
                e.at,
                e.detail,
                cp.origin,
                cp.size,
                imprint_server::tlog::base64(&cp.root)
            );
            Ok(())
        }
        Command::Openapi => {
            print!("{}", imprint_server::api::openapi());
            Ok(())
        }
    }
}
