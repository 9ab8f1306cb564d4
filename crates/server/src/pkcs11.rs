//! A PKCS#11 token (a hardware security module, or SoftHSM2 in tests) through `cryptoki`.
//!
//! Why a module of its own: this is the only place that speaks PKCS#11. What is kept in the
//! token, and why, is [`crate::custody`]'s business; here are the token's operations on it:
//! AES-256-GCM with the caller's nonce, HMAC-SHA256, Ed25519 signatures, and key generation and
//! import with attributes that keep every key inside (`CKA_SENSITIVE`, not `CKA_EXTRACTABLE`).
//!
//! The token is found by its label (a token's slot number changes when it is initialised, and
//! differs between machines). One `Pkcs11` context per module and process (a module may be
//! initialised only once per process); sessions are pooled, one per operation in flight, and
//! all share the one login, as PKCS#11 logs in an application, not a session.
//!
//! Keys are used through session copies: the first use of a token key copies it into a
//! session object (`C_CopyObject` with `CKA_TOKEN` false; the copy keeps every other
//! attribute, so it is as sensitive, unextractable and restricted as the original), which every
//! pooled session then uses. Why: SoftHSM2 reads a token object's file again on every use, and
//! an AES-GCM operation on a token object took 31 µs against 9 µs on its session copy (seen
//! here). A copy lives inside the token until the session that made it closes (the `keeper`,
//! which does nothing else); when copies are gone (the token restarted), the operation runs on
//! the token object and fresh copies are made. A token that refuses to copy a key
//! (`CKA_COPYABLE` false) has it used as it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::ekdf::AesCbcDeriveParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::error::AppError;

/// The DER encoding of the curve edwards25519 (OID 1.3.101.112), as `CKA_EC_PARAMS` names it.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// What a key in the token may do; every key also gets `CKA_TOKEN`, `CKA_PRIVATE`,
/// `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// AES-256 that encrypts and decrypts (secrets at rest).
    Cipher,
    /// AES-256 that encrypts and derives (a pre-write key: seals records; derives chip keys).
    PreWrite,
    /// A 32-byte generic secret that signs with HMAC-SHA256.
    Hmac,
}

/// A logged-in token.
pub struct Token {
    ctx: Pkcs11,
    /// Held while a key is made or destroyed: SoftHSM2's file store loses a race between
    /// two threads of one process writing token objects at once (seen: CKR_GENERAL_ERROR
    /// from one of two concurrent C_CreateObject). Keys are made rarely; nothing else waits.
    writing: Arc<Mutex<()>>,
    /// Whether the module is SoftHSM2, which answers CKR_GENERAL_ERROR for an AES-GCM tag
    /// that does not check (the standard's answer is CKR_ENCRYPTED_DATA_INVALID).
    softhsm: bool,
    slot: Slot,
    label: String,
    pin: AuthPin,
    sessions: Mutex<Vec<Session>>,
    copies: Mutex<Copies>,
}

/// The session copies of token keys, and the session that owns them (its closing destroys
/// them).
#[derive(Default)]
struct Copies {
    keeper: Option<Session>,
    /// Token key and its copy; `None`: the token refused to copy it. A few keys per process
    /// (`ObjectHandle` is not `Hash`).
    of: Vec<(ObjectHandle, Option<ObjectHandle>)>,
}

impl Copies {
    fn get(&self, key: ObjectHandle) -> Option<Option<ObjectHandle>> {
        self.of.iter().find(|(k, _)| *k == key).map(|(_, c)| *c)
    }
}

/// Whether an error says the object handle no longer names an object (a copy gone with its
/// session).
fn handle_gone(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)
    )
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("label", &self.label).finish()
    }
}

/// A module's context and its lock for writing token objects.
type Context = (Pkcs11, Arc<Mutex<()>>);

/// The process's context for a module: initialised once, kept for the life of the process.
fn context(module: &Path) -> Result<Context, AppError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Context>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| AppError::bug("the PKCS#11 context map was poisoned"))?;
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        AppError::Config(format!(
            "cannot load the PKCS#11 module {}: {e} (is the HSM's library installed? SoftHSM2's is /usr/lib/softhsm/libsofthsm2.so)",
            module.display()
        ))
    })?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| {
            AppError::Config(format!(
                "the PKCS#11 module {} did not initialise: {e}",
                module.display()
            ))
        })?;
    let entry = (ctx, Arc::new(Mutex::new(())));
    map.insert(module.to_path_buf(), entry.clone());
    Ok(entry)
}

/// Whether a token error means "not now" (the token or its link went away) rather than a
/// fault: those answer 503 and the client tries again.
fn transient(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

impl Token {
    /// Opens the token labelled `label` in `module` and logs in as its user with `pin`.
    pub fn open(module: &Path, label: &str, pin: &str) -> Result<Token, AppError> {
        let (ctx, writing) = context(module)?;
        let slots = ctx.get_slots_with_token().map_err(|e| {
            AppError::Config(format!(
                "cannot list the slots of {}: {e}",
                module.display()
            ))
        })?;
        let mut found = None;
        let mut seen = Vec::new();
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(|e| {
                AppError::Config(format!("cannot read a token of {}: {e}", module.display()))
            })?;
            if info.label() == label {
                found = Some(slot);
                break;
            }
            if !info.label().is_empty() {
                seen.push(info.label().to_string());
            }
        }
        let slot = found.ok_or_else(|| {
            AppError::Config(format!(
                "no token labelled '{label}' in {} (tokens seen: {})",
                module.display(),
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ))
        })?;
        let softhsm = ctx
            .get_library_info()
            .map(|i| i.manufacturer_id().contains("SoftHSM"))
            .unwrap_or(false);
        let token = Token {
            ctx,
            writing,
            softhsm,
            slot,
            label: label.to_string(),
            pin: AuthPin::new(pin.into()),
            sessions: Mutex::new(Vec::new()),
            copies: Mutex::new(Copies::default()),
        };
        // Opening the first session logs in; a wrong PIN is a configuration error.
        let session = token.new_session().map_err(|e| match e {
            AppError::Unavailable(c) | AppError::Internal(c) => {
                AppError::Config(format!("cannot log in to the token '{label}': {c}"))
            }
            other => other,
        })?;
        token.put_back(session);
        Ok(token)
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn fail(&self, what: &str, e: P11Error) -> AppError {
        let cause = format!("the key token '{}' failed to {what}: {e}", self.label);
        if transient(&e) {
            AppError::Unavailable(cause.into())
        } else {
            AppError::Internal(cause.into())
        }
    }

    fn new_session(&self) -> Result<Session, AppError> {
        let s = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| self.fail("open a session", e))?;
        match s.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(s),
            Err(e) => Err(self.fail("log in (check the PIN)", e)),
        }
    }

    /// Makes the secret key `label` with `op`. SoftHSM2 sometimes answers C_CreateObject
    /// with CKR_GENERAL_ERROR while other sessions use the token (seen under the test suite's
    /// load), and such an answer "may have partially succeeded": then the key is looked up by
    /// its label, and made once more only if it is not there.
    fn make(
        &self,
        label: &str,
        op: impl Fn() -> Result<ObjectHandle, AppError>,
    ) -> Result<ObjectHandle, AppError> {
        // Any fault from SoftHSM2 (its answer is CKR_GENERAL_ERROR): up to three more times,
        // a little later each, so a lasting fault still fails (seen: two faults in a row under
        // the full suite's load on two cores).
        let mut attempt = 0u64;
        loop {
            match op() {
                Err(AppError::Internal(_)) if self.softhsm && attempt < 3 => {
                    if let Some(k) = self.find(label)? {
                        return Ok(k);
                    }
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
                }
                other => return other,
            }
        }
    }

    fn write_lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, AppError> {
        self.writing
            .lock()
            .map_err(|_| AppError::bug("the token's write lock was poisoned"))
    }

    fn put_back(&self, s: Session) {
        if let Ok(mut pool) = self.sessions.lock() {
            pool.push(s);
        }
    }

    /// Runs `op` on a pooled session. A session the token dropped (a restart of the HSM logs
    /// every application out) is replaced and `op` runs once more on a fresh one.
    fn with<T>(
        &self,
        what: &str,
        op: impl Fn(&Session) -> Result<T, P11Error>,
    ) -> Result<T, AppError> {
        match self.once(&op)? {
            Ok(v) => Ok(v),
            Err(e) if transient(&e) => {
                // Whatever went, the session copies went with it.
                self.forget_copies();
                let fresh = self.new_session()?;
                let out = op(&fresh).map_err(|e| self.fail(what, e));
                if out.is_ok() {
                    self.put_back(fresh);
                }
                out
            }
            Err(e) => Err(self.fail(what, e)),
        }
    }

    /// Runs `op` once on a pooled session: the outer error is not getting a session at all,
    /// the inner one the token's answer. The session goes back to the pool unless the token
    /// dropped it.
    fn once<T>(
        &self,
        op: &impl Fn(&Session) -> Result<T, P11Error>,
    ) -> Result<Result<T, P11Error>, AppError> {
        let pooled = self.sessions.lock().ok().and_then(|mut p| p.pop());
        let session = match pooled {
            Some(s) => s,
            None => self.new_session()?,
        };
        let out = op(&session);
        match &out {
            Err(e) if transient(e) => drop(session),
            _ => self.put_back(session),
        }
        Ok(out)
    }

    /// The session copy of `key` to use, made on first use; `None` if the token would not copy
    /// it (then `key` itself is used). A failure to make one is never an error: the token
    /// object does the same work, more slowly.
    fn copy_of(&self, key: ObjectHandle) -> Option<ObjectHandle> {
        let mut copies = self.copies.lock().ok()?;
        // While the keeper's session is open its copies exist and their handles name them;
        // once it is gone, a handle could in principle name a newer object: never used then.
        if copies
            .keeper
            .as_ref()
            .is_none_or(|k| k.get_session_info().is_err())
        {
            copies.keeper = None;
            copies.of.clear();
        }
        if let Some(known) = copies.get(key) {
            return known;
        }
        if copies.keeper.is_none() {
            copies.keeper = self.new_session().ok();
        }
        let keeper = copies.keeper.as_ref()?;
        let made = {
            let _writing = self.write_lock().ok()?;
            keeper.copy_object(key, &[Attribute::Token(false)])
        };
        match made {
            Ok(copy) => {
                copies.of.push((key, Some(copy)));
                Some(copy)
            }
            // The session or token went away: no copy now, try again next time.
            Err(e) if transient(&e) => {
                copies.keeper = None;
                copies.of.clear();
                None
            }
            Err(e) => {
                tracing::info!(token = %self.label, error = %e, "the token does not copy this key into a session object; it is used as it is");
                copies.of.push((key, None));
                None
            }
        }
    }

    /// Forgets every session copy (they are gone, or about to be) and closes their keeper.
    fn forget_copies(&self) {
        if let Ok(mut copies) = self.copies.lock() {
            copies.of.clear();
            copies.keeper = None;
        }
    }

    /// Runs `op` with `key` on a pooled session, through the key's session copy when it has
    /// one; a copy that is gone is forgotten and `op` runs on the token object itself.
    fn with_key<T>(
        &self,
        what: &str,
        key: ObjectHandle,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, P11Error>,
    ) -> Result<T, AppError> {
        let Some(copy) = self.copy_of(key) else {
            return self.with(what, |s| op(s, key));
        };
        match self.once(&|s| op(s, copy))? {
            Ok(v) => Ok(v),
            // The copy is gone, or the session or token went: forget every copy, and run on
            // the token object (with `with`'s one retry on a fresh session).
            Err(e) if handle_gone(&e) || transient(&e) => {
                self.forget_copies();
                self.with(what, |s| op(s, key))
            }
            Err(e) => Err(self.fail(what, e)),
        }
    }

    /// Closes the session that owns the session copies, destroying them inside the token,
    /// while the handles stay known, as a restart of the token would leave them: for the tests
    /// of the way back.
    #[doc(hidden)]
    pub fn close_copy_keeper(&self) {
        if let Ok(mut copies) = self.copies.lock() {
            copies.keeper = None;
        }
    }

    /// The session copy of `key` in use now, if any (for tests).
    #[doc(hidden)]
    pub fn session_copy(&self, key: ObjectHandle) -> Option<ObjectHandle> {
        self.copies.lock().ok()?.get(key).flatten()
    }

    /// The secret key labelled `label`, if the token holds one.
    pub fn find(&self, label: &str) -> Result<Option<ObjectHandle>, AppError> {
        self.find_class(label, ObjectClass::SECRET_KEY)
    }

    fn find_class(
        &self,
        label: &str,
        class: ObjectClass,
    ) -> Result<Option<ObjectHandle>, AppError> {
        let found = self.with("find a key", |s| {
            // Token objects only: a key's session copy has its label too.
            s.find_objects(&[
                Attribute::Class(class),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
        })?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(AppError::bug(format!(
                "the token '{}' holds {} keys labelled '{label}'",
                self.label,
                found.len()
            ))),
        }
    }

    fn template(label: &str, usage: Usage) -> Vec<Attribute> {
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        match usage {
            // CKA_ALLOWED_MECHANISMS too: CKA_ENCRYPT alone would let whoever is logged in
            // run AES-ECB or AES-CBC with the key, which gives GCM's keystream and hash key
            // and a v2 chip key in clear.
            Usage::Cipher => t.extend([
                Attribute::KeyType(KeyType::AES),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
            ]),
            Usage::PreWrite => t.extend([
                Attribute::KeyType(KeyType::AES),
                Attribute::Encrypt(true),
                Attribute::Decrypt(false),
                Attribute::Derive(true),
                Attribute::AllowedMechanisms(vec![
                    MechanismType::AES_GCM,
                    MechanismType::AES_CBC_ENCRYPT_DATA,
                ]),
            ]),
            Usage::Hmac => t.extend([
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::AllowedMechanisms(vec![MechanismType::SHA256_HMAC]),
            ]),
        }
        t
    }

    /// Generates a 32-byte key in the token that never leaves it.
    pub fn generate(&self, label: &str, usage: Usage) -> Result<ObjectHandle, AppError> {
        let mut t = Self::template(label, usage);
        t.push(Attribute::ValueLen(32.into()));
        let mech = match usage {
            Usage::Cipher | Usage::PreWrite => Mechanism::AesKeyGen,
            Usage::Hmac => Mechanism::GenericSecretKeyGen,
        };
        let _writing = self.write_lock()?;
        self.make(label, || {
            self.with("generate a key", |s| s.generate_key(&mech, &t))
        })
    }

    /// Imports a 32-byte key given in clear (a key ceremony's output, the demo's keys): once
    /// in the token it is as sensitive and unextractable as a generated one.
    pub fn import(
        &self,
        label: &str,
        usage: Usage,
        value: &[u8; 32],
    ) -> Result<ObjectHandle, AppError> {
        let mut t = Self::template(label, usage);
        t.push(Attribute::Value(value.to_vec()));
        let out = {
            let _writing = self.write_lock()?;
            self.make(label, || self.with("import a key", |s| s.create_object(&t)))
        };
        // `t` held the key's value: wipe it.
        for a in &mut t {
            if let Attribute::Value(v) = a {
                zeroize::Zeroize::zeroize(v);
            }
        }
        out
    }

    /// Removes a key (one this process made for a row that was then not written).
    pub fn destroy(&self, key: ObjectHandle) -> Result<(), AppError> {
        let copy = self.copies.lock().ok().and_then(|mut c| {
            let at = c.of.iter().position(|(k, _)| *k == key)?;
            c.of.remove(at).1
        });
        let _writing = self.write_lock()?;
        if let Some(copy) = copy {
            // Gone already if its keeper closed; either way it is never used again.
            let _ = self.with("destroy a key's session copy", |s| s.destroy_object(copy));
        }
        self.with("destroy a key", |s| s.destroy_object(key))
    }

    /// Whether the token would give out the key's value (`CKA_VALUE`). For every key made
    /// here the answer is no; a test asks.
    pub fn reveals_value(&self, key: ObjectHandle) -> Result<bool, AppError> {
        let info = self.with("read a key's attributes", |s| {
            s.get_attribute_info(key, &[AttributeType::Value])
        })?;
        Ok(!matches!(
            info.as_slice(),
            [AttributeInfo::Sensitive | AttributeInfo::Unavailable | AttributeInfo::TypeInvalid]
        ))
    }

    /// AES-256-GCM encryption in place; returns the tag. `aad` must not be empty: SoftHSM2
    /// before 2.7.0 crashes on an empty AAD, so this refuses one rather than pass it on.
    pub fn gcm_encrypt(
        &self,
        key: ObjectHandle,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; 16], AppError> {
        if aad.is_empty() {
            return Err(AppError::bug("AES-GCM in the token with an empty AAD"));
        }
        let out = Zeroizing::new(self.with_key("encrypt", key, |s, key| {
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            s.encrypt(&Mechanism::AesGcm(params), key, buf)
        })?);
        let (ct, tag) = out
            .split_last_chunk::<16>()
            .filter(|(ct, _)| ct.len() == buf.len())
            .ok_or_else(|| AppError::bug("the token's AES-GCM output has a wrong length"))?;
        buf.copy_from_slice(ct);
        let tag = *tag;
        Ok(tag)
    }

    /// AES-256-GCM encryption in place under a key derived inside the token from `base` by
    /// `CKM_AES_CBC_ENCRYPT_DATA` (IV 0) of `data`: a chip-bound record's key of format v2
    /// (`imprint_core::seal::chip_bound_key_v2`). The derived key is a session object, sensitive
    /// and unextractable, made, used and destroyed on one session.
    pub fn gcm_encrypt_derived(
        &self,
        base: ObjectHandle,
        data: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; 16], AppError> {
        if aad.is_empty() {
            return Err(AppError::bug("AES-GCM in the token with an empty AAD"));
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
        ];
        let out = Zeroizing::new(self.with_key(
            "seal under a derived chip key",
            base,
            |s, base| {
                let derive = Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([0; 16], data));
                let chip_key = s.derive_key(&derive, base, &template)?;
                let mut iv = *nonce;
                let sealed = GcmParams::new(&mut iv, aad, 128.into())
                    .and_then(|p| s.encrypt(&Mechanism::AesGcm(p), chip_key, buf));
                let gone = s.destroy_object(chip_key);
                let sealed = sealed?;
                gone?;
                Ok(sealed)
            },
        )?);
        let (ct, tag) = out
            .split_last_chunk::<16>()
            .filter(|(ct, _)| ct.len() == buf.len())
            .ok_or_else(|| AppError::bug("the token's AES-GCM output has a wrong length"))?;
        buf.copy_from_slice(ct);
        Ok(*tag)
    }

    /// AES-256-GCM decryption of `ciphertext | tag`; `None` if it does not authenticate.
    /// Same rule for `aad` as [`Token::gcm_encrypt`].
    pub fn gcm_decrypt(
        &self,
        key: ObjectHandle,
        nonce: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, AppError> {
        if aad.is_empty() {
            return Err(AppError::bug("AES-GCM in the token with an empty AAD"));
        }
        let out = self.with_key("decrypt", key, |s, key| {
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            match s.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                Ok(plain) => Ok(Some(Zeroizing::new(plain))),
                // A tag that does not check: CKR_ENCRYPTED_DATA_INVALID by the standard, and
                // CKR_GENERAL_ERROR from SoftHSM2 (from any other module, a fault).
                Err(P11Error::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    _,
                )) => Ok(None),
                Err(P11Error::Pkcs11(RvError::GeneralError, _)) if self.softhsm => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok(out)
    }

    /// HMAC-SHA256 of `data` under a [`Usage::Hmac`] key.
    pub fn hmac(&self, key: ObjectHandle, data: &[u8]) -> Result<Zeroizing<[u8; 32]>, AppError> {
        let mac = Zeroizing::new(self.with_key("compute an HMAC", key, |s, key| {
            s.sign(&Mechanism::Sha256Hmac, key, data)
        })?);
        let mut out = Zeroizing::new([0u8; 32]);
        if mac.len() != 32 {
            return Err(AppError::bug("the token's HMAC-SHA256 is not 32 bytes"));
        }
        out.copy_from_slice(&mac);
        Ok(out)
    }

    /// Generates the RSA-3072 key pair labelled `label` that keys are imported under: the
    /// public half encrypts (a brand owner wraps a key with it, outside); the private half can
    /// only unwrap, into the token. Returns the private key's handle.
    pub fn generate_rsa_unwrap(&self, label: &str) -> Result<ObjectHandle, AppError> {
        let l = label.as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Label(l.clone()),
            Attribute::Encrypt(true),
            Attribute::Wrap(false),
            Attribute::Verify(false),
            Attribute::ModulusBits(3072.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Label(l),
            Attribute::Private(true),
            Attribute::Unwrap(true),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        let _writing = self.write_lock()?;
        let (_, key) = self.with("generate an RSA key pair", |s| {
            s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        })?;
        Ok(key)
    }

    /// The private half of the key pair labelled `label`.
    pub fn find_private(&self, label: &str) -> Result<Option<ObjectHandle>, AppError> {
        self.find_class(label, ObjectClass::PRIVATE_KEY)
    }

    /// The modulus and public exponent (big-endian) of the RSA public key labelled `label`.
    pub fn rsa_public(&self, label: &str) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        let key = self
            .find_class(label, ObjectClass::PUBLIC_KEY)?
            .ok_or_else(|| AppError::bug(format!("the token has no public key '{label}'")))?;
        let attrs = self.with("read a public key", |s| {
            s.get_attributes(
                key,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
        })?;
        match attrs.as_slice() {
            [Attribute::Modulus(n), Attribute::PublicExponent(e)] => Ok((n.clone(), e.clone())),
            _ => Err(AppError::bug(format!(
                "the public key '{label}' in the token is not an RSA key"
            ))),
        }
    }

    /// Unwraps a 32-byte key encrypted with RSA-OAEP (SHA-1, MGF1-SHA-1) to the public half
    /// of `unwrapping` into the token, labelled `label`, as sensitive and unextractable as a
    /// generated one. The key's check value (first 3 bytes of AES-256-ECB of sixteen 0x01
    /// bytes under it) must be `check`: the token cannot say how long an unwrapped key is
    /// (SoftHSM2 reports 0), and 16 bytes would unwrap as AES-128, so the check value proves
    /// the right 32 bytes arrived. It is computed on a second unwrap of the same bytes, a
    /// session object allowed AES-ECB alone and destroyed at once: the key kept may not do
    /// ECB. `None` (nothing kept) if the token cannot unwrap it or the check value differs.
    pub fn unwrap_key(
        &self,
        unwrapping: ObjectHandle,
        wrapped: &[u8],
        check: [u8; 3],
        label: &str,
        usage: Usage,
    ) -> Result<Option<ObjectHandle>, AppError> {
        let params = PkcsOaepParams::new(
            MechanismType::SHA1,
            PkcsMgfType::MGF1_SHA1,
            PkcsOaepSource::empty(),
        );
        let mech = Mechanism::RsaPkcsOaep(params);
        // What does not unwrap: a ciphertext for another key, damaged, or not a key.
        let refused = |e: &P11Error| {
            matches!(
                e,
                P11Error::Pkcs11(
                    RvError::WrappedKeyInvalid
                        | RvError::WrappedKeyLenRange
                        | RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange,
                    _,
                )
            ) || (self.softhsm && matches!(e, P11Error::Pkcs11(RvError::GeneralError, _)))
        };
        // No CKA_VALUE_LEN in either template: an unwrapped key's length is what was wrapped
        // (SoftHSM2 refuses the attribute as read-only).
        let probe = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::AllowedMechanisms(vec![MechanismType::AES_ECB]),
        ];
        let matches = self.with("check a wrapped key", |s| {
            let k = match s.unwrap_key(&mech, unwrapping, wrapped, &probe) {
                Ok(k) => k,
                Err(e) if refused(&e) => return Ok(false),
                Err(e) => return Err(e),
            };
            let block = s.encrypt(&Mechanism::AesEcb, k, &[0x01; 16]);
            s.destroy_object(k)?;
            let block = block?;
            Ok(block
                .first_chunk::<3>()
                .is_some_and(|kcv| bool::from(subtle::ConstantTimeEq::ct_eq(&kcv[..], &check[..]))))
        })?;
        if !matches {
            return Ok(None);
        }
        let t = Self::template(label, usage);
        let _writing = self.write_lock()?;
        self.with("unwrap a key", |s| {
            s.unwrap_key(&mech, unwrapping, wrapped, &t).map(Some)
        })
    }

    /// Whether the token lets the key encrypt with AES-ECB (none of the keys made here may: a
    /// test asks).
    pub fn allows_ecb(&self, key: ObjectHandle) -> Result<bool, AppError> {
        self.with("try AES-ECB", |s| {
            match s.encrypt(&Mechanism::AesEcb, key, &[0; 16]) {
                Ok(_) => Ok(true),
                Err(P11Error::Pkcs11(
                    RvError::KeyFunctionNotPermitted
                    | RvError::MechanismInvalid
                    | RvError::KeyTypeInconsistent,
                    _,
                )) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// The labels of the secret keys in the token (a test checks that a refused import left
    /// none behind).
    pub fn secret_key_labels(&self) -> Result<Vec<String>, AppError> {
        self.with("list keys", |s| {
            let mut out = Vec::new();
            for k in s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
            ])? {
                for a in s.get_attributes(k, &[AttributeType::Label])? {
                    if let Attribute::Label(l) = a {
                        out.push(String::from_utf8_lossy(&l).into_owned());
                    }
                }
            }
            Ok(out)
        })
    }

    /// Generates an Ed25519 key pair labelled `label` (the private half signs, never leaves);
    /// returns the private key's handle.
    pub fn generate_ed25519(&self, label: &str) -> Result<ObjectHandle, AppError> {
        let l = label.as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Label(l.clone()),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_PARAMS.to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Label(l),
            Attribute::Private(true),
            Attribute::Sign(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        let _writing = self.write_lock()?;
        let (_, key) = self.with("generate an Ed25519 key pair", |s| {
            s.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
        })?;
        Ok(key)
    }

    /// The private half of the Ed25519 pair labelled `label`.
    pub fn find_ed25519(&self, label: &str) -> Result<Option<ObjectHandle>, AppError> {
        self.find_class(label, ObjectClass::PRIVATE_KEY)
    }

    /// The 32-byte public key of the Ed25519 pair labelled `label`.
    pub fn ed25519_public(&self, label: &str) -> Result<[u8; 32], AppError> {
        let key = self
            .find_class(label, ObjectClass::PUBLIC_KEY)?
            .ok_or_else(|| AppError::bug(format!("the token has no public key '{label}'")))?;
        let attrs = self.with("read a public key", |s| {
            s.get_attributes(key, &[AttributeType::EcPoint])
        })?;
        // CKA_EC_POINT is the point as a DER OCTET STRING (04 20 | 32 bytes); some tokens give
        // the 32 bytes bare. Either way the key is the last 32 bytes.
        let point = match attrs.as_slice() {
            [Attribute::EcPoint(p)] => match p.as_slice() {
                [0x04, 0x20, rest @ ..] if rest.len() == 32 => <[u8; 32]>::try_from(rest).ok(),
                bare => <[u8; 32]>::try_from(bare).ok(),
            },
            _ => None,
        };
        point.ok_or_else(|| {
            AppError::bug(format!(
                "the public key '{label}' in the token is not an Ed25519 point"
            ))
        })
    }

    /// An Ed25519 signature (pure Ed25519, RFC 8032) of `msg`.
    pub fn sign_ed25519(&self, key: ObjectHandle, msg: &[u8]) -> Result<[u8; 64], AppError> {
        let sig = self.with("sign", |s| {
            s.sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed25519)),
                key,
                msg,
            )
        })?;
        sig.as_slice()
            .try_into()
            .map_err(|_| AppError::bug("the token's Ed25519 signature is not 64 bytes"))
    }
}
