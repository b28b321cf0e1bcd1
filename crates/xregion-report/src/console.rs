//! The console summary: one aligned row per check, then totals and what the exit code means.
//!
//! Widths are counted in characters before colour codes are added, so the columns line up with and without ANSI
//! colour. Long targets are cut with an ellipsis so one verbose promise cannot push every row off the screen.

use xregion_model::report::{Report, Verdict};

/// Longest target shown, in characters; the HTML report has the full text.
const TARGET_CHARS_MAX: usize = 60;

const RESET: &str = "\x1b[0m";

/// The summary table as text; `color` adds ANSI colours to the verdicts.
pub fn to_console(report: &Report, color: bool) -> String {
    let rows: Vec<[String; 5]> = report
        .checks
        .iter()
        .map(|c| {
            [
                verdict_label(c.verdict).to_string(),
                clean(&c.id),
                truncate(&clean(&c.target)),
                clean(&c.measured),
                format!("{:.1} s", c.duration_s),
            ]
        })
        .collect();
    let header = ["VERDICT", "CHECK", "TARGET", "MEASURED", "TIME"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    push_row(&mut out, &header, &widths, None);
    for (row, check) in rows.iter().zip(&report.checks) {
        push_row(&mut out, row, &widths, color.then_some(check.verdict));
    }

    out.push_str(&region_rows(report, color));
    let suites: Vec<String> = report
        .suite_times()
        .iter()
        .map(|s| {
            format!("{} {:.1} s ({} check{})", s.suite, s.duration_s, s.checks, if s.checks == 1 { "" } else { "s" })
        })
        .collect();
    if !suites.is_empty() {
        out.push_str(&format!("\ntime by suite: {}; whole run {:.1} s\n", suites.join(", "), report.duration_s));
    }
    let count = |v: Verdict| report.checks.iter().filter(|c| c.verdict == v).count();
    out.push_str(&format!(
        "{} passed, {} failed, {} errors, {} skipped\n",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Error),
        count(Verdict::Skipped)
    ));
    let meaning = match report.exit_code() {
        0 => "every check passed (or was skipped)",
        1 => "a check failed: the deployment broke a promise",
        _ => "a check could not be measured: the run is incomplete",
    };
    out.push_str(&format!("exit {}: {meaning}\n", report.exit_code()));
    out
}

/// The regions that did not pass, of the checks judged region by region: one line each, under the table, so that
/// one region's failure or outage is named even where the check's summary has room for only a few.
fn region_rows(report: &Report, color: bool) -> String {
    let rows: Vec<[String; 4]> = report
        .checks
        .iter()
        .flat_map(|c| {
            c.regions
                .iter()
                .filter(|r| r.verdict != Verdict::Pass)
                .map(|r| [verdict_label(r.verdict).to_string(), clean(&c.id), clean(&r.region), clean(&r.reason)])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::from("\nregions that did not pass:\n");
    for row in &rows {
        let verdict = match row[0].as_str() {
            "FAIL" => Verdict::Fail,
            "ERROR" => Verdict::Error,
            _ => Verdict::Skipped,
        };
        let pad = |i: usize| " ".repeat(widths[i] - row[i].chars().count());
        let label = if color { format!("{}{}{RESET}", ansi(verdict), row[0]) } else { row[0].clone() };
        out.push_str(&format!("  {label}{}  {}{}  {}{}  {}\n", pad(0), row[1], pad(1), row[2], pad(2), row[3]));
    }
    out
}

fn push_row(out: &mut String, row: &[String; 5], widths: &[usize; 5], verdict: Option<Verdict>) {
    let mut line = String::new();
    for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let pad = w - cell.chars().count();
        match (i, verdict) {
            (0, Some(v)) => line.push_str(&format!("{}{cell}{RESET}", ansi(v))),
            _ => line.push_str(cell),
        }
        if i + 1 < row.len() {
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Skipped => "SKIP",
    }
}

fn ansi(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "\x1b[32m",
        Verdict::Fail => "\x1b[1;31m",
        Verdict::Error => "\x1b[1;35m",
        Verdict::Skipped => "\x1b[33m",
    }
}

/// Control characters (newlines, escape sequences from a config) would break the alignment or the terminal.
fn clean(s: &str) -> String {
    s.replace(|c: char| c.is_control(), " ")
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= TARGET_CHARS_MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(TARGET_CHARS_MAX - 1).collect();
        t.push('…');
        t
    }
}
