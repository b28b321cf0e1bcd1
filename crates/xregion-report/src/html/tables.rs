//! Tables: each report table as an HTML table, and each heatmap as one too, its cells coloured on a sequential
//! scale from its smallest to its largest value, because a table keeps the exact figures selectable and needs no
//! layout code.

use super::axes::widen;
use super::text::esc;
use std::fmt::Write as _;
use xregion_model::report::{Heatmap, Table};

/// The heatmap's sequential scale (ColorBrewer YlOrRd), from the smallest value to the largest: darker is more.
const HEAT_STOPS: [[u8; 3]; 6] =
    [[255, 255, 204], [254, 217, 118], [254, 178, 76], [253, 141, 60], [240, 59, 32], [189, 0, 38]];

/// A report table, every cell escaped.
pub(super) fn table(h: &mut String, t: &Table) {
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

/// A heatmap as a table: row and column labels, each cell coloured on `HEAT_STOPS` between the smallest and the
/// largest value and showing its value; cells with no value show a dash on grey.
pub(super) fn heatmap(h: &mut String, m: &Heatmap) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: heatmap colours run from light to dark with readable text on each. Method: both ends and the middle.
    #[test]
    fn heat_colors() {
        assert_eq!(heat_color(0.0), ("#ffffcc".to_string(), "#1d2330"));
        assert_eq!(heat_color(1.0), ("#bd0026".to_string(), "#ffffff"));
        assert_eq!(heat_color(f64::NAN), heat_color(0.5));
        assert_eq!(heat_color(2.0), heat_color(1.0));
    }
}
