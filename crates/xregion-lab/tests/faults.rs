//! A real lab behind its control server: a `complete` fault and its restore, and a `network` fault restored by
//! its duration.
//!
//! The lab's processes are started from the xregion binary, which this crate cannot build (it would be a
//! dependency cycle). `cargo test --workspace` builds it before running any test, so the test finds it next to its
//! own target directory (or at `XREGION_BIN`). When it is missing (`cargo test -p xregion-lab` alone), the test
//! says so and skips, unless `XREGION_REQUIRE_LAB_BIN=1` (set by CI), which makes a missing binary a failure.
//!
//! The lab is the hardened one: its control API and regions speak HTTPS with the lab's CA and want the admin
//! token (the control API refuses others with 401/403); the WAN's loopback admin API is plain HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xregion_lab::dir::pid_alive;
use xregion_lab::http_client::Client;
use xregion_lab::{ControlServer, Lab, LabConfig};
use xregion_model::fault::{FaultStatus, RegionFaultStatus};

/// Longest any wait of this test may take.
const WAIT: Duration = Duration::from_secs(20);

/// The lab's own client (its CA, the admin token), set once the lab has started.
static LAB_CLIENT: OnceLock<Client> = OnceLock::new();

/// The xregion binary, or `None` (after saying why) when it is not built and CI does not require it.
fn exe() -> Option<PathBuf> {
    let exe = match std::env::var_os("XREGION_BIN") {
        Some(p) => PathBuf::from(p),
        // target/<profile>/deps/faults-<hash> -> target/<profile>/xregion
        None => {
            let me = std::env::current_exe().expect("current exe");
            me.parent().and_then(|d| d.parent()).expect("target dir").join("xregion")
        }
    };
    if exe.exists() {
        return Some(exe);
    }
    let why = format!("{} is missing: build it first (cargo build --release -p xregion)", exe.display());
    assert!(std::env::var_os("XREGION_REQUIRE_LAB_BIN").is_none_or(|v| v != "1"), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// One HTTP/1.1 exchange with `Connection: close`; returns status and body. `https` URLs go through the lab's
/// client (TLS with the lab's CA and the admin token; `localhost` is dialled on 127.0.0.1 and verified by name),
/// `http` ones (the WAN's admin API) are plain. `token` overrides the admin token (`Some(None)`: no token).
fn http_as(token: Option<Option<&str>>, method: &str, url: &str, body: &str) -> (u16, String) {
    let (scheme, rest) = url.split_once("://").expect("absolute url");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let (name, port) = host.rsplit_once(':').expect("host:port");
    let (addr, name): (SocketAddr, Option<&str>) = match name {
        "localhost" => (SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap())), Some("localhost")),
        _ => (host.parse().expect("ip:port"), None),
    };
    let client = match (scheme, token) {
        ("http", _) => Client::plain(),
        ("https", None) => LAB_CLIENT.get().expect("lab client").clone(),
        ("https", Some(token)) => {
            let pki = xregion_lab::pki::Pki::load(&lab_dir()).unwrap();
            Client::tls(pki.client_config().unwrap(), token)
        }
        _ => panic!("unexpected scheme in {url}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = (!body.is_empty()).then_some(body.as_bytes());
    let (code, answer) =
        rt.block_on(client.request_named(method, addr, name, &path, body, WAIT)).unwrap_or_else(|e| panic!("{e}"));
    (code, String::from_utf8_lossy(&answer).into_owned())
}

/// `http_as` with the admin token.
fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    http_as(None, method, url, body)
}

fn lab_dir() -> PathBuf {
    std::env::temp_dir().join(format!("xregion-lab-faults-{}", std::process::id()))
}

/// `GET /links` of the WAN: `(from, to, fault rule name)`.
fn links(wan: &str) -> Vec<(String, String, String)> {
    let (code, body) = http("GET", &format!("{wan}/links"), "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("from"), s("to"), l["fault"]["rule"].as_str().unwrap().to_string())
        })
        .collect()
}

fn faults(control: &str) -> FaultStatus {
    let (code, body) = http("GET", &format!("{control}/faults"), "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `cond` every 50 ms until it holds, failing with `what` after `WAIT`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} did not happen within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Goal: `complete` kills the node and refuses its links, and restore brings it back healthy on its endpoint
/// with its links passing; a `network` fault with `duration_ms` drops the chosen links and is restored by itself.
/// Method: one lab with a control server; every wait is readiness-driven and bounded; no timing assertions.
#[test]
fn complete_and_timed_network_faults() {
    let Some(exe) = exe() else { return };
    let dir = lab_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt.block_on(async {
        let lab = Lab::start(&LabConfig::default(), &dir, &exe).await.expect("lab starts");
        ControlServer::start(lab).await.expect("control server starts")
    });
    LAB_CLIENT.set(Client::for_lab(&dir).expect("the lab's client")).unwrap();
    let control = server.url().to_string();
    let record = server.record();
    assert!(control.starts_with("https://localhost:"), "{control}");
    assert_eq!(record.ca_file, dir.join("pki").join("ca.pem"));
    assert_eq!(record.tokens_file, dir.join("tokens.json"));
    assert!(record.regions.iter().all(|r| r.endpoint.starts_with("https://")), "{:?}", record.regions);

    // The control API needs the admin token.
    let tokens = xregion_lab::auth::Tokens::load(&dir).unwrap();
    assert_eq!(http_as(Some(None), "GET", &format!("{control}/faults"), "").0, 401);
    assert_eq!(http_as(Some(tokens.token_of("reader")), "GET", &format!("{control}/faults"), "").0, 403);
    // Regions answer over TLS: /healthz is public.
    let (code, body) = http_as(Some(None), "GET", &format!("{}/healthz", record.regions[0].endpoint), "");
    assert_eq!(code, 200, "{body}");
    let wan = record.wan_admin_url.clone().expect("wan admin url");
    assert!(dir.join("lab.json").exists());
    let (a, b) = (record.regions[0].name.clone(), record.regions[1].name.clone());
    let old_pid = record.regions[0].pid.expect("a runs");

    // Errors are JSON with the documented codes.
    let (code, _) = http("POST", &format!("{control}/regions/nowhere/fail"), r#"{"kind":"complete"}"#);
    assert_eq!(code, 404);
    let (code, _) = http("POST", &format!("{control}/regions/{a}/fail"), r#"{"kind":"latency"}"#);
    assert_eq!(code, 400, "a latency fault needs extra_delay_ms");

    // complete: pid gone, every link of a refused, a second fault refused with 409.
    let (code, body) = http("POST", &format!("{control}/regions/{a}/fail"), r#"{"kind":"complete"}"#);
    assert_eq!(code, 200, "{body}");
    wait_until("the killed node exits", || !pid_alive(old_pid));
    let status = faults(&control);
    assert_eq!((status.regions[0].pid, status.regions[0].health.as_str()), (None, "down"));
    for (from, to, rule) in links(&wan) {
        let touches_a = from == a || to == a;
        assert_eq!(rule, if touches_a { "refuse" } else { "pass" }, "{from}->{to}");
    }
    let (code, _) = http("POST", &format!("{control}/regions/{a}/fail"), r#"{"kind":"partial"}"#);
    assert_eq!(code, 409);

    // restore: running, healthy, links pass; restoring again changes nothing.
    for _ in 0..2 {
        let (code, body) = http("POST", &format!("{control}/regions/{a}/restore"), "");
        assert_eq!(code, 200, "{body}");
        let r: RegionFaultStatus = serde_json::from_str(&body).unwrap();
        assert!(r.pid.is_some_and(pid_alive), "{r:?}");
        assert_eq!(r.fault, None);
    }
    wait_until("the restored region is healthy", || faults(&control).regions[0].health == "ok");
    assert!(links(&wan).iter().all(|(_, _, rule)| rule == "pass"));

    // network, outbound from b, restored by its duration.
    let spec = r#"{"kind":"network","direction":"outbound","duration_ms":1500}"#;
    let (code, body) = http("POST", &format!("{control}/regions/{b}/fail"), spec);
    assert_eq!(code, 200, "{body}");
    let during = links(&wan);
    // Links read while the fault is still in force (checked after reading them) show it; a machine slow enough
    // to outlast the duration checks only the restore below.
    if faults(&control).regions[1].fault.is_some() {
        for (from, to, rule) in during {
            assert_eq!(rule, if from == b { "drop" } else { "pass" }, "{from}->{to}");
        }
    }
    wait_until("the network fault is restored by its duration", || {
        faults(&control).regions[1].fault.is_none() && links(&wan).iter().all(|(_, _, r)| r == "pass")
    });

    rt.block_on(server.shutdown()).expect("clean shutdown");
    assert!(!dir.join("lab.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
