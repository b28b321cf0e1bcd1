//! Time charts: each is a line chart over seconds since the check started, one line per series, with markers
//! (faults, recoveries) as dashed vertical lines. Missing values (NaN, infinity) leave a gap in their line rather
//! than a made-up one.

use super::axes::{CHART_H, CHART_W, MARGIN_LEFT, MARGIN_TOP, Ticks, color, plot_size, widen};
use super::text::{esc, num};
use std::fmt::Write as _;
use xregion_model::report::{Chart, Marker};

/// Time charts aim for about this many intervals between round ticks on each axis.
const TIME_TICKS_X: u32 = 8;
const VALUE_TICKS_Y: u32 = 5;
/// Most points drawn per series. A longer series is thinned to the lowest and highest value of each slice, so
/// spikes survive while the page stays small whatever the run's length.
const SERIES_POINTS_MAX: usize = 2000;
/// A series with at most this many points gets a dot with a tooltip per point; on denser ones dots would smear.
const SERIES_DOTS_MAX: usize = 120;
/// Marker labels that would overlap are stacked in at most this many rows; one that fits in none is shown only in
/// the legend, which lists every marker.
const MARKER_LABEL_ROWS: usize = 3;
/// Longest marker label drawn in a plot, in characters: at 11 px it fits in half the plot's width.
const MARKER_LABEL_CHARS_MAX: usize = 40;
/// Height of one row of marker labels above a time chart's plot.
const MARKER_ROW_H: f64 = 14.0;
/// Rough width of one character of an 11 px chart label, for placing labels without measuring text.
const LABEL_CHAR_W: f64 = 6.2;
/// A line chart over time: one polyline per series, markers as dashed vertical lines, and a legend.
///
/// The y axis starts at 0 unless a value is negative, so that a small rise does not look like a cliff. Marker
/// labels sit in a band above the plot, one row per overlapping label, so they never cover the lines.
pub(super) fn time_chart(h: &mut String, chart: &Chart) {
    let lines: Vec<Vec<Vec<(f64, f64)>>> = chart.series.iter().map(|s| segments(&s.points)).collect();
    let markers: Vec<&Marker> = chart.markers.iter().filter(|m| m.t_s.is_finite()).collect();
    let drawn = || lines.iter().flatten().flatten();
    let t_range = drawn().map(|p| p.0).chain(markers.iter().map(|m| m.t_s)).fold(None, widen);
    let v_range = drawn().map(|p| p.1).fold(None, widen);
    let (t_lo, t_hi) = t_range.unwrap_or((0.0, 1.0));
    let (v_lo, v_hi) = v_range.map_or((0.0, 1.0), |(lo, hi)| (lo.min(0.0), hi.max(0.0)));
    let x_ticks = Ticks::covering(t_lo, t_hi, TIME_TICKS_X);
    let y_ticks = Ticks::covering(v_lo, v_hi, VALUE_TICKS_Y);
    let (plot_w, plot_h) = plot_size();
    let right = MARGIN_LEFT + plot_w;
    let x_of = |t: f64| MARGIN_LEFT + plot_w * x_ticks.frac(t);

    // Each label goes right of its line unless it would leave the plot, then left of it, in the first row where
    // it overlaps no earlier label. A label that fits in no row is left out of the plot: the legend lists every
    // marker, and overlapping text would be unreadable.
    let mut rows_end_x = [f64::NEG_INFINITY; MARKER_LABEL_ROWS];
    let placed: Vec<(f64, Option<LabelSpot>)> = markers
        .iter()
        .map(|m| {
            let x = x_of(m.t_s);
            let width = LABEL_CHAR_W * inline_label(&m.label).chars().count() as f64;
            let (left, tx, anchor) =
                if x + 4.0 + width <= right { (x, x + 4.0, "start") } else { (x - 8.0 - width, x - 4.0, "end") };
            let row = rows_end_x.iter().position(|end| left > *end);
            if let Some(row) = row {
                rows_end_x[row] = left + width + 8.0;
            }
            (x, row.map(|row| LabelSpot { x: tx, anchor, row }))
        })
        .collect();
    let rows_used = placed.iter().filter_map(|p| p.1.as_ref().map(|l| l.row + 1)).max().unwrap_or(0);
    let band = MARKER_ROW_H * rows_used as f64;
    let top = MARGIN_TOP + band;
    let bottom = top + plot_h;
    let height = CHART_H + band;
    let y_of = |v: f64| top + plot_h * (1.0 - y_ticks.frac(v));
    let unit = if chart.y_unit.is_empty() { "value".to_string() } else { esc(&chart.y_unit) };

    w!(h, "<figure class=\"timechart\">\n<figcaption>{}</figcaption>\n", esc(&chart.title));
    w!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_W} {height}\" role=\"img\" aria-label=\"{}\">\n",
        esc(&chart.title)
    );
    for v in y_ticks.values() {
        let y = y_of(v);
        // With negative values the zero line is drawn like an axis, so the sign of a value is obvious.
        let class = if v == 0.0 && y_ticks.lo < 0.0 { "axis" } else { "grid" };
        w!(h, "<line class=\"{class}\" x1=\"{MARGIN_LEFT}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\"/>\n");
        w!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            MARGIN_LEFT - 6.0,
            y + 4.0,
            y_ticks.label(v)
        );
    }
    for t in x_ticks.values() {
        let x = x_of(t);
        w!(h, "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\n", bottom + 4.0);
        w!(h, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n", bottom + 16.0, x_ticks.label(t));
    }
    w!(h, "<line class=\"axis\" x1=\"{MARGIN_LEFT}\" y1=\"{top:.1}\" x2=\"{MARGIN_LEFT}\" y2=\"{bottom:.1}\"/>\n");
    w!(h, "<line class=\"axis\" x1=\"{MARGIN_LEFT}\" y1=\"{bottom:.1}\" x2=\"{right:.1}\" y2=\"{bottom:.1}\"/>\n");
    let cy = top + plot_h / 2.0;
    w!(h, "<text x=\"14\" y=\"{cy:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {cy:.1})\">{unit}</text>\n");
    w!(
        h,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>\n",
        MARGIN_LEFT + plot_w / 2.0,
        height - 8.0
    );

    // Markers go under the lines, so a line crossing a marker stays visible.
    for (m, (x, label_at)) in markers.iter().zip(&placed) {
        let label = esc(&m.label);
        let short = esc(&inline_label(&m.label));
        // A line without a label starts at the plot's top; one with a label reaches up to it.
        let label_y = label_at.as_ref().map(|l| MARGIN_TOP + MARKER_ROW_H * l.row as f64 + 4.0);
        w!(
            h,
            "<line class=\"marker\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"><title>{} s: {label}</title></line>\n",
            label_y.map_or(top, |y| y - 9.0),
            num(m.t_s)
        );
        if let (Some(LabelSpot { x: tx, anchor, .. }), Some(y)) = (label_at, label_y) {
            w!(h, "<text class=\"marker-label\" x=\"{tx:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{short}</text>\n");
        }
    }
    for (j, (s, segs)) in chart.series.iter().zip(&lines).enumerate() {
        let name = esc(&s.name);
        for seg in segs.iter().filter(|seg| seg.len() > 1) {
            let path: Vec<String> = seg.iter().map(|&(t, v)| format!("{:.1},{:.1}", x_of(t), y_of(v))).collect();
            w!(
                h,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"{}\"><title>{name}</title></polyline>\n",
                color(j),
                path.join(" ")
            );
        }
        let count: usize = segs.iter().map(Vec::len).sum();
        for seg in segs {
            // A lone point between gaps has no line, so it always gets a dot; otherwise dots only on sparse series.
            if seg.len() > 1 && count > SERIES_DOTS_MAX {
                continue;
            }
            let r = if seg.len() == 1 { 3.0 } else { 2.0 };
            for &(t, v) in seg {
                w!(
                    h,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{}\"><title>{name} at {} s: {} {}</title></circle>\n",
                    x_of(t),
                    y_of(v),
                    color(j),
                    num(t),
                    num(v),
                    esc(&chart.y_unit)
                );
            }
        }
    }
    if v_range.is_none() {
        w!(
            h,
            "<text class=\"no-data\" x=\"{:.1}\" y=\"{cy:.1}\" text-anchor=\"middle\">no data</text>\n",
            MARGIN_LEFT + plot_w / 2.0
        );
    }
    h.push_str("</svg>\n<ul class=\"legend\">\n");
    for (j, s) in chart.series.iter().enumerate() {
        w!(h, "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>\n", color(j), esc(&s.name));
    }
    for m in &markers {
        w!(
            h,
            "<li><span class=\"swatch marker\"></span>{} <span class=\"muted\">at {} s</span></li>\n",
            esc(&m.label),
            num(m.t_s)
        );
    }
    h.push_str("</ul>\n</figure>\n");
}

/// Where a marker's label is drawn, in the band above a time chart's plot.
struct LabelSpot {
    /// x of the text's anchor point.
    x: f64,
    /// `start` when the label is right of its line, `end` when it is left of it.
    anchor: &'static str,
    /// Row in the band, 0 at the top.
    row: usize,
}

/// A marker's label as drawn in the plot: cut to `MARKER_LABEL_CHARS_MAX` characters so that it fits on one side
/// of its line (the legend shows it whole).
fn inline_label(label: &str) -> String {
    if label.chars().count() <= MARKER_LABEL_CHARS_MAX {
        label.to_string()
    } else {
        let cut: String = label.chars().take(MARKER_LABEL_CHARS_MAX - 1).collect();
        format!("{cut}…")
    }
}

/// The drawable runs of a series: finite points in order, split where a value is missing (NaN or infinite), and
/// thinned to about `SERIES_POINTS_MAX` points by keeping the lowest and highest value of each slice.
fn segments(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let stride = points.len().div_ceil(SERIES_POINTS_MAX / 2).max(1);
    let mut runs = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    for slice in points.chunks(stride) {
        let finite: Vec<(f64, f64)> = slice.iter().copied().filter(|(t, v)| t.is_finite() && v.is_finite()).collect();
        if finite.is_empty() {
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            continue;
        }
        let by_value = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let low = finite.iter().enumerate().min_by(|a, b| by_value(&a.1, &b.1)).map_or(0, |(k, _)| k);
        let high = finite.iter().enumerate().max_by(|a, b| by_value(&a.1, &b.1)).map_or(0, |(k, _)| k);
        run.push(finite[low.min(high)]);
        if low != high {
            run.push(finite[low.max(high)]);
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: missing values leave gaps, and a huge series is thinned to a bounded size without losing a spike.
    /// Method: a series with NaN and infinity in it; a series of 100 000 points with one spike.
    #[test]
    fn segments_split_and_thin() {
        let pts = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 3.0), (f64::INFINITY, 4.0), (5.0, 5.0)];
        assert_eq!(segments(&pts), vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)], vec![(5.0, 5.0)]]);
        assert!(segments(&[]).is_empty());
        assert!(segments(&[(0.0, f64::NAN)]).is_empty());
        let big: Vec<(f64, f64)> = (0..100_000).map(|i| (f64::from(i), if i == 54_321 { 1e6 } else { 1.0 })).collect();
        let thin = segments(&big);
        assert_eq!(thin.len(), 1);
        assert!(thin[0].len() <= SERIES_POINTS_MAX, "{}", thin[0].len());
        assert!(thin[0].contains(&(54_321.0, 1e6)), "the spike survives");
        assert!(thin[0].windows(2).all(|w| w[0].0 < w[1].0), "time order is kept");
    }
}
