//! report.json: round trip, schema-version checks, and `write_all`.

use crate::sample;
use xregion_report::{ReportError, from_json, to_json, write_all};

/// Goal: a report survives JSON unchanged, so old runs can be re-rendered. Method: serialize, parse, compare.
#[test]
fn round_trip() {
    let r = sample::report();
    let text = to_json(&r);
    assert!(text.ends_with("}\n"));
    assert_eq!(from_json(&text).unwrap(), r);
}

/// Goal: a report from a newer xregion is refused with a message saying what to do. Method: bump the version.
#[test]
fn newer_schema_is_rejected() {
    let mut v: serde_json::Value = serde_json::from_str(&to_json(&sample::report())).unwrap();
    v["schema_version"] = 2.into();
    v["a_field_from_the_future"] = true.into();
    let e = from_json(&v.to_string()).unwrap_err();
    assert!(matches!(e, ReportError::SchemaTooNew { found: 2, supported: 1 }), "{e:?}");
    assert!(e.to_string().contains("use a newer xregion"), "{e}");

    v.as_object_mut().unwrap().remove("schema_version");
    assert!(matches!(from_json(&v.to_string()), Err(ReportError::MissingSchemaVersion)));
    v["schema_version"] = 0.into();
    assert!(matches!(from_json(&v.to_string()), Err(ReportError::SchemaUnknown { found: 0 })));
    assert!(matches!(from_json("not json"), Err(ReportError::Json(_))));
}

/// Goal: `write_all` leaves exactly the three files and no temporaries, in a directory it creates. Method: write
/// into a missing subdirectory twice and list it.
#[test]
fn write_all_writes_three_files() {
    let tmp = sample::TempDir::new("write-all");
    let out = tmp.0.join("nested/out");
    let r = sample::report();
    write_all(&r, &out).unwrap();
    write_all(&r, &out).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["junit.xml", "report.html", "report.json"]);
    let back = from_json(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(back, r);
}

/// Goal: an unwritable destination is an error naming the path, not a panic. Method: use a file as the directory.
#[test]
fn write_all_reports_io_errors() {
    let tmp = sample::TempDir::new("write-all-err");
    let file = tmp.0.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let e = write_all(&sample::report(), &file).unwrap_err();
    assert!(matches!(e, ReportError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("a-file"), "{e}");
}
