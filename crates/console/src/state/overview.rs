//! The factories at a glance: each quota as a bar, and the alerts an operator acts on before
//! a line stops (a quota or a pool running low, a lease about to expire with records left).

use imprint_api::{FactoryList, QuotaUse};
use imprint_core::ProductCode;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Running out: act today.
    Low,
    /// Out: a line is stopped or about to be.
    Out,
}

impl Level {
    /// Its CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Level::Low => "alert low",
            Level::Out => "alert out",
        }
    }
}

/// Something to act on, in words with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// How urgent.
    pub level: Level,
    /// What is wrong and what to do.
    pub text: String,
}

/// A quota is low when less than this share of it is left (one part in ten).
pub const LOW_SHARE: u64 = 10;

/// A lease is about to expire within this time (Unix ms).
pub const LEASE_SOON_MS: u64 = 3_600_000;

/// Records a quota still lets its factory receive.
pub fn left(q: &QuotaUse) -> u64 {
    q.limit.saturating_sub(q.used)
}

/// The alerts of an overview, the most urgent first:
/// - a quota used up (out), or with less than a tenth left (low);
/// - a product's pool empty while a factory may still draw from it (out), or holding fewer
///   entries than the factories' quotas still allow (low): some factory will be refused;
/// - a lease that expires within the hour with records not installed (low): those records
///   go back to the pool at expiry, and units written after it are refused.
pub fn alerts(list: &FactoryList) -> Vec<Alert> {
    let mut out = Vec::new();
    for f in &list.factories {
        for q in &f.quotas {
            let left = left(q);
            if q.limit > 0 && left == 0 {
                out.push(Alert {
                    level: Level::Out,
                    text: format!(
                        "{}: quota for {} used up ({} of {}). Raise it, or the factory gets no more records.",
                        f.factory_id, q.product_code, q.used, q.limit
                    ),
                });
            } else if left.saturating_mul(LOW_SHARE) < q.limit {
                out.push(Alert {
                    level: Level::Low,
                    text: format!(
                        "{}: quota for {} nearly used ({} of {}, {} left). Raise it before the line runs out.",
                        f.factory_id, q.product_code, q.used, q.limit, left
                    ),
                });
            }
        }
        for l in &f.leases {
            let remaining = l.not_after_ms.saturating_sub(list.now_ms);
            if l.open > 0 && remaining <= LEASE_SOON_MS {
                out.push(Alert {
                    level: Level::Low,
                    text: format!(
                        "{}: lease {} ({}) expires in {} with {} record(s) not installed; they return to the pool then.",
                        f.factory_id,
                        l.lease_id,
                        l.product_code,
                        duration(remaining),
                        l.open
                    ),
                });
            }
        }
    }
    for p in &list.pools {
        let wanted = drawable(list, &p.product_code);
        if wanted == 0 {
            continue;
        }
        if p.available == 0 {
            out.push(Alert {
                level: Level::Out,
                text: format!(
                    "{}: no entries left in the pool (key {}). Generate or import entries: every factory's next fetch is refused.",
                    p.product_code, p.key_id
                ),
            });
        } else if p.available < wanted {
            out.push(Alert {
                level: Level::Low,
                text: format!(
                    "{}: {} entries in the pool, the factories' quotas allow {} more. Generate or import entries.",
                    p.product_code, p.available, wanted
                ),
            });
        }
    }
    out.sort_by_key(|a| core::cmp::Reverse(a.level));
    out
}

/// Records the factories may still receive for `product`, by their quotas.
pub fn drawable(list: &FactoryList, product: &ProductCode) -> u64 {
    list.factories
        .iter()
        .flat_map(|f| f.quotas.iter())
        .filter(|q| &q.product_code == product)
        .map(left)
        .fold(0u64, u64::saturating_add)
}

/// Records issued for `product` and not installed: what a remap to another key seals again.
pub fn outstanding(list: &FactoryList, product: &ProductCode) -> u64 {
    list.factories
        .iter()
        .flat_map(|f| f.quotas.iter())
        .filter(|q| &q.product_code == product)
        .map(|q| q.open)
        .fold(0u64, u64::saturating_add)
}

/// A quota's bar, in whole percent of its limit: the part installed (received and not open)
/// and the part open at the factory; the rest is free. Never more than 100 together.
pub fn bar(q: &QuotaUse) -> (u64, u64) {
    if q.limit == 0 {
        return (0, 0);
    }
    let pct = |n: u64| (n.min(q.limit).saturating_mul(100)) / q.limit;
    let open = q.open.min(q.used);
    let done = pct(q.used - open);
    let open = pct(q.used).saturating_sub(done);
    (done, open)
}

/// A time span for people: "7 h 59 min", "40 min", "under a minute".
pub fn duration(ms: u64) -> String {
    let minutes = ms / 60_000;
    match (minutes / 60, minutes % 60) {
        (0, 0) => "under a minute".into(),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}
