//! Compliance checks: SOC 2, ISO/IEC 27001:2022 and GDPR verdicts derived from the checks mapped to each control.
//!
//! The mapping is data (`compliance/controls.toml`, compiled in). These checks measure nothing themselves: they
//! judge each control by the verdicts of its checks in the same run, so they run last, and a control whose checks
//! did not run is reported as not assessed rather than passed.

use crate::check::{CheckDef, Needs, ResultBuilder, Run};
use crate::config::Config;
use serde::Deserialize;
use std::collections::BTreeMap;
use xregion_model::report::{CheckResult, Table, Verdict};

/// The mapping file, compiled in.
pub const CONTROLS_TOML: &str = include_str!("../../../../compliance/controls.toml");

/// The checks of this module.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "security.compliance.soc2",
        title: "SOC 2 controls judged by the checks mapped to them",
        target: |_| "every assessed control passes".to_string(),
        needs: Needs { usable: false, ..Needs::NONE },
        run: Run::Judge(|rb, config, prior| judge(rb, config, prior, "soc2")),
    },
    CheckDef {
        id: "security.compliance.iso27001",
        title: "ISO/IEC 27001:2022 Annex A controls judged by the checks mapped to them",
        target: |_| "every assessed control passes".to_string(),
        needs: Needs { usable: false, ..Needs::NONE },
        run: Run::Judge(|rb, config, prior| judge(rb, config, prior, "iso27001")),
    },
    CheckDef {
        id: "security.compliance.gdpr",
        title: "GDPR articles judged by the checks mapped to them",
        target: |_| "every assessed article passes".to_string(),
        needs: Needs { usable: false, ..Needs::NONE },
        run: Run::Judge(|rb, config, prior| judge(rb, config, prior, "gdpr")),
    },
];

/// The mapping file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Frameworks in report order.
    pub framework: Vec<Framework>,
}

/// One framework.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// Short id: the last part of the check id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Its controls.
    pub control: Vec<Control>,
}

/// One control and the checks that give evidence for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Control id, for example `CC6.1`.
    pub id: String,
    /// What it requires.
    pub title: String,
    /// Check ids.
    pub checks: Vec<String>,
}

/// The compiled-in mapping. It is tested to parse, so a failure here is a build defect.
pub fn mapping() -> Result<Mapping, String> {
    toml::from_str(CONTROLS_TOML).map_err(|e| format!("compliance/controls.toml is invalid: {e}"))
}

/// A control's status in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    NotAssessed,
    Pass,
    Error,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::NotAssessed => "not assessed",
            Status::Pass => "pass",
            Status::Error => "error",
            Status::Fail => "fail",
        }
    }
}

/// Judges the framework `id` of the mapping from the results of the checks that ran before it.
fn judge(mut rb: ResultBuilder, _config: &Config, prior: &[CheckResult], id: &str) -> CheckResult {
    let mapping = match mapping() {
        Ok(m) => m,
        Err(e) => return rb.finish(Verdict::Error, e),
    };
    let Some(fw) = mapping.framework.iter().find(|f| f.id == id) else {
        return rb.finish(Verdict::Error, format!("compliance/controls.toml has no framework {id}"));
    };
    let verdicts: BTreeMap<&str, Verdict> = prior.iter().map(|r| (r.id.as_str(), r.verdict)).collect();
    let mut table = Table {
        title: format!("{} control by control", fw.name),
        columns: vec!["control".into(), "requirement".into(), "status".into(), "evidence (check: verdict)".into()],
        rows: Vec::new(),
    };
    let mut by_status: BTreeMap<Status, Vec<&str>> = BTreeMap::new();
    for c in &fw.control {
        let mut status = Status::NotAssessed;
        let mut evidence = Vec::new();
        for check in &c.checks {
            let v = verdicts.get(check.as_str());
            evidence.push(format!("{check}: {}", v.map_or("not run", |v| v.as_str())));
            let s = match v {
                Some(Verdict::Pass) => Status::Pass,
                Some(Verdict::Fail) => Status::Fail,
                Some(Verdict::Error) => Status::Error,
                Some(Verdict::Skipped) | None => Status::NotAssessed,
            };
            status = status.max(s);
        }
        by_status.entry(status).or_default().push(&c.id);
        table.rows.push(vec![c.id.clone(), c.title.clone(), status.label().into(), evidence.join("; ")]);
    }
    rb.table(table);
    let count = |s: Status| by_status.get(&s).map_or(0, Vec::len);
    let assessed = fw.control.len() - count(Status::NotAssessed);
    rb.metric("controls", fw.control.len() as f64);
    rb.metric("controls_assessed", assessed as f64);
    rb.metric("controls_failed", count(Status::Fail) as f64);
    rb.metric("controls_error", count(Status::Error) as f64);
    rb.note(
        "each control is judged by the checks mapped to it in compliance/controls.toml, from their verdicts in this \
         run: evidence for an auditor, not a certification",
    );
    let not_assessed = by_status.get(&Status::NotAssessed).map(|v| v.join(", "));
    if let Some(na) = &not_assessed {
        rb.note(format!("not assessed in this run (their checks did not run or were skipped): {na}"));
    }
    rb.measured(format!("{} of {} controls pass", count(Status::Pass), fw.control.len()));
    let list = |s: Status| by_status.get(&s).map(|v| v.join(", ")).unwrap_or_default();
    if count(Status::Fail) > 0 {
        let n = count(Status::Fail);
        let what = if n == 1 { "control fails" } else { "controls fail" };
        return rb.finish(Verdict::Fail, format!("{n} {what}: {}", list(Status::Fail)));
    }
    if count(Status::Error) > 0 {
        return rb.finish(
            Verdict::Error,
            format!(
                "{} could not be judged: {}",
                if count(Status::Error) == 1 {
                    "1 control".to_string()
                } else {
                    format!("{} controls", count(Status::Error))
                },
                list(Status::Error)
            ),
        );
    }
    if assessed == 0 {
        return rb.finish(Verdict::Skipped, "none of the checks mapped to this framework ran");
    }
    let tail = not_assessed.map_or(String::new(), |na| format!("; not assessed: {na}"));
    rb.finish(Verdict::Pass, format!("{assessed} of {} controls assessed, all pass{tail}", fw.control.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, verdict: Verdict) -> CheckResult {
        let mut r = ResultBuilder::blank().finish(verdict, "");
        r.id = id.to_string();
        r
    }

    /// Goal: the compiled-in mapping parses, has the three frameworks, and maps only to checks in the catalogue.
    #[test]
    fn mapping_is_valid_and_known() {
        let m = mapping().unwrap();
        let ids: Vec<&str> = m.framework.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["soc2", "iso27001", "gdpr"]);
        let catalogue: Vec<&str> = crate::catalogue::catalogue().iter().map(|c| c.id).collect();
        let security = [
            "security.tls.",
            "security.access-control",
            "security.encryption",
            "security.audit",
            "security.data-residency",
            "security.erasure",
        ];
        for f in &m.framework {
            for c in &f.control {
                assert!(!c.checks.is_empty(), "{} has no checks", c.id);
                for check in &c.checks {
                    // Security checks may land after this mapping; every other id must exist now.
                    assert!(
                        catalogue.contains(&check.as_str()) || security.iter().any(|p| check.starts_with(p)),
                        "{} maps to unknown check {check}",
                        c.id
                    );
                }
            }
        }
    }

    /// Goal: one failing mapped check fails the framework and names the control; checks that did not run leave
    /// controls not assessed; nothing run is skipped.
    #[test]
    fn verdicts_derive_from_mapped_checks() {
        let cfg = Config::default();
        let gdpr = |prior: &[CheckResult]| {
            let Run::Judge(f) = CHECKS[2].run else { panic!("a compliance check judges") };
            f(ResultBuilder::new(&CHECKS[2], &cfg), &cfg, prior)
        };
        let none = gdpr(&[]);
        assert_eq!(none.verdict, Verdict::Skipped);
        let ok = gdpr(&[result("security.erasure", Verdict::Pass)]);
        assert_eq!(ok.verdict, Verdict::Pass, "{}", ok.summary);
        assert!(ok.summary.contains("not assessed"), "{}", ok.summary);
        let bad = gdpr(&[result("security.erasure", Verdict::Fail), result("security.data-residency", Verdict::Pass)]);
        assert_eq!(bad.verdict, Verdict::Fail);
        assert!(bad.summary.contains("Art. 17"), "{}", bad.summary);
        assert!(!bad.summary.contains("Art. 44"), "{}", bad.summary);
    }
}
