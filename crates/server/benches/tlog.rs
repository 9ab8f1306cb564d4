//! The audit log as a transparency log, for docs/benchmarks.md.
//!
//! Run: `cargo bench -p imprint-server --bench tlog -- [proof log size] [verify log size]`
//! (defaults 10,000,000 and 1,000,000). Measures in one run, on fresh SQLite files:
//! 1. what an audit entry adds to a report: a report (one station, one at a time) beside a
//!    write transaction that updates one row, with and without an audit entry;
//! 2. the sequencer's throughput, filling a log of the proof size;
//! 3. inclusion and consistency proofs in that log (random leaves and sizes), beside a
//!    one-row primary-key read of the same table;
//! 4. checkpoint verification, beside a bare Ed25519 verification of the same bytes;
//! 5. `imprint audit verify` of a log of the verify size, beside reading its entries and
//!    hashing their leaves.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use imprint_core::KeyId;
use imprint_server::store::Store;
use imprint_server::tlog::{self, Proof};
use imprint_server::{AppState, audit, service};
use rand_core::Rng;

mod common;
use common::{Unit, fresh, rate, row, tech};

/// `n` pending entries, as that many business transactions would leave them, committed in
/// transactions of 100,000.
async fn fill_pending(store: &Store, n: u64) {
    let mut done = 0u64;
    while done < n {
        let mut tx = store.begin().await.unwrap();
        let part = (n - done).min(100_000);
        let entries: Vec<audit::NewEntry> = (done..done + part)
            .map(|i| audit::NewEntry {
                actor: "tech-ana".into(),
                action: "report".into(),
                detail: serde_json::json!({"apparatus_id": format!("IMP-{i:010}"), "product_serial": format!("SN-{i:08}"), "factory": "acme-sz", "station": "line-1"}),
            })
            .collect();
        audit::append_many(&mut tx, &entries).await.unwrap();
        tx.commit().await.unwrap();
        done += part;
    }
}

/// A store with `n` entries sequenced; the time the sequencer took.
async fn log_of(tag: &str, n: u64) -> (AppState, std::path::PathBuf, Duration) {
    let (state, dir) = fresh(tag, 1).await;
    // The set-up's entries first, so the timed run sequences exactly `n`.
    tlog::sequence(&state.store, &state.custody).await.unwrap();
    let t = Instant::now();
    fill_pending(&state.store, n).await;
    let filled = t.elapsed();
    let t = Instant::now();
    tlog::sequence(&state.store, &state.custody).await.unwrap();
    let took = t.elapsed();
    println!(
        "log of {n}: pending entries written in {:.1} s ({:.0}/s); sequenced in {:.1} s ({:.0} entries/s)",
        filled.as_secs_f64(),
        rate(n, filled),
        took.as_secs_f64(),
        rate(n, took)
    );
    (state, dir, took)
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace([',', '_'], "").parse().ok())
        .collect();
    let proof_n = args.first().copied().unwrap_or(10_000_000);
    let verify_n = args.get(1).copied().unwrap_or(1_000_000);
    let mut rng = imprint_server::rng();

    // 1. A report, and what its audit entry adds.
    let reports = 1000u64;
    let (state, dir) = fresh("append", reports).await;
    service::generate(&state, "bench", KeyId::new(1).unwrap(), reports, "A-")
        .await
        .unwrap();
    let product = imprint_core::ProductCode::new("CAM-X100").unwrap();
    let recs = service::issue(&state, &tech(), product, reports, None)
        .await
        .unwrap();
    let mut report_lat = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let mut dev = imprint_device::sim::SimDevice::demo(i as u32);
        dev.transfer_out(
            &imprint_core::Request::Install {
                apparatus_id: r.apparatus_id,
                record: r.sealed.clone(),
            }
            .encode(1),
        )
        .unwrap();
        let (_, imprint_core::Reply::Installed(receipt)) =
            imprint_core::Reply::decode(&dev.transfer_in(1024).unwrap()).unwrap()
        else {
            panic!("no receipt")
        };
        let report = service::Report {
            apparatus_id: r.apparatus_id,
            product_serial: dev.config().product_serial,
            receipt,
            station: "line-1".into(),
        };
        let t = Instant::now();
        service::report(&state, &tech(), &report).await.unwrap();
        report_lat.push(t.elapsed());
    }
    // A transaction that writes (so it is synced, as a report is), with and without an
    // audit entry: the difference is what the entry adds to a report.
    const TOUCH: &str = "INSERT INTO counters (name, value) VALUES ('bench', 0) \
                         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1";
    let mut empty_lat = Vec::new();
    let mut append_lat = Vec::new();
    for _ in 0..reports {
        let t = Instant::now();
        state
            .store
            .write(&(), |tx, _| {
                Box::pin(async move {
                    imprint_server::db::query(TOUCH).execute(&mut *tx).await?;
                    Ok(())
                })
            })
            .await
            .unwrap();
        empty_lat.push(t.elapsed());
        let t = Instant::now();
        state
            .store
            .write(&(), |tx, _| {
                Box::pin(async move {
                    imprint_server::db::query(TOUCH).execute(&mut *tx).await?;
                    audit::append(
                        tx,
                        "tech-ana",
                        "report",
                        serde_json::json!({"apparatus_id": "IMP-0000000001", "product_serial": "SN-00000001", "factory": "acme-sz", "station": "line-1"}),
                    )
                    .await
                })
            })
            .await
            .unwrap();
        append_lat.push(t.elapsed());
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() * 1e6 / v.len() as f64;
    let added = mean(&append_lat) - mean(&empty_lat);
    println!(
        "\n| one station, {reports} each, µs | mean | p50 | p99 | max |\n| --- | --- | --- | --- | --- |"
    );
    row(
        "report (its audit entry included)",
        report_lat.clone(),
        Unit::Micros,
    );
    row(
        "write transaction updating one row (baseline)",
        empty_lat,
        Unit::Micros,
    );
    row(
        "the same transaction, also appending an audit entry",
        append_lat,
        Unit::Micros,
    );
    println!(
        "\nthe entry adds {added:.1} µs to a transaction: {:.2}% of a report's mean",
        100.0 * added / mean(&report_lat)
    );
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    // 2, 3. A big log, and proofs in it.
    let (state, dir, _) = log_of("proofs", proof_n).await;
    let mut conn = state.store.read().await.unwrap();
    let size = tlog::latest(&mut conn).await.unwrap().unwrap().size;
    let samples = 10_000;
    let mut incl = Vec::with_capacity(samples);
    let mut cons = Vec::with_capacity(samples);
    let mut base = Vec::with_capacity(samples);
    let mut hashes = 0usize;
    for _ in 0..samples {
        let index = rng.next_u64() % size;
        let t = Instant::now();
        hashes += tlog::prove(&mut conn, Proof::Inclusion { index, size })
            .await
            .unwrap()
            .len();
        incl.push(t.elapsed());
        let old = 1 + rng.next_u64() % (size - 1);
        let t = Instant::now();
        tlog::prove(&mut conn, Proof::Consistency { old, new: size })
            .await
            .unwrap();
        cons.push(t.elapsed());
        let t = Instant::now();
        imprint_server::db::query("SELECT hash FROM audit_tree WHERE level = 0 AND idx = $1")
            .bind(index as i64)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        base.push(t.elapsed());
    }
    println!(
        "\n| log of {size} entries, {samples} random proofs, µs | mean | p50 | p99 | max |\n| --- | --- | --- | --- | --- |"
    );
    row("inclusion proof (random leaf)", incl, Unit::Micros);
    row("consistency proof (random old size)", cons, Unit::Micros);
    row(
        "one-row primary-key read of audit_tree (baseline)",
        base,
        Unit::Micros,
    );
    println!(
        "({:.1} hashes per inclusion proof)",
        hashes as f64 / samples as f64
    );
    let db_bytes = std::fs::metadata(dir.join("imprint.db")).map_or(0, |m| m.len());
    println!("database file: {:.2} GB", db_bytes as f64 / 1e9);

    // 4. Checkpoint verification.
    let key = tlog::verifier_key(&state.store, &state.custody)
        .await
        .unwrap();
    let note = tlog::latest(&mut conn).await.unwrap().unwrap().note;
    drop(conn);
    let n = 10_000;
    let t = Instant::now();
    for _ in 0..n {
        imprint_core::note::open_checkpoint(&note, &key, &key.name).unwrap();
    }
    let open = t.elapsed();
    let body = imprint_core::note::Note::parse(&note)
        .unwrap()
        .body
        .to_string();
    let sig = imprint_core::note::Note::parse(&note).unwrap().signatures[0]
        .signature
        .clone();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap());
    let t = Instant::now();
    for _ in 0..n {
        use ed25519_dalek::Verifier;
        vk.verify(body.as_bytes(), &sig).unwrap();
    }
    let bare = t.elapsed();
    println!(
        "\n| checkpoint verification, {n} times | µs each |\n| --- | --- |\n| open_checkpoint (parse, key ID, Ed25519) | {:.1} |\n| bare Ed25519 verify of the same body (baseline) | {:.1} |",
        open.as_secs_f64() * 1e6 / n as f64,
        bare.as_secs_f64() * 1e6 / n as f64
    );
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    // 5. Whole-log verification.
    let (state, dir, _) = log_of("verify", verify_n).await;
    let t = Instant::now();
    let v = tlog::verify(&state.store, &state.custody, None)
        .await
        .unwrap();
    let whole = t.elapsed();
    assert!(v.problem.is_none(), "{v:?}");
    let t = Instant::now();
    let mut conn = state.store.read().await.unwrap();
    let entries = audit::read(&mut conn, 1, i64::MAX).await.unwrap();
    let leaves: Vec<_> = entries.iter().map(tlog::entry_leaf).collect();
    let read = t.elapsed();
    println!(
        "\n| verify a log of {} entries | s | entries/s |\n| --- | --- | --- |\n| imprint audit verify (chain, tree, stored nodes, checkpoint) | {:.2} | {:.0} |\n| read the entries and hash their leaves (baseline) | {:.2} | {:.0} |",
        leaves.len(),
        whole.as_secs_f64(),
        rate(v.entries as u64, whole),
        read.as_secs_f64(),
        rate(leaves.len() as u64, read)
    );
    drop(conn);
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
