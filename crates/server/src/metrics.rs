//! Prometheus metrics, in the text exposition format, from a handful of atomic counters.
//!
//! Why not a metrics crate: eight counters and one histogram do not justify a dependency tree;
//! the format is four lines of spec.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket bounds for request latency, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records issued to factories (table 708 rows created).
    pub issued: AtomicU64,
    /// Installations recorded (table 704 rows created).
    pub installed: AtomicU64,
    /// Reports refused (forged receipt, conflict, not yours, ...).
    pub refused: AtomicU64,
    /// Successful field authentications.
    pub auth_ok: AtomicU64,
    /// Failed field authentications.
    pub auth_fail: AtomicU64,
    /// Failed sign-ins (wrong user name or password).
    pub login_fail: AtomicU64,
    /// Sign-ins refused by the throttle (429).
    pub login_throttled: AtomicU64,
    requests: AtomicU64,
    latency_sum_micros: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
}

impl Metrics {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one request's latency.
    pub fn observe(&self, d: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        let secs = d.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, help, c) in [
            (
                "imprint_records_issued_total",
                "Sealed records issued to factories.",
                &self.issued,
            ),
            (
                "imprint_records_installed_total",
                "Installations recorded with a verified receipt.",
                &self.installed,
            ),
            (
                "imprint_reports_refused_total",
                "Installation reports refused.",
                &self.refused,
            ),
            (
                "imprint_auth_ok_total",
                "Successful device authentications.",
                &self.auth_ok,
            ),
            (
                "imprint_auth_fail_total",
                "Failed device authentications.",
                &self.auth_fail,
            ),
            (
                "imprint_login_failures_total",
                "Failed sign-ins (wrong user name or password).",
                &self.login_fail,
            ),
            (
                "imprint_login_throttled_total",
                "Sign-ins refused by the throttle.",
                &self.login_throttled,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        let name = "imprint_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency.\n# TYPE {name} histogram"
        );
        for (bound, c) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(c));
        }
        let n = get(&self.requests);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            get(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
        out
    }
}
