//! The audit log as a transparency log: the sequencer, the stored Merkle tree, signed
//! checkpoints and proofs (docs/audit.md).
//!
//! A business transaction only inserts its entries into `audit_pending` ([`crate::audit::append`]),
//! so no transaction waits for another to be numbered. The sequencer ([`sequence`]) then takes
//! pending entries in batches, each batch one transaction: it numbers them after the log's last
//! entry, chains them (the hash chain of earlier versions goes on, so a chain head an auditor
//! saved still checks), adds their leaves and every subtree they complete to `audit_tree`,
//! deletes them from `audit_pending`, and signs a checkpoint of the new size. One sequencer runs
//! at a time: on PostgreSQL a transaction-scoped advisory lock, on SQLite the write
//! transaction itself. A sequencer killed mid-batch leaves its batch pending, to be sequenced
//! by the next; one that committed has deleted what it sequenced, so nothing is sequenced
//! twice.
//!
//! Leaf `i` (from 0) is the audit entry numbered `i + 1`; its bytes are [`leaf_bytes`].

use crate::db;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;

use imprint_core::note::{self, Checkpoint, VerifierKey};
use imprint_core::tlog::{self, Hash, Subtrees};
use sha2::{Digest, Sha256};

use crate::audit::{self, GENESIS};
use crate::custody::{Custody, SigningKey};
use crate::error::AppError;
use crate::store::{self, Backend, Conn, Store};

/// Entries per sequencing transaction: a batch holds SQLite's one writer for about 5 ms, which
/// a request that writes may wait behind (2,000 held it for 20 ms: the field authentication
/// benchmark's p99 went from 66 to 34 ms at 500, and 200 cost a third of its throughput in
/// commits and checkpoint signatures; `docs/benchmarks.md`).
pub const BATCH: usize = 500;

/// The PostgreSQL advisory lock key the sequencer holds ("imprlog\0" as a number).
const SEQUENCER_LOCK: i64 = 0x696d_7072_6c6f_6700;

/// Rows per multi-row insert.
const CHUNK: usize = 200;

/// The bytes of one leaf: `"imprint-audit-leaf-v1"`, then the entry's number, time (Unix
/// milliseconds), actor, action and detail, each as its decimal or UTF-8 text preceded by
/// its length in bytes (8 bytes, big-endian).
pub fn leaf_bytes(seq: i64, at: &str, actor: &str, action: &str, detail: &str) -> Vec<u8> {
    let seq = seq.to_string();
    let fields = [seq.as_str(), at, actor, action, detail];
    let mut out = Vec::with_capacity(21 + fields.iter().map(|f| 8 + f.len()).sum::<usize>());
    out.extend_from_slice(b"imprint-audit-leaf-v1");
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// The leaf hash of an entry as read back.
pub fn entry_leaf(e: &audit::Entry) -> Hash {
    tlog::leaf_hash(&leaf_bytes(e.seq, &e.at, &e.actor, &e.action, &e.detail))
}

/// The log's name (a checkpoint's first line, and its key's name): `imprint/audit/` and the
/// first 6 bytes of SHA-256 of the log's public key in hex, so that two installations never
/// share one.
pub fn origin_of(public: &[u8; 32]) -> String {
    let [a, b, c, d, e, f, ..]: [u8; 32] = Sha256::digest(public).into();
    format!("imprint/audit/{}", hex::encode([a, b, c, d, e, f]))
}

/// The log's verifier key (`NAME+KEYID+KEY`): what an auditor, a witness or a station is
/// given once, out of band, to check checkpoints.
pub async fn verifier_key(store: &Store, custody: &Custody) -> Result<VerifierKey, AppError> {
    let public = custody.public_key(store, SigningKey::Log).await?;
    Ok(VerifierKey {
        name: origin_of(&public),
        public,
    })
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The signed note.
    pub note: String,
}

/// The latest checkpoint, if the log has any entries sequenced.
pub async fn latest(conn: &mut Conn) -> Result<Option<Stored>, AppError> {
    let row =
        db::query("SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|r| {
        Ok(Stored {
            size: size_of(r.try_get("size")?)?,
            root: hash_of(r.try_get("root")?)?,
            note: r.try_get("note")?,
        })
    })
    .transpose()
}

/// Sequences everything pending (and, on the first run after an upgrade, hashes the entries
/// of the old hash chain into the tree as its first leaves). Returns the last checkpoint made,
/// or `None` when there was nothing to do.
pub async fn sequence(store: &Store, custody: &Custody) -> Result<Option<Stored>, AppError> {
    let mut last = None;
    loop {
        let made = store
            .write(custody, |tx, custody| Box::pin(sequence_batch(tx, custody)))
            .await?;
        match made {
            Some(cp) => last = Some(cp),
            None => return Ok(last),
        }
    }
}

/// Sequences what is pending before a read of the log, so that the read holds everything
/// committed before it. A log that cannot be sequenced (entries deleted under it: `verify`
/// says which) is still read as it is; the failure goes to the server's log.
pub async fn sequence_before_read(store: &Store, custody: &Custody) {
    // Nothing pending (the usual case for a page of the console): no write transaction. The
    // background sequencer still signs what an earlier batch left unsigned.
    let pending = match store.read().await {
        Ok(mut conn) => {
            db::query("SELECT 1 AS one FROM audit_pending LIMIT 1")
                .fetch_optional(&mut conn)
                .await
        }
        Err(e) => Err(e),
    };
    match pending {
        Ok(None) => return,
        Ok(Some(_)) => {}
        Err(e) => tracing::warn!(error = %e, "could not look for pending audit entries"),
    }
    if let Err(e) = sequence(store, custody).await {
        tracing::warn!(error = %e, "the audit log could not be sequenced before a read; read as it is");
    }
}

/// One batch in the caller's transaction; `None` when nothing was pending.
async fn sequence_batch(conn: &mut Conn, custody: &Custody) -> Result<Option<Stored>, AppError> {
    if store::backend_of(conn) == Backend::Postgres {
        db::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let tree_size = latest(conn).await?.map_or(0, |cp| cp.size);
    let head = db::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (log_size, chain_head) = match head {
        Some(r) => (size_of(r.try_get("seq")?)?, r.try_get::<String, _>("hash")?),
        None => (0, GENESIS.to_string()),
    };
    if log_size < tree_size {
        return Err(AppError::bug(format!(
            "the audit log has {log_size} entries but its tree {tree_size}: entries were deleted"
        )));
    }
    let leaves = if log_size > tree_size {
        let legacy: i64 = db::query("SELECT value FROM counters WHERE name = 'audit_legacy'")
            .fetch_one(&mut *conn)
            .await?
            .try_get("value")?;
        if tree_size >= size_of(legacy)? {
            return Err(AppError::bug(format!(
                "entry {} of the audit log is in no tree and was not written by the sequencer",
                tree_size + 1
            )));
        }
        // Entries of the hash chain from before the tree: they become the tree's first
        // leaves, in their order.
        let upto = size_of(legacy)?.min(tree_size + BATCH as u64);
        audit::read(conn, tree_size as i64 + 1, (upto - tree_size) as i64)
            .await?
            .iter()
            .map(entry_leaf)
            .collect::<Vec<_>>()
    } else {
        sequence_pending(conn, log_size, chain_head).await?
    };
    if leaves.is_empty() {
        return Ok(None);
    }
    let mut frontier = Frontier::load(conn, tree_size).await?;
    let mut rows = Vec::with_capacity(leaves.len() * 2);
    for leaf in leaves {
        frontier.push(leaf, &mut rows);
    }
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO audit_tree (level, idx, hash) VALUES {}",
            store::values(chunk.len(), 3)
        );
        let mut q = db::query(store::bulk(conn, sql));
        for (level, idx, hash) in chunk {
            q = q
                .bind(i64::from(*level))
                .bind(*idx as i64)
                .bind(hash.to_vec());
        }
        q.execute(&mut *conn).await?;
    }
    let size = frontier.size;
    let root = frontier.root();
    let note = sign(conn, custody, size, root).await?;
    db::query("INSERT INTO audit_checkpoints (size, root, at_ms, note) VALUES ($1, $2, $3, $4)")
        .bind(size as i64)
        .bind(root.to_vec())
        .bind(crate::now_millis())
        .bind(note.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(Some(Stored { size, root, note }))
}

/// Signs the checkpoint of `size` with the log's key.
async fn sign(
    conn: &mut Conn,
    custody: &Custody,
    size: u64,
    root: Hash,
) -> Result<String, AppError> {
    let public = custody.ed25519_public(conn, SigningKey::Log).await?;
    let checkpoint = Checkpoint {
        origin: origin_of(&public),
        size,
        root,
    };
    let (public, signature) = custody
        .sign_ed25519(conn, SigningKey::Log, checkpoint.body().as_bytes())
        .await?;
    let key = VerifierKey {
        name: checkpoint.origin.clone(),
        public,
    };
    Ok(note::signed(&checkpoint, &key, &signature))
}

/// What an entry's detail says it is about, for the indexed columns the console and the
/// proofs search by: `subject`, the unit (the apparatus ID of a report, a refused report, a
/// lock, a field authentication, a revocation), and the station that sent it. Neither is part
/// of the leaf.
fn about(detail: &str) -> (Option<String>, Option<String>) {
    /// The two fields only: the rest of the detail is skipped, not built into a value (that
    /// was the sequencer's largest cost per entry).
    #[derive(serde::Deserialize)]
    struct About<'a> {
        #[serde(borrow, default)]
        apparatus_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        station: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<About<'_>>(detail) {
        Ok(a) => (
            a.apparatus_id.map(std::borrow::Cow::into_owned),
            a.station.map(std::borrow::Cow::into_owned),
        ),
        Err(_) => (None, None),
    }
}

/// Moves up to [`BATCH`] pending entries into the log after entry `log_size`, chained from
/// `prev`, and returns their leaf hashes.
async fn sequence_pending(
    conn: &mut Conn,
    log_size: u64,
    mut prev: String,
) -> Result<Vec<Hash>, AppError> {
    let rows = db::query(
        "SELECT id, at_ms, actor, action, detail FROM audit_pending ORDER BY id LIMIT $1",
    )
    .bind(BATCH as i64)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut entries = Vec::with_capacity(rows.len());
    let mut leaves = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        ids.push(r.try_get::<i64, _>("id")?);
        let seq = (log_size + 1 + i as u64) as i64;
        let at_ms: i64 = r.try_get("at_ms")?;
        let at = at_ms.to_string();
        let actor: String = r.try_get("actor")?;
        let action: String = r.try_get("action")?;
        let detail: String = r.try_get("detail")?;
        let hash = audit::entry_hash(seq, &at, &actor, &action, &detail, &prev);
        leaves.push(tlog::leaf_hash(&leaf_bytes(
            seq, &at, &actor, &action, &detail,
        )));
        entries.push((
            seq,
            at_ms,
            actor,
            action,
            detail,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    for chunk in entries.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO audit_log (seq, at_ms, actor, action, detail, prev_hash, hash, subject, station) VALUES {}",
            store::values(chunk.len(), 9)
        );
        let mut q = db::query(store::bulk(conn, sql));
        for (seq, at_ms, actor, action, detail, prev, hash) in chunk {
            let (subject, station) = about(detail);
            q = q
                .bind(*seq)
                .bind(*at_ms)
                .bind(actor.as_str())
                .bind(action.as_str())
                .bind(detail.as_str())
                .bind(prev.as_str())
                .bind(hash.as_str())
                .bind(subject)
                .bind(station);
        }
        q.execute(&mut *conn).await?;
    }
    // By the ids read, never by a range: on PostgreSQL an entry with a smaller id may commit
    // after this batch was read, and a range would delete it unsequenced.
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM audit_pending WHERE id IN ({})",
            store::list(1, chunk.len())
        );
        let mut q = db::query(store::bulk(conn, sql));
        for id in chunk {
            q = q.bind(*id);
        }
        let done = q.execute(&mut *conn).await?.rows_affected();
        if done != chunk.len() as u64 {
            return Err(AppError::bug(
                "pending audit entries vanished under the sequencer's lock",
            ));
        }
    }
    Ok(leaves)
}

/// The right edge of the tree: the complete subtrees that make up its first `size` leaves,
/// largest first (one per set bit of `size`). Appending a leaf merges equal-sized neighbours,
/// and each merge is a new complete subtree to store.
struct Frontier {
    size: u64,
    /// (level, index at that level, hash).
    nodes: Vec<(u32, u64, Hash)>,
}

impl Frontier {
    async fn load(conn: &mut Conn, size: u64) -> Result<Frontier, AppError> {
        let mut wanted = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                wanted.push((level, start >> level));
                start += 1 << level;
            }
        }
        let found = fetch(conn, &wanted).await?;
        let nodes = wanted
            .into_iter()
            .map(|(level, idx)| {
                found
                    .get(&(level, idx))
                    .map(|h| (level, idx, *h))
                    .ok_or_else(|| missing(level, idx))
            })
            .collect::<Result<_, _>>()?;
        Ok(Frontier { size, nodes })
    }

    fn push(&mut self, leaf: Hash, rows: &mut Vec<(u32, u64, Hash)>) {
        let mut node = (0u32, self.size, leaf);
        rows.push(node);
        while let Some(&(level, idx, left)) = self.nodes.last() {
            if level != node.0 {
                break;
            }
            self.nodes.pop();
            node = (level + 1, idx >> 1, tlog::node_hash(&left, &node.2));
            rows.push(node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(&(_, _, mut root)) = nodes.next() else {
            return tlog::empty_root();
        };
        for (_, _, left) in nodes {
            root = tlog::node_hash(left, &root);
        }
        root
    }
}

fn missing(level: u32, idx: u64) -> AppError {
    AppError::bug(format!(
        "the audit tree has no node at level {level}, index {idx}"
    ))
}

/// Reads stored subtree hashes.
async fn fetch(
    conn: &mut Conn,
    wanted: &[(u32, u64)],
) -> Result<HashMap<(u32, u64), Hash>, AppError> {
    let mut found = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(CHUNK) {
        let mut sql = String::from("SELECT level, idx, hash FROM audit_tree WHERE ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(level = ${} AND idx = ${})",
                2 * i + 1,
                2 * i + 2
            ));
        }
        let mut q = db::query(store::bulk(conn, sql));
        for (level, idx) in chunk {
            q = q.bind(i64::from(*level)).bind(*idx as i64);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let level = u32::try_from(r.try_get::<i64, _>("level")?)
                .map_err(|_| AppError::bug("a stored tree level is out of range"))?;
            let idx = size_of(r.try_get("idx")?)?;
            found.insert((level, idx), hash_of(r.try_get("hash")?)?);
        }
    }
    Ok(found)
}

/// Records which complete subtrees a proof needs, without their hashes (the proofs' shape
/// never depends on the hashes), so that they are read in one query.
#[derive(Default)]
struct Wanted(RefCell<Vec<(u32, u64)>>);

impl Subtrees for Wanted {
    type Error = Infallible;
    fn complete(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
        self.0.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// Subtree hashes read from the store.
struct Fetched(HashMap<(u32, u64), Hash>);

impl Subtrees for Fetched {
    type Error = AppError;
    fn complete(&self, level: u32, index: u64) -> Result<Hash, AppError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or_else(|| missing(level, index))
    }
}

/// Which proof.
#[derive(Clone, Copy, Debug)]
pub enum Proof {
    /// Of leaf `index` in the tree of `size` leaves.
    Inclusion {
        /// The leaf, from 0.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// Between the trees of `old` and `new` leaves.
    Consistency {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
}

/// A proof's hashes, from the stored tree. Sizes past the latest checkpoint are refused: a
/// proof is only worth something against a root the log signed.
pub async fn prove(conn: &mut Conn, proof: Proof) -> Result<Vec<Hash>, AppError> {
    let signed = latest(conn).await?.map_or(0, |c| c.size);
    let largest = match proof {
        Proof::Inclusion { index, size } => {
            if index >= size {
                return Err(AppError::BadRequest(format!(
                    "leaf {index} is not in a tree of {size} entries (leaves count from 0)"
                )));
            }
            size
        }
        Proof::Consistency { old, new } => {
            if old > new {
                return Err(AppError::BadRequest(format!(
                    "the old size {old} is larger than the new size {new}"
                )));
            }
            new
        }
    };
    if largest > signed {
        return Err(AppError::NotFound(format!(
            "the log has signed no checkpoint of {largest} entries yet (its latest is of {signed})"
        )));
    }
    let wanted = Wanted::default();
    match run(&wanted, proof) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(AppError::bug(format!("a proof could not be built: {e}"))),
        Err(never) => match never {},
    }
    let nodes = wanted.0.into_inner();
    let fetched = Fetched(fetch(conn, &nodes).await?);
    run(&fetched, proof)?.map_err(|e| AppError::bug(format!("a proof could not be built: {e}")))
}

fn run<S: Subtrees>(
    source: &S,
    proof: Proof,
) -> Result<Result<Vec<Hash>, tlog::ProofError>, S::Error> {
    match proof {
        Proof::Inclusion { index, size } => tlog::inclusion_proof(source, index, size),
        Proof::Consistency { old, new } => tlog::consistency_proof(source, old, new),
    }
}

/// A hash as the API and checkpoints write it: base64, standard, padded.
pub fn base64(hash: &Hash) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(hash)
}

fn size_of(v: i64) -> Result<u64, AppError> {
    u64::try_from(v).map_err(|_| AppError::bug(format!("a stored size is negative: {v}")))
}

fn hash_of(v: Vec<u8>) -> Result<Hash, AppError> {
    Hash::try_from(v.as_slice()).map_err(|_| AppError::bug("a stored hash is not 32 bytes"))
}

/// A checkpoint an auditor saved from an earlier verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// A chain head `seq:hash` (what verification printed before the log was a tree).
    Head(i64, String),
    /// A signed checkpoint.
    Note(String),
}

impl Saved {
    /// Reads `seq:hash` or a signed checkpoint's text.
    pub fn parse(text: &str) -> Result<Saved, AppError> {
        if text.contains('\n') {
            return Ok(Saved::Note(text.to_string()));
        }
        let (seq, hash) = text.split_once(':').ok_or_else(|| {
            AppError::BadRequest(
                "checkpoint: a signed checkpoint (several lines) or a chain head seq:hash".into(),
            )
        })?;
        let seq = seq.parse().map_err(|_| {
            AppError::BadRequest("checkpoint: the seq of seq:hash is a number".into())
        })?;
        Ok(Saved::Head(seq, hash.to_string()))
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub entries: i64,
    /// The last entry's chain hash.
    pub head: String,
    /// The latest signed checkpoint (to save for the next verification).
    pub checkpoint: Option<String>,
    /// The first problem found, if any.
    pub problem: Option<String>,
}

/// Verifies the whole log: first sequences what is pending, then checks the hash chain, every
/// stored subtree hash against the entries, the latest signed checkpoint (its signature, and
/// its root against the entries), and a checkpoint saved earlier (against the entries, and by
/// a consistency proof from the stored tree to the latest).
pub async fn verify(
    store: &Store,
    custody: &Custody,
    saved: Option<&Saved>,
) -> Result<Verification, AppError> {
    // A log that lost entries cannot be sequenced; the checks below say what was lost.
    let sequencing = sequence(store, custody).await.err();
    let key = verifier_key(store, custody).await?;
    let mut conn = store.read().await?;
    // The checkpoint before the entries, so that it covers no entry the read misses; if a
    // sequencer committed between the reads, the entries it added are in the next one.
    let mut latest = latest(&mut conn).await?;
    let entries = audit::read(&mut conn, 1, i64::MAX).await?;
    let covered = |c: &Option<Stored>| c.as_ref().map_or(0, |c| c.size);
    if entries.len() as u64 > covered(&latest) {
        latest = self::latest(&mut conn).await?;
    }
    let head = match saved {
        Some(Saved::Head(seq, hash)) => Some((*seq, hash.as_str())),
        _ => None,
    };
    let chain = audit::verify_entries(&entries, head);
    let mut problem = chain.problem;
    if problem.is_none() {
        problem = check_tree(&mut conn, &entries, latest.as_ref(), &key).await?;
    }
    if problem.is_none()
        && let Some(Saved::Note(text)) = saved
    {
        problem = check_saved(&mut conn, &entries, latest.as_ref(), &key, text).await?;
    }
    if problem.is_none()
        && let Some(e) = sequencing
    {
        problem = Some(format!("pending entries could not be sequenced: {e}"));
    }
    Ok(Verification {
        entries: chain.entries,
        head: chain.head,
        checkpoint: latest.map(|c| c.note),
        problem,
    })
}

/// Every subtree hash of the entries, level by level (level 0: the leaves).
fn levels(entries: &[audit::Entry]) -> Vec<Vec<Hash>> {
    let mut levels = vec![entries.iter().map(entry_leaf).collect::<Vec<_>>()];
    while let Some(below) = levels.last().filter(|l| l.len() >= 2) {
        let up = below
            .as_chunks::<2>()
            .0
            .iter()
            .map(|[l, r]| tlog::node_hash(l, r))
            .collect();
        levels.push(up);
    }
    levels
}

async fn check_tree(
    conn: &mut Conn,
    entries: &[audit::Entry],
    latest: Option<&Stored>,
    key: &VerifierKey,
) -> Result<Option<String>, AppError> {
    let Some(latest) = latest else {
        return Ok((!entries.is_empty()).then(|| {
            "entry 1 is in no signed checkpoint: it was written past the sequencer".to_string()
        }));
    };
    let signed = match note::open_checkpoint(&latest.note, key, &key.name) {
        Ok(c) => c,
        Err(e) => return Ok(Some(format!("the latest checkpoint does not verify: {e}"))),
    };
    if signed.size != latest.size || signed.root != latest.root {
        return Ok(Some(
            "the latest checkpoint's stored size or root differs from its signed text".into(),
        ));
    }
    let n = entries.len() as u64;
    if signed.size > n {
        return Ok(Some(format!(
            "the log ends at entry {n}, before its latest signed checkpoint of {}: entries were cut off",
            signed.size
        )));
    }
    if n > signed.size {
        return Ok(Some(format!(
            "entry {} is in no signed checkpoint: it was written past the sequencer",
            signed.size + 1
        )));
    }
    let levels = levels(entries);
    let tree = tlog::MemoryTree::new(levels.first().cloned().unwrap_or_default());
    let root = tree
        .root(signed.size)
        .map_err(|e| AppError::bug(e.to_string()))?;
    if root != signed.root {
        return Ok(Some(format!(
            "the entries do not match the signed checkpoint of {} entries: an entry was altered, removed or reordered",
            signed.size
        )));
    }
    // The stored nodes that proofs are made of.
    let rows = db::query("SELECT level, idx, hash FROM audit_tree")
        .fetch_all(&mut *conn)
        .await?;
    let mut stored = 0usize;
    for r in rows {
        let level: i64 = r.try_get("level")?;
        let idx: i64 = r.try_get("idx")?;
        let hash = hash_of(r.try_get("hash")?)?;
        // Nodes past the checkpoint: a sequencer committed after the entries were read.
        if !(0..63).contains(&level) || idx < 0 || ((idx as u64 + 1) << level) > signed.size {
            continue;
        }
        let expected = usize::try_from(level)
            .ok()
            .and_then(|l| levels.get(l))
            .and_then(|l| usize::try_from(idx).ok().and_then(|i| l.get(i)));
        match expected {
            Some(h) if *h == hash => stored += 1,
            Some(_) => {
                return Ok(Some(format!(
                    "the stored tree node at level {level}, index {idx} does not match the entries: proofs made from it would fail"
                )));
            }
            None => {
                return Ok(Some(format!(
                    "the stored tree has a node at level {level}, index {idx} that the entries do not make"
                )));
            }
        }
    }
    let expected: usize = levels.iter().map(Vec::len).sum();
    if stored != expected {
        return Ok(Some(format!(
            "the stored tree has {stored} nodes where the entries make {expected}"
        )));
    }
    Ok(None)
}

async fn check_saved(
    conn: &mut Conn,
    entries: &[audit::Entry],
    latest: Option<&Stored>,
    key: &VerifierKey,
    text: &str,
) -> Result<Option<String>, AppError> {
    let saved = match note::open_checkpoint(text, key, &key.name) {
        Ok(c) => c,
        Err(e) => return Ok(Some(format!("the saved checkpoint does not verify: {e}"))),
    };
    let n = entries.len() as u64;
    if saved.size > n {
        return Ok(Some(format!(
            "the log ends at entry {n}, before the saved checkpoint of {}: entries were cut off",
            saved.size
        )));
    }
    let tree = tlog::MemoryTree::new(entries.iter().map(entry_leaf).collect());
    if tree
        .root(saved.size)
        .map_err(|e| AppError::bug(e.to_string()))?
        != saved.root
    {
        return Ok(Some(format!(
            "the log no longer matches the checkpoint saved at {} entries: its history was rewritten",
            saved.size
        )));
    }
    let Some(latest) = latest else {
        return Ok(Some(
            "the log has no signed checkpoint to compare with".into(),
        ));
    };
    let proof = prove(
        conn,
        Proof::Consistency {
            old: saved.size,
            new: latest.size,
        },
    )
    .await?;
    if let Err(e) =
        tlog::verify_consistency(saved.size, latest.size, &proof, &saved.root, &latest.root)
    {
        return Ok(Some(format!(
            "the consistency proof from the saved checkpoint to the latest fails: {e}"
        )));
    }
    Ok(None)
}

/// How often a serving process sequences what is pending and signs a checkpoint.
pub const SEQUENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the sequencer every [`SEQUENCE_EVERY`] for as long as the process serves, and sends
/// the latest checkpoint to the witnesses that have not cosigned it. Every process runs one;
/// the lock lets one at a time sequence, and the others find nothing pending.
pub fn spawn(store: Store, custody: std::sync::Arc<Custody>, witnesses: Vec<crate::witness::Peer>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let witnesses = Arc::new(witnesses);
    let pushing = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SEQUENCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sequence(&store, &custody).await {
                Ok(Some(cp)) => tracing::debug!(size = cp.size, "audit log checkpoint signed"),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the audit log could not be sequenced; its entries stay pending")
                }
            }
            // Witnesses in a task of their own, one push at a time: a witness that takes its
            // time (up to its timeout) never holds up the sequencing.
            if witnesses.is_empty() || pushing.swap(true, Ordering::AcqRel) {
                continue;
            }
            let (store, witnesses, pushing) = (store.clone(), witnesses.clone(), pushing.clone());
            tokio::spawn(async move {
                let latest = match store.read().await {
                    Ok(mut conn) => latest(&mut conn).await,
                    Err(e) => Err(e),
                };
                match latest {
                    Ok(Some(cp)) => crate::witness::push_all(&store, &witnesses, &cp).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the latest checkpoint could not be read for the witnesses")
                    }
                }
                pushing.store(false, Ordering::Release);
            });
        }
    });
}

/// A proof that one entry is in the log, for a third party to check without the server
/// (`imprint audit prove` writes it, `imprint audit check-proof` and docs/audit.md's verifier
/// check it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    /// The entry, with the fields of its leaf.
    pub entry: BundleEntry,
    /// The leaf index (`seq - 1`).
    pub index: u64,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The inclusion proof, base64, from the leaf up.
    pub hashes: Vec<String>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
}

/// An entry's fields, as `GET /audit` gives them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleEntry {
    /// Its number, from 1.
    pub seq: u64,
    /// Unix milliseconds, decimal.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The JSON detail, as stored.
    pub detail: String,
}

/// Which entry to prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The entry with this number.
    Seq(u64),
    /// The recorded installation (`report`) of this apparatus ID.
    Installed(imprint_core::ApparatusId),
}

/// Builds a [`Bundle`] for `target` at the latest checkpoint, or at a checkpoint saved earlier
/// (its text; it must verify under the log's key).
pub async fn prove_entry(
    store: &Store,
    custody: &Custody,
    target: &Target,
    saved: Option<&str>,
) -> Result<Bundle, AppError> {
    sequence_before_read(store, custody).await;
    let key = verifier_key(store, custody).await?;
    let mut conn = store.read().await?;
    let seq = match target {
        Target::Seq(seq) => *seq,
        Target::Installed(id) => {
            let row = db::query(
                "SELECT MIN(seq) AS seq FROM audit_log WHERE subject = $1 AND action = 'report'",
            )
            .bind(id.as_str())
            .fetch_one(&mut conn)
            .await?;
            size_of(row.try_get::<Option<i64>, _>("seq")?.ok_or_else(|| {
                AppError::NotFound(format!(
                    "the log records no installation of {}",
                    id.as_str()
                ))
            })?)?
        }
    };
    let checkpoint = match saved {
        Some(text) => text.to_string(),
        None => {
            latest(&mut conn)
                .await?
                .ok_or_else(|| AppError::NotFound("the log has no signed checkpoint yet".into()))?
                .note
        }
    };
    let cp = note::open_checkpoint(&checkpoint, &key, &key.name).map_err(|e| {
        AppError::BadRequest(format!(
            "the checkpoint does not verify under this log's key: {e}"
        ))
    })?;
    if seq == 0 || seq > cp.size {
        return Err(AppError::NotFound(format!(
            "entry {seq} is not in the checkpoint of {} entries",
            cp.size
        )));
    }
    let entry = audit::read(&mut conn, seq as i64, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound(format!("the log has no entry {seq}")))?;
    let hashes = prove(
        &mut conn,
        Proof::Inclusion {
            index: seq - 1,
            size: cp.size,
        },
    )
    .await?;
    let bundle = Bundle {
        entry: BundleEntry {
            seq,
            at: entry.at,
            actor: entry.actor,
            action: entry.action,
            detail: entry.detail,
        },
        index: seq - 1,
        size: cp.size,
        hashes: hashes.iter().map(base64).collect(),
        checkpoint,
    };
    // Never hand out a proof that does not check.
    check_bundle(&bundle, &key)
        .map_err(|e| AppError::bug(format!("a proof made here fails: {e}")))?;
    Ok(bundle)
}

/// Checks a [`Bundle`] from its bytes alone, under the log's pinned key: the checkpoint's
/// signature, the leaf rebuilt from the entry's fields, the inclusion proof to the
/// checkpoint's root. Returns the checkpoint.
pub fn check_bundle(bundle: &Bundle, key: &VerifierKey) -> Result<Checkpoint, String> {
    let cp = note::open_checkpoint(&bundle.checkpoint, key, &key.name)
        .map_err(|e| format!("the checkpoint: {e}"))?;
    if cp.size != bundle.size || bundle.index + 1 != bundle.entry.seq {
        return Err("the bundle's size or index does not match its checkpoint or entry".into());
    }
    let hashes = bundle
        .hashes
        .iter()
        .map(|h| {
            use base64ct::Encoding;
            let mut out = [0u8; 32];
            match base64ct::Base64::decode(h, &mut out) {
                Ok(got) if got.len() == 32 => Ok(out),
                _ => Err(format!("a proof hash is not 32 bytes of base64: {h}")),
            }
        })
        .collect::<Result<Vec<Hash>, String>>()?;
    let e = &bundle.entry;
    let leaf = tlog::leaf_hash(&leaf_bytes(
        e.seq as i64,
        &e.at,
        &e.actor,
        &e.action,
        &e.detail,
    ));
    tlog::verify_inclusion(&leaf, bundle.index, cp.size, &hashes, &cp.root)
        .map_err(|e| format!("the inclusion proof: {e}"))?;
    Ok(cp)
}

/// Most units in one [`install_proofs`] request.
pub const MAX_INSTALLS: usize = 100;

/// Proofs that these units' installations (their `report` entries) are in the log, at the
/// latest checkpoint, with a consistency proof from `since` (the checkpoint the caller holds).
/// With `factory`, only that factory's installations are given (a technician's station).
pub async fn install_proofs(
    store: &Store,
    custody: &Custody,
    factory: Option<&str>,
    ids: &[imprint_core::ApparatusId],
    since: Option<u64>,
) -> Result<imprint_api::InstallProofs, AppError> {
    if ids.is_empty() || ids.len() > MAX_INSTALLS {
        return Err(AppError::BadRequest(format!(
            "apparatus_ids: 1 to {MAX_INSTALLS} units"
        )));
    }
    sequence_before_read(store, custody).await;
    let key = verifier_key(store, custody).await?;
    let mut conn = store.read().await?;
    let cp = latest(&mut conn)
        .await?
        .ok_or_else(|| AppError::NotFound("the audit log has no signed checkpoint yet".into()))?;
    let consistency = match since {
        Some(old) if old > 0 && old <= cp.size => {
            prove(&mut conn, Proof::Consistency { old, new: cp.size }).await?
        }
        _ => Vec::new(),
    };
    let sql = format!(
        "SELECT seq, at_ms, actor, action, detail, prev_hash, hash, subject FROM audit_log \
         WHERE action = 'report' AND seq <= $1 AND subject IN ({}) ORDER BY seq",
        store::list(2, ids.len())
    );
    let mut q = db::query(store::bulk(&conn, sql)).bind(cp.size as i64);
    for id in ids {
        q = q.bind(id.as_str());
    }
    let rows = q.fetch_all(&mut conn).await?;
    let mut installs: Vec<imprint_api::InstallProof> = Vec::new();
    for r in rows {
        let detail: String = r.try_get("detail")?;
        let v: serde_json::Value = serde_json::from_str(&detail)
            .map_err(|e| AppError::bug(format!("a report entry's detail is not JSON: {e}")))?;
        if factory.is_some_and(|f| v.get("factory").and_then(|x| x.as_str()) != Some(f)) {
            continue;
        }
        let subject: String = r.try_get("subject")?;
        let id = imprint_core::ApparatusId::new(&subject)
            .map_err(|e| AppError::bug(format!("a stored subject is not an apparatus ID: {e}")))?;
        // The first report of a unit is its installation; a later one is a duplicate.
        if installs.iter().any(|i| i.apparatus_id == id) {
            continue;
        }
        let seq = size_of(r.try_get("seq")?)?;
        let hashes = prove(
            &mut conn,
            Proof::Inclusion {
                index: seq - 1,
                size: cp.size,
            },
        )
        .await?;
        installs.push(imprint_api::InstallProof {
            apparatus_id: id,
            entry: imprint_api::AuditEntry {
                seq,
                at: r.try_get::<i64, _>("at_ms")?.to_string(),
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                detail,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            },
            hashes: hashes.iter().map(base64).collect(),
        });
    }
    Ok(imprint_api::InstallProofs {
        checkpoint: cp.note,
        key: key.to_string(),
        consistency: consistency.iter().map(base64).collect(),
        installs,
    })
}

#[cfg(test)]
mod tests {
    use super::about;

    #[test]
    fn an_entry_is_about_its_unit_and_station_whatever_else_its_detail_holds() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            about(r#"{"factory":"fa","apparatus_id":"IMP-1","n":[1,{"a":2}],"station":"line-1"}"#),
            (s("IMP-1"), s("line-1"))
        );
        assert_eq!(
            about(r#"{"apparatus_ids":["IMP-1","IMP-2"],"count":2}"#),
            (None, None)
        );
        assert_eq!(
            about(r#"{"apparatus_id":"IMP-\u0031"}"#),
            (s("IMP-1"), None)
        );
        assert_eq!(about("not json"), (None, None));
    }
}
