//! A waterfall as inline SVG: one row per step, a solid bar from where the earlier steps ended (at their medians)
//! for the step's median, a lighter bar on to its P95, and the figures beside it.

use super::axes::color;
use super::text::{esc, num};
use std::fmt::Write as _;
use xregion_model::report::Waterfall;

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 180.0;
const FIGURES_W: f64 = 210.0;
const ROW_H: f64 = 22.0;
const TOP: f64 = 8.0;

/// Writes `w` as a figure with its title.
pub(super) fn waterfall(h: &mut String, w: &Waterfall) {
    w!(h, "<figure>\n<figcaption>{}</figcaption>\n", esc(&w.title));
    if w.steps.is_empty() {
        h.push_str("<p class=\"muted\">no step was measured</p>\n</figure>\n");
        return;
    }
    let end = w.steps.iter().map(|s| s.start + s.p95.max(s.p50)).fold(0.0_f64, f64::max);
    let span = if end.is_finite() && end > 0.0 { end } else { 1.0 };
    let plot = WIDTH - LABEL_W - FIGURES_W;
    let x = |v: f64| LABEL_W + (v.max(0.0) / span) * plot;
    let height = TOP * 2.0 + ROW_H * w.steps.len() as f64 + 16.0;
    w!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" \
         height=\"{height}\" role=\"img\" aria-label=\"{}\">\n",
        esc(&w.title)
    );
    for (i, s) in w.steps.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let (x0, x50, x95) = (x(s.start), x(s.start + s.p50), x(s.start + s.p95.max(s.p50)));
        w!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\">{}</text>\n",
            LABEL_W - 6.0,
            y + 15.0,
            esc(&s.label)
        );
        w!(
            h,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{}\" fill-opacity=\"0.3\"><title>P95 {} {}</title></rect>\n",
            y + 4.0,
            (x95 - x0).max(1.0),
            color(0),
            num(s.p95),
            esc(&w.unit)
        );
        w!(
            h,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{}\"><title>P50 {} {}</title></rect>\n",
            y + 4.0,
            (x50 - x0).max(1.0),
            color(0),
            num(s.p50),
            esc(&w.unit)
        );
        w!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#5b6474\">P50 {} · P95 {} {} · {} attempts</text>\n",
            WIDTH - FIGURES_W + 6.0,
            y + 15.0,
            num(s.p50),
            num(s.p95),
            esc(&w.unit),
            s.count
        );
    }
    let base = TOP + ROW_H * w.steps.len() as f64 + 12.0;
    w!(
        h,
        "<text x=\"{LABEL_W:.1}\" y=\"{base:.1}\" font-size=\"11\" fill=\"#5b6474\">0</text>\n\
         <text x=\"{:.1}\" y=\"{base:.1}\" font-size=\"11\" fill=\"#5b6474\" text-anchor=\"end\">{} {}</text>\n",
        LABEL_W + plot,
        num(span),
        esc(&w.unit)
    );
    h.push_str(
        "</svg>\n<p class=\"muted\">each step starts where the earlier ones end at their medians; solid: \
                P50, light: on to P95</p>\n</figure>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use xregion_model::report::WaterfallStep;

    /// Goal: each step is a row at its start, P95 never drawn short of P50, labels escaped, and an empty waterfall
    /// says so instead of drawing nothing.
    #[test]
    fn draws_one_row_per_step() {
        let step = |label: &str, start, p50, p95| WaterfallStep { label: label.into(), start, p50, p95, count: 9 };
        let w = Waterfall {
            title: "Journey <pay>".into(),
            unit: "ms".into(),
            steps: vec![step("order", 0.0, 100.0, 250.0), step("pay & retry", 100.0, 50.0, 40.0)],
        };
        let mut h = String::new();
        waterfall(&mut h, &w);
        assert!(h.contains("Journey &lt;pay&gt;") && h.contains("pay &amp; retry"), "{h}");
        assert_eq!(h.matches("<rect").count(), 4, "two bars per step: {h}");
        assert!(h.contains("P50 100 · P95 250 ms · 9 attempts"), "{h}");
        assert!(h.contains(">250 ms</text>"), "the axis ends at the latest P95: {h}");
        let mut empty = String::new();
        waterfall(&mut empty, &Waterfall { title: "t".into(), unit: "ms".into(), steps: vec![] });
        assert!(empty.contains("no step was measured"));
    }
}
