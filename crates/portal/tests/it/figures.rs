//! Line figures and diagnostics.

use imprint_core::ErrorCode;
use imprint_portal::state::analytics::{Outcome, line};
use imprint_portal::state::diagnose::{Diagnosis, Severity};
use imprint_portal::station::LinkError;

fn o(at_ms: u64, station: &str, tech: &str, ok: bool, attempts: u32) -> Outcome {
    Outcome {
        at_ms,
        station: station.into(),
        technician: tech.into(),
        ok,
        attempts,
        recoveries: Vec::new(),
        duration_ms: 0,
    }
}

#[test]
fn units_per_hour_first_pass_yield_and_retries() {
    let hour = 3_600_000;
    let outcomes = vec![
        o(10, "s1", "ana", true, 1),
        o(20, "s1", "ana", true, 2),
        o(30, "s2", "ben", true, 1),
        o(40, "s2", "ben", false, 3),
        o(hour + 10, "s1", "ana", true, 1), // outside a one-hour window ending at hour
    ];
    let l = line(&outcomes, hour, hour);
    assert_eq!(
        (
            l.total.done,
            l.total.failed,
            l.total.first_pass,
            l.total.retries
        ),
        (3, 1, 2, 3)
    );
    assert_eq!(l.total.per_hour, 3);
    assert_eq!(l.total.first_pass_yield_percent(), 50);
    assert_eq!(l.by_station["s1"].done, 2);
    assert_eq!(l.by_technician["ben"].failed, 1);
    assert_eq!(line(&[], hour, hour).total.first_pass_yield_percent(), 0);
}

#[test]
fn every_browser_failure_has_its_fix() {
    let cases = [
        ("SecurityError", "Access denied.", "udev rule"),
        (
            "NetworkError",
            "Unable to claim interface.",
            "Close other programs",
        ),
        (
            "SecurityError",
            "The requested interface implements a protected class.",
            "wrong interface class",
        ),
        ("NotFoundError", "No device selected.", "pick the unit"),
        (
            "NotFoundError",
            "The device was disconnected.",
            "Plug the unit back in",
        ),
        (
            "NetworkError",
            "A transfer error has occurred.",
            "usually an unplug",
        ),
        (
            "NotAllowedError",
            "Must be handling a user gesture to show a permission request.",
            "chooser",
        ),
    ];
    for (name, message, fix) in cases {
        let d = Diagnosis::from_browser(name, message);
        assert!(d.fix.contains(fix), "{name}: {message} -> {d:?}");
    }
    assert!(Diagnosis::no_webusb(true).fix.contains("Chrome or Edge"));
    assert!(Diagnosis::no_webusb(false).fix.contains("https://"));
    assert!(
        Diagnosis::from_link(&LinkError::Timeout)
            .detail
            .contains("hidden")
    );
    let locked = Diagnosis::from_device(ErrorCode::Locked);
    assert_eq!(locked.severity, Severity::SetAside);
    assert!(locked.title.starts_with("The device is locked"));
    assert!(
        Diagnosis::linux_permissions("x")
            .fix
            .contains("snap connect chromium:raw-usb")
    );
}

#[test]
fn outcomes_older_than_a_day_are_dropped() {
    use imprint_portal::state::analytics::{KEEP_OUTCOMES_MS, keep_recent};
    let now = 10 * KEEP_OUTCOMES_MS;
    let at = |ms: u64| Outcome {
        at_ms: ms,
        station: "s".into(),
        technician: "t".into(),
        ok: true,
        attempts: 1,
        recoveries: Vec::new(),
        duration_ms: 20,
    };
    let mut o = vec![
        at(now - KEEP_OUTCOMES_MS - 1),
        at(now - KEEP_OUTCOMES_MS),
        at(now),
    ];
    keep_recent(&mut o, now);
    assert_eq!(o.len(), 2);
    let mut many: Vec<Outcome> = (0..20_010).map(|_| at(now)).collect();
    keep_recent(&mut many, now);
    assert_eq!(many.len(), 20_000);
}

#[test]
fn recoveries_count_by_kind_and_end_first_pass() {
    use imprint_portal::state::diagnose::Cause;
    let mut resumed = o(10, "s1", "ana", true, 1);
    resumed.recoveries = vec![
        Cause::NoRecord,
        Cause::Unplugged,
        Cause::Unplugged,
        Cause::Reload,
    ];
    let outcomes = vec![
        resumed,
        o(20, "s1", "ana", true, 1),
        o(30, "s1", "ana", true, 3),
    ];
    let l = line(&outcomes, 100, 3_600_000);
    assert_eq!(
        l.total.first_pass, 1,
        "a unit with a recovery is not first pass"
    );
    assert_eq!(
        l.total.retries,
        4 + 2,
        "four recoveries, and an old outcome's two extra installs"
    );
    assert_eq!(
        l.total.by_cause.into_iter().collect::<Vec<_>>(),
        [
            (Cause::Unplugged, 2),
            (Cause::NoRecord, 1),
            (Cause::Reload, 1)
        ]
    );
}

#[test]
fn the_shift_charts_bin_by_the_clock_and_leave_gaps_where_nothing_was_done() {
    use imprint_portal::state::analytics::{axis, shift};
    let min = 60_000;
    let now = 10 * 60 * min + 5 * min; // 10:05
    let bad = o(now - 3 * min, "s2", "ben", false, 1);
    let outcomes = vec![
        o(now - 60 * min, "s1", "ana", true, 1), // 09:05, bin 09:00
        o(now - 58 * min, "s1", "ana", true, 2), // 09:07
        o(now - 2 * min, "s1", "ana", true, 1),  // 10:03, bin 10:00
        bad,                                     // 10:02, s2
        o(now - 9 * 60 * min, "s1", "ana", true, 1), // outside the 8-hour shift
    ];
    let s = shift(&outcomes, now, 8 * 60 * min, 10 * min);
    assert_eq!(s.bins, 48);
    assert_eq!(s.start_ms % (10 * min), 0, "bins line up with the clock");
    assert_eq!(
        s.start_ms + 48 * 10 * min,
        now - 5 * min + 10 * min,
        "the last bin holds now"
    );
    let s1 = &s.units["s1"];
    assert_eq!(s1.iter().sum::<u32>(), 3);
    assert_eq!((s1[41], s1[47]), (2, 1));
    assert_eq!(
        s.units["s2"].iter().sum::<u32>(),
        0,
        "a set-aside unit is not a unit done"
    );
    let hourly = shift(&outcomes, now, 8 * 60 * min, 60 * min);
    assert_eq!(
        hourly.fpy["s1"][6],
        Some(50),
        "09:00 to 10:00: one of two first pass"
    );
    assert_eq!(hourly.fpy["s1"][7], Some(100));
    assert_eq!(hourly.fpy["s1"][5], None, "nothing done: no point, not 0%");
    assert_eq!(hourly.fpy["s2"][7], Some(0));
    assert_eq!(axis(0), (1, 1));
    assert_eq!(axis(7), (8, 2));
    assert_eq!(axis(23), (25, 5));
    assert_eq!(axis(100), (100, 20));
    assert_eq!(axis(120), (150, 50));
}
