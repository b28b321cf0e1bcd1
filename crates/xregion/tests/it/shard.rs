//! Sharded runs on this machine: four `xregion run --shard I/4` processes against one lab from `xregion lab up`,
//! merged by `xregion merge`, against a single run of the same total load.

use crate::common::{LabUp, TempDir, check, lab_lock, report, run_xregion, text};
use crate::deployment::describe;
use crate::run::{RUN_LIMIT, SMALL_CHECKS};

/// The sustained phase's requests of a report's load check.
fn sustained_requests(r: &serde_json::Value) -> f64 {
    check(r, "performance.load.sustained")["metrics"]["requests"].as_f64().unwrap_or(0.0)
}

/// Goal: four shards (three from `--shard`, one from `JOB_COMPLETION_INDEX` as a Kubernetes Indexed Job sets it,
/// offset by `XREGION_SHARD_OFFSET` as a second cluster's Job is),
/// started together with `--start-at`, merge into load verdicts on the whole run: every user reached (15 each, 60
/// in all), the requests the sum of the shards', close to a single run of 60 users. A shard missing, a shard given
/// twice, `--shard` against the embedded lab, and journeys as the sharded load's script are clear errors (exit 2).
#[test]
fn four_shards_merge_into_the_verdicts_of_one_run() {
    let _g = lab_lock();
    let dir = TempDir::new("shards");
    // The lab's defaults (the WAN included), as the main run has them.
    let lab = LabUp::start(dir.path(), "", RUN_LIMIT);
    let config = dir.path().join("http.toml");
    std::fs::write(&config, format!("{SMALL_CHECKS}\n{}", describe(lab.dir(), dir.path()))).expect("config");
    let cfg = config.to_str().unwrap().to_string();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let start = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    let start_at = humantime::format_rfc3339_seconds(start).to_string();
    let shards: Vec<(String, std::process::Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (cfg, o, start_at) = (cfg.clone(), out(&format!("s{i}")), start_at.clone());
                s.spawn(move || {
                    let mut args = vec![
                        "run",
                        "--config",
                        &cfg,
                        "--profile",
                        "quick",
                        "--check",
                        "performance.load",
                        "--out",
                        &o,
                        "--start-at",
                        &start_at,
                    ];
                    let spec = format!("{i}/4");
                    let env: Vec<(&str, &str)> = if i == 3 {
                        // Index 1 of a second cluster's Job, whose shards come after the first's two.
                        vec![("JOB_COMPLETION_INDEX", "1"), ("XREGION_SHARD_OFFSET", "2"), ("XREGION_SHARD_COUNT", "4")]
                    } else {
                        args.extend(["--shard", &spec]);
                        vec![]
                    };
                    let args: Vec<&str> = args.iter().map(|a| &**a).collect();
                    (o.clone(), run_xregion(&args, &env, RUN_LIMIT))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("shard thread")).collect()
    });
    let mut shard_requests = 0.0;
    for (i, (o, result)) in shards.iter().enumerate() {
        assert_eq!(result.status.code(), Some(0), "shard {i}: {}", text(result));
        let r = report(std::path::Path::new(o));
        assert_eq!(check(&r, "performance.load.sustained")["metrics"]["users_target"], 15.0, "shard {i}");
        shard_requests += sustained_requests(&r);
    }

    let merged = out("merged");
    let o = run_xregion(&["merge", &out("s0"), &out("s1"), &out("s2"), &out("s3"), "--out", &merged], &[], RUN_LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = report(std::path::Path::new(&merged));
    for id in ["performance.load.ramp-up", "performance.load.sustained", "performance.load.spike"] {
        let c = check(&m, id);
        assert_eq!(c["verdict"], "pass", "{c}");
        assert_eq!(c["metrics"]["users_target"], 60.0, "{c}");
        assert!(c["metrics"]["users_max"].as_f64().unwrap() >= 60.0, "{c}");
        assert!(
            c["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("union of 4 shards")),
            "{c}"
        );
    }
    assert_eq!(sustained_requests(&m), shard_requests, "the merged phase holds every shard's requests");

    let single = out("single");
    let o = run_xregion(
        &["run", "--config", &cfg, "--profile", "quick", "--check", "performance.load", "--out", &single],
        &[],
        RUN_LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let one = sustained_requests(&report(std::path::Path::new(&single)));
    let ratio = sustained_requests(&m) / one;
    assert!((0.75..1.33).contains(&ratio), "merged {} vs single {one} requests", sustained_requests(&m));
    drop(lab);

    let missing = run_xregion(&["merge", &out("s0"), &out("s1"), &out("s2"), "--out", &out("m2")], &[], RUN_LIMIT);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("shard 3 of 4 is missing"), "{}", text(&missing));
    let twice =
        run_xregion(&["merge", &out("s0"), &out("s0"), &out("s1"), &out("s2"), "--out", &out("m3")], &[], RUN_LIMIT);
    assert_eq!(twice.status.code(), Some(2), "{}", text(&twice));
    assert!(text(&twice).contains("are both shard 0 of 4"), "{}", text(&twice));
    let embedded = run_xregion(&["run", "--shard", "0/2", "--out", &out("embedded")], &[], RUN_LIMIT);
    assert_eq!(embedded.status.code(), Some(2), "{}", text(&embedded));
    assert!(text(&embedded).contains("xregion lab up"), "{}", text(&embedded));
    // Journeys as the load's script do not shard yet: refused before anything runs, saying so.
    let journeys = dir.path().join("journeys.toml");
    let body = std::fs::read_to_string(&config).expect("config");
    let body = body.replacen("[checks.load]\n", "[checks.load]\njourneys = [\"register-and-order\"]\n", 1);
    std::fs::write(&journeys, body).expect("config");
    let args = ["run", "--config", journeys.to_str().unwrap(), "--check", "performance.load", "--shard", "0/2"];
    let j = run_xregion(&[&args[..], &["--seed", "1", "--out", &out("journeys")]].concat(), &[], RUN_LIMIT);
    assert_eq!(j.status.code(), Some(2), "{}", text(&j));
    assert!(text(&j).contains("do not shard yet"), "{}", text(&j));
}
