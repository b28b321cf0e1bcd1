//! Journeys against an application that is not the lab: a small ticket shop with its own API (carts, checkouts
//! with an `X-Request-Id` idempotency key, payments), served in two "regions" (two listeners on one store), known
//! to xregion only by each region's `app` URL. The journey file opens each cart through the router (the first
//! region's URL stands for the routing record), extracts the cart id, templates the checkout body, retries every
//! checkout in the other region with the same key, and judges one payment per cart in every region.

use crate::common::{TempDir, check, report, run_xregion, text};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The shop's store, shared by both regions.
#[derive(Default)]
struct Store {
    next: u64,
    /// Cart id to (customer, payment ids).
    carts: BTreeMap<String, (String, Vec<String>)>,
    /// Idempotency key to payment id: one map, or one per region with the defect.
    seen: [BTreeMap<String, String>; 2],
}

#[derive(Clone)]
struct Region {
    store: Arc<Mutex<Store>>,
    index: usize,
    /// The defect: each region remembers only the keys it saw itself.
    per_region_keys: bool,
}

type Answer = (StatusCode, Json<Value>);

async fn open_cart(State(r): State<Region>, Json(body): Json<Value>) -> Answer {
    let Some(customer) = body["customer"].as_str() else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "customer is required"})));
    };
    let mut s = r.store.lock().unwrap();
    s.next += 1;
    let id = format!("c-{}", s.next);
    s.carts.insert(id.clone(), (customer.to_string(), Vec::new()));
    (StatusCode::CREATED, Json(json!({"cart": {"id": id, "customer": customer}})))
}

async fn checkout(
    State(r): State<Region>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    let Some(key) = headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "X-Request-Id is required"})));
    };
    if body["amount_cents"].as_u64().is_none() {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "amount_cents is required"})));
    }
    let mut s = r.store.lock().unwrap();
    let map = if r.per_region_keys { r.index } else { 0 };
    if let Some(p) = s.seen[map].get(&key) {
        return (StatusCode::OK, Json(json!({"payment": {"id": p, "state": "captured"}})));
    }
    s.next += 1;
    let pid = format!("p-{}", s.next);
    let Some(cart) = s.carts.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such cart"})));
    };
    cart.1.push(pid.clone());
    s.seen[map].insert(key, pid.clone());
    (StatusCode::CREATED, Json(json!({"payment": {"id": pid, "state": "captured"}})))
}

async fn payments(State(r): State<Region>, Path(id): Path<String>) -> Answer {
    let s = r.store.lock().unwrap();
    match s.carts.get(&id) {
        Some((_, ps)) => {
            let list: Vec<Value> = ps.iter().map(|p| json!({"id": p})).collect();
            (StatusCode::OK, Json(json!({"data": {"payments": list}})))
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "no such cart"}))),
    }
}

/// Serves the shop in two regions on loopback, in a thread of its own for the rest of the test process; returns
/// each region's base URL.
fn start_shop(per_region_keys: bool) -> Vec<String> {
    let store = Arc::new(Mutex::new(Store::default()));
    let listeners: Vec<std::net::TcpListener> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind the shop")).collect();
    let urls = listeners.iter().map(|l| format!("http://{}", l.local_addr().unwrap())).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut servers = Vec::new();
            for (index, l) in listeners.into_iter().enumerate() {
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let app = axum::Router::new()
                    .route("/api/v2/carts", post(open_cart))
                    .route("/api/v2/carts/{id}/checkout", post(checkout))
                    .route("/api/v2/carts/{id}/payments", get(payments))
                    .with_state(Region { store: store.clone(), index, per_region_keys });
                servers.push(tokio::spawn(async move { axum::serve(l, app).await }));
            }
            for s in servers {
                let _ = s.await;
            }
        });
    });
    urls
}

const JOURNEYS: &str = r#"
[[journey]]
name = "buy-ticket"
check = "payment"
instances = 8
concurrency = 4
[journey.vars]
customer = "fan-{{run}}-{{instance}}"
request = "{{uuid}}"

[[journey.step]]
name = "open cart"
method = "POST"
path = "/api/v2/carts"
region = "router"
body = { customer = "{{customer}}", seats = ["A{{instance}}"] }
expect = [201]
extract = { cart = "/cart/id" }
assert = [{ pointer = "/cart/customer", equals = "{{customer}}" }]

[[journey.step]]
name = "checkout"
method = "POST"
path = "/api/v2/carts/{{cart}}/checkout"
headers = { "X-Request-Id" = "{{request}}" }
body = { amount_cents = 1500, currency = "EUR", cart = "{{cart}}" }
expect = [200, 201]
retry = { region = "other", when = "always" }

[[invariant]]
name = "one payment per cart"
kind = "exactly-once"
journey = "buy-ticket"
per = "cart"
step = "checkout"
read = { path = "/api/v2/carts/{{cart}}/payments", count = "/data/payments" }
"#;

/// Runs the e2e checks against a shop; returns the payment check and the exit code.
fn run_shop(name: &str, per_region_keys: bool) -> (Value, Value, Option<i32>, String) {
    let urls = start_shop(per_region_keys);
    let dir = TempDir::new(name);
    std::fs::write(dir.path().join("shop.journeys.toml"), JOURNEYS).unwrap();
    let config = format!(
        "[deployment]\nkind = \"http\"\n[[deployment.regions]]\nname = \"eu-central\"\napp = \"{}\"\n\
         [[deployment.regions]]\nname = \"eu-west\"\napp = \"{}\"\n[e2e]\njourneys = \"shop.journeys.toml\"\n\
         [deployment.traffic.records]\nlatency = \"{}\"\n",
        urls[0], urls[1], urls[0]
    );
    let path = dir.path().join("xregion.toml");
    std::fs::write(&path, config).unwrap();
    let out = dir.path().join("out");
    let o = run_xregion(
        &["run", "--config", path.to_str().unwrap(), "--check", "cross-region.e2e", "--out", out.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    );
    let r = report(&out);
    let payment = check(&r, "cross-region.e2e.payment").clone();
    let other = check(&r, "cross-region.e2e.fulfillment").clone();
    (payment, other, o.status.code(), text(&o))
}

/// Goal: a journey file written for another API runs against it from `app` URLs alone: every checkout, retried in
/// the other region with the same key, makes one payment, so the check passes with per-step figures; the checks
/// the file has no journeys for are skipped, saying so.
#[test]
fn journeys_run_against_another_api_and_pass_when_idempotent() {
    let (c, other, code, out) = run_shop("journey-shop", false);
    assert_eq!(c["verdict"], "pass", "{c}\n{out}");
    assert_eq!(c["metrics"]["completed"], 8.0, "{c}");
    assert_eq!(c["metrics"]["violations"], 0.0, "{c}");
    let steps = c["tables"].as_array().unwrap().iter().find(|t| t["title"].as_str().unwrap().starts_with("Steps"));
    let rows = steps.and_then(|t| t["rows"].as_array()).expect("per-step table");
    let checkout = rows.iter().find(|r| r[1] == "checkout").expect("a checkout row");
    assert_eq!(checkout[2], "16", "8 checkouts and 8 retries: {checkout}");
    assert_eq!(other["verdict"], "skipped", "{other}");
    assert!(other["summary"].as_str().unwrap().contains("has no journey for fulfillment"), "{other}");
    assert_eq!(code, Some(0), "{out}");
}

/// Goal: the same file finds the defect: a shop whose regions each remember only their own idempotency keys charges
/// a retried checkout twice, so exactly-once fails and lists every cart with the runs involved.
#[test]
fn journeys_find_double_charges_when_idempotency_keys_are_per_region() {
    let (c, _, code, out) = run_shop("journey-shop-defect", true);
    assert_eq!(c["verdict"], "fail", "{c}\n{out}");
    let s = c["summary"].as_str().unwrap();
    assert!(s.contains("one payment per cart (exactly-once)") && s.contains("done 2 times"), "{s}");
    let v = c["tables"].as_array().unwrap().iter().find(|t| t["title"].as_str().unwrap().starts_with("Violations"));
    let rows = v.and_then(|t| t["rows"].as_array()).expect("violations listed");
    assert!(rows.len() >= 8, "every cart is charged twice in both regions: {rows:?}");
    assert!(rows.iter().all(|r| r[3].as_str().unwrap().starts_with("buy-ticket#")), "{rows:?}");
    assert_eq!(code, Some(1), "{out}");
}

/// Runs `xregion load --journey` with the shop's journeys against both regions for one second; returns the JSON
/// result and the exit code.
fn load_shop(name: &str, thresholds: &[&str]) -> (Value, Option<i32>, String) {
    let urls = start_shop(false);
    let dir = TempDir::new(name);
    let file = dir.path().join("shop.journeys.toml");
    std::fs::write(&file, JOURNEYS).unwrap();
    let east = format!("eu-central={}", urls[0]);
    let west = format!("eu-west={}", urls[1]);
    let mut args =
        vec!["load", "--journey", file.to_str().unwrap(), "--region", &east, "--region", &west, "--vus", "4"];
    args.extend(["--router", &urls[0]]);
    args.extend(["--duration", "1s", "--json"]);
    for t in thresholds {
        args.extend(["--threshold", t]);
    }
    let o = run_xregion(&args, &[], Duration::from_secs(60));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    (v, o.status.code(), text(&o))
}

/// Goal: `xregion load --journey` runs a journey as the VUs' script: every completed iteration made one cart and
/// two checkouts (the retry in the other region), each step has its own count, errors and percentiles, and a
/// threshold scoped to a step is judged on that step alone.
#[test]
fn load_runs_journeys_as_virtual_users_with_per_step_metrics() {
    let (v, code, out) =
        load_shop("journey-load", &["buy-ticket/checkout: error_rate < 1%", "buy-ticket/checkout: count > 10"]);
    let it = &v["iterations"]["buy-ticket"];
    let completed = it["completed"].as_u64().unwrap_or(0);
    assert!(completed >= 5, "{it}\n{out}");
    assert_eq!(it["failed"], 0, "{it}");
    assert_eq!(it["started"], it["completed"], "{it}");
    let steps = &v["per_request"];
    assert_eq!(steps["buy-ticket/checkout"]["count"].as_u64(), Some(2 * completed), "{steps}");
    assert_eq!(steps["buy-ticket/checkout"]["errors"], 0, "{steps}");
    assert!(steps["buy-ticket/open cart"]["count"].as_u64().unwrap() >= completed, "{steps}");
    let thresholds = v["thresholds"].as_array().expect("thresholds judged");
    assert!(thresholds.iter().all(|t| t["pass"] == true), "{thresholds:?}");
    assert_eq!(code, Some(0), "{out}");
}

/// Goal: a step threshold that the run misses fails the load run with exit code 1, and a region that accepts no
/// connection is an error naming it, before any VU starts.
#[test]
fn load_journeys_fail_their_thresholds_and_name_an_unreachable_region() {
    let (v, code, out) = load_shop("journey-load-fail", &["buy-ticket/checkout: p50 < 0.001ms"]);
    let t = &v["thresholds"][0];
    assert_eq!(t["pass"], false, "{v}");
    assert_eq!(code, Some(1), "{out}");

    let dir = TempDir::new("journey-load-down");
    let file = dir.path().join("shop.journeys.toml");
    std::fs::write(&file, JOURNEYS).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let region = format!("eu-central=http://{closed}");
    let o = run_xregion(
        &["load", "--journey", file.to_str().unwrap(), "--region", &region, "--duration", "1s"],
        &[],
        Duration::from_secs(30),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("region eu-central") && out.contains("unreachable"), "{out}");
}

/// Runs the sustained load check on the lab with `[checks.load] journeys` and `extra` config; returns the check and
/// the exit code.
fn load_check_with_journeys(name: &str, time_scale: f64, extra: &str) -> (Value, Option<i32>, String) {
    let _g = crate::common::lab_lock();
    let dir = TempDir::new(name);
    let config = dir.path().join("xregion.toml");
    let body =
        format!("[checks.load]\nusers = 60\ntime_scale = {time_scale}\njourneys = [\"register-and-order\"]\n{extra}");
    std::fs::write(&config, body).unwrap();
    let out = dir.path().join("out");
    let (c, o) = (config.to_str().unwrap(), out.to_str().unwrap());
    let args = ["run", "--config", c, "--out", o, "--seed", "7", "--check", "performance.load.sustained"];
    let o = run_xregion(&args, &[], crate::run::RUN_LIMIT);
    let r = report(&out);
    (check(&r, "performance.load.sustained").clone(), o.status.code(), text(&o))
}

/// Goal: the load checks drive journeys as their users' script: the sustained check passes on the lab with every
/// step of the journey in its per-step table and the target users reached; with every shop request held 2.1 s it
/// fails on P95, so a journey-driven load check can fail.
#[test]
fn load_checks_drive_journeys_and_fail_on_a_slow_shop() {
    let (c, code, out) = load_check_with_journeys("load-journeys", 0.15, "");
    assert_eq!(c["verdict"], "pass", "{c}\n{out}");
    assert_eq!(c["metrics"]["users_max"], 60.0, "{c}");
    let steps =
        c["tables"].as_array().unwrap().iter().find(|t| t["title"].as_str().unwrap().starts_with("Journey steps"));
    let rows = steps.and_then(|t| t["rows"].as_array()).expect("per-step table");
    for step in ["register-and-order/register", "register-and-order/order"] {
        assert!(rows.iter().any(|r| r[0] == step && r[1].as_str().unwrap() != "0"), "{step}: {rows:?}");
    }
    assert_eq!(code, Some(0), "{out}");

    let (c, code, out) = load_check_with_journeys("load-journeys-slow", 0.3, "[lab.defects]\nslow_ms = 2100\n");
    assert_eq!(c["verdict"], "fail", "{c}\n{out}");
    assert!(c["metrics"]["p95_ms"].as_f64().unwrap() >= 2000.0, "{c}");
    assert_eq!(code, Some(1), "{out}");
}

/// Goal: a load check naming a journey that the file does not have is a config error at the name's position
/// (exit 2), before anything starts.
#[test]
fn load_journeys_config_names_an_unknown_journey() {
    let dir = TempDir::new("load-journeys-unknown");
    let config = dir.path().join("xregion.toml");
    std::fs::write(&config, "[checks.load]\njourneys = [\"register-and-order\", \"nope\"]\n").unwrap();
    let o = run_xregion(&["run", "--config", config.to_str().unwrap()], &[], Duration::from_secs(30));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("xregion.toml:2:35") && out.contains("no journey named nope"), "{out}");
}
