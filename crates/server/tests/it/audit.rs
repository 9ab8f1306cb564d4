//! The audit log detects edited, deleted, reordered and cut-off entries.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use sqlx::Row;

use crate::Env;

async fn verify(env: &Env, checkpoint: Option<&str>) -> Value {
    let path = match checkpoint {
        Some(c) => format!("/api/v1/audit/verify?checkpoint={c}"),
        None => "/api/v1/audit/verify".into(),
    };
    let (s, v) = env
        .call(Method::GET, &path, Some(&env.auditor), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    v
}

#[tokio::test]
async fn an_intact_log_verifies_and_every_action_is_there() {
    let env = Env::new(3, 10).await;
    env.issue(&env.tech, 1).await;
    let v = verify(&env, None).await;
    assert_eq!(v["ok"], true, "{v}");
    let actions = env.audit_actions().await;
    for a in [
        "key.add",
        "product.map",
        "authinfo.generate",
        "factory.add",
        "quota.set",
        "user.create",
        "login",
        "issue",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    // No secret in the log.
    let (_, log) = env
        .call(
            Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&env.admin),
            Value::Null,
        )
        .await;
    assert!(!log.to_string().contains("password-123"));
}

/// A fresh environment whose entries are sequenced (in the log and its tree), so that what a
/// test does to `audit_log` is done to entries the log has signed.
async fn sequenced() -> (Env, Value) {
    let env = Env::new(5, 10).await;
    // Two checkpoints: the set-up's entries, then an issue's.
    assert_eq!(verify(&env, None).await["ok"], true);
    env.issue(&env.tech, 2).await;
    let v = verify(&env, None).await;
    assert_eq!(v["ok"], true, "{v}");
    (env, v)
}

fn problem(v: &Value) -> &str {
    assert_eq!(v["ok"], false, "{v}");
    v["problem"].as_str().unwrap()
}

#[tokio::test]
async fn edits_deletions_reorders_and_truncation_are_detected() {
    let (env, good) = sequenced().await;
    let n = good["entries"].as_i64().unwrap();
    let head = format!("{n}:{}", good["head"].as_str().unwrap());
    assert_eq!(verify(&env, Some(&head)).await["ok"], true);
    let pool = env.state.store.pool();

    // Edit one entry's detail.
    sqlx::query("UPDATE audit_log SET detail = '{\"count\":999}' WHERE seq = 3")
        .execute(pool)
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert!(problem(&v).contains("entry 3 was altered"), "{v}");

    // Delete a middle entry.
    let (env, _) = sequenced().await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(env.state.store.pool())
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert!(problem(&v).contains("entry 4 is missing"), "{v}");

    // Swap two entries' positions.
    let (env, _) = sequenced().await;
    let pool = env.state.store.pool();
    for sql in [
        "UPDATE audit_log SET seq = -1 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = -1",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    let v = verify(&env, None).await;
    assert!(problem(&v).contains("removed or reordered"), "{v}");

    // Cut the tail: the chain alone still holds, the latest signed checkpoint catches it.
    let (env, good) = sequenced().await;
    let n = good["entries"].as_i64().unwrap();
    let pool = env.state.store.pool();
    sqlx::query("DELETE FROM audit_log WHERE seq >= $1")
        .bind(n - 1)
        .execute(pool)
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert!(problem(&v).contains("cut off"), "{v}");
    // The damaged log, which cannot be sequenced any more, is still read as it is.
    let (s, page) = env
        .call(
            Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["entries"].as_array().unwrap().len() as i64, n - 2);
    // Cut with care, back to an earlier checkpoint, with the checkpoints and tree nodes past
    // it: the log is consistent with itself again, but not with what an auditor saved.
    let (env, good) = sequenced().await;
    let n = good["entries"].as_i64().unwrap();
    let head = format!("{n}:{}", good["head"].as_str().unwrap());
    let saved = good["checkpoint"].as_str().unwrap().to_string();
    let pool = env.state.store.pool();
    let m: i64 = sqlx::query("SELECT MAX(size) AS m FROM audit_checkpoints WHERE size < $1")
        .bind(n)
        .fetch_one(pool)
        .await
        .unwrap()
        .get("m");
    for sql in [
        "DELETE FROM audit_log WHERE seq > $1",
        "DELETE FROM audit_checkpoints WHERE size > $1",
        "DELETE FROM audit_tree WHERE (idx + 1) * (CAST(1 AS BIGINT) << CAST(level AS INTEGER)) > $1",
    ] {
        sqlx::query(sql).bind(m).execute(pool).await.unwrap();
    }
    let v = verify(&env, None).await;
    assert_eq!(v["ok"], true, "{v}");
    let v = verify(&env, Some(&head)).await;
    assert!(problem(&v).contains("cut off"), "{v}");
    let v = verify(&env, Some(&urlencode(&saved))).await;
    assert!(problem(&v).contains("cut off"), "{v}");
}

#[tokio::test]
async fn an_entry_written_past_the_sequencer_is_reported() {
    let (env, good) = sequenced().await;
    let n = good["entries"].as_i64().unwrap();
    let prev = good["head"].as_str().unwrap();
    // A well-chained entry, added straight into the table: the chain alone would take it.
    let at = "1700000000000";
    let hash = imprint_server::audit::entry_hash(n + 1, at, "mallory", "report", "{}", prev);
    sqlx::query("INSERT INTO audit_log (seq, at_ms, actor, action, detail, prev_hash, hash) VALUES ($1, $2, 'mallory', 'report', '{}', $3, $4)")
        .bind(n + 1)
        .bind(1_700_000_000_000i64)
        .bind(prev)
        .bind(hash.as_str())
        .execute(env.state.store.pool())
        .await
        .unwrap();
    let v = verify(&env, None).await;
    assert!(
        problem(&v).contains(&format!("entry {} is in no signed checkpoint", n + 1)),
        "{v}"
    );
}

/// History rewritten with every hash recomputed (what a server's operator with the database
/// and the signing key could do): the log verifies against itself, not against a
/// checkpoint saved before.
#[tokio::test]
async fn rewritten_history_is_caught_by_a_saved_checkpoint() {
    let (env, good) = sequenced().await;
    let saved = good["checkpoint"].as_str().unwrap().to_string();
    rewrite_history(&env).await;
    let forged = verify(&env, None).await;
    assert_eq!(forged["ok"], true, "a self-consistent forgery: {forged}");
    assert_ne!(forged["checkpoint"], good["checkpoint"]);
    let v = verify(&env, Some(&urlencode(&saved))).await;
    assert!(problem(&v).contains("history was rewritten"), "{v}");
    // A saved checkpoint that was itself altered is refused as such.
    let altered = saved.replacen('\n', "0\n", 1);
    let v = verify(&env, Some(&urlencode(&altered))).await;
    assert!(problem(&v).contains("does not verify"), "{v}");
}

/// Rewrites entry 2, re-chains every entry and lets the sequencer rebuild the tree and re-sign:
/// what a server's operator with the database and the signing key could do.
async fn rewrite_history(env: &Env) {
    let pool = env.state.store.pool();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(pool)
        .await
        .unwrap();
    // Re-chain every entry, and let the sequencer rebuild the tree and re-sign.
    let rows = sqlx::query("SELECT seq, at_ms, actor, action, detail FROM audit_log ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut prev = imprint_server::audit::GENESIS.to_string();
    for r in rows {
        let seq: i64 = r.get("seq");
        let at = r.get::<i64, _>("at_ms").to_string();
        let hash = imprint_server::audit::entry_hash(
            seq,
            &at,
            &r.get::<String, _>("actor"),
            &r.get::<String, _>("action"),
            &r.get::<String, _>("detail"),
            &prev,
        );
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(prev.as_str())
            .bind(hash.as_str())
            .bind(seq)
            .execute(pool)
            .await
            .unwrap();
        prev = hash;
    }
    for sql in [
        "DELETE FROM audit_tree",
        "DELETE FROM audit_checkpoints",
        "UPDATE counters SET value = (SELECT MAX(seq) FROM audit_log) WHERE name = 'audit_legacy'",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

/// An entry's leaf hash, rebuilt from its fields as docs/audit.md says ("The leaf"), with
/// nothing of the server's code.
fn leaf_of(e: &Value) -> [u8; 32] {
    let mut bytes = b"imprint-audit-leaf-v1".to_vec();
    let seq = e["seq"].as_u64().unwrap().to_string();
    for f in [
        seq.as_str(),
        e["at"].as_str().unwrap(),
        e["actor"].as_str().unwrap(),
        e["action"].as_str().unwrap(),
        e["detail"].as_str().unwrap(),
    ] {
        bytes.extend_from_slice(&(f.len() as u64).to_be_bytes());
        bytes.extend_from_slice(f.as_bytes());
    }
    imprint_core::tlog::leaf_hash(&bytes)
}

/// A JSON list of base64 hashes.
fn base64_hashes(v: &Value) -> Vec<[u8; 32]> {
    use base64ct::{Base64, Encoding};
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            Base64::decode(h.as_str().unwrap(), &mut out).unwrap();
            out
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What an outsider does, from docs/audit.md and the bytes alone: read the checkpoint without
/// an account, check its signature with the pinned key, rebuild each entry's leaf from its
/// fields, and check its inclusion proof; then, as the log grows, check a consistency proof
/// from the checkpoint it saved to the next.
#[tokio::test]
async fn proofs_verify_from_their_bytes_alone() {
    use imprint_core::note::{VerifierKey, open_checkpoint};
    use imprint_core::tlog::{verify_consistency, verify_inclusion};

    let (env, _) = sequenced().await;
    let (s, cp) = env
        .call(Method::GET, "/api/v1/audit/checkpoint", None, Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{cp}");
    let key = VerifierKey::parse(cp["key"].as_str().unwrap()).unwrap();
    let old = open_checkpoint(cp["checkpoint"].as_str().unwrap(), &key, &key.name).unwrap();
    assert_eq!(old.size, cp["size"].as_u64().unwrap());

    let leaf = leaf_of;
    let hashes = |v: &Value| base64_hashes(&v["hashes"]);
    let (_, page) = env
        .call(
            Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    let entries = page["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len() as u64, old.size);
    for e in &entries {
        let seq = e["seq"].as_u64().unwrap();
        let (s, p) = env
            .call(
                Method::GET,
                &format!("/api/v1/audit/proof/inclusion?seq={seq}&size={}", old.size),
                Some(&env.auditor),
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        verify_inclusion(&leaf(e), seq - 1, old.size, &hashes(&p), &old.root)
            .unwrap_or_else(|err| panic!("entry {seq}: {err}"));
        // The same proof does not hold for another entry's leaf.
        let other = &entries[(seq as usize) % entries.len()];
        if other["seq"] != e["seq"] {
            assert!(
                verify_inclusion(&leaf(other), seq - 1, old.size, &hashes(&p), &old.root).is_err()
            );
        }
    }

    // The log grows; the saved checkpoint's tree is a prefix of the new one.
    env.issue(&env.tech, 1).await;
    let v = verify(&env, None).await;
    let new = open_checkpoint(v["checkpoint"].as_str().unwrap(), &key, &key.name).unwrap();
    assert!(new.size > old.size);
    let (s, p) = env
        .call(
            Method::GET,
            &format!(
                "/api/v1/audit/proof/consistency?old={}&new={}",
                old.size, new.size
            ),
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    verify_consistency(old.size, new.size, &hashes(&p), &old.root, &new.root).unwrap();
    let mut forked = old.root;
    forked[0] ^= 1;
    assert!(verify_consistency(old.size, new.size, &hashes(&p), &forked, &new.root).is_err());

    // Sizes the log has not signed are refused, with what it has signed.
    let (s, p) = env
        .call(
            Method::GET,
            &format!("/api/v1/audit/proof/inclusion?seq=1&size={}", new.size + 1),
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    assert!(
        p.to_string()
            .contains(&format!("its latest is of {}", new.size)),
        "{p}"
    );
    let (s, _) = env
        .call(
            Method::GET,
            "/api/v1/audit/proof/inclusion?seq=0&size=1",
            Some(&env.auditor),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// A real witness (imprint-witness, over HTTP): it cosigns each checkpoint that extends the
/// last, and refuses a fork, so a client shown the forged log has no cosigned checkpoint of it,
/// and the cosigned one it can get does not lead to the forged root.
#[tokio::test]
async fn a_witness_cosigns_the_log_and_refuses_its_fork() {
    use imprint_core::note::{Note, open_checkpoint};
    use imprint_server::{tlog, witness};

    let (env, _) = sequenced().await;
    let store = &env.state.store;
    let key = tlog::verifier_key(store, &env.state.custody).await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "imprint-it-witness-{}",
        imprint_server::random_id()
    ));
    let cosigner = imprint_witness::Witness::init(&dir, "witness.test/w1").unwrap();
    let w = imprint_witness::Witness::open(
        &dir,
        vec![imprint_witness::Log {
            origin: key.name.clone(),
            key: key.clone(),
        }],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            imprint_witness::http::router(std::sync::Arc::new(w)),
        )
        .await
        .unwrap()
    });
    let peer: witness::Peer = format!("http://{addr}={cosigner}").parse().unwrap();
    assert!("ftp://x=y".parse::<witness::Peer>().is_err());

    let latest = |env: &Env| {
        let store = env.state.store.clone();
        async move {
            let mut conn = store.read().await.unwrap();
            tlog::latest(&mut conn).await.unwrap().unwrap()
        }
    };
    let checked = |text: &str| {
        let note = Note::parse(text).unwrap();
        cosigner.verify(&note).expect("the witness's cosignature");
        open_checkpoint(text, &key, &key.name).unwrap()
    };

    // The first push, then a grown log: each cosigned, the second by a proof from the first.
    let first = latest(&env).await;
    witness::push_all(store, std::slice::from_ref(&peer), &first).await;
    let seen = checked(&witness::witnessed(store).await.unwrap().unwrap());
    assert_eq!(seen.size, first.size);
    env.issue(&env.tech, 1).await;
    assert_eq!(verify(&env, None).await["ok"], true);
    let grown = latest(&env).await;
    assert!(grown.size > first.size);
    witness::push_all(store, std::slice::from_ref(&peer), &grown).await;
    let seen = checked(&witness::witnessed(store).await.unwrap().unwrap());
    assert_eq!((seen.size, seen.root), (grown.size, grown.root));
    let (s, cp) = env
        .call(Method::GET, "/api/v1/audit/checkpoint", None, Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    checked(cp["witnessed"].as_str().unwrap());

    // The operator rewrites history and re-signs: the witness does not cosign the fork.
    rewrite_history(&env).await;
    assert_eq!(
        verify(&env, None).await["ok"],
        true,
        "the fork is consistent with itself"
    );
    let forged = latest(&env).await;
    assert_eq!(forged.size, grown.size);
    assert_ne!(forged.root, grown.root);
    witness::push_all(store, std::slice::from_ref(&peer), &forged).await;
    let witnessed = checked(&witness::witnessed(store).await.unwrap().unwrap());
    assert_eq!(
        witnessed.root, grown.root,
        "the witness still vouches for the true root only"
    );
    // A client shown the forged checkpoint compares it with the witnessed one: same size,
    // another root: a fork, proven by two signatures of the log's own key.
    let forged_cp = open_checkpoint(&forged.note, &key, &key.name).unwrap();
    assert_eq!(forged_cp.size, witnessed.size);
    assert_ne!(forged_cp.root, witnessed.root);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A station asks for the proofs of the units it reported: each verifies from the bytes
/// (leaf from the entry's fields, at the signed checkpoint), a consistency proof links the
/// checkpoint it held to the new one, and another factory's technician gets none of them.
#[tokio::test]
async fn a_station_gets_proofs_of_its_own_installations_only() {
    use imprint_core::note::{VerifierKey, open_checkpoint};
    use imprint_core::tlog::{verify_consistency, verify_inclusion};

    let env = Env::new(5, 10).await;
    let recs = env.issue(&env.tech, 3).await;
    let mut ids = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let (receipt, serial) =
            crate::install(&mut imprint_device::sim::SimDevice::demo(i as u32), r);
        let id = r["apparatus_id"].as_str().unwrap().to_string();
        let (s, v) = env.report(&env.tech, &id, &serial, &receipt).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push((id, serial));
    }
    let b64 = base64_hashes;
    let ask = |token: String, since: Option<u64>, ids: Vec<String>| {
        let env = &env;
        async move {
            env.call(
                Method::POST,
                "/api/v1/audit/installs",
                Some(&token),
                serde_json::json!({"apparatus_ids": ids, "since": since}),
            )
            .await
        }
    };
    let all: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    let (s, first) = ask(env.tech.clone(), None, all[..1].to_vec()).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let key = VerifierKey::parse(first["key"].as_str().unwrap()).unwrap();
    let held = open_checkpoint(first["checkpoint"].as_str().unwrap(), &key, &key.name).unwrap();

    // More entries, then all three units from the held checkpoint.
    env.issue(&env.tech, 1).await;
    let (s, v) = ask(env.tech.clone(), Some(held.size), all.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let now = open_checkpoint(v["checkpoint"].as_str().unwrap(), &key, &key.name).unwrap();
    assert!(now.size > held.size);
    verify_consistency(
        held.size,
        now.size,
        &b64(&v["consistency"]),
        &held.root,
        &now.root,
    )
    .unwrap();
    let installs = v["installs"].as_array().unwrap();
    assert_eq!(installs.len(), 3);
    for (p, (id, serial)) in installs.iter().zip(&ids) {
        let e = &p["entry"];
        assert_eq!(p["apparatus_id"], id.as_str());
        assert_eq!(e["action"], "report");
        let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["product_serial"], serial.as_str());
        let seq = e["seq"].as_u64().unwrap();
        let leaf = leaf_of(e);
        verify_inclusion(&leaf, seq - 1, now.size, &b64(&p["hashes"]), &now.root).unwrap();
    }

    // Another factory's technician: no proof of these units.
    let (s, v) = ask(env.tech_b.clone(), None, all.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["installs"].as_array().unwrap().len(), 0);
    // An auditor sees them all; an empty or oversized request is refused.
    let (_, v) = ask(env.auditor.clone(), None, all.clone()).await;
    assert_eq!(v["installs"].as_array().unwrap().len(), 3);
    let (s, _) = ask(env.tech.clone(), None, Vec::new()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
