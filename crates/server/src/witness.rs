//! Sending the audit log's checkpoints to witnesses (C2SP tlog-witness's `add-checkpoint`), and
//! keeping their cosignatures (docs/audit.md, "Witnesses").
//!
//! After the sequencer signs, each witness is sent the latest checkpoint with a consistency
//! proof from the last size it cosigned (as far as the database knows); a witness that holds
//! another size answers it (409) and is sent the proof from there. A cosignature is checked
//! against the witness's configured key before it is kept, so a witness that answers garbage
//! adds nothing. A witness that refuses (a fork: a checkpoint that does not extend the one it
//! holds) or cannot be reached is logged and tried again at the next checkpoint; the log goes
//! on without it.

use crate::db;
use std::str::FromStr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use imprint_core::note::{CosignerKey, Note};
use imprint_witness::AddCheckpoint;

use crate::error::AppError;
use crate::store::Store;
use crate::tlog::{self, Proof, Stored};

/// How long a witness may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A witness this log sends its checkpoints to: `URL=KEY` (its `add-checkpoint` address, plain
/// http, and its cosigner key `NAME+KEYID+KEY`). The URL may not hold `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Where to POST, e.g. `http://127.0.0.1:8091/add-checkpoint`.
    pub url: url::Url,
    /// Its cosigner key.
    pub key: CosignerKey,
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Peer, String> {
        let (url, key) = s
            .split_once('=')
            .ok_or("a witness is URL=KEY (its add-checkpoint URL, then its cosigner key)")?;
        let mut url = url::Url::parse(url).map_err(|e| format!("witness URL {url}: {e}"))?;
        if url.scheme() != "http" || url.host_str().is_none() {
            return Err(format!(
                "witness URL {url}: http://HOST:PORT/... (cosignatures are signed, so TLS adds nothing to them)"
            ));
        }
        if url.path() == "/" {
            url.set_path("/add-checkpoint");
        }
        let key = CosignerKey::parse(key).map_err(|e| format!("witness key: {e}"))?;
        Ok(Peer { url, key })
    }
}

/// The largest size `witness` has a kept cosignature for.
async fn cosigned_size(store: &Store, witness: &str) -> Result<u64, AppError> {
    let row = db::query("SELECT MAX(size) AS size FROM audit_cosignatures WHERE witness = $1")
        .bind(witness)
        .fetch_one(&mut store.read().await?)
        .await?;
    match row.try_get::<Option<i64>, _>("size")? {
        None => Ok(0),
        Some(s) => u64::try_from(s)
            .map_err(|_| AppError::bug(format!("a stored cosignature size is negative: {s}"))),
    }
}

/// Sends `latest` to every peer that has not cosigned it yet.
pub async fn push_all(store: &Store, peers: &[Peer], latest: &Stored) {
    for peer in peers {
        match push(store, peer, latest).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(witness = %peer.key.name, error = %e, "a witness did not cosign the audit log's checkpoint")
            }
        }
    }
}

async fn push(store: &Store, peer: &Peer, latest: &Stored) -> Result<(), AppError> {
    let mut old = cosigned_size(store, &peer.key.name).await?;
    if old >= latest.size {
        return Ok(());
    }
    // Twice at most: the second time from the size the witness said it holds.
    for _ in 0..2 {
        let proof = {
            let mut conn = store.read().await?;
            tlog::prove(
                &mut conn,
                Proof::Consistency {
                    old,
                    new: latest.size,
                },
            )
            .await?
        };
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: &latest.note,
        }
        .to_body();
        let (status, text) = post(&peer.url, body).await?;
        match status {
            200 => {
                let mut cosigned = latest.note.clone();
                cosigned.push_str(&text);
                let note = Note::parse(&cosigned).map_err(|e| {
                    AppError::Conflict(format!("the witness answered no cosignature: {e}"))
                })?;
                peer.key.verify(&note).map_err(|e| {
                    AppError::Conflict(format!("the witness's cosignature does not verify: {e}"))
                })?;
                db::query(
                    "INSERT INTO audit_cosignatures (witness, size, checkpoint, line) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(peer.key.name.as_str())
                .bind(latest.size as i64)
                .bind(latest.note.as_str())
                .bind(text.as_str())
                .execute(&mut store.read().await?)
                .await?;
                return Ok(());
            }
            409 => {
                let held: u64 = text.trim().parse().map_err(|_| {
                    AppError::Conflict(format!("the witness answered 409 without a size: {text}"))
                })?;
                if held > latest.size {
                    // Another server process sent it a newer checkpoint already.
                    return Ok(());
                }
                old = held;
            }
            other => {
                return Err(AppError::Conflict(format!(
                    "the witness refused ({other}): {}",
                    text.trim()
                )));
            }
        }
    }
    Err(AppError::Conflict(
        "the witness changed its size twice during one push".into(),
    ))
}

/// One POST over plain HTTP/1.1.
async fn post(url: &url::Url, body: String) -> Result<(u16, String), AppError> {
    let unreachable = |e: String| AppError::Conflict(format!("witness {url} unreachable: {e}"));
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let req = hyper::Request::post(url.path())
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AppError::bug(format!("a witness request: {e}")))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if bytes.len() > 64 * 1024 {
            return Err(unreachable("its answer is too long".into()));
        }
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer in {} s", TIMEOUT.as_secs())))?
}

/// The latest checkpoint that witnesses cosigned, with their cosignature lines appended.
pub async fn witnessed(store: &Store) -> Result<Option<String>, AppError> {
    let rows = db::query(
        "SELECT checkpoint, line FROM audit_cosignatures \
         WHERE size = (SELECT MAX(size) FROM audit_cosignatures) ORDER BY witness",
    )
    .fetch_all(&mut store.read().await?)
    .await?;
    let mut note: Option<String> = None;
    for r in rows {
        let checkpoint: String = r.try_get("checkpoint")?;
        let line: String = r.try_get("line")?;
        match &mut note {
            None => note = Some(checkpoint + &line),
            // Witnesses of one size cosign one root, unless one of them was deceived: then
            // the first checkpoint is shown, with the cosignatures of that same text.
            Some(n) if n.starts_with(&checkpoint) => n.push_str(&line),
            Some(_) => {}
        }
    }
    Ok(note)
}
