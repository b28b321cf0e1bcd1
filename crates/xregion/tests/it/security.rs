//! The security suite against the hardened lab: the whole suite passes on the defaults (and the compliance
//! checks with it), and each check fails, naming the problem, when the lab runs with the matching protection off.

use crate::common::{TempDir, check, lab_lock, report, run_xregion, text};
use std::time::Duration;

/// Longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs `checks` against a lab with `extra` config; returns the report, exit code and output.
fn run_security(name: &str, checks: &[&str], extra: &str) -> (serde_json::Value, Option<i32>, String) {
    let _g = lab_lock();
    let dir = TempDir::new(name);
    let config = dir.path().join("xregion.toml");
    std::fs::write(&config, extra).expect("write config");
    let out = dir.path().join("out");
    let mut args = vec!["run", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seed", "5"];
    if checks.is_empty() {
        args.extend(["--suite", "security"]);
    }
    for c in checks {
        args.extend(["--check", c]);
    }
    let o = run_xregion(&args, &[], RUN_LIMIT);
    (report(&out), o.status.code(), text(&o))
}

/// Asserts that `id` failed with a summary containing every one of `words`.
fn assert_fails(r: &serde_json::Value, id: &str, words: &[&str]) {
    let c = check(r, id);
    assert_eq!(c["verdict"], "fail", "{c}");
    let summary = c["summary"].as_str().unwrap_or("");
    for w in words {
        assert!(summary.contains(w), "{id}: {w:?} not in {summary:?}");
    }
}

/// Goal: on the default (hardened) lab the whole security suite passes, compliance included, and neither
/// report.json nor the output holds a token.
#[test]
fn security_suite_passes_on_the_default_lab() {
    let (r, code, out) = run_security("sec-pass", &[], "");
    for c in r["checks"].as_array().expect("checks") {
        assert_eq!(c["verdict"], "pass", "{c}");
    }
    for id in [
        "security.tls.versions",
        "security.tls.certificates",
        "security.access-control",
        "security.encryption-at-rest",
        "security.audit-trail",
        "security.data-residency",
        "security.erasure",
        "security.compliance.soc2",
        "security.compliance.iso27001",
        "security.compliance.gdpr",
    ] {
        check(&r, id);
    }
    assert_eq!(code, Some(0), "{out}");
    let json = r.to_string();
    assert!(!json.contains("xrl_") && !out.contains("xrl_"), "a token leaked");
    assert!(json.contains("[redacted]"), "the recorded config should show redacted tokens");
}

/// Goal: TLS 1.2 accepted by the lab's listeners fails security.tls.versions, naming the version.
#[test]
fn tls_versions_fail_when_tls12_is_accepted() {
    let (r, code, _) =
        run_security("sec-tls12", &["security.tls.versions"], "[lab.defects]\ntls_min_version = \"1.2\"\n");
    assert_fails(&r, "security.tls.versions", &["TLS 1.2 accepted on"]);
    assert_eq!(code, Some(1));
}

/// Goal: an expired certificate fails security.tls.certificates, naming it expired.
#[test]
fn certificates_fail_when_expired() {
    let (r, _, _) = run_security("sec-expired", &["security.tls.certificates"], "[lab.defects]\ncert_expired = true\n");
    assert_fails(&r, "security.tls.certificates", &["expired"]);
}

/// Goal: with authentication off, requests without a token are served: access-control fails naming the 401 that
/// did not come.
#[test]
fn access_control_fails_without_auth() {
    let (r, _, _) = run_security("sec-noauth", &["security.access-control"], "[lab.defects]\nauth_disabled = true\n");
    assert_fails(&r, "security.access-control", &["no token got"]);
}

/// Goal: with mTLS off, a replication peer without a client certificate is accepted, and the check names it.
#[test]
fn access_control_fails_without_mtls() {
    let (r, _, _) = run_security("sec-nomtls", &["security.access-control"], "[lab.defects]\nmtls_disabled = true\n");
    assert_fails(&r, "security.access-control", &["without a client certificate"]);
}

/// Goal: values stored in plaintext are found by the raw scan.
#[test]
fn encryption_at_rest_fails_on_plaintext() {
    let (r, _, _) =
        run_security("sec-plain", &["security.encryption-at-rest"], "[lab.defects]\nplaintext_at_rest = true\n");
    assert_fails(&r, "security.encryption-at-rest", &["plaintext values found at rest"]);
}

/// Goal: without an audit log, every write of the check is reported missing.
#[test]
fn audit_trail_fails_without_audit() {
    let (r, _, _) = run_security("sec-noaudit", &["security.audit-trail"], "[lab.defects]\naudit_disabled = true\n");
    assert_fails(&r, "security.audit-trail", &["not audited", "missing from the audit log"]);
}

/// Goal: with residency ignored by replication, EU records reach the US regions and the check names one.
#[test]
fn data_residency_fails_when_ignored() {
    let (r, _, _) =
        run_security("sec-nores", &["security.data-residency"], "[lab.defects]\nresidency_disabled = true\n");
    assert_fails(&r, "security.data-residency", &["eu record", "reached us-"]);
}

/// Goal: an erasure that stays in one region leaves the value readable elsewhere, and the check names the region.
#[test]
fn erasure_fails_when_local_only() {
    let (r, _, _) = run_security(
        "sec-erase",
        &["security.erasure"],
        "[lab.defects]\nerasure_local_only = true\n[targets]\nerasure_s = 3\n",
    );
    assert_fails(&r, "security.erasure", &["still serves the erased value"]);
}
