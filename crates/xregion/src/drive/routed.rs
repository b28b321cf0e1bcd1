//! Routed clients: requests sent through a routing record as a client at a location, and what came back (status,
//! latency, the region that served it).
//!
//! `fire` is the closed loop (n requests, c in flight); `paced` sends at a fixed rate through the one pacing loop
//! (`pace::open_model`) until its caller says stop. `router_probe` is a probe-contract client whose requests go
//! through the latency record as a client at a location, for the failover canaries.

use crate::check::Ctx;
use crate::config::Traffic;
use crate::drive::lock;
use crate::drive::pace::{Pace, open_model};
use crate::net::Role;
use crate::probe::Probe;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Most requests `paced` has in flight; beyond it a due request is not sent.
const PACED_IN_FLIGHT_MAX: usize = 256;
/// How often `paced` asks its caller whether to stop.
const PACED_TICK: Duration = Duration::from_millis(10);

/// One request as the client saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// When it was sent, since the start of the batch.
    pub sent: Duration,
    /// How long it took.
    pub latency: Duration,
    /// The HTTP status, or `None` for a transport error.
    pub status: Option<u16>,
    /// The served-by header.
    pub served_by: Option<String>,
    /// The transport error, if any.
    pub error: Option<String>,
}

impl Sample {
    /// A 2xx or 3xx answer.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..400).contains(&s))
    }
}

/// Where routed requests go and what they carry.
#[derive(Debug, Clone)]
pub struct Route {
    /// The URL requested.
    pub url: String,
    /// Request headers (the client location, a forced region).
    pub headers: Vec<(String, String)>,
    /// The response header naming the serving region.
    pub served_by: String,
}

/// Sends one GET and records what came back.
async fn one(client: &reqwest::Client, route: &Route, t0: Instant) -> Sample {
    let sent = Instant::now();
    let mut req = client.get(&route.url);
    for (k, v) in &route.headers {
        req = req.header(k, v);
    }
    let r = req.send().await;
    let latency = sent.elapsed();
    let sent = sent - t0;
    match r {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let by = resp.headers().get(&route.served_by).and_then(|v| v.to_str().ok()).map(str::to_string);
            // Read the body so the connection can be reused.
            let _ = resp.bytes().await;
            Sample { sent, latency, status: Some(status), served_by: by, error: None }
        }
        Err(e) => Sample { sent, latency, status: None, served_by: None, error: Some(crate::faults::root_cause(&e)) },
    }
}

/// Sends `n` GETs with `concurrency` in flight (closed loop) and returns them in completion order.
pub async fn fire(client: &reqwest::Client, route: &Route, n: usize, concurrency: usize) -> Vec<Sample> {
    let t0 = Instant::now();
    futures::stream::iter(0..n).map(|_| one(client, route, t0)).buffer_unordered(concurrency).collect().await
}

/// Sends GETs at `rate` per second until `stop` says so or `limit` passes (open model); `stop` sees the time since
/// the start and the samples so far. Returns the samples in send order.
pub async fn paced(
    client: &reqwest::Client,
    route: &Route,
    rate: f64,
    limit: Duration,
    mut stop: impl FnMut(Duration, &[Sample]) -> bool,
) -> Vec<Sample> {
    let pace = Pace::new(rate, PACED_IN_FLIGHT_MAX);
    let pace = pace.until(pace.start + limit);
    let t0 = pace.start;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let cancel = CancellationToken::new();
    let (client, route) = (client.clone(), Arc::new(route.clone()));
    let sender = async {
        open_model(
            pace,
            &cancel,
            |_, _| {
                let (client, route, samples) = (client.clone(), route.clone(), samples.clone());
                async move {
                    let s = one(&client, &route, t0).await;
                    lock(&samples).push(s);
                }
            },
            |_, _| {},
        )
        .await;
        // Done by itself (the time limit): the watcher ends at its next tick.
        cancel.cancel();
    };
    let watcher = async {
        while !cancel.is_cancelled() {
            if stop(t0.elapsed(), &lock(&samples)) {
                cancel.cancel();
                break;
            }
            tokio::time::sleep(PACED_TICK).await;
        }
    };
    // When the watcher stops the sender, the sender still waits for the requests in flight.
    tokio::join!(sender, watcher);
    let mut samples = std::mem::take(&mut *lock(&samples));
    samples.sort_by_key(|s| s.sent);
    samples
}

/// A client with a pool big enough for `concurrency`, the deployment's timeouts plus `extra` (the longest service
/// time a check asks for), and the admin token.
pub fn client(ctx: &Ctx, concurrency: usize, extra: Duration) -> reqwest::Client {
    crate::net::client_builder(&ctx.config.deployment, Role::Admin)
        .connect_timeout(Duration::from_millis(ctx.config.deployment.connect_timeout_ms))
        .timeout(Duration::from_millis(ctx.config.deployment.request_timeout_ms) + extra)
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default()
}

/// A probe that sends through the latency routing record as a client at `location`, with up to `in_flight`
/// pooled connections.
pub fn router_probe(ctx: &Ctx, traffic: &Traffic, location: &str, in_flight: usize) -> Result<Probe, String> {
    let url = traffic.records.get("latency").ok_or("no latency record")?;
    let mut headers =
        crate::net::token(&ctx.config.deployment, Role::Admin).map(crate::net::auth_headers).unwrap_or_default();
    let name = reqwest::header::HeaderName::from_bytes(traffic.location_header.as_bytes())
        .map_err(|e| format!("bad location header {}: {e}", traffic.location_header))?;
    let value =
        reqwest::header::HeaderValue::from_str(location).map_err(|e| format!("bad location {location}: {e}"))?;
    headers.insert(name, value);
    let timeout = Duration::from_millis(ctx.config.deployment.request_timeout_ms);
    let client = crate::net::client_builder(&ctx.config.deployment, Role::Admin)
        .connect_timeout(Duration::from_millis(ctx.config.deployment.connect_timeout_ms))
        .timeout(timeout)
        .default_headers(headers)
        .pool_max_idle_per_host(in_flight)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the canary client: {e}"))?;
    Ok(Probe::new(&format!("router@{location}"), url, client, timeout))
}
