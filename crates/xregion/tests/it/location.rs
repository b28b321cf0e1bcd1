//! Probes placed at locations (`xregion run --location NAME`): the geo-routing check on a deployment the user
//! describes judges what a run placed at a location reached without the location header, and `xregion merge`
//! judges every location a shard reached. The deployment is a lab from `xregion lab up` whose router places a
//! request without the header by its client network (`[lab.router] client_networks`), as geo-DNS places a client
//! by its address; each "location" is a loopback network, and `--source-address` puts a run in it.

use crate::common::{LabUp, TempDir, check, lab_lock, report, run_xregion, text};
use crate::deployment::describe;
use crate::run::RUN_LIMIT;

const GEO: &str = "cross-region.routing.geo";
const HEALTH: &str = "cross-region.routing.health";
const CAPACITY: &str = "cross-region.routing.capacity";

/// The lab: London's clients in 127.0.21.0/24, Seattle's in 127.0.22.0/24, anyone else at the default location
/// (chicago, nearest to us-east-1).
const LAB: &str =
    "[lab.router]\nclient_networks = { \"127.0.21.0/24\" = \"london\", \"127.0.22.0/24\" = \"seattle\" }\n";

/// The geo check's notes, joined.
fn notes(c: &serde_json::Value) -> String {
    c["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The locations of the geo check's table.
fn locations(c: &serde_json::Value) -> Vec<String> {
    let rows = c["tables"][0]["rows"].as_array().expect("a table");
    let l: std::collections::BTreeSet<String> = rows.iter().map(|r| r[1].as_str().unwrap().to_string()).collect();
    l.into_iter().collect()
}

/// Goal: a run placed at London judges London alone, from what its requests reached without the header (eu-west-1,
/// its nearest), and names the locations it could not judge; two located shards merge into a verdict on both
/// locations; a shard that claims Dublin but is not placed there (the router puts it at chicago, so us-east-1
/// serves it) fails the merged verdict, naming Dublin, which the header could not have caught. The health and
/// capacity checks of a London run drain and fill eu-west-1 without the header. `--location` on the embedded lab
/// and an unknown location are clear errors.
#[test]
fn located_runs_judge_what_their_locations_reached() {
    let _g = lab_lock();
    let dir = TempDir::new("location");
    let lab = LabUp::start(dir.path(), LAB, RUN_LIMIT);
    let config = dir.path().join("http.toml");
    std::fs::write(&config, describe(lab.dir(), dir.path())).expect("config");
    let cfg = config.to_str().unwrap().to_string();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |o: &str, extra: &[&str]| {
        let mut args = vec!["run", "--config", &cfg, "--check", GEO, "--out", o, "-q"];
        args.extend_from_slice(extra);
        run_xregion(&args, &[], RUN_LIMIT)
    };

    // One run at London.
    let o = run(&out("london"), &["--location", "london", "--source-address", "127.0.21.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = check(&report(std::path::Path::new(&out("london"))), GEO).clone();
    assert_eq!(c["verdict"], "pass", "{c}");
    assert_eq!(locations(&c), ["london"], "{c}");
    assert_eq!(c["metrics"]["share_pct.latency.london"], 100.0, "{c}");
    let n = notes(&c);
    assert!(n.contains("no location header") && n.contains("not judged") && n.contains("seattle"), "{n}");

    // The health and capacity checks at London drain and fill London's nearest region, eu-west-1, without the
    // header; a run that says London but sends from Seattle's network finds eu-west-1 serving none of its
    // requests. Had the header been sent, the router would have placed it at London and both would pass.
    let routed = |o: &str, source: &str| {
        let args = ["--check", HEALTH, "--check", CAPACITY, "--location", "london", "--source-address", source];
        let r = run(o, &args);
        (r, report(std::path::Path::new(o)))
    };
    let (r, rep) = routed(&out("london-drain"), "127.0.21.1");
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    for id in [HEALTH, CAPACITY] {
        let c = check(&rep, id);
        assert_eq!(c["verdict"], "pass", "{c}");
        assert!(notes(c).contains("from london (this run's location, no location header)"), "{c}");
    }
    let health = check(&rep, HEALTH);
    assert!(health["summary"].as_str().unwrap().starts_with("eu-west-1 got no new requests"), "{health}");
    assert_eq!(health["metrics"]["victim_share_before_pct"], 100.0, "{health}");
    let capacity = check(&rep, CAPACITY);
    assert_eq!(capacity["tables"][0]["title"], "Where london's requests went", "{capacity}");
    let served = |c: &serde_json::Value, region: &str| {
        let rows = c["tables"][0]["rows"].as_array().unwrap().clone();
        rows.iter().find(|r| r[0] == region).map_or(0, |r| r[1].as_str().unwrap().parse::<u64>().unwrap())
    };
    assert!(served(capacity, "eu-west-1") > 0 && capacity["metrics"]["overflow_pct"].as_f64().unwrap() > 0.0);
    let (r, rep) = routed(&out("seattle-drain"), "127.0.22.1");
    assert_eq!(r.status.code(), Some(1), "{}", text(&r));
    assert_eq!(check(&rep, GEO)["verdict"], "fail", "{rep}");
    let c = check(&rep, HEALTH);
    assert_eq!(c["verdict"], "error", "{c}");
    let summary = c["summary"].as_str().unwrap();
    assert!(summary.contains("eu-west-1 served none of the requests from london"), "{c}");
    assert!(summary.contains("may not be placed at london"), "{c}");
    let c = check(&rep, CAPACITY);
    assert_eq!(c["verdict"], "fail", "{c}");
    let summary = c["summary"].as_str().unwrap();
    assert!(summary.contains("eu-west-1, london's nearest region, served none"), "{c}");
    assert_eq!(served(c, "eu-west-1"), 0, "{c}");

    // Three located shards, merged: London twice (their requests add up) and Seattle, each at its nearest region.
    let shard = |o: &str, spec: &str, location: &str, source: Option<&str>| {
        let mut extra = vec!["--shard", spec, "--seed", "7", "--location", location];
        if let Some(s) = source {
            extra.extend(["--source-address", s]);
        }
        run(o, &extra)
    };
    for (o, spec, location, source) in [
        ("a0", "0/3", "london", Some("127.0.21.2")),
        ("a1", "1/3", "seattle", Some("127.0.22.2")),
        ("a2", "2/3", "london", Some("127.0.21.4")),
    ] {
        let r = shard(&out(o), spec, location, source);
        assert_eq!(r.status.code(), Some(0), "{o}: {}", text(&r));
        let c = check(&report(std::path::Path::new(&out(o))), GEO).clone();
        assert!(c["summary"].as_str().unwrap().contains("provisional"), "{c}");
    }
    let m = run_xregion(&["merge", &out("a0"), &out("a1"), &out("a2"), "--out", &out("a")], &[], RUN_LIMIT);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m));
    let c = check(&report(std::path::Path::new(&out("a"))), GEO).clone();
    assert_eq!(c["verdict"], "pass", "{c}");
    assert_eq!(locations(&c), ["london", "seattle"], "{c}");
    assert!(notes(&c).contains("located shards reached"), "{c}");
    assert_eq!(c["metrics"]["requests"], 1200.0, "3 shards x 2 records x 200: {c}");
    let rows = c["tables"][0]["rows"].as_array().unwrap();
    let london = rows.iter().find(|r| r[0] == "latency" && r[1] == "london").expect("a london row");
    assert_eq!(london[5], "400", "two shards at London add up: {c}");

    // Shard 0 not placed (it names locations by header), and a shard that says Dublin but sends from no Dublin
    // network: the router places it at chicago.
    let b0 = run(&out("b0"), &["--shard", "0/2", "--seed", "7"]);
    assert_eq!(b0.status.code(), Some(0), "b0: {}", text(&b0));
    let b1 = shard(&out("b1"), "1/2", "dublin", None);
    assert_eq!(b1.status.code(), Some(0), "b1: a provisional verdict sets no exit code: {}", text(&b1));
    let m = run_xregion(&["merge", &out("b0"), &out("b1"), "--out", &out("b")], &[], RUN_LIMIT);
    assert_eq!(m.status.code(), Some(1), "{}", text(&m));
    let c = check(&report(std::path::Path::new(&out("b"))), GEO).clone();
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(c["summary"].as_str().unwrap().contains("dublin"), "{c}");
    assert_eq!(c["metrics"]["share_pct.latency.dublin"], 0.0, "{c}");
    assert_eq!(locations(&c), ["dublin"], "shard 0's header-named locations are not judged: {c}");
    assert!(notes(&c).contains("shard 0 was not placed"), "{c}");

    // A located shard that cannot measure (its source address is not this machine's): no pass on the others.
    let c0 = shard(&out("c0"), "0/2", "london", Some("127.0.21.5"));
    assert_eq!(c0.status.code(), Some(0), "c0: {}", text(&c0));
    let c1 = shard(&out("c1"), "1/2", "seattle", Some("192.0.2.1"));
    assert_eq!(c1.status.code(), Some(0), "c1: {}", text(&c1));
    let m = run_xregion(&["merge", &out("c0"), &out("c1"), "--out", &out("c")], &[], RUN_LIMIT);
    assert_eq!(m.status.code(), Some(2), "{}", text(&m));
    let c = check(&report(std::path::Path::new(&out("c"))), GEO).clone();
    assert_eq!(c["verdict"], "error", "{c}");
    let summary = c["summary"].as_str().unwrap();
    assert!(summary.contains("seattle") && summary.contains("c1"), "{c}");

    // Clear errors.
    let e = run_xregion(&["run", "--check", GEO, "--location", "london", "--out", &out("e1")], &[], RUN_LIMIT);
    assert_eq!(e.status.code(), Some(2), "{}", text(&e));
    assert!(text(&e).contains("embedded lab"), "{}", text(&e));
    let e = run(&out("e2"), &["--location", "mars"]);
    assert_eq!(e.status.code(), Some(2), "{}", text(&e));
    assert!(text(&e).contains("mars") && text(&e).contains("london"), "{}", text(&e));
}
