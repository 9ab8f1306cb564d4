//! Line figures: units per hour, first-pass yield, retries, per station and technician.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One finished attempt at a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// When it ended (Unix ms).
    pub at_ms: u64,
    /// Station name.
    pub station: String,
    /// Technician.
    pub technician: String,
    /// Whether the unit ended provisioned.
    pub ok: bool,
    /// Install attempts it took (1 = first pass).
    pub attempts: u32,
    /// How long the station worked on the unit this time (plug-in to done), in ms.
    #[serde(default)]
    pub duration_ms: u64,
}

/// Figures for one group (the whole line, a station or a technician).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Units provisioned.
    pub done: u32,
    /// Units that failed (set aside or abandoned).
    pub failed: u32,
    /// Units provisioned on the first attempt.
    pub first_pass: u32,
    /// Extra attempts over all units.
    pub retries: u32,
    /// Units per hour over the window, rounded to the nearest unit. Whole numbers on purpose:
    /// nobody on a line reads tenths, and formatting floats brings float-to-text code into the
    /// page (with ASCII case, 8.3 KB gzipped less; docs/benchmarks.md).
    pub per_hour: u32,
}

impl Figures {
    /// First-pass yield in whole percent (rounded): the share of all units provisioned at the
    /// first attempt; 0 when there were none.
    pub fn first_pass_yield_percent(&self) -> u32 {
        let all = self.done + self.failed;
        rounded_div(u64::from(self.first_pass) * 100, u64::from(all))
    }
}

fn figures<'a>(items: impl Iterator<Item = &'a Outcome>, window_ms: u64) -> Figures {
    let mut f = Figures::default();
    for o in items {
        if o.ok {
            f.done += 1;
            if o.attempts <= 1 {
                f.first_pass += 1;
            }
        } else {
            f.failed += 1;
        }
        f.retries += o.attempts.saturating_sub(1);
    }
    f.per_hour = rounded_div(u64::from(f.done) * 3_600_000, window_ms);
    f
}

/// `n / d` rounded to the nearest whole number, 0 when `d` is 0.
fn rounded_div(n: u64, d: u64) -> u32 {
    match d {
        0 => 0,
        d => u32::try_from((n + d / 2) / d).unwrap_or(u32::MAX),
    }
}

/// The line's figures over the last `window_ms` before `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Line {
    /// All stations together.
    pub total: Figures,
    /// By station.
    pub by_station: BTreeMap<String, Figures>,
    /// By technician.
    pub by_technician: BTreeMap<String, Figures>,
    /// Units done in each of the last 12 slices of the window (oldest first), for the chart.
    pub histogram: Vec<u32>,
}

/// Computes the figures.
pub fn line(outcomes: &[Outcome], now_ms: u64, window_ms: u64) -> Line {
    let start = now_ms.saturating_sub(window_ms);
    let recent: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.at_ms >= start && o.at_ms <= now_ms)
        .collect();
    let mut by_station: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
    let mut by_technician: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
    for o in &recent {
        by_station.entry(o.station.clone()).or_default().push(o);
        by_technician
            .entry(o.technician.clone())
            .or_default()
            .push(o);
    }
    let slices = 12u64;
    let mut histogram = vec![0u32; slices as usize];
    for o in recent.iter().filter(|o| o.ok) {
        let i = ((o.at_ms - start) * slices / window_ms.max(1)).min(slices - 1) as usize;
        if let Some(h) = histogram.get_mut(i) {
            *h += 1;
        }
    }
    Line {
        total: figures(recent.iter().copied(), window_ms),
        by_station: by_station
            .into_iter()
            .map(|(k, v)| (k, figures(v.into_iter(), window_ms)))
            .collect(),
        by_technician: by_technician
            .into_iter()
            .map(|(k, v)| (k, figures(v.into_iter(), window_ms)))
            .collect(),
        histogram,
    }
}

/// How long the station keeps unit outcomes for its figures.
pub const KEEP_OUTCOMES_MS: u64 = 24 * 3_600_000;

/// Drops outcomes older than [`KEEP_OUTCOMES_MS`] (and keeps at most the last 20,000), so the
/// stored list does not grow over weeks of shifts.
pub fn keep_recent(outcomes: &mut Vec<Outcome>, now_ms: u64) {
    let since = now_ms.saturating_sub(KEEP_OUTCOMES_MS);
    outcomes.retain(|o| o.at_ms >= since);
    let extra = outcomes.len().saturating_sub(20_000);
    outcomes.drain(..extra);
}
