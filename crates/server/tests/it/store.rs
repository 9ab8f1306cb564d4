//! The statement layer (`imprint_server::db`) and the store's write transactions, on the
//! suite's database (SQLite, or PostgreSQL with `IMPRINT_TEST_DATABASE=postgres`).

use imprint_server::db;
use imprint_server::store::{Backend, Store};

use crate::{on_postgres, postgres_database, temp_dir};

async fn open(tag: &str) -> (Store, std::path::PathBuf) {
    let dir = temp_dir(tag);
    let url = if on_postgres() {
        postgres_database().await
    } else {
        imprint_server::store::sqlite_url(&dir.join("imprint.db"))
    };
    (Store::open(&url).await.unwrap(), dir)
}

fn blob(store: &Store) -> &'static str {
    match store.backend() {
        Backend::Sqlite => "BLOB",
        Backend::Postgres => "BYTEA",
    }
}

#[tokio::test]
async fn numbered_parameters_take_their_own_argument_wherever_they_stand() {
    let (store, dir) = open("db-params").await;
    let mut tx = store.begin().await.unwrap();
    db::query(format!(
        "CREATE TABLE scratch (n BIGINT, t TEXT, b {}, maybe BIGINT)",
        blob(&store)
    ))
    .execute(&mut tx)
    .await
    .unwrap();
    // $2 before $1, and $1 twice: each takes its own argument, not the next in the text.
    let done = db::query("INSERT INTO scratch (t, n, b, maybe) VALUES ($2, $1 + $1, $3, $4)")
        .bind(21i64)
        .bind("twenty-one")
        .bind(&[1u8, 2, 3][..])
        .bind(None::<i64>)
        .execute(&mut tx)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    tx.commit().await.unwrap();
    let row = db::query("SELECT n, t, b, maybe FROM scratch WHERE t = $1")
        .bind("twenty-one")
        .fetch_one(&mut store.read().await.unwrap())
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64, _>("n").unwrap(), 42);
    assert_eq!(row.try_get::<String, _>(1).unwrap(), "twenty-one");
    assert_eq!(row.try_get::<Vec<u8>, _>("b").unwrap(), vec![1, 2, 3]);
    assert_eq!(row.try_get::<Option<i64>, _>("maybe").unwrap(), None);
    // The same read inside a write transaction (SQLite: through the writer connection).
    let mut tx = store.begin().await.unwrap();
    let row = db::query("SELECT n, t FROM scratch WHERE n = $1")
        .bind(42i64)
        .fetch_optional(&mut tx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String, _>("t").unwrap(), "twenty-one");
    let wrong = row.try_get::<i64, _>("t").unwrap_err().to_string();
    assert!(
        !wrong.contains("twenty-one"),
        "a type error names no value: {wrong}"
    );
    assert!(row.try_get::<i64, _>("absent").is_err());
    tx.rollback().await.unwrap();
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_statement_with_the_wrong_number_of_arguments_is_an_error_not_a_panic() {
    let (store, dir) = open("db-count").await;
    let mut tx = store.begin().await.unwrap();
    let e = db::query("SELECT $1 AS a, $2 AS b")
        .bind(1i64)
        .fetch_all(&mut tx)
        .await
        .unwrap_err();
    assert_eq!(e.code(), imprint_api::ErrorCode::Internal, "{e}");
    if on_postgres() {
        // PostgreSQL aborts the transaction at its first error.
        tx.rollback().await.unwrap();
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    // SQLite's transaction is still usable after a statement that failed.
    let row = db::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(&mut tx)
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64, _>("n").unwrap(), 0);
    tx.rollback().await.unwrap();
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_transaction_dropped_mid_way_leaves_nothing_and_the_next_writer_works() {
    let (store, dir) = open("db-drop").await;
    let insert = |name: &'static str| {
        db::query("INSERT INTO factories (factory_id, name) VALUES ($1, $2)")
            .bind(name)
            .bind("Dropped")
    };
    {
        let mut tx = store.begin().await.unwrap();
        insert("fa-dropped").execute(&mut tx).await.unwrap();
        // Dropped without commit: a request whose client went away.
    }
    // A write abandoned while its future was pending (cancelled between statements).
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        store.write(&(), |tx, ()| {
            Box::pin(async move {
                insert("fa-cancelled").execute(tx).await?;
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Ok(())
            })
        }),
    )
    .await;
    assert!(cancelled.is_err(), "the write was cut off by the timeout");
    store
        .write(&(), |tx, ()| {
            Box::pin(async move {
                insert("fa-kept").execute(tx).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    let rows = db::query("SELECT factory_id FROM factories ORDER BY factory_id")
        .fetch_all(&mut store.read().await.unwrap())
        .await
        .unwrap();
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get("factory_id").unwrap())
        .collect();
    assert_eq!(ids, ["fa-kept"]);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_sqlite_writer_waits_for_another_process_holding_the_write_lock() {
    if on_postgres() {
        return;
    }
    let (store, dir) = open("db-busy").await;
    // Another program on the same file (as another `imprint` process would be) holds SQLite's
    // write lock for 300 ms.
    let path = dir.join("imprint.db");
    let (held, wait_held) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO factories (factory_id, name) VALUES ('fa-other', 'Other');")
            .unwrap();
        held.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        conn.execute_batch("COMMIT").unwrap();
    });
    wait_held.recv().unwrap();
    let t = std::time::Instant::now();
    // Meanwhile the runtime (one thread here) stays free: the wait is off its thread, so a
    // task of 100 ms finishes long before the write does.
    let ticker = tokio::spawn(async {
        for _ in 0..10 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        std::time::Instant::now()
    });
    let seen = store
        .write(&(), |tx, ()| {
            Box::pin(async move {
                let n =
                    db::query("SELECT COUNT(*) AS n FROM factories WHERE factory_id = 'fa-other'")
                        .fetch_one(tx)
                        .await?
                        .try_get::<i64, _>("n")?;
                Ok(n)
            })
        })
        .await
        .unwrap();
    assert_eq!(
        seen, 1,
        "the write began after the other program's commit and saw it"
    );
    let written = std::time::Instant::now();
    assert!(written - t >= std::time::Duration::from_millis(200));
    let ticked = ticker.await.unwrap();
    assert!(
        ticked + std::time::Duration::from_millis(100) < written,
        "the runtime was blocked while the writer waited"
    );
    other.join().unwrap();
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
