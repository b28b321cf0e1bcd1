//! The frame every SVG chart shares: its size and margins, the series palette, and axes with round values, both
//! the fixed-step y axis of the distribution charts (`nice_axis`) and the tick sets of the time charts (`Ticks`).

use super::text::num;
use std::fmt::Write as _;

/// Series colours (Tableau 10), cycled when a check has more distributions than colours.
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Chart size in SVG user units; the SVG scales to the page width.
pub(super) const CHART_W: f64 = 640.0;
pub(super) const CHART_H: f64 = 240.0;
/// Plot margins, leaving room for axis labels.
pub(super) const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 16.0;
pub(super) const MARGIN_TOP: f64 = 16.0;
const MARGIN_BOTTOM: f64 = 48.0;

/// The y axis with `steps` gridlines up to `y_max`, and the rotated axis label (already escaped).
pub(super) fn y_axis(h: &mut String, y_max: f64, steps: u32, label_escaped: &str) {
    let (plot_w, plot_h) = plot_size();
    for q in 0..=steps {
        let frac = f64::from(q) / f64::from(steps);
        let v = y_max * frac;
        let y = MARGIN_TOP + plot_h * (1.0 - frac);
        w!(
            h,
            "<line class=\"grid\" x1=\"{MARGIN_LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\n",
            MARGIN_LEFT + plot_w
        );
        w!(h, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n", MARGIN_LEFT - 6.0, y + 4.0, num(v));
    }
    w!(
        h,
        "<line class=\"axis\" x1=\"{MARGIN_LEFT}\" y1=\"{MARGIN_TOP}\" x2=\"{MARGIN_LEFT}\" y2=\"{:.1}\"/>\n",
        MARGIN_TOP + plot_h
    );
    w!(
        h,
        "<line class=\"axis\" x1=\"{MARGIN_LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\n",
        MARGIN_TOP + plot_h,
        MARGIN_LEFT + plot_w,
        MARGIN_TOP + plot_h
    );
    let cy = MARGIN_TOP + plot_h / 2.0;
    w!(
        h,
        "<text x=\"14\" y=\"{cy:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {cy:.1})\">{label_escaped}</text>\n"
    );
}

/// The x axis label (already escaped), centred under the plot.
pub(super) fn x_label(h: &mut String, label_escaped: &str) {
    let (plot_w, _) = plot_size();
    w!(
        h,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label_escaped}</text>\n",
        MARGIN_LEFT + plot_w / 2.0,
        CHART_H - 8.0
    );
}

/// The text a chart shows instead of a plot when there is nothing to draw.
pub(super) fn no_samples(h: &mut String) {
    w!(h, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no samples</text>\n", CHART_W / 2.0, CHART_H / 2.0);
}

/// Width and height of the plot area inside the margins.
pub(super) fn plot_size() -> (f64, f64) {
    (CHART_W - MARGIN_LEFT - MARGIN_RIGHT, CHART_H - MARGIN_TOP - MARGIN_BOTTOM)
}

/// The colour of series `j`.
pub(super) fn color(j: usize) -> &'static str {
    PALETTE[j % PALETTE.len()]
}

/// A round axis maximum at or above `x` (1, 2 or 5 times a power of ten) and how many gridline steps divide it
/// into round values; `(1, 5)` for nothing.
pub(super) fn nice_axis(x: f64) -> (f64, u32) {
    if !x.is_finite() || x <= 0.0 {
        return (1.0, 5);
    }
    let pow = 10f64.powf(x.log10().floor());
    let (m, steps) = [(1.0, 5), (2.0, 4), (5.0, 5), (10.0, 5)]
        .into_iter()
        .find(|(m, _)| m * pow >= x * (1.0 - 1e-12))
        .unwrap_or((10.0, 5));
    (m * pow, steps)
}

/// Grows `range` to include `v`.
pub(super) fn widen(range: Option<(f64, f64)>, v: f64) -> Option<(f64, f64)> {
    Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
}

/// A linear axis with round ticks at `lo`, `lo + step`, …, `hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ticks {
    pub(super) lo: f64,
    hi: f64,
    /// 1, 2 or 5 times a power of ten.
    step: f64,
}

impl Ticks {
    /// Round ticks covering `[lo, hi]` with about `target` intervals. A single value gets a range around it
    /// (starting at 0 when the value is not negative); a non-finite or reversed range becomes `[0, 1]`.
    pub(super) fn covering(lo: f64, hi: f64, target: u32) -> Ticks {
        const UNIT: Ticks = Ticks { lo: 0.0, hi: 1.0, step: 0.2 };
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return UNIT;
        }
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else if lo == 0.0 {
            (0.0, 1.0)
        } else if lo > 0.0 {
            ((lo - 1.0).max(0.0), hi + 1.0)
        } else {
            (lo - 1.0, (hi + 1.0).min(0.0))
        };
        let raw = (hi - lo) / f64::from(target.max(1));
        if !raw.is_finite() || raw <= 0.0 {
            return UNIT;
        }
        let pow = 10f64.powf(raw.log10().floor());
        let step =
            [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * pow).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * pow);
        let ticks = Ticks { lo: (lo / step).floor() * step, hi: (hi / step).ceil() * step, step };
        if ticks.hi > ticks.lo && ticks.hi.is_finite() && ticks.lo.is_finite() { ticks } else { UNIT }
    }

    /// The tick values, lowest first.
    pub(super) fn values(&self) -> impl Iterator<Item = f64> + use<> {
        let t = *self;
        let n = ((t.hi - t.lo) / t.step).round() as u32;
        (0..=n).map(move |k| t.lo + t.step * f64::from(k))
    }

    /// Where `v` falls, from 0 at `lo` to 1 at `hi`.
    pub(super) fn frac(&self, v: f64) -> f64 {
        ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// A tick label with as many decimals as the step needs, so labels are `0 20 40` or `0.2 0.4`.
    pub(super) fn label(&self, v: f64) -> String {
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        // A tick computed as 0.1 * 3 - 0.3 must not print as -0.0.
        let v = if v.abs() < self.step * 1e-6 { 0.0 } else { v };
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: axis maxima are round and never below the data. Method: a few values across magnitudes.
    #[test]
    fn nice_axis_maxima() {
        assert_eq!(nice_axis(0.0), (1.0, 5));
        assert_eq!(nice_axis(7.0), (10.0, 5));
        assert_eq!(nice_axis(10.0), (10.0, 5));
        assert_eq!(nice_axis(41.2), (50.0, 5));
        assert_eq!(nice_axis(230.0), (500.0, 5));
        assert_eq!(nice_axis(173.0), (200.0, 4));
        assert_eq!(nice_axis(f64::NAN), (1.0, 5));
    }

    /// Goal: time and value axes get round ticks that cover the data, start at zero when the data does, and
    /// never produce NaN for odd input. Method: ranges across magnitudes, a single value, and non-finite input.
    #[test]
    fn ticks_cover_the_range() {
        let t = Ticks::covering(0.0, 59.0, 8);
        assert_eq!((t.lo, t.hi, t.step), (0.0, 60.0, 10.0));
        assert_eq!(t.values().map(|v| t.label(v)).collect::<Vec<_>>(), ["0", "10", "20", "30", "40", "50", "60"]);
        let t = Ticks::covering(0.0, 287.3, 5);
        assert_eq!((t.lo, t.hi, t.step), (0.0, 300.0, 100.0));
        let t = Ticks::covering(-3.2, 2.0, 5);
        assert_eq!((t.lo, t.hi, t.step), (-4.0, 2.0, 2.0));
        assert_eq!(t.values().map(|v| t.label(v)).collect::<Vec<_>>(), ["-4", "-2", "0", "2"]);
        let t = Ticks::covering(0.0, 0.3, 5);
        assert_eq!(t.values().map(|v| t.label(v)).collect::<Vec<_>>(), ["0.0", "0.1", "0.2", "0.3"]);
        let t = Ticks::covering(5.0, 5.0, 8);
        assert!(t.lo <= 5.0 && t.hi > 5.0 && t.lo >= 0.0, "{t:?}");
        assert_eq!(Ticks::covering(0.0, 0.0, 5).hi, 1.0);
        assert!(Ticks::covering(-2.0, -2.0, 5).hi <= 0.0);
        for (lo, hi) in [(f64::NAN, 1.0), (0.0, f64::INFINITY), (2.0, 1.0), (-f64::MAX, f64::MAX)] {
            let t = Ticks::covering(lo, hi, 5);
            assert!(t.lo.is_finite() && t.hi.is_finite() && t.hi > t.lo && t.step > 0.0, "{lo} {hi}: {t:?}");
            assert!(t.values().count() <= 12);
        }
    }
}
