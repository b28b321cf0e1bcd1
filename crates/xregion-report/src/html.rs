//! `report.html`: one self-contained page with inline CSS and hand-written inline SVG charts.
//!
//! The page must render offline and years later, so it loads nothing: no scripts, no fonts, no stylesheets, and a
//! Content-Security-Policy that forbids fetching anything should a later edit try to. Every piece of text from the
//! report is escaped, because summaries, targets and the config come from user files.
//!
//! Each distribution is drawn as a bar histogram of its buckets; each check with distributions also gets one
//! percentile chart comparing all of them (for example every region pair's replication delay) plus a table of
//! the exact figures, since a chart alone cannot be searched or copied.
//!
//! Each time chart is a line chart over seconds since the check started, one line per series, with markers
//! (faults, recoveries) as dashed vertical lines. Missing values (NaN, infinity) leave a gap in their line rather
//! than a made-up one. Each heatmap is an HTML table whose cells are coloured on a sequential scale from its
//! smallest to its largest value, because a table keeps the exact figures selectable and needs no layout code.

use std::fmt::Write as _;
use xregion_model::report::{Chart, CheckResult, Distribution, Heatmap, Marker, Report, Table, Verdict};

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
/// The heatmap's sequential scale (ColorBrewer YlOrRd), from the smallest value to the largest: darker is more.
const HEAT_STOPS: [[u8; 3]; 6] =
    [[255, 255, 204], [254, 217, 118], [254, 178, 76], [253, 141, 60], [240, 59, 32], [189, 0, 38]];

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
svg.chart .marker { stroke: #444; stroke-width: 1.2; stroke-dasharray: 5 4; }
svg.chart text.marker-label { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round;
  font-weight: 600; }
svg.chart text.no-data { fill: var(--muted); font-size: 13px; }
.swatch.marker { width: 0; height: 14px; border-left: 2px dashed #444; border-radius: 0; margin: 0 8px 0 4px; }
table.heatmap td { text-align: center; min-width: 76px; font-variant-numeric: tabular-nums; }
table.heatmap td.none { background: #e4e4e4; color: #6b6b6b; }
table.heatmap th[scope="row"] { white-space: nowrap; }
.heat-scale { display: flex; align-items: center; gap: 8px; font-size: 12.5px; margin: 4px 0; }
.heat-ramp { display: inline-block; width: 160px; height: 12px; border: 1px solid var(--line); }
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
    compliance_section(&mut h, report);
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

/// The compliance checks (`security.compliance.*`) as one section, a sub-section per framework with its
/// control-by-control table, so that an auditor finds them without reading every check.
fn compliance_section(h: &mut String, r: &Report) {
    let frameworks: Vec<(usize, &CheckResult)> =
        r.checks.iter().enumerate().filter(|(_, c)| c.id.starts_with("security.compliance.")).collect();
    if frameworks.is_empty() {
        return;
    }
    h.push_str("<section class=\"compliance\" id=\"compliance\">\n<h2>Compliance</h2>\n");
    for (i, c) in frameworks {
        let name = c.tables.first().map_or(c.id.as_str(), |t| t.title.trim_end_matches(" control by control"));
        w!(
            h,
            "<h3>{} {} <a class=\"muted\" href=\"#check-{i}\">{}</a></h3>\n",
            badge(c.verdict),
            esc(name),
            esc(&c.id)
        );
        w!(h, "<p>{}</p>\n", esc(&c.summary));
        for t in &c.tables {
            table(h, t);
        }
    }
    h.push_str("</section>\n");
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
    if !c.charts.is_empty() {
        h.push_str("<h3>Charts</h3>\n");
        for chart in &c.charts {
            time_chart(h, chart);
        }
    }
    if !c.heatmaps.is_empty() {
        h.push_str("<h3>Heatmaps</h3>\n");
        for m in &c.heatmaps {
            heatmap(h, m);
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

/// A line chart over time: one polyline per series, markers as dashed vertical lines, and a legend.
///
/// The y axis starts at 0 unless a value is negative, so that a small rise does not look like a cliff. Marker
/// labels sit in a band above the plot, one row per overlapping label, so they never cover the lines.
fn time_chart(h: &mut String, chart: &Chart) {
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

/// Grows `range` to include `v`.
fn widen(range: Option<(f64, f64)>, v: f64) -> Option<(f64, f64)> {
    Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
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

/// A linear axis with round ticks at `lo`, `lo + step`, …, `hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ticks {
    lo: f64,
    hi: f64,
    /// 1, 2 or 5 times a power of ten.
    step: f64,
}

impl Ticks {
    /// Round ticks covering `[lo, hi]` with about `target` intervals. A single value gets a range around it
    /// (starting at 0 when the value is not negative); a non-finite or reversed range becomes `[0, 1]`.
    fn covering(lo: f64, hi: f64, target: u32) -> Ticks {
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
    fn values(&self) -> impl Iterator<Item = f64> + use<> {
        let t = *self;
        let n = ((t.hi - t.lo) / t.step).round() as u32;
        (0..=n).map(move |k| t.lo + t.step * f64::from(k))
    }

    /// Where `v` falls, from 0 at `lo` to 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// A tick label with as many decimals as the step needs, so labels are `0 20 40` or `0.2 0.4`.
    fn label(&self, v: f64) -> String {
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        // A tick computed as 0.1 * 3 - 0.3 must not print as -0.0.
        let v = if v.abs() < self.step * 1e-6 { 0.0 } else { v };
        format!("{v:.decimals$}")
    }
}

/// A heatmap as a table: row and column labels, each cell coloured on `HEAT_STOPS` between the smallest and the
/// largest value and showing its value; cells with no value show a dash on grey.
fn heatmap(h: &mut String, m: &Heatmap) {
    let cells = || m.values.iter().flatten().filter_map(|v| v.filter(|v| v.is_finite()));
    let range = cells().fold(None, widen);
    let n_rows = m.rows.len().max(m.values.len());
    let n_cols = m.columns.len().max(m.values.iter().map(Vec::len).max().unwrap_or(0));
    let unit = esc(&m.unit);
    w!(
        h,
        "<figure class=\"heatmap\">\n<figcaption>{} <span class=\"muted\">({unit})</span></figcaption>\n",
        esc(&m.title)
    );
    w!(h, "<div class=\"scroll\"><table class=\"heatmap\">\n<thead><tr><th></th>");
    for c in 0..n_cols {
        w!(h, "<th scope=\"col\">{}</th>", esc(m.columns.get(c).map_or("", String::as_str)));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in 0..n_rows {
        let row_label = esc(m.rows.get(r).map_or("", String::as_str));
        w!(h, "<tr><th scope=\"row\">{row_label}</th>");
        for c in 0..n_cols {
            let col_label = esc(m.columns.get(c).map_or("", String::as_str));
            let value = m.values.get(r).and_then(|row| row.get(c)).copied().flatten().filter(|v| v.is_finite());
            match (value, range) {
                (Some(v), Some((lo, hi))) => {
                    let frac = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                    let (bg, fg) = heat_color(frac);
                    w!(
                        h,
                        "<td style=\"background:{bg};color:{fg}\" title=\"{row_label}, {col_label}: {v:.1} {unit}\">{v:.1}</td>"
                    );
                }
                _ => w!(h, "<td class=\"none\" title=\"{row_label}, {col_label}: not measured\">–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table></div>\n");
    if let Some((lo, hi)) = range {
        let stops: Vec<String> = HEAT_STOPS.iter().map(|[r, g, b]| format!("#{r:02x}{g:02x}{b:02x}")).collect();
        w!(
            h,
            "<div class=\"heat-scale\"><span>{lo:.1} {unit}</span><span class=\"heat-ramp\" style=\"background:linear-gradient(to right, {})\"></span><span>{hi:.1} {unit}</span></div>\n",
            stops.join(", ")
        );
    } else {
        h.push_str("<p class=\"muted\">No cell was measured.</p>\n");
    }
    h.push_str("</figure>\n");
}

/// The background (interpolated on `HEAT_STOPS`) and a readable text colour for a cell at `frac` of the range.
fn heat_color(frac: f64) -> (String, &'static str) {
    // NaN (only from a range too wide for f64) takes the middle rather than an arbitrary colour.
    let frac = if frac.is_nan() { 0.5 } else { frac };
    let pos = frac.clamp(0.0, 1.0) * (HEAT_STOPS.len() - 1) as f64;
    let k = (pos.floor() as usize).min(HEAT_STOPS.len() - 2);
    let f = pos - k as f64;
    let mix = |i: usize| f64::from(HEAT_STOPS[k][i]) * (1.0 - f) + f64::from(HEAT_STOPS[k + 1][i]) * f;
    let (r, g, b) = (mix(0), mix(1), mix(2));
    // Relative luminance (sRGB weights, without gamma: precise enough to pick black or white text).
    let luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0;
    let fg = if luminance < 0.5 { "#ffffff" } else { "#1d2330" };
    (format!("#{:02x}{:02x}{:02x}", r.round() as u8, g.round() as u8, b.round() as u8), fg)
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

    /// Goal: heatmap colours run from light to dark with readable text on each. Method: both ends and the middle.
    #[test]
    fn heat_colors() {
        assert_eq!(heat_color(0.0), ("#ffffcc".to_string(), "#1d2330"));
        assert_eq!(heat_color(1.0), ("#bd0026".to_string(), "#ffffff"));
        assert_eq!(heat_color(f64::NAN), heat_color(0.5));
        assert_eq!(heat_color(2.0), heat_color(1.0));
    }
}
