//! Key custody: where the server's keys live and who may use them.
//!
//! Two custodies, chosen at `imprint init` and again at every start:
//! - **File** (the embedded default): the key-encryption key is `kek.key` in the data folder
//!   ([`Kek`]); pre-write keys and the lease signing key are stored in the database sealed
//!   under it. Whoever copies the data folder *with* `kek.key` has every key.
//! - **Token** (PKCS#11, an HSM): the key that seals secrets at rest, every pre-write key and the
//!   lease signing key are objects in the token, sensitive and unextractable; sealing a record
//!   is an AES-GCM encryption *in the token* with a nonce the server draws. The database holds
//!   only the label of each pre-write key. A copied data folder reveals no key and no pass
//!   phrase.
//!
//! In both, the two HMAC keys for tags (names in the audit log, field-authentication
//! challenges) are derived at start-up and kept in memory: they protect nothing at rest, and
//! every server process that shares the custody derives the same ones. With a token they are
//! HMACs by a token key, so they too exist only while a server that can log in runs.

use crate::db;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use cryptoki::object::ObjectHandle;
use imprint_core::seal::{NONCE_LEN, TAG_LEN};
use imprint_core::{Binding, KeyId, PreWriteKey, SealKey};
use rand_core::Rng;
use zeroize::Zeroizing;

use crate::error::AppError;
use crate::kek::{Kek, hmac_sha256};
use crate::pkcs11::{Token, Usage};
use crate::store::{Conn, Store};

/// The token's label of the key that seals secrets at rest.
pub const LABEL_AT_REST: &str = "imprint/at-rest";
/// The token's label of the HMAC key the tag keys are derived from.
pub const LABEL_TAGS: &str = "imprint/tags";
/// The token's label of the lease signing key pair.
pub const LABEL_LEASE: &str = "imprint/lease-signing";
/// The token's label of the key pair that signs the audit log's checkpoints.
pub const LABEL_LOG: &str = "imprint/log-signing";
/// The token's label of the RSA key pair pre-write keys are imported under.
pub const LABEL_IMPORT: &str = "imprint/import";

const NAME_TAG_INFO: &[u8] = b"imprint name tag key v1";
const CHALLENGE_INFO: &[u8] = b"imprint challenge key v1";
/// What the custody check seals, so a start with other keys is caught before any request.
const CHECK_CTX: &str = "server/custody-check";
const CHECK_VALUE: &[u8] = b"imprint custody check v1";

/// Where the keys are.
#[expect(
    clippy::large_enum_variant,
    reason = "one per process, never moved after start-up"
)]
enum Held {
    /// In memory, from `kek.key`.
    File(Box<Aes256Gcm>),
    /// In a PKCS#11 token.
    Token {
        token: Token,
        at_rest: ObjectHandle,
        lease: ObjectHandle,
        lease_public: [u8; 32],
        log: ObjectHandle,
        log_public: [u8; 32],
    },
}

/// The server's Ed25519 keys: each signs one kind of message only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKey {
    /// Offline leases (`imprint_core::lease`).
    Lease,
    /// The audit log's checkpoints (`imprint_core::note`).
    Log,
}

impl SigningKey {
    /// Its row in `server_keys` (file custody) and the context it is sealed under.
    fn row(self) -> (&'static str, &'static str) {
        match self {
            SigningKey::Lease => ("lease-signing", "server/lease-signing"),
            SigningKey::Log => ("log-signing", "server/log-signing"),
        }
    }
}

/// The server's keys (see the module's documentation).
pub struct Custody {
    held: Held,
    /// HMAC key for tags of names that must not be logged in clear.
    tag_key: Zeroizing<[u8; 32]>,
    /// HMAC key for the tags of authentication challenges.
    challenge_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Custody({})", self.describe())
    }
}

impl From<Kek> for Custody {
    fn from(kek: Kek) -> Custody {
        let bytes = kek.bytes();
        Custody {
            held: Held::File(Box::new(Aes256Gcm::new(&(*bytes).into()))),
            tag_key: Zeroizing::new(hmac_sha256(bytes, &[NAME_TAG_INFO])),
            challenge_key: Zeroizing::new(hmac_sha256(bytes, &[CHALLENGE_INFO])),
        }
    }
}

/// Where a new pre-write key comes from.
pub enum KeySource {
    /// Drawn fresh (in the token, with token custody).
    Generate,
    /// Given in clear: a key ceremony's output, the demo's keys.
    Clear(PreWriteKey),
    /// Encrypted by the brand owner to the token's import key ([`Custody::import_key_pem`]):
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1 of the key's 32 bytes, with the key's check value
    /// (docs/server.md, "Keys in an HSM"; checked by [`crate::pkcs11::Token::unwrap_key`]).
    Wrapped {
        /// The RSA-OAEP ciphertext.
        wrapped: Vec<u8>,
        /// The first 3 bytes of AES-256-ECB of sixteen 0x01 bytes under the key.
        check: [u8; 3],
    },
}

/// A pre-write key as its row in table 700 holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// Sealed under `kek.key` (file custody).
    Sealed(Vec<u8>),
    /// In the token under this label (token custody).
    Token(String),
}

/// A pre-write key ready to seal records: in memory, or a handle in the token.
pub enum RecordKey<'a> {
    /// File custody: the key itself.
    Memory(PreWriteKey),
    /// Token custody: the token seals.
    Token(&'a Token, ObjectHandle),
}

impl SealKey for RecordKey<'_> {
    type Error = AppError;

    fn encrypt(
        &self,
        binding: &Binding,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AppError> {
        match self {
            RecordKey::Memory(k) => match k.encrypt(binding, nonce, aad, buf) {
                Ok(tag) => Ok(tag),
                Err(never) => match never {},
            },
            RecordKey::Token(token, key) => match binding {
                Binding::Model => token.gcm_encrypt(*key, nonce, aad, buf),
                // Format v2: the chip key is derived inside the token.
                Binding::Chip(chip) => token.gcm_encrypt_derived(
                    *key,
                    &imprint_core::seal::chip_v2_data(chip),
                    nonce,
                    aad,
                    buf,
                ),
            },
        }
    }
}

impl Custody {
    /// Token custody over a token that `imprint init` prepared ([`Custody::prepare_token`]).
    pub fn in_token(token: Token) -> Result<Custody, AppError> {
        let missing = |what: &str| {
            AppError::Config(format!(
                "the token '{}' has no {what}: it was not prepared by `imprint init` with --pkcs11-module",
                token.label()
            ))
        };
        let at_rest = token
            .find(LABEL_AT_REST)?
            .ok_or_else(|| missing(LABEL_AT_REST))?;
        let tags = token.find(LABEL_TAGS)?.ok_or_else(|| missing(LABEL_TAGS))?;
        let lease = token
            .find_ed25519(LABEL_LEASE)?
            .ok_or_else(|| missing(LABEL_LEASE))?;
        let lease_public = token.ed25519_public(LABEL_LEASE)?;
        // Tokens prepared before the audit log was signed get its key on their first start.
        let log = match token.find_ed25519(LABEL_LOG)? {
            Some(key) => key,
            None => token.generate_ed25519(LABEL_LOG)?,
        };
        let log_public = token.ed25519_public(LABEL_LOG)?;
        let tag_key = token.hmac(tags, NAME_TAG_INFO)?;
        let challenge_key = token.hmac(tags, CHALLENGE_INFO)?;
        Ok(Custody {
            held: Held::Token {
                token,
                at_rest,
                lease,
                lease_public,
                log,
                log_public,
            },
            tag_key,
            challenge_key,
        })
    }

    /// Makes the server's keys in a token (`imprint init`): the key for secrets at rest, the
    /// tag key, the lease signing pair and the import pair. Refuses a token that already holds any of them, so
    /// one token's keys never serve two installations by accident.
    pub fn prepare_token(token: Token) -> Result<Custody, AppError> {
        for label in [LABEL_AT_REST, LABEL_TAGS] {
            if token.find(label)?.is_some() {
                return Err(AppError::Config(format!(
                    "the token '{}' already holds Imprint's keys ('{label}'): use a token of its own for each installation",
                    token.label()
                )));
            }
        }
        if token.find_ed25519(LABEL_LEASE)?.is_some() {
            return Err(AppError::Config(format!(
                "the token '{}' already holds Imprint's lease key: use a token of its own for each installation",
                token.label()
            )));
        }
        token.generate(LABEL_AT_REST, Usage::Cipher)?;
        token.generate(LABEL_TAGS, Usage::Hmac)?;
        token.generate_ed25519(LABEL_LEASE)?;
        token.generate_ed25519(LABEL_LOG)?;
        // Made here, once, rather than on first use: two first uses at once would make two.
        if token.find_private(LABEL_IMPORT)?.is_none() {
            token.generate_rsa_unwrap(LABEL_IMPORT)?;
        }
        Custody::in_token(token)
    }

    /// "file" or "pkcs11:LABEL", as the custody check records it.
    pub fn describe(&self) -> String {
        match &self.held {
            Held::File(_) => "file".into(),
            Held::Token { token, .. } => format!("pkcs11:{}", token.label()),
        }
    }

    /// The token, with token custody.
    pub fn token(&self) -> Option<&Token> {
        match &self.held {
            Held::File(_) => None,
            Held::Token { token, .. } => Some(token),
        }
    }

    /// A keyed tag of a name (16 bytes of HMAC-SHA256): the same name gives the same tag on
    /// this server, so the audit log can show that one unknown name was tried many times
    /// without ever holding the name (which may be a password typed into the wrong field).
    pub fn name_tag(&self, name: &str) -> [u8; 16] {
        first_16(hmac_sha256(self.tag_key.as_slice(), &[name.as_bytes()]))
    }

    /// The tag of an authentication challenge's fields: only a server with this custody makes
    /// a challenge that checks.
    pub fn challenge_tag(&self, parts: &[&[u8]]) -> [u8; 16] {
        first_16(hmac_sha256(self.challenge_key.as_slice(), parts))
    }

    /// Seals a secret for one row (`nonce (12) | ciphertext | tag (16)`): `context` names the
    /// table and the row and is the AAD, so the value opens in no other row.
    pub fn seal(&self, context: &str, secret: &[u8]) -> Result<Vec<u8>, AppError> {
        let mut nonce = [0u8; 12];
        crate::rng().fill_bytes(&mut nonce);
        let mut buf = Zeroizing::new(secret.to_vec());
        let tag: [u8; 16] = match &self.held {
            Held::File(cipher) => {
                // AES-GCM fails only for a message over 64 GiB; a secret at rest is a few dozen
                // bytes. A zero tag would seal nothing, so this panics naming the invariant.
                #[allow(clippy::expect_used)]
                let tag = cipher
                    .encrypt_inout_detached(
                        &Nonce::from(nonce),
                        context.as_bytes(),
                        buf.as_mut_slice().into(),
                    )
                    .expect("AES-GCM seals any secret under 64 GiB");
                tag.into()
            }
            Held::Token { token, at_rest, .. } => {
                token.gcm_encrypt(*at_rest, &nonce, context.as_bytes(), buf.as_mut_slice())?
            }
        };
        let mut out = Vec::with_capacity(12 + secret.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a sealed secret. Fails if the value was altered, moved to another row, or sealed
    /// under other keys (another `kek.key`, another token).
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AppError> {
        let bad = || {
            AppError::bug(format!(
                "a secret at rest failed to open ({context}): other keys than those it was sealed under, or an altered database"
            ))
        };
        if sealed.len() < 28 {
            return Err(bad());
        }
        let (nonce, rest) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
        match &self.held {
            Held::File(cipher) => {
                let (ct, tag) = rest.split_at(rest.len() - 16);
                let tag = Tag::try_from(tag).map_err(|_| bad())?;
                let mut buf = Zeroizing::new(ct.to_vec());
                cipher
                    .decrypt_inout_detached(
                        &Nonce::from(nonce),
                        context.as_bytes(),
                        buf.as_mut_slice().into(),
                        &tag,
                    )
                    .map_err(|_| bad())?;
                Ok(buf)
            }
            Held::Token { token, at_rest, .. } => token
                .gcm_decrypt(*at_rest, &nonce, context.as_bytes(), rest)?
                .ok_or_else(bad),
        }
    }

    /// A new pre-write key for table 700, from `source`. With file custody the row holds it
    /// sealed; with a token, the key is made in the token under a label of its own (the ID
    /// and a random suffix, so two servers adding one ID at once never share an object) and
    /// the row holds the label.
    pub fn new_pre_write_key(
        &self,
        key_id: KeyId,
        context: &str,
        source: KeySource,
    ) -> Result<StoredKey, AppError> {
        match &self.held {
            Held::File(_) => {
                let key = match source {
                    KeySource::Generate => PreWriteKey::generate(&mut crate::rng()),
                    KeySource::Clear(k) => k,
                    KeySource::Wrapped { .. } => {
                        return Err(AppError::BadRequest(
                            "a wrapped key is imported into a PKCS#11 token; this server keeps its keys in kek.key (import the key in clear instead)".into(),
                        ));
                    }
                };
                Ok(StoredKey::Sealed(self.seal(context, key.expose_secret())?))
            }
            Held::Token { token, .. } => {
                let mut suffix = [0u8; 4];
                crate::rng().fill_bytes(&mut suffix);
                let label = format!("imprint/700/{key_id}/{}", hex::encode(suffix));
                match source {
                    KeySource::Generate => {
                        token.generate(&label, Usage::PreWrite)?;
                    }
                    KeySource::Clear(k) => {
                        token.import(&label, Usage::PreWrite, k.expose_secret())?;
                    }
                    KeySource::Wrapped { wrapped, check } => {
                        let unwrapping = token.find_private(LABEL_IMPORT)?.ok_or_else(|| {
                            AppError::BadRequest(
                                "the token has no import key yet: run `imprint keys import-key` and wrap the key to the public key it prints".into(),
                            )
                        })?;
                        token
                            .unwrap_key(unwrapping, &wrapped, check, &label, Usage::PreWrite)?
                            .ok_or_else(|| {
                                AppError::BadRequest(
                                    "the token could not unwrap the key, or its check value differs: it must be the key's 32 bytes encrypted with RSA-OAEP (SHA-1, MGF1-SHA-1) to the public key of `imprint keys import-key` on this token, and --check its check value; nothing was added".into(),
                                )
                            })?;
                    }
                }
                Ok(StoredKey::Token(label))
            }
        }
    }

    /// The public key (PEM, SubjectPublicKeyInfo) a brand owner encrypts a pre-write key to,
    /// so that it enters the token without ever being in clear on this server. Made in the
    /// token by [`Custody::prepare_token`] (RSA-3072; the private half only unwraps).
    pub fn import_key_pem(&self) -> Result<String, AppError> {
        let Held::Token { token, .. } = &self.held else {
            return Err(AppError::Config(
                "an import key is a token's: this server keeps its keys in kek.key (start it with --pkcs11-module)".into(),
            ));
        };
        if token.find_private(LABEL_IMPORT)?.is_none() {
            return Err(AppError::Config(format!(
                "the token '{}' has no import key ({LABEL_IMPORT}): it is made by `imprint init`; a token prepared before it was: make the pair {LABEL_IMPORT} (RSA-3072, private half unwrap only) with the HSM's tools",
                token.label()
            )));
        }
        let (n, e) = token.rsa_public(LABEL_IMPORT)?;
        Ok(rsa_spki_pem(&n, &e))
    }

    /// Removes a pre-write key made by [`Custody::new_pre_write_key`] whose row was then not
    /// written (the ID was taken). Nothing to do for a sealed key.
    pub fn discard(&self, stored: &StoredKey) -> Result<(), AppError> {
        if let (Held::Token { token, .. }, StoredKey::Token(label)) = (&self.held, stored)
            && let Some(k) = token.find(label)?
        {
            token.destroy(k)?;
        }
        Ok(())
    }

    /// The key of a row of table 700, ready to seal.
    pub fn record_key(
        &self,
        key_id: KeyId,
        context: &str,
        stored: StoredKey,
    ) -> Result<RecordKey<'_>, AppError> {
        match (&self.held, stored) {
            (Held::File(_), StoredKey::Sealed(sealed)) => {
                let bytes = self.open(context, &sealed)?;
                PreWriteKey::from_bytes(&bytes)
                    .map(RecordKey::Memory)
                    .map_err(|_| AppError::bug("a stored pre-write key has a wrong length"))
            }
            (Held::Token { token, .. }, StoredKey::Token(label)) => {
                let key = token.find(&label)?.ok_or_else(|| {
                    AppError::bug(format!(
                        "pre-write key {key_id} is not in the token '{}' (label '{label}'): another token, or the key was deleted",
                        token.label()
                    ))
                })?;
                Ok(RecordKey::Token(token, key))
            }
            (Held::File(_), StoredKey::Token(label)) => Err(AppError::bug(format!(
                "pre-write key {key_id} is in a PKCS#11 token ('{label}') but this server runs with kek.key: start it with --pkcs11-module"
            ))),
            (Held::Token { .. }, StoredKey::Sealed(_)) => Err(AppError::bug(format!(
                "pre-write key {key_id} is sealed under a kek.key, but this server keeps its keys in a token"
            ))),
        }
    }

    /// Signs `msg` with one of the server's Ed25519 keys: in the token (token custody), or
    /// with the key sealed in `server_keys` (file custody; made on first use). Returns the
    /// public key and the signature.
    pub async fn sign_ed25519(
        &self,
        conn: &mut Conn,
        which: SigningKey,
        msg: &[u8],
    ) -> Result<([u8; 32], [u8; 64]), AppError> {
        match self.signing_in_token(which) {
            Some((token, key, public)) => Ok((public, token.sign_ed25519(key, msg)?)),
            None => {
                use ed25519_dalek::Signer;
                let key = self.stored_signing_key(conn, which).await?;
                Ok((key.verifying_key().to_bytes(), key.sign(msg).to_bytes()))
            }
        }
    }

    /// The public half of one of the server's Ed25519 keys (made on first use with file
    /// custody, so `conn` should be in a write transaction).
    pub async fn ed25519_public(
        &self,
        conn: &mut Conn,
        which: SigningKey,
    ) -> Result<[u8; 32], AppError> {
        match self.signing_in_token(which) {
            Some((_, _, public)) => Ok(public),
            None => Ok(self
                .stored_signing_key(conn, which)
                .await?
                .verifying_key()
                .to_bytes()),
        }
    }

    /// The public half of one of the server's Ed25519 keys, for answers anyone may ask for
    /// (the lease key, the audit log's key): read without a write transaction once the key
    /// exists, so such a request never takes the database's write lock; the first one makes
    /// the key (file custody).
    pub async fn public_key(&self, store: &Store, which: SigningKey) -> Result<[u8; 32], AppError> {
        if let Some((_, _, public)) = self.signing_in_token(which) {
            return Ok(public);
        }
        let (name, context) = which.row();
        let row = db::query("SELECT key_sealed FROM server_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut store.read().await?)
            .await?;
        if let Some(r) = row {
            let bytes = self.open(context, &r.try_get::<Vec<u8>, _>("key_sealed")?)?;
            return Ok(signing_key_of(name, &bytes)?.verifying_key().to_bytes());
        }
        store
            .write(&(self, which), |tx, (custody, which)| {
                Box::pin(custody.ed25519_public(tx, *which))
            })
            .await
    }

    /// The key in the token, with token custody.
    fn signing_in_token(&self, which: SigningKey) -> Option<(&Token, ObjectHandle, [u8; 32])> {
        match (&self.held, which) {
            (Held::File(_), _) => None,
            (
                Held::Token {
                    token,
                    lease,
                    lease_public,
                    ..
                },
                SigningKey::Lease,
            ) => Some((token, *lease, *lease_public)),
            (
                Held::Token {
                    token,
                    log,
                    log_public,
                    ..
                },
                SigningKey::Log,
            ) => Some((token, *log, *log_public)),
        }
    }

    /// A signing key in the database (file custody), made on first use. Two processes that
    /// both find none race to insert it; the loser's insert violates the key's uniqueness and
    /// its transaction runs again, finding the winner's.
    async fn stored_signing_key(
        &self,
        conn: &mut Conn,
        which: SigningKey,
    ) -> Result<ed25519_dalek::SigningKey, AppError> {
        let (name, context) = which.row();
        let row = db::query("SELECT key_sealed FROM server_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        let bytes = match row {
            Some(r) => self.open(context, &r.try_get::<Vec<u8>, _>("key_sealed")?)?,
            None => {
                let mut b = Zeroizing::new(vec![0u8; 32]);
                crate::rng().fill_bytes(&mut b);
                db::query("INSERT INTO server_keys (name, key_sealed) VALUES ($1, $2)")
                    .bind(name)
                    .bind(self.seal(context, &b)?)
                    .execute(&mut *conn)
                    .await?;
                b
            }
        };
        signing_key_of(name, &bytes)
    }

    /// Records this custody in a new database (`imprint init`), or checks that an existing
    /// one was made with it, so a server started with other keys stops at once with a
    /// message instead of failing every request. A database from before the check was kept
    /// is file custody: its check is written on the first start.
    pub async fn check(&self, store: &Store, fresh: bool) -> Result<(), AppError> {
        // Twice at most: a database without the rows gets them, then they are read back, so
        // that of two processes writing them at once the one whose rows lost is checked too.
        for _ in 0..2 {
            if self.check_once(store, fresh).await? {
                return Ok(());
            }
        }
        Err(AppError::bug(
            "the custody check rows were written but are not there",
        ))
    }

    /// Checks the rows; `false` if there were none and they have just been written.
    async fn check_once(&self, store: &Store, fresh: bool) -> Result<bool, AppError> {
        let rows = db::query(
            "SELECT name, key_sealed FROM server_keys WHERE name IN ('custody', 'custody-check')",
        )
        .fetch_all(&mut store.read().await?)
        .await?;
        let mut mode = None;
        let mut sealed = None;
        for r in rows {
            let name: String = r.try_get("name")?;
            let value: Vec<u8> = r.try_get("key_sealed")?;
            if name == "custody" {
                mode = Some(String::from_utf8_lossy(&value).into_owned());
            } else {
                sealed = Some(value);
            }
        }
        match (mode, sealed) {
            (Some(mode), Some(sealed)) => {
                let here = self.describe();
                let same_kind = mode.split(':').next() == here.split(':').next();
                if !same_kind {
                    return Err(AppError::Config(format!(
                        "this database keeps its keys in {} but the server was started with {}",
                        explain(&mode),
                        explain(&here)
                    )));
                }
                match self.open(CHECK_CTX, &sealed) {
                    Ok(v) if v.as_slice() == CHECK_VALUE => Ok(true),
                    _ => Err(AppError::Config(format!(
                        "the keys given ({}) are not the ones this database was initialised with ({}): wrong kek.key or wrong token",
                        explain(&here),
                        explain(&mode)
                    ))),
                }
            }
            (None, None) if fresh || self.token().is_none() => {
                let sealed = self.seal(CHECK_CTX, CHECK_VALUE)?;
                let mut tx = store.begin().await?;
                for (name, value) in [
                    ("custody", self.describe().into_bytes()),
                    ("custody-check", sealed),
                ] {
                    db::query("INSERT INTO server_keys (name, key_sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                        .bind(name)
                        .bind(value)
                        .execute(&mut tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(false)
            }
            (None, None) => Err(AppError::Config(
                "this database was made with kek.key (file custody); moving it into a token is not supported: start without --pkcs11-module".into(),
            )),
            _ => Err(AppError::bug("the custody check in server_keys is half written")),
        }
    }
}

/// An RSA public key as PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 5280 and RFC 8017's
/// `RSAPublicKey`), which `openssl pkeyutl -pubin` reads.
/// An Ed25519 signing key from its stored 32-byte seed (unsealed).
fn signing_key_of(name: &str, seed: &[u8]) -> Result<ed25519_dalek::SigningKey, AppError> {
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        seed.try_into()
            .map_err(|_| AppError::bug(format!("the stored key '{name}' has a wrong length")))?,
    );
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

fn rsa_spki_pem(n: &[u8], e: &[u8]) -> String {
    let rsa = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(n, true);
            w.next().write_bigint_bytes(e, true);
        })
    });
    let spki = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                // rsaEncryption, with its NULL parameters.
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                        1, 2, 840, 113549, 1, 1, 1,
                    ]));
                w.next().write_null();
            });
            w.next().write_bitvec_bytes(&rsa, rsa.len() * 8);
        })
    });
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki))
}

fn explain(mode: &str) -> String {
    match mode.strip_prefix("pkcs11:") {
        Some(label) => format!("the PKCS#11 token '{label}'"),
        None => "kek.key in the data folder".into(),
    }
}

fn first_16(full: [u8; 32]) -> [u8; 16] {
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&full[..16]);
    tag
}
