//! Findings as report tables: the cell text of a held record and the table every checker's findings go into, cut
//! at `TABLE_ROWS_MAX` rows.

use super::model::Held;
use xregion_model::report::Table;

/// Most findings a table shows; the rest are summed in a last row so a badly broken run keeps a readable report.
pub const TABLE_ROWS_MAX: usize = 50;

/// A held record as a table cell: `"value" @ version`, `tombstone @ version`, or `absent`.
pub(super) fn show(h: Option<&Held>) -> String {
    h.map_or_else(|| "absent".to_string(), Held::to_string)
}

/// A table of at most `TABLE_ROWS_MAX` rows, plus a last row counting the ones left out.
pub(super) fn bounded_table(title: &str, columns: Vec<String>, mut rows: Vec<Vec<String>>) -> Table {
    if rows.len() > TABLE_ROWS_MAX {
        let more = rows.len() - TABLE_ROWS_MAX;
        rows.truncate(TABLE_ROWS_MAX);
        let mut last = vec![String::new(); columns.len()];
        last[0] = format!("... and {more} more");
        rows.push(last);
    }
    Table { title: title.to_string(), columns, rows }
}
