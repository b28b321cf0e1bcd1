//! The committed JSON Schema against real output: it must accept what we write and reject what we never write.

use crate::sample;
use xregion_report::{REPORT_SCHEMA_JSON, to_json};

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(REPORT_SCHEMA_JSON).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema is a valid draft 2020-12 schema")
}

fn errors(v: &jsonschema::Validator, instance: &serde_json::Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Goal: real output of every renderer path validates. Method: serialize the sample report and validate it.
#[test]
fn sample_report_validates() {
    let v = validator();
    let instance: serde_json::Value = serde_json::from_str(&to_json(&sample::report())).unwrap();
    let errs = errors(&v, &instance);
    assert!(errs.is_empty(), "{errs:#?}");
}

/// Goal: the schema is strict. Method: an unknown verdict, an extra field, a missing field and a newer version
/// must each be rejected.
#[test]
fn schema_rejects_wrong_reports() {
    let v = validator();
    let good: serde_json::Value = serde_json::from_str(&to_json(&sample::report())).unwrap();
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("unknown verdict", Box::new(|r| r["checks"][0]["verdict"] = "maybe".into())),
        ("extra field", Box::new(|r| r["surprise"] = 1.into())),
        ("extra check field", Box::new(|r| r["checks"][1]["surprise"] = 1.into())),
        ("missing field", Box::new(|r| drop(r.as_object_mut().unwrap().remove("seed")))),
        ("newer version", Box::new(|r| r["schema_version"] = 2.into())),
        ("metric not a number", Box::new(|r| r["checks"][0]["metrics"]["p99_ms_worst"] = serde_json::Value::Null)),
        (
            "bucket of three",
            Box::new(|r| r["checks"][0]["distributions"][0]["buckets"][0] = serde_json::json!([1, 2, 3])),
        ),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!errors(&v, &bad).is_empty(), "schema accepted a report with {what}");
    }
}
