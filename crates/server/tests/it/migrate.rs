//! A SQLite database made by the previous schema (migrations 0001 and 0002: times as text, no
//! kept issue nonces, no entry counter) opens under the current one: its times become
//! integers, its audit chain still verifies, a record issued before is reported on its old
//! seal, and new entries continue its sequence.

use imprint_core::{ApparatusId, Binding, KeyId, PassPhrase, SealedRecord};
use imprint_device::sim::{SimDevice, demo_key};
use imprint_server::kek::Kek;
use imprint_server::store::Store;
use imprint_server::{AppState, audit, service};
use sqlx::{AssertSqlSafe, Executor, Row};

#[tokio::test]
async fn a_database_of_the_previous_schema_migrates_and_keeps_working() {
    let dir = crate::temp_dir("migrate");
    // The previous schema, from its own migration files.
    let old = dir.join("old-migrations");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["0001_tables.sql", "0002_leases.sql"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/sqlite")
                .join(f),
            old.join(f),
        )
        .unwrap();
    }
    let file = dir.join("imprint.db");
    let (_, kek_bytes) = Kek::generate();
    let kek = imprint_server::custody::Custody::from(Kek::from_bytes(&kek_bytes));
    {
        let pool = sqlx::SqlitePool::connect(&imprint_server::store::sqlite_url(&file))
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        // What the previous server wrote: key 1, product, factory, three entries, one issued.
        let k1 = KeyId::new(1).unwrap();
        sqlx::query("INSERT INTO pre_write_keys VALUES (1, ?, '1700000000000')")
            .bind(kek.seal("700/1", demo_key(k1).expose_secret()).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        pool.execute("INSERT INTO product_codes VALUES ('CAM-X100', 1); INSERT INTO factories VALUES ('fa', 'A'); INSERT INTO quotas VALUES ('fa', 'CAM-X100', 10, 1)")
            .await
            .unwrap();
        let mut rng = imprint_server::rng();
        for n in 1..=3 {
            let id = ApparatusId::new(&format!("IMP-{n:010}")).unwrap();
            let pass = PassPhrase::generate(&mut rng);
            let issued = n == 1;
            sqlx::query("INSERT INTO auth_info VALUES (?, ?, 1, ?, ?, ?, ?)")
                .bind(id.as_str())
                .bind(
                    kek.seal(&format!("702/{id}"), pass.expose_secret())
                        .unwrap(),
                )
                .bind(if issued { "issued" } else { "unissued" })
                .bind(issued.then_some("fa"))
                .bind(issued.then_some("CAM-X100"))
                .bind(n)
                .execute(&pool)
                .await
                .unwrap();
            if issued {
                let sealed =
                    SealedRecord::seal(&mut rng, &demo_key(k1), k1, &Binding::Model, &id, &pass);
                sqlx::query("INSERT INTO factory_records (apparatus_id, sealed, key_id, factory_id, product_code, issued_at) VALUES (?, ?, 1, 'fa', 'CAM-X100', '1700000000500')")
                    .bind(id.as_str())
                    .bind(sealed.as_bytes())
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        // Two audit entries, chained as the previous server chained them.
        let mut prev = audit::GENESIS.to_string();
        for (seq, action) in [(1i64, "key.add"), (2, "issue")] {
            let at = format!("17000000000{seq:02}");
            let hash = audit::entry_hash(seq, &at, "cli", action, "{}", &prev);
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO audit_log VALUES ({seq}, '{at}', 'cli', '{action}', '{{}}', '{prev}', '{hash}')"
            )))
            .execute(&pool)
            .await
            .unwrap();
            prev = hash;
        }
        pool.close().await;
    }

    let state = AppState::new(
        Store::open_sqlite(&file).await.unwrap(),
        Kek::from_bytes(&kek_bytes),
    );
    let pool = state.store.pool();
    let created: i64 = sqlx::query("SELECT created_ms FROM pre_write_keys")
        .fetch_one(pool)
        .await
        .unwrap()
        .get("created_ms");
    assert_eq!(
        created, 1_700_000_000_000,
        "a text time became the same integer"
    );
    let v = imprint_server::tlog::verify(&state.store, &state.custody, None)
        .await
        .unwrap();
    assert!(
        v.problem.is_none() && v.entries == 2,
        "the chain of text times verifies as integers: {v:?}"
    );
    // The old chain's entries became the tree's first leaves, in their order, and a checkpoint
    // of them was signed.
    let mut conn = state.store.read().await.unwrap();
    let cp = imprint_server::tlog::latest(&mut conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.size, 2);
    let leaf = |seq: i64, action: &str| {
        imprint_core::tlog::leaf_hash(&imprint_server::tlog::leaf_bytes(
            seq,
            &format!("17000000000{seq:02}"),
            "cli",
            action,
            "{}",
        ))
    };
    assert_eq!(
        cp.root,
        imprint_core::tlog::node_hash(&leaf(1, "key.add"), &leaf(2, "issue"))
    );
    drop(conn);

    // The record issued before the migration has no kept nonce: its receipt is checked on the
    // record itself, and the report is recorded.
    let tech = imprint_server::auth::User {
        username: "tech".into(),
        role: imprint_server::auth::Role::Technician,
        factory: Some("fa".into()),
    };
    let open = service::open_records(&state, &tech).await.unwrap();
    assert_eq!(open.len(), 1);
    let rec = serde_json::to_value(&open[0]).unwrap();
    let mut dev = SimDevice::demo(1);
    let (receipt, serial) = crate::install(&mut dev, &rec);
    let report = service::Report {
        apparatus_id: open[0].apparatus_id,
        product_serial: crate::serial(&serial),
        receipt: imprint_core::Receipt(hex::decode(receipt).unwrap().try_into().unwrap()),
        station: "line-1".into(),
    };
    let (status, _) = service::report(&state, &tech, &report).await.unwrap();
    assert_eq!(status, imprint_api::ReportStatus::Recorded);
    // New entries continue the old sequence; new records keep their nonce.
    let g = service::generate(&state, "test", KeyId::new(1).unwrap(), 2, "IMP-")
        .await
        .unwrap();
    assert_eq!(g.first.as_str(), "IMP-0000000004");
    let recs = service::issue(
        &state,
        &tech,
        imprint_core::ProductCode::new(crate::PRODUCT).unwrap(),
        2,
        None,
    )
    .await
    .unwrap();
    assert_eq!(recs.len(), 2);
    let kept: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM factory_records WHERE nonce_sealed IS NOT NULL")
            .fetch_one(pool)
            .await
            .unwrap()
            .get("n");
    assert_eq!(kept, 2);
    let v = imprint_server::tlog::verify(&state.store, &state.custody, None)
        .await
        .unwrap();
    assert!(
        v.problem.is_none() && v.entries > 2,
        "old and new entries chain on: {v:?}"
    );
    state.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
