//! Global routing and CDN edges end to end: a real lab with its router process, driven over HTTP only, as the
//! routing and CDN checks will drive it. The records pick the right regions, the weighted split follows the
//! weights, a region whose health check fails stops getting traffic, a full region overflows to the next
//! nearest, a killed region is skipped and picked up again once restarted, and the CDN caches (or, with the
//! `cdn_never_caches` defect, never does). The lab features the performance checks measure with work too:
//! region-to-region round trips over the WAN links, the router's `X-Route-To` override, and store statistics.
//!
//! Every wait is bounded and waits on a condition (`/router/status`), never on a fixed sleep; no test asserts
//! a timing. Counts that depend on concurrency are asserted only where the margin is wide.

use crate::common::{TempDir, exe, lab_client, lab_lock};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use xregion_lab::{Lab, LabConfig, TrafficInfo};
use xregion_model::wire::{PeersRtt, StoreStats};

/// Longest any wait in these tests may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// Interval between polls of a condition.
const POLL: Duration = Duration::from_millis(20);

/// A lab with no WAN delay between regions and fast health checks, so that tests spend their time on behavior.
fn config() -> LabConfig {
    let mut cfg = LabConfig::default();
    cfg.wan.jitter_ms = 0.0;
    for v in cfg.wan.rtt_ms.values_mut() {
        *v = 0.0;
    }
    cfg.router.health_interval_ms = 50;
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Sends `GET url` from `location`; returns the status, `X-Served-By` and the response.
async fn get_from(c: &reqwest::Client, url: &str, location: Option<&str>) -> (u16, String, reqwest::Response) {
    let mut req = c.get(url);
    if let Some(l) = location {
        req = req.header("X-Client-Location", l);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let served = resp.headers().get("x-served-by").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (resp.status().as_u16(), served, resp)
}

/// Which regions served `n` requests from `location` to `url`, `concurrency` at a time.
async fn served_counts(
    c: &reqwest::Client,
    url: &str,
    location: &str,
    n: usize,
    concurrency: usize,
) -> BTreeMap<String, usize> {
    use futures::StreamExt;
    let results: Vec<(u16, String)> = futures::stream::iter(0..n)
        .map(|_| async {
            let (s, by, _) = get_from(c, url, Some(location)).await;
            (s, by)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for (status, by) in results {
        assert_eq!(status, 200, "GET {url} from {location} failed (served by {by:?})");
        *counts.entry(by).or_insert(0) += 1;
    }
    counts
}

async fn router_status(c: &reqwest::Client, t: &TrafficInfo) -> serde_json::Value {
    c.get(&t.router_status).send().await.expect("router status").json().await.expect("status JSON")
}

/// Waits until the router reports `region` as `healthy`.
async fn wait_health(c: &reqwest::Client, t: &TrafficInfo, region: &str, healthy: bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let s = router_status(c, t).await;
        let r = s["regions"].as_array().expect("regions").iter().find(|r| r["name"] == region).expect("region");
        if r["healthy"] == healthy {
            return;
        }
        assert!(Instant::now() < deadline, "the router never saw {region} healthy={healthy}: {s}");
        tokio::time::sleep(POLL).await;
    }
}

async fn set_node_health(c: &reqwest::Client, lab: &Lab, region: &str, status: &str) {
    let endpoint = lab.regions().into_iter().find(|r| r.name == region).expect("region").endpoint;
    let r = c
        .put(format!("{endpoint}/lab/health"))
        .json(&serde_json::json!({ "status": status }))
        .send()
        .await
        .expect("PUT /lab/health");
    assert_eq!(r.status(), 200);
    let (s, _, _) = get_from(c, &format!("{endpoint}/healthz"), None).await;
    assert_eq!(s, if status == "ok" { 200 } else { 503 });
}

/// Goal: the routing records, the weighted split, health, capacity overflow, passive ejection with a
/// restarted region coming back, and CDN Miss then Hit, on one lab. Method: a zero-delay lab with weights
/// 6:3:1 and a capacity of 4 for eu-west-1; everything observed through `X-Served-By`, `X-Cache` and
/// `/router/status`.
#[test]
fn routing_records_health_capacity_and_cdn() {
    let _g = lab_lock();
    let dir = TempDir::new("traffic-routing");
    let mut cfg = config();
    cfg.router.weights =
        [("us-east-1".to_string(), 6), ("us-west-2".to_string(), 3), ("eu-west-1".to_string(), 1)].into();
    cfg.router.capacity = [("eu-west-1".to_string(), 4)].into();
    cfg.router.failover_order = vec!["us-west-2".into(), "us-east-1".into(), "eu-west-1".into()];
    runtime().block_on(async {
        let mut lab = Lab::start(&cfg, dir.path(), Path::new(exe())).await.expect("lab starts");
        let t = lab.traffic().expect("the lab has a router");
        assert_eq!(t.nearest["london"], "eu-west-1");
        assert_eq!(t.nearest["seattle"], "us-west-2");
        let c = lab_client(dir.path());
        let latency = &t.records["latency"];

        // Records: latency and geolocation by location, failover by order, default and unknown locations.
        for (record, location, want) in [
            ("latency", "london", "eu-west-1"),
            ("latency", "seattle", "us-west-2"),
            ("latency", "new-york", "us-east-1"),
            ("geolocation", "dublin", "eu-west-1"),
            ("failover", "london", "us-west-2"),
        ] {
            let counts = served_counts(&c, &format!("{}/healthz", t.records[record]), location, 20, 4).await;
            assert_eq!(counts, BTreeMap::from([(want.to_string(), 20)]), "{record} from {location}");
        }
        let (s, by, resp) = get_from(&c, &format!("{latency}/healthz"), None).await;
        assert_eq!((s, by.as_str()), (200, t.nearest[&t.default_location].as_str()), "no header: default location");
        assert_eq!(resp.headers()["x-route-record"], "latency");
        let (s, _, resp) = get_from(&c, &format!("{latency}/healthz"), Some("atlantis")).await;
        let body: serde_json::Value = resp.json().await.expect("JSON error");
        assert_eq!((s, body["error"].as_str()), (400, Some("unknown_location")));
        assert!(body["message"].as_str().unwrap_or("").contains("london"), "{body}");

        // Weighted: 1000 requests follow 6:3:1 within 6 percentage points (about 4 standard deviations).
        let counts = served_counts(&c, &format!("{}/healthz", t.records["weighted"]), "london", 1000, 16).await;
        for (region, want) in [("us-east-1", 0.6), ("us-west-2", 0.3), ("eu-west-1", 0.1)] {
            let got = counts.get(region).copied().unwrap_or(0) as f64 / 1000.0;
            assert!((got - want).abs() < 0.06, "weighted split {counts:?}");
        }

        // Capacity: 12 concurrent slow requests from london; eu-west-1 holds 4, the rest overflow to the next
        // nearest (us-east-1), never to us-west-2, and none fails.
        let counts = served_counts(&c, &format!("{latency}/v1/catalog/cap?work_ms=1000"), "london", 12, 12).await;
        assert!(counts.get("us-east-1").copied().unwrap_or(0) >= 1, "nothing overflowed: {counts:?}");
        assert!(!counts.contains_key("us-west-2"), "overflow skipped the next nearest: {counts:?}");
        let s = router_status(&c, &t).await;
        assert!(s["regions"][0]["overflow_in"].as_u64().unwrap_or(0) >= 1, "{s}");

        // Health: a failing health check takes eu-west-1 out; london goes to us-east-1; then it comes back.
        set_node_health(&c, &lab, "eu-west-1", "down").await;
        wait_health(&c, &t, "eu-west-1", false).await;
        let counts = served_counts(&c, &format!("{latency}/healthz"), "london", 50, 8).await;
        assert_eq!(counts, BTreeMap::from([("us-east-1".to_string(), 50)]));
        set_node_health(&c, &lab, "eu-west-1", "ok").await;
        wait_health(&c, &t, "eu-west-1", true).await;
        let (_, by, _) = get_from(&c, &format!("{latency}/healthz"), Some("london")).await;
        assert_eq!(by, "eu-west-1");

        // A killed region: seattle's requests still succeed (a failed connection is retried at the next
        // region, and ejects the region), and the restarted region is picked up again by the health checks.
        lab.kill_region("us-west-2").await.expect("kill");
        let counts = served_counts(&c, &format!("{latency}/healthz"), "seattle", 20, 4).await;
        assert!(!counts.contains_key("us-west-2"), "{counts:?}");
        wait_health(&c, &t, "us-west-2", false).await;
        lab.start_region("us-west-2").await.expect("restart");
        wait_health(&c, &t, "us-west-2", true).await;
        let (_, by, _) = get_from(&c, &format!("{latency}/healthz"), Some("seattle")).await;
        assert_eq!(by, "us-west-2");

        // CDN: the first GET is a miss at london's edge, the second a hit with an Age; writes pass through.
        let item = format!("{}/v1/catalog/widget-1", t.cdn);
        let (s, by, resp) = get_from(&c, &item, Some("london")).await;
        assert_eq!((s, by.as_str(), resp.headers()["x-cache"].to_str().unwrap()), (200, "eu-west-1", "Miss"));
        let etag = resp.headers()["etag"].to_str().unwrap().to_string();
        let (s, by, resp) = get_from(&c, &item, Some("london")).await;
        assert_eq!((s, by.as_str(), resp.headers()["x-cache"].to_str().unwrap()), (200, "eu-west-1", "Hit"));
        let age: u64 = resp.headers()["age"].to_str().unwrap().parse().expect("Age is a number");
        assert!(age <= 60, "age {age} beyond max-age");
        let product: serde_json::Value = resp.json().await.expect("product JSON");
        assert_eq!(product["item"], "widget-1");
        let r = c.get(&item).header("X-Client-Location", "london").header("If-None-Match", &etag).send().await;
        assert_eq!(r.expect("conditional GET").status(), 304);
        let r = c.put(format!("{}/v1/kv/cdn/pass", t.cdn)).json(&serde_json::json!({"value": "x"})).send().await;
        let r = r.expect("PUT through the CDN");
        assert_eq!((r.status().as_u16(), r.headers()["x-cache"].to_str().unwrap()), (200, "Pass"));
        let s = router_status(&c, &t).await;
        let edge = s["edges"].as_array().unwrap().iter().find(|e| e["region"] == "eu-west-1").unwrap().clone();
        assert!(edge["hits"].as_u64().unwrap() >= 2 && edge["misses"] == 1, "{edge}");
        lab.shutdown().await.expect("clean shutdown");
    });
}

/// Goal: `cdn_never_caches` makes the hit-rate check fail: the edge never stores, so every GET is a miss.
#[test]
fn cdn_never_caches_never_hits() {
    let _g = lab_lock();
    let dir = TempDir::new("traffic-never-caches");
    let mut cfg = config();
    cfg.defects.cdn_never_caches = true;
    runtime().block_on(async {
        let lab = Lab::start(&cfg, dir.path(), Path::new(exe())).await.expect("lab starts");
        let t = lab.traffic().expect("router");
        let c = lab_client(dir.path());
        for _ in 0..10 {
            let (s, _, resp) = get_from(&c, &format!("{}/v1/catalog/same-item", t.cdn), Some("new-york")).await;
            assert_eq!((s, resp.headers()["x-cache"].to_str().unwrap()), (200, "Miss"));
        }
        lab.shutdown().await.expect("clean shutdown");
    });
}

/// Goal: the health and capacity defects make their checks fail: under `router_ignores_health` a region the
/// router sees as down still gets traffic, and under `router_ignores_capacity` a full region never overflows.
/// Method: eu-west-1 with a capacity of 2 and a failing health check; london's requests all still land there.
#[test]
fn health_and_capacity_defects_route_wrongly() {
    let _g = lab_lock();
    let dir = TempDir::new("traffic-defects");
    let mut cfg = config();
    cfg.defects.router_ignores_health = true;
    cfg.defects.router_ignores_capacity = true;
    cfg.router.capacity = [("eu-west-1".to_string(), 2)].into();
    runtime().block_on(async {
        let lab = Lab::start(&cfg, dir.path(), Path::new(exe())).await.expect("lab starts");
        let t = lab.traffic().expect("router");
        let c = lab_client(dir.path());
        let latency = &t.records["latency"];
        let counts = served_counts(&c, &format!("{latency}/v1/catalog/cap?work_ms=300"), "london", 8, 8).await;
        assert_eq!(counts, BTreeMap::from([("eu-west-1".to_string(), 8)]), "no overflow");
        set_node_health(&c, &lab, "eu-west-1", "down").await;
        wait_health(&c, &t, "eu-west-1", false).await;
        // The node still serves everything but its health check.
        let counts = served_counts(&c, &format!("{latency}/v1/catalog/h"), "london", 20, 4).await;
        assert_eq!(counts, BTreeMap::from([("eu-west-1".to_string(), 20)]), "health ignored");
        lab.shutdown().await.expect("clean shutdown");
    });
}

/// Sends `GET url` with `X-Client-Location: location` and `X-Route-To: region`; returns the status,
/// `X-Served-By`, the JSON body and how long the exchange took.
async fn get_routed(
    c: &reqwest::Client,
    url: &str,
    location: &str,
    region: &str,
) -> (u16, String, serde_json::Value, Duration) {
    let started = Instant::now();
    let resp = c
        .get(url)
        .header("X-Client-Location", location)
        .header("X-Route-To", region)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let served = resp.headers().get("x-served-by").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, served, body, started.elapsed())
}

async fn store_stats(c: &reqwest::Client, endpoint: &str) -> StoreStats {
    let r = c.get(format!("{endpoint}/v1/stats/store")).send().await.expect("GET /v1/stats/store");
    assert_eq!(r.status(), 200);
    r.json().await.expect("StoreStats JSON")
}

/// Goal: the lab features behind the round-trip, per-region API latency and pool checks: `/v1/peers/rtt`
/// measures every peer over its WAN link, `X-Route-To` forces a region from any location on any record (and
/// rejects unknown or unhealthy regions), and `/v1/stats/store` counts the store's work. Method: a lab with the
/// default WAN matrix and locations; times are checked only against the emulation's lower bounds (the
/// configured round trip minus the jitter, twice the location's one-way latency), never against an upper bound.
#[test]
fn peer_rtt_route_override_and_store_stats() {
    let _g = lab_lock();
    let dir = TempDir::new("traffic-probes");
    let mut cfg = LabConfig::default();
    cfg.router.health_interval_ms = 50;
    runtime().block_on(async {
        let lab = Lab::start(&cfg, dir.path(), Path::new(exe())).await.expect("lab starts");
        let t = lab.traffic().expect("router");
        let c = lab_client(dir.path());
        let endpoints: BTreeMap<String, String> = lab.regions().into_iter().map(|r| (r.name, r.endpoint)).collect();
        let east = &endpoints["us-east-1"];

        // Round trips from us-east-1 to both peers, each at least the emulated round trip.
        let r = c.get(format!("{east}/v1/peers/rtt?count=5")).send().await.expect("GET /v1/peers/rtt");
        assert_eq!(r.status(), 200);
        let rtt: PeersRtt = r.json().await.expect("PeersRtt JSON");
        assert_eq!(rtt.region, "us-east-1");
        let peers: Vec<&str> = rtt.peers.iter().map(|p| p.region.as_str()).collect();
        assert_eq!(peers, ["eu-west-1", "us-west-2"]);
        for p in &rtt.peers {
            assert_eq!((p.error.as_deref(), p.samples_ms.len()), (None, 5), "{p:?}");
            let floor_ms = cfg.rtt_ms("us-east-1", &p.region) - cfg.wan.jitter_ms;
            assert!(floor_ms > 0.0 && p.samples_ms.iter().all(|s| *s >= floor_ms), "{p:?} below {floor_ms} ms");
        }
        for query in ["count=0", "count=101", "count=x"] {
            let r = c.get(format!("{east}/v1/peers/rtt?{query}")).send().await.expect("GET /v1/peers/rtt");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.expect("JSON error");
            assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{query}: {body}");
        }

        // X-Route-To: every record serves the named region, even far from the location, after the location's
        // latency both ways.
        for (record, location, region) in [
            ("latency", "seattle", "eu-west-1"),
            ("latency", "london", "us-west-2"),
            ("geolocation", "new-york", "eu-west-1"),
            ("weighted", "frankfurt", "us-east-1"),
            ("failover", "london", "eu-west-1"),
        ] {
            let url = format!("{}/healthz", t.records[record]);
            let (s, by, body, took) = get_routed(&c, &url, location, region).await;
            assert_eq!((s, by.as_str()), (200, region), "{record} from {location}: {body}");
            let floor = Duration::from_secs_f64(2.0 * t.locations[location][region] / 1000.0);
            assert!(took >= floor, "{record} from {location} to {region} took {took:?}, under {floor:?}");
        }
        let latency = &t.records["latency"];
        let (s, by, body, _) = get_routed(&c, &format!("{latency}/healthz"), "london", "mars-1").await;
        assert_eq!((s, by.as_str(), body["error"].as_str()), (400, "", Some("unknown_region")), "{body}");
        assert!(body["message"].as_str().unwrap_or("").contains("eu-west-1"), "{body}");
        set_node_health(&c, &lab, "us-west-2", "down").await;
        wait_health(&c, &t, "us-west-2", false).await;
        let (s, by, body, _) = get_routed(&c, &format!("{latency}/healthz"), "seattle", "us-west-2").await;
        assert_eq!((s, by.as_str(), body["error"].as_str()), (503, "", Some("region_unhealthy")), "{body}");
        set_node_health(&c, &lab, "us-west-2", "ok").await;
        wait_health(&c, &t, "us-west-2", true).await;
        let (s, by, _, _) = get_routed(&c, &format!("{latency}/healthz"), "seattle", "us-west-2").await;
        assert_eq!((s, by.as_str()), (200, "us-west-2"));

        // Store statistics: three writes and three reads at us-east-1 add at least that many samples.
        let before = store_stats(&c, east).await;
        assert_eq!(before.region, "us-east-1");
        for i in 0..3 {
            let r = c.put(format!("{east}/v1/kv/stats/{i}")).json(&serde_json::json!({"value": "v"})).send().await;
            assert_eq!(r.expect("PUT").status(), 200);
            let r = c.get(format!("{east}/v1/kv/stats/{i}")).send().await;
            assert_eq!(r.expect("GET").status(), 200);
        }
        let after = store_stats(&c, east).await;
        assert!(after.commit_ms.count > before.commit_ms.count, "{before:?} -> {after:?}");
        assert!(after.read_ms.count >= before.read_ms.count + 3, "{before:?} -> {after:?}");
        assert!(after.acquire_ms.count >= before.acquire_ms.count + 6, "{before:?} -> {after:?}");
        for l in [after.acquire_ms, after.commit_ms, after.read_ms] {
            assert!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, "{after:?}");
        }
        lab.shutdown().await.expect("clean shutdown");
    });
}
