//! Line charts as SVG text, for the station's figures and the console's activity: axes with
//! ticks and labels, a line per series, a legend. Text rather than a tree of view nodes,
//! because each distinct node in a Leptos view is code in the shipped module
//! (docs/benchmarks.md); and pure, so that what a chart shows is tested natively. Whole units
//! of a 640 x 270 box: no float formatting.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The stations' line colours, in order (distinct for the usual colour blindness).
pub const PALETTE: [&str; 6] = [
    "#1f6feb", "#d97706", "#0f9d58", "#c2185b", "#6d28d9", "#475569",
];

const LEFT: u64 = 64;
const RIGHT: u64 = 624;
const TOP: u64 = 16;
const BOTTOM: u64 = 236;

/// One chart: a value per bin and series (`None`: no point there).
#[derive(Debug, Clone)]
pub struct LineChart<'a> {
    /// What it shows, above it and as its accessible name.
    pub title: &'a str,
    /// Where the first bin starts (Unix ms).
    pub start_ms: u64,
    /// How long a bin is (ms).
    pub bin_ms: u64,
    /// The series, by name (a station), each with one value per bin.
    pub series: &'a [(String, Vec<Option<u32>>)],
    /// The value axis runs from 0 to this, with a tick every `step`.
    pub top: u32,
    /// See `top`.
    pub step: u32,
    /// After each value on the axis ("%", or nothing).
    pub suffix: &'a str,
    /// What the legend says when there is no series ("no units in this shift yet").
    pub empty: &'a str,
}

/// `text` for an SVG or HTML text node or attribute: station names are the technicians' input.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour of the `n`th series, round the palette.
pub fn colour_of(n: usize) -> &'static str {
    PALETTE.get(n % PALETTE.len()).copied().unwrap_or("#475569")
}

impl LineChart<'_> {
    fn bins(&self) -> u64 {
        self.series
            .iter()
            .map(|(_, v)| v.len() as u64)
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// The chart as a `<figure>`: caption, SVG, legend. `clock` names an instant (Unix ms) on
    /// the time axis (the page gives the local HH:MM); the clock is shown at every bin boundary
    /// on a whole two hours.
    pub fn to_html(&self, clock: impl Fn(u64) -> String) -> String {
        let bins = self.bins();
        let top = u64::from(self.top.max(1));
        let step = u64::from(self.step.max(1));
        let x = |i: u64| LEFT + (2 * i + 1) * (RIGHT - LEFT) / (2 * bins);
        let y = |v: u32| BOTTOM - u64::from(v).min(top) * (BOTTOM - TOP) / top;
        let title = escape(self.title);
        let mut s = format!(
            "<figcaption>{title}</figcaption><svg viewBox=\"0 0 640 270\" role=\"img\" aria-label=\"{title}\">"
        );
        for k in 0..=top / step {
            let v = k * step;
            let yy = BOTTOM - v * (BOTTOM - TOP) / top;
            s.push_str(&format!(
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy}\" y2=\"{yy}\"/><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{v}{}</text>",
                LEFT - 8,
                yy + 6,
                escape(self.suffix)
            ));
        }
        s.push_str(&format!(
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{BOTTOM}\" y2=\"{BOTTOM}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{BOTTOM}\"/>"
        ));
        for b in 0..=bins {
            let at = self.start_ms + b * self.bin_ms;
            if !at.is_multiple_of(2 * 3_600_000) {
                continue;
            }
            let xx = LEFT + b * (RIGHT - LEFT) / bins;
            // The last label is anchored at its end, so that it stays in the box.
            let anchor = if xx + 40 > RIGHT { "end" } else { "middle" };
            s.push_str(&format!(
                "<line class=\"axis\" x1=\"{xx}\" x2=\"{xx}\" y1=\"{BOTTOM}\" y2=\"{}\"/><text class=\"tick\" x=\"{xx}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                BOTTOM + 6,
                BOTTOM + 26,
                escape(&clock(at))
            ));
        }
        for (n, (name, values)) in self.series.iter().enumerate() {
            let colour = colour_of(n);
            // A break in the line where a bin has no value; a dot where a value stands alone.
            let mut d = String::new();
            let mut dots = String::new();
            let at = |i: Option<usize>| i.and_then(|i| values.get(i)).copied().flatten();
            for (i, v) in values.iter().enumerate() {
                let Some(v) = *v else { continue };
                let pen = if at(i.checked_sub(1)).is_some() {
                    'L'
                } else {
                    'M'
                };
                d.push_str(&format!("{pen}{} {} ", x(i as u64), y(v)));
                if at(i.checked_sub(1)).is_none() && at(Some(i + 1)).is_none() {
                    dots.push_str(&format!(
                        "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{colour}\"/>",
                        x(i as u64),
                        y(v)
                    ));
                }
            }
            s.push_str(&format!(
                "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"3\" stroke-linejoin=\"round\"><title>{}</title></path>{dots}",
                d.trim_end(),
                escape(name)
            ));
        }
        s.push_str("</svg><div class=\"legend\">");
        if self.series.is_empty() {
            s.push_str(&format!(
                "<span class=\"key\">{}</span>",
                escape(self.empty)
            ));
        }
        for (n, (name, _)) in self.series.iter().enumerate() {
            s.push_str(&format!(
                "<span class=\"key\"><i style=\"background:{}\"></i>{}</span>",
                colour_of(n),
                escape(name)
            ));
        }
        s.push_str("</div>");
        s
    }
}

/// A round top for a chart's value axis at or above `max`, and the step between its ticks (at
/// most five steps): 7 gives (8, 2), 23 gives (25, 5), 0 gives (1, 1).
pub fn axis(max: u32) -> (u32, u32) {
    let mut scale = 1u32;
    loop {
        for m in [1u32, 2, 5] {
            let step = m.saturating_mul(scale);
            let top = max.div_ceil(step).max(1).saturating_mul(step);
            if top / step <= 5 {
                return (top, step);
            }
        }
        scale = scale.saturating_mul(10);
    }
}
