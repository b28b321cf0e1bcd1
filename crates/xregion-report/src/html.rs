//! `report.html`: one self-contained page with inline CSS and hand-written inline SVG charts.
//!
//! The page must render offline and years later, so it loads nothing: no scripts, no fonts, no stylesheets, and a
//! Content-Security-Policy that forbids fetching anything should a later edit try to. Every piece of text from the
//! report is escaped, because summaries, targets and the config come from user files.
//!
//! This module lays out the page (header, summary table, one section per check, the configuration); its children
//! draw the parts: `distributions` (histograms and percentile charts), `time_chart`, `tables` (tables and
//! heatmaps), `waterfall` (a journey's steps at P50 and P95), `compliance`, `trend` (the last runs of a history
//! directory: verdicts and headline metrics), with `axes` (the frame every SVG chart shares) and `text` (escaping and number
//! formatting) under them.

/// Writes formatted text into a `String`; formatting into a `String` cannot fail, so the result is dropped.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

mod axes;
mod compliance;
mod distributions;
mod tables;
mod text;
mod time_chart;
mod trend;
mod waterfall;

use axes::color;
use compliance::compliance_section;
use distributions::{histogram_svg, percentile_comparison};
use std::fmt::Write as _;
use tables::{heatmap, table};
use text::{badge, num, verdict_class};
use time_chart::time_chart;
use waterfall::waterfall;
use xregion_model::report::{CheckResult, Report, Verdict};

// Escaping is public at this path; it lives with the other text helpers.
pub use text::esc;

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
table.trend td.cell { text-align: center; min-width: 44px; font-weight: 600; color: #fff; }
table.trend td.cell.v-pass { background: #2e7d32; } table.trend td.cell.v-fail { background: #c62828; }
table.trend td.cell.v-error { background: #6a1b9a; } table.trend td.cell.v-skipped { background: #757575; }
table.trend td.cell.none { background: #e4e4e4; color: #6b6b6b; }
span.worse { color: #c62828; } span.better { color: #2e7d32; }
details { margin: 20px 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: var(--bg-alt); padding: 12px; border-radius: 6px; overflow-x: auto; }
"#;

/// The report as one self-contained HTML page.
pub fn to_html(report: &Report) -> String {
    to_html_with_trend(report, &[])
}

/// The report as one self-contained HTML page, with trends over `earlier` runs (oldest first) and this one.
pub fn to_html_with_trend(report: &Report, earlier: &[Report]) -> String {
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
    let runs: Vec<&Report> = earlier.iter().chain(std::iter::once(report)).collect();
    trend::trend_section(&mut h, &runs);
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
    h.push_str("<thead><tr><th>Verdict</th><th>Check</th><th>Target</th><th>Measured</th><th>Summary</th><th>Time</th></tr></thead>\n<tbody>\n");
    if r.checks.is_empty() {
        h.push_str("<tr><td colspan=\"6\" class=\"muted\">No check was selected.</td></tr>\n");
    }
    for (i, c) in r.checks.iter().enumerate() {
        w!(
            h,
            "<tr><td>{}</td><td class=\"mono\"><a href=\"#check-{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{} s</td></tr>\n",
            badge(c.verdict),
            esc(&c.id),
            esc(&c.target),
            esc(&c.measured),
            esc(&c.summary),
            num(c.duration_s)
        );
    }
    h.push_str("</tbody>\n</table></div>\n");
    let suites = r.suite_times();
    if !suites.is_empty() {
        h.push_str("<h3>Time by suite</h3>\n<table class=\"metrics\">\n<thead><tr><th>Suite</th><th>Checks</th><th>Time</th></tr></thead>\n<tbody>\n");
        for s in &suites {
            w!(
                h,
                "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} s</td></tr>\n",
                esc(&s.suite),
                s.checks,
                num(s.duration_s)
            );
        }
        w!(
            h,
            "<tr><td>whole run</td><td class=\"num\">{}</td><td class=\"num\">{} s</td></tr>\n",
            r.checks.len(),
            num(r.duration_s)
        );
        h.push_str("</tbody>\n</table>\n");
    }
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
    if !c.regions.is_empty() {
        h.push_str("<h3>By region</h3>\n<div class=\"scroll\"><table class=\"regions\">\n<thead><tr><th>Region</th><th>Verdict</th><th>Reason</th></tr></thead>\n<tbody>\n");
        for r in &c.regions {
            w!(
                h,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&r.region),
                badge(r.verdict),
                esc(&r.reason)
            );
        }
        h.push_str("</tbody>\n</table></div>\n");
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
    if !c.waterfalls.is_empty() {
        h.push_str("<h3>Steps</h3>\n");
        for w in &c.waterfalls {
            waterfall(h, w);
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
