//! The probe contract over HTTP (see `docs/probe-contract.md`), the cacheable catalogue, the optional
//! `GET /v1/peers/rtt` (round trips to the peers, `rtt`) and `GET /v1/stats/store` (the store's waits and
//! durations, `store::timings::StoreTimings`), and the lab-only `PUT /lab/peers`, `PUT /lab/health`,
//! `PUT|GET /lab/fault` and `PUT /lab/clock`.
//!
//! Every `/v1/*` request passes `admit` first: it counts the request as in flight for its whole life (the
//! `slow_ms` defect and a catalogue `work_ms` included) and sheds it with `503 overloaded` beyond
//! `lab.node.max_in_flight`, as a real server at its limit would. Then a partial fault's `error_share` fails its
//! share of requests with `503 injected_fault`.
//!
//! The handlers are grouped by resource: `kv` (records, scans and erasures), `audit` (the audit log), `catalog`,
//! `stats` (replication, round trips, store timings, metrics) and `lab` (the lab-internal routes); `reply` builds
//! their answers. This module wires them, serves `/healthz`, and runs the layers every request passes:
//! counting, authorization (`needed_scope`) and admission.
//!
//! Every 4xx and 5xx answer is a JSON `ErrorBody`, including the ones axum would produce itself (unknown route,
//! wrong method, oversized body), so a client can always parse an error.

pub mod audit;
pub mod catalog;
pub mod kv;
pub mod lab;
pub(crate) mod reply;
pub mod stats;

use crate::auth::Scope;
use crate::node::Node;
use crate::node::security::ANONYMOUS;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use reply::{ApiError, Shared, err, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use xregion_model::wire::{BODY_BYTES_MAX, Health};

/// Serves the API until the node shuts down (then finishes in-flight requests).
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let shutdown = node.shutdown.clone();
    let app = router(node.clone());
    if let Some(config) = node.security.http_tls.clone() {
        crate::node::security::serve_tls(&node.region, listener, config, app, shutdown).await;
        return;
    }
    let result = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = result {
        tracing::error!(region = %node.region, error = %e, "HTTP server failed");
    }
}

/// The router; public so tests can drive it without a socket.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/kv", get(kv::scan))
        .route("/v1/kv/{*key}", get(kv::get_kv).put(kv::put_kv).delete(kv::delete_kv))
        .route("/v1/replication", get(stats::replication))
        .route("/v1/peers/rtt", get(stats::peers_rtt))
        .route("/v1/stats/store", get(stats::store_stats))
        .route("/v1/audit", get(audit::audit_page))
        .route("/v1/erase/{*key}", post(kv::erase))
        .route("/metrics", get(stats::metrics_text))
        .route("/v1/catalog/{item}", get(catalog::catalog))
        .route("/lab/peers", put(lab::set_peers))
        .route("/lab/health", put(lab::set_health))
        .route("/lab/fault", get(lab::get_fault).put(lab::set_fault))
        .route("/lab/clock", put(lab::set_clock))
        .merge(crate::node::app::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(node.clone(), admit))
        .layer(axum::middleware::from_fn_with_state(node.clone(), authorize))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(node)
}

async fn count_requests(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    metrics::counter!("xregion_http_requests_total", "route" => route, "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

/// Decrements the in-flight count when the request is done, whichever way it ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The scope a request needs; `None` for the public `GET /healthz`.
pub fn needed_scope(method: &axum::http::Method, path: &str) -> Option<Scope> {
    use axum::http::Method;
    if path == "/healthz" {
        return None;
    }
    if path.starts_with("/app/") {
        let read = *method == Method::GET || *method == Method::HEAD;
        return Some(if read { Scope::Read } else { Scope::Write });
    }
    if path == "/v1/audit" || path == "/metrics" || path.starts_with("/lab/") || !path.starts_with("/v1/") {
        return Some(if path.starts_with("/v1/") || path == "/metrics" || path.starts_with("/lab/") {
            Scope::Admin
        } else {
            // Unknown routes outside /v1 answer 404 to anyone who may read.
            Scope::Read
        });
    }
    if *method == Method::GET || *method == Method::HEAD { Some(Scope::Read) } else { Some(Scope::Write) }
}

/// Bearer-token authorization by route (`needed_scope`). A refused request gets 401 (with
/// `WWW-Authenticate`) or 403, a JSON `ErrorBody`, and an audit entry `denied` written before the answer. The
/// principal goes into the request's extensions for the handlers' audit entries.
async fn authorize(State(node): Shared, mut req: Request, next: Next) -> Response {
    let Some(needed) = needed_scope(req.method(), req.uri().path()) else { return next.run(req).await };
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match node.security.authorize(header, needed) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => {
            let status = e.status();
            let principal = match &e {
                crate::auth::AuthError::Forbidden { principal, .. } => principal.clone(),
                _ => ANONYMOUS.to_string(),
            };
            let path = req.uri().path().to_string();
            tracing::info!(region = %node.region, %principal, %path, status = status.as_u16(), "request refused");
            audit::audit(&node, &principal, "denied", &path, status.as_u16()).await;
            metrics::counter!("xregion_http_denied_total", "status" => status.as_u16().to_string()).increment(1);
            let body = serde_json::to_vec(&e.body()).unwrap_or_default();
            let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Some(challenge) = e.www_authenticate() {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static(challenge));
            }
            resp
        }
    }
}

/// Load shedding and the `slow_ms` defect for `/v1/*` and the application's `/app/*`; health, metrics and lab routes are never shed, so that
/// an overloaded region still answers its health checks (as a real one with a separate health port would).
async fn admit(State(node): Shared, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") && !req.uri().path().starts_with("/app/") {
        return next.run(req).await;
    }
    let now = node.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    let _guard = InFlight(&node.in_flight);
    if now > u64::from(node.settings.max_in_flight) {
        metrics::counter!("xregion_http_shed_total").increment(1);
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "region {} is at its limit of {} requests in flight; retry later or elsewhere",
                node.region, node.settings.max_in_flight
            ),
        )
        .into_response();
    }
    if node.fault().roll() {
        metrics::counter!("xregion_http_injected_faults_total").increment(1);
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "injected_fault",
            format!("region {} failed this request on purpose (a partial fault is injected)", node.region),
        )
        .into_response();
    }
    if node.defects.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(node.defects.slow_ms)).await;
    }
    next.run(req).await
}

/// else `degraded` while a partial fault is injected; else `ok`. Anything but `ok` answers 503.
async fn healthz(State(node): Shared) -> Response {
    let forced = node.health.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone());
    let status = if forced != "ok" {
        forced
    } else if node.is_fenced() {
        "fenced".to_string()
    } else if node.fault().fault.active() {
        "degraded".to_string()
    } else {
        forced
    };
    let body = Health { status: status.clone(), region: node.region.clone() };
    if status == "ok" {
        json(&body)
    } else {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    }
}

async fn not_found(req: Request) -> ApiError {
    err(StatusCode::NOT_FOUND, "not_found", format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    err(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

#[cfg(test)]
mod tests {
    use super::catalog::{CATALOG_LAST_MODIFIED, catalog_item, etag_matches};
    use super::*;
    use crate::config::Defects;
    use crate::layout::LabDir;
    use crate::node::testutil;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use xregion_model::Version;
    use xregion_model::fault::NodeFault;
    use xregion_model::wire::{AuditPage, EraseReceipt, Record, ReplicationStatus, ScanPage, StoreStats};

    async fn start(test: &str) -> (Arc<Node>, SocketAddr) {
        serve_node(test, testutil::node(test, "a", &["b"], Defects::default())).await
    }

    /// Serves `node`'s API on a fresh port.
    /// The admin client of each served address (each test's lab has its own CA and tokens).
    static CLIENTS: std::sync::Mutex<BTreeMap<SocketAddr, crate::http_client::Client>> =
        std::sync::Mutex::new(BTreeMap::new());
    /// The lab (test name) of each served address.
    static LABS: std::sync::Mutex<BTreeMap<SocketAddr, String>> = std::sync::Mutex::new(BTreeMap::new());

    /// Serves `node` (of lab `test`) over HTTPS on a fresh port; `call` then speaks to it as admin.
    async fn serve_node(test: &str, node: Arc<Node>) -> (Arc<Node>, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(node.clone(), listener));
        CLIENTS.lock().unwrap().insert(addr, testutil::client(test, Some(crate::auth::ADMIN)));
        LABS.lock().unwrap().insert(addr, test.to_string());
        (node, addr)
    }

    async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
        let client = CLIENTS.lock().unwrap()[&addr].clone();
        let (status, body) = client.request(method, addr, path, body, Duration::from_secs(10)).await.unwrap();
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e})"));
        (status, json)
    }

    /// Goal: the happy path of the contract: put, get, delete (tombstone 404 with its version), scan.
    #[tokio::test]
    async fn put_get_delete_scan() {
        let (node, addr) = start("http-happy").await;
        let (s, r) = call(addr, "PUT", "/v1/kv/users/1", Some(br#"{"value":"x"}"#)).await;
        assert_eq!(s, 200, "{r}");
        let put: Record = serde_json::from_value(r).unwrap();
        assert_eq!((put.value.as_deref(), put.region.as_str(), put.version.origin.as_str()), (Some("x"), "a", "a"));
        let (s, r) = call(addr, "GET", "/v1/kv/users/1", None).await;
        assert_eq!((s, serde_json::from_value::<Record>(r).unwrap()), (200, put.clone()));
        let (s, r) = call(addr, "DELETE", "/v1/kv/users/1", None).await;
        assert_eq!(s, 200);
        let del: Record = serde_json::from_value(r).unwrap();
        assert!(del.value.is_none() && del.version > put.version);
        let (s, r) = call(addr, "GET", "/v1/kv/users/1", None).await;
        assert_eq!((s, r["error"].as_str()), (404, Some("not_found")));
        assert_eq!(serde_json::from_value::<Version>(r["version"].clone()).unwrap(), del.version);
        let (s, r) = call(addr, "GET", "/v1/kv/users/2", None).await;
        assert_eq!((s, r.get("version")), (404, None));
        call(addr, "PUT", "/v1/kv/users/3", Some(br#"{"value":"y"}"#)).await;
        let (s, r) = call(addr, "GET", "/v1/kv?prefix=users/&limit=1", None).await;
        assert_eq!(s, 200);
        let page: ScanPage = serde_json::from_value(r).unwrap();
        assert_eq!(page.records.len(), 1);
        assert!(page.records[0].value.is_none(), "tombstones are listed");
        assert_eq!(page.next_after.as_deref(), Some("users/1"));
        let (_, r) = call(addr, "GET", "/v1/kv?prefix=users/&after=users/1", None).await;
        let page: ScanPage = serde_json::from_value(r).unwrap();
        assert_eq!((page.records.len(), page.next_after), (1, None));
        let (s, r) = call(addr, "GET", "/v1/replication", None).await;
        let rs: ReplicationStatus = serde_json::from_value(r).unwrap();
        assert_eq!((s, rs.head_seq, rs.peers[0].pending_entries), (200, 3, 3));
        let (s, r) = call(addr, "GET", "/healthz", None).await;
        assert_eq!((s, r["status"].as_str()), (200, Some("ok")));
        node.shutdown.cancel();
    }

    /// Goal: every bad request gets the right status and a JSON ErrorBody, including axum's own rejections.
    #[tokio::test]
    async fn bad_requests_get_json_errors() {
        let (node, addr) = start("http-bad").await;
        let big = format!(r#"{{"value":"{}"}}"#, "x".repeat(BODY_BYTES_MAX));
        /// method, path, body, expected status, expected error code
        type Case<'a> = (&'a str, &'a str, Option<&'a [u8]>, u16, &'a str);
        let cases: Vec<Case> = vec![
            ("PUT", "/v1/kv/a%20b", Some(br#"{"value":"x"}"#), 400, "invalid_key"),
            ("GET", "/v1/kv/bad*key", None, 400, "invalid_key"),
            ("PUT", "/v1/kv/k", Some(b"not json"), 400, "invalid_body"),
            ("PUT", "/v1/kv/k", Some(br#"{"value":"x","extra":1}"#), 400, "invalid_body"),
            ("PUT", "/v1/kv/k", Some(br#"{"value":1}"#), 400, "invalid_body"),
            ("PUT", "/v1/kv/k", Some(big.as_bytes()), 413, "payload_too_large"),
            ("GET", "/nope", None, 404, "not_found"),
            ("POST", "/v1/kv/k", None, 405, "method_not_allowed"),
            ("GET", "/v1/kv?limit=0", None, 400, "invalid_query"),
            ("GET", "/v1/kv?limit=1001", None, 400, "invalid_query"),
            ("GET", "/v1/kv?limit=abc", None, 400, "invalid_query"),
            ("GET", "/v1/kv?prefix=a%20b", None, 400, "invalid_key"),
            ("PUT", "/lab/peers", Some(br#"{"zz":"127.0.0.1:1"}"#), 400, "unknown_region"),
            ("GET", "/v1/peers/rtt?count=0", None, 400, "invalid_query"),
            ("GET", "/v1/peers/rtt?count=101", None, 400, "invalid_query"),
            ("GET", "/v1/peers/rtt?count=-1", None, 400, "invalid_query"),
            ("GET", "/v1/peers/rtt?count=x", None, 400, "invalid_query"),
            ("GET", "/v1/peers/rtt?n=5", None, 400, "invalid_query"),
            ("GET", "/v1/stats/store?reset=maybe", None, 400, "invalid_query"),
            ("GET", "/v1/stats/store?other=1", None, 400, "invalid_query"),
            ("POST", "/v1/stats/store", None, 405, "method_not_allowed"),
        ];
        for (method, path, body, status, code) in cases {
            let (s, r) = call(addr, method, path, body).await;
            assert_eq!((s, r["error"].as_str()), (status, Some(code)), "{method} {path}: {r}");
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {r}");
        }
        node.shutdown.cancel();
    }

    /// Goal: `/v1/stats/store` counts the writes' group commits and waits and the reads, and `?reset=true`
    /// answers with the counts so far and then starts again from zero. Method: a fresh node with no background
    /// tasks, so only these requests touch its store.
    #[tokio::test]
    async fn store_stats_count_and_reset() {
        let (node, addr) = start("http-stats").await;
        let (s, r) = call(addr, "GET", "/v1/stats/store", None).await;
        let empty: StoreStats = serde_json::from_value(r).unwrap();
        assert_eq!((s, empty.region.as_str(), empty.commit_ms.count, empty.read_ms.count), (200, "a", 0, 0));
        for i in 0..3 {
            call(addr, "PUT", &format!("/v1/kv/s/{i}"), Some(br#"{"value":"x"}"#)).await;
            call(addr, "GET", &format!("/v1/kv/s/{i}"), None).await;
        }
        let (_, r) = call(addr, "GET", "/v1/stats/store?reset=true", None).await;
        let st: StoreStats = serde_json::from_value(r).unwrap();
        assert!((1..=3).contains(&st.commit_ms.count), "{st:?}");
        assert_eq!(st.read_ms.count, 3, "{st:?}");
        assert_eq!(st.acquire_ms.count, 6, "three writes and three reads: {st:?}");
        for l in [st.acquire_ms, st.commit_ms, st.read_ms] {
            assert!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max && l.max > 0.0, "{st:?}");
        }
        let (_, r) = call(addr, "GET", "/v1/stats/store", None).await;
        let after: StoreStats = serde_json::from_value(r).unwrap();
        assert_eq!((after.acquire_ms.count, after.commit_ms.count, after.read_ms.count), (0, 0, 0), "{after:?}");
        node.shutdown.cancel();
    }

    /// Sends a raw request and returns the answer's head, lowercased.
    /// Sends `request` as written over TLS 1.3 (adding the admin token unless it has an `authorization`
    /// header) and returns the answer's head, lowercased.
    async fn raw_head(addr: SocketAddr, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let test = LABS.lock().unwrap()[&addr].clone();
        let lab = testutil::lab(&test);
        let config = crate::pki::Pki::load(&lab).unwrap().client_config().unwrap();
        let mut request = request.to_string();
        if !request.to_ascii_lowercase().contains("authorization:") {
            let tokens = crate::auth::Tokens::load(&lab).unwrap();
            let line_end = request.find("\r\n").unwrap() + 2;
            request.insert_str(line_end, &format!("authorization: Bearer {}\r\n", tokens.token_of("admin").unwrap()));
        }
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut s = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        text.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase().replace("http/1.1", "HTTP/1.1")
    }

    /// Goal: `PUT /lab/health` makes `/healthz` answer 503 with that status while other routes keep working,
    /// and `ok` restores it.
    #[tokio::test]
    async fn lab_health_fails_the_health_check_only() {
        let (node, addr) = start("http-health").await;
        let (s, r) = call(addr, "PUT", "/lab/health", Some(br#"{"status":"down"}"#)).await;
        assert_eq!((s, r["status"].as_str()), (200, Some("down")));
        let (s, r) = call(addr, "GET", "/healthz", None).await;
        assert_eq!((s, r["status"].as_str()), (503, Some("down")));
        let (s, _) = call(addr, "GET", "/v1/catalog/x", None).await;
        assert_eq!(s, 200, "the node still serves");
        let (s, _) = call(addr, "PUT", "/lab/health", Some(br#"{"status":"sick"}"#)).await;
        assert_eq!(s, 400);
        call(addr, "PUT", "/lab/health", Some(br#"{"status":"ok"}"#)).await;
        let (s, _) = call(addr, "GET", "/healthz", None).await;
        assert_eq!(s, 200);
        node.shutdown.cancel();
    }

    /// Goal: the catalogue is deterministic and cacheable, honours If-None-Match, and rejects bad ids and
    /// work_ms. Method: raw requests, since the tiny client drops headers.
    #[tokio::test]
    async fn catalog_is_cacheable_and_conditional() {
        let (node, addr) = start("http-catalog").await;
        let (body, etag) = catalog_item("item-7");
        assert_eq!(catalog_item("item-7"), (body.clone(), etag.clone()), "deterministic");
        let (s, r) = call(addr, "GET", "/v1/catalog/item-7?work_ms=5", None).await;
        assert_eq!((s, r), (200, serde_json::from_slice::<serde_json::Value>(&body).unwrap()));
        let head = raw_head(addr, "GET /v1/catalog/item-7 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("cache-control: public, max-age=60"), "{head}");
        assert!(head.contains(&format!("etag: {etag}")), "{head}");
        assert!(head.contains(&format!("last-modified: {}", CATALOG_LAST_MODIFIED.to_ascii_lowercase())), "{head}");
        let req = format!(
            "GET /v1/catalog/item-7 HTTP/1.1\r\nhost: x\r\nif-none-match: W/{etag}\r\nconnection: close\r\n\r\n"
        );
        let head = raw_head(addr, &req).await;
        assert!(head.starts_with("HTTP/1.1 304"), "{head}");
        for path in ["/v1/catalog/UPPER", "/v1/catalog/x?work_ms=1001", "/v1/catalog/x?nope=1"] {
            let (s, r) = call(addr, "GET", path, None).await;
            assert_eq!(s, 400, "{path}: {r}");
        }
        assert!(
            etag_matches("\"a\", W/\"b\"", "\"b\"") && etag_matches("*", "\"x\"") && !etag_matches("\"a\"", "\"b\"")
        );
        node.shutdown.cancel();
    }

    /// Goal: beyond `max_in_flight` the node sheds `/v1/*` with 503 overloaded, but never its health check.
    /// Method: a limit of 1, one request held by work_ms, a second one at the same time.
    #[tokio::test]
    async fn sheds_load_beyond_max_in_flight() {
        let settings = crate::config::NodeConfig { max_in_flight: 1, ..Default::default() };
        let (node, addr) =
            serve_node("http-shed", testutil::node_with("http-shed", "a", &["b"], Defects::default(), settings)).await;
        let slow = tokio::spawn(async move { call(addr, "GET", "/v1/catalog/x?work_ms=1000", None).await });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while node.in_flight.load(Ordering::Acquire) == 0 {
            assert!(std::time::Instant::now() < deadline, "the slow request never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (s, r) = call(addr, "GET", "/v1/catalog/y", None).await;
        assert_eq!((s, r["error"].as_str()), (503, Some("overloaded")));
        let (s, _) = call(addr, "GET", "/healthz", None).await;
        assert_eq!(s, 200, "health checks are never shed");
        assert_eq!(slow.await.unwrap().0, 200);
        assert_eq!(node.in_flight.load(Ordering::Acquire), 0, "the count returns to zero");
        node.shutdown.cancel();
    }

    /// Goal: `PUT /lab/clock` sets the clock that stamps this region's versions off (an hour ahead: the next write's
    /// version is an hour ahead of the system clock), `null` puts it back, and a bad body is a JSON 400.
    #[tokio::test]
    async fn clock_fault_stamps_versions_on_a_skewed_clock() {
        let (node, addr) = start("http-clock").await;
        let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let (s, r) = call(addr, "PUT", "/lab/clock", Some(br#"{"offset_ms":3600000}"#)).await;
        assert_eq!((s, r["offset_ms"].as_i64()), (200, Some(3_600_000)));
        let before = now_ms();
        let (s, r) = call(addr, "PUT", "/v1/kv/k", Some(br#"{"value":"x"}"#)).await;
        assert_eq!(s, 200, "{r}");
        let v: Version = serde_json::from_value(r["version"].clone()).unwrap();
        assert!(v.wall_ms >= before + 3_600_000, "{v} is not an hour ahead of {before}");
        let (s, r) = call(addr, "PUT", "/lab/clock", Some(br#"{"offset_ms":null}"#)).await;
        assert_eq!((s, r["offset_ms"].as_i64()), (200, Some(0)));
        let (s, r) = call(addr, "PUT", "/lab/clock", Some(br#"{"offset":1}"#)).await;
        assert_eq!((s, r["error"].as_str()), (400, Some("invalid_body")), "{r}");
        let (s, _) = call(addr, "PUT", "/lab/clock", Some(br#"{"offset_ms":99999999999}"#)).await;
        assert_eq!(s, 400);
        node.shutdown.cancel();
    }

    /// Goal: a partial fault fails the store's writes (503 store_unavailable) while reads work, makes the health
    /// check answer 503 degraded (a forced health still wins), fails exactly its share of `/v1/*` requests
    /// (every second one at 0.5) with 503 injected_fault, rejects bad bodies with JSON errors, and clears with
    /// `{}`.
    #[tokio::test]
    async fn partial_fault_fails_writes_and_a_share_of_requests() {
        let (node, addr) = start("http-fault").await;
        assert_eq!(call(addr, "PUT", "/v1/kv/k", Some(br#"{"value":"x"}"#)).await.0, 200);
        let (s, r) = call(addr, "PUT", "/lab/fault", Some(br#"{"writes_fail":true}"#)).await;
        assert_eq!((s, r["writes_fail"].as_bool()), (200, Some(true)));
        let (s, r) = call(addr, "GET", "/lab/fault", None).await;
        assert_eq!((s, serde_json::from_value::<NodeFault>(r).unwrap().writes_fail), (200, true));
        for (method, body) in [("PUT", Some(&br#"{"value":"y"}"#[..])), ("DELETE", None)] {
            let (s, r) = call(addr, method, "/v1/kv/k", body).await;
            assert_eq!((s, r["error"].as_str()), (503, Some("store_unavailable")), "{method}: {r}");
        }
        let (s, r) = call(addr, "GET", "/v1/kv/k", None).await;
        assert_eq!((s, r["value"].as_str()), (200, Some("x")), "reads work and the failed writes left no trace");
        let (s, r) = call(addr, "GET", "/healthz", None).await;
        assert_eq!((s, r["status"].as_str()), (503, Some("degraded")));
        call(addr, "PUT", "/lab/health", Some(br#"{"status":"down"}"#)).await;
        assert_eq!(call(addr, "GET", "/healthz", None).await.1["status"].as_str(), Some("down"), "forced wins");
        call(addr, "PUT", "/lab/health", Some(br#"{"status":"ok"}"#)).await;

        let (s, _) = call(addr, "PUT", "/lab/fault", Some(br#"{"error_share":0.5}"#)).await;
        assert_eq!(s, 200);
        let mut failed = Vec::new();
        for _ in 0..10 {
            let (s, r) = call(addr, "GET", "/v1/catalog/x", None).await;
            assert!(s == 200 || (s, r["error"].as_str()) == (503, Some("injected_fault")), "{s} {r}");
            failed.push(s == 503);
        }
        assert_eq!(failed, [false, true].repeat(5), "every second request fails");
        assert_eq!(call(addr, "PUT", "/v1/kv/k", Some(br#"{"value":"z"}"#)).await.0, 200, "writes work again");

        let bad: [&[u8]; 5] = [
            br#"{"error_share":1.5}"#,
            br#"{"error_share":-0.1}"#,
            br#"{"writes_fail":true,"bogus":1}"#,
            br#"{"writes_fail":"yes"}"#,
            b"not json",
        ];
        for body in bad {
            let (s, r) = call(addr, "PUT", "/lab/fault", Some(body)).await;
            assert_eq!((s, r["error"].as_str()), (400, Some("invalid_body")), "{}", String::from_utf8_lossy(body));
        }
        let (s, r) = call(addr, "PUT", "/lab/fault", Some(b"{}")).await;
        assert_eq!((s, serde_json::from_value::<NodeFault>(r).unwrap()), (200, NodeFault::default()));
        let (s, r) = call(addr, "GET", "/healthz", None).await;
        assert_eq!((s, r["status"].as_str()), (200, Some("ok")));
        for _ in 0..4 {
            assert_eq!(call(addr, "GET", "/v1/kv/k", None).await.0, 200);
        }
        node.shutdown.cancel();
    }

    /// Goal: a fenced region refuses writes with 503 fenced, keeps serving reads, reports `fenced` in its health
    /// check (over a partial fault's `degraded`) and in `/v1/replication`, and serves writes again once
    /// unfenced. Method: set the fence flag directly (the fence task has its own tests).
    #[tokio::test]
    async fn fenced_region_refuses_writes_and_serves_reads() {
        let (node, addr) = start("http-fenced").await;
        assert_eq!(call(addr, "PUT", "/v1/kv/k", Some(br#"{"value":"x"}"#)).await.0, 200);
        let (_, r) = call(addr, "GET", "/v1/replication", None).await;
        let rs: ReplicationStatus = serde_json::from_value(r).unwrap();
        assert_eq!(rs.fenced, Some(false));
        let p = &rs.peers[0];
        assert_eq!((p.in_contact, p.heard_ms_ago, p.applied_seq, p.peer_head_seq), (Some(false), None, Some(0), None));

        node.fenced.store(true, Ordering::Release);
        call(addr, "PUT", "/lab/fault", Some(br#"{"writes_fail":true}"#)).await;
        for (method, body) in [("PUT", Some(&br#"{"value":"y"}"#[..])), ("DELETE", None)] {
            let (s, r) = call(addr, method, "/v1/kv/k", body).await;
            assert_eq!((s, r["error"].as_str()), (503, Some("fenced")), "{method}: {r}");
        }
        let (s, r) = call(addr, "GET", "/v1/kv/k", None).await;
        assert_eq!((s, r["value"].as_str()), (200, Some("x")));
        let (s, r) = call(addr, "GET", "/healthz", None).await;
        assert_eq!((s, r["status"].as_str(), r["region"].as_str()), (503, Some("fenced"), Some("a")));
        let (_, r) = call(addr, "GET", "/v1/replication", None).await;
        assert_eq!(serde_json::from_value::<ReplicationStatus>(r).unwrap().fenced, Some(true));

        call(addr, "PUT", "/lab/fault", Some(b"{}")).await;
        node.fenced.store(false, Ordering::Release);
        assert_eq!(call(addr, "PUT", "/v1/kv/k", Some(br#"{"value":"y"}"#)).await.0, 200);
        assert_eq!(call(addr, "GET", "/healthz", None).await.0, 200);
        node.shutdown.cancel();
    }

    /// Goal: TLS 1.3 is negotiated and TLS 1.2 is refused by the server, unless `tls_min_version = "1.2"`.
    #[tokio::test]
    async fn tls13_only_unless_the_defect() {
        for (test, defects, tls12_ok) in [
            ("http-tls13", Defects::default(), false),
            ("http-tls12", Defects { tls_min_version: Some("1.2".into()), ..Defects::default() }, true),
        ] {
            let (node, addr) = serve_node(test, testutil::node(test, "a", &["b"], defects)).await;
            let (s, _) = call(addr, "GET", "/healthz", None).await;
            assert_eq!(s, 200, "TLS 1.3 works");
            let lab = testutil::lab(test);
            let ca = crate::pki::Pki::load(&lab).unwrap().ca_cert().clone();
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let r = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await;
            assert_eq!(r.is_ok(), tls12_ok, "{test}: TLS 1.2 handshake: {:?}", r.err());
            node.shutdown.cancel();
        }
    }

    /// Goal: no token 401 (with `WWW-Authenticate`), wrong scope 403, right scope 200, by route; `/healthz` is
    /// public; every write and every denial is in the audit log (principal, action, key, status), readable by
    /// admin through `GET /v1/audit`; `auth_disabled` lets everything through as anonymous.
    #[tokio::test]
    async fn scopes_and_audit() {
        let test = "http-auth";
        let (node, addr) = start(test).await;
        let reader = testutil::client(test, Some(crate::auth::READER));
        let writer = testutil::client(test, Some(crate::auth::WRITER));
        let nobody = testutil::client(test, None);
        let t = Duration::from_secs(10);
        let put = Some(br#"{"value":"v"}"#.as_slice());
        assert_eq!(nobody.request("GET", addr, "/healthz", None, t).await.unwrap().0, 200);
        assert_eq!(nobody.request("GET", addr, "/v1/kv/k", None, t).await.unwrap().0, 401);
        assert_eq!(reader.request("PUT", addr, "/v1/kv/k", put, t).await.unwrap().0, 403);
        assert_eq!(writer.request("PUT", addr, "/v1/kv/k", put, t).await.unwrap().0, 200);
        assert_eq!(reader.request("GET", addr, "/v1/kv/k", None, t).await.unwrap().0, 200);
        assert_eq!(writer.request("GET", addr, "/v1/audit", None, t).await.unwrap().0, 403);
        assert_eq!(reader.request("PUT", addr, "/lab/health", Some(br#"{"status":"ok"}"#), t).await.unwrap().0, 403);
        assert_eq!(writer.request("DELETE", addr, "/v1/kv/k", None, t).await.unwrap().0, 200);
        let head = raw_head(
            addr,
            "GET /v1/kv/k HTTP/1.1\r\nhost: x\r\nauthorization: Bearer nope\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 401") && head.contains("www-authenticate: bearer"), "{head}");
        let (s, r) = call(addr, "GET", "/v1/audit?limit=1000", None).await;
        assert_eq!(s, 200, "{r}");
        let page: AuditPage = serde_json::from_value(r).unwrap();
        let got: Vec<(&str, &str, &str, u16)> =
            page.entries.iter().map(|e| (e.principal.as_str(), e.action.as_str(), e.key.as_str(), e.status)).collect();
        assert_eq!(
            got,
            [
                ("anonymous", "denied", "/v1/kv/k", 401),
                ("reader", "denied", "/v1/kv/k", 403),
                ("writer", "put", "k", 200),
                ("writer", "denied", "/v1/audit", 403),
                ("reader", "denied", "/lab/health", 403),
                ("writer", "delete", "k", 200),
                ("anonymous", "denied", "/v1/kv/k", 401),
            ]
        );
        assert!(page.entries.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].time_ms >= w[0].time_ms));
        let (_, r) = call(addr, "GET", "/v1/audit?after=5&limit=1", None).await;
        let page: AuditPage = serde_json::from_value(r).unwrap();
        assert_eq!((page.entries[0].seq, page.next_after), (6, Some(6)));
        let log = std::fs::read_to_string(LabDir::new(testutil::lab(test)).audit_log("a")).unwrap();
        assert!(!log.contains(crate::auth::TOKEN_PREFIX), "no token in the audit log");
        node.shutdown.cancel();

        let test = "http-noauth";
        let defects = Defects { auth_disabled: true, audit_disabled: true, ..Defects::default() };
        let (node, addr) = serve_node(test, testutil::node(test, "a", &["b"], defects)).await;
        let nobody = testutil::client(test, None);
        assert_eq!(nobody.request("PUT", addr, "/v1/kv/k", put, t).await.unwrap().0, 200);
        let (s, r) = call(addr, "GET", "/v1/audit", None).await;
        assert_eq!((s, r["entries"].as_array().map(Vec::len)), (200, Some(0)), "audit_disabled writes nothing");
        node.shutdown.cancel();
    }

    /// Goal: values are sealed at rest: a raw read of the store file finds no canary (and does with
    /// `plaintext_at_rest`); residency tags are validated (400 unknown, 403 not allowed here) and returned; an
    /// erasure answers a receipt, and the value is gone from the store and the outbox.
    #[tokio::test]
    async fn at_rest_residency_and_erasure() {
        for (test, defects, clear) in [
            ("http-rest", Defects::default(), false),
            ("http-rest-clear", Defects { plaintext_at_rest: true, ..Defects::default() }, true),
        ] {
            let (node, addr) = serve_node(test, testutil::node(test, "a", &["b"], defects)).await;
            let canary = format!("canary-{test}-5e1d");
            let body = format!(r#"{{"value":"{canary}"}}"#);
            assert_eq!(call(addr, "PUT", "/v1/kv/c", Some(body.as_bytes())).await.0, 200);
            let file = LabDir::new(testutil::lab(test)).store_file("a");
            let raw = std::fs::read(&file).unwrap();
            assert_eq!(raw.windows(canary.len()).any(|w| w == canary.as_bytes()), clear, "{test}");
            node.shutdown.cancel();
        }
        let test = "http-residency";
        let (node, addr) = start(test).await;
        let (s, r) = call(addr, "PUT", "/v1/kv/r", Some(br#"{"value":"x","residency":"mars"}"#)).await;
        assert_eq!((s, r["error"].as_str()), (400, Some("unknown_residency")));
        let (s, r) = call(addr, "PUT", "/v1/kv/r", Some(br#"{"value":"x","residency":"eu"}"#)).await;
        assert_eq!((s, r["error"].as_str()), (403, Some("residency_violation")), "only region eu may hold eu");
        assert!(node.store.get("r").unwrap().is_none(), "nothing stored");
        node.shutdown.cancel();
        let (node, addr) = serve_node(test, testutil::node(test, "eu", &["a"], Defects::default())).await;
        let (s, r) = call(addr, "PUT", "/v1/kv/r", Some(br#"{"value":"secret-v","residency":"eu"}"#)).await;
        assert_eq!((s, r["residency"].as_str()), (200, Some("eu")));
        let (s, r) = call(addr, "POST", "/v1/erase/r", None).await;
        assert_eq!(s, 200, "{r}");
        let receipt: EraseReceipt = serde_json::from_value(r).unwrap();
        assert_eq!((receipt.key.as_str(), receipt.region.as_str()), ("r", "eu"));
        assert_eq!(call(addr, "GET", "/v1/kv/r", None).await.0, 404);
        let outbox = node.store.outbox_after(0, 100, usize::MAX).unwrap();
        assert!(outbox.iter().all(|e| e.value.is_none()), "{outbox:?}");
        assert!(outbox.last().is_some_and(|e| e.erase && e.version == receipt.version), "{outbox:?}");
        node.shutdown.cancel();
    }
}
