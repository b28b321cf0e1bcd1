//! Text in the page: escaping of everything that comes from the report, numbers with precision suited to their
//! size, percentile labels, and the verdict badges and classes.

use xregion_model::report::Verdict;

/// A verdict as a coloured badge: `PASS`, `FAIL`, `ERROR` or `SKIP`.
pub(super) fn badge(v: Verdict) -> String {
    format!("<span class=\"badge {}\">{}</span>", verdict_class(v), label(v))
}

/// A verdict's label: `PASS`, `FAIL`, `ERROR` or `SKIP`.
pub(super) fn label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Skipped => "SKIP",
    }
}

/// The CSS class that colours a verdict.
pub(super) fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "v-pass",
        Verdict::Fail => "v-fail",
        Verdict::Error => "v-error",
        Verdict::Skipped => "v-skipped",
    }
}

/// `p50`, `p99.9`, and `max` for 100.
pub(super) fn pct_label(p: f64) -> String {
    if p >= 100.0 { "max".to_string() } else { format!("p{p}") }
}

/// A number with precision suited to its size: `1234`, `41.2`, `4.57`, `0.123`; `n/a` when not finite.
pub(super) fn num(v: f64) -> String {
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
