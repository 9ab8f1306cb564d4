//! A witness for transparency logs with Ed25519 checkpoints (C2SP `tlog-witness`): Imprint's
//! audit log, and any other log of that form.
//!
//! A log that can show two parties two different histories is caught when both compare what
//! they were shown with a third party that saw every checkpoint: the witness. It keeps, for each
//! log it knows, the last checkpoint it cosigned, and cosigns a new one only if
//!
//! - the log's own key signed it (the key the witness was configured with, never one sent to
//!   it),
//! - the request names the size the witness holds (else it answers that size, 409),
//! - the consistency proof from the held checkpoint to the new one holds.
//!
//! So it never cosigns two different roots for one size, nor a tree that does not extend the
//! last one, and the held checkpoint is written to disk (atomically, synced) before the
//! cosignature is given out, so this holds across restarts and crashes.
//!
//! The request is C2SP tlog-witness's `add-checkpoint` body:
//!
//! ```text
//! old <size the witness holds>
//! <consistency proof hash, base64>        one line per hash
//! (empty line)
//! <the signed checkpoint>
//! ```
//!
//! and the answer one cosignature line (C2SP `tlog-cosignature`, `cosignature/v1`, Ed25519).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use imprint_core::note::{self, Checkpoint, CosignerKey, Note, VerifierKey};
use imprint_core::tlog::{self, Hash};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The file, in the witness's folder, that holds its signing key's 32-byte seed (base64).
pub const KEY_FILE: &str = "witness.key";
/// The file that holds the witness's name.
pub const NAME_FILE: &str = "witness.name";
/// The folder, in the witness's folder, of the held checkpoints (one file per log).
pub const STATE_DIR: &str = "logs";

/// Why a checkpoint was not cosigned. Each maps to the HTTP status C2SP tlog-witness gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request is not an add-checkpoint body (400).
    Malformed(String),
    /// The checkpoint is of a log this witness does not know (404).
    UnknownLog(String),
    /// The log's key did not sign it (403).
    BadSignature(String),
    /// The request's old size is not the witness's: the answer is the witness's size (409).
    Conflict(u64),
    /// The consistency proof does not hold: the new checkpoint does not extend the held one,
    /// or has another root for the same size (422).
    Inconsistent(String),
    /// The witness could not keep its state; nothing was cosigned (500).
    Storage(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(why) => write!(f, "not an add-checkpoint request: {why}"),
            Refusal::UnknownLog(origin) => {
                write!(f, "this witness does not witness the log '{origin}'")
            }
            Refusal::BadSignature(why) => {
                write!(f, "the checkpoint is not signed by its log: {why}")
            }
            Refusal::Conflict(size) => write!(
                f,
                "this witness holds a checkpoint of size {size}: prove consistency from it"
            ),
            Refusal::Inconsistent(why) => write!(
                f,
                "the checkpoint does not extend the one this witness holds: {why}"
            ),
            Refusal::Storage(why) => write!(f, "the witness cannot keep its state: {why}"),
        }
    }
}

/// An add-checkpoint request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size the sender believes the witness holds.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: &'a str,
}

impl<'a> AddCheckpoint<'a> {
    /// Reads the body.
    pub fn parse(body: &'a str) -> Result<AddCheckpoint<'a>, Refusal> {
        let bad = |why: &str| Refusal::Malformed(why.into());
        let (head, checkpoint) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line is 'old <size>'"))?;
        if old.is_empty()
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad("the old size is not a decimal number"));
        }
        let old = old.parse().map_err(|_| bad("the old size is too large"))?;
        let proof = lines
            .map(|l| {
                let mut h = [0u8; 32];
                match Base64::decode(l, &mut h) {
                    Ok(got) if got.len() == 32 => Ok(h),
                    _ => Err(bad("a proof line is not 32 bytes of base64")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > 63 {
            return Err(bad("the proof is longer than any tree's"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint,
        })
    }

    /// The body, as a log sends it.
    pub fn to_body(&self) -> String {
        let mut body = format!("old {}\n", self.old);
        for h in &self.proof {
            body.push_str(&Base64::encode_string(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(self.checkpoint);
        body
    }
}

/// A log the witness witnesses: its origin (a checkpoint's first line) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// The checkpoints' first line.
    pub origin: String,
    /// The log's verifier key.
    pub key: VerifierKey,
}

/// The witness: its key, the logs it knows, and its folder.
pub struct Witness {
    key: SigningKey,
    cosigner: CosignerKey,
    logs: Vec<Log>,
    dir: PathBuf,
    /// One request at a time: a check and the update it allows are one step.
    lock: Mutex<()>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Witness({})", self.cosigner)
    }
}

impl Witness {
    /// Makes a witness's folder: a fresh key and its name. Refuses a folder that has a key.
    pub fn init(dir: &Path, name: &str) -> Result<CosignerKey, Refusal> {
        if !note::valid_name(name) {
            return Err(Refusal::Malformed(
                "a witness name is non-empty, without spaces or '+'".into(),
            ));
        }
        let storage = |e: std::io::Error| Refusal::Storage(e.to_string());
        fs::create_dir_all(dir.join(STATE_DIR)).map_err(storage)?;
        let path = dir.join(KEY_FILE);
        if path.exists() {
            return Err(Refusal::Storage(format!(
                "{} exists: this folder has a witness already",
                path.display()
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        {
            use rand_core::Rng;
            rand_core::UnwrapErr(getrandom::SysRng).fill_bytes(seed.as_mut());
        }
        write_synced(&path, Base64::encode_string(seed.as_ref()).as_bytes(), true)?;
        write_synced(&dir.join(NAME_FILE), name.as_bytes(), false)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(CosignerKey {
            name: name.into(),
            public: key.verifying_key().to_bytes(),
        })
    }

    /// Opens a witness's folder for these logs.
    pub fn open(dir: &Path, logs: Vec<Log>) -> Result<Witness, Refusal> {
        let storage = |what: &Path, e: std::io::Error| {
            Refusal::Storage(format!("cannot read {}: {e}", what.display()))
        };
        let key_path = dir.join(KEY_FILE);
        let seed =
            Zeroizing::new(fs::read_to_string(&key_path).map_err(|e| storage(&key_path, e))?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        match Base64::decode(seed.trim(), bytes.as_mut()) {
            Ok(got) if got.len() == 32 => {}
            _ => {
                return Err(Refusal::Storage(format!(
                    "{} does not hold a 32-byte key",
                    key_path.display()
                )));
            }
        }
        let name_path = dir.join(NAME_FILE);
        let name = fs::read_to_string(&name_path).map_err(|e| storage(&name_path, e))?;
        let key = SigningKey::from_bytes(&bytes);
        let cosigner = CosignerKey {
            name: name.trim().to_string(),
            public: key.verifying_key().to_bytes(),
        };
        fs::create_dir_all(dir.join(STATE_DIR)).map_err(|e| storage(dir, e))?;
        Ok(Witness {
            key,
            cosigner,
            logs,
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// The witness's public key, as logs and their clients are configured with it.
    pub fn cosigner(&self) -> &CosignerKey {
        &self.cosigner
    }

    /// The checkpoint held for `origin`: `(0, empty root)` before the first.
    pub fn held(&self, origin: &str) -> Result<(u64, Hash), Refusal> {
        let path = self.state_path(origin);
        match fs::read_to_string(&path) {
            Ok(body) => Checkpoint::parse(&body)
                .map(|c| (c.size, c.root))
                .map_err(|e| Refusal::Storage(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, tlog::empty_root())),
            Err(e) => Err(Refusal::Storage(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Handles one add-checkpoint request at Unix time `now` (seconds): the cosignature line,
    /// or why not.
    pub fn add_checkpoint(&self, body: &str, now: u64) -> Result<String, Refusal> {
        let req = AddCheckpoint::parse(body)?;
        let parsed = Note::parse(req.checkpoint).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let origin = parsed.body.split('\n').next().unwrap_or_default();
        let log = self
            .logs
            .iter()
            .find(|l| l.origin == origin)
            .ok_or_else(|| Refusal::UnknownLog(origin.to_string()))?;
        let checkpoint = note::open_checkpoint(req.checkpoint, &log.key, &log.origin)
            .map_err(|e| Refusal::BadSignature(e.to_string()))?;
        let _one = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (size, root) = self.held(origin)?;
        if req.old != size {
            return Err(Refusal::Conflict(size));
        }
        if checkpoint.size < size {
            return Err(Refusal::Malformed(format!(
                "the checkpoint's size {} is below the held size {size}",
                checkpoint.size
            )));
        }
        tlog::verify_consistency(size, checkpoint.size, &req.proof, &root, &checkpoint.root)
            .map_err(|e| Refusal::Inconsistent(e.to_string()))?;
        if checkpoint.size > size {
            write_synced(&self.state_path(origin), parsed.body.as_bytes(), false)?;
        }
        let sig = self
            .key
            .sign(note::cosigned_message(parsed.body, now).as_bytes())
            .to_bytes();
        Ok(self.cosigner.line(now, &sig))
    }

    fn state_path(&self, origin: &str) -> PathBuf {
        self.dir
            .join(STATE_DIR)
            .join(hex::encode(Sha256::digest(origin.as_bytes())))
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new file, never a part:
/// a temporary file beside it, synced, renamed over it, and the folder synced.
fn write_synced(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Refusal> {
    let storage =
        |e: std::io::Error| Refusal::Storage(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(storage)?;
    file.write_all(bytes).map_err(storage)?;
    file.sync_all().map_err(storage)?;
    drop(file);
    fs::rename(&tmp, path).map_err(storage)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(storage)?;
    }
    Ok(())
}

/// The HTTP face: `POST /add-checkpoint`, with C2SP tlog-witness's statuses.
pub mod http {
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    use super::{Refusal, Witness};

    /// The router.
    pub fn router(witness: Arc<Witness>) -> axum::Router {
        axum::Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .with_state(witness)
    }

    async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: String) -> Response {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The check and the synced write are blocking file work.
        let outcome = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
        match outcome {
            Ok(Ok(line)) => (StatusCode::OK, line).into_response(),
            Ok(Err(Refusal::Conflict(size))) => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{size}\n"),
            )
                .into_response(),
            Ok(Err(refusal)) => {
                let status = match &refusal {
                    Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
                    Refusal::UnknownLog(_) => StatusCode::NOT_FOUND,
                    Refusal::BadSignature(_) => StatusCode::FORBIDDEN,
                    Refusal::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::Storage(_) | Refusal::Conflict(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::warn!(%refusal, "checkpoint not cosigned");
                (status, format!("{refusal}\n")).into_response()
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the witness failed: {e}\n"),
            )
                .into_response(),
        }
    }
}
