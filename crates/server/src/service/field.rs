//! Field authentication of installed devices (challenge-response), and revocation.
//!
//! A fleet that wakes up at once asks for many challenges and sends many answers. So:
//!
//! - **A challenge costs no write.** It is `expiry (8 bytes, big-endian Unix ms) | random (8) |
//!   tag (16)`, the tag an HMAC over the apparatus ID, the expiry and the random part under a
//!   key derived from the KEK ([`Kek::challenge_tag`]). Any server process that shares the KEK
//!   checks it; nobody without the KEK makes one that checks; a challenge for one ID does not
//!   check for another.
//! - **Single use is one insert, at verify**, into `used_challenges` (its primary key is the
//!   challenge): a second answer to the same challenge finds it there, on any process.
//! - **Many verifies share one commit** ([`Verifier`]): answers that arrive while a commit is on
//!   its way wait for the next one, which takes them all (their used challenges, their audit
//!   entries) in one transaction. No answer is given before its transaction is durable.

use crate::db;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use imprint_core::{ApparatusId, AuthResponse, Challenge};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::cv_ctx;
use crate::custody::Custody;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::{self, Store};
use crate::{AppState, audit, now_millis};

/// How long an authentication challenge may be answered.
pub const CHALLENGE_MILLIS: i64 = 60_000;

/// The most answers one transaction takes.
const MAX_BATCH: usize = 512;

/// Makes a challenge for `id`, valid for [`CHALLENGE_MILLIS`]. Nothing is stored.
pub fn challenge(keys: &Custody, id: ApparatusId) -> Challenge {
    challenge_until(keys, id, now_millis() + CHALLENGE_MILLIS)
}

/// A challenge for `id` that may be answered until `expires_ms` (Unix ms).
pub fn challenge_until(keys: &Custody, id: ApparatusId, expires_ms: i64) -> Challenge {
    use rand_core::Rng;
    let expires = expires_ms.to_be_bytes();
    let mut random = [0u8; 8];
    crate::rng().fill_bytes(&mut random);
    let tag = keys.challenge_tag(&[b"imprint challenge v1", id.as_bytes(), &expires, &random]);
    let mut c = [0u8; 32];
    for (dst, src) in c.iter_mut().zip(expires.iter().chain(&random).chain(&tag)) {
        *dst = *src;
    }
    Challenge(c)
}

/// Checks that `c` was made by a server with this KEK for `id` and has not expired: its
/// expiry, or why not.
fn check(keys: &Custody, id: &ApparatusId, c: &Challenge, now: i64) -> Result<i64, &'static str> {
    use subtle::ConstantTimeEq;
    let (expires, rest) = c.0.split_at(8);
    let (random, tag) = rest.split_at(8);
    let expected = keys.challenge_tag(&[b"imprint challenge v1", id.as_bytes(), expires, random]);
    if !bool::from(expected.ct_eq(tag)) {
        return Err("unknown challenge");
    }
    let mut e = [0u8; 8];
    for (dst, src) in e.iter_mut().zip(expires) {
        *dst = *src;
    }
    let expires = i64::from_be_bytes(e);
    if expires < now {
        return Err("expired challenge");
    }
    Ok(expires)
}

/// Checks a device's answer. The challenge is used up whatever the outcome. Unknown, expired,
/// replayed, not installed, revoked and wrong all answer `false`, and every attempt is audited.
pub async fn verify(
    state: &AppState,
    id: ApparatusId,
    c: Challenge,
    response: AuthResponse,
) -> Result<bool, AppError> {
    state.verifier.verify(id, c, response).await
}

struct Job {
    id: ApparatusId,
    challenge: Challenge,
    response: AuthResponse,
    answer: oneshot::Sender<Result<bool, AppError>>,
}

/// Takes the answers of devices and checks them in batches, one transaction (one durable
/// commit) per batch. One per server process, started with its [`AppState`].
#[derive(Debug, Clone)]
pub struct Verifier {
    jobs: mpsc::Sender<Job>,
}

impl Verifier {
    /// Starts the batching task, which ends when the last [`Verifier`] handle is dropped.
    /// Must be called inside a Tokio runtime.
    pub fn start(store: Store, keys: Arc<Custody>, metrics: Arc<Metrics>) -> Verifier {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(store, keys, metrics, rx));
        Verifier { jobs }
    }

    async fn verify(
        &self,
        id: ApparatusId,
        challenge: Challenge,
        response: AuthResponse,
    ) -> Result<bool, AppError> {
        let (answer, rx) = oneshot::channel();
        let job = Job {
            id,
            challenge,
            response,
            answer,
        };
        let stopped = || AppError::bug("the verifier task has stopped");
        self.jobs.send(job).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, keys: Arc<Custody>, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Job>) {
    let mut last_sweep = 0i64;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let now = now_millis();
        let sweep = now - last_sweep > CHALLENGE_MILLIS;
        let ctx = (&keys, jobs.as_slice(), now, sweep);
        let outcome = store
            .write(&ctx, |tx, (keys, jobs, now, sweep)| {
                Box::pin(decide(tx, keys, jobs, *now, *sweep))
            })
            .await;
        match outcome {
            Ok(results) => {
                if sweep {
                    last_sweep = now;
                }
                for (job, ok) in jobs.into_iter().zip(results) {
                    Metrics::add(
                        if ok {
                            &metrics.auth_ok
                        } else {
                            &metrics.auth_fail
                        },
                        1,
                    );
                    let _ = job.answer.send(Ok(ok));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.answer.send(Err(e.shared()));
                }
            }
        }
    }
}

/// One batch, in one transaction: uses up the challenges, checks the answers against the
/// installed devices, audits every attempt.
async fn decide(
    tx: &mut store::Conn,
    keys: &Custody,
    jobs: &[Job],
    now: i64,
    sweep: bool,
) -> Result<Vec<bool>, AppError> {
    if sweep {
        // A margin of one lifetime: a process whose clock is behind this one's still takes a
        // challenge as unexpired, and must still find its use.
        db::query("DELETE FROM used_challenges WHERE expires_at < $1")
            .bind(now - CHALLENGE_MILLIS)
            .execute(&mut *tx)
            .await?;
    }
    // Checked without the database first; a challenge twice in one batch is fresh once.
    let mut seen = HashSet::new();
    let checked: Vec<Result<i64, &'static str>> = jobs
        .iter()
        .map(|j| {
            let expires = check(keys, &j.id, &j.challenge, now)?;
            if seen.insert(j.challenge.0) {
                Ok(expires)
            } else {
                Err("challenge used before")
            }
        })
        .collect();
    let mut candidates: Vec<(&Job, i64)> = jobs
        .iter()
        .zip(&checked)
        .filter_map(|(j, c)| c.ok().map(|e| (j, e)))
        .collect();
    // In one order everywhere: two processes inserting overlapping challenges in opposite
    // orders would deadlock each other (anyone can mint challenges and send them twice).
    candidates.sort_unstable_by_key(|(j, _)| j.challenge.0);
    let mut fresh = HashSet::new();
    let mut devices = HashMap::new();
    if !candidates.is_empty() {
        let sql = format!(
            "INSERT INTO used_challenges (challenge, expires_at) VALUES {} \
             ON CONFLICT (challenge) DO NOTHING RETURNING challenge",
            store::values(candidates.len(), 2)
        );
        let mut q = db::query(store::bulk(tx, sql));
        for (j, expires) in &candidates {
            q = q.bind(j.challenge.0.as_slice()).bind(*expires);
        }
        for r in q.fetch_all(&mut *tx).await? {
            let c: Vec<u8> = r.try_get("challenge")?;
            fresh.insert(c);
        }
        let ids: Vec<&str> = candidates
            .iter()
            .filter(|(j, _)| fresh.contains(j.challenge.0.as_slice()))
            .map(|(j, _)| j.id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !ids.is_empty() {
            let sql = format!(
                "SELECT apparatus_id, conversion_sealed, revoked_ms FROM installed_devices \
                 WHERE apparatus_id IN ({})",
                store::list(1, ids.len())
            );
            let mut q = db::query(store::bulk(tx, sql));
            for id in &ids {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *tx).await? {
                let id: String = r.try_get("apparatus_id")?;
                let revoked = r.try_get::<Option<i64>, _>("revoked_ms")?.is_some();
                let cv: Vec<u8> = r.try_get("conversion_sealed")?;
                devices.insert(id, (revoked, cv));
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    let mut entries = Vec::with_capacity(jobs.len());
    for (j, c) in jobs.iter().zip(checked) {
        let why = match c {
            Err(why) => why,
            Ok(_) if !fresh.contains(j.challenge.0.as_slice()) => "challenge used before",
            Ok(_) => match devices.get(j.id.as_str()) {
                None => "not installed",
                Some((true, _)) => "revoked",
                Some((false, sealed)) => {
                    // A value that does not open is this device's fault of the store (or a
                    // process with another KEK): it fails this answer, not the batch.
                    // A token that does not answer is not the device's fault: the batch fails
                    // (503) and its challenges stay unused.
                    let opened = match keys.open(&cv_ctx(&j.id), sealed) {
                        Err(e @ AppError::Unavailable(_)) => return Err(e),
                        other => other.ok(),
                    };
                    let cv =
                        opened.and_then(|b| imprint_core::ConversionValue::from_bytes(&b).ok());
                    match cv {
                        None => {
                            tracing::error!(apparatus_id = %j.id, "the stored conversion value does not open: wrong kek.key, or an altered database");
                            "stored value does not open"
                        }
                        Some(cv) if j.response.verify(&cv, &j.id, &j.challenge).is_ok() => "ok",
                        Some(_) => "wrong response",
                    }
                }
            },
        };
        let ok = why == "ok";
        results.push(ok);
        entries.push(audit::NewEntry {
            actor: "device".into(),
            action: if ok { "auth.ok" } else { "auth.fail" }.into(),
            detail: json!({ "apparatus_id": j.id.as_str(), "reason": why }),
        });
    }
    audit::append_many(tx, &entries).await?;
    Ok(results)
}

/// Revokes an installed apparatus ID: it fails authentication from now on.
pub async fn revoke(state: &AppState, actor: &str, id: ApparatusId) -> Result<(), AppError> {
    state
        .store
        .write(&actor, |tx, actor| {
            Box::pin(async move {
                let n = db::query(
                    "UPDATE installed_devices SET revoked_ms = $1 WHERE apparatus_id = $2 AND revoked_ms IS NULL",
                )
                .bind(now_millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(AppError::NotFound(format!(
                        "{id} is not an installed, unrevoked device"
                    )));
                }
                audit::append(tx, actor, "revoke", json!({ "apparatus_id": id.as_str() })).await
            })
        })
        .await
}
