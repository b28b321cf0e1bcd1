//! The routing reverse proxy behind the routing records' listeners, which the CDN edges fetch through too.
//!
//! A routed request: the client location from `X-Client-Location` (or the default location), the record's
//! candidate regions (`policy`) or the region `X-Route-To` forces, the traffic dial (the first candidate with room,
//! `admit`), the location's one-way latency before forwarding and again before answering, and the exchange with
//! the region over the pooled client (at most `UPSTREAM_CONNECTIONS_MAX` at once per region, each bounded by
//! `UPSTREAM_TIMEOUT`). After each attempt the passive health check runs (`after_attempt`: a failed connection
//! ejects the region, `CONSECUTIVE_5XX_MAX` 5xx in a row eject it too), and a request whose connection failed, or
//! an idempotent one answered 503 or whose exchange failed, is tried once more at the next candidate.
//!
//! The proxy counts what it answered itself (`Rejected`) and what it retried (`Retries`) for `/router/status`.

use super::message::{Body, error_response, is_hop_by_hop, read_body, set, strip_hop_by_hop};
use super::policy::{self, Policy, RecordKind};
use super::{RegionState, Slot, UPSTREAM_CONNECTIONS_MAX, admit};
use crate::LabError;
use crate::config::Defects;
use crate::config::routing::Routing;
use crate::http_client;
use crate::spec::Spec;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Largest response body the router buffers from a region (a full scan page is far smaller).
pub const RESPONSE_BODY_BYTES_MAX: usize = 16 << 20;
/// Longest one upstream exchange may take, waiting for a pooled connection included.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection to a region may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The client location header.
pub const LOCATION_HEADER: &str = "x-client-location";
/// The header that forces a region on any record (latency measurements from every location to every region).
pub const ROUTE_TO_HEADER: &str = "x-route-to";
/// Consecutive 5xx answers (or failed exchanges) from a region that eject it, like Envoy's outlier detection
/// (`consecutive_5xx`); the active health checks then have to bring it back.
pub const CONSECUTIVE_5XX_MAX: u32 = 5;

/// Requests the router answered itself, by reason.
#[derive(Default)]
pub(super) struct Rejected {
    /// Unknown `X-Client-Location`.
    bad_location: AtomicU64,
    /// No region was eligible.
    no_healthy_region: AtomicU64,
    /// Every eligible region was at capacity.
    no_capacity: AtomicU64,
    /// The request failed upstream (after the retry, if any).
    pub(super) upstream_failed: AtomicU64,
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
pub(super) enum Attempt {
    /// The region answered (any status).
    Answer(Response<Bytes>),
    /// The exchange failed (the error names the region).
    Failed(String),
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: the region is down as far as the router can tell.
    Connect(String),
    /// The exchange failed after connecting (reset, timeout, broken answer).
    Other(String),
}

/// The address a request's connection came from, which the listener puts in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientAddr(pub std::net::IpAddr);

/// The routing reverse proxy: what every routed request and every CDN origin fetch goes through.
pub struct Proxy {
    /// The routing tables by region index.
    pub(super) policy: Policy,
    /// The routing tables by name (for status and errors).
    pub(super) routing: Routing,
    /// Regions in config order.
    pub(super) regions: Vec<Arc<RegionState>>,
    /// One-way ms between regions (edge -> origin), by index.
    pub(super) region_one_way_ms: Vec<Vec<f64>>,
    /// Deliberate defects.
    pub(super) defects: Defects,
    /// Seeded choices (weighted record, `router_ignores_location`).
    rng: Mutex<StdRng>,
    /// The pooled client to the regions.
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// `https` (the hardened lab) or `http` (tests against plain stubs).
    pub(super) scheme: &'static str,
    /// The health checks' client (no token: `/healthz` is public).
    pub(super) probe: http_client::Client,
    /// Requests answered by the router itself.
    pub(super) rejected: Rejected,
    /// Requests tried again at another region.
    retries: Retries,
}

impl Proxy {
    /// Builds the proxy from the spec: the regions' addresses (config order) and the routing tables, reaching the
    /// regions over TLS with `upstream` (trusting the lab's CA), or over plain HTTP without it.
    pub fn new(spec: &Spec, upstream: Option<Arc<rustls::ClientConfig>>) -> Result<Proxy, LabError> {
        let routing = spec.lab.routing()?;
        let names: Vec<String> = spec.regions.iter().map(|r| r.name.clone()).collect();
        let mut regions = Vec::new();
        for r in &spec.regions {
            if r.http_port == 0 {
                return Err(LabError::Spec(format!("the spec has no HTTP port for {}", r.name)));
            }
            let capacity = routing.capacity.get(&r.name).copied().unwrap_or(spec.lab.default_capacity());
            regions.push(Arc::new(RegionState::new(&r.name, SocketAddr::new(r.ip, r.http_port), capacity)));
        }
        let region_one_way_ms =
            names.iter().map(|a| names.iter().map(|b| spec.lab.rtt_ms(a, b) / 2.0).collect()).collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(false);
        let (scheme, probe) = match &upstream {
            Some(tls) => ("https", http_client::Client::tls(tls.clone(), None)),
            None => ("http", http_client::Client::plain()),
        };
        // Without upstream TLS the connector only ever sees http URIs; it still needs a config.
        let mut tls = upstream.clone().map_or_else(plain_client_config, |c| (*c).clone());
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
        Ok(Proxy {
            policy: Policy::new(&names, &routing),
            routing,
            regions,
            region_one_way_ms,
            defects: spec.lab.defects.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(spec.lab.router.seed)),
            client,
            scheme,
            probe,
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
    pub(super) async fn try_candidates<'a>(
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

    pub(super) fn candidates(&self, record: RecordKind, location: &str, defects: &Defects) -> Vec<usize> {
        let eligible = self.eligible();
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        self.policy.candidates(record, location, &eligible, defects, &mut *rng)
    }

    /// The client's location: the header, or without it the location of the client's address (its client
    /// network's, else the default location); an unknown location in the header -> 400.
    pub(super) fn location<B>(&self, req: &Request<B>) -> Result<String, Box<Response<Body>>> {
        let Some(v) = req.headers().get(LOCATION_HEADER) else {
            let peer = req.extensions().get::<ClientAddr>().map(|c| c.0);
            return Ok(self.routing.location_of(peer).to_string());
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
    pub(super) async fn send(
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
    pub(super) async fn route(&self, record: RecordKind, req: Request<Incoming>) -> Response<Body> {
        let arrival = Instant::now();
        let location = match self.location(&req) {
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

    /// The proxy's part of `GET /router/status`: each region, the requests it answered itself, the retries and
    /// the ejections (the router adds its CDN edges').
    pub(super) fn status(&self) -> serde_json::Value {
        let regions: Vec<serde_json::Value> = self.regions.iter().map(|r| r.status(self.scheme)).collect();
        let rj = &self.rejected;
        let rt = &self.retries;
        serde_json::json!({
            "regions": regions,
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
}

/// `v` milliseconds (negative counts as 0) as a `Duration`.
pub(super) fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0) / 1000.0)
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

/// A client config that trusts nothing, for a connector that only ever dials plain HTTP.
fn plain_client_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
}

/// The proxy against stub regions: retries, outlier ejection, `router_never_fails_over`, reachability.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LabConfig;
    use crate::router::{Door, Router, RouterSecurity, bind, serve};
    use std::path::Path;
    use std::sync::atomic::AtomicU16;
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;
    use tokio_util::sync::CancellationToken;

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
        let loc = router.proxy.routing.default_location.clone();
        let c = router.proxy.candidates(RecordKind::Latency, &loc, &router.proxy.defects);
        (loc, c)
    }

    async fn call(router: &Router, method: &str, loc: &str, candidates: &[usize]) -> (StatusCode, String) {
        let (parts, ()) = Request::builder().method(method).uri("/v1/kv/k").body(()).unwrap().into_parts();
        let resp =
            router.proxy.forward(RecordKind::Latency, Instant::now(), loc, candidates, &parts, Bytes::new()).await;
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
        assert_eq!((status, served.as_str()), (StatusCode::OK, router.proxy.regions[second].name.as_str()));
        assert_eq!((hits(&stubs[first]), hits(&stubs[second])), (1, 1));
        assert_eq!(router.proxy.retries.status_503.load(Ordering::Relaxed), 1);

        let (status, served) = call(&router, "POST", &loc, &cands).await;
        assert_eq!(
            (status, served.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, router.proxy.regions[first].name.as_str())
        );
        assert_eq!(hits(&stubs[second]), 1, "a POST is not retried after a 503");

        let (status, _) = call(&router, "GET", &loc, &[first]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a forced request gets its region's answer");
        assert_eq!(hits(&stubs[second]), 1, "a forced request is never retried elsewhere");
        assert_eq!(router.proxy.retries.status_503.load(Ordering::Relaxed), 1);
        assert!(router.proxy.regions[first].healthy.load(Ordering::Relaxed), "three 5xx do not eject");

        for _ in 0..2 {
            call(&router, "GET", &loc, &cands).await;
        }
        let r = &router.proxy.regions[first];
        assert!(!r.healthy.load(Ordering::Relaxed), "{CONSECUTIVE_5XX_MAX} 5xx in a row eject");
        assert_eq!((r.ejections.load(Ordering::Relaxed), r.ejections_5xx.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(router.proxy.regions[second].consecutive_5xx.load(Ordering::Relaxed), 0);
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
        router.proxy.regions[first].eject();
        let (_, now) = order(&router);
        assert_eq!(now[0], first, "health is ignored");

        let (status, served) = call(&router, "GET", &loc, &now).await;
        assert_eq!((status, served.as_str()), (StatusCode::BAD_GATEWAY, router.proxy.regions[first].name.as_str()));
        assert_eq!(stubs.iter().map(hits).sum::<u64>(), 0, "no retry elsewhere");
        assert_eq!(router.proxy.regions[first].ejections.load(Ordering::Relaxed), 1, "only the manual ejection");

        let second = cands[1];
        stubs[second].status.store(503, Ordering::Relaxed);
        for _ in 0..CONSECUTIVE_5XX_MAX + 1 {
            let (status, _) = call(&router, "GET", &loc, &[second, cands[2]]).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(hits(&stubs[cands[2]]), 0, "no retry after a 503");
        assert!(router.proxy.regions[second].healthy.load(Ordering::Relaxed), "5xx never eject");
        assert_eq!(router.proxy.retries.status_503.load(Ordering::Relaxed), 0);
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
        let name = router.proxy.regions[first].name.clone();
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
        assert_eq!((status, served.as_str()), (StatusCode::OK, router.proxy.regions[second].name.as_str()));
        assert_eq!(hits(&stubs[first]), 0, "nothing reached the cut-off region");
        assert!(!router.proxy.regions[first].healthy.load(Ordering::Relaxed));
        assert_eq!(router.proxy.retries.connect_failure.load(Ordering::Relaxed), 1);

        assert_eq!(put(format!("/router/regions/{name}/reachable"), r#"{"reachable":true}"#).await.0, 200);
        assert!(router.proxy.regions[first].unreachable().is_none());
        stop.cancel();
    }
}
