//! The path a real user takes: a lab started with `xregion lab up`, described to xregion as the user's own
//! deployment (`kind = "http"`, its endpoints, CA, tokens and traffic records, and faults through
//! `[faults.command]` scripts that call `xregion fail` and `xregion restore`), judged like the lab itself.

use crate::common::{LabUp, TempDir, check, exe, lab_lock, report, run_xregion, text};
use crate::run::{RUN_LIMIT, SMALL_CHECKS};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Longest wait for `lab up` to be ready, or to stop.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// A TOML string.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A TOML inline table of strings or numbers from a JSON object.
fn inline(v: &serde_json::Value) -> String {
    let parts: Vec<String> =
        v.as_object().map(|m| m.iter().map(|(k, v)| format!("{} = {}", q(k), v)).collect()).unwrap_or_default();
    format!("{{ {} }}", parts.join(", "))
}

/// The config a user would write for the lab in `lab`, from its `lab.json` and `tokens.json`: regions, CA,
/// tokens, the lab's journey file, traffic (each location's preferred regions instead of a latency table) and fault commands.
pub(crate) fn describe(lab: &Path, scripts: &Path) -> String {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.join("lab.json")).expect("lab.json")).expect("lab.json is JSON");
    let tokens = xregion_lab::auth::Tokens::load(lab).expect("the lab's tokens");
    let token = |who: &str| tokens.token_of(who).expect("a known principal").to_string();
    let ca = lab.join("pki").join("ca.pem").display().to_string();
    let mut c = String::from("[deployment]\nkind = \"http\"\n");
    for r in rec["regions"].as_array().expect("regions") {
        c += &format!(
            "[[deployment.regions]]\nname = {}\nendpoint = {}\n",
            r["name"],
            q(r["endpoint"].as_str().expect("endpoint"))
        );
    }
    c += &format!("[deployment.tls]\nca_file = {}\n", q(&ca));
    // The lab's shop takes the journeys the lab runs by default, from the file the repository ships.
    c += &format!("[e2e]\njourneys = {}\n", q(concat!(env!("CARGO_MANIFEST_DIR"), "/journeys/lab.toml")));
    c += &format!(
        "[deployment.auth]\nread_token = {}\nwrite_token = {}\nadmin_token = {}\n",
        q(&token("reader")),
        q(&token("writer")),
        q(&token("admin"))
    );
    let t = &rec["traffic"];
    // Each location's regions by one-way latency: what a user who knows their geography would write.
    let mut prefs = BTreeMap::new();
    for (loc, m) in t["locations"].as_object().expect("locations") {
        let mut v: Vec<(String, f64)> =
            m.as_object().expect("latencies").iter().map(|(r, l)| (r.clone(), l.as_f64().unwrap_or(0.0))).collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        prefs.insert(loc.clone(), v.into_iter().map(|x| x.0).collect::<Vec<_>>());
    }
    c += &format!(
        "[deployment.traffic]\nrecords = {}\ncdn = {}\nnearest = {}\ngeolocation = {}\nweights = {}\n\
         capacity = {}\nfailover_order = {}\npreferences = {}\n",
        inline(&t["records"]),
        t["cdn"],
        inline(&t["nearest"]),
        inline(&t["geolocation"]),
        inline(&t["weights"]),
        inline(&t["capacity"]),
        t["failover_order"],
        inline(&serde_json::to_value(&prefs).expect("prefs")),
    );
    let (exe, dir) = (exe(), lab.display().to_string());
    let fail = format!(
        "set -e\nargs=\"--kind $XREGION_FAULT_KIND --direction $XREGION_FAULT_DIRECTION\"\n\
         if [ -n \"$XREGION_FAULT_PEERS\" ]; then args=\"$args --peers $XREGION_FAULT_PEERS\"; fi\n\
         if [ \"$XREGION_FAULT_CLIENTS\" = 1 ]; then args=\"$args --clients\"; fi\n\
         if [ \"$XREGION_FAULT_WRITES_FAIL\" = 0 ]; then args=\"$args --no-writes-fail\"; fi\n\
         if [ \"$XREGION_FAULT_KIND\" = partial ]; then args=\"$args --error-share $XREGION_FAULT_ERROR_SHARE\"; fi\n\
         if [ \"$XREGION_FAULT_KIND\" = latency ]; then \
         args=\"$args --extra-delay-ms $XREGION_FAULT_EXTRA_DELAY_MS\"; fi\n\
         exec '{exe}' fail \"$XREGION_REGION\" $args --dir '{dir}'\n"
    );
    let restore = format!(
        "set -e\n'{exe}' restore \"$XREGION_REGION\" --dir '{dir}'\necho \"restored $XREGION_REGION\" >> '{}'\n",
        scripts.join("restores.log").display()
    );
    let health = format!(
        "exec curl -sf --max-time 5 --cacert '{ca}' -X PUT -H 'Authorization: Bearer {}' \
         -H 'content-type: application/json' -d \"{{\\\"status\\\":\\\"$XREGION_HEALTH\\\"}}\" \
         \"$XREGION_ENDPOINT/lab/health\" >/dev/null\n",
        token("admin")
    );
    for (name, body) in [("fail.sh", fail), ("restore.sh", restore), ("health.sh", health)] {
        std::fs::write(scripts.join(name), body).expect("script");
    }
    let sh = |n: &str| q(&format!("sh {}", scripts.join(n).display()));
    c += &format!(
        "[faults]\ninjector = \"command\"\n[faults.command]\nfail = {}\nrestore = {}\nhealth_down = {}\n\
         health_up = {}\n",
        sh("fail.sh"),
        sh("restore.sh"),
        sh("health.sh"),
        sh("health.sh")
    );
    c
}

/// Verdicts by check id.
fn verdicts(r: &serde_json::Value) -> BTreeMap<String, String> {
    r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| (c["id"].as_str().unwrap_or("").to_string(), c["verdict"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// Goal: the cross-region suite gives a lab from `xregion lab up`, described as an http deployment with command
/// faults, the same verdicts as the lab mode gives the lab, from comparable request counts (the failover canaries
/// come from every configured location), with exit code 0 on both. Then a `[stop]` condition (the failing
/// region's health URL) aborts the complete-region fault early: the restore command runs, and the check is
/// `error: stopped by condition`.
#[test]
fn lab_up_as_an_http_deployment_gets_the_lab_verdicts() {
    let _g = lab_lock();
    let dir = TempDir::new("as-http");
    let seed = ["--seed", "13", "--suite", "cross-region"];

    let lab_cfg = dir.path().join("lab-mode.toml");
    std::fs::write(&lab_cfg, SMALL_CHECKS).expect("config");
    let lab_out = dir.path().join("lab-out");
    let mut args = vec!["run", "--config", lab_cfg.to_str().unwrap(), "--out", lab_out.to_str().unwrap()];
    args.extend(seed);
    let o = run_xregion(&args, &[], RUN_LIMIT);
    assert_eq!(o.status.code(), Some(0), "lab mode: {}", text(&o));
    let in_lab = report(&lab_out);

    // Stopped on every exit path of the test, a failed assertion included.
    let lab = LabUp::start(dir.path(), "", WAIT_LIMIT);
    let lab_dir = lab.dir().to_path_buf();
    let deployment = describe(&lab_dir, dir.path());
    let http_cfg = dir.path().join("http.toml");
    std::fs::write(&http_cfg, format!("{SMALL_CHECKS}\n{deployment}")).expect("config");
    let http_out = dir.path().join("http-out");
    let mut args = vec!["run", "--config", http_cfg.to_str().unwrap(), "--out", http_out.to_str().unwrap()];
    args.extend(seed);
    let o = run_xregion(&args, &[], RUN_LIMIT);
    let as_http = report(&http_out);
    assert_eq!(verdicts(&as_http), verdicts(&in_lab), "http: {}", text(&o));
    assert_eq!(o.status.code(), Some(0), "http: {}", text(&o));
    for id in ["cross-region.failover.complete-region", "cross-region.failover.partial-service"] {
        let (a, b) = (check(&in_lab, id), check(&as_http, id));
        let (n_lab, n_http) = (
            a["metrics"]["requests_during_fault"].as_f64().unwrap_or(0.0),
            b["metrics"]["requests_during_fault"].as_f64().unwrap_or(0.0),
        );
        assert!(n_http >= 200.0 && n_http >= 0.5 * n_lab, "{id}: {n_http} canary requests vs {n_lab} in lab mode");
    }
    let restores = std::fs::read_to_string(dir.path().join("restores.log")).unwrap_or_default();
    assert!(restores.contains("restored us-east-1"), "the restore command never ran: {restores}");

    // A stop condition: the failing region's own health URL, failing twice in a row, aborts the fault.
    std::fs::write(dir.path().join("restores.log"), "").expect("truncate");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab_dir.join("lab.json")).expect("lab.json")).expect("lab.json is JSON");
    let victim = rec["regions"][0]["endpoint"].as_str().expect("endpoint").to_string();
    let stop_cfg = dir.path().join("stop.toml");
    std::fs::write(
        &stop_cfg,
        format!(
            "{SMALL_CHECKS}\n{deployment}[stop]\nhealth_url = {}\nhealth_failures = 2\n",
            q(&format!("{victim}/healthz"))
        ),
    )
    .expect("config");
    let stop_out = dir.path().join("stop-out");
    let o = run_xregion(
        &[
            "run",
            "--config",
            stop_cfg.to_str().unwrap(),
            "--out",
            stop_out.to_str().unwrap(),
            "--check",
            "cross-region.failover.complete-region",
        ],
        &[],
        RUN_LIMIT,
    );
    let c = check(&report(&stop_out), "cross-region.failover.complete-region").clone();
    assert_eq!(c["verdict"], "error", "{c}");
    let summary = c["summary"].as_str().unwrap_or("");
    assert!(summary.contains("stopped by condition: the health URL") && summary.contains("/healthz"), "{c}");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let restores = std::fs::read_to_string(dir.path().join("restores.log")).unwrap_or_default();
    assert!(restores.contains("restored us-east-1"), "the stop did not run the restore command: {restores}");
    drop(lab);
}
