//! `report.html`: one self-contained page with inline CSS and hand-written inline SVG charts.
//!
//! The page must render offline and years later, so it loads nothing: no scripts, no fonts, no stylesheets, and a
//! Content-Security-Policy that forbids fetching anything should a later edit try to. Every piece of text from the
//! report is escaped, because summaries, targets and the config come from user files.
//!
//! Each distribution is drawn as a bar histogram of its buckets; each check with distributions also gets one
//! percentile chart comparing all of them (for example every region pair's replication delay) plus a table of
//! the exact figures, since a chart alone cannot be searched or copied.

use std::fmt::Write as _;
use xregion_model::report::{CheckResult, Distribution, Report, Table, Verdict};

/// Writes formatted text into a `String`; formatting into a `String` cannot fail, so the result is dropped.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

/// Series colours (Tableau 10), cycled when a check has more distributions than colours.
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Chart size in SVG user units; the SVG scales to the page width.
const CHART_W: f64 = 640.0;
const CHART_H: f64 = 240.0;
/// Plot margins, leaving room for axis labels.
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 16.0;
const MARGIN_BOTTOM: f64 = 48.0;
/// At most this many labelled ticks on an x axis, so labels never overlap.
const X_TICKS_MAX: usize = 8;

const CSS: &str = r#"
:root { --fg: #1d2330; --muted: #5b6474; --line: #d5d9e0; --bg-alt: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; }
h3 { font-size: 15px; margin: 16px 0 8px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
.banner { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 12px 0; }
.banner.v-pass { background: #e3f4e6; } .banner.v-fail { background: #fbe4e4; }
.banner.v-error { background: #f1e6f7; } .banner.v-skipped { background: #f0f0f0; }
.badge { display: inline-block; min-width: 52px; text-align: center; padding: 1px 8px; border-radius: 4px;
  color: #fff; font-weight: 700; font-size: 12px; }
.badge.v-pass { background: #2e7d32; } .badge.v-fail { background: #c62828; }
.badge.v-error { background: #6a1b9a; } .badge.v-skipped { background: #757575; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg-alt); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.scroll { overflow-x: auto; }
section.check { border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 20px 0; }
section.check.v-fail { border-left: 6px solid #c62828; } section.check.v-error { border-left: 6px solid #6a1b9a; }
section.check.v-pass { border-left: 6px solid #2e7d32; } section.check.v-skipped { border-left: 6px solid #757575; }
.summary { font-size: 15px; margin: 4px 0 8px; }
.muted { color: var(--muted); }
figure { margin: 12px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; max-width: 760px; height: auto; background: #fff; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #333; }
svg.chart .axis { stroke: #333; stroke-width: 1; }
svg.chart .grid { stroke: #e4e7ec; stroke-width: 1; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
details { margin: 20px 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: var(--bg-alt); padding: 12px; border-radius: 6px; overflow-x: auto; }
"#;

/// The report as one self-contained HTML page.
pub fn to_html(report: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // The policy forbids every fetch; inline styles and inline SVG need no fetch.
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(h, "<title>xregion report {}</title>\n", esc(&report.started_at));
    w!(h, "<style>{CSS}</style>\n</head>\n<body>\n<main>\n");
    header(&mut h, report);
    summary_table(&mut h, report);
    for (i, check) in report.checks.iter().enumerate() {
        check_section(&mut h, i, check);
    }
    let config = serde_json::to_string_pretty(&report.config).unwrap_or_else(|e| format!("unprintable: {e}"));
    w!(h, "<details>\n<summary>Effective configuration</summary>\n<pre>{}</pre>\n</details>\n", esc(&config));
    w!(
        h,
        "<p class=\"muted\">Rendered from report.json (schema version {}) by xregion {}.</p>\n",
        report.schema_version,
        esc(&report.tool_version)
    );
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn header(h: &mut String, r: &Report) {
    h.push_str("<header>\n<h1>xregion report</h1>\n");
    let code = r.exit_code();
    let (class, text) = match code {
        0 => ("v-pass", "Every check passed"),
        1 => ("v-fail", "A check failed: the deployment broke a promise"),
        _ => ("v-error", "A check could not be measured: the run is incomplete"),
    };
    let count = |v: Verdict| r.checks.iter().filter(|c| c.verdict == v).count();
    w!(
        h,
        "<div class=\"banner {class}\">{text} (exit {code}): {} passed, {} failed, {} errors, {} skipped</div>\n",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Error),
        count(Verdict::Skipped)
    );
    h.push_str("<dl class=\"meta\">\n");
    let regions = if r.regions.is_empty() {
        "none".to_string()
    } else {
        r.regions
            .iter()
            .map(|g| {
                format!(
                    "<span class=\"mono\">{}</span> <span class=\"muted\">{}</span>",
                    esc(&g.name),
                    esc(&g.endpoint)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let rows = [
        ("Run started", esc(&r.started_at)),
        ("Duration", format!("{} s", num(r.duration_s))),
        ("Seed", format!("<span class=\"mono\">{}</span>", r.seed)),
        ("Git revision", format!("<span class=\"mono\">{}</span>", esc(&r.git_revision))),
        ("xregion version", esc(&r.tool_version)),
        ("Target kind", esc(&r.target_kind)),
        ("Regions", regions),
    ];
    for (k, v) in rows {
        w!(h, "<dt>{k}</dt><dd>{v}</dd>\n");
    }
    h.push_str("</dl>\n</header>\n");
}

fn summary_table(h: &mut String, r: &Report) {
    h.push_str("<h2>Checks</h2>\n<div class=\"scroll\"><table class=\"checks\">\n");
    h.push_str("<thead><tr><th>Verdict</th><th>Check</th><th>Target</th><th>Measured</th><th>Summary</th></tr></thead>\n<tbody>\n");
    if r.checks.is_empty() {
        h.push_str("<tr><td colspan=\"5\" class=\"muted\">No check was selected.</td></tr>\n");
    }
    for (i, c) in r.checks.iter().enumerate() {
        w!(
            h,
            "<tr><td>{}</td><td class=\"mono\"><a href=\"#check-{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            badge(c.verdict),
            esc(&c.id),
            esc(&c.target),
            esc(&c.measured),
            esc(&c.summary)
        );
    }
    h.push_str("</tbody>\n</table></div>\n");
}

fn check_section(h: &mut String, i: usize, c: &CheckResult) {
    w!(h, "<section class=\"check {}\" id=\"check-{i}\">\n", verdict_class(c.verdict));
    w!(h, "<h2>{} <span class=\"mono\">{}</span></h2>\n", badge(c.verdict), esc(&c.id));
    w!(h, "<p class=\"summary\">{}</p>\n", esc(&c.summary));
    w!(
        h,
        "<dl class=\"meta\"><dt>Suite</dt><dd>{}</dd><dt>Target</dt><dd>{}</dd><dt>Measured</dt><dd>{}</dd><dt>Duration</dt><dd>{} s</dd></dl>\n",
        esc(&c.suite),
        esc(&c.target),
        esc(&c.measured),
        num(c.duration_s)
    );
    if !c.notes.is_empty() {
        h.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for n in &c.notes {
            w!(h, "<li>{}</li>\n", esc(n));
        }
        h.push_str("</ul>\n");
    }
    if !c.metrics.is_empty() {
        h.push_str("<h3>Metrics</h3>\n<table class=\"metrics\">\n<thead><tr><th>Metric</th><th>Value</th></tr></thead>\n<tbody>\n");
        for (k, v) in &c.metrics {
            w!(h, "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td></tr>\n", esc(k), num(*v));
        }
        h.push_str("</tbody>\n</table>\n");
    }
    for t in &c.tables {
        table(h, t);
    }
    if !c.distributions.is_empty() {
        h.push_str("<h3>Distributions</h3>\n");
        percentile_comparison(h, &c.distributions);
        for (j, d) in c.distributions.iter().enumerate() {
            w!(
                h,
                "<figure>\n<figcaption><span class=\"swatch\" style=\"background:{}\"></span>{} <span class=\"muted\">({} samples)</span></figcaption>\n",
                color(j),
                esc(&d.name),
                d.count
            );
            histogram_svg(h, d, color(j));
            h.push_str("</figure>\n");
        }
    }
    h.push_str("</section>\n");
}

fn table(h: &mut String, t: &Table) {
    w!(h, "<div class=\"scroll\"><table>\n<caption>{}</caption>\n<thead><tr>", esc(&t.title));
    for col in &t.columns {
        w!(h, "<th>{}</th>", esc(col));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        h.push_str("<tr>");
        for cell in row {
            w!(h, "<td>{}</td>", esc(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table></div>\n");
}

/// A percentile chart with one line per distribution, a legend, and a table of the exact values.
fn percentile_comparison(h: &mut String, dists: &[Distribution]) {
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
fn histogram_svg(h: &mut String, d: &Distribution, fill: &str) {
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

/// The y axis with `steps` gridlines up to `y_max`, and the rotated axis label (already escaped).
fn y_axis(h: &mut String, y_max: f64, steps: u32, label_escaped: &str) {
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
fn x_label(h: &mut String, label_escaped: &str) {
    let (plot_w, _) = plot_size();
    w!(
        h,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label_escaped}</text>\n",
        MARGIN_LEFT + plot_w / 2.0,
        CHART_H - 8.0
    );
}

fn no_samples(h: &mut String) {
    w!(h, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no samples</text>\n", CHART_W / 2.0, CHART_H / 2.0);
}

fn plot_size() -> (f64, f64) {
    (CHART_W - MARGIN_LEFT - MARGIN_RIGHT, CHART_H - MARGIN_TOP - MARGIN_BOTTOM)
}

fn color(j: usize) -> &'static str {
    PALETTE[j % PALETTE.len()]
}

fn badge(v: Verdict) -> String {
    let label = match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Skipped => "SKIP",
    };
    format!("<span class=\"badge {}\">{label}</span>", verdict_class(v))
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "v-pass",
        Verdict::Fail => "v-fail",
        Verdict::Error => "v-error",
        Verdict::Skipped => "v-skipped",
    }
}

/// `p50`, `p99.9`, and `max` for 100.
fn pct_label(p: f64) -> String {
    if p >= 100.0 { "max".to_string() } else { format!("p{p}") }
}

/// A number with precision suited to its size: `1234`, `41.2`, `4.57`, `0.123`; `n/a` when not finite.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    // Whole numbers (counts) and large values need no decimals.
    if a >= 100.0 || a.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A round axis maximum at or above `x` (1, 2 or 5 times a power of ten) and how many gridline steps divide it
/// into round values; `(1, 5)` for nothing.
fn nice_axis(x: f64) -> (f64, u32) {
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

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every character that could open markup or end an attribute is escaped. Method: escape them all.
    #[test]
    fn escapes_markup() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

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

    /// Goal: numbers are short and readable. Method: one per precision band.
    #[test]
    fn number_formatting() {
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(41.25), "41.2");
        assert_eq!(num(4.5678), "4.57");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(42.0), "42");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(pct_label(99.9), "p99.9");
        assert_eq!(pct_label(100.0), "max");
    }
}
