//! The audit log: append-only, hash-chained.
//!
//! Each entry stores the hash of the one before it, and its own hash over its sequence number,
//! time, actor, action, detail and that previous hash. Editing, deleting or reordering an entry
//! breaks the chain at that point; cutting entries off the end is caught by checking against a
//! head (sequence number and hash) that an auditor saved earlier.

use crate::db;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::store::{self, Conn};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one entry.
pub fn entry_hash(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    detail: &str,
    prev: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"imprint-audit-v1");
    for field in [seq.to_string().as_str(), at, actor, action, detail, prev] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends an entry inside the caller's transaction (so the entry and the change it records
/// commit together, or neither does). The entry is durable at the commit but not yet numbered:
/// the sequencer ([`crate::tlog::sequence`]) numbers it, chains it and adds it to the tree
/// within a second or so, and before any read of the log. Nothing here waits for another
/// transaction.
pub async fn append(
    conn: &mut Conn,
    actor: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    append_many(
        conn,
        &[NewEntry {
            actor: actor.into(),
            action: action.into(),
            detail,
        }],
    )
    .await
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// JSON detail (never secrets).
    pub detail: serde_json::Value,
}

/// Rows per insert: 4 columns each, far below either database's parameter limit.
const CHUNK: usize = 200;

/// Appends `entries` in order, as [`append`] appends one, with multi-row inserts (a batch of
/// field authentications writes hundreds at once). Their order among themselves is kept
/// (pending entries are sequenced in the order of their ids).
pub async fn append_many(conn: &mut Conn, entries: &[NewEntry]) -> Result<(), AppError> {
    let at = crate::now_millis();
    for chunk in entries.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO audit_pending (at_ms, actor, action, detail) VALUES {}",
            store::values(chunk.len(), 4)
        );
        let mut q = db::query(store::bulk(conn, sql));
        for e in chunk {
            q = q
                .bind(at)
                .bind(e.actor.as_str())
                .bind(e.action.as_str())
                .bind(e.detail.to_string());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// One audit entry as read back.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Position, from 1.
    pub seq: i64,
    /// Unix time in milliseconds, as written into the hash (decimal).
    pub at: String,
    /// Who (user name, "device", "cli", "system").
    pub actor: String,
    /// What (import, issue, report, auth, ...).
    pub action: String,
    /// JSON detail (never secrets).
    pub detail: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The outcome of verifying the chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub entries: i64,
    /// The last entry's hash (save it: it is the checkpoint for the next verification).
    pub head: String,
    /// Whether every check passed.
    pub ok: bool,
    /// The first problem found, if any.
    pub problem: Option<String>,
}

/// Which entries a search wants, each filter an exact match on an indexed column.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Who.
    pub actor: Option<String>,
    /// What.
    pub action: Option<String>,
    /// The unit's apparatus ID (`subject`).
    pub subject: Option<String>,
    /// The station.
    pub station: Option<String>,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    /// Oldest first, from this sequence number on.
    From(i64),
    /// Newest first, below this sequence number.
    Before(i64),
}

/// Reads a page of at most `limit` entries that pass `filter`. Every filter and either order
/// runs on an index that ends in `seq`, so a page costs the same in a log of any size.
pub async fn search(
    conn: &mut Conn,
    filter: &Filter,
    page: Page,
    limit: i64,
) -> Result<Vec<Entry>, AppError> {
    let mut sql = String::from(
        "SELECT seq, at_ms, actor, action, detail, prev_hash, hash FROM audit_log WHERE ",
    );
    let mut binds: Vec<String> = Vec::new();
    for (column, value) in [
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("subject", &filter.subject),
        ("station", &filter.station),
    ] {
        if let Some(v) = value {
            binds.push(v.clone());
            sql.push_str(&format!("{column} = ${} AND ", binds.len()));
        }
    }
    let n = binds.len();
    let (at, order) = match page {
        Page::From(seq) => (seq, format!("seq >= ${} ORDER BY seq", n + 1)),
        Page::Before(seq) => (seq, format!("seq < ${} ORDER BY seq DESC", n + 1)),
    };
    sql.push_str(&order);
    sql.push_str(&format!(" LIMIT ${}", n + 2));
    // Column names from the list above, values only as parameters.
    let mut q = db::query(sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let rows = q.bind(at).bind(limit).fetch_all(&mut *conn).await?;
    rows.into_iter()
        .map(|r| entry_of(&r))
        .collect::<Result<_, AppError>>()
}

/// The sequence number of the latest entry (0: none).
pub async fn latest(conn: &mut Conn) -> Result<i64, AppError> {
    let row = db::query("SELECT MAX(seq) AS seq FROM audit_log")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0))
}

fn entry_of(r: &db::Row) -> Result<Entry, AppError> {
    Ok(Entry {
        seq: r.try_get("seq")?,
        at: r.try_get::<i64, _>("at_ms")?.to_string(),
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// Reads entries from `from` on, at most `limit`.
pub async fn read(conn: &mut Conn, from: i64, limit: i64) -> Result<Vec<Entry>, AppError> {
    let rows = db::query(
        "SELECT seq, at_ms, actor, action, detail, prev_hash, hash FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(from)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| entry_of(&r))
        .collect::<Result<_, AppError>>()
}

/// The pure check over entries read in `seq` order.
pub fn verify_entries(entries: &[Entry], checkpoint: Option<(i64, &str)>) -> Verification {
    let mut prev = GENESIS.to_string();
    let mut problem = None;
    for (i, e) in entries.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if e.seq != expected_seq {
            problem = Some(format!(
                "entry {expected_seq} is missing (found {} in its place)",
                e.seq
            ));
            break;
        }
        if e.prev_hash != prev {
            problem = Some(format!(
                "entry {} does not follow entry {}: an entry was removed or reordered",
                e.seq,
                e.seq - 1
            ));
            break;
        }
        if entry_hash(e.seq, &e.at, &e.actor, &e.action, &e.detail, &e.prev_hash) != e.hash {
            problem = Some(format!("entry {} was altered after it was written", e.seq));
            break;
        }
        prev = e.hash.clone();
    }
    if problem.is_none()
        && let Some((seq, hash)) = checkpoint
    {
        match entries.get((seq - 1).max(0) as usize) {
            Some(e) if e.seq == seq && e.hash == hash => {}
            Some(_) => problem = Some(format!("entry {seq} differs from the saved checkpoint")),
            None => {
                problem = Some(format!(
                    "the log ends before the saved checkpoint {seq}: entries were cut off"
                ))
            }
        }
    }
    Verification {
        entries: entries.len() as i64,
        head: entries
            .last()
            .map_or(GENESIS.to_string(), |e| e.hash.clone()),
        ok: problem.is_none(),
        problem,
    }
}
