//! Global routing and CDN edges: the lab's traffic manager, one process in front of the regions.
//!
//! The router serves one listener per routing record (`latency`, `geolocation`, `weighted`, `failover`), like
//! one DNS name per routing policy, plus one listener for the CDN edges (`cdn`) and one for its status. A
//! request names its client location in `X-Client-Location`, or without it is placed by its address
//! (`[lab.router] client_networks`, as geo-DNS or anycast places a client; else the default location); the
//! record's policy (`policy`) orders the
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
//! The parts: `proxy` forwards routed requests (and the CDN's origin fetches), `cdn` holds the edges' caches,
//! `policy` orders the candidates of each record, `health` runs the active checks, `message` holds the HTTP
//! plumbing they share, and `info` what the supervisor and `lab.json` learn about the router. This module holds
//! the regions' shared state and traffic dial, and serves the listeners.
//!
//! Descriptors: at most `CLIENT_CONNECTIONS_MAX` client connections over all listeners, and at most
//! `UPSTREAM_CONNECTIONS_MAX` requests (so connections) to each region at once; 10,000 clients and three
//! regions need about 11,600 descriptors, under the 15,000 budget of one lab process.

pub mod cdn;
pub mod health;
pub mod info;
pub mod message;
pub mod policy;
pub mod proxy;

use crate::LabError;
use crate::auth::{Scope, Tokens};
use crate::config::Defects;
use crate::node::{print_ready, wait_for_signal};
use crate::pki::{Pki, ROUTER};
use crate::spec::Spec;
use health::HealthState;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use info::RouterReady;
use message::{Body, auth_error_bytes, authorize, error_response, json_response, read_body};
use policy::RecordKind;
use proxy::Proxy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most client connections the router holds over all its listeners; beyond it, new connections wait in the
/// listen backlog. Sized for 10,000 load-test connections plus slack.
pub const CLIENT_CONNECTIONS_MAX: usize = 12_000;
/// Most requests (and so pooled connections) to one region at once; more wait for a connection, like an
/// upstream connection pool of a real proxy. Defined with the config, which bounds the capacity by it.
pub use crate::config::UPSTREAM_CONNECTIONS_MAX;
/// Listen backlog of every listener, so that thousands of clients connecting at once are not refused.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Longest a client connection's TLS handshake may take before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    pub(crate) fn status(&self, scheme: &str) -> serde_json::Value {
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

/// Everything the router's listeners share: the routing proxy, the CDN edges, and who may use them.
pub struct Router {
    /// The routing records' reverse proxy, which the CDN edges fetch through too.
    proxy: Proxy,
    /// The CDN edges, one per region.
    edges: cdn::Edges,
    /// Who may use the status listener and read through the CDN; `None` under `auth_disabled`.
    tokens: Option<Tokens>,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy)]
enum Door {
    /// A routing record's listener.
    Record(RecordKind),
    /// The CDN edges' listener.
    Cdn,
    /// The status listener (admin only).
    Status,
}

impl Router {
    /// Builds the router's state from the spec: the proxy to the regions (config order) with the routing tables,
    /// and one CDN edge per region.
    pub fn new(spec: &Spec, security: RouterSecurity) -> Result<Router, LabError> {
        let proxy = Proxy::new(spec, security.upstream)?;
        let names: Vec<String> = spec.regions.iter().map(|r| r.name.clone()).collect();
        let edges = cdn::Edges::new(&names, spec.lab.cdn.cache_bytes_max);
        Ok(Router { proxy, edges, tokens: security.tokens })
    }

    async fn handle(self: Arc<Self>, door: Door, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if let Door::Status = door
            && let Err(e) = authorize(self.tokens.as_ref(), req.headers(), Scope::Admin)
        {
            tracing::info!(path = req.uri().path(), status = e.status().as_u16(), "router status: request refused");
            return Ok(auth_error_bytes(&e).map(Full::new));
        }
        Ok(match door {
            Door::Record(record) => self.proxy.route(record, req).await,
            Door::Cdn => cdn::handle(&self.proxy, &self.edges, self.tokens.as_ref(), req).await,
            Door::Status if req.uri().path() == "/router/status" && req.method() == Method::GET => {
                json_response(StatusCode::OK, &self.status().await)
            }
            Door::Status => self.admin(req).await,
        })
    }

    /// `GET /router/status`: the proxy's regions and counters, and the CDN edges'.
    async fn status(&self) -> serde_json::Value {
        let mut status = self.proxy.status();
        status["edges"] = self.edges.status(&self.proxy.regions).await;
        status
    }

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
        let Some(region) = self.proxy.regions.iter().find(|r| r.name == name) else {
            let known: Vec<&str> = self.proxy.regions.iter().map(|r| r.name.as_str()).collect();
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
        json_response(StatusCode::OK, &region.status(self.proxy.scheme))
    }
}

/// `PUT /router/regions/{name}/reachable`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReachableBody {
    reachable: bool,
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
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, peer)) => (s, peer.ip()),
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
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(proxy::ClientAddr(peer));
                router.clone().handle(door, req)
            });
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
    for region in &router.proxy.regions {
        tokio::spawn(health::check_loop(
            region.clone(),
            router.proxy.probe.clone(),
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
    use crate::auth::{ADMIN, READER, WRITER};
    use crate::config::LabConfig;
    use crate::http_client;
    use crate::pki::{PkiOptions, TlsMin};
    use crate::secret_file::TestDir;
    use hyper::header;
    use xregion_model::wire::ErrorBody;

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

    // The router over TLS with tokens, against stub regions that serve TLS with the lab's certificates.
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
