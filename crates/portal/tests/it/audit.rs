//! The station's check of the server's audit log, against the real server: the units it
//! reported are proven in the log, and a log rewritten behind its back, a changed key or an
//! entry that is not its report raise an alarm.

use imprint_core::FactoryId;
use imprint_device::sim::SimDevice;
use imprint_portal::state::audit::{Alarm, check};
use imprint_portal::state::journal::Journal;

use crate::harness::InProcess;

fn fa() -> FactoryId {
    FactoryId::new("fa").unwrap()
}

async fn provision(server: &InProcess, journal: &mut Journal, n: u32, from: u32) {
    server.fetch(journal, u64::from(n)).await;
    for i in 0..n {
        let mut dev = SimDevice::demo(from + i);
        crate::flow::run(&mut dev, server, journal).await.0.unwrap();
    }
}

#[tokio::test]
async fn reported_units_are_proven_and_a_rewritten_log_raises_the_alarm() {
    let server = InProcess::new(20).await;
    let mut journal = Journal::of(fa());
    provision(&server, &mut journal, 3, 0).await;
    assert_eq!(
        journal.audit.awaiting.len(),
        3,
        "each recorded report awaits its proof"
    );

    // The first answer pins the log's key; all three units are proven.
    let req = journal.audit.request().unwrap();
    assert_eq!(req.since, None);
    let answer = server.client().install_proofs(&req).await.unwrap();
    let (checked, key) = check(answer.clone(), None, &journal.audit, &fa()).unwrap();
    assert_eq!(checked.proven.len(), 3);
    assert_eq!(journal.audit.apply(checked), 3);
    assert!(journal.audit.awaiting.is_empty() && journal.audit.proven == 3);
    let pinned = key.to_string();

    // The journal keeps what it checked across a reload.
    let again = Journal::from_json(&journal.to_json().unwrap()).unwrap();
    assert_eq!(again.audit, journal.audit);

    // An answer whose entry is not the station's report: the serial changed.
    provision(&server, &mut journal, 1, 3).await;
    let req = journal.audit.request().unwrap();
    assert!(req.since.is_some());
    let answer = server.client().install_proofs(&req).await.unwrap();
    let mut forged = answer.clone();
    forged.installs[0].entry.detail = forged.installs[0]
        .entry
        .detail
        .replace("\"product_serial\":\"", "\"product_serial\":\"X");
    assert!(matches!(
        check(forged, Some(&pinned), &journal.audit, &fa()),
        Err(Alarm::Entry(..))
    ));
    // Another key than the pinned one.
    let mut other = answer.clone();
    other.key = imprint_core::note::VerifierKey {
        name: key.name.clone(),
        public: ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .to_bytes(),
    }
    .to_string();
    assert!(matches!(
        check(other, Some(&pinned), &journal.audit, &fa()),
        Err(Alarm::Checkpoint(_))
    ));
    // The genuine answer is taken.
    let (checked, _) = check(answer, Some(&pinned), &journal.audit, &fa()).unwrap();
    assert_eq!(journal.audit.apply(checked), 1);

    // The operator rewrites the log (an entry changed, the chain and tree rebuilt, re-signed
    // with the log's own key): the next answer does not extend what the station holds.
    let pool = server.state.store.pool();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(pool)
        .await
        .unwrap();
    for sql in [
        "DELETE FROM audit_tree",
        "DELETE FROM audit_checkpoints",
        "UPDATE counters SET value = (SELECT MAX(seq) FROM audit_log) WHERE name = 'audit_legacy'",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    provision(&server, &mut journal, 1, 4).await;
    let req = journal.audit.request().unwrap();
    let answer = server.client().install_proofs(&req).await.unwrap();
    let alarm = check(answer, Some(&pinned), &journal.audit, &fa()).unwrap_err();
    assert!(matches!(alarm, Alarm::Fork { .. }), "{alarm}");
    assert!(alarm.to_string().contains("security contact"), "{alarm}");
}
