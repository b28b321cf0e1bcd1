//! report.html: charts for every distribution, escaping, and no external resources.

use crate::sample;
use xregion_report::to_html;

/// Goal: every distribution gets a histogram, and every check with distributions a percentile chart. Method:
/// count `<svg` elements against the sample.
#[test]
fn one_chart_per_distribution() {
    let r = sample::report();
    let html = to_html(&r);
    let dists: usize = r.checks.iter().map(|c| c.distributions.len()).sum();
    let comparisons = r.checks.iter().filter(|c| !c.distributions.is_empty()).count();
    assert_eq!(dists, 7, "six pairs plus an empty one");
    assert_eq!(html.matches("<svg").count(), dists + comparisons);
    assert_eq!(html.matches("</svg>").count(), dists + comparisons);
    for d in r.checks.iter().flat_map(|c| &c.distributions) {
        assert!(html.contains(&format!("Histogram of {}", d.name.replace('>', "&gt;"))), "{}", d.name);
    }
    assert!(html.contains("no samples"));
    assert!(html.contains("bucket upper bound (ms)") && html.contains("percentile") && html.contains("value (ms)"));
    assert!(html.contains("<rect"), "bars are drawn");
    assert!(html.contains("<polyline"), "percentile lines are drawn");
}

/// Goal: text from user configs cannot inject markup. Method: the sample's summary and config contain
/// `<script>`; none may survive, and the escaped form must be shown.
#[test]
fn text_is_escaped() {
    let html = to_html(&sample::report());
    assert!(!html.to_ascii_lowercase().contains("<script"), "a script tag leaked");
    assert!(html.contains("lost 2 writes &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"));
    assert!(html.contains("&lt;/pre&gt;&lt;script&gt;"), "config is escaped");
}

/// Goal: the page loads nothing from anywhere. Method: no src/href attribute points off the page, and no
/// stylesheet link, import or url() exists.
#[test]
fn no_external_resources() {
    let html = to_html(&sample::report());
    let lower = html.to_ascii_lowercase();
    for attr in ["src=", "href="] {
        for (i, _) in lower.match_indices(attr) {
            let value = lower[i + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(value.starts_with('#'), "{attr} points off the page: {}", &html[i..(i + 60).min(html.len())]);
        }
    }
    for banned in ["<link", "@import", "url(", "<iframe", "<img", "<object", "<embed"] {
        assert!(!lower.contains(banned), "found {banned}");
    }
    // Region endpoints are shown as text, which is fine; they must never be resource references.
    assert!(html.contains("http://127.0.1.1:7001"));
    assert!(html.contains("Content-Security-Policy"));
}

/// Goal: the header and per-check details are all there. Method: look for each field of the sample.
#[test]
fn header_and_sections() {
    let r = sample::report();
    let html = to_html(&r);
    for needle in
        ["2025-01-02T03:04:05Z", "93.2 s", "0123456789abcdef", "us-east-1", "<details>", "Effective configuration"]
    {
        assert!(html.contains(needle), "missing {needle}");
    }
    for (i, c) in r.checks.iter().enumerate() {
        assert!(html.contains(&format!("id=\"check-{i}\"")));
        assert!(html.contains(&format!("href=\"#check-{i}\"")));
        assert!(html.contains(&c.id));
    }
    assert!(html.contains("Polled every 1 ms"), "notes");
    assert!(html.contains("Replication delay by pair"), "tables");
    assert!(html.contains("p99_ms_worst"), "metrics");
    assert!(html.contains("badge v-fail") && html.contains("badge v-error") && html.contains("badge v-skipped"));
}
