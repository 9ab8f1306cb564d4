//! A brake on password guessing: failed sign-ins are counted per user name and per client
//! address (GCRA, the generic cell rate algorithm), and past the allowance further attempts are
//! refused with `429 too_many_attempts` and `Retry-After`, before any password is checked.
//!
//! Why both keys: per name stops guessing one account from many addresses; per address stops
//! one machine from trying many accounts. Only failures count, so a shared station PC where
//! technicians sign in and out all shift is never braked. The allowance replenishes with time,
//! so the right password works again once the wait is over.
//!
//! The state is in the database (`login_brakes`), not in the process: with several server
//! processes behind a balancer, an attacker who spreads attempts over them is braked as if
//! there were one, and a restart forgets nothing. The arithmetic is [`on_failure`], pure.

use crate::db;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::AppError;
use crate::store::{self, Conn};

/// How many failures are allowed at once and how fast the allowance comes back.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// Failures allowed in a row.
    pub burst: NonZeroU32,
    /// One more failure allowed after each such interval.
    pub every: Duration,
}

/// What one more failure does to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Within the allowance: counted; the key's new theoretical arrival time (Unix ms).
    Counted {
        /// When the key's allowance is whole again.
        tat_ms: i64,
    },
    /// Past it: not counted; no attempt is taken for the key until then (Unix ms).
    Blocked {
        /// The end of the wait.
        until_ms: i64,
    },
}

/// GCRA: each failure moves the key's theoretical arrival time `tat` one interval on from
/// `max(tat, now)`; a failure that would put it more than `burst` intervals ahead of now is
/// past the allowance, and the wait is until it would not be.
pub fn on_failure(a: Allowance, tat_ms: Option<i64>, now_ms: i64) -> Step {
    let every = i64::try_from(a.every.as_millis()).unwrap_or(i64::MAX);
    let tolerance = every.saturating_mul(i64::from(a.burst.get()));
    let next = tat_ms.unwrap_or(now_ms).max(now_ms).saturating_add(every);
    if next.saturating_sub(now_ms) <= tolerance {
        Step::Counted { tat_ms: next }
    } else {
        Step::Blocked {
            until_ms: next.saturating_sub(tolerance),
        }
    }
}

/// Failed sign-ins per user name and per address: the allowances; the counts are in the
/// database.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    per_name: Allowance,
    per_addr: Allowance,
}

impl Default for Throttle {
    /// Five failures per user name, then one every 30 s; twenty per address, then one every
    /// 3 s (docs/server.md, "Sign-in").
    fn default() -> Self {
        Throttle::new(
            Allowance {
                burst: NonZeroU32::MIN.saturating_add(4),
                every: Duration::from_secs(30),
            },
            Allowance {
                burst: NonZeroU32::MIN.saturating_add(19),
                every: Duration::from_secs(3),
            },
        )
    }
}

/// The keys of one attempt, as stored: a user name's keyed tag (so no typed name is kept) and
/// the client's address.
fn keys(name: [u8; 16], addr: Option<IpAddr>) -> Vec<String> {
    std::iter::once(format!("name:{}", hex::encode(name)))
        .chain(addr.map(|a| format!("addr:{a}")))
        .collect()
}

impl Throttle {
    /// A throttle with the given allowances.
    pub fn new(per_name: Allowance, per_addr: Allowance) -> Throttle {
        Throttle { per_name, per_addr }
    }

    /// Before a sign-in is checked: `Err(seconds)` while the name or the address must wait.
    pub async fn check(
        &self,
        conn: &mut db::Conn,
        name: [u8; 16],
        addr: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<Result<(), u64>, AppError> {
        let keys = keys(name, addr);
        let sql = format!(
            "SELECT blocked_until_ms FROM login_brakes WHERE brake_key IN ({})",
            store::list(1, keys.len())
        );
        let mut q = db::query(sql);
        for k in &keys {
            q = q.bind(k.as_str());
        }
        let mut until = 0i64;
        for r in q.fetch_all(conn).await? {
            until = until.max(r.try_get("blocked_until_ms")?);
        }
        Ok(if until > now_ms {
            Err(((until - now_ms) / 1000).unsigned_abs() + 1)
        } else {
            Ok(())
        })
    }

    /// A sign-in failed: count it for the name and the address, inside the caller's
    /// transaction (with the audit entry of the failure). Rows whose allowance is whole again
    /// and whose wait is over are dropped.
    pub async fn failed(
        &self,
        conn: &mut Conn,
        name: [u8; 16],
        addr: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<(), AppError> {
        db::query("DELETE FROM login_brakes WHERE tat_ms < $1 AND blocked_until_ms < $1")
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        for (key, allowance) in keys(name, addr)
            .into_iter()
            .zip([self.per_name, self.per_addr])
        {
            // The key's row made if missing, then locked (PostgreSQL), so that failures
            // counted at once by several processes take turns instead of each counting from
            // nothing. A time of 0 is a key with its whole allowance.
            db::query(
                "INSERT INTO login_brakes (brake_key, tat_ms, blocked_until_ms) VALUES ($1, 0, 0) \
                 ON CONFLICT (brake_key) DO NOTHING",
            )
            .bind(key.as_str())
            .execute(&mut *conn)
            .await?;
            let row = db::query(crate::service::pick(
                conn,
                "SELECT tat_ms, blocked_until_ms FROM login_brakes WHERE brake_key = $1",
                "SELECT tat_ms, blocked_until_ms FROM login_brakes WHERE brake_key = $1 FOR UPDATE",
            ))
            .bind(key.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            let (tat, blocked) = match &row {
                Some(r) => (
                    Some(r.try_get::<i64, _>("tat_ms")?),
                    r.try_get::<i64, _>("blocked_until_ms")?,
                ),
                None => (None, 0),
            };
            let (tat, blocked) = match on_failure(allowance, tat, now_ms) {
                Step::Counted { tat_ms } => (tat_ms, blocked),
                Step::Blocked { until_ms } => (tat.unwrap_or(now_ms), until_ms.max(blocked)),
            };
            db::query(
                "INSERT INTO login_brakes (brake_key, tat_ms, blocked_until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (brake_key) DO UPDATE SET tat_ms = excluded.tat_ms, \
                 blocked_until_ms = excluded.blocked_until_ms",
            )
            .bind(key.as_str())
            .bind(tat)
            .bind(blocked)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
