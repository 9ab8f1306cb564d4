//! One device through the whole Imprint flow, in-process, with imprint-core alone:
//! keys (700), product codes (500), authentication information (702), issue to a factory
//! (708), install in a write module, receipt, report (704), field authentication, and the
//! attacks the design stops. Run: `cargo xtask run`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use imprint_core::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    // The operating system's randomness; core itself never reaches for it.
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let mut t = Tables::default();

    println!("1. Management server: keys (700) and product codes (500)");
    let k1 = KeyId::new(1).unwrap();
    let model_key = PreWriteKey::generate(&mut rng);
    t.keys.insert(k1, model_key.clone()).unwrap();
    let product = ProductCode::new("CAM-X100").unwrap();
    t.map_product(&mut rng, product, k1).unwrap();
    println!("   key {k1} = {model_key:?}; product {product} -> key {k1}");

    println!("2. Authentication information (702): 5 generated entries");
    for i in 0..5 {
        let id = ApparatusId::new(&format!("IMP-{i:010}")).unwrap();
        t.add_auth_info(id, PassPhrase::generate(&mut rng), k1)
            .unwrap();
    }

    println!("3. Issue 2 records to factory 'acme-sz' (quota 3): table 708 rows");
    let factory = FactoryId::new("acme-sz").unwrap();
    t.quotas
        .insert((factory, product), Quota { limit: 3, used: 0 });
    let records = t.issue(&mut rng, factory, product, 2).unwrap();
    for r in &records {
        println!(
            "   {}  key {}  sealed {}… ({} bytes)",
            r.apparatus_id,
            r.key_id(),
            &hex(r.sealed.as_bytes())[..32],
            r.sealed.as_bytes().len()
        );
    }
    match t.issue(&mut rng, factory, product, 2) {
        Err(e) => println!("   asking for 2 more: refused: {e}"),
        Ok(_) => unreachable!(),
    }

    println!("4. Station -> device over the wire protocol");
    let rec = &records[0];
    let serial = ProductSerial::new("SN-000123").unwrap();
    let install = Request::Install {
        apparatus_id: rec.apparatus_id,
        record: rec.sealed.clone(),
    };
    let frame = install.encode(1);
    println!(
        "   install frame: {} bytes: {}…",
        frame.len(),
        &hex(&frame)[..40]
    );
    // The write module: decode, open with its built-in key, store, answer with a receipt.
    let (
        _,
        Request::Install {
            apparatus_id,
            record,
        },
    ) = Request::decode(&frame).unwrap()
    else {
        unreachable!()
    };
    let opened = record.open(&model_key, &apparatus_id, None).unwrap();
    let cv = conversion_value(&opened.apparatus_id, &opened.pass_phrase);
    let receipt = Receipt::compute(
        &cv,
        &ReceiptInput {
            apparatus_id: &apparatus_id,
            product_serial: &serial,
            issue_nonce: &opened.issue_nonce,
            record_digest: &record.digest(),
        },
    );
    println!(
        "   device stored {} ({:?}); receipt {}",
        opened.apparatus_id,
        opened.pass_phrase,
        hex(&receipt.0)
    );

    println!("5. Report to the server (704)");
    let report = InstallReport {
        factory,
        apparatus_id: rec.apparatus_id,
        product_serial: serial,
        receipt,
    };
    println!("   first report: {:?}", t.report(&report).unwrap());
    println!("   same report again: {:?}", t.report(&report).unwrap());
    let forged = InstallReport {
        apparatus_id: records[1].apparatus_id,
        product_serial: ProductSerial::new("SN-000124").unwrap(),
        receipt: Receipt([0; 32]),
        ..report
    };
    println!(
        "   forged completion for {}: {}",
        records[1].apparatus_id,
        t.report(&forged).unwrap_err()
    );

    println!("6. Field authentication against the conversion value in 704");
    let stored = &t.installed[&rec.apparatus_id];
    let challenge = Challenge::generate(&mut rng);
    let answer = AuthResponse::compute(&cv, &rec.apparatus_id, &challenge);
    println!(
        "   challenge {}…  answer ok: {}",
        &hex(&challenge.0)[..16],
        answer
            .verify(&stored.conversion, &stored.apparatus_id, &challenge)
            .is_ok()
    );

    println!("7. What a factory cannot do");
    let other = ApparatusId::new("IMP-9999999999").unwrap();
    println!(
        "   move a record to another ID: {}",
        rec.sealed.open(&model_key, &other, None).unwrap_err()
    );
    let mut bytes = rec.sealed.as_bytes().to_vec();
    bytes[20] ^= 1;
    let tampered = SealedRecord::parse(&bytes).unwrap();
    println!(
        "   flip one bit: {}",
        tampered
            .open(&model_key, &rec.apparatus_id, None)
            .unwrap_err()
    );
    println!(
        "   open without the pre-write key: {}",
        rec.sealed
            .open(&PreWriteKey::generate(&mut rng), &rec.apparatus_id, None)
            .unwrap_err()
    );
    println!(
        "\nThe server (HTTP API, SQLite), the browser portal and simulated USB devices come next."
    );
}
