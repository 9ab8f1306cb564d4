//! Line figures: units per hour, first-pass yield, retries by kind, per station and
//! technician; and the shift in bins for the charts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::diagnose::Cause;

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
    /// Every recovery on the way, by kind, in order (a pulled cable, no record, a reload...):
    /// a unit with any is not first pass, however many installs it took.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<Cause>,
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
    /// Units provisioned on the first attempt, with no recovery on the way.
    pub first_pass: u32,
    /// Recoveries over all units (each pulled cable, missing record, reload, ...; an outcome
    /// stored before recoveries were recorded counts its extra install attempts).
    pub retries: u32,
    /// The recoveries by kind.
    pub by_cause: BTreeMap<Cause, u32>,
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
            if o.attempts <= 1 && o.recoveries.is_empty() {
                f.first_pass += 1;
            }
        } else {
            f.failed += 1;
        }
        if o.recoveries.is_empty() {
            f.retries += o.attempts.saturating_sub(1);
        } else {
            f.retries += u32::try_from(o.recoveries.len()).unwrap_or(u32::MAX);
            for c in &o.recoveries {
                *f.by_cause.entry(*c).or_default() += 1;
            }
        }
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

/// The shift the charts cover: the last eight hours.
pub const SHIFT_MS: u64 = 8 * 3_600_000;

/// The line's figures over a shift in equal bins, by station, for the charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Shift {
    /// Where the first bin starts (Unix ms): a whole multiple of `bin_ms`, so bins line up
    /// with the clock (10:00, 10:10, ...).
    pub start_ms: u64,
    /// How long a bin is (ms).
    pub bin_ms: u64,
    /// How many bins.
    pub bins: usize,
    /// Units done in each bin, by station.
    pub units: BTreeMap<String, Vec<u32>>,
    /// First-pass yield in each bin in whole percent, by station: `None` where the station
    /// finished no unit (no point, rather than a 0 that reads as a bad yield).
    pub fpy: BTreeMap<String, Vec<Option<u32>>>,
}

/// The figures of the `window_ms` before `now_ms` in bins of `bin_ms`, the last bin holding
/// `now_ms`.
pub fn shift(outcomes: &[Outcome], now_ms: u64, window_ms: u64, bin_ms: u64) -> Shift {
    let bin_ms = bin_ms.max(1);
    let bins = usize::try_from(window_ms.div_ceil(bin_ms))
        .unwrap_or(1)
        .max(1);
    let end = (now_ms / bin_ms + 1) * bin_ms;
    let start_ms = end.saturating_sub(bin_ms * bins as u64);
    let mut done: BTreeMap<String, Vec<(u32, u32, u32)>> = BTreeMap::new();
    for o in outcomes
        .iter()
        .filter(|o| o.at_ms >= start_ms && o.at_ms < end)
    {
        let i = usize::try_from((o.at_ms - start_ms) / bin_ms).unwrap_or(0);
        let row = done
            .entry(o.station.clone())
            .or_insert_with(|| vec![(0, 0, 0); bins]);
        if let Some((ok, first, all)) = row.get_mut(i) {
            *all += 1;
            if o.ok {
                *ok += 1;
                if o.attempts <= 1 && o.recoveries.is_empty() {
                    *first += 1;
                }
            }
        }
    }
    Shift {
        start_ms,
        bin_ms,
        bins,
        units: done
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|b| b.0).collect()))
            .collect(),
        fpy: done
            .iter()
            .map(|(k, v)| {
                let pct = v
                    .iter()
                    .map(|&(_, first, all)| {
                        (all > 0).then(|| rounded_div(u64::from(first) * 100, u64::from(all)))
                    })
                    .collect();
                (k.clone(), pct)
            })
            .collect(),
    }
}

pub use imprint_chart::axis;
