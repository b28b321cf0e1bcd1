//! Distributions: each is drawn as a bar histogram of its buckets; each check with distributions also gets one
//! percentile chart comparing all of them (for example every region pair's replication delay) plus a table of
//! the exact figures, since a chart alone cannot be searched or copied.

use super::axes::{
    CHART_H, CHART_W, MARGIN_LEFT, MARGIN_TOP, color, nice_axis, no_samples, plot_size, x_label, y_axis,
};
use super::text::{esc, num, pct_label};
use std::fmt::Write as _;
use xregion_model::report::Distribution;

/// At most this many labelled ticks on an x axis, so labels never overlap.
const X_TICKS_MAX: usize = 8;

/// A percentile chart with one line per distribution, a legend, and a table of the exact values.
pub(super) fn percentile_comparison(h: &mut String, dists: &[Distribution]) {
    let mut pcts: Vec<f64> =
        dists.iter().flat_map(|d| d.percentiles.iter().map(|p| p.0)).filter(|p| p.is_finite()).collect();
    pcts.sort_by(f64::total_cmp);
    pcts.dedup();
    let unit = dists.first().map_or("", |d| d.unit.as_str());
    h.push_str("<figure>\n<figcaption>Percentiles compared</figcaption>\n");
    w!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"Percentiles of {} distributions\">\n",
        dists.len()
    );
    if pcts.is_empty() {
        no_samples(h);
    } else {
        let (y_max, steps) = nice_axis(
            dists.iter().flat_map(|d| d.percentiles.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0, f64::max),
        );
        y_axis(h, y_max, steps, &format!("value ({})", esc(unit)));
        let (plot_w, plot_h) = plot_size();
        // Percentiles are categories spaced evenly: the tail (p99, p99.9) matters as much as the median.
        let x_of = |k: usize| MARGIN_LEFT + plot_w * (k as f64 + 0.5) / pcts.len() as f64;
        let y_of = |v: f64| MARGIN_TOP + plot_h * (1.0 - (v / y_max).clamp(0.0, 1.0));
        for (k, p) in pcts.iter().enumerate() {
            w!(
                h,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                x_of(k),
                MARGIN_TOP + plot_h + 16.0,
                pct_label(*p)
            );
        }
        x_label(h, "percentile");
        for (j, d) in dists.iter().enumerate() {
            let points: Vec<(f64, f64, f64, f64)> = d
                .percentiles
                .iter()
                .filter(|(p, v)| p.is_finite() && v.is_finite())
                .filter_map(|(p, v)| {
                    let k = pcts.iter().position(|q| q == p)?;
                    Some((x_of(k), y_of(*v), *p, *v))
                })
                .collect();
            let path: Vec<String> = points.iter().map(|(x, y, _, _)| format!("{x:.1},{y:.1}")).collect();
            w!(
                h,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n",
                color(j),
                path.join(" ")
            );
            for (x, y, p, v) in &points {
                w!(
                    h,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"><title>{} {}: {} {}</title></circle>\n",
                    color(j),
                    esc(&d.name),
                    pct_label(*p),
                    num(*v),
                    esc(&d.unit)
                );
            }
        }
    }
    h.push_str("</svg>\n<ul class=\"legend\">\n");
    for (j, d) in dists.iter().enumerate() {
        w!(h, "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>\n", color(j), esc(&d.name));
    }
    h.push_str("</ul>\n</figure>\n");

    // The exact figures, one row per distribution.
    h.push_str("<div class=\"scroll\"><table class=\"percentiles\">\n<thead><tr><th>Distribution</th><th>Samples</th>");
    for p in &pcts {
        w!(h, "<th>{} ({})</th>", pct_label(*p), esc(unit));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for d in dists {
        w!(h, "<tr><td>{}</td><td class=\"num\">{}</td>", esc(&d.name), d.count);
        for p in &pcts {
            let v = d.percentiles.iter().find(|q| q.0 == *p).map_or_else(|| "-".to_string(), |q| num(q.1));
            w!(h, "<td class=\"num\">{v}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table></div>\n");
}

/// A bar chart of one distribution's buckets: one bar per bucket, labelled by its upper bound.
pub(super) fn histogram_svg(h: &mut String, d: &Distribution, fill: &str) {
    w!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"Histogram of {}\">\n",
        esc(&d.name)
    );
    let buckets: Vec<(f64, u64)> = d.buckets.iter().copied().filter(|b| b.0.is_finite()).collect();
    let count_max = buckets.iter().map(|b| b.1).max().unwrap_or(0);
    if buckets.is_empty() || count_max == 0 {
        no_samples(h);
        h.push_str("</svg>\n");
        return;
    }
    let (y_max, steps) = nice_axis(count_max as f64);
    y_axis(h, y_max, steps, "samples");
    let (plot_w, plot_h) = plot_size();
    let bar_w = plot_w / buckets.len() as f64;
    let tick_every = buckets.len().div_ceil(X_TICKS_MAX);
    let mut lower = 0.0;
    for (k, (upper, n)) in buckets.iter().enumerate() {
        let x = MARGIN_LEFT + bar_w * k as f64;
        let bar_h = plot_h * (*n as f64 / y_max);
        if *n > 0 {
            w!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"><title>{} to {} {}: {} samples</title></rect>\n",
                x + 0.5,
                MARGIN_TOP + plot_h - bar_h,
                (bar_w - 1.0).max(0.5),
                bar_h,
                num(lower),
                num(*upper),
                esc(&d.unit),
                n
            );
        }
        if (k + 1) % tick_every == 0 || k + 1 == buckets.len() {
            let tx = x + bar_w;
            w!(
                h,
                "<line class=\"axis\" x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/>\n",
                MARGIN_TOP + plot_h,
                MARGIN_TOP + plot_h + 4.0
            );
            w!(
                h,
                "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                MARGIN_TOP + plot_h + 16.0,
                num(*upper)
            );
        }
        lower = *upper;
    }
    x_label(h, &format!("bucket upper bound ({})", esc(&d.unit)));
    h.push_str("</svg>\n");
}
