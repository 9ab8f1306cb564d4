//! The station's figures panel (`figures_html`), drawn with imprint-chart's line charts.

pub use imprint_chart::{LineChart, PALETTE, colour_of, escape};

/// The station's whole figures panel as HTML: the last hour's numbers (units per hour,
/// first-pass yield, retries, set aside), the shift's two charts, the tables by technician and
/// by station, and the retries by kind. Text for the same reason as the charts; names escaped.
pub fn figures_html(
    outcomes: &[crate::state::analytics::Outcome],
    now_ms: u64,
    clock: impl Fn(u64) -> String,
) -> String {
    use crate::state::analytics::{Figures, SHIFT_MS, axis, line, shift};
    let l = line(outcomes, now_ms, 3_600_000);
    let retries = |n: u32| if n == 1 { "retry" } else { "retries" };
    let mut s = format!(
        "<h2>Line, last hour</h2><div class=\"numbers\"><div><b id=\"uph\">{}</b> units/h</div><div><b id=\"fpy\">{}%</b> first-pass yield</div><div><b>{}</b> {}</div><div><b>{}</b> set aside</div></div>",
        l.total.per_hour,
        l.total.first_pass_yield_percent(),
        l.total.retries,
        retries(l.total.retries),
        l.total.failed
    );
    let units = shift(outcomes, now_ms, SHIFT_MS, 10 * 60_000);
    let hourly = shift(outcomes, now_ms, SHIFT_MS, 3_600_000);
    let (top, step) = axis(units.units.values().flatten().copied().max().unwrap_or(0));
    let units_series: Vec<(String, Vec<Option<u32>>)> = units
        .units
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|n| Some(*n)).collect()))
        .collect();
    let fpy_series: Vec<(String, Vec<Option<u32>>)> = hourly.fpy.into_iter().collect();
    for (id, chart) in [
        (
            "chart-units",
            LineChart {
                title: "Units per 10 minutes, by station",
                start_ms: units.start_ms,
                bin_ms: units.bin_ms,
                series: &units_series,
                top,
                step,
                suffix: "",
                empty: "no units in this shift yet",
            },
        ),
        (
            "chart-fpy",
            LineChart {
                title: "First-pass yield per hour, by station",
                start_ms: hourly.start_ms,
                bin_ms: hourly.bin_ms,
                series: &fpy_series,
                top: 100,
                step: 25,
                suffix: "%",
                empty: "no units in this shift yet",
            },
        ),
    ] {
        s.push_str(&format!(
            "<figure class=\"chart\" id=\"{id}\">{}</figure>",
            chart.to_html(&clock)
        ));
    }
    let row = |name: &str, f: &Figures| {
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}%</td><td>{}</td></tr>",
            escape(name),
            f.done,
            f.first_pass_yield_percent(),
            f.retries
        )
    };
    s.push_str("<table><tr><th>Technician</th><th>Done</th><th>FPY</th><th>Retries</th></tr>");
    for (name, f) in &l.by_technician {
        s.push_str(&row(name, f));
    }
    s.push_str("<tr><th>Station</th><th></th><th></th><th></th></tr>");
    for (name, f) in &l.by_station {
        s.push_str(&row(name, f));
    }
    s.push_str("</table>");
    if !l.total.by_cause.is_empty() {
        s.push_str("<h3>Retries by kind</h3>");
    }
    s.push_str("<ul class=\"causes\" id=\"retries-by-kind\">");
    for (c, n) in &l.total.by_cause {
        s.push_str(&format!("<li><b>{n}</b> {}</li>", c.label()));
    }
    s.push_str("</ul>");
    s
}
