//! A brake on password guessing: failed sign-ins are counted per user name and per client
//! address (GCRA through `governor`), and past the allowance further attempts are refused with
//! `429 too_many_attempts` and `Retry-After`, before any password is checked.
//!
//! Why both keys: per name stops guessing one account from many addresses; per address stops
//! one machine from trying many accounts. Only failures count, so a shared station PC where
//! technicians sign in and out all shift is never braked. The allowance replenishes with time,
//! so the right password works again once the wait is over. The state is in memory: a restart
//! forgets it (the audit log keeps every failed attempt).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// What is counted: a user name (as a keyed tag, so no typed name is kept) or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Name([u8; 16]),
    Addr(IpAddr),
}

/// How many failures are allowed at once and how fast the allowance comes back.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// Failures allowed in a row.
    pub burst: NonZeroU32,
    /// One more failure allowed after each such interval (not zero).
    pub every: Duration,
}

impl Allowance {
    /// # Panics
    /// If `every` is zero: allowances are constants of the server and its tests.
    #[allow(clippy::expect_used)]
    fn quota(self) -> Quota {
        Quota::with_period(self.every)
            .expect("an allowance's interval is not zero")
            .allow_burst(self.burst)
    }
}

/// Failed sign-ins per user name and per address.
pub struct Throttle {
    names: DefaultKeyedRateLimiter<[u8; 16]>,
    addrs: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<Key, Instant>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Throttle")
    }
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

impl Throttle {
    /// A throttle with the given allowances.
    pub fn new(per_name: Allowance, per_addr: Allowance) -> Throttle {
        Throttle {
            names: RateLimiter::keyed(per_name.quota()),
            addrs: RateLimiter::keyed(per_addr.quota()),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn keys(name: [u8; 16], addr: Option<IpAddr>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::Name(name)).chain(addr.map(Key::Addr))
    }

    /// Before a sign-in is checked: `Err(seconds)` while the name or the address must wait.
    pub fn check(&self, name: [u8; 16], addr: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let wait = Self::keys(name, addr)
            .filter_map(|k| blocked.get(&k))
            .filter(|until| **until > now)
            .map(|until| *until - now)
            .max();
        match wait {
            Some(w) => Err(w.as_secs() + 1),
            None => Ok(()),
        }
    }

    /// A sign-in failed: count it, and start a wait where the allowance is used up.
    pub fn failed(&self, name: [u8; 16], addr: Option<IpAddr>) {
        let now = self.clock.now();
        let mut waits = Vec::new();
        if let Err(n) = self.names.check_key(&name) {
            waits.push((Key::Name(name), n.wait_time_from(now)));
        }
        if let Some(a) = addr
            && let Err(n) = self.addrs.check_key(&a)
        {
            waits.push((Key::Addr(a), n.wait_time_from(now)));
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let at = Instant::now();
        blocked.retain(|_, until| *until > at);
        for (k, w) in waits {
            blocked.insert(k, at + w);
        }
        drop(blocked);
        self.names.retain_recent();
        self.addrs.retain_recent();
    }
}
