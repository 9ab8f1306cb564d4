//! Keys in a PKCS#11 token (SoftHSM2 on the token run of the suite, `IMPRINT_TEST_PKCS11`):
//! the token never gives a key out, the database and the data folder hold none, and a server
//! started with other keys than its database's stops with a message.

use imprint_server::custody::{LABEL_AT_REST, LABEL_LEASE, LABEL_LOG, LABEL_TAGS};
use sqlx::Row;

use crate::Env;
use crate::process::Site;

fn skip_without_token() -> bool {
    if !crate::on_token() {
        eprintln!("runs on the token run of the suite (IMPRINT_TEST_PKCS11)");
        return true;
    }
    false
}

#[tokio::test]
async fn no_key_in_the_token_gives_out_its_value_and_the_rows_hold_only_labels() {
    if skip_without_token() {
        return;
    }
    let env = Env::new(3, 10).await;
    let custody = &env.state.custody;
    let token = custody.token().expect("token custody on the token run");
    let rows = sqlx::query("SELECT key_id, key_sealed, token_label FROM pre_write_keys")
        .fetch_all(env.state.store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let mut handles = Vec::new();
    for r in &rows {
        let sealed: Vec<u8> = r.get("key_sealed");
        assert!(sealed.is_empty(), "a token key's row holds no key bytes");
        let label: String = r.get("token_label");
        handles.push((
            label.clone(),
            token.find(&label).unwrap().expect("in the token"),
        ));
    }
    for label in [LABEL_AT_REST, LABEL_TAGS] {
        handles.push((label.to_string(), token.find(label).unwrap().unwrap()));
    }
    for label in [LABEL_LEASE, LABEL_LOG] {
        handles.push((
            label.to_string(),
            token.find_ed25519(label).unwrap().unwrap(),
        ));
    }
    for (label, h) in &handles {
        assert!(
            !token.reveals_value(*h).unwrap(),
            "the token gave out the value (CKA_VALUE) of {label}"
        );
    }
    // Nor may an AES key be used with AES-ECB, which would give GCM's keystream and a v2 chip
    // key in clear (CKA_ALLOWED_MECHANISMS).
    for (label, h) in handles.iter().take(3) {
        assert!(
            !token.allows_ecb(*h).unwrap(),
            "{label} encrypts with AES-ECB"
        );
    }
    // A record sealed in the token opens on a device of the model (the demo key's device).
    let recs = env.issue(&env.tech, 1).await;
    let mut dev = imprint_device::sim::SimDevice::demo(1);
    let (receipt, serial) = crate::install(&mut dev, &recs[0]);
    let out = env
        .report(
            &env.tech,
            recs[0]["apparatus_id"].as_str().unwrap(),
            &serial,
            &receipt,
        )
        .await;
    assert_eq!(out.1["status"], "recorded", "{:?}", out);
    assert!(!env.dir.join("kek.key").exists());
}

#[tokio::test]
async fn an_empty_aad_is_refused_before_it_reaches_the_token() {
    if skip_without_token() {
        return;
    }
    let env = Env::new(0, 10).await;
    let token = env.state.custody.token().unwrap();
    let key = token.find(LABEL_AT_REST).unwrap().unwrap();
    let mut buf = *b"sixteen bytes!!!";
    // SoftHSM2 2.6.1 crashes the process on an empty AAD: reaching this line is the test.
    let err = token.gcm_encrypt(key, &[7; 12], b"", &mut buf).unwrap_err();
    assert!(err.to_string().contains("empty AAD"), "{err}");
    assert!(token.gcm_decrypt(key, &[7; 12], b"", &[0; 32]).is_err());
    // With an AAD it works, and a tampered tag does not open.
    let tag = token.gcm_encrypt(key, &[7; 12], b"ctx", &mut buf).unwrap();
    let mut sealed = buf.to_vec();
    sealed.extend_from_slice(&tag);
    let plain = token.gcm_decrypt(key, &[7; 12], b"ctx", &sealed).unwrap();
    assert_eq!(plain.unwrap().as_slice(), b"sixteen bytes!!!");
    *sealed.last_mut().unwrap() ^= 1;
    assert!(
        token
            .gcm_decrypt(key, &[7; 12], b"ctx", &sealed)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_copied_data_folder_of_a_token_server_reveals_no_key_and_no_pass_phrase() {
    if skip_without_token() || crate::on_postgres() {
        return;
    }
    let site = Site::new("hsm-folder", None);
    site.set_up(20, "H-");
    let csv = site.dir.join("entries.csv");
    std::fs::write(&csv, "H-CSV-1,HSM-SECRET-PASS-PHRASE-1,1\n").unwrap();
    site.run(&["import", csv.to_str().unwrap()]);
    std::fs::remove_file(&csv).unwrap();
    site.run(&["keys", "add", "2"]);
    // A wrapped key that is not one: refused with what to do, nothing added.
    let junk = site.dir.join("junk.wrapped");
    std::fs::write(&junk, [0x42u8; 384]).unwrap();
    let out = site
        .cmd()
        .args(["keys", "import", "3", "--wrapped"])
        .arg(&junk)
        .args(["--check", "000000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("could not unwrap") && e.contains("RSA-OAEP"),
        "{e}"
    );
    std::fs::remove_file(&junk).unwrap();
    // A real wrapped key with a wrong check value: refused too, and not left in the token.
    let e = site
        .import_wrapped_checked("3", &[0x33u8; 32], Some("abcdef"))
        .unwrap_err();
    assert!(e.contains("check value differs"), "{e}");
    assert_eq!(site.run(&["keys", "list"]).trim(), "1\n2");
    // The whole folder, as a backup or a thief would take it.
    let mut bytes = Vec::new();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&site.dir).unwrap() {
        let e = e.unwrap();
        names.push(e.file_name().to_string_lossy().to_string());
        bytes.extend(std::fs::read(e.path()).unwrap());
    }
    assert!(!names.iter().any(|n| n == "kek.key"), "{names:?}");
    assert!(
        bytes.windows(7).any(|w| w == b"H-CSV-1"),
        "the folder holds the database"
    );
    let key1 = imprint_device::sim::demo_key(imprint_core::KeyId::new(1).unwrap());
    assert!(
        !bytes.windows(32).any(|w| w == key1.expose_secret()),
        "a key in the folder"
    );
    let pass = b"HSM-SECRET-PASS-PHRASE-1";
    assert!(
        !bytes.windows(pass.len()).any(|w| w == pass),
        "a pass phrase in the folder"
    );
    // The copy without the token: no server starts on it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imprint"))
        .arg("--data-dir")
        .arg(&site.dir)
        .args(["keys", "list"])
        .env_remove("IMPRINT_PKCS11_MODULE")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_server_started_with_other_keys_than_its_database_stops_with_a_message() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let site = Site::new("custody", rt.block_on(crate::database_url()));
    site.run(&["init"]);
    let err = |cmd: &mut std::process::Command| {
        let out = cmd.args(["keys", "list"]).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    if crate::on_token() {
        // A token database started with a kek.key (one made for the occasion).
        std::fs::write(site.dir.join("kek.key"), hex::encode([9u8; 32]) + "\n").unwrap();
        let e = err(site.cmd().env_remove("IMPRINT_PKCS11_MODULE"));
        assert!(
            e.contains("keeps its keys in the PKCS#11 token") && e.contains("kek.key"),
            "{e}"
        );
    } else {
        // A wrapped import needs a token.
        std::fs::write(site.dir.join("w"), [1u8; 384]).unwrap();
        let out = site
            .cmd()
            .args(["keys", "import", "5", "--wrapped", "w", "--check", "000000"])
            .current_dir(&site.dir)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && e.contains("PKCS#11 token"), "{e}");
        let out = site.cmd().args(["keys", "import-key"]).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && e.contains("an import key is a token's"),
            "{e}"
        );
        // Another kek.key than the one the database was made with.
        std::fs::remove_file(site.dir.join("kek.key")).unwrap();
        std::fs::write(site.dir.join("kek.key"), hex::encode([9u8; 32]) + "\n").unwrap();
        let e = err(&mut site.cmd());
        assert!(
            e.contains("not the ones this database was initialised with"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_chip_bound_record_sealed_in_the_token_opens_on_its_chip_only() {
    use imprint_core::{ApparatusId, Binding, ChipId, KeyId, PassPhrase, SealedRecord};
    use imprint_server::custody::StoredKey;
    if skip_without_token() {
        return;
    }
    let env = Env::new(0, 10).await;
    let k1 = KeyId::new(1).unwrap();
    let label: String = sqlx::query("SELECT token_label FROM pre_write_keys WHERE key_id = 1")
        .fetch_one(env.state.store.pool())
        .await
        .unwrap()
        .get("token_label");
    let in_token = env
        .state
        .custody
        .record_key(k1, "700/1", StoredKey::Token(label))
        .unwrap();
    let key = imprint_device::sim::demo_key(k1);
    let id = ApparatusId::new("IMP-CHIP-1").unwrap();
    let pass = PassPhrase::generate(&mut imprint_server::rng());
    let chip = ChipId::from_hex("00112233445566778899AABB").unwrap();
    let other = ChipId::from_hex("00112233445566778899AABC").unwrap();
    // The same randomness in the token and in memory gives the same bytes: the token derives
    // exactly core's v2 chip key.
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
    let (sealed, _) =
        SealedRecord::seal_with(&mut rng, &in_token, k1, &Binding::Chip(chip), &id, &pass).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
    let (same, _) =
        SealedRecord::seal_keeping_nonce(&mut rng, &key, k1, &Binding::Chip(chip), &id, &pass);
    assert_eq!(sealed.as_bytes(), same.as_bytes());
    assert_eq!(sealed.format(), imprint_core::seal::FORMAT_V2);
    let opened = sealed.open(&key, &id, Some(&chip)).unwrap();
    assert_eq!(opened.pass_phrase.expose_secret(), pass.expose_secret());
    assert!(sealed.open(&key, &id, Some(&other)).is_err());
    assert!(sealed.open(&key, &id, None).is_err());
}

#[tokio::test]
async fn a_wrapped_key_with_a_wrong_check_value_leaves_nothing_in_the_token() {
    if skip_without_token() {
        return;
    }
    let env = Env::new(0, 10).await;
    let token = env.state.custody.token().unwrap();
    let dir = &env.dir;
    std::fs::write(
        dir.join("import.pem"),
        env.state.custody.import_key_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("key.bin"), [0x77u8; 32]).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "import.pem",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-pkeyopt",
            "rsa_mgf1_md:sha1",
            "-in",
            "key.bin",
            "-out",
            "key.wrapped",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrapped = std::fs::read(dir.join("key.wrapped")).unwrap();
    let id = imprint_core::KeyId::new(77).unwrap();
    let err =
        imprint_server::service::add_key_wrapped(&env.state, "t", id, wrapped, [0xAB, 0xCD, 0xEF])
            .await
            .unwrap_err();
    assert!(err.to_string().contains("check value differs"), "{err}");
    let left = token.secret_key_labels().unwrap();
    assert!(
        !left.iter().any(|l| l.starts_with("imprint/700/77/")),
        "a refused key stayed in the token: {left:?}"
    );
    assert!(
        left.iter().any(|l| l == LABEL_AT_REST),
        "the listing lists: {left:?}"
    );
}

/// Issues one record, installs it in demo unit `n` and reports it: the whole path through the
/// token (opening the pass phrase, sealing the record and its nonce, checking the receipt).
async fn provision_one(env: &Env, n: u32) {
    let recs = env.issue(&env.tech, 1).await;
    let mut dev = imprint_device::sim::SimDevice::demo(n);
    let (receipt, serial) = crate::install(&mut dev, &recs[0]);
    let out = env
        .report(
            &env.tech,
            recs[0]["apparatus_id"].as_str().unwrap(),
            &serial,
            &receipt,
        )
        .await;
    assert_eq!(out.1["status"], "recorded", "{out:?}");
}

#[tokio::test]
async fn keys_work_through_session_copies_as_locked_down_as_the_originals_and_survive_losing_them()
{
    if skip_without_token() {
        return;
    }
    let env = Env::new(3, 10).await;
    let token = env.state.custody.token().expect("token custody");
    provision_one(&env, 1).await;
    let label: String = sqlx::query("SELECT token_label FROM pre_write_keys WHERE key_id = 1")
        .fetch_one(env.state.store.pool())
        .await
        .unwrap()
        .get("token_label");
    let at_rest = token.find(LABEL_AT_REST).unwrap().unwrap();
    let pre_write = token.find(&label).unwrap().unwrap();
    for (what, key) in [("at-rest", at_rest), ("pre-write", pre_write)] {
        let copy = token
            .session_copy(key)
            .unwrap_or_else(|| panic!("the {what} key has no session copy"));
        assert_ne!(copy, key);
        assert!(
            !token.reveals_value(copy).unwrap(),
            "the {what} key's copy gives out its value"
        );
        assert!(
            !token.allows_ecb(copy).unwrap(),
            "the {what} key's copy encrypts with AES-ECB"
        );
    }
    // A copy destroyed behind the server's back: the operation runs on the token object, and
    // fresh copies are made.
    let copy = token.session_copy(at_rest).unwrap();
    token.destroy(copy).unwrap();
    provision_one(&env, 2).await;
    assert!(token.session_copy(at_rest).is_some());
    // Every copy gone with the session that made them (as after a restart of the token).
    token.close_copy_keeper();
    provision_one(&env, 3).await;
    assert!(token.session_copy(pre_write).is_some());
}
