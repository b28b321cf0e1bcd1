//! Renderers of xregion reports: `report.json`, `junit.xml`, a console summary and a self-contained `report.html`.
//!
//! `report.json` is the source of truth; every other format is rendered from a `Report`, so `xregion report FILE`
//! can render an old run again. Rendering is pure (functions of the report, no clocks, no network); only
//! `write_all` touches the file system, and it writes each file to a temporary name and renames it, so a crash
//! never leaves a half-written file behind.

pub mod compare;
pub mod console;
pub mod html;
pub mod json;
pub mod junit;

pub use console::to_console;
pub use html::to_html;
pub use json::{from_json, to_json};
pub use junit::to_junit;

use std::path::{Path, PathBuf};
use xregion_model::report::Report;

/// The JSON Schema (draft 2020-12) of `report.json`, as committed in `schema/report.schema.json`.
pub const REPORT_SCHEMA_JSON: &str = include_str!("../schema/report.schema.json");

/// File names `write_all` produces, in the order it writes them.
pub const REPORT_FILES: [&str; 3] = ["report.json", "junit.xml", "report.html"];

/// Why a report could not be read, rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The text is not a valid report.
    #[error("report.json is not a valid xregion report: {0}")]
    Json(#[from] serde_json::Error),
    /// The report has no usable `schema_version`.
    #[error("report.json has no numeric schema_version field; it was not written by xregion")]
    MissingSchemaVersion,
    /// The report was written by a newer xregion.
    #[error(
        "report.json has schema_version {found}, but this xregion reads up to {supported}; use a newer xregion to render it"
    )]
    SchemaTooNew {
        /// The version in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The report claims a version that never existed.
    #[error("report.json has schema_version {found}, which no xregion ever wrote (the first is 1)")]
    SchemaUnknown {
        /// The version in the file.
        found: u64,
    },
    /// quick-junit could not serialize the JUnit report.
    #[error("could not render junit.xml: {0}")]
    Junit(#[from] quick_junit::SerializeError),
    /// A file could not be written.
    #[error("could not write {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Renders `report.json`, `junit.xml` and `report.html` into `out_dir`, creating it if needed.
///
/// Every format is rendered before anything is written, so a rendering error leaves the directory untouched;
/// each file is written to a temporary name, synced and renamed over the old one.
pub fn write_all(report: &Report, out_dir: &Path) -> Result<(), ReportError> {
    write_all_with_trend(report, &[], out_dir)
}

/// `write_all`, with trends over `earlier` runs (oldest first) in `report.html`.
pub fn write_all_with_trend(report: &Report, earlier: &[Report], out_dir: &Path) -> Result<(), ReportError> {
    let contents = [to_json(report), to_junit(report)?, html::to_html_with_trend(report, earlier)];
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Io { path: out_dir.to_path_buf(), source })?;
    for (name, text) in REPORT_FILES.iter().zip(contents) {
        write_atomically(&out_dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    use std::io::Write;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ReportError::Io { path: p, source }
    };
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}
