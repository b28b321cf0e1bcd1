//! report.html: charts for every distribution, time chart and heatmap, escaping, and no external resources.

use crate::sample;
use xregion_model::report::{Chart, Heatmap, Marker, Series, Verdict};
use xregion_report::to_html;

/// Goal: every distribution gets a histogram, every check with distributions a percentile chart, and every time
/// chart its own SVG. Method: count `<svg` elements against the sample.
#[test]
fn one_chart_per_distribution() {
    let r = sample::report();
    let html = to_html(&r);
    let dists: usize = r.checks.iter().map(|c| c.distributions.len()).sum();
    let comparisons = r.checks.iter().filter(|c| !c.distributions.is_empty()).count();
    let charts: usize = r.checks.iter().map(|c| c.charts.len()).sum();
    assert_eq!(dists, 7, "six pairs plus an empty one");
    assert_eq!(charts, 2, "latency and users");
    assert_eq!(html.matches("<svg").count(), dists + comparisons + charts);
    assert_eq!(html.matches("</svg>").count(), dists + comparisons + charts);
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

/// The HTML of one check's section, from its opening tag to the next section.
fn section_of(html: &str, id: &str) -> String {
    let start = html.find(&format!("<span class=\"mono\">{id}</span></h2>")).expect("the check has a section");
    let end = html[start..].find("</section>").map_or(html.len(), |e| start + e);
    html[start..end].to_string()
}

/// Goal: time charts and heatmaps are drawn where the reader expects them, with everything needed to read them.
/// Method: render the sample's region-kill check and look for each chart's SVG, axis label, legend entries,
/// marker lines and labels, and for the heatmap's cells, dashes and scale.
#[test]
fn charts_and_heatmaps_are_drawn() {
    let html = to_html(&sample::report());
    let section = section_of(&html, "failover.region-kill.under-load");
    for title in ["Latency percentiles over time", "Active users"] {
        assert!(section.contains(&format!("<figcaption>{title}</figcaption>\n<svg class=\"chart\"")), "{title}");
        assert!(section.contains(&format!("aria-label=\"{title}\"")), "{title}");
    }
    assert_eq!(section.matches("<svg").count(), 2);
    assert_eq!(section.matches(">time (s)</text>").count(), 2, "x axis label on each chart");
    assert!(section.contains(">ms</text>") && section.contains(">users</text>"), "y axis labelled with the unit");
    assert_eq!(section.matches("<polyline").count(), 5, "p50, p95, p99, all regions, us-east-1");
    for name in ["p50", "p95", "p99", "all regions", "us-east-1"] {
        assert!(section.contains(&format!("</span>{name}</li>")), "legend lacks {name}");
    }
    assert_eq!(section.matches("<line class=\"marker\"").count(), 4, "two markers on each chart");
    assert_eq!(section.matches(">us-east-1 killed</text>").count(), 2, "marker label in each plot");
    assert!(section.contains("us-east-1 killed <span class=\"muted\">at 20 s</span>"), "marker in the legend");
    assert!(section.contains(">us-east-1 restarted</text>"));
    // Ticks: time from 0 to 60 s, latency from 0 to 300 ms.
    for tick in [">0</text>", ">60</text>", ">300</text>"] {
        assert!(section.contains(tick), "missing tick {tick}");
    }

    let heat = &section[section.find("<h3>Heatmaps</h3>").expect("heatmaps after charts")..];
    assert!(section.find("<h3>Charts</h3>") < section.find("<h3>Heatmaps</h3>"));
    assert!(heat.contains("Round trip P95 by region pair <span class=\"muted\">(ms)</span>"));
    assert_eq!(heat.matches("<th scope=\"row\">").count(), 3);
    assert_eq!(heat.matches("<th scope=\"col\">").count(), 3);
    assert_eq!(heat.matches("<td class=\"none\"").count(), 3, "the diagonal has no value");
    assert_eq!(heat.matches(">–</td>").count(), 3);
    assert_eq!(heat.matches("<td style=\"background:#").count(), 6);
    for v in ["78.4", "79.1", "212.6", "121.3", "214.0", "119.8"] {
        assert!(heat.contains(&format!(">{v}</td>")), "cell {v}");
    }
    assert!(heat.contains("title=\"us-east-1, eu-west-1: 78.4 ms\""), "cell tooltip names row, column and unit");
    assert!(heat.contains(">78.4 ms</span>") && heat.contains(">214.0 ms</span>"), "scale from min to max");
    // The smallest value gets the lightest colour and the largest the darkest, with text readable on each.
    assert!(heat.contains("background:#ffffcc;color:#1d2330\" title=\"us-east-1, eu-west-1"));
    assert!(heat.contains("background:#bd0026;color:#ffffff\" title=\"ap-south-1, us-east-1"));
}

/// Goal: text in charts and heatmaps cannot inject markup. Method: put `<script>` in every text field of a chart
/// and a heatmap; none may survive, and the escaped form must be shown.
#[test]
fn chart_text_is_escaped() {
    const EVIL: &str = "<script>alert('x')</script>&\"";
    const SHOWN: &str = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;";
    let mut r = sample::report();
    let mut c = sample::check("failover.evil.text", Verdict::Pass, "fine");
    c.charts.push(Chart {
        title: EVIL.into(),
        y_unit: EVIL.into(),
        series: vec![Series { name: EVIL.into(), points: vec![(0.0, 1.0), (1.0, 2.0)] }],
        markers: vec![Marker { t_s: 0.5, label: EVIL.into() }],
    });
    c.heatmaps.push(Heatmap {
        title: EVIL.into(),
        unit: EVIL.into(),
        rows: vec![EVIL.into()],
        columns: vec![EVIL.into()],
        values: vec![vec![Some(1.0)]],
    });
    r.checks.push(c);
    let html = to_html(&r);
    assert!(!html.to_ascii_lowercase().contains("<script"), "a script tag leaked");
    let section = section_of(&html, "failover.evil.text");
    assert!(section.contains(&format!("<figcaption>{SHOWN}</figcaption>")), "chart title");
    assert!(section.contains(&format!("aria-label=\"{SHOWN}\"")), "chart title in an attribute");
    assert!(section.contains(&format!("</span>{SHOWN}</li>")), "series name");
    assert!(section.contains(&format!("<title>0.500 s: {SHOWN}</title>")), "marker label");
    assert!(section.contains(&format!("<th scope=\"row\">{SHOWN}</th>")), "heatmap row");
    assert!(section.contains(&format!("title=\"{SHOWN}, {SHOWN}: 1.0 {SHOWN}\"")), "heatmap cell tooltip");
}

/// Goal: charts and heatmaps with missing, degenerate or hostile data still render a readable figure with no
/// NaN or infinity in the SVG. Method: no series, an empty series, a single point, NaN and infinite values,
/// negative values, a marker with a NaN time, a ragged heatmap and one with no value at all.
#[test]
fn degenerate_charts_render() {
    let chart = |title: &str, points: Vec<(f64, f64)>, markers: Vec<Marker>| Chart {
        title: title.into(),
        y_unit: "ms".into(),
        series: vec![Series { name: "s".into(), points }],
        markers,
    };
    let mut c = sample::check("failover.degenerate.data", Verdict::Pass, "fine");
    c.charts = vec![
        Chart { title: "no series".into(), y_unit: String::new(), series: Vec::new(), markers: Vec::new() },
        chart("empty series", Vec::new(), vec![Marker { t_s: 3.0, label: "only a marker".into() }]),
        chart("one point", vec![(5.0, 3.0)], Vec::new()),
        chart("not finite", vec![(0.0, f64::NAN), (1.0, f64::INFINITY), (f64::NAN, 2.0)], Vec::new()),
        chart("gap", vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 4.0), (4.0, 5.0)], Vec::new()),
        chart("negative", vec![(0.0, -3.0), (1.0, 2.0)], vec![Marker { t_s: f64::NAN, label: "never".into() }]),
    ];
    c.heatmaps = vec![
        Heatmap {
            title: "ragged".into(),
            unit: "ms".into(),
            rows: vec!["a".into(), "b".into()],
            columns: vec!["x".into()],
            values: vec![vec![Some(1.0), Some(2.0)], Vec::new(), vec![Some(f64::NAN)]],
        },
        Heatmap {
            title: "nothing measured".into(),
            unit: "ms".into(),
            rows: vec!["a".into()],
            columns: vec!["x".into()],
            values: vec![vec![None]],
        },
    ];
    let mut r = sample::report();
    r.checks = vec![c];
    let html = to_html(&r);
    let section = section_of(&html, "failover.degenerate.data");
    for bad in ["NaN", "inf"] {
        assert!(!section.contains(bad), "{bad} in the output");
    }
    assert_eq!(section.matches("<svg").count(), 6);
    assert_eq!(section.matches(">no data</text>").count(), 3, "no series, empty series, nothing finite");
    assert!(section.contains(">value</text>"), "an empty unit is labelled as a value");
    assert!(section.contains(">only a marker</text>"), "a marker alone is drawn");
    assert!(!section.contains("never"), "a marker at NaN is left out");
    assert_eq!(section.matches("<polyline").count(), 3, "the gap splits one series in two; negative is one");
    assert!(section.contains("r=\"3\""), "a lone point is drawn as a dot");
    assert!(section.contains(">-4</text>") || section.contains(">-3</text>"), "the y axis goes below zero");
    assert!(section.contains("<line class=\"axis\" x1=\"64\""), "the zero line is drawn as an axis");
    // Ragged: 3 rows (labels or values, whichever is longer) by 2 columns, so 4 dashes and 2 values.
    let ragged = &section[section.find("ragged").unwrap()..section.find("nothing measured").unwrap()];
    assert_eq!(ragged.matches(">–</td>").count(), 4, "{ragged}");
    assert!(ragged.contains(">1.0</td>") && ragged.contains(">2.0</td>"));
    assert!(section.contains("No cell was measured."));
}

/// Goal: compliance checks get their own "Compliance" section, one sub-section per framework with its control
/// table; a report without them has no such section.
#[test]
fn compliance_section_per_framework() {
    let mut r = sample::report();
    assert!(!to_html(&r).contains("id=\"compliance\""));
    let mut c = r.checks[0].clone();
    c.id = "security.compliance.gdpr".into();
    c.suite = "security".into();
    c.tables = vec![xregion_model::report::Table {
        title: "GDPR control by control".into(),
        columns: vec!["control".into(), "status".into()],
        rows: vec![vec!["Art. 17".into(), "pass".into()]],
    }];
    r.checks.push(c);
    let html = to_html(&r);
    let at = html.find("id=\"compliance\"").expect("compliance section");
    let section = &html[at..];
    assert!(section.contains("<h3>") && section.contains("GDPR") && section.contains("Art. 17"), "{section}");
}

/// Goal: a check judged region by region shows each region's verdict and reason, escaped. Method: the sample's
/// write check, with a passing, a failing and an unreachable region.
#[test]
fn per_region_verdicts_are_shown() {
    let html = to_html(&sample::report());
    let s = section_of(&html, "cross-region.consistency.write-replicate");
    assert!(s.contains("<h3>By region</h3>"), "{s}");
    for (region, verdict) in [("us-east-1", "v-pass"), ("us-west-2", "v-fail"), ("eu-west-1", "v-error")] {
        let row = s.split("<tr>").find(|r| r.contains(region)).expect("a row per region");
        assert!(row.contains(verdict), "{row}");
    }
    assert!(s.contains("2 lost &lt;b&gt;writes&lt;/b&gt;"), "reasons are escaped: {s}");
}
