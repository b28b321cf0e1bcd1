//! `report.json`: the report serialized, and read back with a schema-version check.
//!
//! The schema version is checked before the rest is parsed, so a report from a newer xregion fails with "use a
//! newer xregion" rather than with whatever field error the newer shape happens to cause.

use crate::ReportError;
use xregion_model::report::{Report, SCHEMA_VERSION};

/// The report as pretty-printed JSON, ending with a newline.
///
/// serde_json writes non-finite numbers (NaN, infinity) as `null`, which `from_json` and the schema reject; the
/// runner must put only finite numbers in a report.
pub fn to_json(report: &Report) -> String {
    // A Report has only string map keys and derived Serialize impls, so serialization cannot fail.
    let mut s = serde_json::to_string_pretty(report).expect("a Report always serializes to JSON");
    s.push('\n');
    s
}

/// Parses a report, rejecting one written with a newer (or an unknown) schema version.
pub fn from_json(text: &str) -> Result<Report, ReportError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let found =
        value.get("schema_version").and_then(serde_json::Value::as_u64).ok_or(ReportError::MissingSchemaVersion)?;
    if found > u64::from(SCHEMA_VERSION) {
        return Err(ReportError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    if found == 0 {
        return Err(ReportError::SchemaUnknown { found });
    }
    Ok(serde_json::from_value(value)?)
}
