//! The line's activity as the console draws it: installs per hour by factory and station as
//! a line chart (imprint-chart), and the refused reports with what each refusal means.

use std::collections::BTreeMap;

use imprint_api::{Activity, ErrorCode};
use imprint_chart::{LineChart, axis};

/// An hour, in ms.
pub const HOUR_MS: u64 = 3_600_000;

/// Installs per hour, one series per factory and station ("acme-sz / line-1"), one value per
/// hour from the answer's first hour to its last (0 where a station installed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installs {
    /// The first hour's start (Unix ms).
    pub start_ms: u64,
    /// The series, by name.
    pub series: Vec<(String, Vec<Option<u32>>)>,
    /// Installs in all the hours, all stations.
    pub total: u64,
}

/// The chart's data from an answer of `GET /activity`.
pub fn installs(a: &Activity) -> Installs {
    let hours = (a.now_ms.saturating_sub(a.from_ms) / HOUR_MS + 1) as usize;
    let mut by: BTreeMap<String, Vec<Option<u32>>> = BTreeMap::new();
    let mut total = 0u64;
    for c in &a.installs {
        let Some(bin) = c
            .hour_ms
            .checked_sub(a.from_ms)
            .map(|d| (d / HOUR_MS) as usize)
            .filter(|b| *b < hours)
        else {
            continue;
        };
        let row = by
            .entry(format!("{} / {}", c.factory_id, c.station))
            .or_insert_with(|| vec![Some(0); hours]);
        if let Some(v) = row.get_mut(bin) {
            *v = Some(
                v.unwrap_or(0)
                    .saturating_add(u32::try_from(c.count).unwrap_or(u32::MAX)),
            );
        }
        total = total.saturating_add(c.count);
    }
    Installs {
        start_ms: a.from_ms,
        series: by.into_iter().collect(),
        total,
    }
}

impl Installs {
    /// The chart as HTML (`<figcaption>` and SVG), with `clock` naming an instant's time of day.
    pub fn to_html(&self, clock: impl Fn(u64) -> String) -> String {
        let max = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten())
            .copied()
            .max()
            .unwrap_or(0);
        let (top, step) = axis(max);
        LineChart {
            title: "Units installed per hour, by factory and station",
            start_ms: self.start_ms,
            bin_ms: HOUR_MS,
            series: &self.series,
            top,
            step,
            suffix: "",
            empty: "no units installed in these hours",
        }
        .to_html(clock)
    }
}

/// What a refusal's code means on the line, and what the operator does about it.
pub fn refusal_meaning(reason: &str) -> &'static str {
    let code = ErrorCode::ALL.into_iter().find(|c| c.as_str() == reason);
    match code {
        Some(ErrorCode::BadReceipt) => {
            "The receipt does not prove this unit holds the record: a forged or mistyped report, or a unit swapped on the bench. Ask the factory which unit it was."
        }
        Some(ErrorCode::NotYourRecord) => {
            "A record issued to another factory was reported: records moved between factories. Ask both factories."
        }
        Some(ErrorCode::SerialTaken) => {
            "That product serial already has an identity: a unit written twice. The unit must be reworked."
        }
        Some(ErrorCode::AlreadyInstalled) => {
            "The record is already installed in another unit: a record written twice."
        }
        Some(ErrorCode::NotIssued) => {
            "The record was not issued (released or expired with its lease) when it was reported."
        }
        Some(ErrorCode::UnknownApparatus) => "No such apparatus ID on this server.",
        _ => "See the error codes in docs/server.md.",
    }
}
