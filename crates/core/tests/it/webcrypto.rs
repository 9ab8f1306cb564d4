//! imprint-core's AES-GCM beside the browser's own (WebCrypto, in Chromium): a record sealed by
//! one opens with the other, both ways, which checks our sealing against an independent
//! AES-GCM. And, ignored unless asked (`cargo xtask bench-portal`), how fast each seals and
//! opens in the same page; the figures go to docs/benchmarks.md.

use imprint_core::*;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};
use web_sys::CryptoKey;

const KEY: [u8; 32] = [0x42; 32];

fn subtle() -> web_sys::SubtleCrypto {
    web_sys::window().unwrap().crypto().unwrap().subtle()
}

fn now() -> f64 {
    web_sys::window().unwrap().performance().unwrap().now()
}

async fn import(key: &[u8; 32]) -> CryptoKey {
    let usages = Array::of2(&"encrypt".into(), &"decrypt".into());
    let p = subtle()
        .import_key_with_str(
            "raw",
            &Uint8Array::from(&key[..]),
            "AES-GCM",
            false,
            &usages,
        )
        .unwrap();
    JsFuture::from(p).await.unwrap().unchecked_into()
}

fn params(iv: &[u8], aad: &[u8]) -> Object {
    let o = Object::new();
    for (k, v) in [
        ("name", JsValue::from("AES-GCM")),
        ("iv", Uint8Array::from(iv).into()),
        ("additionalData", Uint8Array::from(aad).into()),
        ("tagLength", 128.into()),
    ] {
        Reflect::set(&o, &k.into(), &v).unwrap();
    }
    o
}

fn bytes_of(v: JsValue) -> Vec<u8> {
    Uint8Array::new(&v).to_vec()
}

async fn decrypt(key: &CryptoKey, iv: &[u8], aad: &[u8], data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let p = subtle().decrypt_with_object_and_u8_array(&params(iv, aad), key, data)?;
    Ok(bytes_of(JsFuture::from(p).await?))
}

async fn encrypt(key: &CryptoKey, iv: &[u8], aad: &[u8], data: &[u8]) -> Vec<u8> {
    let p = subtle()
        .encrypt_with_object_and_u8_array(&params(iv, aad), key, data)
        .unwrap();
    bytes_of(JsFuture::from(p).await.unwrap())
}

/// The AAD of a v1 record (docs/protocol.md): header, then the clear apparatus ID.
fn aad(blob: &[u8], id: &ApparatusId) -> Vec<u8> {
    let mut a = blob[..6].to_vec();
    a.push(id.as_bytes().len() as u8);
    a.extend_from_slice(id.as_bytes());
    a
}

fn fixture() -> (PreWriteKey, KeyId, ApparatusId, PassPhrase) {
    (
        PreWriteKey::from_array(KEY),
        KeyId::new(1).unwrap(),
        ApparatusId::new("IMP-000708").unwrap(),
        PassPhrase::new("correct-horse-battery-staple-0123").unwrap(),
    )
}

#[wasm_bindgen_test]
async fn webcrypto_opens_what_core_seals_and_core_opens_what_webcrypto_seals() {
    let (key, kid, id, pass) = fixture();
    let wc = import(&KEY).await;
    let sealed = SealedRecord::seal(&mut crate::rng(5), &key, kid, &Binding::Model, &id, &pass);
    let blob = sealed.as_bytes();
    let plain = decrypt(&wc, &blob[6..18], &aad(blob, &id), &blob[18..])
        .await
        .unwrap();
    // id_len | id | pp_len | pass phrase | issue nonce (16)
    let mut expect = vec![id.as_bytes().len() as u8];
    expect.extend_from_slice(id.as_bytes());
    expect.push(pass.expose_secret().len() as u8);
    expect.extend_from_slice(pass.expose_secret());
    assert_eq!(&plain[..expect.len()], &expect[..]);
    assert_eq!(plain.len(), expect.len() + 16);

    // A flipped bit, or the blob under another clear ID: WebCrypto refuses it too.
    let mut bad = blob.to_vec();
    bad[20] ^= 1;
    assert!(
        decrypt(&wc, &bad[6..18], &aad(&bad, &id), &bad[18..])
            .await
            .is_err()
    );
    let other = ApparatusId::new("IMP-000709").unwrap();
    assert!(
        decrypt(&wc, &blob[6..18], &aad(blob, &other), &blob[18..])
            .await
            .is_err()
    );

    // The other way: WebCrypto seals, imprint-core opens.
    let iv = [7u8; 12];
    let mut ours = blob[..6].to_vec();
    ours.extend_from_slice(&iv);
    ours.extend_from_slice(&encrypt(&wc, &iv, &aad(blob, &id), &plain).await);
    let opened = SealedRecord::parse(&ours)
        .unwrap()
        .open(&key, &id, None)
        .unwrap();
    assert_eq!(opened.pass_phrase.expose_secret(), pass.expose_secret());
    assert_eq!(opened.issue_nonce[..], plain[plain.len() - 16..]);
}

/// Microseconds per operation over `n`.
fn per_op(start: f64, n: usize) -> f64 {
    (now() - start) * 1000.0 / n as f64
}

#[wasm_bindgen_test]
#[ignore = "benchmark: run by `cargo xtask bench-portal` (release build)"]
async fn bench_seal_open_in_wasm_against_webcrypto() {
    const N: usize = 5_000;
    let (key, kid, id, pass) = fixture();
    let mut rng = crate::rng(6);
    let wc = import(&KEY).await;

    let t = now();
    let sealed: Vec<SealedRecord> = (0..N)
        .map(|_| SealedRecord::seal(&mut rng, &key, kid, &Binding::Model, &id, &pass))
        .collect();
    let core_seal = per_op(t, N);
    let t = now();
    for s in &sealed {
        assert!(s.open(&key, &id, None).is_ok());
    }
    let core_open = per_op(t, N);

    let blob = sealed[0].as_bytes();
    let a = aad(blob, &id);
    let plain = decrypt(&wc, &blob[6..18], &a, &blob[18..]).await.unwrap();
    let t = now();
    let mut ivs = Vec::with_capacity(N);
    for i in 0..N {
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&(i as u64).to_be_bytes());
        ivs.push((iv, encrypt(&wc, &iv, &a, &plain).await));
    }
    let wc_seal = per_op(t, N);
    let t = now();
    for (iv, ct) in &ivs {
        assert!(decrypt(&wc, iv, &a, ct).await.is_ok());
    }
    let wc_open = per_op(t, N);
    // WebCrypto's promises can also be issued all at once and awaited together.
    let t = now();
    let all = Array::new();
    for (iv, ct) in &ivs {
        all.push(
            &subtle()
                .decrypt_with_object_and_u8_array(&params(iv, &a), &wc, ct)
                .unwrap(),
        );
    }
    JsFuture::from(js_sys::Promise::all(&all)).await.unwrap();
    let wc_open_all = per_op(t, N);

    console_log!(
        "seal/open of a {}-byte record, {N} each, same page:",
        blob.len()
    );
    console_log!("  imprint-core (wasm)  seal {core_seal:.2} us  open {core_open:.2} us");
    console_log!("  WebCrypto, awaited   seal {wc_seal:.2} us  open {wc_open:.2} us");
    console_log!("  WebCrypto, all at once          open {wc_open_all:.2} us");
}
