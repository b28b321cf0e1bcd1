//! Trends over the last runs of a history directory: each check's verdict per run, and a trend line per headline
//! metric (a metric whose name carries no subject, and whose better direction is known: `compare::direction`).
//!
//! The runs are given oldest first, this run last. A metric a run lacks leaves a gap in its line, never a made-up
//! point; a line needs two runs that have the metric.

use super::text::{esc, label, num, verdict_class};
use crate::compare::{Better, direction};
use std::fmt::Write as _;
use xregion_model::report::Report;

/// Size of one trend line.
const SPARK_W: f64 = 220.0;
const SPARK_H: f64 = 40.0;
/// Inner margin of a trend line, so that dots at the edges are whole.
const SPARK_PAD: f64 = 4.0;

/// The trends section for `runs` (oldest first, this run last); nothing when no earlier run is given.
pub(super) fn trend_section(h: &mut String, runs: &[&Report]) {
    let Some((current, earlier)) = runs.split_last() else { return };
    if earlier.is_empty() {
        return;
    }
    w!(h, "<h2 id=\"trends\">Trends over the last {} runs</h2>\n", runs.len());
    h.push_str(
        "<p class=\"muted\">From the history directory (<code>--history</code>), oldest first, this run last. A run \
         that lacks a check or a metric leaves a gap.</p>\n",
    );
    // Verdicts: one row per check of this run, one column per run.
    h.push_str("<div class=\"scroll\"><table class=\"trend\">\n<thead><tr><th>Check</th>");
    for (i, r) in runs.iter().enumerate() {
        w!(
            h,
            "<th title=\"seed {} · revision {}\">{}{}</th>",
            r.seed,
            esc(&r.git_revision),
            run_time(&r.started_at),
            if i + 1 == runs.len() { "<br>(this run)" } else { "" }
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for c in &current.checks {
        w!(h, "<tr><td class=\"mono\">{}</td>", esc(&c.id));
        for r in runs {
            match r.checks.iter().find(|x| x.id == c.id) {
                Some(x) => w!(
                    h,
                    "<td class=\"cell {}\" title=\"{}\">{}</td>",
                    verdict_class(x.verdict),
                    esc(&x.summary),
                    &label(x.verdict)[..1]
                ),
                None => h.push_str("<td class=\"cell none\" title=\"not in this run\">–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table></div>\n");

    // Headline metrics: one line each, with this run's value and its change from the run before.
    h.push_str(
        "<h3>Headline metrics</h3>\n<div class=\"scroll\"><table class=\"metrics\">\n<thead><tr><th>Check</th>\
         <th>Metric</th><th>Better</th><th>Last runs</th><th>Lowest</th><th>Highest</th><th>Before</th>\
         <th>This run</th></tr></thead>\n<tbody>\n",
    );
    let mut lines = 0;
    // Shown, not judged: a run cut short by an error is shorter, not better.
    let duration: Vec<Option<f64>> = runs.iter().map(|r| Some(r.duration_s)).collect();
    lines += metric_row(h, "whole run", "duration_s", None, &duration);
    for c in &current.checks {
        for name in c.metrics.keys().filter(|m| !m.contains('.')) {
            let Some(better) = direction(name) else { continue };
            let values: Vec<Option<f64>> = runs
                .iter()
                .map(|r| r.checks.iter().find(|x| x.id == c.id).and_then(|x| x.metrics.get(name)).copied())
                .map(|v| v.filter(|v| v.is_finite()))
                .collect();
            lines += metric_row(h, &c.id, name, Some(better), &values);
        }
    }
    if lines == 0 {
        h.push_str("<tr><td colspan=\"8\" class=\"muted\">No headline metric is in two of these runs.</td></tr>\n");
    }
    h.push_str("</tbody>\n</table></div>\n");
}

/// One metric's row, if two runs have it; returns the rows written (0 or 1).
fn metric_row(h: &mut String, check: &str, name: &str, better: Option<Better>, values: &[Option<f64>]) -> usize {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.len() < 2 {
        return 0;
    }
    let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let last = values.last().copied().flatten();
    let before = values[..values.len() - 1].iter().rev().flatten().next().copied();
    // This run's change from the run before, coloured by whether it moved the better way.
    let change = match (before, last, better) {
        (Some(b), Some(l), None) if l != b => format!(" {}", if l > b { "▲" } else { "▼" }),
        (Some(b), Some(l), Some(better)) if l != b => {
            let worse = match better {
                Better::Lower => l > b,
                Better::Higher => l < b,
            };
            format!(
                " <span class=\"{}\">{}</span>",
                if worse { "worse" } else { "better" },
                if l > b { "▲" } else { "▼" }
            )
        }
        _ => String::new(),
    };
    w!(
        h,
        "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}{change}</td></tr>\n",
        esc(check),
        esc(name),
        match better {
            Some(Better::Lower) => "lower",
            Some(Better::Higher) => "higher",
            None => "shown only",
        },
        spark(values, lo, hi),
        num(lo),
        num(hi),
        before.map_or("–".to_string(), num),
        last.map_or("–".to_string(), num),
    );
    1
}

/// A trend line: one point per run (left to right), a gap where a run lacks the value, this run's point ringed.
fn spark(values: &[Option<f64>], lo: f64, hi: f64) -> String {
    let n = values.len();
    let x = |i: usize| SPARK_PAD + (SPARK_W - 2.0 * SPARK_PAD) * if n > 1 { i as f64 / (n - 1) as f64 } else { 0.5 };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let y = |v: f64| {
        let frac = if hi > lo { (v - lo) / span } else { 0.5 };
        SPARK_H - SPARK_PAD - (SPARK_H - 2.0 * SPARK_PAD) * frac
    };
    let mut s = format!(
        "<svg class=\"spark\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" \
         role=\"img\" aria-label=\"trend over {n} runs\">"
    );
    let mut segment: Vec<String> = Vec::new();
    let flush = |s: &mut String, segment: &mut Vec<String>| {
        if segment.len() > 1 {
            w!(s, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>", segment.join(" "));
        }
        segment.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => segment.push(format!("{:.1},{:.1}", x(i), y(*v))),
            None => flush(&mut s, &mut segment),
        }
    }
    flush(&mut s, &mut segment);
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let (r, fill) = if i + 1 == n { (3.5, "#d62728") } else { (2.0, "#1f77b4") };
            w!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{fill}\"><title>{}</title></circle>",
                x(i),
                y(*v),
                num(*v)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// `2026-12-07T01:30:00Z` as `2026-12-07<br>01:30:00` (escaped).
fn run_time(t: &str) -> String {
    match (t.get(0..10), t.get(11..19)) {
        (Some(date), Some(time)) => format!("{}<br>{}", esc(date), esc(time)),
        _ => esc(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a run without the value leaves a gap: no line crosses it, and no point is drawn for it; this run's
    /// point is the ringed one.
    #[test]
    fn a_missing_value_is_a_gap() {
        let s = spark(&[Some(1.0), Some(2.0), None, Some(3.0), Some(4.0)], 1.0, 4.0);
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert_eq!(s.matches("<circle").count(), 4, "{s}");
        assert_eq!(s.matches("r=\"3.5\"").count(), 1, "{s}");
        let lone = spark(&[Some(1.0), None, Some(2.0)], 1.0, 2.0);
        assert_eq!(lone.matches("<polyline").count(), 0, "{lone}");
    }
}
