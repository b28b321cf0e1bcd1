//! The compliance section near the top of the page: the framework checks gathered in one place for an auditor,
//! each linking to its full section below.

use super::tables::table;
use super::text::{badge, esc};
use std::fmt::Write as _;
use xregion_model::report::{CheckResult, Report};

/// The compliance checks (`security.compliance.*`) as one section, a sub-section per framework with its
/// control-by-control table, so that an auditor finds them without reading every check.
pub(super) fn compliance_section(h: &mut String, r: &Report) {
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
