//! End-to-end runs of the engine against the in-test server: keep-alive and reconnects, chunked bodies, status
//! errors, header capture, ramps, the coordinated-omission correction, thresholds, the descriptor budget and the
//! worker process.

use crate::server::{self, Behaviour};
use std::time::Duration;
use xregion_load::{Executor, LoadError, Plan, RequestSpec, Stage, run_plan};

fn spec(name: &str, url: String) -> RequestSpec {
    RequestSpec { name: name.into(), url, method: "GET".into(), headers: vec![], body: None, weight: 1 }
}

fn plan(targets: Vec<RequestSpec>, executor: Executor) -> Plan {
    Plan {
        targets,
        executor,
        request_timeout_ms: 5_000,
        connections_max: None,
        window_ms: 250,
        capture_headers: vec![],
        thresholds: vec![],
        seed: 1,
        workers: None,
        allow_remote: false,
        ca_file: None,
        phases: Vec::new(),
        no_connection_abort_ms: None,
        local_address: None,
    }
}

fn vus(n: u32, ms: u64) -> Executor {
    Executor::ConstantVus { vus: n, duration_ms: ms, think_time_ms: 0 }
}

// Goal: keep-alive with the server closing every 7th response: every request succeeds, the closes show up as
// reconnects, and the server saw exactly the requests the result counts.
#[test]
fn keep_alive_and_reconnects() {
    let s = server::start(Behaviour { close_every: 7, ..Default::default() });
    let mut p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(4, 700));
    p.targets[0].method = "POST".into();
    p.targets[0].body = Some("payload".into());
    let r = run_plan(&p).unwrap();
    assert!(r.requests > 100, "{}", r.requests);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.statuses.get(&200), Some(&r.requests));
    assert_eq!(s.requests.load(std::sync::atomic::Ordering::Relaxed), r.requests);
    // Each VU opens one connection, then one more after every 7 responses.
    assert!(r.reconnects >= r.requests / 7 - 4, "reconnects {} for {} requests", r.reconnects, r.requests);
    assert_eq!(r.connections_opened, r.reconnects + 4);
    assert_eq!(r.vus_max, 4);
    assert!(!r.windows.is_empty() && r.windows.iter().map(|w| w.requests).sum::<u64>() == r.requests);
    assert_eq!(r.per_request["root"].latency.0.len(), r.requests);
}

// Goal: with `local_address`, every connection comes from that address (a router placing clients by address sees
// it); without it, from the system's choice.
#[test]
fn connections_come_from_the_local_address() {
    let s = server::start(Behaviour { close_every: 5, ..Default::default() });
    let mut p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(2, 300));
    p.local_address = Some("127.0.23.1".parse().unwrap());
    let r = run_plan(&p).unwrap();
    assert!(
        r.requests > 10 && r.connections_opened > 2,
        "{} requests, {} connections",
        r.requests,
        r.connections_opened
    );
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let peers: Vec<String> = s.peers.lock().unwrap().iter().map(|a| a.to_string()).collect();
    assert_eq!(peers, ["127.0.23.1"]);
    // An IPv6 local address cannot reach an IPv4 target: a clear error before the run, not a run of failures.
    p.local_address = Some("::1".parse().unwrap());
    let e = run_plan(&p).unwrap_err().to_string();
    assert!(e.contains("no address of the family of the local address ::1"), "{e}");
}

// Goal: chunked bodies (with extensions and trailers) parse, 5xx count as status errors by code, the weights
// split the iterations, and captured header values are counted per request name.
#[test]
fn chunked_statuses_weights_and_headers() {
    let s = server::start(Behaviour { chunked: true, close_every: 50, ..Default::default() });
    let mut ok = spec("eu", format!("http://{}/eu", s.addr));
    ok.weight = 3;
    let fail = spec("fail", format!("http://{}/fail", s.addr));
    let mut p = plan(vec![ok, fail], vus(2, 500));
    p.capture_headers = vec!["X-Served-By".into()];
    p.thresholds = vec!["error_rate < 1%".parse().unwrap(), "eu: error_rate < 1%".parse().unwrap()];
    let r = run_plan(&p).unwrap();
    let (eu, fail) = (&r.per_request["eu"], &r.per_request["fail"]);
    assert_eq!(eu.errors, 0);
    assert_eq!(fail.errors, fail.count);
    assert_eq!(r.errors.status, fail.count);
    assert_eq!(r.errors.protocol + r.errors.connect + r.errors.timeout, 0);
    assert_eq!(r.statuses.get(&503), Some(&fail.count));
    let share = eu.count as f64 / r.requests as f64;
    assert!((0.65..0.85).contains(&share), "eu share {share}");
    assert_eq!(eu.header_counts["x-served-by"]["eu-west-1"], eu.count);
    assert_eq!(fail.header_counts["x-served-by"]["us-east-1"], fail.count);
    // The global error rate is about 25%, so the first threshold fails; the scoped one passes.
    assert!(!r.thresholds[0].pass && r.thresholds[0].measured.unwrap() > 0.1);
    assert!(r.thresholds[1].pass);
    assert!(!r.thresholds_pass());
}

// Goal: the open model corrects for coordinated omission. The server stalls for 1 s in every 2 s; at a fixed rate
// the true latency of an iteration intended at t is the time to the end of the stall it falls in. The corrected
// P99 must be within 10% of the P99 computed from that schedule, while the uncorrected one (measured from the
// late send) is far below it: only the request on the wire per connection sees the stall.
#[test]
fn coordinated_omission_is_corrected() {
    let (period, stall) = (Duration::from_secs(2), Duration::from_secs(1));
    let s = server::start(Behaviour { stall: Some((period, stall)), ..Default::default() });
    let (rate, duration_ms) = (200.0, 6_000u64);
    let mut p = plan(
        vec![spec("root", format!("http://{}/", s.addr))],
        Executor::ConstantArrivalRate { rate_per_s: rate, duration_ms, max_in_flight: 2_000 },
    );
    p.connections_max = Some(2);
    let r = run_plan(&p).unwrap();

    let n = (rate * duration_ms as f64 / 1000.0) as usize;
    let mut truth: Vec<f64> = (0..n)
        .map(|k| {
            let into = (k as f64 / rate) % period.as_secs_f64();
            let stall_from = (period - stall).as_secs_f64();
            if into >= stall_from { (period.as_secs_f64() - into) * 1000.0 } else { 0.0 }
        })
        .collect();
    truth.sort_by(f64::total_cmp);
    let true_p99 = truth[(0.99 * n as f64).ceil() as usize - 1];
    let corrected = r.percentiles(None).unwrap();
    let uncorrected = r.percentiles_uncorrected(None).unwrap();
    eprintln!("true p99 {true_p99} ms, corrected {corrected:?}, uncorrected {uncorrected:?}, late {}", r.late);
    assert_eq!(r.requests as usize, n, "every scheduled iteration ran: {r:?}");
    assert_eq!(r.errors.total(), 0);
    assert!(
        (corrected.p99 - true_p99).abs() <= 0.1 * true_p99,
        "corrected p99 {} ms, true p99 {true_p99} ms",
        corrected.p99
    );
    assert!(uncorrected.p99 < 0.3 * true_p99, "uncorrected p99 {} ms, true p99 {true_p99} ms", uncorrected.p99);
    assert!(r.late > 0 && r.late_lag_ms_max > 500.0, "late {} lag {}", r.late, r.late_lag_ms_max);
    assert_eq!(r.dropped, 0);
    assert!(r.windows.iter().any(|w| w.rate_scheduled_per_s == Some(rate)));
}

// Goal: when max_in_flight is reached during a stall, further iterations are dropped, not queued forever.
#[test]
fn open_model_drops_past_max_in_flight() {
    let s = server::start(Behaviour {
        stall: Some((Duration::from_millis(600), Duration::from_millis(400))),
        ..Default::default()
    });
    let mut p = plan(
        vec![spec("root", format!("http://{}/", s.addr))],
        Executor::ConstantArrivalRate { rate_per_s: 200.0, duration_ms: 1_200, max_in_flight: 4 },
    );
    p.workers = Some(1);
    let r = run_plan(&p).unwrap();
    assert!(r.dropped > 20, "dropped {}", r.dropped);
    assert_eq!(r.requests + r.dropped, 240);
    assert!(r.vus_max <= 4);
}

// Goal: a closed-model ramp reaches its target VUs and comes back down.
#[test]
fn ramping_vus_reach_the_target() {
    let s = server::start(Behaviour::default());
    let ex = Executor::RampingVus {
        start_vus: 0,
        stages: vec![
            Stage { duration_ms: 800, target: 8.0 },
            Stage { duration_ms: 600, target: 8.0 },
            Stage { duration_ms: 400, target: 2.0 },
        ],
        think_time_ms: 20,
    };
    let r = run_plan(&plan(vec![spec("root", format!("http://{}/", s.addr))], ex)).unwrap();
    assert_eq!(r.vus_max, 8);
    let peak = r.windows.iter().map(|w| w.active_max).max().unwrap();
    assert_eq!(peak, 8, "{:?}", r.windows);
    assert!(r.windows.first().unwrap().active_max < 8);
    assert!(r.windows.last().unwrap().active_max <= 4, "{:?}", r.windows.last());
    assert_eq!(r.errors.total(), 0);
    assert_eq!(r.interrupted, 0);
}

// Goal: thresholds fail when they should and pass when they should, on a real run.
#[test]
fn thresholds_on_a_run() {
    let s = server::start(Behaviour::default());
    let mut p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(1, 300));
    p.thresholds = ["p95 < 1us", "p(99.9) <= 5s", "rps > 1000000", "rps > 1", "root: count > 0", "nope: p50 < 1s"]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    let r = run_plan(&p).unwrap();
    let pass: Vec<bool> = r.thresholds.iter().map(|t| t.pass).collect();
    assert_eq!(pass, [false, true, false, true, true, false]);
}

// Goal: a connection refused counts as a connect error, and a request to a non-loopback address is refused before
// anything is sent.
#[test]
fn connect_errors_and_remote_guard() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let r = run_plan(&plan(vec![spec("dead", format!("http://{addr}/"))], vus(1, 100))).unwrap();
    assert!(r.errors.connect > 0 && r.errors.connect == r.requests, "{:?}", r.errors);
    // Connects back off 10 ms doubling (10 + 20 + 40 ms fit in 100 ms): a few attempts, not thousands.
    assert!(r.errors.connect <= 5, "{} connect attempts in 100 ms: no backoff", r.errors.connect);
    assert_eq!(r.per_request["dead"].latency_errors.0.len(), r.requests);
    assert_eq!(r.requests_per_s.ok, 0.0);
    let e = run_plan(&plan(vec![spec("far", "http://192.0.2.7/".into())], vus(1, 100))).unwrap_err();
    assert!(matches!(e, LoadError::RemoteTarget { .. }), "{e}");
}

// Goal: asking for 30,000 connections fails before the start with the needed count, the limit, and what to do.
#[test]
fn descriptor_budget_is_checked() {
    let s = server::start(Behaviour::default());
    let p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(30_000, 1_000));
    let e = run_plan(&p).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LoadError::FdLimit { .. }), "{msg}");
    assert!(msg.contains("30000 connections") && msg.contains("fewer VUs or connections"), "{msg}");
    assert_eq!(s.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

// Goal: the same plan runs in a worker process and comes back intact, its windows streamed while it runs (they add
// up to the result, and the first arrives long before the schedule ends); a plan the worker refuses comes back as
// an error with the worker's message.
#[test]
fn runs_in_a_child_process() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_xregion-load-worker"));
    let s = server::start(Behaviour::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(2, 2_000));
    let start = std::time::Instant::now();
    let mut streamed: Vec<(std::time::Duration, u64)> = Vec::new();
    let r = rt
        .block_on(xregion_load::run_in_child_streaming(exe, &p, |w| streamed.push((start.elapsed(), w.requests))))
        .unwrap();
    assert!(r.requests > 0 && r.errors.total() == 0);
    assert_eq!(s.requests.load(std::sync::atomic::Ordering::Relaxed), r.requests);
    assert_eq!(streamed.iter().map(|w| w.1).sum::<u64>(), r.requests, "{streamed:?}");
    assert!(streamed.len() >= 4, "a 2 s run in 250 ms windows: {streamed:?}");
    assert!(streamed[0].0 < std::time::Duration::from_millis(1_500), "the first window came at the end: {streamed:?}");
    let big = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(30_000, 300));
    let e = rt.block_on(xregion_load::run_in_child(exe, &big)).unwrap_err();
    assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
}

// Goal: phases count exactly the requests completed in their time range; method: two phases that split the run
// and one that overlaps both: the split adds up to the run, and the overlap holds requests of both halves.
#[test]
fn phases_split_one_run() {
    let s = server::start(Behaviour::default());
    let mut p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(2, 800));
    p.phases = vec![
        xregion_load::plan::Phase { name: "first".into(), from_ms: 0, to_ms: 400 },
        xregion_load::plan::Phase { name: "rest".into(), from_ms: 400, to_ms: 60_000 },
        xregion_load::plan::Phase { name: "middle".into(), from_ms: 200, to_ms: 600 },
    ];
    let r = run_plan(&p).unwrap();
    let (first, rest, middle) = (&r.phases["first"], &r.phases["rest"], &r.phases["middle"]);
    assert!(first.requests > 10 && rest.requests > 10 && middle.requests > 10, "{:?}", r.phases.keys());
    assert_eq!(first.requests + rest.requests, r.requests);
    assert_eq!(first.latency.0.len() + rest.latency.0.len(), r.requests);
    assert!(middle.requests < r.requests);
    assert_eq!(first.errors + rest.errors, 0);
    p.phases.push(xregion_load::plan::Phase { name: "first".into(), from_ms: 1, to_ms: 2 });
    assert!(matches!(run_plan(&p), Err(LoadError::InvalidPlan(_))), "a duplicate phase name is refused");
}

// Goal: a request that times out keeps its latency (the full wait) in the histogram the headline percentiles use,
// so timeouts raise the percentiles; the failed requests also have their own histogram, and count in the error
// rate. Method: every 10th request is answered 400 ms late against a 100 ms timeout: about 10 % time out, so
// the P95 of all requests is at least the timeout while the P95 of the answered ones stays far below it.
#[test]
fn a_timeout_raises_the_percentiles() {
    let s = server::start(Behaviour { slow_every: Some((10, Duration::from_millis(400))), ..Default::default() });
    let mut p = plan(vec![spec("root", format!("http://{}/", s.addr))], vus(2, 1_000));
    p.request_timeout_ms = 100;
    p.thresholds = vec!["p95 < 100ms".parse().unwrap(), "error_rate < 5%".parse().unwrap()];
    let r = run_plan(&p).unwrap();
    assert!(r.errors.timeout >= 5, "{:?}", r.errors);
    assert_eq!(r.errors.total(), r.errors.timeout, "{:?}", r.errors);
    let stats = &r.per_request["root"];
    assert_eq!(stats.latency.0.len(), r.requests, "every request, failed ones too, has a latency");
    assert_eq!(stats.latency_errors.0.len(), r.errors.timeout);
    // A timed-out request waited the whole timeout, within the histogram's precision (3 significant digits: near
    // 100 ms a bucket is 64 us wide, and `min` is its lowest value, so 100,020 us reads as 99,968).
    let errors = &stats.latency_errors.0;
    assert!(errors.min() >= errors.lowest_equivalent(100_000), "timeout latency {} us", errors.min());
    let all = r.percentiles(None).unwrap();
    assert!(all.p95 >= 100.0, "P95 {} ms does not count the timeouts", all.p95);
    let mut ok = stats.latency.0.clone();
    ok.subtract(&stats.latency_errors.0).unwrap();
    let ok_p95 = ok.value_at_quantile(0.95) as f64 / 1000.0;
    assert!(ok_p95 < 50.0, "answered requests' P95 {ok_p95} ms");
    // Both thresholds see the timeouts: the P95 and the error rate (about 10 %).
    assert!(r.thresholds.iter().all(|t| !t.pass), "{:?}", r.thresholds);
    assert!(r.requests_per_s.total > r.requests_per_s.ok && r.requests_per_s.ok > 0.0, "{:?}", r.requests_per_s);
}

// Goal: with `no_connection_abort_ms`, a run at a closed port ends early with `NoConnection`, naming the address and
// the reason in words.
#[test]
fn a_run_that_never_connects_ends_early() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut p = plan(vec![spec("dead", format!("http://{addr}/"))], vus(8, 30_000));
    p.no_connection_abort_ms = Some(500);
    let t = std::time::Instant::now();
    let e = run_plan(&p).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "gave up after {:?}", t.elapsed());
    let msg = e.to_string();
    assert!(matches!(e, LoadError::NoConnection { .. }), "{msg}");
    assert!(msg.starts_with(&format!("no connection to {addr} succeeded within 0.5 s: connection refused")), "{msg}");
}
