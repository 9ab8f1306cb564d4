//! The bench: one tile per unit the station is working on or has finished, what the tile leads
//! with, and which buttons make sense in its state. Pure, so that each rule is tested natively.

use imprint_core::{ApparatusId, ProductSerial};
use serde::{Deserialize, Serialize};

use crate::state::diagnose::{Cause, Diagnosis, Severity};
use crate::station::Phase;

/// How long a green tile stays on the bench before it folds into the done list: long enough to
/// see the green light, short enough that the unit being written stays in view.
pub const FOLD_AFTER_MS: u64 = 5_000;

/// How many finished units the done list keeps (the most recent).
pub const KEEP_DONE: usize = 200;

/// Where a unit is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The flow is running.
    Working,
    /// Provisioned and checked.
    Done {
        /// The identity it holds.
        apparatus_id: ApparatusId,
        /// Whether this run finished earlier work (a replug, a reload).
        resumed: bool,
    },
    /// Stopped, with what happened and what to do.
    Failed(Diagnosis),
    /// The unit went away mid-way: plugging it back in resumes it.
    Unplugged,
}

/// A button on a tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the flow again on the unit (it is still plugged in).
    Retry,
    /// Training: pull the simulated unit's cable.
    PullCable,
    /// Training: plug the simulated unit back in.
    PlugBack,
    /// A red unit is physically set aside: its tile goes to the done list.
    SetAside,
}

/// One unit on the bench.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tile {
    /// The unit's USB serial number (its chip ID in hex): how the station tells units apart.
    pub unit: String,
    /// The unit's product serial, once its info is read: what is printed on its label.
    pub label: Option<ProductSerial>,
    /// How far the flow got.
    pub phase: Phase,
    /// Where it is.
    pub status: Status,
    /// Every trouble the unit met and was recovered from, in order, for the figures.
    #[serde(default)]
    pub recoveries: Vec<Cause>,
    /// When it left the bench for the done list's time (Unix ms): finished green, or set
    /// aside.
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
}

impl Tile {
    /// A unit just plugged in.
    pub fn new(unit: &str) -> Tile {
        Tile {
            unit: unit.to_string(),
            label: None,
            phase: Phase::Info,
            status: Status::Working,
            recoveries: Vec::new(),
            finished_at_ms: None,
        }
    }

    /// The flow starts (again) on the unit.
    pub fn start(&mut self) {
        self.status = Status::Working;
        self.phase = Phase::Info;
        self.finished_at_ms = None;
    }

    /// The flow stopped at `phase`: the unit went away, or failed with `diagnosis`. A trouble
    /// the technician recovers from (not a set-aside) counts once, however many times it is
    /// reported (the unplug event and the failed transfer both say the cable went).
    pub fn stopped(&mut self, phase: Phase, diagnosis: Diagnosis) {
        let first = self.status == Status::Working;
        if first && diagnosis.severity != Severity::SetAside {
            self.recoveries.push(diagnosis.cause);
        }
        self.phase = phase;
        self.status = if diagnosis.cause == Cause::Unplugged {
            Status::Unplugged
        } else {
            Status::Failed(diagnosis)
        };
    }

    /// The unit went away while the flow ran (the browser's disconnect event).
    pub fn unplugged(&mut self) {
        if self.status == Status::Working {
            self.recoveries.push(Cause::Unplugged);
            self.status = Status::Unplugged;
        }
    }

    /// Whether the unit is neither done nor to be set aside: work is left on it. These are
    /// the tiles a sign-out keeps for the factory's next sign-in.
    pub fn is_mid_way(&self) -> bool {
        match &self.status {
            Status::Done { .. } => false,
            Status::Failed(d) => d.severity != Severity::SetAside,
            Status::Working | Status::Unplugged => true,
        }
    }

    /// The page came back (a reload, a sign-in again) with this unit mid-way: it waits to be
    /// plugged in, and the reload counts as a recovery.
    pub fn restored(&mut self) {
        if self.is_mid_way() {
            self.recoveries.push(Cause::Reload);
            self.status = Status::Unplugged;
        }
    }

    /// The unit is done at `now_ms`; returns its recoveries for the figures. A resumed unit
    /// with none seen on this bench was resumed from the journal alone: a reload.
    pub fn done(&mut self, apparatus_id: ApparatusId, resumed: bool, now_ms: u64) -> Vec<Cause> {
        if resumed && self.recoveries.is_empty() {
            self.recoveries.push(Cause::Reload);
        }
        self.phase = Phase::Done;
        self.status = Status::Done {
            apparatus_id,
            resumed,
        };
        self.finished_at_ms = Some(now_ms);
        self.recoveries.clone()
    }

    /// Whether the tile is in the done list at `now_ms` rather than on the bench: green for
    /// [`FOLD_AFTER_MS`], or set aside.
    pub fn folded(&self, now_ms: u64) -> bool {
        match (&self.status, self.finished_at_ms) {
            (Status::Done { .. }, Some(t)) => now_ms >= t.saturating_add(FOLD_AFTER_MS),
            (Status::Failed(_), Some(_)) => true,
            _ => false,
        }
    }

    /// What the tile leads with: the product serial on the unit's label once its info is read
    /// (a technician matches the tile to the unit in hand by it), else the USB serial.
    pub fn title(&self) -> String {
        match &self.label {
            Some(serial) => serial.to_string(),
            None => self.unit.clone(),
        }
    }

    /// The buttons that make sense in the tile's state, and only those: a running or green
    /// unit has nothing to retry, a red one is set aside (nothing to retry, and in training it
    /// has left the bench), an unplugged one is plugged back in, not retried or pulled.
    pub fn actions(&self, training: bool) -> Vec<Action> {
        let mut out = Vec::new();
        match &self.status {
            Status::Working => {
                if training {
                    out.push(Action::PullCable);
                }
            }
            Status::Done { .. } => {}
            Status::Failed(d) if d.severity == Severity::SetAside => {
                if self.finished_at_ms.is_none() {
                    out.push(Action::SetAside);
                }
            }
            Status::Failed(_) => {
                out.push(Action::Retry);
                if training {
                    out.push(Action::PullCable);
                }
            }
            Status::Unplugged => {
                if training {
                    out.push(Action::PlugBack);
                }
            }
        }
        out
    }
}

/// Drops the oldest folded tiles beyond [`KEEP_DONE`], so a shift's bench stays small.
pub fn keep_recent(tiles: &mut Vec<Tile>, now_ms: u64) {
    let folded = tiles.iter().filter(|t| t.folded(now_ms)).count();
    let mut drop = folded.saturating_sub(KEEP_DONE);
    tiles.retain(|t| {
        let old = drop > 0 && t.folded(now_ms);
        if old {
            drop -= 1;
        }
        !old
    });
}

/// The done list as HTML: the folded tiles, newest first, one line each (product serial, the
/// identity or why it was set aside, its retries, the time from `clock`); empty without any.
/// Text rather than view nodes, as the charts (`state::chart`), for the size of the page.
pub fn done_list(tiles: &[Tile], now_ms: u64, clock: impl Fn(u64) -> String) -> String {
    use crate::state::chart::escape;
    let mut done: Vec<&Tile> = tiles.iter().filter(|t| t.folded(now_ms)).collect();
    if done.is_empty() {
        return String::new();
    }
    done.sort_by_key(|t| std::cmp::Reverse(t.finished_at_ms));
    let mut s = format!(
        "<section class=\"done-list\" id=\"done-list\"><h2>Done ({})</h2><ul>",
        done.len()
    );
    for t in done {
        let (class, what) = match &t.status {
            Status::Done { apparatus_id, .. } => ("done-row ok", format!("✓ {apparatus_id}")),
            Status::Failed(d) => ("done-row bad", format!("✗ set aside: {}", d.title)),
            _ => ("done-row", String::new()),
        };
        let retries = match t.recoveries.len() {
            0 => String::new(),
            1 => "1 retry".into(),
            n => format!("{n} retries"),
        };
        s.push_str(&format!(
            "<li class=\"{class}\" data-unit=\"{}\"><b>{}</b><span>{}</span><span class=\"retries\">{retries}</span><time>{}</time></li>",
            escape(&t.unit),
            escape(&t.title()),
            escape(&what),
            escape(&t.finished_at_ms.map(&clock).unwrap_or_default())
        ));
    }
    s.push_str("</ul></section>");
    s
}
