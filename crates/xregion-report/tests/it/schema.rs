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

/// The sample's first chart, which the mutations below break.
fn chart(r: &mut serde_json::Value) -> &mut serde_json::Value {
    let chart = &mut r["checks"][3]["charts"][0];
    assert!(chart.is_object(), "the sample's fourth check has charts");
    chart
}

/// The sample's heatmap.
fn heatmap(r: &mut serde_json::Value) -> &mut serde_json::Value {
    let heatmap = &mut r["checks"][3]["heatmaps"][0];
    assert!(heatmap.is_object(), "the sample's fourth check has a heatmap");
    heatmap
}

/// Goal: charts and heatmaps are an additive change, so reports written before them stay valid and readable
/// with schema version 1. Method: remove both fields (and a chart's optional markers) from every check, then
/// validate and read it back.
#[test]
fn reports_without_charts_stay_valid() {
    let v = validator();
    let mut old: serde_json::Value = serde_json::from_str(&to_json(&sample::report())).unwrap();
    assert_eq!(old["schema_version"], 1);
    let mut with_charts = old.clone();
    drop(chart(&mut with_charts).as_object_mut().unwrap().remove("markers"));
    let errs = errors(&v, &with_charts);
    assert!(errs.is_empty(), "markers are optional, as in the model: {errs:#?}");
    for check in old["checks"].as_array_mut().unwrap() {
        let check = check.as_object_mut().unwrap();
        check.remove("charts");
        check.remove("heatmaps");
    }
    let errs = errors(&v, &old);
    assert!(errs.is_empty(), "{errs:#?}");
    let back = xregion_report::from_json(&old.to_string()).unwrap();
    assert!(back.checks.iter().all(|c| c.charts.is_empty() && c.heatmaps.is_empty()));
}

/// Goal: the schema is strict. Method: an unknown verdict, an extra field, a missing field, a newer version and
/// broken charts and heatmaps must each be rejected.
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
        ("chart point of three", Box::new(|r| chart(r)["series"][0]["points"][0] = serde_json::json!([1, 2, 3]))),
        ("chart point of one", Box::new(|r| chart(r)["series"][0]["points"][0] = serde_json::json!([1]))),
        ("chart point not a number", Box::new(|r| chart(r)["series"][0]["points"][0][1] = serde_json::Value::Null)),
        ("chart without series", Box::new(|r| drop(chart(r).as_object_mut().unwrap().remove("series")))),
        ("chart with an empty unit", Box::new(|r| chart(r)["y_unit"] = "".into())),
        ("extra chart field", Box::new(|r| chart(r)["surprise"] = 1.into())),
        ("marker without a time", Box::new(|r| drop(chart(r)["markers"][0].as_object_mut().unwrap().remove("t_s")))),
        ("series name not a string", Box::new(|r| chart(r)["series"][0]["name"] = 3.into())),
        ("charts not an array", Box::new(|r| r["checks"][3]["charts"] = serde_json::json!({}))),
        ("heatmap cell a string", Box::new(|r| heatmap(r)["values"][0][1] = "78.4".into())),
        ("heatmap row not an array", Box::new(|r| heatmap(r)["values"][0] = 1.into())),
        ("heatmap without values", Box::new(|r| drop(heatmap(r).as_object_mut().unwrap().remove("values")))),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!errors(&v, &bad).is_empty(), "schema accepted a report with {what}");
    }
}
