//! Property tests (native only: proptest needs the OS). The deterministic totality test in
//! `protocol.rs` runs in the browser too.

use std::collections::BTreeSet;

use imprint_core::*;
use proptest::prelude::*;

use crate::tables::{device_receipt, k, key_bytes, world};

#[derive(Debug, Clone)]
enum Op {
    Issue {
        factory: bool,
        n: u64,
    },
    Report {
        pick: usize,
        serial: u8,
        factory: bool,
        forge: bool,
    },
    Release {
        pick: usize,
        factory: bool,
    },
    Remap {
        key: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 0u64..5).prop_map(|(factory, n)| Op::Issue { factory, n }),
        (any::<usize>(), 0u8..6, any::<bool>(), any::<bool>()).prop_map(
            |(pick, serial, factory, forge)| Op::Report {
                pick,
                serial,
                factory,
                forge
            }
        ),
        (any::<usize>(), any::<bool>()).prop_map(|(pick, factory)| Op::Release { pick, factory }),
        (1u32..4).prop_map(|key| Op::Remap { key }),
    ]
}

fn check_invariants(t: &Tables) {
    // 704: one identity per serial, and each row matches its 702 entry.
    let serials: BTreeSet<_> = t.installed.values().map(|d| d.product_serial).collect();
    assert_eq!(
        serials.len(),
        t.installed.len(),
        "a serial holds two identities"
    );
    for d in t.installed.values() {
        assert_eq!(
            t.auth[&d.apparatus_id].state,
            EntryState::Installed {
                product_serial: d.product_serial
            }
        );
    }
    let installed_entries = t
        .auth
        .values()
        .filter(|e| matches!(e.state, EntryState::Installed { .. }))
        .count();
    assert_eq!(installed_entries, t.installed.len());
    // 708: exactly the issued and installed entries have a record, under the entry's key.
    for e in t.auth.values() {
        match &e.state {
            EntryState::Unissued => assert!(!t.factory_records.contains_key(&e.apparatus_id)),
            EntryState::Issued { product, .. } => {
                let r = &t.factory_records[&e.apparatus_id];
                assert_eq!(r.key_id(), e.key_id);
                assert_eq!(Some(e.key_id), t.products.key_of(product));
                assert!(r.product_serial.is_none());
            }
            EntryState::Installed { product_serial } => {
                assert_eq!(
                    t.factory_records[&e.apparatus_id].product_serial,
                    Some(*product_serial)
                );
            }
        }
    }
    for q in t.quotas.values() {
        assert!(q.used <= q.limit, "quota exceeded");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn table_rules_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = world(12, 8);
        // Entries under key 2 as well, so remapping to 2 leaves something to issue.
        for i in 0..6 {
            let id = ApparatusId::new(&format!("K2-{i}")).unwrap();
            w.t.add_auth_info(id, PassPhrase::generate(&mut w.rng), k(2)).unwrap();
        }
        w.t.keys.insert(k(3), key_bytes(3)).unwrap();
        let mut seen: Vec<FactoryRecord> = Vec::new();
        for op in ops {
            let before = w.t.installed.len();
            match op {
                Op::Issue { factory, n } => {
                    let f = if factory { w.other_factory } else { w.factory };
                    if let Ok(recs) = w.t.issue(&mut w.rng, f, w.product, n) {
                        prop_assert_eq!(recs.len() as u64, n);
                        seen.extend(recs);
                    }
                }
                Op::Report { pick, serial, factory, forge } => {
                    if seen.is_empty() { continue; }
                    let id = seen[pick % seen.len()].apparatus_id;
                    let rec = w.t.factory_records.get(&id).cloned().unwrap_or_else(|| seen[pick % seen.len()].clone());
                    let sn = ProductSerial::new(&format!("SN-{serial}")).unwrap();
                    let receipt = if forge {
                        Receipt([serial; 32])
                    } else {
                        // The device holds whichever key the record is sealed under.
                        match rec.sealed.open(&key_bytes(rec.key_id().get()), &id, None) {
                            Ok(_) => device_receipt(&rec, &key_bytes(rec.key_id().get()), &sn),
                            Err(_) => Receipt([0; 32]),
                        }
                    };
                    let f = if factory { w.other_factory } else { w.factory };
                    let res = w.t.report(&InstallReport { factory: f, apparatus_id: id, product_serial: sn, receipt });
                    if forge {
                        prop_assert!(res.is_err());
                        prop_assert_eq!(w.t.installed.len(), before);
                    }
                    if let Ok(InstallDecision::AlreadyRecorded) = res {
                        prop_assert_eq!(w.t.installed.len(), before);
                    }
                }
                Op::Release { pick, factory } => {
                    if seen.is_empty() { continue; }
                    let f = if factory { w.other_factory } else { w.factory };
                    let _ = w.t.release(&f, &seen[pick % seen.len()].apparatus_id);
                    prop_assert_eq!(w.t.installed.len(), before);
                }
                Op::Remap { key } => {
                    let _ = w.t.map_product(&mut w.rng, w.product, k(key));
                }
            }
            prop_assert!(w.t.installed.len() >= before, "an installation was lost");
            check_invariants(&w.t);
        }
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = Request::decode(&bytes);
        let _ = Reply::decode(&bytes);
        let _ = DeviceInfo::decode(&bytes);
        let _ = SealedRecord::parse(&bytes);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn valid_identifiers_round_trip(s in "[A-Za-z0-9._-]{1,32}", kid in 1u32.., seq in any::<u8>()) {
        let id = ApparatusId::new(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        let req = Request::Lock { apparatus_id: id };
        prop_assert_eq!(Request::decode(&req.encode(seq)).unwrap(), (seq, req));
        prop_assert_eq!(KeyId::new(kid).unwrap().to_string().parse::<KeyId>().unwrap().get(), kid);
    }

    #[test]
    fn seal_open_round_trips(id in "[A-Z0-9-]{1,32}", pass in "[!-~]{16,64}", seed in any::<u8>()) {
        let id = ApparatusId::new(&id).unwrap();
        let pass = PassPhrase::new(&pass).unwrap();
        let key = PreWriteKey::from_array([seed; 32]);
        let r = SealedRecord::seal(&mut crate::rng(seed), &key, k(1), &Binding::Model, &id, &pass);
        let parsed = SealedRecord::parse(r.as_bytes()).unwrap();
        let o = parsed.open(&key, &id, None).unwrap();
        prop_assert_eq!(o.pass_phrase.expose_secret(), pass.expose_secret());
    }
}
