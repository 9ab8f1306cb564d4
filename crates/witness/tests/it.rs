//! The witness against logs built here from imprint-core alone: it cosigns only checkpoints
//! that extend the one it holds, refuses a fork at the same or a later size, keeps that across
//! restarts, and answers as C2SP tlog-witness says.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use imprint_core::note::{self, Checkpoint, CosignerKey, Note, VerifierKey};
use imprint_core::tlog::{MemoryTree, consistency_proof, leaf_hash};
use imprint_witness::{AddCheckpoint, Log, Refusal, Witness};
use tower::ServiceExt;

const ORIGIN: &str = "imprint/audit/test";

/// A log: its key and its leaves; `fork` changes its leaves from that index on.
struct TestLog {
    key: SigningKey,
    vkey: VerifierKey,
    tree: MemoryTree,
}

impl TestLog {
    fn new(seed: u8, leaves: u64, fork_at: Option<u64>) -> TestLog {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let vkey = VerifierKey {
            name: ORIGIN.into(),
            public: key.verifying_key().to_bytes(),
        };
        let tree = MemoryTree::new(
            (0..leaves)
                .map(|i| {
                    let forked = fork_at.is_some_and(|f| i >= f);
                    leaf_hash(
                        format!("entry {i}{}", if forked { " (forked)" } else { "" }).as_bytes(),
                    )
                })
                .collect(),
        );
        TestLog { key, vkey, tree }
    }

    fn checkpoint(&self, size: u64) -> String {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: self.tree.root(size).unwrap(),
        };
        let sig = self.key.sign(cp.body().as_bytes()).to_bytes();
        note::signed(&cp, &self.vkey, &sig)
    }

    fn request(&self, old: u64, new: u64) -> String {
        let checkpoint = self.checkpoint(new);
        AddCheckpoint {
            old,
            proof: consistency_proof(&self.tree, old, new).unwrap().unwrap(),
            checkpoint: &checkpoint,
        }
        .to_body()
    }

    fn log(&self) -> Log {
        Log {
            origin: ORIGIN.into(),
            key: self.vkey.clone(),
        }
    }
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imprint-witness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn check_cosignature(key: &CosignerKey, checkpoint: &str, line: &str, now: u64) {
    let mut cosigned = checkpoint.to_string();
    cosigned.push_str(line);
    assert_eq!(key.verify(&Note::parse(&cosigned).unwrap()), Ok(now));
}

#[test]
fn cosigns_only_what_extends_what_it_holds_across_restarts() {
    let dir = folder("extends");
    let cosigner = Witness::init(&dir, "witness.test/w1").unwrap();
    assert!(
        Witness::init(&dir, "witness.test/w1").is_err(),
        "a second init would replace the key"
    );
    let log = TestLog::new(1, 20, None);
    let fork = TestLog::new(1, 20, Some(6));
    let witness = Witness::open(&dir, vec![log.log()]).unwrap();
    assert_eq!(witness.cosigner(), &cosigner);

    // The first checkpoint: from the empty tree.
    let line = witness.add_checkpoint(&log.request(0, 5), 1000).unwrap();
    check_cosignature(&cosigner, &log.checkpoint(5), &line, 1000);
    // A sender that believes the witness holds another size is told the size it holds.
    assert_eq!(
        witness.add_checkpoint(&log.request(0, 8), 1001),
        Err(Refusal::Conflict(5))
    );
    // An extension with its proof.
    let line = witness.add_checkpoint(&log.request(5, 8), 1002).unwrap();
    check_cosignature(&cosigner, &log.checkpoint(8), &line, 1002);
    // The same checkpoint again is cosigned again (a log retrying); a smaller one is not.
    witness.add_checkpoint(&log.request(8, 8), 1003).unwrap();
    let smaller = AddCheckpoint {
        old: 8,
        proof: Vec::new(),
        checkpoint: &log.checkpoint(7),
    }
    .to_body();
    assert!(matches!(
        witness.add_checkpoint(&smaller, 1004),
        Err(Refusal::Malformed(_))
    ));

    // A fork: another root for the size held, and a later tree that does not extend it, each
    // signed by the log's own key.
    assert!(matches!(
        witness.add_checkpoint(&fork.request(8, 8), 1005),
        Err(Refusal::Inconsistent(_))
    ));
    let forged = AddCheckpoint {
        old: 8,
        proof: consistency_proof(&fork.tree, 8, 12).unwrap().unwrap(),
        checkpoint: &fork.checkpoint(12),
    }
    .to_body();
    assert!(matches!(
        witness.add_checkpoint(&forged, 1006),
        Err(Refusal::Inconsistent(_))
    ));

    // After a restart, the witness holds what it held.
    drop(witness);
    let witness = Witness::open(&dir, vec![log.log()]).unwrap();
    assert_eq!(
        witness.held(ORIGIN).unwrap(),
        (8, log.tree.root(8).unwrap())
    );
    assert!(matches!(
        witness.add_checkpoint(&fork.request(8, 8), 1007),
        Err(Refusal::Inconsistent(_))
    ));
    witness.add_checkpoint(&log.request(8, 20), 1008).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_unknown_logs_bad_signatures_and_malformed_requests() {
    let dir = folder("refuses");
    Witness::init(&dir, "witness.test/w2").unwrap();
    let log = TestLog::new(1, 8, None);
    let witness = Witness::open(&dir, vec![log.log()]).unwrap();

    // Signed by another key under the log's name.
    let impostor = TestLog::new(2, 8, None);
    assert!(matches!(
        witness.add_checkpoint(&impostor.request(0, 4), 1),
        Err(Refusal::BadSignature(_))
    ));
    // Another log.
    let other = log.request(0, 4).replacen(ORIGIN, "another/log", 1);
    assert!(matches!(
        witness.add_checkpoint(&other, 1),
        Err(Refusal::UnknownLog(_))
    ));
    // An altered body: the signature no longer holds.
    let altered = log.request(0, 4).replacen("\n4\n", "\n5\n", 1);
    assert!(matches!(
        witness.add_checkpoint(&altered, 1),
        Err(Refusal::BadSignature(_))
    ));
    for body in [
        "",
        "old 0\n",
        "old x\n\ncheckpoint",
        "old 01\n\ncheckpoint",
        "old 0\nnot base64\n\ncheckpoint",
        "new 0\n\ncheckpoint",
    ] {
        assert!(
            matches!(witness.add_checkpoint(body, 1), Err(Refusal::Malformed(_))),
            "{body:?}"
        );
    }
    // Nothing was held by any of that.
    assert_eq!(witness.held(ORIGIN).unwrap().0, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn http_answers_with_tlog_witness_statuses() {
    let dir = folder("http");
    let cosigner = Witness::init(&dir, "witness.test/w3").unwrap();
    let log = TestLog::new(1, 8, None);
    let fork = TestLog::new(1, 8, Some(2));
    let app =
        imprint_witness::http::router(Arc::new(Witness::open(&dir, vec![log.log()]).unwrap()));
    let post = |body: String| {
        let app = app.clone();
        async move {
            let res = app
                .oneshot(
                    Request::post("/add-checkpoint")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = res.status();
            let ctype = res
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            let text =
                String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
                    .unwrap();
            (status, ctype, text)
        }
    };
    let (s, _, line) = post(log.request(0, 4)).await;
    assert_eq!(s, StatusCode::OK, "{line}");
    let mut cosigned = log.checkpoint(4);
    cosigned.push_str(&line);
    assert!(cosigner.verify(&Note::parse(&cosigned).unwrap()).is_ok());
    let (s, ctype, text) = post(log.request(0, 6)).await;
    assert_eq!(
        (s, ctype.as_deref(), text.as_str()),
        (StatusCode::CONFLICT, Some("text/x.tlog.size"), "4\n")
    );
    let (s, _, _) = post(fork.request(4, 4)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, _) = post(TestLog::new(3, 8, None).request(4, 6)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = post("old 4\n".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let _ = std::fs::remove_dir_all(&dir);
}
