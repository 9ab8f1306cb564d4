//! Seal and open of one sealed record (the per-record cost of issuing at the server and of
//! installing in a write module). Run: `cargo xtask bench` (also prints `openssl speed` for
//! the same machine, so the ratio can be recorded in docs/benchmarks.md).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imprint_core::*;
use rand_core::SeedableRng;

fn bench(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
    let key = PreWriteKey::generate(&mut rng);
    let kid = KeyId::new(1).unwrap();
    let id = ApparatusId::new("IMP-0000000042").unwrap();
    let pass = PassPhrase::generate(&mut rng);
    let sealed = SealedRecord::seal(&mut rng, &key, kid, &Binding::Model, &id, &pass);

    let mut g = c.benchmark_group("sealed_record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal", |b| {
        b.iter(|| SealedRecord::seal(&mut rng, black_box(&key), kid, &Binding::Model, &id, &pass))
    });
    g.bench_function("open", |b| {
        b.iter(|| black_box(&sealed).open(&key, &id, None).unwrap())
    });
    let chip = ChipId::from_bytes(&[1; 12]).unwrap();
    let bound = SealedRecord::seal(&mut rng, &key, kid, &Binding::Chip(chip), &id, &pass);
    g.bench_function("open_chip_bound", |b| {
        b.iter(|| black_box(&bound).open(&key, &id, Some(&chip)).unwrap())
    });
    g.bench_function("receipt_and_conversion_value", |b| {
        b.iter(|| {
            let cv = conversion_value(&id, black_box(&pass));
            Receipt::compute(
                &cv,
                &ReceiptInput {
                    apparatus_id: &id,
                    product_serial: &ProductSerial::new("SN-1").unwrap(),
                    issue_nonce: &[0; 16],
                    record_digest: &[0; 32],
                },
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
