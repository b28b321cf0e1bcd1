//! Global routing and CDN edges: the lab's traffic manager, one process in front of the regions.
//!
//! The router serves one listener per routing record (`latency`, `geolocation`, `weighted`, `failover`), like
//! one DNS name per routing policy, plus one listener for the CDN edges (`cdn`) and one for its status. A
//! request names its client location in `X-Client-Location`; the record's policy (`policy`) orders the
//! candidate regions, the traffic dial (per-region capacity in requests in flight) overflows a full region to
//! the next nearest, and the request is forwarded with its path unchanged to the chosen region's node.
//! `X-Route-To: <region>` overrides the record's choice (`Policy::forced`); such a request still waits the
//! location's latency, takes a place in the region's dial (no overflow: a full region answers `no_capacity`)
//! and gets `X-Served-By`.
//!
//! Failures, like Envoy: a request whose connection fails, or (idempotent methods: GET, HEAD, PUT, DELETE,
//! OPTIONS) whose exchange fails or is answered 503, is tried once more at the next candidate; a forced request
//! has no next candidate, so it is never retried elsewhere. A failed connection ejects the region at once, and
//! `CONSECUTIVE_5XX_MAX` 5xx answers in a row eject it too (`health`); the active checks bring it back. The
//! status listener also serves `PUT /router/regions/{name}/reachable` (`{"reachable":false}`): the lab's
//! `network` faults with `clients` use it to cut the router off from a region, whose requests and checks then
//! fail like failed connections. `router_never_fails_over` turns all of this off: health is ignored, nothing is
//! ejected or retried.
//!
//! The client side of the WAN is emulated here, in user space: the request waits the location -> region
//! one-way latency before it is forwarded and again before it is answered. Timers on the request path cost no
//! descriptor, whereas a delaying TCP proxy per (location, region) would add a proxied socket pair for every
//! client connection. Deadlines count from the request's arrival, so the router's own work hides inside the
//! emulated latency instead of adding to it.
//!
//! Security (issue #5): every listener (records, CDN, status) is HTTPS with the router's certificate, TLS 1.3 only
//! unless the `tls_min_version` defect allows 1.2; a connection's handshake runs in its own task under
//! `HANDSHAKE_TIMEOUT`, and a failed handshake is logged at debug and dropped. Upstream requests and health
//! checks use TLS trusting the lab's CA and verify the region by its address. The router forwards the client's
//! `Authorization` header and the region authorizes; the health checks use the public `/healthz`. The status
//! listener's routes need the admin token, and the CDN edges check the read scope of a cacheable request
//! themselves, because a hit is answered without asking the region (`cdn`). The `auth_disabled` defect lets
//! everything through.
//!
//! Descriptors: at most `CLIENT_CONNECTIONS_MAX` client connections over all listeners, and at most
//! `UPSTREAM_CONNECTIONS_MAX` requests (so connections) to each region at once; 10,000 clients and three
//! regions need about 11,600 descriptors, under the 15,000 budget of one lab process.

pub mod cdn;
pub mod health;
pub mod policy;

use crate::LabError;
use crate::auth::{AuthError, Scope, Tokens};
use crate::config::{Defects, Routing};
use crate::http_client;
use crate::node::{print_ready, wait_for_signal};
use crate::pki::{Pki, ROUTER};
use crate::spec::Spec;
use bytes::Bytes;
use futures::future::BoxFuture;
use health::HealthState;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use policy::{Policy, RecordKind};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xregion_model::wire::ErrorBody;

/// Most client connections the router holds over all its listeners; beyond it, new connections wait in the
/// listen backlog. Sized for 10,000 load-test connections plus slack.
pub const CLIENT_CONNECTIONS_MAX: usize = 12_000;
/// Most requests (and so pooled connections) to one region at once; more wait for a connection, like an
/// upstream connection pool of a real proxy.
pub const UPSTREAM_CONNECTIONS_MAX: usize = 512;
/// Largest request body the router buffers (it buffers bodies so that a failed attempt can be retried).
pub const REQUEST_BODY_BYTES_MAX: usize = 1 << 20;
/// Largest response body the router buffers from a region (a full scan page is far smaller).
pub const RESPONSE_BODY_BYTES_MAX: usize = 16 << 20;
/// Longest one upstream exchange may take, waiting for a pooled connection included.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection to a region may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Listen backlog of every listener, so that thousands of clients connecting at once are not refused.
pub const LISTEN_BACKLOG: u32 = 4096;
/// The client location header.
pub const LOCATION_HEADER: &str = "x-client-location";
/// The header that forces a region on any record (latency measurements from every location to every region).
pub const ROUTE_TO_HEADER: &str = "x-route-to";
/// Longest a client connection's TLS handshake may take before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive 5xx answers (or failed exchanges) from a region that eject it, like Envoy's outlier detection
/// (`consecutive_5xx`); the active health checks then have to bring it back.
pub const CONSECUTIVE_5XX_MAX: u32 = 5;

/// The body of every answer: the router buffers bodies (see `REQUEST_BODY_BYTES_MAX`).
pub type Body = Full<Bytes>;

/// The `READY` line of the router process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterReady {
    /// Record name -> listener.
    pub records: BTreeMap<String, SocketAddr>,
    /// The CDN edges' listener.
    pub cdn_addr: SocketAddr,
    /// The status listener (`GET /router/status`).
    pub status_addr: SocketAddr,
    /// Process id.
    pub pid: u32,
}

/// How to reach the lab's routing and CDN, and the tables they use: what the routing and CDN checks need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficInfo {
    /// Record name (`latency`, `geolocation`, `weighted`, `failover`) -> base URL.
    pub records: BTreeMap<String, String>,
    /// Base URL of the CDN edges.
    pub cdn: String,
    /// URL of the router's status (`GET`), lab-only.
    pub router_status: String,
    /// Location -> region -> one-way ms.
    pub locations: BTreeMap<String, BTreeMap<String, f64>>,
    /// Location -> its nearest region.
    pub nearest: BTreeMap<String, String>,
    /// Location -> region of the geolocation record.
    pub geolocation: BTreeMap<String, String>,
    /// Region -> weight of the weighted record.
    pub weights: BTreeMap<String, u32>,
    /// Region -> most requests in flight through the router.
    pub capacity: BTreeMap<String, u32>,
    /// Regions in the failover record's order.
    pub failover_order: Vec<String>,
    /// Location of requests without `X-Client-Location`.
    pub default_location: String,
    /// Location -> one-way ms to its CDN edge.
    pub edge_one_way_ms: BTreeMap<String, f64>,
}

impl TrafficInfo {
    /// The info for a router that reported `ready` and routes by `routing`.
    pub fn new(ready: &RouterReady, routing: &Routing) -> TrafficInfo {
        TrafficInfo {
            records: ready.records.iter().map(|(k, a)| (k.clone(), format!("https://{a}"))).collect(),
            cdn: format!("https://{}", ready.cdn_addr),
            router_status: format!("https://{}/router/status", ready.status_addr),
            locations: routing.locations.clone(),
            nearest: routing.nearest.clone(),
            geolocation: routing.geolocation.clone(),
            weights: routing.weights.clone(),
            capacity: routing.capacity.clone(),
            failover_order: routing.failover_order.clone(),
            default_location: routing.default_location.clone(),
            edge_one_way_ms: routing.edge_one_way_ms.clone(),
        }
    }
}

/// One region as the router sees it.
pub struct RegionState {
    /// Region name.
    pub name: String,
    /// The node's HTTP address.
    pub addr: SocketAddr,
    /// Whether it gets traffic (mirrors `health.up`, readable without the lock on every request).
    pub healthy: AtomicBool,
    /// The health state machine.
    pub health: Mutex<HealthState>,
    /// Requests in flight through the router to this region (the traffic dial's gauge).
    pub in_flight: AtomicU32,
    /// Most requests in flight before overflow.
    pub capacity: u32,
    /// Requests answered, per record.
    pub served: [AtomicU64; 4],
    /// Requests that came here because their first choice was full.
    pub overflow_in: AtomicU64,
    /// Times passive health ejected it (a failed connection, or `CONSECUTIVE_5XX_MAX` 5xx answers in a row).
    pub ejections: AtomicU64,
    /// Of `ejections`, those after consecutive 5xx answers.
    pub ejections_5xx: AtomicU64,
    /// 5xx answers and failed exchanges in a row (reset by any other answer and by an ejection).
    pub consecutive_5xx: AtomicU32,
    /// Whether the router can reach it; false while a network fault cuts it off from clients, and then requests
    /// and health checks fail as if no connection could be made.
    pub reachable: AtomicBool,
    /// Health checks done.
    pub checks: AtomicU64,
    /// Outcome of the last check: `ok` or the error.
    pub last_check: Mutex<String>,
    /// Fetches by the CDN edges.
    pub origin_fetches: AtomicU64,
    /// Bounds the connections to the region (`UPSTREAM_CONNECTIONS_MAX`).
    pub upstream: Semaphore,
}

impl RegionState {
    /// A healthy region with nothing in flight.
    pub fn new(name: &str, addr: SocketAddr, capacity: u32) -> RegionState {
        RegionState {
            name: name.to_string(),
            addr,
            healthy: AtomicBool::new(true),
            health: Mutex::new(HealthState::new()),
            in_flight: AtomicU32::new(0),
            capacity,
            served: Default::default(),
            overflow_in: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            ejections_5xx: AtomicU64::new(0),
            consecutive_5xx: AtomicU32::new(0),
            reachable: AtomicBool::new(true),
            checks: AtomicU64::new(0),
            last_check: Mutex::new("not checked yet".into()),
            origin_fetches: AtomicU64::new(0),
            upstream: Semaphore::new(UPSTREAM_CONNECTIONS_MAX),
        }
    }

    /// Marks the region down at once (passive health); returns whether it was up.
    pub fn eject(&self) -> bool {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let was_up = h.eject();
        self.healthy.store(false, Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        was_up
    }

    /// The error of a request or health check while the region is cut off from clients, if it is.
    pub fn unreachable(&self) -> Option<String> {
        (!self.reachable.load(Ordering::Acquire)).then(|| {
            format!("cannot connect to {} ({}): cut off from clients by a network fault", self.name, self.addr)
        })
    }

    /// This region in `GET /router/status`; `scheme` is how the router reaches it.
    fn status(&self, scheme: &str) -> serde_json::Value {
        let h = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        let served: BTreeMap<&str, u64> =
            RecordKind::ALL.iter().map(|k| (k.name(), self.served[k.index()].load(Ordering::Relaxed))).collect();
        serde_json::json!({
            "name": self.name,
            "endpoint": format!("{scheme}://{}", self.addr),
            "healthy": self.healthy.load(Ordering::Acquire),
            "reachable": self.reachable.load(Ordering::Acquire),
            "consecutive_failures": h.failures,
            "consecutive_successes": h.successes,
            "health_checks": self.checks.load(Ordering::Relaxed),
            "last_check": self.last_check.lock().map(|s| s.clone()).unwrap_or_default(),
            "ejections": self.ejections.load(Ordering::Relaxed),
            "ejections_5xx": self.ejections_5xx.load(Ordering::Relaxed),
            "consecutive_5xx": self.consecutive_5xx.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "capacity": self.capacity,
            "served": served,
            "served_total": served.values().sum::<u64>(),
            "overflow_in": self.overflow_in.load(Ordering::Relaxed),
            "origin_fetches": self.origin_fetches.load(Ordering::Relaxed),
        })
    }
}

/// A request's place in a region's traffic dial; dropping it frees the place.
pub struct Slot(Arc<RegionState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a place in `region`'s dial if it has room (always, when `unlimited`).
pub fn try_reserve(region: &Arc<RegionState>, unlimited: bool) -> Option<Slot> {
    let mut cur = region.in_flight.load(Ordering::Acquire);
    loop {
        if !unlimited && cur >= region.capacity {
            return None;
        }
        match region.in_flight.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(Slot(region.clone())),
            Err(now) => cur = now,
        }
    }
}

/// The traffic dial: the first candidate with room, as its position in `candidates` and its slot. Under
/// `ignore_capacity` the first candidate always takes the request (no overflow).
pub fn admit(regions: &[Arc<RegionState>], candidates: &[usize], ignore_capacity: bool) -> Option<(usize, Slot)> {
    if ignore_capacity {
        let first = *candidates.first()?;
        return try_reserve(&regions[first], true).map(|s| (0, s));
    }
    candidates.iter().enumerate().find_map(|(pos, i)| try_reserve(&regions[*i], false).map(|s| (pos, s)))
}

/// Requests the router answered itself, by reason.
#[derive(Default)]
struct Rejected {
    /// Unknown `X-Client-Location`.
    bad_location: AtomicU64,
    /// No region was eligible.
    no_healthy_region: AtomicU64,
    /// Every eligible region was at capacity.
    no_capacity: AtomicU64,
    /// The request failed upstream (after the retry, if any).
    upstream_failed: AtomicU64,
    /// The request body was too large or broken.
    bad_body: AtomicU64,
    /// `X-Route-To` named an unknown region.
    unknown_region: AtomicU64,
    /// `X-Route-To` named an unhealthy region.
    region_unhealthy: AtomicU64,
}

/// Second attempts at another region, by what failed at the first.
#[derive(Default)]
struct Retries {
    /// No connection could be made.
    connect_failure: AtomicU64,
    /// The region answered 503.
    status_503: AtomicU64,
    /// The exchange failed after connecting (idempotent requests only).
    exchange_failure: AtomicU64,
}

/// Why a request is tried again elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryReason {
    ConnectFailure,
    Status503,
    ExchangeFailure,
}

impl Retries {
    fn count(&self, reason: RetryReason) {
        let c = match reason {
            RetryReason::ConnectFailure => &self.connect_failure,
            RetryReason::Status503 => &self.status_503,
            RetryReason::ExchangeFailure => &self.exchange_failure,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// How one attempt at a region ended.
enum Attempt {
    /// The region answered (any status).
    Answer(Response<Bytes>),
    /// The exchange failed (the error names the region).
    Failed(String),
}

/// Everything the router's tasks share.
pub struct Router {
    /// The routing tables by region index.
    policy: Policy,
    /// The routing tables by name (for status and errors).
    routing: Routing,
    /// Regions in config order.
    regions: Vec<Arc<RegionState>>,
    /// One-way ms between regions (edge -> origin), by index.
    region_one_way_ms: Vec<Vec<f64>>,
    /// Deliberate defects.
    defects: Defects,
    /// Seeded choices (weighted record, `router_ignores_location`).
    rng: Mutex<StdRng>,
    /// The pooled client to the regions.
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// `https` (the hardened lab) or `http` (tests against plain stubs).
    scheme: &'static str,
    /// The health checks' client (no token: `/healthz` is public).
    probe: http_client::Client,
    /// Who may use the status listener and read through the CDN; `None` under `auth_disabled`.
    tokens: Option<Tokens>,
    /// The CDN edges, one per region.
    edges: cdn::Edges,
    /// Requests answered by the router itself.
    rejected: Rejected,
    /// Requests tried again at another region.
    retries: Retries,
}

/// How the router reaches the regions and whom it lets in.
pub struct RouterSecurity {
    /// TLS to the regions (trusting the lab's CA); `None`: plain HTTP.
    pub upstream: Option<Arc<rustls::ClientConfig>>,
    /// The tokens that the status listener and the CDN edges check; `None` lets everything through.
    pub tokens: Option<Tokens>,
}

impl RouterSecurity {
    /// Plain HTTP to the regions and no token checks.
    pub fn none() -> RouterSecurity {
        RouterSecurity { upstream: None, tokens: None }
    }

    /// The hardened router of the lab in `dir`: TLS with the lab's CA, and the lab's tokens unless `auth_disabled`.
    pub fn load(dir: &Path, defects: &Defects) -> Result<RouterSecurity, LabError> {
        let upstream = Some(Pki::load(dir)?.client_config()?);
        let tokens = if defects.auth_disabled { None } else { Some(Tokens::load(dir)?) };
        Ok(RouterSecurity { upstream, tokens })
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy)]
enum Door {
    Record(RecordKind),
    Cdn,
    Status,
}

impl Router {
    /// Builds the router's state from the spec: the regions' addresses (config order) and the routing tables.
    pub fn new(spec: &Spec, security: RouterSecurity) -> Result<Router, LabError> {
        let routing = spec.lab.routing()?;
        let names: Vec<String> = spec.regions.iter().map(|r| r.name.clone()).collect();
        let mut regions = Vec::new();
        for r in &spec.regions {
            if r.http_port == 0 {
                return Err(LabError::Spec(format!("the spec has no HTTP port for {}", r.name)));
            }
            let capacity = routing.capacity.get(&r.name).copied().unwrap_or(spec.lab.node.max_in_flight);
            regions.push(Arc::new(RegionState::new(&r.name, SocketAddr::new(r.ip, r.http_port), capacity)));
        }
        let region_one_way_ms =
            names.iter().map(|a| names.iter().map(|b| spec.lab.rtt_ms(a, b) / 2.0).collect()).collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(false);
        let (scheme, probe) = match &security.upstream {
            Some(tls) => ("https", http_client::Client::tls(tls.clone(), None)),
            None => ("http", http_client::Client::plain()),
        };
        // Without upstream TLS the connector only ever sees http URIs; it still needs a config.
        let mut tls = security.upstream.clone().map_or_else(plain_client_config, |c| (*c).clone());
        // The connector sets ALPN itself (http/1.1, from `enable_http1`) and refuses a config that has it.
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(UPSTREAM_CONNECTIONS_MAX)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let edges = cdn::Edges::new(&names, spec.lab.cdn.cache_bytes_max);
        Ok(Router {
            policy: Policy::new(&names, &routing),
            routing,
            regions,
            region_one_way_ms,
            defects: spec.lab.defects.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(spec.lab.router.seed)),
            client,
            scheme,
            probe,
            tokens: security.tokens,
            edges,
            rejected: Rejected::default(),
            retries: Retries::default(),
        })
    }

    /// Which regions may get traffic now.
    fn eligible(&self) -> Vec<bool> {
        let ignore = self.defects.router_ignores_health || self.defects.router_never_fails_over;
        self.regions.iter().map(|r| ignore || r.healthy.load(Ordering::Acquire)).collect()
    }

    /// Passive health and the retry decision after one attempt at `region`: a failed connection ejects it at
    /// once; a 5xx answer or a failed exchange counts towards `CONSECUTIVE_5XX_MAX`, and any other answer resets
    /// the count. Returns why to try the next candidate, if the request should be: always after a failed
    /// connection (nothing reached the region), and for idempotent requests after a 503 or a failed exchange.
    /// Under `router_never_fails_over` nothing is ejected and nothing retried.
    fn after_attempt(
        &self,
        region: &RegionState,
        result: &Result<Response<Bytes>, SendError>,
        idempotent: bool,
    ) -> Option<RetryReason> {
        let never = self.defects.router_never_fails_over;
        let reason = match result {
            Err(SendError::Connect(e)) => {
                if !never && region.eject() {
                    tracing::warn!(region = %region.name, error = %e, "region ejected after a failed connection");
                }
                Some(RetryReason::ConnectFailure)
            }
            Err(SendError::Other(_)) => {
                self.count_5xx(region);
                idempotent.then_some(RetryReason::ExchangeFailure)
            }
            Ok(resp) if resp.status().is_server_error() => {
                self.count_5xx(region);
                (idempotent && resp.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(RetryReason::Status503)
            }
            Ok(_) => {
                region.consecutive_5xx.store(0, Ordering::Relaxed);
                None
            }
        };
        if never { None } else { reason }
    }

    /// Counts a 5xx from `region`; ejects it at `CONSECUTIVE_5XX_MAX` in a row (not under
    /// `router_never_fails_over`).
    fn count_5xx(&self, region: &RegionState) {
        let n = region.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= CONSECUTIVE_5XX_MAX && !self.defects.router_never_fails_over {
            region.ejections_5xx.fetch_add(1, Ordering::Relaxed);
            if region.eject() {
                tracing::warn!(region = %region.name, consecutive = n, "region ejected after consecutive 5xx answers");
            }
        }
    }

    /// Tries `candidates` in order (at most two attempts): sends to `send_to(index)` what `attempt` sends, and
    /// moves on when `after_attempt` says so. Returns the region index and how the last attempt ended, or
    /// `None` when no candidate could be admitted. `admit_from` picks the next candidate from the rest of the
    /// list (the traffic dial, or just the next one).
    async fn try_candidates<'a>(
        &self,
        candidates: &[usize],
        idempotent: bool,
        mut admit_from: impl FnMut(&[usize]) -> Option<(usize, Option<Slot>)>,
        attempt: impl Fn(usize, bool) -> BoxFuture<'a, Result<Response<Bytes>, SendError>>,
    ) -> Option<(usize, Attempt)> {
        let mut next = 0;
        let mut last = None;
        let mut retrying: Option<RetryReason> = None;
        for n in 0..2 {
            let Some((pos, slot)) = candidates.get(next..).and_then(&mut admit_from) else {
                break;
            };
            let index = candidates[next + pos];
            next += pos + 1;
            if let Some(reason) = retrying {
                self.retries.count(reason);
            }
            let result = attempt(index, pos > 0 || n > 0).await;
            drop(slot);
            retrying = self.after_attempt(&self.regions[index], &result, idempotent);
            last = Some((
                index,
                match result {
                    Ok(resp) => Attempt::Answer(resp),
                    Err(SendError::Connect(e) | SendError::Other(e)) => Attempt::Failed(e),
                },
            ));
            if retrying.is_none() {
                break;
            }
        }
        last
    }

    fn candidates(&self, record: RecordKind, location: &str, defects: &Defects) -> Vec<usize> {
        let eligible = self.eligible();
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        self.policy.candidates(record, location, &eligible, defects, &mut *rng)
    }

    /// The client's location: the header, or the default location without it; unknown -> 400.
    fn location(&self, headers: &HeaderMap) -> Result<String, Box<Response<Body>>> {
        let Some(v) = headers.get(LOCATION_HEADER) else {
            return Ok(self.routing.default_location.clone());
        };
        let loc = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if self.routing.locations.contains_key(&loc) {
            return Ok(loc);
        }
        self.rejected.bad_location.fetch_add(1, Ordering::Relaxed);
        let known: Vec<&str> = self.routing.locations.keys().map(String::as_str).collect();
        Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "unknown_location",
            &format!("X-Client-Location {:?} is not a known location; known locations are {}", v, known.join(", ")),
        )))
    }

    /// The region `X-Route-To` forces, if the header is present; unknown -> 400, unhealthy -> 503.
    fn forced(&self, headers: &HeaderMap) -> Result<Option<usize>, Box<Response<Body>>> {
        let Some(v) = headers.get(ROUTE_TO_HEADER) else {
            return Ok(None);
        };
        let name = String::from_utf8_lossy(v.as_bytes());
        match self.policy.forced(&name, &self.eligible()) {
            Ok(index) => Ok(Some(index)),
            Err(e) => {
                let status = match e {
                    policy::RouteToError::Unknown { .. } => {
                        self.rejected.unknown_region.fetch_add(1, Ordering::Relaxed);
                        StatusCode::BAD_REQUEST
                    }
                    policy::RouteToError::Unhealthy(_) => {
                        self.rejected.region_unhealthy.fetch_add(1, Ordering::Relaxed);
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                };
                Err(Box::new(error_response(status, e.code(), &e.to_string())))
            }
        }
    }

    /// Sends one request to `region` and buffers the answer.
    async fn send(
        &self,
        region: &RegionState,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, SendError> {
        if let Some(e) = region.unreachable() {
            return Err(SendError::Connect(e));
        }
        let exchange = async {
            let _permit = region.upstream.acquire().await.map_err(|_| SendError::Other("router stopping".into()))?;
            let uri = format!("{}://{}{}", self.scheme, region.addr, path_and_query);
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if let Some(h) = req.headers_mut() {
                for (name, value) in headers {
                    if !is_hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                        h.append(name.clone(), value.clone());
                    }
                }
            }
            let req = req.body(Full::new(body)).map_err(|e| SendError::Other(format!("bad request: {e}")))?;
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(format!("cannot connect to {} ({}): {e:?}", region.name, region.addr))
                } else {
                    SendError::Other(format!("{} ({}) failed: {e:?}", region.name, region.addr))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, RESPONSE_BODY_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| SendError::Other(format!("cannot read the answer of {}: {e}", region.name)))?
                .to_bytes();
            Ok(Response::from_parts(parts, bytes))
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Other(format!("{} did not answer within {UPSTREAM_TIMEOUT:?}", region.name))),
        }
    }

    /// A routed request: pick by the record, overflow by capacity, emulate the client's WAN, forward, and
    /// retry once at the next candidate after a connection failure (any failure, for idempotent methods).
    async fn route(&self, record: RecordKind, req: Request<Incoming>) -> Response<Body> {
        let arrival = Instant::now();
        let location = match self.location(req.headers()) {
            Ok(l) => l,
            Err(resp) => return with_route_headers(*resp, record, None, None),
        };
        let forced = match self.forced(req.headers()) {
            Ok(f) => f,
            Err(resp) => return with_route_headers(*resp, record, Some(&location), None),
        };
        let (parts, body) = req.into_parts();
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(resp) => {
                self.rejected.bad_body.fetch_add(1, Ordering::Relaxed);
                return with_route_headers(resp.map(Full::new), record, Some(&location), None);
            }
        };
        // A forced region is the only candidate: no overflow and no retry elsewhere, or the measurement would
        // be of another region.
        let candidates = match forced {
            Some(index) => vec![index],
            None => self.candidates(record, &location, &self.defects),
        };
        if candidates.is_empty() {
            self.rejected.no_healthy_region.fetch_add(1, Ordering::Relaxed);
            let resp = error_response(StatusCode::SERVICE_UNAVAILABLE, "no_healthy_region", "no region is healthy");
            return with_route_headers(resp, record, Some(&location), None);
        }
        self.forward(record, arrival, &location, &candidates, &parts, body).await
    }

    /// Sends a routed request to the first candidate with room in its dial (after the client's one-way latency),
    /// and once more to the next one when `after_attempt` says so; answers with the last attempt's answer, a 502
    /// if it failed, or 503 `no_capacity` when no candidate had room.
    async fn forward(
        &self,
        record: RecordKind,
        arrival: Instant,
        location: &str,
        candidates: &[usize],
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Response<Body> {
        let idempotent =
            matches!(parts.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let ignore_capacity = self.defects.router_ignores_capacity;
        let outcome = self
            .try_candidates(
                candidates,
                idempotent,
                |rest| admit(&self.regions, rest, ignore_capacity).map(|(pos, slot)| (pos, Some(slot))),
                |index, elsewhere| {
                    let body = body.clone();
                    Box::pin(async move {
                        let region = &self.regions[index];
                        if elsewhere {
                            region.overflow_in.fetch_add(1, Ordering::Relaxed);
                        }
                        crate::sleep_until(arrival + ms(self.policy.one_way_ms(location, index))).await;
                        self.send(region, &parts.method, path, &parts.headers, body).await
                    })
                },
            )
            .await;
        match outcome {
            Some((index, Attempt::Answer(resp))) => {
                let region = &self.regions[index];
                region.served[record.index()].fetch_add(1, Ordering::Relaxed);
                crate::sleep_until(Instant::now() + ms(self.policy.one_way_ms(location, index))).await;
                let (p, b) = resp.into_parts();
                let mut resp = Response::from_parts(p, Full::new(b));
                strip_hop_by_hop(resp.headers_mut());
                with_route_headers(resp, record, Some(location), Some(&region.name))
            }
            Some((index, Attempt::Failed(e))) => {
                self.rejected.upstream_failed.fetch_add(1, Ordering::Relaxed);
                let resp = error_response(StatusCode::BAD_GATEWAY, "upstream_failed", &e);
                with_route_headers(resp, record, Some(location), Some(&self.regions[index].name))
            }
            None => {
                self.rejected.no_capacity.fetch_add(1, Ordering::Relaxed);
                let resp = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_capacity",
                    "every healthy region is at its capacity; retry later",
                );
                with_route_headers(resp, record, Some(location), None)
            }
        }
    }

    /// `GET /router/status`.
    async fn status(&self) -> serde_json::Value {
        let regions: Vec<serde_json::Value> = self.regions.iter().map(|r| r.status(self.scheme)).collect();
        let rj = &self.rejected;
        let rt = &self.retries;
        serde_json::json!({
            "regions": regions,
            "edges": self.edges.status(&self.regions).await,
            "rejected": {
                "bad_location": rj.bad_location.load(Ordering::Relaxed),
                "no_healthy_region": rj.no_healthy_region.load(Ordering::Relaxed),
                "no_capacity": rj.no_capacity.load(Ordering::Relaxed),
                "upstream_failed": rj.upstream_failed.load(Ordering::Relaxed),
                "bad_body": rj.bad_body.load(Ordering::Relaxed),
                "unknown_region": rj.unknown_region.load(Ordering::Relaxed),
                "region_unhealthy": rj.region_unhealthy.load(Ordering::Relaxed),
            },
            "retries": {
                "total": rt.connect_failure.load(Ordering::Relaxed) + rt.status_503.load(Ordering::Relaxed)
                    + rt.exchange_failure.load(Ordering::Relaxed),
                "after_connect_failure": rt.connect_failure.load(Ordering::Relaxed),
                "after_503": rt.status_503.load(Ordering::Relaxed),
                "after_exchange_failure": rt.exchange_failure.load(Ordering::Relaxed),
            },
            "ejections_total": self.regions.iter().map(|r| r.ejections.load(Ordering::Relaxed)).sum::<u64>(),
            "defects": self.defects,
        })
    }

    /// Whether the request's `Authorization` header grants `needed` (always, without tokens).
    fn authorize(&self, headers: &HeaderMap, needed: Scope) -> Result<(), AuthError> {
        let Some(tokens) = &self.tokens else { return Ok(()) };
        let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        tokens.authorize(header, needed).map(|_| ())
    }

    async fn handle(self: Arc<Self>, door: Door, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if let Door::Status = door
            && let Err(e) = self.authorize(req.headers(), Scope::Admin)
        {
            tracing::info!(path = req.uri().path(), status = e.status().as_u16(), "router status: request refused");
            return Ok(auth_error_bytes(&e).map(Full::new));
        }
        Ok(match door {
            Door::Record(record) => self.route(record, req).await,
            Door::Cdn => cdn::handle(&self, req).await,
            Door::Status if req.uri().path() == "/router/status" && req.method() == Method::GET => {
                json_response(StatusCode::OK, &self.status().await)
            }
            Door::Status => self.admin(req).await,
        })
    }
}

/// `PUT /router/regions/{name}/reachable`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReachableBody {
    reachable: bool,
}

impl Router {
    /// The status listener's other routes: `PUT /router/regions/{name}/reachable` with `{"reachable":false}` cuts
    /// the router off from a region (requests and health checks then fail as failed connections do) and
    /// `true` ends that; answers with the region's status.
    async fn admin(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let name = path.strip_prefix("/router/regions/").and_then(|p| p.strip_suffix("/reachable"));
        let Some(name) = name.filter(|n| !n.is_empty() && !n.contains('/')) else {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "the status listener serves GET /router/status and PUT /router/regions/{name}/reachable",
            );
        };
        if req.method() != Method::PUT {
            return error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use PUT");
        }
        let Some(region) = self.regions.iter().find(|r| r.name == name) else {
            let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
            let msg = format!("no region {name:?}; the regions are {}", known.join(", "));
            return error_response(StatusCode::NOT_FOUND, "unknown_region", &msg);
        };
        let body = match read_body(req.into_body()).await {
            Ok(b) => b,
            Err(resp) => return resp.map(Full::new),
        };
        let wanted: ReachableBody = match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => {
                let msg = format!("expected {{\"reachable\": bool}}: {e}");
                return error_response(StatusCode::BAD_REQUEST, "invalid_body", &msg);
            }
        };
        region.reachable.store(wanted.reachable, Ordering::Release);
        tracing::info!(region = %region.name, reachable = wanted.reachable, "client reachability set");
        json_response(StatusCode::OK, &region.status(self.scheme))
    }
}

/// Why an upstream exchange failed.
#[derive(Debug)]
enum SendError {
    /// No connection could be made: the region is down as far as the router can tell.
    Connect(String),
    /// The exchange failed after connecting (reset, timeout, broken answer).
    Other(String),
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0) / 1000.0)
}

/// Buffers a request body up to `REQUEST_BODY_BYTES_MAX`.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Bytes>> {
    match Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(error_bytes(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the router buffers request bodies up to {REQUEST_BODY_BYTES_MAX} bytes"),
        )),
        Err(e) => Err(error_bytes(StatusCode::BAD_REQUEST, "invalid_body", &format!("cannot read the body: {e}"))),
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for n in drop {
        headers.remove(n);
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn with_route_headers(
    mut resp: Response<Body>,
    record: RecordKind,
    location: Option<&str>,
    served_by: Option<&str>,
) -> Response<Body> {
    let h = resp.headers_mut();
    set(h, "x-route-record", record.name());
    if let Some(l) = location {
        set(h, "x-client-location", l);
    }
    if let Some(s) = served_by {
        set(h, "x-served-by", s);
    }
    resp
}

fn json_bytes<T: Serialize>(status: StatusCode, value: &T) -> Response<Bytes> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_bytes(status, value).map(Full::new)
}

/// A JSON `ErrorBody` answer, unwrapped.
pub(crate) fn error_bytes(status: StatusCode, code: &str, message: &str) -> Response<Bytes> {
    json_bytes(status, &ErrorBody { error: code.to_string(), message: message.to_string() })
}

/// A JSON `ErrorBody` answer.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    error_bytes(status, code, message).map(Full::new)
}

/// A 401 or 403 answer with the JSON `ErrorBody` and, for 401, the `WWW-Authenticate` challenge.
pub(crate) fn auth_error_bytes(e: &AuthError) -> Response<Bytes> {
    let body = e.body();
    let mut resp = error_bytes(e.status(), &body.error, &body.message);
    if let Some(challenge) = e.www_authenticate() {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    resp
}

/// A client config that trusts nothing, for a connector that only ever dials plain HTTP.
fn plain_client_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
}

/// A listener on `ip` with a backlog of `LISTEN_BACKLOG`.
fn bind(ip: IpAddr) -> std::io::Result<TcpListener> {
    let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves HTTP/1.1 keep-alive connections on `listener` until `stop`, over TLS when `tls` is given: each
/// connection's handshake runs in its task under `HANDSHAKE_TIMEOUT`; a failed one is logged at debug and dropped.
async fn serve(
    router: Arc<Router>,
    listener: TcpListener,
    door: Door,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, for example: back off instead of spinning.
                    tracing::warn!(?door, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| router.clone().handle(door, req));
            let mut http = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                None => http.keep_alive(true).serve_connection(TokioIo::new(stream), svc).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => http.keep_alive(true).serve_connection(TokioIo::new(tls), svc).await,
                    Ok(Err(e)) => return tracing::debug!(?door, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(?door, "TLS handshake timed out"),
                },
            };
            if let Err(e) = result {
                tracing::debug!(?door, error = %e, "client connection ended with an error");
            }
        });
    }
}

/// Runs the router from the spec until SIGTERM or SIGINT.
pub async fn run_router(spec_path: &Path) -> Result<(), LabError> {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!(error = %e, "cannot set the parent-death signal");
    }
    let spec = Spec::load(spec_path)?;
    let security = RouterSecurity::load(&spec.dir, &spec.lab.defects)?;
    let tls = tokio_rustls::TlsAcceptor::from(Pki::load(&spec.dir)?.server_config(ROUTER, spec.lab.tls_min())?);
    let router = Arc::new(Router::new(&spec, security)?);
    let ip = spec.lab.router_ip();
    let stop = CancellationToken::new();
    let cfg = &spec.lab.router;
    for region in &router.regions {
        tokio::spawn(health::check_loop(
            region.clone(),
            router.probe.clone(),
            Duration::from_millis(cfg.health_interval_ms),
            Duration::from_millis(cfg.health_timeout_ms),
            cfg.health_failures,
            cfg.health_successes,
            stop.clone(),
        ));
    }
    let slots = Arc::new(Semaphore::new(CLIENT_CONNECTIONS_MAX));
    let mut records = BTreeMap::new();
    let mut doors = Vec::new();
    for kind in RecordKind::ALL {
        let l =
            bind(ip).map_err(|e| LabError::io(format!("cannot listen for the {} record on {ip}", kind.name()), e))?;
        let addr = l.local_addr().map_err(|e| LabError::io("cannot read a record address", e))?;
        records.insert(kind.name().to_string(), addr);
        doors.push((Door::Record(kind), l));
    }
    let cdn = bind(ip).map_err(|e| LabError::io(format!("cannot listen for the CDN on {ip}"), e))?;
    let cdn_addr = cdn.local_addr().map_err(|e| LabError::io("cannot read the CDN address", e))?;
    doors.push((Door::Cdn, cdn));
    let status = bind(ip).map_err(|e| LabError::io(format!("cannot listen for the router status on {ip}"), e))?;
    let status_addr = status.local_addr().map_err(|e| LabError::io("cannot read the status address", e))?;
    doors.push((Door::Status, status));
    for (door, l) in doors {
        tokio::spawn(serve(router.clone(), l, door, Some(tls.clone()), slots.clone(), stop.clone()));
    }
    let ready = RouterReady { records, cdn_addr, status_addr, pid: std::process::id() };
    print_ready(&ready)?;
    tracing::info!(%ip, %cdn_addr, %status_addr, "router ready");
    wait_for_signal().await?;
    tracing::info!("router shutting down");
    stop.cancel();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, capacity: u32) -> Arc<RegionState> {
        Arc::new(RegionState::new(name, "127.0.0.1:1".parse().unwrap(), capacity))
    }

    /// Goal: the traffic dial: a full region overflows to the next candidate, slots free on drop, all full
    /// means no admission, and `router_ignores_capacity` never overflows.
    #[test]
    fn capacity_overflows_to_next_candidate() {
        let regions = vec![region("a", 2), region("b", 1), region("c", 1)];
        let order = [2, 0, 1];
        let (p1, s1) = admit(&regions, &order, false).unwrap();
        let (p2, s2) = admit(&regions, &order, false).unwrap();
        let (p3, s3) = admit(&regions, &order, false).unwrap();
        let (p4, s4) = admit(&regions, &order, false).unwrap();
        assert_eq!((p1, p2, p3, p4), (0, 1, 1, 2), "c, then a twice, then b");
        assert!(admit(&regions, &order, false).is_none(), "every region is full");
        assert_eq!(regions.iter().map(|r| r.in_flight.load(Ordering::Relaxed)).collect::<Vec<_>>(), vec![2, 1, 1]);
        drop(s2);
        assert_eq!(admit(&regions, &order, false).map(|(p, _)| p), Some(1), "a has room again");
        drop((s1, s3, s4));
        assert!(regions.iter().all(|r| r.in_flight.load(Ordering::Relaxed) == 0));
        // Ignoring capacity: the first candidate takes everything.
        let held: Vec<Slot> = (0..5)
            .map(|_| admit(&regions, &order, true).unwrap())
            .map(|(p, s)| {
                assert_eq!(p, 0);
                s
            })
            .collect();
        assert_eq!(regions[2].in_flight.load(Ordering::Relaxed), 5);
        drop(held);
        assert!(admit(&regions, &[], false).is_none());
    }

    /// Goal: ejection marks a region down at once and counts it.
    #[test]
    fn ejection_marks_down() {
        let r = region("a", 1);
        assert!(r.eject());
        assert!(!r.healthy.load(Ordering::Relaxed));
        assert!(!r.eject());
        assert_eq!(r.ejections.load(Ordering::Relaxed), 2);
    }
}

/// Router behaviour against stub regions: retries, outlier ejection, `router_never_fails_over`, reachability.
#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::config::LabConfig;
    use std::sync::atomic::AtomicU16;

    /// A region stand-in that answers every request with a settable status and counts them.
    struct Stub {
        addr: SocketAddr,
        status: Arc<AtomicU16>,
        hits: Arc<AtomicU64>,
    }

    async fn stub() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicU64::new(0));
        let (s, h) = (status.clone(), hits.clone());
        let app = axum::Router::new().fallback(move || {
            let (s, h) = (s.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::Relaxed);
                (StatusCode::from_u16(s.load(Ordering::Relaxed)).unwrap(), "stub")
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Stub { addr, status, hits }
    }

    /// A router over the default three regions, region i at `addrs[i]`.
    fn router_for(addrs: &[SocketAddr], defects: Defects) -> Router {
        let cfg = LabConfig { defects, ..LabConfig::default() };
        let mut spec = Spec::new(&cfg, Path::new("/nonexistent")).unwrap();
        for (r, a) in spec.regions.iter_mut().zip(addrs) {
            r.ip = a.ip();
            r.http_port = a.port();
        }
        Router::new(&spec, RouterSecurity::none()).unwrap()
    }

    /// The default location and its candidates on the latency record, nearest first.
    fn order(router: &Router) -> (String, Vec<usize>) {
        let loc = router.routing.default_location.clone();
        let c = router.candidates(RecordKind::Latency, &loc, &router.defects);
        (loc, c)
    }

    async fn call(router: &Router, method: &str, loc: &str, candidates: &[usize]) -> (StatusCode, String) {
        let (parts, ()) = Request::builder().method(method).uri("/v1/kv/k").body(()).unwrap().into_parts();
        let resp = router.forward(RecordKind::Latency, Instant::now(), loc, candidates, &parts, Bytes::new()).await;
        let served = resp.headers().get("x-served-by").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (resp.status(), served)
    }

    fn hits(s: &Stub) -> u64 {
        s.hits.load(Ordering::Relaxed)
    }

    /// Goal: a 503 to an idempotent request is retried once at the next candidate, a 503 to a POST and to a
    /// forced (single-candidate) request is not, and `CONSECUTIVE_5XX_MAX` 5xx in a row eject the region, which
    /// then loses its place in the candidates.
    #[tokio::test]
    async fn retry_on_503_and_eject_after_consecutive_5xx() {
        let stubs = [stub().await, stub().await, stub().await];
        let router = router_for(&stubs.each_ref().map(|s| s.addr), Defects::default());
        let (loc, cands) = order(&router);
        let (first, second) = (cands[0], cands[1]);
        stubs[first].status.store(503, Ordering::Relaxed);

        let (status, served) = call(&router, "GET", &loc, &cands).await;
        assert_eq!((status, served.as_str()), (StatusCode::OK, router.regions[second].name.as_str()));
        assert_eq!((hits(&stubs[first]), hits(&stubs[second])), (1, 1));
        assert_eq!(router.retries.status_503.load(Ordering::Relaxed), 1);

        let (status, served) = call(&router, "POST", &loc, &cands).await;
        assert_eq!((status, served.as_str()), (StatusCode::SERVICE_UNAVAILABLE, router.regions[first].name.as_str()));
        assert_eq!(hits(&stubs[second]), 1, "a POST is not retried after a 503");

        let (status, _) = call(&router, "GET", &loc, &[first]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a forced request gets its region's answer");
        assert_eq!(hits(&stubs[second]), 1, "a forced request is never retried elsewhere");
        assert_eq!(router.retries.status_503.load(Ordering::Relaxed), 1);
        assert!(router.regions[first].healthy.load(Ordering::Relaxed), "three 5xx do not eject");

        for _ in 0..2 {
            call(&router, "GET", &loc, &cands).await;
        }
        let r = &router.regions[first];
        assert!(!r.healthy.load(Ordering::Relaxed), "{CONSECUTIVE_5XX_MAX} 5xx in a row eject");
        assert_eq!((r.ejections.load(Ordering::Relaxed), r.ejections_5xx.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(router.regions[second].consecutive_5xx.load(Ordering::Relaxed), 0);
        let (_, now) = order(&router);
        assert!(!now.contains(&first), "an ejected region gets no traffic");
        let status = router.status().await;
        assert_eq!(status["retries"]["after_503"], 3);
        assert_eq!(status["ejections_total"], 1);
    }

    /// Goal: under `router_never_fails_over` a request to a dead region fails (no retry, no ejection), an
    /// unhealthy region still gets traffic, and 5xx answers never eject.
    #[tokio::test]
    async fn never_fails_over() {
        let stubs = [stub().await, stub().await, stub().await];
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let mut addrs = stubs.each_ref().map(|s| s.addr);
        let (loc, cands) = order(&router_for(&addrs, Defects::default()));
        let first = cands[0];
        addrs[first] = dead;
        let defects = Defects { router_never_fails_over: true, ..Defects::default() };
        let router = router_for(&addrs, defects);
        router.regions[first].eject();
        let (_, now) = order(&router);
        assert_eq!(now[0], first, "health is ignored");

        let (status, served) = call(&router, "GET", &loc, &now).await;
        assert_eq!((status, served.as_str()), (StatusCode::BAD_GATEWAY, router.regions[first].name.as_str()));
        assert_eq!(stubs.iter().map(hits).sum::<u64>(), 0, "no retry elsewhere");
        assert_eq!(router.regions[first].ejections.load(Ordering::Relaxed), 1, "only the manual ejection");

        let second = cands[1];
        stubs[second].status.store(503, Ordering::Relaxed);
        for _ in 0..CONSECUTIVE_5XX_MAX + 1 {
            let (status, _) = call(&router, "GET", &loc, &[second, cands[2]]).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(hits(&stubs[cands[2]]), 0, "no retry after a 503");
        assert!(router.regions[second].healthy.load(Ordering::Relaxed), "5xx never eject");
        assert_eq!(router.retries.status_503.load(Ordering::Relaxed), 0);
    }

    /// Goal: `PUT /router/regions/{name}/reachable` cuts the router off from a region: a request there fails as
    /// a failed connection (ejection, retry at the next candidate) without reaching it; bad bodies and unknown
    /// regions get JSON errors.
    #[tokio::test]
    async fn unreachable_region_fails_like_a_failed_connection() {
        let stubs = [stub().await, stub().await, stub().await];
        let router = Arc::new(router_for(&stubs.each_ref().map(|s| s.addr), Defects::default()));
        let (loc, cands) = order(&router);
        let (first, second) = (cands[0], cands[1]);
        let listener = bind("127.0.0.1".parse().unwrap()).unwrap();
        let admin = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(router.clone(), listener, Door::Status, None, Arc::new(Semaphore::new(8)), stop.clone()));
        let name = router.regions[first].name.clone();
        let put = |path: String, body: &'static str| async move {
            crate::http_client::request("PUT", admin, &path, Some(body.as_bytes()), Duration::from_secs(5))
                .await
                .unwrap()
        };
        let (code, body) = put(format!("/router/regions/{name}/reachable"), r#"{"reachable":false}"#).await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["reachable"], false);
        assert_eq!(put(format!("/router/regions/{name}/reachable"), r#"{"up":1}"#).await.0, 400);
        assert_eq!(put("/router/regions/nowhere/reachable".into(), r#"{"reachable":false}"#).await.0, 404);

        let (status, served) = call(&router, "GET", &loc, &cands).await;
        assert_eq!((status, served.as_str()), (StatusCode::OK, router.regions[second].name.as_str()));
        assert_eq!(hits(&stubs[first]), 0, "nothing reached the cut-off region");
        assert!(!router.regions[first].healthy.load(Ordering::Relaxed));
        assert_eq!(router.retries.connect_failure.load(Ordering::Relaxed), 1);

        assert_eq!(put(format!("/router/regions/{name}/reachable"), r#"{"reachable":true}"#).await.0, 200);
        assert!(router.regions[first].unreachable().is_none());
        stop.cancel();
    }
}

/// The router over TLS with tokens, against stub regions that serve TLS with the lab's certificates.
#[cfg(test)]
mod tls_tests {
    use super::*;
    use crate::auth::{ADMIN, READER, WRITER};
    use crate::config::LabConfig;
    use crate::pki::{PkiOptions, TlsMin};
    use crate::secret_file::TestDir;

    const WAIT: Duration = Duration::from_secs(10);

    /// A region stand-in over TLS (the region's certificate) that answers every request with 200 and the
    /// `Authorization` header it got (`-` without one); catalogue answers are `public, max-age=60`.
    async fn tls_stub(pki: &Pki, region: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(region, TlsMin::Tls13).unwrap());
        let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
            let auth =
                req.headers().get(header::AUTHORIZATION).map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
            let cache =
                if req.uri().path().starts_with(cdn::CACHEABLE_PREFIX) { "public, max-age=60" } else { "no-store" };
            ([(header::CACHE_CONTROL, cache)], auth)
        });
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        addr
    }

    struct Lab {
        _dir: TestDir,
        pki: Pki,
        tokens: Tokens,
        status: SocketAddr,
        record: SocketAddr,
        cdn: SocketAddr,
        stop: CancellationToken,
    }

    /// Three TLS stub regions on 127.0.0.1 and a router (status, latency record, CDN) over TLS in front of them.
    async fn lab(defects: Defects) -> Lab {
        let dir = TestDir::new("router-tls");
        let cfg = LabConfig { defects: defects.clone(), ..LabConfig::default() };
        let mut spec = Spec::new(&cfg, &dir).unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let regions: Vec<(String, IpAddr)> = spec.regions.iter().map(|r| (r.name.clone(), local)).collect();
        let pki = Pki::create(&dir, &regions, local, PkiOptions::default()).unwrap();
        let tokens = Tokens::create(&dir).unwrap();
        for r in &mut spec.regions {
            let addr = tls_stub(&pki, &r.name).await;
            (r.ip, r.http_port) = (addr.ip(), addr.port());
        }
        let router = Arc::new(Router::new(&spec, RouterSecurity::load(&dir, &defects).unwrap()).unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(ROUTER, TlsMin::Tls13).unwrap());
        let stop = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(64));
        let mut addrs = Vec::new();
        for door in [Door::Status, Door::Record(RecordKind::Latency), Door::Cdn] {
            let listener = bind(local).unwrap();
            addrs.push(listener.local_addr().unwrap());
            tokio::spawn(serve(router.clone(), listener, door, Some(acceptor.clone()), slots.clone(), stop.clone()));
        }
        Lab { _dir: dir, pki, tokens, status: addrs[0], record: addrs[1], cdn: addrs[2], stop }
    }

    impl Lab {
        fn client(&self, who: Option<&str>) -> http_client::Client {
            http_client::Client::tls(self.pki.client_config().unwrap(), who.map(|w| self.tokens.token_of(w).unwrap()))
        }

        async fn get(&self, who: Option<&str>, addr: SocketAddr, path: &str) -> (u16, String) {
            let (code, body) = self.client(who).request("GET", addr, path, None, WAIT).await.unwrap();
            (code, String::from_utf8(body).unwrap())
        }
    }

    /// Goal: the status listener needs the admin token (401 with a JSON body without one, 403 for a reader);
    /// a routed request reaches the stub region over TLS with the client's `Authorization` header; a plain-HTTP
    /// client gets nowhere.
    #[tokio::test]
    async fn status_needs_admin_and_authorization_is_forwarded() {
        let lab = lab(Defects::default()).await;
        let (code, body) = lab.get(None, lab.status, "/router/status").await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(serde_json::from_str::<ErrorBody>(&body).unwrap().error, "unauthorized");
        assert_eq!(lab.get(Some(READER), lab.status, "/router/status").await.0, 403);
        let (code, body) = lab.get(Some(ADMIN), lab.status, "/router/status").await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(status["regions"][0]["endpoint"].as_str().unwrap().starts_with("https://"));

        let (code, body) = lab.get(Some(WRITER), lab.record, "/v1/kv/k").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, format!("Bearer {}", lab.tokens.token_of(WRITER).unwrap()), "the region sees the token");
        let (code, body) = lab.get(None, lab.record, "/v1/kv/k").await;
        assert_eq!((code, body.as_str()), (200, "-"), "without a token the region decides (the stub lets it in)");

        let plain = http_client::Client::plain().request("GET", lab.record, "/v1/kv/k", None, WAIT).await;
        assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
        lab.stop.cancel();
    }

    /// Goal: a cacheable CDN request needs the read scope at the edge (a hit is never served without it), the
    /// origin fetch carries the client's header, and the `public` catalogue answer is stored and then hit.
    #[tokio::test]
    async fn cdn_checks_read_scope_and_caches_public_answers() {
        let lab = lab(Defects::default()).await;
        let client = lab.client(Some(READER));
        let (code, body) = client.request("GET", lab.cdn, "/v1/catalog/x", None, WAIT).await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(String::from_utf8(body).unwrap(), format!("Bearer {}", lab.tokens.token_of(READER).unwrap()));
        let (code, _) = client.request("GET", lab.cdn, "/v1/catalog/x", None, WAIT).await.unwrap();
        assert_eq!(code, 200);
        let (_, status) = lab.get(Some(ADMIN), lab.status, "/router/status").await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let hits: u64 = status["edges"].as_array().unwrap().iter().map(|e| e["hits"].as_u64().unwrap()).sum();
        assert_eq!(hits, 1, "the public answer to an authorized request was stored: {status}");
        let (code, body) = lab.get(None, lab.cdn, "/v1/catalog/x").await;
        assert_eq!(code, 401, "a cached answer is not served without a token: {body}");
        lab.stop.cancel();
    }

    /// Goal: under `auth_disabled` the status listener and the CDN let a request without a token through.
    #[tokio::test]
    async fn auth_disabled_lets_everything_through() {
        let lab = lab(Defects { auth_disabled: true, ..Defects::default() }).await;
        assert_eq!(lab.get(None, lab.status, "/router/status").await.0, 200);
        assert_eq!(lab.get(None, lab.cdn, "/v1/catalog/x").await.0, 200);
        lab.stop.cancel();
    }
}
