//! The bench's tiles: what each leads with, and which buttons each state offers; the header's
//! lease badge; the wording a technician reads.

use imprint_core::{KeyId, ProductSerial};
use imprint_portal::state::bench::{Action, Status, Tile};
use imprint_portal::state::bench::{FOLD_AFTER_MS, KEEP_DONE, keep_recent};
use imprint_portal::state::diagnose::{Cause, Diagnosis, key_list};
use imprint_portal::state::journal::Journal;
use imprint_portal::station::LinkError;
use imprint_portal::station::Phase;

use crate::journal::{id, rec};

fn tile(status: Status) -> Tile {
    Tile {
        status,
        ..Tile::new("53494D2D000000000003E09D")
    }
}

#[test]
fn a_tile_leads_with_the_product_serial_once_it_is_read() {
    let mut t = Tile::new("53494D2D000000000003E09D");
    assert_eq!(t.title(), "53494D2D000000000003E09D");
    t.label = Some(ProductSerial::new("SIM-254109").unwrap());
    assert_eq!(t.title(), "SIM-254109");
}

#[test]
fn each_state_offers_only_what_makes_sense_in_it() {
    let done = Status::Done {
        apparatus_id: id("IMP-1"),
        resumed: false,
    };
    let set_aside = Status::Failed(Diagnosis::wrong_model("CAM-X100", "OTHER-MODEL"));
    let amber = Status::Failed(Diagnosis::from_link(&LinkError::Timeout));
    for (status, training, want) in [
        (Status::Working, true, vec![Action::PullCable]),
        (Status::Working, false, vec![]),
        (done.clone(), true, vec![]),
        (set_aside.clone(), true, vec![Action::SetAside]),
        (set_aside, false, vec![Action::SetAside]),
        (amber.clone(), true, vec![Action::Retry, Action::PullCable]),
        (amber, false, vec![Action::Retry]),
        (Status::Unplugged, true, vec![Action::PlugBack]),
        (Status::Unplugged, false, vec![]),
    ] {
        assert_eq!(
            tile(status.clone()).actions(training),
            want,
            "{status:?} {training}"
        );
    }
}

#[test]
fn the_lease_badge_counts_usable_records_and_their_first_deadline() {
    let mut j = Journal::default();
    assert_eq!(j.lease_left(0), None);
    let mut a = rec("L-1", 1);
    a.not_after_ms = Some(5_000);
    let mut b = rec("L-2", 1);
    b.not_after_ms = Some(9_000);
    j.add_records([a, b, rec("P-1", 1)]);
    assert_eq!(j.lease_left(1_000), Some((2, 5_000)));
    assert_eq!(
        j.lease_left(6_000),
        Some((1, 9_000)),
        "an expired one is not counted"
    );
    j.install_sent(&id("L-2"), "u").unwrap();
    assert_eq!(j.lease_left(6_000), None, "one given to a unit is not left");
}

#[test]
fn wording_a_technician_reads() {
    let k = |n: &[u32]| -> Vec<KeyId> { n.iter().map(|n| KeyId::new(*n).unwrap()).collect() };
    assert_eq!(key_list(&k(&[1])), "key 1");
    assert_eq!(key_list(&k(&[1, 2])), "keys 1, 2");
    assert_eq!(key_list(&[]), "no keys");
    let w = Diagnosis::wrong_model("CAM-X100", "OTHER-MODEL");
    assert_eq!(
        w.detail,
        "This station is set up for CAM-X100; the unit reports product code OTHER-MODEL."
    );
    let n = Diagnosis::no_records("CAM-X100", &k(&[1]));
    assert!(n.detail.contains("(key 1)"), "{}", n.detail);
    let g = imprint_portal::station::garbage(&imprint_core::ProtocolError::Frame(
        imprint_core::FrameError::BadMagic,
    ));
    assert!(
        matches!(&g, LinkError::Garbage(m) if !m.contains("frame") && m.contains("Imprint protocol")),
        "{g:?}"
    );
}

/// What the issue saw: four recoveries (no record, a pulled cable, a power cut, a reload)
/// counted as one. Each counts, once, by its kind.
#[test]
fn every_recovery_counts_once_by_its_kind() {
    let mut t = Tile::new("u");
    t.stopped(
        Phase::Record,
        Diagnosis::no_records("CAM-X100", &[KeyId::new(1).unwrap()]),
    );
    t.start();
    // The cable goes: the disconnect event and then the failed transfer both say so.
    t.unplugged();
    t.stopped(
        Phase::Install,
        Diagnosis::from_link(&LinkError::Disconnected),
    );
    assert_eq!(t.status, Status::Unplugged);
    t.start();
    // A power cut looks the same to WebUSB.
    t.stopped(
        Phase::Install,
        Diagnosis::from_link(&LinkError::Disconnected),
    );
    // The page reloads with the unit mid-way.
    t.restored();
    t.start();
    let r = t.done(id("IMP-1"), true, 1_000);
    assert_eq!(
        r,
        [
            Cause::NoRecord,
            Cause::Unplugged,
            Cause::Unplugged,
            Cause::Reload
        ]
    );
    // A set-aside is the end of the unit, not a recovery.
    let mut bad = Tile::new("v");
    bad.stopped(
        Phase::Record,
        Diagnosis::wrong_model("CAM-X100", "OTHER-MODEL"),
    );
    assert!(bad.recoveries.is_empty());
    // Resumed from the journal alone, with nothing seen on this bench: a reload.
    let mut quiet = Tile::new("w");
    assert_eq!(quiet.done(id("IMP-2"), true, 0), [Cause::Reload]);
    let mut first = Tile::new("x");
    assert!(first.done(id("IMP-3"), false, 0).is_empty());
}

#[test]
fn green_tiles_fold_into_the_done_list_and_red_ones_once_set_aside() {
    let mut t = Tile::new("u");
    assert!(!t.folded(0));
    t.done(id("IMP-1"), false, 10_000);
    assert!(!t.folded(10_000 + FOLD_AFTER_MS - 1));
    assert!(t.folded(10_000 + FOLD_AFTER_MS));
    let mut bad = Tile::new("v");
    bad.stopped(Phase::Record, Diagnosis::wrong_model("A", "B"));
    assert!(
        !bad.folded(u64::MAX),
        "red stays on the bench until set aside"
    );
    bad.finished_at_ms = Some(5);
    assert!(bad.folded(5));
    assert!(bad.actions(true).is_empty(), "nothing left to do");
    // An amber tile never folds.
    let mut amber = Tile::new("w");
    amber.stopped(Phase::Install, Diagnosis::from_link(&LinkError::Timeout));
    assert!(!amber.folded(u64::MAX));
    // Restarted, a folded tile is back on the bench.
    t.start();
    assert!(!t.folded(u64::MAX));
}

#[test]
fn the_done_list_keeps_the_most_recent_units() {
    let mut tiles: Vec<Tile> = (0..KEEP_DONE + 5)
        .map(|n| {
            let mut t = Tile::new(&format!("u{n}"));
            t.done(id(&format!("IMP-{n}")), false, n as u64);
            t
        })
        .collect();
    tiles.push(Tile::new("working"));
    keep_recent(&mut tiles, u64::MAX);
    assert_eq!(tiles.len(), KEEP_DONE + 1);
    assert_eq!(tiles[0].unit, "u5", "the oldest went");
    assert!(tiles.iter().any(|t| t.unit == "working"));
}

#[test]
fn a_bench_reads_back_as_it_was_stored() {
    let mut t = Tile::new("u");
    t.label = Some(ProductSerial::new("SIM-000001").unwrap());
    t.stopped(Phase::Install, Diagnosis::from_link(&LinkError::Timeout));
    let text = serde_json::to_string(&vec![t.clone()]).unwrap();
    let back: Vec<Tile> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, vec![t]);
}

#[test]
fn a_sign_out_keeps_only_the_units_left_mid_way() {
    let mut done = Tile::new("a");
    done.done(id("IMP-1"), false, 0);
    let mut red = Tile::new("b");
    red.stopped(Phase::Record, Diagnosis::wrong_model("A", "B"));
    let mut amber = Tile::new("c");
    amber.stopped(Phase::Install, Diagnosis::from_link(&LinkError::Timeout));
    let mut gone = Tile::new("d");
    gone.unplugged();
    let kept: Vec<String> = [done, red, amber, gone, Tile::new("e")]
        .into_iter()
        .filter(Tile::is_mid_way)
        .map(|t| t.unit)
        .collect();
    assert_eq!(kept, ["c", "d", "e"]);
}

#[test]
fn a_chart_has_its_axes_labels_lines_and_legend_and_escapes_names() {
    use imprint_portal::state::chart::{LineChart, PALETTE};
    let hour = 3_600_000;
    let series = vec![
        ("line-1".to_string(), vec![Some(0), Some(4), None, Some(2)]),
        ("<b>x</b>".to_string(), vec![None, None, Some(8), None]),
    ];
    let html = LineChart {
        title: "Units per hour",
        start_ms: 8 * hour,
        bin_ms: hour,
        series: &series,
        top: 8,
        step: 2,
        suffix: "",
        empty: "no units in this shift yet",
    }
    .to_html(|ms| format!("{:02}:00", ms / hour));
    // Value axis: 0, 2, 4, 6, 8; time axis: the clock on whole two hours (08:00, 10:00, 12:00).
    for tick in [
        ">0<", ">2<", ">4<", ">6<", ">8<", ">08:00<", ">10:00<", ">12:00<",
    ] {
        assert!(html.contains(tick), "{tick} in {html}");
    }
    assert!(!html.contains(">09:00<"));
    // A line broken where a bin has no value, a dot where a value stands alone.
    assert!(html.contains("d=\"M134 236 L274 126 M554 181\""), "{html}");
    assert_eq!(html.matches("<circle").count(), 2, "{html}");
    assert!(html.contains(PALETTE[0]) && html.contains(PALETTE[1]));
    // A station name is text, never markup.
    assert!(!html.contains("<b>x</b>"));
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
    let empty = LineChart {
        series: &[],
        ..LineChart {
            title: "t",
            start_ms: 0,
            bin_ms: hour,
            series: &series,
            top: 1,
            step: 1,
            suffix: "%",
            empty: "no units in this shift yet",
        }
    }
    .to_html(|_| String::new());
    assert!(empty.contains("no units in this shift yet"));
}

#[test]
fn the_done_list_shows_finished_units_newest_first() {
    use imprint_portal::state::bench::done_list;
    let mut a = Tile::new("a");
    a.label = Some(ProductSerial::new("SIM-000001").unwrap());
    a.unplugged();
    a.start();
    a.done(id("IMP-1"), false, 1_000);
    let mut b = Tile::new("b");
    b.done(id("IMP-2"), false, 2_000);
    let mut c = Tile::new("c");
    c.stopped(Phase::Record, Diagnosis::wrong_model("A", "B"));
    c.finished_at_ms = Some(3_000);
    let working = Tile::new("d");
    let html = done_list(&[a, b, c, working], 100_000, |ms| format!("t{ms}"));
    assert!(html.starts_with("<section class=\"done-list\" id=\"done-list\"><h2>Done (3)</h2>"));
    let (ic, ib, ia) = (
        html.find("data-unit=\"c\"").unwrap(),
        html.find("data-unit=\"b\"").unwrap(),
        html.find("data-unit=\"a\"").unwrap(),
    );
    assert!(ic < ib && ib < ia, "newest first: {html}");
    assert!(html.contains("<b>SIM-000001</b><span>✓ IMP-1</span><span class=\"retries\">1 retry</span><time>t1000</time>"), "{html}");
    assert!(html.contains("class=\"done-row bad\"") && html.contains("✗ set aside: Wrong model"));
    assert!(!html.contains("data-unit=\"d\""));
    assert_eq!(done_list(&[Tile::new("x")], 0, |_| String::new()), "");
}

#[test]
fn the_figures_panel_shows_the_numbers_tables_and_kinds_with_names_as_text() {
    use imprint_portal::state::analytics::Outcome;
    use imprint_portal::state::chart::figures_html;
    let o = |at_ms, technician: &str, ok, recoveries: Vec<Cause>| Outcome {
        at_ms,
        station: "<i>st</i>".into(),
        technician: technician.into(),
        ok,
        attempts: 1,
        recoveries,
        duration_ms: 0,
    };
    let outcomes = [
        o(1_000, "ana", true, vec![]),
        o(2_000, "ana", true, vec![Cause::Unplugged]),
        o(3_000, "ben", false, vec![]),
    ];
    let html = figures_html(&outcomes, 10_000, |_| "00:00".into());
    assert!(html.contains("<b id=\"uph\">2</b> units/h"), "{html}");
    assert!(
        html.contains("<b id=\"fpy\">33%</b>"),
        "one of three first pass: {html}"
    );
    assert!(html.contains("<b>1</b> retry</div>"));
    assert!(html.contains("<b>1</b> set aside"));
    assert!(
        html.contains("<tr><td>ana</td><td>2</td><td>50%</td><td>1</td></tr>"),
        "{html}"
    );
    assert!(html.contains("<td>&lt;i&gt;st&lt;/i&gt;</td>") && !html.contains("<i>st</i>"));
    assert!(html.contains("id=\"chart-units\"") && html.contains("id=\"chart-fpy\""));
    assert!(html.contains("<h3>Retries by kind</h3>"));
    assert!(html.contains("<li><b>1</b> cable pulled or power lost</li>"));
    let none = figures_html(&[], 0, |_| String::new());
    assert!(!none.contains("Retries by kind") && none.contains("no units in this shift yet"));
}
