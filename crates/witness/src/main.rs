//! `imprint-witness`: makes a witness's key, and serves C2SP tlog-witness's `add-checkpoint`.
//!
//! ```text
//! imprint-witness init  --dir DIR --name NAME        makes DIR/witness.key; prints the public key
//! imprint-witness key   --dir DIR                    prints the public key again
//! imprint-witness serve --dir DIR --listen ADDR --log VKEY [--log VKEY ...]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use imprint_core::note::VerifierKey;
use imprint_witness::{Log, Witness};

#[derive(Parser)]
#[command(name = "imprint-witness", about = "A witness for Imprint's audit log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Makes a witness in DIR: a fresh Ed25519 key (DIR/witness.key, mode 0600) and its name.
    Init {
        /// The witness's folder.
        #[arg(long)]
        dir: PathBuf,
        /// The witness's name, as it appears in cosignatures (e.g. witness.example.com/w1).
        #[arg(long)]
        name: String,
    },
    /// Prints the witness's cosigner key (`NAME+KEYID+KEY`), to give to logs and clients.
    Key {
        /// The witness's folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serves `POST /add-checkpoint` for the logs named by their verifier keys.
    Serve {
        /// The witness's folder.
        #[arg(long)]
        dir: PathBuf,
        /// Where to listen (e.g. 127.0.0.1:8091).
        #[arg(long)]
        listen: SocketAddr,
        /// A log's verifier key (`NAME+KEYID+KEY`; its name is its checkpoints' origin).
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "imprint_witness=info".into()),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imprint-witness: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Init { dir, name } => {
            let key = Witness::init(&dir, &name).map_err(|e| e.to_string())?;
            println!("{key}");
            Ok(())
        }
        Command::Key { dir } => {
            let w = Witness::open(&dir, Vec::new()).map_err(|e| e.to_string())?;
            println!("{}", w.cosigner());
            Ok(())
        }
        Command::Serve { dir, listen, logs } => {
            let logs = logs
                .iter()
                .map(|k| {
                    VerifierKey::parse(k)
                        .map(|key| Log {
                            origin: key.name.clone(),
                            key,
                        })
                        .map_err(|e| format!("--log {k}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let witness = Arc::new(Witness::open(&dir, logs).map_err(|e| e.to_string())?);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!(%listen, witness = %witness.cosigner(), "witnessing");
            axum::serve(listener, imprint_witness::http::router(witness))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(|e| format!("server: {e}"))
        }
    }
}
