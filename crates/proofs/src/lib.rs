//! The station's own check of the server's audit log (docs/audit.md): the units it reported
//! must turn up in the log, proven from the bytes, and the log must only ever grow.
//!
//! The station keeps, in its factory's journal, the latest checkpoint it checked and the units
//! whose reports the server recorded but the station has not yet seen proven. Every few seconds
//! it asks `POST /audit/installs` for them with the size it holds, and accepts the answer only
//! if
//!
//! - the checkpoint is signed by the log's key, pinned at the first answer (in the browser,
//!   the signature is checked by WebCrypto, as offline leases are: see [`Unverified`]);
//! - the new checkpoint extends the held one (a consistency proof), never smaller;
//! - each unit's entry is a `report` of that unit with the serial and factory the station
//!   recorded, and its inclusion proof leads to the checkpoint's root.
//!
//! Anything else is an [`Alarm`]: the log was changed behind the station's back, which the
//! technician cannot fix and the brand owner's security contact must hear about.
//!
//! The check is a WebAssembly module of its own (feature `module`: [`check`] exported to
//! JavaScript), which the station imports the first time it has units to prove, as it imports
//! training mode and the console: the checkpoint's, note's and proofs' parsers, the tree's
//! hashing and the answer's reader then weigh nothing in what every page load ships
//! (docs/benchmarks.md, "Portal: shipped size"; SHA-256 itself stays in the station for the
//! report's record digest). The station itself links only [`AuditState`] (its journal's
//! part), [`Outcome`] (what the module answers) and [`webcrypto`]'s Ed25519, with the feature
//! off.

use base64ct::Encoding as _;
use imprint_api::InstallProofs;
use imprint_core::note::{Checkpoint, Note, VerifierKey};
use imprint_core::tlog::{self, Hash};
use imprint_core::{ApparatusId, FactoryId, ProductSerial};
use serde::{Deserialize, Serialize};

/// At most this many units wait for their proof (a station far behind is not a reason to
/// grow the journal without bound; the oldest are dropped, and say so).
pub const MAX_AWAITING: usize = 1000;

/// Units asked for in one request (the server's limit).
pub const PER_REQUEST: usize = 100;

/// What the station keeps of the audit log, in its factory's journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditState {
    /// The latest checkpoint checked: its size and signed text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Units reported and recorded, not yet seen in the log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<Awaiting>,
    /// Units seen proven in the log since this journal began.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proven: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AuditState {
    /// Nothing kept (so the journal's stored form is what it was before the audit check).
    pub fn is_empty(&self) -> bool {
        self.held.is_none() && self.awaiting.is_empty() && self.proven == 0
    }

    /// A report the server recorded: wait for its proof.
    pub fn recorded(&mut self, apparatus_id: ApparatusId, product_serial: ProductSerial) {
        if self.awaiting.iter().any(|a| a.apparatus_id == apparatus_id) {
            return;
        }
        self.awaiting.push(Awaiting {
            apparatus_id,
            product_serial,
        });
        if self.awaiting.len() > MAX_AWAITING {
            self.awaiting.remove(0);
        }
    }

    /// The next request: the units to ask for, and the size held.
    pub fn request(&self) -> Option<imprint_api::InstallProofsRequest> {
        if self.awaiting.is_empty() {
            return None;
        }
        Some(imprint_api::InstallProofsRequest {
            apparatus_ids: self
                .awaiting
                .iter()
                .take(PER_REQUEST)
                .map(|a| a.apparatus_id)
                .collect(),
            since: self.held.as_ref().map(|h| h.size),
        })
    }

    /// Takes a checked answer in: the new checkpoint held, the proven units off the list.
    pub fn apply(&mut self, checked: Checked) -> usize {
        self.held = Some(checked.held);
        let before = self.awaiting.len();
        self.awaiting
            .retain(|a| !checked.proven.contains(&a.apparatus_id));
        let n = before - self.awaiting.len();
        self.proven += n as u64;
        n
    }
}

/// A unit waiting for its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// The identity it holds.
    pub apparatus_id: ApparatusId,
    /// The product serial the station reported it with.
    pub product_serial: ProductSerial,
}

/// A checkpoint the station checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Its tree size.
    pub size: u64,
    /// Its signed text.
    pub note: String,
}

/// Why the station no longer trusts the server's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// The checkpoint is not one the log's pinned key signed, or does not read.
    Checkpoint(String),
    /// The log is smaller than the checkpoint the station held.
    Shrank {
        /// The size held.
        held: u64,
        /// The size answered.
        now: u64,
    },
    /// The new checkpoint does not extend the held one.
    Fork {
        /// The size held.
        held: u64,
        /// The size answered.
        now: u64,
    },
    /// A unit's entry is not the report the station made, or its proof fails.
    Entry(ApparatusId, String),
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tell = "Tell your security contact and keep this station's log; provisioning goes on.";
        match self {
            Alarm::Checkpoint(why) => {
                write!(
                    f,
                    "the server's audit checkpoint is not valid ({why}). {tell}"
                )
            }
            Alarm::Shrank { held, now } => write!(
                f,
                "the server's audit log has {now} entries, fewer than the {held} this station saw: entries were removed. {tell}"
            ),
            Alarm::Fork { held, now } => write!(
                f,
                "the server's audit log of {now} entries does not extend the {held} this station saw: its history was changed. {tell}"
            ),
            Alarm::Entry(id, why) => write!(
                f,
                "the audit log's entry for {id} is not this station's report ({why}). {tell}"
            ),
        }
    }
}

/// A checked answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// The new checkpoint to hold.
    pub held: Held,
    /// The units proven in it.
    pub proven: Vec<ApparatusId>,
}

/// An answer whose checkpoint reads, its signature not yet checked.
#[derive(Debug)]
pub struct Unverified {
    answer: InstallProofs,
    checkpoint: Checkpoint,
    body: String,
    signature: [u8; 64],
    public: [u8; 32],
}

/// Reads an answer against the log key pinned at the first one (`pinned`; `None` pins the
/// answer's own). Returns the key to pin with it.
pub fn parse(
    answer: InstallProofs,
    pinned: Option<&str>,
) -> Result<(Unverified, VerifierKey), Alarm> {
    let bad = |e: &dyn std::fmt::Display| Alarm::Checkpoint(e.to_string());
    let key = VerifierKey::parse(pinned.unwrap_or(&answer.key)).map_err(|e| bad(&e))?;
    if pinned.is_some_and(|p| p.trim() != answer.key.trim()) {
        return Err(Alarm::Checkpoint(
            "the log's key is not the one this station pinned".into(),
        ));
    }
    let note = Note::parse(&answer.checkpoint).map_err(|e| bad(&e))?;
    let id = key.id();
    let signature: [u8; 64] = note
        .signatures
        .iter()
        .find(|s| s.name == key.name && s.id == id)
        .and_then(|s| s.signature.as_slice().try_into().ok())
        .ok_or_else(|| Alarm::Checkpoint("no signature by the log's key".into()))?;
    let checkpoint = Checkpoint::parse(note.body).map_err(|e| bad(&e))?;
    if checkpoint.origin != key.name {
        return Err(Alarm::Checkpoint("the checkpoint is of another log".into()));
    }
    let body = note.body.to_string();
    Ok((
        Unverified {
            checkpoint,
            body,
            signature,
            public: key.public,
            answer,
        },
        key,
    ))
}

impl Unverified {
    /// The key the signature must verify under.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The signed bytes.
    pub fn body(&self) -> &[u8] {
        self.body.as_bytes()
    }

    /// The log's signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Finishes the check once the signature was checked (`signature_valid`), against the
    /// held state and this factory's reports.
    pub fn finish(
        self,
        signature_valid: bool,
        state: &AuditState,
        factory: &FactoryId,
    ) -> Result<Checked, Alarm> {
        if !signature_valid {
            return Err(Alarm::Checkpoint(
                "its signature does not verify under the log's key".into(),
            ));
        }
        let cp = &self.checkpoint;
        if let Some(held) = &state.held {
            let old = Checkpoint::parse(
                Note::parse(&held.note)
                    .map_err(|e| Alarm::Checkpoint(e.to_string()))?
                    .body,
            )
            .map_err(|e| Alarm::Checkpoint(e.to_string()))?;
            if cp.size < old.size {
                return Err(Alarm::Shrank {
                    held: old.size,
                    now: cp.size,
                });
            }
            let proof = hashes(&self.answer.consistency).map_err(|_| Alarm::Fork {
                held: old.size,
                now: cp.size,
            })?;
            tlog::verify_consistency(old.size, cp.size, &proof, &old.root, &cp.root).map_err(
                |_| Alarm::Fork {
                    held: old.size,
                    now: cp.size,
                },
            )?;
        }
        let mut proven = Vec::new();
        for install in &self.answer.installs {
            let id = install.apparatus_id;
            let Some(waiting) = state.awaiting.iter().find(|a| a.apparatus_id == id) else {
                continue;
            };
            let e = &install.entry;
            let wrong = |why: &str| Alarm::Entry(id, why.into());
            if e.action != "report" {
                return Err(wrong("not a report"));
            }
            let detail: ReportDetail = imprint_client::json::from_str(&e.detail)
                .map_err(|_| wrong("its detail does not read"))?;
            if detail.apparatus_id != id.as_str()
                || detail.product_serial != waiting.product_serial.as_str()
                || detail.factory != factory.as_str()
            {
                return Err(wrong("another unit, serial or factory"));
            }
            let leaf = tlog::leaf_hash(&leaf_bytes(e));
            let proof = hashes(&install.hashes).map_err(|_| wrong("its proof does not read"))?;
            if e.seq == 0 {
                return Err(wrong("entry 0"));
            }
            tlog::verify_inclusion(&leaf, e.seq - 1, cp.size, &proof, &cp.root)
                .map_err(|_| wrong("its inclusion proof fails"))?;
            proven.push(id);
        }
        Ok(Checked {
            held: Held {
                size: cp.size,
                note: self.answer.checkpoint.clone(),
            },
            proven,
        })
    }
}

/// Natively (tests; the page uses WebCrypto): the whole check with imprint-core's Ed25519.
#[cfg(not(target_arch = "wasm32"))]
pub fn check(
    answer: InstallProofs,
    pinned: Option<&str>,
    state: &AuditState,
    factory: &FactoryId,
) -> Result<(Checked, VerifierKey), Alarm> {
    let text = answer.checkpoint.clone();
    let (u, key) = parse(answer, pinned)?;
    let valid = Note::parse(&text).is_ok_and(|n| n.verify(&key).is_ok());
    Ok((u.finish(valid, state, factory)?, key))
}

/// The fields of a report entry's detail the station checks.
#[derive(Deserialize)]
struct ReportDetail {
    apparatus_id: String,
    product_serial: String,
    factory: String,
}

/// docs/audit.md, "The leaf".
fn leaf_bytes(e: &imprint_api::AuditEntry) -> Vec<u8> {
    let seq = e.seq.to_string();
    let mut out = b"imprint-audit-leaf-v1".to_vec();
    for f in [
        seq.as_str(),
        e.at.as_str(),
        e.actor.as_str(),
        e.action.as_str(),
        e.detail.as_str(),
    ] {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

fn hashes(list: &[String]) -> Result<Vec<Hash>, ()> {
    list.iter()
        .map(|h| {
            let mut out = [0u8; 32];
            match base64ct::Base64::decode(h, &mut out) {
                Ok(got) if got.len() == 32 => Ok(out),
                _ => Err(()),
            }
        })
        .collect()
}

/// What the module's [`check`] answers, as JSON text: the station reads it into this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The answer checks: hold its checkpoint, take the proven units off the list, and pin
    /// `key` (the log's verifier key, in its text form) if nothing was pinned yet.
    Checked {
        /// The checked answer.
        checked: Checked,
        /// The log's key.
        key: String,
    },
    /// The log was changed behind the station's back: what to show, for good.
    Alarm(String),
    /// No verdict (a browser without Ed25519 in WebCrypto, an answer or state that does not
    /// read): what to log; no alarm, and the units keep waiting.
    NoVerdict(String),
}

#[cfg(target_arch = "wasm32")]
pub mod webcrypto;

/// The module's one export: checks the server's answer to `POST /audit/installs` (its JSON
/// text, unread) against the key pinned before (`pinned`, none at the first answer), the
/// station's [`AuditState`] (JSON) and its factory, the checkpoint's signature by WebCrypto.
/// Returns an [`Outcome`] as JSON text.
#[cfg(all(target_arch = "wasm32", feature = "module"))]
#[wasm_bindgen::prelude::wasm_bindgen]
pub async fn check(
    answer: String,
    pinned: Option<String>,
    state: String,
    factory: String,
) -> String {
    let outcome = match check_in_page(&answer, pinned.as_deref(), &state, &factory).await {
        Ok(o) => o,
        Err(why) => Outcome::NoVerdict(why),
    };
    imprint_client::json::to_string(&outcome)
        .unwrap_or_else(|_| r#"{"NoVerdict":"the verdict could not be written"}"#.to_string())
}

#[cfg(all(target_arch = "wasm32", feature = "module"))]
async fn check_in_page(
    answer: &str,
    pinned: Option<&str>,
    state: &str,
    factory: &str,
) -> Result<Outcome, String> {
    let answer: InstallProofs = imprint_client::json::from_str(answer)
        .map_err(|e| format!("the server's proofs do not read ({e})"))?;
    let state: AuditState = imprint_client::json::from_str(state)
        .map_err(|e| format!("the station's audit state does not read ({e})"))?;
    let factory = FactoryId::new(factory).map_err(|e| format!("the factory: {e}"))?;
    let (unverified, key) = match parse(answer, pinned) {
        Ok(p) => p,
        Err(alarm) => return Ok(Outcome::Alarm(alarm.to_string())),
    };
    let valid = webcrypto::ed25519_verify(
        unverified.public_key(),
        unverified.body(),
        unverified.signature(),
    )
    .await
    .map_err(|e| {
        format!(
            "this browser cannot check the server's checkpoint ({e}); use a current Chrome or Edge"
        )
    })?;
    Ok(match unverified.finish(valid, &state, &factory) {
        Ok(checked) => Outcome::Checked {
            checked,
            key: key.to_string(),
        },
        Err(alarm) => Outcome::Alarm(alarm.to_string()),
    })
}
