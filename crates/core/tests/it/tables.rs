//! The table rules, driven through the in-memory reference tables.

use imprint_core::*;
use wasm_bindgen_test::wasm_bindgen_test;

pub struct World {
    pub t: Tables,
    pub rng: rand_chacha::ChaCha20Rng,
    pub factory: FactoryId,
    pub other_factory: FactoryId,
    pub product: ProductCode,
}

pub fn k(n: u32) -> KeyId {
    KeyId::new(n).unwrap()
}

pub fn key_bytes(n: u32) -> PreWriteKey {
    PreWriteKey::from_array([n as u8; 32])
}

/// Keys 1 and 2, product CAM mapped to key 1, `entries` entries under key 1 and a quota.
pub fn world(entries: u32, quota: u64) -> World {
    let mut t = Tables::default();
    t.keys.insert(k(1), key_bytes(1)).unwrap();
    t.keys.insert(k(2), key_bytes(2)).unwrap();
    let mut rng = crate::rng(10);
    let product = ProductCode::new("CAM").unwrap();
    t.map_product(&mut rng, product, k(1)).unwrap();
    for i in 0..entries {
        let id = ApparatusId::new(&format!("ID-{i:05}")).unwrap();
        t.add_auth_info(id, PassPhrase::generate(&mut rng), k(1))
            .unwrap();
    }
    let factory = FactoryId::new("factory-a").unwrap();
    let other_factory = FactoryId::new("factory-b").unwrap();
    t.quotas.insert(
        (factory, product),
        Quota {
            limit: quota,
            used: 0,
        },
    );
    t.quotas.insert(
        (other_factory, product),
        Quota {
            limit: quota,
            used: 0,
        },
    );
    World {
        t,
        rng,
        factory,
        other_factory,
        product,
    }
}

/// What a write module does: open with its key, compute the receipt for its serial.
pub fn device_receipt(rec: &FactoryRecord, key: &PreWriteKey, serial: &ProductSerial) -> Receipt {
    let opened = rec.sealed.open(key, &rec.apparatus_id, None).unwrap();
    let cv = conversion_value(&opened.apparatus_id, &opened.pass_phrase);
    Receipt::compute(
        &cv,
        &ReceiptInput {
            apparatus_id: &rec.apparatus_id,
            product_serial: serial,
            issue_nonce: &opened.issue_nonce,
            record_digest: &rec.sealed.digest(),
        },
    )
}

fn serial(s: &str) -> ProductSerial {
    ProductSerial::new(s).unwrap()
}

#[wasm_bindgen_test(unsupported = test)]
fn issue_respects_key_and_quota() {
    let mut w = world(10, 5);
    let recs = w.t.issue(&mut w.rng, w.factory, w.product, 3).unwrap();
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter()
            .all(|r| r.key_id() == k(1) && r.product_serial.is_none())
    );
    assert_eq!(
        w.t.issue(&mut w.rng, w.factory, w.product, 3).unwrap_err(),
        TableError::OverQuota {
            requested: 3,
            remaining: 2
        }
    );
    assert_eq!(
        w.t.issue(&mut w.rng, w.factory, w.product, 0).unwrap_err(),
        TableError::NothingRequested
    );
    let unknown = ProductCode::new("NOPE").unwrap();
    assert!(matches!(
        w.t.issue(&mut w.rng, w.factory, unknown, 1),
        Err(TableError::UnknownProduct(_))
    ));
    // The other factory has quota but only 7 entries are left.
    let err =
        w.t.issue(&mut w.rng, w.other_factory, w.product, 8)
            .unwrap_err();
    assert!(matches!(err, TableError::OverQuota { .. }));
    let mut w = world(4, 100);
    let err = w.t.issue(&mut w.rng, w.factory, w.product, 5).unwrap_err();
    assert_eq!(
        err,
        TableError::NotEnoughEntries {
            requested: 5,
            available: 4,
            key_id: k(1)
        }
    );
    assert!(err.to_string().contains("generate or import more"));
}

#[wasm_bindgen_test(unsupported = test)]
fn report_is_exactly_once_and_needs_a_real_receipt() {
    let mut w = world(3, 10);
    let recs = w.t.issue(&mut w.rng, w.factory, w.product, 2).unwrap();
    let (r0, r1) = (&recs[0], &recs[1]);
    let sn1 = serial("SN-1");
    let receipt = device_receipt(r0, &key_bytes(1), &sn1);
    let report = InstallReport {
        factory: w.factory,
        apparatus_id: r0.apparatus_id,
        product_serial: sn1,
        receipt,
    };

    // Forged receipt: refused, nothing recorded.
    let forged = InstallReport {
        receipt: Receipt([0; 32]),
        ..report
    };
    assert_eq!(
        w.t.report(&forged).unwrap_err(),
        TableError::BadReceipt(r0.apparatus_id)
    );
    assert!(w.t.installed.is_empty());
    // A receipt for another serial does not transfer.
    let moved = InstallReport {
        product_serial: serial("SN-9"),
        ..report
    };
    assert!(matches!(w.t.report(&moved), Err(TableError::BadReceipt(_))));

    assert_eq!(w.t.report(&report).unwrap(), InstallDecision::Record);
    assert_eq!(
        w.t.report(&report).unwrap(),
        InstallDecision::AlreadyRecorded
    );
    assert_eq!(w.t.installed.len(), 1);
    assert_eq!(
        w.t.factory_records[&r0.apparatus_id].product_serial,
        Some(sn1)
    );

    // The same serial cannot take a second identity.
    let receipt1 = device_receipt(r1, &key_bytes(1), &sn1);
    let second = InstallReport {
        factory: w.factory,
        apparatus_id: r1.apparatus_id,
        product_serial: sn1,
        receipt: receipt1,
    };
    assert!(matches!(
        w.t.report(&second),
        Err(TableError::SerialTaken { .. })
    ));
    // The same identity cannot go into a second unit.
    let sn2 = serial("SN-2");
    let again = InstallReport {
        product_serial: sn2,
        receipt: device_receipt(r0, &key_bytes(1), &sn2),
        ..report
    };
    assert!(matches!(
        w.t.report(&again),
        Err(TableError::AlreadyInstalled { .. })
    ));
    assert_eq!(w.t.installed.len(), 1);
}

#[wasm_bindgen_test(unsupported = test)]
fn factories_see_only_their_own_records() {
    let mut w = world(3, 10);
    let recs = w.t.issue(&mut w.rng, w.factory, w.product, 1).unwrap();
    let sn = serial("SN-1");
    let receipt = device_receipt(&recs[0], &key_bytes(1), &sn);
    let report = InstallReport {
        factory: w.other_factory,
        apparatus_id: recs[0].apparatus_id,
        product_serial: sn,
        receipt,
    };
    assert!(matches!(
        w.t.report(&report),
        Err(TableError::NotYourRecord(_))
    ));
    assert!(matches!(
        w.t.release(&w.other_factory.clone(), &recs[0].apparatus_id),
        Err(TableError::NotYourRecord(_))
    ));
    let unissued = ApparatusId::new("ID-00002").unwrap();
    let report = InstallReport {
        apparatus_id: unissued,
        factory: w.factory,
        ..report
    };
    assert!(matches!(w.t.report(&report), Err(TableError::NotIssued(_))));
}

#[wasm_bindgen_test(unsupported = test)]
fn released_records_return_to_the_pool_with_their_quota() {
    let mut w = world(2, 2);
    let recs = w.t.issue(&mut w.rng, w.factory, w.product, 2).unwrap();
    w.t.release(&w.factory.clone(), &recs[0].apparatus_id)
        .unwrap();
    assert!(
        w.t.release(&w.factory.clone(), &recs[0].apparatus_id)
            .is_err()
    );
    let again = w.t.issue(&mut w.rng, w.factory, w.product, 1).unwrap();
    assert_eq!(again[0].apparatus_id, recs[0].apparatus_id);
    assert_ne!(
        again[0].sealed, recs[0].sealed,
        "re-issued records are sealed afresh"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn remap_reseals_issued_records_under_the_new_key() {
    let mut w = world(3, 10);
    let recs = w.t.issue(&mut w.rng, w.factory, w.product, 2).unwrap();
    assert_eq!(
        w.t.map_product(&mut w.rng, w.product, k(1)).unwrap_err(),
        TableError::SameKey(k(1))
    );
    assert_eq!(
        w.t.map_product(&mut w.rng, w.product, k(9)).unwrap_err(),
        TableError::UnknownKeyId(k(9))
    );
    assert_eq!(w.t.map_product(&mut w.rng, w.product, k(2)).unwrap(), 2);
    assert_eq!(w.t.products.key_of(&w.product), Some(k(2)));
    let resealed = &w.t.factory_records[&recs[0].apparatus_id];
    assert_eq!(resealed.key_id(), k(2));
    assert!(
        resealed
            .sealed
            .open(&key_bytes(1), &recs[0].apparatus_id, None)
            .is_err()
    );
    // A device with the new key installs the re-sealed record and the report is accepted.
    let sn = serial("SN-7");
    let receipt = device_receipt(&resealed.clone(), &key_bytes(2), &sn);
    let report = InstallReport {
        factory: w.factory,
        apparatus_id: recs[0].apparatus_id,
        product_serial: sn,
        receipt,
    };
    assert_eq!(w.t.report(&report).unwrap(), InstallDecision::Record);
    // Unissued entries stay on key 1, so the product (now key 2) has none to issue.
    assert!(matches!(
        w.t.issue(&mut w.rng, w.factory, w.product, 1),
        Err(TableError::NotEnoughEntries { available: 0, .. })
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn auth_info_needs_a_known_key_and_a_unique_id() {
    let mut w = world(1, 1);
    let id = ApparatusId::new("ID-00000").unwrap();
    let p = PassPhrase::generate(&mut w.rng);
    assert_eq!(
        w.t.add_auth_info(id, p.clone(), k(1)).unwrap_err(),
        TableError::DuplicateApparatusId(id)
    );
    let fresh = ApparatusId::new("NEW").unwrap();
    assert_eq!(
        w.t.add_auth_info(fresh, p, k(5)).unwrap_err(),
        TableError::UnknownKeyId(k(5))
    );
    assert_eq!(
        w.t.keys.insert(k(1), key_bytes(3)).unwrap_err(),
        TableError::DuplicateKeyId(k(1))
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn field_authentication_uses_the_conversion_value() {
    let mut w = world(1, 1);
    let recs = w.t.issue(&mut w.rng, w.factory, w.product, 1).unwrap();
    let opened = recs[0]
        .sealed
        .open(&key_bytes(1), &recs[0].apparatus_id, None)
        .unwrap();
    let sn = serial("SN-1");
    let report = InstallReport {
        factory: w.factory,
        apparatus_id: recs[0].apparatus_id,
        product_serial: sn,
        receipt: device_receipt(&recs[0], &key_bytes(1), &sn),
    };
    w.t.report(&report).unwrap();
    let stored = &w.t.installed[&recs[0].apparatus_id];
    let challenge = Challenge::generate(&mut w.rng);
    let device_cv = conversion_value(&opened.apparatus_id, &opened.pass_phrase);
    let answer = AuthResponse::compute(&device_cv, &opened.apparatus_id, &challenge);
    answer
        .verify(&stored.conversion, &stored.apparatus_id, &challenge)
        .unwrap();
    let other = Challenge::generate(&mut w.rng);
    assert_eq!(
        answer.verify(&stored.conversion, &stored.apparatus_id, &other),
        Err(MacMismatch)
    );
    let wrong_cv = conversion_value(&stored.apparatus_id, &PassPhrase::generate(&mut w.rng));
    assert!(
        AuthResponse::compute(&wrong_cv, &stored.apparatus_id, &challenge)
            .verify(&stored.conversion, &stored.apparatus_id, &challenge)
            .is_err()
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn a_lock_is_recorded_once_for_the_unit_and_factory_that_installed_it() {
    let id = ApparatusId::new("IMP-1").unwrap();
    let ours = FactoryId::new("acme").unwrap();
    let theirs = FactoryId::new("contoso").unwrap();
    let unit = serial("SN-1");
    let other_unit = serial("SN-2");
    let installed = |locked| {
        Some(InstalledUnit {
            factory: &ours,
            product_serial: &unit,
            locked,
        })
    };
    assert_eq!(
        decide_lock(&id, true, installed(false), &ours, &unit),
        Ok(InstallDecision::Record)
    );
    assert_eq!(
        decide_lock(&id, true, installed(true), &ours, &unit),
        Ok(InstallDecision::AlreadyRecorded)
    );
    assert_eq!(
        decide_lock(&id, true, installed(false), &theirs, &unit),
        Err(TableError::NotYourRecord(id))
    );
    let not_installed = Err(TableError::NotInstalled {
        apparatus_id: id,
        product_serial: other_unit,
    });
    assert_eq!(
        decide_lock(&id, true, installed(false), &ours, &other_unit),
        not_installed
    );
    assert_eq!(
        decide_lock(&id, true, None, &ours, &other_unit),
        not_installed
    );
    assert_eq!(
        decide_lock(&id, false, None, &ours, &unit),
        Err(TableError::UnknownApparatus(id))
    );
    assert!(
        TableError::NotInstalled {
            apparatus_id: id,
            product_serial: unit
        }
        .to_string()
        .contains("report the installation before the lock")
    );
}
