//! The lab end to end: real node and WAN processes started from the xregion binary. Regions replicate, bad
//! requests get JSON errors, a region SIGKILLed in the middle of writes comes back without losing an
//! acknowledged write, and `lab up` / `status` / `down` leave no process behind.
//!
//! Every wait is bounded and waits on a condition (readiness, a value appearing), never on a fixed sleep; no
//! test asserts a timing.

use crate::common::{
    LabUp, TempDir, ZERO_DELAY_LAB, await_lab_up, bearer, exe, lab_client as client, lab_client_as, lab_lock,
    run_xregion, text,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use xregion_lab::{Lab, LabConfig};
use xregion_model::Version;
use xregion_model::wire::{ErrorBody, Record, ScanPage};

/// Longest any wait in these tests may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// Interval between polls of a condition.
const POLL: Duration = Duration::from_millis(10);

/// A lab config with no WAN delay, so that tests spend their time on behavior, not latency.
fn zero_delay_config() -> LabConfig {
    let mut cfg = LabConfig::default();
    cfg.wan.jitter_ms = 0.0;
    for v in cfg.wan.rtt_ms.values_mut() {
        *v = 0.0;
    }
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

async fn put(c: &reqwest::Client, endpoint: &str, key: &str, value: &str) -> Result<Record, String> {
    let resp = c
        .put(format!("{endpoint}/v1/kv/{key}"))
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    resp.json().await.map_err(|e| e.to_string())
}

/// Every record of a region, paging through the scan.
async fn scan_all(c: &reqwest::Client, endpoint: &str) -> Result<BTreeMap<String, (Option<String>, Version)>, String> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    for _page in 0..10_000 {
        let mut url = format!("{endpoint}/v1/kv?limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: ScanPage =
            c.get(url).send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        for r in page.records {
            out.insert(r.key, (r.value, r.version));
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Ok(out),
        }
    }
    Err("scan did not end".into())
}

/// Goal: a write in one region becomes visible in every other region with the same version, and bad requests
/// get 4xx answers whose body is a JSON ErrorBody. Method: a zero-delay lab; poll the readers with a deadline.
#[test]
fn lab_replicates_and_rejects_bad_requests() {
    let _g = lab_lock();
    let dir = TempDir::new("lab-replicate");
    runtime().block_on(async {
        let lab = Lab::start(&zero_delay_config(), dir.path(), Path::new(exe())).await.expect("lab starts");
        let regions = lab.regions();
        assert_eq!(regions.len(), 3);
        let c = client(dir.path());
        let written = put(&c, &regions[0].endpoint, "it/replicate/1", "hello").await.expect("write");
        for r in &regions[1..] {
            let deadline = Instant::now() + WAIT_LIMIT;
            loop {
                let resp = c.get(format!("{}/v1/kv/it/replicate/1", r.endpoint)).send().await.expect("read");
                if resp.status() == 200 {
                    let got: Record = resp.json().await.expect("record");
                    assert_eq!((got.value.as_deref(), &got.version), (Some("hello"), &written.version));
                    assert_eq!(got.region, r.name);
                    break;
                }
                assert_eq!(resp.status(), 404, "unexpected status while waiting");
                assert!(Instant::now() < deadline, "{} never saw the write", r.name);
                tokio::time::sleep(POLL).await;
            }
        }

        // A blackholed link loses bytes mid-stream; once it is lifted, the sender notices the missing acks,
        // redials and resends, so the write still arrives.
        let wan = lab.wan_admin_url().expect("wan admin url");
        let link = format!("{wan}/links/{}/{}", regions[0].name, regions[1].name);
        let r = c.put(&link).json(&serde_json::json!({"rule": "drop"})).send().await.expect("set drop");
        assert_eq!(r.status(), 200);
        put(&c, &regions[0].endpoint, "it/replicate/2", "through-a-blackhole").await.expect("write");
        // Wait until the blackhole has really eaten the batch before lifting it.
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let links: serde_json::Value =
                c.get(format!("{wan}/links")).send().await.expect("links").json().await.expect("json");
            let eaten = links.as_array().expect("links").iter().any(|l| {
                l["from"] == regions[0].name.as_str()
                    && l["to"] == regions[1].name.as_str()
                    && l["dropped_bytes"].as_u64() > Some(0)
            });
            if eaten {
                break;
            }
            assert!(Instant::now() < deadline, "the drop rule never dropped anything");
            tokio::time::sleep(POLL).await;
        }
        let r = c.put(&link).json(&serde_json::json!({"rule": "pass"})).send().await.expect("set pass");
        assert_eq!(r.status(), 200);
        let deadline = Instant::now() + WAIT_LIMIT;
        while c.get(format!("{}/v1/kv/it/replicate/2", regions[1].endpoint)).send().await.expect("read").status() != 200
        {
            assert!(Instant::now() < deadline, "the write never crossed the healed link");
            tokio::time::sleep(POLL).await;
        }

        let e = &regions[1].endpoint;
        let big = "x".repeat(xregion_model::wire::BODY_BYTES_MAX + 1);
        let cases = [
            (c.put(format!("{e}/v1/kv/bad%20key")).json(&serde_json::json!({"value": "v"})), 400, "invalid_key"),
            (c.put(format!("{e}/v1/kv/k")).json(&serde_json::json!({ "value": big })), 413, "payload_too_large"),
            (c.put(format!("{e}/v1/kv/k")).body("{nope"), 400, "invalid_body"),
            (c.get(format!("{e}/no/such/route")), 404, "not_found"),
            (c.get(format!("{e}/v1/kv/it/never-written")), 404, "not_found"),
            (c.post(format!("{e}/v1/kv/k")), 405, "method_not_allowed"),
            (c.get(format!("{e}/v1/kv/k")).bearer_auth("not-a-token"), 401, "unauthorized"),
            (
                c.put(format!("{e}/v1/kv/k")).headers(bearer(dir.path(), "reader")).body(r#"{"value":"v"}"#),
                403,
                "forbidden",
            ),
        ];
        for (req, status, code) in cases {
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status().as_u16(), status);
            let body: ErrorBody = resp.json().await.expect("JSON error body");
            assert_eq!(body.error, code, "{}", body.message);
        }
        let metrics = c.get(format!("{e}/metrics")).send().await.expect("metrics").text().await.expect("text");
        assert!(metrics.contains("xregion_http_requests_total"), "{metrics}");
        lab.shutdown().await.expect("clean shutdown");
    });
}

/// One acknowledged write: key -> (value, version).
type Acked = Arc<std::sync::Mutex<BTreeMap<String, (String, Version)>>>;

/// Goal: SIGKILL of a region while writes flow to it loses no acknowledged write, and afterwards every region
/// converges to the same data. Method: writers on every region (unique keys); kill one region mid-stream;
/// restart it from its data; stop the writers; scan every region until all agree, then check each acked write
/// is present with its acked version everywhere.
#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let _g = lab_lock();
    let dir = TempDir::new("lab-sigkill");
    runtime().block_on(async {
        let mut lab = Lab::start(&zero_delay_config(), dir.path(), Path::new(exe())).await.expect("lab starts");
        let regions = lab.regions();
        let victim = regions[1].name.clone();
        let c = client(dir.path());
        let acked: Acked = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let acked_count = Arc::new(AtomicU64::new(0));
        let failed_count = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for r in &regions {
            for w in 0..2 {
                let (c, acked, stop, ok, failed) =
                    (c.clone(), acked.clone(), stop.clone(), acked_count.clone(), failed_count.clone());
                let (name, endpoint) = (r.name.clone(), r.endpoint.clone());
                writers.push(tokio::spawn(async move {
                    // Bounded: at most this many writes per writer.
                    for i in 0..20_000u32 {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let key = format!("it/kill/{name}/{w}/{i}");
                        let value = format!("{name}-{w}-{i}");
                        match put(&c, &endpoint, &key, &value).await {
                            Ok(rec) => {
                                acked.lock().unwrap().insert(key, (value, rec.version));
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                // The region is down: back off a little instead of spinning.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }));
            }
        }
        let wait_acked = |n: u64| {
            let acked_count = acked_count.clone();
            async move {
                let deadline = Instant::now() + WAIT_LIMIT;
                while acked_count.load(Ordering::Relaxed) < n {
                    assert!(Instant::now() < deadline, "writers stalled below {n} acked writes");
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        wait_acked(300).await;
        lab.kill_region(&victim).await.expect("kill");
        let at_kill = acked_count.load(Ordering::Relaxed);
        wait_acked(at_kill + 200).await;
        lab.start_region(&victim).await.expect("restart");
        let at_restart = acked_count.load(Ordering::Relaxed);
        wait_acked(at_restart + 300).await;
        stop.store(true, Ordering::Release);
        for w in writers {
            w.await.expect("writer");
        }
        let acked = acked.lock().unwrap().clone();
        assert!(failed_count.load(Ordering::Relaxed) > 0, "the kill did not interrupt any write");

        // Converge: every region holds the same records, and all acked writes.
        let deadline = Instant::now() + WAIT_LIMIT;
        let views = loop {
            let mut views = Vec::new();
            for r in &regions {
                views.push(scan_all(&c, &r.endpoint).await.expect("scan"));
            }
            let all_equal = views.windows(2).all(|w| w[0] == w[1]);
            let complete = acked.keys().all(|k| views[0].contains_key(k));
            if all_equal && complete {
                break views;
            }
            assert!(Instant::now() < deadline, "regions did not converge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for (key, (value, version)) in &acked {
            let (got_value, got_version) = &views[0][key];
            assert_eq!((got_value.as_deref(), got_version), (Some(value.as_str()), version), "{key}");
        }
        lab.shutdown().await.expect("clean shutdown");
    });
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .is_some_and(|zombie| !zombie)
}

/// Goal: `lab up` as a process, `lab status`, the control API's kill/start, and `lab down` work, and down
/// leaves no process behind. Method: read `lab up`'s stdout until it reports the control URL (readiness), then
/// drive it with the other subcommands and check every recorded pid is gone.
#[test]
fn lab_up_status_down_leaves_no_process() {
    let _g = lab_lock();
    let dir = TempDir::new("lab-up");
    let lab_dir = dir.path().join("lab");
    let config = dir.path().join("xregion.toml");
    std::fs::write(
        &config,
        "[lab]\n[lab.wan]\njitter_ms = 0.0\n[lab.wan.rtt_ms]\n\"us-east-1/us-west-2\" = 0\n\
         \"us-east-1/eu-west-1\" = 0\n\"us-west-2/eu-west-1\" = 0\n",
    )
    .expect("config");
    let mut up = Command::new(exe())
        .args(["lab", "up", "--config", config.to_str().unwrap(), "--dir", lab_dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lab up");
    let stdout = up.stdout.take().expect("stdout");
    if let Err(e) = await_lab_up(stdout, WAIT_LIMIT) {
        let _ = up.kill();
        panic!("{e}");
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab_dir.join("lab.json")).expect("lab.json")).expect("lab.json is JSON");
    let mut pids: Vec<u32> =
        record["regions"].as_array().expect("regions").iter().map(|r| r["pid"].as_u64().expect("pid") as u32).collect();
    pids.push(record["wan_pid"].as_u64().expect("wan pid") as u32);
    pids.push(record["router_pid"].as_u64().expect("router pid") as u32);
    assert!(pids.iter().all(|p| pid_alive(*p)));

    let status =
        Command::new(exe()).args(["lab", "status", "--dir", lab_dir.to_str().unwrap()]).output().expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}{}", String::from_utf8_lossy(&status.stderr));
    for name in ["us-east-1", "us-west-2", "eu-west-1"] {
        assert!(text.contains(name), "{text}");
    }

    // The control API can kill and restart a region.
    let control = record["control_url"].as_str().expect("control url").to_string();
    runtime().block_on(async {
        let c = client(&lab_dir);
        let r = c.post(format!("{control}/regions/us-west-2/kill")).send().await.expect("kill");
        assert_eq!(r.status(), 200);
        let r = c.post(format!("{control}/regions/us-west-2/start")).send().await.expect("start");
        assert_eq!(r.status(), 200);
        let after: serde_json::Value = r.json().await.expect("record");
        let new_pid = after["regions"][1]["pid"].as_u64().expect("new pid") as u32;
        pids.push(new_pid);
        let r = c.post(format!("{control}/regions/nowhere/kill")).send().await.expect("kill unknown");
        assert_eq!(r.status(), 404);
    });

    let down = Command::new(exe()).args(["lab", "down", "--dir", lab_dir.to_str().unwrap()]).output().expect("down");
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let deadline = Instant::now() + WAIT_LIMIT;
    let up_status = loop {
        if let Some(s) = up.try_wait().expect("wait lab up") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = up.kill();
            panic!("lab up did not exit after lab down");
        }
        std::thread::sleep(POLL);
    };
    assert!(up_status.success(), "lab up exited with {up_status}");
    let left: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(!lab_dir.join("lab.json").exists(), "lab.json was not removed");

    // A stopped lab is reported, not waited on.
    let status =
        Command::new(exe()).args(["lab", "status", "--dir", lab_dir.to_str().unwrap()]).output().expect("status");
    assert!(!status.status.success());
}

/// The region named `name` in a status's `regions`.
fn region_of<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["regions"].as_array().expect("regions").iter().find(|r| r["name"] == name).expect("region in status")
}

/// `xregion ARGS…` whose stdout is JSON, with its exit code.
fn json_of(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let o = run_xregion(args, &[], Duration::from_secs(30));
    let json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", text(&o)));
    (o.status.code(), json)
}

/// Whether the router's status says `region` gets traffic.
async fn router_healthy(c: &reqwest::Client, router_status: &str, region: &str) -> bool {
    let status: serde_json::Value =
        c.get(router_status).send().await.expect("router status").json().await.expect("router status is JSON");
    region_of(&status, region)["healthy"].as_bool().expect("healthy is a bool")
}

/// Goal (issue #12 item 3, a lab that watches its processes): a region's node killed with `kill -9` from outside
/// the lab is noticed by the supervisor; `xregion status` and `xregion lab status` (text and JSON) show it
/// `down (killed by signal 9 at …)` with no pid and no connection error; the router ejects it; `xregion restore`
/// restarts it from its store, and once it answers, every write acknowledged before, during and after the outage
/// is readable with its value in every region. Method: `lab up` with no WAN delay; one writer per region with the
/// writer token (DIR/tokens.json) and the lab's CA, recording each acknowledged key and value; SIGKILL of
/// us-west-2's pid from lab.json; bounded polls of both status commands and of the router's status; restore;
/// more writes; then scans of every region until no acknowledged write is missing. One deadline (60 s) bounds
/// every wait.
#[test]
fn kill_9_is_reported_down_and_restore_restarts_the_region() {
    let _g = lab_lock();
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmp = TempDir::new("lab-kill9");
    let lab = LabUp::start(tmp.path(), ZERO_DELAY_LAB, WAIT_LIMIT);
    let dir = lab.dir_arg();
    let victim = "us-west-2";
    let record = lab.record();
    let regions: Vec<(String, String)> = record["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| (r["name"].as_str().expect("name").to_string(), r["endpoint"].as_str().expect("endpoint").to_string()))
        .collect();
    let old_pid = region_of(&record, victim)["pid"].as_u64().expect("the victim's pid") as u32;
    let router_status = record["traffic"]["router_status"].as_str().expect("the router's status URL").to_string();
    let writer = lab_client_as(lab.dir(), "writer");
    let admin = client(lab.dir());

    let rt = runtime();
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for (name, endpoint) in &regions {
        let (c, acked, stop, ok) = (writer.clone(), acked.clone(), stop.clone(), acked_count.clone());
        let (name, endpoint) = (name.clone(), endpoint.clone());
        writers.push(rt.spawn(async move {
            // Bounded: at most this many writes per writer.
            for i in 0..20_000u32 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let (key, value) = (format!("it/kill9/{name}/{i}"), format!("{name}-{i}"));
                match put(&c, &endpoint, &key, &value).await {
                    Ok(rec) => {
                        acked.lock().unwrap().insert(key, (value, rec.version));
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    // The region is down: back off a little instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    let wait_acked = |n: u64, when: &str| {
        while acked_count.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "writers stalled below {n} acknowledged writes {when}");
            std::thread::sleep(POLL);
        }
    };
    wait_acked(300, "before the kill");
    let victim_prefix = format!("it/kill9/{victim}/");
    let victim_before = acked.lock().unwrap().keys().filter(|k| k.starts_with(&victim_prefix)).count();
    assert!(victim_before > 0, "no write to {victim} was acknowledged before the kill");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill -9 the victim's node");
    let expected_health = "down (killed by signal 9 at ";
    let status = loop {
        let (code, status) = json_of(&["status", "--json", "--dir", dir]);
        assert_eq!(code, Some(0), "{status}");
        if region_of(&status, victim)["health"].as_str().is_some_and(|h| h.starts_with(expected_health)) {
            break status;
        }
        assert!(Instant::now() < deadline, "xregion status never showed {victim} killed: {status}");
        std::thread::sleep(POLL);
    };
    let r = region_of(&status, victim);
    assert!(r["pid"].is_null() && r["fault"].is_null(), "{status}");
    assert!(!pid_alive(old_pid), "{old_pid} still runs");

    // `lab status` reads lab.json, which the supervisor rewrites when a child exits.
    let (code, status) = json_of(&["lab", "status", "--json", "--dir", dir]);
    assert_eq!(code, Some(1), "a down region is not a healthy lab: {status}");
    let r = region_of(&status, victim);
    assert!(r["health"].as_str().is_some_and(|h| h.starts_with(expected_health)), "{status}");
    assert_eq!((&r["pid"], &r["exit"]["how"]), (&serde_json::Value::Null, &serde_json::json!("killed by signal 9")));
    let o = run_xregion(&["lab", "status", "--dir", dir], &[], Duration::from_secs(30));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out.lines().find(|l| l.contains(victim)).unwrap_or_else(|| panic!("no {victim} line: {}", text(&o)));
    assert!(line.contains("pid -") && line.contains(expected_health), "{line}");
    for raw in ["os error", "cannot connect", "Connection refused", &old_pid.to_string()] {
        assert!(!out.contains(raw), "lab status shows {raw:?}: {out}");
    }

    // The router's health checks see the outage: the node's port is closed, so it ejects the region.
    rt.block_on(async {
        while router_healthy(&admin, &router_status, victim).await {
            assert!(Instant::now() < deadline, "the router never ejected {victim}");
            tokio::time::sleep(POLL).await;
        }
    });
    let during = acked_count.load(Ordering::Relaxed);
    wait_acked(during + 100, "while the victim is down");

    let o = run_xregion(&["restore", victim, "--dir", dir], &[], Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{victim}: restored at")) && out.contains("(health ok)"), "{}", text(&o));
    let (_, status) = json_of(&["status", "--json", "--dir", dir]);
    let r = region_of(&status, victim);
    assert_eq!(r["health"], "ok", "{status}");
    let new_pid = r["pid"].as_u64().expect("the restored region's pid") as u32;
    assert!(new_pid != old_pid && pid_alive(new_pid), "{status}");
    let (code, status) = json_of(&["lab", "status", "--json", "--dir", dir]);
    assert_eq!(code, Some(0), "every region is healthy again: {status}");
    assert!(region_of(&status, victim)["exit"].is_null(), "{status}");
    rt.block_on(async {
        while !router_healthy(&admin, &router_status, victim).await {
            assert!(Instant::now() < deadline, "the router never took {victim} back");
            tokio::time::sleep(POLL).await;
        }
    });
    let after = acked_count.load(Ordering::Relaxed);
    wait_acked(after + 300, "after the restore");
    stop.store(true, Ordering::Release);
    rt.block_on(async {
        for w in writers {
            w.await.expect("writer");
        }
    });
    let acked = acked.lock().unwrap().clone();
    let victim_after = acked.keys().filter(|k| k.starts_with(&victim_prefix)).count();
    assert!(victim_after > victim_before, "no write to {victim} was acknowledged after the restore");

    // Every acknowledged write, with its value, in every region, once replication has caught up (bounded).
    let missing = rt.block_on(async {
        loop {
            let mut missing = BTreeMap::new();
            for (name, endpoint) in &regions {
                let view = scan_all(&admin, endpoint).await.expect("scan");
                let gone: Vec<&String> = acked
                    .iter()
                    .filter(|(k, (v, _))| view.get(*k).and_then(|(got, _)| got.as_ref()) != Some(v))
                    .map(|(k, _)| k)
                    .collect();
                if !gone.is_empty() {
                    missing.insert(name.clone(), (gone.len(), gone.into_iter().take(5).cloned().collect::<Vec<_>>()));
                }
            }
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(missing.is_empty(), "acknowledged writes missing of {} (count, first keys): {missing:?}", acked.len());
    eprintln!(
        "kill -9 test: {} acknowledged writes ({victim_before} to {victim} before the kill, {victim_after} in all), \
         0 missing in {} regions",
        acked.len(),
        regions.len()
    );
}

/// Goal: `xregion restore` never prints "restored" for a region that does not come back: when the crashed
/// region's node cannot start, the command fails with one sentence naming the region and its log file, and the
/// region stays reported down with how it crashed. Method: `lab up`; `kill -9` of us-west-2's node; its store file
/// overwritten with bytes that are not a redb database; `xregion restore us-west-2`.
#[test]
fn restore_of_a_region_that_cannot_start_names_it_and_its_log() {
    let _g = lab_lock();
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmp = TempDir::new("lab-kill9-broken");
    let lab = LabUp::start(tmp.path(), ZERO_DELAY_LAB, WAIT_LIMIT);
    let dir = lab.dir_arg();
    let victim = "us-west-2";
    let old_pid = region_of(&lab.record(), victim)["pid"].as_u64().expect("the victim's pid") as u32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill -9 the victim's node");
    let crashed = |s: &serde_json::Value| {
        region_of(s, victim)["health"].as_str().is_some_and(|h| h.starts_with("down (killed by signal 9 at "))
    };
    loop {
        let (_, status) = json_of(&["status", "--json", "--dir", dir]);
        if crashed(&status) {
            break;
        }
        assert!(Instant::now() < deadline, "xregion status never showed {victim} killed: {status}");
        std::thread::sleep(POLL);
    }
    std::fs::write(lab.dir().join(victim).join("store.redb"), b"not a redb database").expect("break the store");

    let o = run_xregion(&["restore", victim, "--dir", dir], &[], Duration::from_secs(60));
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("restored"), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let log = lab.dir().join(victim).join("node.log");
    assert!(
        err.contains(&format!("region {victim} did not become ready")) && err.contains(&log.display().to_string()),
        "{}",
        text(&o)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    let (_, status) = json_of(&["status", "--json", "--dir", dir]);
    assert!(crashed(&status) && region_of(&status, victim)["pid"].is_null(), "{status}");
}
