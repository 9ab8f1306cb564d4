//! Authentication information (table 702): entries generated here or imported from the maker.

use crate::db;
use imprint_api::Generated;
use imprint_api::error::LineError;
use imprint_core::{ApparatusId, KeyId, PassPhrase, TableError};
use serde_json::json;

use super::{Stage, key_exists, pass_ctx};
use crate::custody::Custody;
use crate::error::AppError;
use crate::store::{self, Conn};
use crate::{AppState, audit};

/// Rows per multi-row statement: far below either database's parameter limit, large enough
/// that the per-statement cost stops mattering.
pub(super) const CHUNK: usize = 200;

/// The most entries one request generates.
const MAX_GENERATE: u64 = 1_000_000;

/// Takes `n` numbers from the entry sequence: the first of them. The counter's row is locked
/// until the commit, so two writers never get the same numbers.
async fn take_seq(conn: &mut Conn, n: u64) -> Result<i64, AppError> {
    let n = i64::try_from(n).map_err(|_| AppError::bug("sequence request too large"))?;
    let end: i64 = db::query(
        "UPDATE counters SET value = value + $1 WHERE name = 'entry_seq' RETURNING value",
    )
    .bind(n)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AppError::bug("the entry sequence counter is missing"))?
    .try_get("value")?;
    Ok(end - n + 1)
}

/// Inserts unissued entries, sealing each pass phrase at rest, in multi-row statements. An ID
/// that exists already (or that a concurrent writer just inserted) is refused as a duplicate:
/// `ON CONFLICT DO NOTHING` skips it, so the statement does not fail (which on PostgreSQL
/// would abort the transaction) and the missing row names it.
async fn insert_entries(
    conn: &mut Conn,
    keys: &Custody,
    entries: &[(ApparatusId, PassPhrase, KeyId, i64)],
) -> Result<(), AppError> {
    for chunk in entries.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO auth_info (apparatus_id, pass_sealed, key_id, state, created_seq) VALUES {} \
             ON CONFLICT (apparatus_id) DO NOTHING",
            store::values(chunk.len(), 5)
        );
        let mut q = db::query(store::bulk(conn, sql));
        for (id, pass, key_id, seq) in chunk {
            q = q
                .bind(id.as_str())
                .bind(keys.seal(&pass_ctx(id), pass.expose_secret())?)
                .bind(i64::from(key_id.get()))
                .bind(Stage::Unissued.as_str())
                .bind(*seq);
        }
        let inserted = q.execute(&mut *conn).await?.rows_affected();
        if inserted != chunk.len() as u64 {
            for (id, _, _, seq) in chunk {
                let row = db::query("SELECT created_seq FROM auth_info WHERE apparatus_id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                if let Some(r) = row
                    && r.try_get::<i64, _>("created_seq")? != *seq
                {
                    return Err(TableError::DuplicateApparatusId(*id).into());
                }
            }
            return Err(AppError::bug(format!(
                "inserted {inserted} of {} entries, and none was there before",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Generates `count` entries (table 702) under `key_id`: apparatus IDs `prefix` + a 10-digit
/// number continuing the sequence, and random 160-bit pass phrases.
pub async fn generate(
    state: &AppState,
    actor: &str,
    key_id: KeyId,
    count: u64,
    prefix: &str,
) -> Result<Generated, AppError> {
    if count == 0 || count > MAX_GENERATE {
        return Err(AppError::BadRequest(
            "count must be from 1 to 1000000 per request".into(),
        ));
    }
    if prefix.len() > 20 {
        return Err(AppError::BadRequest(
            "prefix: at most 20 characters, so IDs fit in 32".into(),
        ));
    }
    // The prefix is the client's: check it here, so that a bad one is the client's error and
    // every ID built from it below is valid by construction.
    ApparatusId::new(&format!("{prefix}0000000000"))
        .map_err(|e| AppError::BadRequest(format!("prefix: {e}")))?;
    state
        .store
        .write(&(state, actor, prefix), |tx, (state, actor, prefix)| {
            Box::pin(async move {
                if !key_exists(tx, key_id).await? {
                    return Err(TableError::UnknownKeyId(key_id).into());
                }
                let start = take_seq(tx, count).await?;
                let mut rng = crate::rng();
                let id_at = |i: i64| ApparatusId::new(&format!("{prefix}{:010}", start + i));
                let first = id_at(0)?;
                let last = id_at(count as i64 - 1)?;
                let mut done = 0i64;
                while done < count as i64 {
                    let n = (count as i64 - done).min(10 * CHUNK as i64);
                    let batch = (done..done + n)
                        .map(|i| -> Result<_, AppError> {
                            Ok((id_at(i)?, PassPhrase::generate(&mut rng), key_id, start + i))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    insert_entries(tx, &state.custody, &batch).await?;
                    done += n;
                }
                audit::append(
                    tx,
                    actor,
                    "authinfo.generate",
                    json!({ "key_id": key_id.get(), "count": count, "first": first.as_str(), "last": last.as_str() }),
                )
                .await?;
                Ok(Generated { count, first, last })
            })
        })
        .await
}

async fn exists(conn: &mut Conn, id: &ApparatusId) -> Result<bool, AppError> {
    Ok(
        db::query("SELECT apparatus_id FROM auth_info WHERE apparatus_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// Imports entries from CSV `apparatus_id,pass_phrase,key_id` (a header line with those names
/// is allowed). All or nothing: any bad line and nothing is imported; every bad line is
/// reported with its number and reason.
pub async fn import_csv(
    state: &AppState,
    actor: &str,
    text: &str,
) -> Result<Result<u64, Vec<LineError>>, AppError> {
    let (parsed, errors) = parse_csv(text);
    state
        .store
        .write(
            &(state, actor, parsed, errors),
            |tx, (state, actor, parsed, errors)| {
                Box::pin(async move {
                    let mut errors = errors.clone();
                    let mut known = std::collections::HashMap::new();
                    for (line, id, _, key) in parsed {
                        let key_known = match known.get(key) {
                            Some(e) => *e,
                            None => {
                                let e = key_exists(tx, *key).await?;
                                known.insert(*key, e);
                                e
                            }
                        };
                        if !key_known {
                            errors.push(LineError {
                                line: *line,
                                reason: format!(
                                    "no pre-write key with identifier {key}; add the key first"
                                ),
                            });
                        }
                        if exists(tx, id).await? {
                            errors.push(LineError {
                                line: *line,
                                reason: format!("apparatus ID {id} already exists"),
                            });
                        }
                    }
                    if !errors.is_empty() {
                        errors.sort_by_key(|e| e.line);
                        return Ok(Err(errors));
                    }
                    let count = parsed.len() as u64;
                    let start = take_seq(tx, count).await?;
                    let entries: Vec<_> = parsed
                        .iter()
                        .enumerate()
                        .map(|(i, (_, id, pass, key))| (*id, pass.clone(), *key, start + i as i64))
                        .collect();
                    insert_entries(tx, &state.custody, &entries).await?;
                    audit::append(tx, actor, "authinfo.import", json!({ "count": count })).await?;
                    Ok(Ok(count))
                })
            },
        )
        .await
}

/// One good line of an import: its number, and the entry.
type Line = (u64, ApparatusId, PassPhrase, KeyId);

/// The lines of an import that parse, and the reasons of those that do not (the database's
/// checks come after).
fn parse_csv(text: &str) -> (Vec<Line>, Vec<LineError>) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut parsed: Vec<Line> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i as u64 + 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(LineError {
                    line,
                    reason: format!("not CSV: {e}"),
                });
                continue;
            }
        };
        if line == 1 && rec.get(0) == Some("apparatus_id") {
            continue;
        }
        if rec.len() != 3 {
            errors.push(LineError {
                line,
                reason: format!(
                    "expected 3 fields (apparatus_id,pass_phrase,key_id), found {}",
                    rec.len()
                ),
            });
            continue;
        }
        let id = ApparatusId::new(rec.get(0).unwrap_or(""));
        let pass = PassPhrase::new(rec.get(1).unwrap_or(""));
        let key = rec.get(2).unwrap_or("").parse::<KeyId>();
        match (id, pass, key) {
            (Ok(id), Ok(pass), Ok(key)) => {
                if let Some(prev) = seen.insert(id, line) {
                    errors.push(LineError {
                        line,
                        reason: format!("apparatus ID {id} also on line {prev}"),
                    });
                } else {
                    parsed.push((line, id, pass, key));
                }
            }
            (id, pass, key) => {
                for e in [id.err(), pass.err(), key.err()].into_iter().flatten() {
                    errors.push(LineError {
                        line,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    if parsed.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 0,
            reason: "the file has no entries".into(),
        });
    }
    (parsed, errors)
}
