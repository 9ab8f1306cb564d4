//! The five tables of the management server and the rules over them.
//!
//! | ref | table                      | type here          |
//! |-----|----------------------------|--------------------|
//! | 700 | pre-write keys             | [`PreWriteKeys`]   |
//! | 500 | product codes              | [`ProductCodes`]   |
//! | 702 | authentication information | [`AuthInfo`]       |
//! | 704 | installed devices          | [`InstalledDevice`]|
//! | 708 | factory records            | [`FactoryRecord`]  |
//!
//! The rules are pure functions over the facts they need ([`plan_issue`], [`decide_install`],
//! [`plan_remap`]), so the SQL server can call them inside a transaction after reading just
//! those facts, and so they live in one place. [`Tables`] applies them to in-memory tables: it
//! is what the property tests drive, and a reference for any other store.
//!
//! One departure from the patent's figure: table 704 keeps the *conversion value* of the pass
//! phrase ([`crate::receipt::conversion_value`]), not the pass phrase, so the authentication
//! server never holds a pass phrase.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::ids::{ApparatusId, FactoryId, KeyId, ProductCode, ProductSerial};
use crate::receipt::{MacMismatch, Receipt, ReceiptInput, conversion_value};
use crate::seal::{Binding, SealedRecord};
use crate::secret::{ConversionValue, PassPhrase, PreWriteKey};

/// Table 700: key identifier -> pre-write key.
#[derive(Debug, Default, Clone)]
pub struct PreWriteKeys(BTreeMap<KeyId, PreWriteKey>);

impl PreWriteKeys {
    /// Adds a key. A key identifier names one key forever, so a second insert is refused.
    pub fn insert(&mut self, key_id: KeyId, key: PreWriteKey) -> Result<(), TableError> {
        if self.0.contains_key(&key_id) {
            return Err(TableError::DuplicateKeyId(key_id));
        }
        self.0.insert(key_id, key);
        Ok(())
    }

    /// The key named `key_id`.
    pub fn get(&self, key_id: KeyId) -> Option<&PreWriteKey> {
        self.0.get(&key_id)
    }

    /// Whether the key exists.
    pub fn contains(&self, key_id: KeyId) -> bool {
        self.0.contains_key(&key_id)
    }
}

/// Table 500: product code -> the key identifier of its current pre-write key.
#[derive(Debug, Default, Clone)]
pub struct ProductCodes(BTreeMap<ProductCode, KeyId>);

impl ProductCodes {
    /// The current key identifier of a product code.
    pub fn key_of(&self, code: &ProductCode) -> Option<KeyId> {
        self.0.get(code).copied()
    }

    /// Maps a new product code (or remaps an existing one) after [`plan_remap`] allowed it.
    pub fn set(&mut self, code: ProductCode, key_id: KeyId) {
        self.0.insert(code, key_id);
    }

    /// All mappings.
    pub fn iter(&self) -> impl Iterator<Item = (&ProductCode, &KeyId)> {
        self.0.iter()
    }
}

/// Where an authentication-information entry is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// In the pool, free to be issued.
    Unissued,
    /// Sealed and handed to a factory for a product code; not yet installed.
    Issued {
        /// The factory that holds the record.
        factory: FactoryId,
        /// The product code it was issued for.
        product: ProductCode,
    },
    /// Installed in a unit (table 704 has the row). Final.
    Installed {
        /// The unit.
        product_serial: ProductSerial,
    },
}

/// A row of table 702: an identity and its secret, bound to a key identifier.
#[derive(Debug, Clone)]
pub struct AuthInfo {
    /// The identity.
    pub apparatus_id: ApparatusId,
    /// The secret.
    pub pass_phrase: PassPhrase,
    /// The pre-write key it will be sealed under.
    pub key_id: KeyId,
    /// Its life-cycle state.
    pub state: EntryState,
}

/// A row of table 704.
#[derive(Debug, Clone)]
pub struct InstalledDevice {
    /// The identity.
    pub apparatus_id: ApparatusId,
    /// The conversion value of its pass phrase (what authentication checks against).
    pub conversion: ConversionValue,
    /// The unit it is in.
    pub product_serial: ProductSerial,
}

/// A row of table 708: what a factory receives. No secret in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryRecord {
    /// The identity, in clear.
    pub apparatus_id: ApparatusId,
    /// `ENCRYPTED(apparatus ID + pass phrase)`.
    pub sealed: SealedRecord,
    /// Empty until the record is installed.
    pub product_serial: Option<ProductSerial>,
}

impl FactoryRecord {
    /// The key identifier, read from the sealed record's header.
    pub fn key_id(&self) -> KeyId {
        self.sealed.key_id()
    }
}

/// How many records a factory may receive for a product code, and how many it has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Most records ever issued.
    pub limit: u64,
    /// Records issued so far (returned ones count back).
    pub used: u64,
}

impl Quota {
    /// Records still allowed.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// Why a table operation was refused. Messages say what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// The key identifier is already in table 700.
    DuplicateKeyId(KeyId),
    /// The apparatus ID is already in table 702.
    DuplicateApparatusId(ApparatusId),
    /// No such key identifier in table 700.
    UnknownKeyId(KeyId),
    /// No such product code in table 500.
    UnknownProduct(ProductCode),
    /// No such apparatus ID in table 702.
    UnknownApparatus(ApparatusId),
    /// Zero records asked for.
    NothingRequested,
    /// More records asked for than the factory's quota allows.
    OverQuota {
        /// Asked for.
        requested: u64,
        /// Still allowed.
        remaining: u64,
    },
    /// Not enough unissued entries bound to the product's current key.
    NotEnoughEntries {
        /// Asked for.
        requested: u64,
        /// Unissued entries bound to the key.
        available: u64,
        /// The product's current key.
        key_id: KeyId,
    },
    /// The entry was never issued, so it cannot be installed or returned.
    NotIssued(ApparatusId),
    /// The entry was issued to another factory.
    NotYourRecord(ApparatusId),
    /// The apparatus ID is already installed in another unit.
    AlreadyInstalled {
        /// The identity.
        apparatus_id: ApparatusId,
        /// The unit that has it.
        product_serial: ProductSerial,
    },
    /// The unit already has another identity.
    SerialTaken {
        /// The unit.
        product_serial: ProductSerial,
        /// The identity it has.
        apparatus_id: ApparatusId,
    },
    /// The receipt does not prove that a device opened this record.
    BadReceipt(ApparatusId),
    /// The product code already uses that key.
    SameKey(KeyId),
    /// A lock was reported for an identity that is not recorded as installed in that unit.
    NotInstalled {
        /// The identity.
        apparatus_id: ApparatusId,
        /// The unit the lock was reported for.
        product_serial: ProductSerial,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::DuplicateKeyId(k) => {
                write!(
                    f,
                    "key identifier {k} already exists; choose a new identifier"
                )
            }
            TableError::DuplicateApparatusId(a) => {
                write!(
                    f,
                    "apparatus ID {a} already exists; apparatus IDs must be unique"
                )
            }
            TableError::UnknownKeyId(k) => {
                write!(f, "no pre-write key with identifier {k}; add the key first")
            }
            TableError::UnknownProduct(p) => {
                write!(
                    f,
                    "unknown product code {p}; map it to a key identifier first"
                )
            }
            TableError::UnknownApparatus(a) => write!(f, "unknown apparatus ID {a}"),
            TableError::NothingRequested => f.write_str("ask for at least one record"),
            TableError::OverQuota {
                requested,
                remaining,
            } => write!(
                f,
                "quota exceeded: {requested} requested, {remaining} left for this factory and product; ask the operator to raise the quota"
            ),
            TableError::NotEnoughEntries {
                requested,
                available,
                key_id,
            } => write!(
                f,
                "only {available} unissued entries under key {key_id} for {requested} requested; generate or import more"
            ),
            TableError::NotIssued(a) => write!(f, "apparatus ID {a} was never issued"),
            TableError::NotYourRecord(a) => {
                write!(f, "apparatus ID {a} was issued to another factory")
            }
            TableError::AlreadyInstalled {
                apparatus_id,
                product_serial,
            } => write!(
                f,
                "apparatus ID {apparatus_id} is already installed in unit {product_serial}"
            ),
            TableError::SerialTaken {
                product_serial,
                apparatus_id,
            } => write!(
                f,
                "unit {product_serial} already has identity {apparatus_id}"
            ),
            TableError::BadReceipt(a) => write!(
                f,
                "the receipt for {a} is not valid: the device did not prove it installed this record"
            ),
            TableError::SameKey(k) => write!(f, "the product code already uses key {k}"),
            TableError::NotInstalled {
                apparatus_id,
                product_serial,
            } => write!(
                f,
                "apparatus ID {apparatus_id} is not recorded as installed in unit {product_serial}: report the installation before the lock"
            ),
        }
    }
}

impl core::error::Error for TableError {}

/// Rule "issue N": checks the request against the product's mapping and the quota and picks
/// the first `requested` unissued entries bound to the product's *current* key.
///
/// `candidates` may contain anything; only unissued entries with the right key are taken.
pub fn plan_issue<'a>(
    product: &ProductCode,
    product_key: Option<KeyId>,
    quota: Quota,
    requested: u64,
    candidates: impl IntoIterator<Item = &'a AuthInfo>,
) -> Result<(KeyId, Vec<&'a AuthInfo>), TableError> {
    let key_id = product_key.ok_or(TableError::UnknownProduct(*product))?;
    if requested == 0 {
        return Err(TableError::NothingRequested);
    }
    if requested > quota.remaining() {
        return Err(TableError::OverQuota {
            requested,
            remaining: quota.remaining(),
        });
    }
    let picked: Vec<&AuthInfo> = candidates
        .into_iter()
        .filter(|e| e.key_id == key_id && e.state == EntryState::Unissued)
        .take(usize::try_from(requested).unwrap_or(usize::MAX))
        .collect();
    if (picked.len() as u64) < requested {
        return Err(TableError::NotEnoughEntries {
            requested,
            available: picked.len() as u64,
            key_id,
        });
    }
    Ok((key_id, picked))
}

/// The outcome of an accepted installation report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallDecision {
    /// New: record it in table 704.
    Record,
    /// The same report was accepted before: succeed, change nothing.
    AlreadyRecorded,
}

/// Rule "record an installation": at most once per apparatus ID, one identity per product
/// serial, only by the factory the record was issued to. The receipt is checked separately
/// ([`Receipt::verify`]) before this.
///
/// `serial_holder` is the apparatus ID table 704 already has for `product_serial`, if any.
pub fn decide_install(
    apparatus_id: &ApparatusId,
    state: Option<&EntryState>,
    factory: &FactoryId,
    product_serial: &ProductSerial,
    serial_holder: Option<&ApparatusId>,
) -> Result<InstallDecision, TableError> {
    match state {
        None => Err(TableError::UnknownApparatus(*apparatus_id)),
        Some(EntryState::Unissued) => Err(TableError::NotIssued(*apparatus_id)),
        Some(EntryState::Installed { product_serial: s }) if s == product_serial => {
            Ok(InstallDecision::AlreadyRecorded)
        }
        Some(EntryState::Installed { product_serial: s }) => Err(TableError::AlreadyInstalled {
            apparatus_id: *apparatus_id,
            product_serial: *s,
        }),
        Some(EntryState::Issued { factory: f, .. }) if f != factory => {
            Err(TableError::NotYourRecord(*apparatus_id))
        }
        Some(EntryState::Issued { .. }) => match serial_holder {
            Some(other) if other != apparatus_id => Err(TableError::SerialTaken {
                product_serial: *product_serial,
                apparatus_id: *other,
            }),
            _ => Ok(InstallDecision::Record),
        },
    }
}

/// An installation as table 704 has it, for the lock rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstalledUnit<'a> {
    /// The factory that reported it.
    pub factory: &'a FactoryId,
    /// The unit.
    pub product_serial: &'a ProductSerial,
    /// Whether a lock was recorded for it already.
    pub locked: bool,
}

/// Rule "record a lock": only for an identity recorded as installed in that unit, only by the
/// factory that installed it, at most once (a repeat changes nothing).
///
/// `known`: whether table 702 has the apparatus ID; `installed`: its row of table 704.
pub fn decide_lock(
    apparatus_id: &ApparatusId,
    known: bool,
    installed: Option<InstalledUnit<'_>>,
    factory: &FactoryId,
    product_serial: &ProductSerial,
) -> Result<InstallDecision, TableError> {
    let not_installed = || TableError::NotInstalled {
        apparatus_id: *apparatus_id,
        product_serial: *product_serial,
    };
    match installed {
        None if !known => Err(TableError::UnknownApparatus(*apparatus_id)),
        None => Err(not_installed()),
        Some(u) if u.factory != factory => Err(TableError::NotYourRecord(*apparatus_id)),
        Some(u) if u.product_serial != product_serial => Err(not_installed()),
        Some(u) if u.locked => Ok(InstallDecision::AlreadyRecorded),
        Some(_) => Ok(InstallDecision::Record),
    }
}

/// Rule "remap a product code": the new key must exist and differ from the current one.
/// Returns the old key identifier (`None` for a new product code).
pub fn plan_remap(
    current: Option<KeyId>,
    new_key: KeyId,
    new_key_exists: bool,
) -> Result<Option<KeyId>, TableError> {
    if !new_key_exists {
        return Err(TableError::UnknownKeyId(new_key));
    }
    if current == Some(new_key) {
        return Err(TableError::SameKey(new_key));
    }
    Ok(current)
}

/// An installation report from a factory station.
#[derive(Debug, Clone, Copy)]
pub struct InstallReport {
    /// The reporting factory.
    pub factory: FactoryId,
    /// The identity installed.
    pub apparatus_id: ApparatusId,
    /// The unit.
    pub product_serial: ProductSerial,
    /// The device's receipt.
    pub receipt: Receipt,
}

/// The five tables in memory, with the rules applied. Reference implementation and test
/// subject; the server keeps the same tables in SQL and calls the same rule functions.
#[derive(Debug, Default)]
pub struct Tables {
    /// Table 700.
    pub keys: PreWriteKeys,
    /// Table 500.
    pub products: ProductCodes,
    /// Table 702, by apparatus ID (in insertion order of IDs for issuing).
    pub auth: BTreeMap<ApparatusId, AuthInfo>,
    /// Table 704, by apparatus ID.
    pub installed: BTreeMap<ApparatusId, InstalledDevice>,
    /// Table 708, by apparatus ID.
    pub factory_records: BTreeMap<ApparatusId, FactoryRecord>,
    /// Quotas by (factory, product code).
    pub quotas: BTreeMap<(FactoryId, ProductCode), Quota>,
}

impl Tables {
    /// Maps or remaps a product code. Records issued for it but not installed are re-sealed
    /// under the new key (their entries move to the new key identifier), so the factory's next
    /// download carries records its new devices can open. Returns how many were re-sealed.
    pub fn map_product<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        code: ProductCode,
        new_key: KeyId,
    ) -> Result<usize, TableError> {
        plan_remap(
            self.products.key_of(&code),
            new_key,
            self.keys.contains(new_key),
        )?;
        let key = self
            .keys
            .get(new_key)
            .ok_or(TableError::UnknownKeyId(new_key))?;
        let mut resealed = 0;
        for entry in self.auth.values_mut() {
            if matches!(&entry.state, EntryState::Issued { product, .. } if *product == code) {
                entry.key_id = new_key;
                let sealed = SealedRecord::seal(
                    rng,
                    key,
                    new_key,
                    &Binding::Model,
                    &entry.apparatus_id,
                    &entry.pass_phrase,
                );
                self.factory_records.insert(
                    entry.apparatus_id,
                    FactoryRecord {
                        apparatus_id: entry.apparatus_id,
                        sealed,
                        product_serial: None,
                    },
                );
                resealed += 1;
            }
        }
        self.products.set(code, new_key);
        Ok(resealed)
    }

    /// Adds an entry to table 702 (unissued).
    pub fn add_auth_info(
        &mut self,
        apparatus_id: ApparatusId,
        pass_phrase: PassPhrase,
        key_id: KeyId,
    ) -> Result<(), TableError> {
        if !self.keys.contains(key_id) {
            return Err(TableError::UnknownKeyId(key_id));
        }
        if self.auth.contains_key(&apparatus_id) {
            return Err(TableError::DuplicateApparatusId(apparatus_id));
        }
        self.auth.insert(
            apparatus_id,
            AuthInfo {
                apparatus_id,
                pass_phrase,
                key_id,
                state: EntryState::Unissued,
            },
        );
        Ok(())
    }

    /// Issues `n` sealed records of `product` to `factory`, within its quota.
    pub fn issue<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        factory: FactoryId,
        product: ProductCode,
        n: u64,
    ) -> Result<Vec<FactoryRecord>, TableError> {
        let quota = self
            .quotas
            .get(&(factory, product))
            .copied()
            .unwrap_or_default();
        let (key_id, picked) = plan_issue(
            &product,
            self.products.key_of(&product),
            quota,
            n,
            self.auth.values(),
        )?;
        let ids: Vec<ApparatusId> = picked.iter().map(|e| e.apparatus_id).collect();
        let key = self
            .keys
            .get(key_id)
            .ok_or(TableError::UnknownKeyId(key_id))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(entry) = self.auth.get_mut(&id) else {
                continue;
            };
            let sealed =
                SealedRecord::seal(rng, key, key_id, &Binding::Model, &id, &entry.pass_phrase);
            entry.state = EntryState::Issued { factory, product };
            let record = FactoryRecord {
                apparatus_id: id,
                sealed,
                product_serial: None,
            };
            self.factory_records.insert(id, record.clone());
            out.push(record);
        }
        self.quotas.entry((factory, product)).or_default().used += out.len() as u64;
        Ok(out)
    }

    /// Records an installation after checking its receipt. Exactly once: the same report
    /// again is [`InstallDecision::AlreadyRecorded`] and changes nothing.
    pub fn report(&mut self, report: &InstallReport) -> Result<InstallDecision, TableError> {
        let id = report.apparatus_id;
        let entry = self.auth.get(&id).ok_or(TableError::UnknownApparatus(id))?;
        // The receipt is checked first, so a report without a valid proof learns nothing
        // about other units (which serial holds which identity). Entries never issued have no
        // record to check against and fall through to `NotIssued`.
        let cv = conversion_value(&id, &entry.pass_phrase);
        if self.factory_records.contains_key(&id) {
            self.check_receipt(report, &cv)?;
        }
        let serial_holder = self
            .installed
            .values()
            .find(|d| d.product_serial == report.product_serial)
            .map(|d| d.apparatus_id);
        let decision = decide_install(
            &id,
            Some(&entry.state),
            &report.factory,
            &report.product_serial,
            serial_holder.as_ref(),
        )?;
        if decision == InstallDecision::Record {
            self.installed.insert(
                id,
                InstalledDevice {
                    apparatus_id: id,
                    conversion: cv,
                    product_serial: report.product_serial,
                },
            );
            if let Some(e) = self.auth.get_mut(&id) {
                e.state = EntryState::Installed {
                    product_serial: report.product_serial,
                };
            }
            if let Some(r) = self.factory_records.get_mut(&id) {
                r.product_serial = Some(report.product_serial);
            }
        }
        Ok(decision)
    }

    fn check_receipt(
        &self,
        report: &InstallReport,
        cv: &ConversionValue,
    ) -> Result<(), TableError> {
        let id = report.apparatus_id;
        let bad = TableError::BadReceipt(id);
        let record = self.factory_records.get(&id).ok_or(bad.clone())?;
        let key = self.keys.get(record.key_id()).ok_or(bad.clone())?;
        // The issue nonce lives only inside the sealed record: the server reopens its own
        // record to learn it.
        let opened = record
            .sealed
            .open(key, &id, None)
            .map_err(|_| bad.clone())?;
        report
            .receipt
            .verify(
                cv,
                &ReceiptInput {
                    apparatus_id: &id,
                    product_serial: &report.product_serial,
                    issue_nonce: &opened.issue_nonce,
                    record_digest: &record.sealed.digest(),
                },
            )
            .map_err(|MacMismatch| bad)
    }

    /// Returns an issued, never-installed record to the pool; its quota is given back.
    pub fn release(&mut self, factory: &FactoryId, id: &ApparatusId) -> Result<(), TableError> {
        let entry = self
            .auth
            .get_mut(id)
            .ok_or(TableError::UnknownApparatus(*id))?;
        match entry.state {
            EntryState::Issued {
                factory: f,
                product,
            } if f == *factory => {
                entry.state = EntryState::Unissued;
                self.factory_records.remove(id);
                if let Some(q) = self.quotas.get_mut(&(f, product)) {
                    q.used = q.used.saturating_sub(1);
                }
                Ok(())
            }
            EntryState::Issued { .. } => Err(TableError::NotYourRecord(*id)),
            EntryState::Unissued => Err(TableError::NotIssued(*id)),
            EntryState::Installed { product_serial } => Err(TableError::AlreadyInstalled {
                apparatus_id: *id,
                product_serial,
            }),
        }
    }
}
