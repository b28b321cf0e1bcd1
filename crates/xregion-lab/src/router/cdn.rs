//! CDN edges: one caching reverse proxy per region, serving the catalogue close to the client.
//!
//! A request to the CDN listener goes to the edge of its client location's nearest region, after the small
//! edge one-way latency (instead of the latency to the region). `GET /v1/catalog/...` is answered from the
//! edge's `moka` cache (bounded in bytes) under HTTP caching rules from `http-cache-semantics` (a shared
//! cache: freshness from `Cache-Control: max-age`, `Age` on hits, revalidation of a stale entry with
//! `If-None-Match`, where a `304` refreshes it). On a miss the edge fetches from its own region's node, or from
//! the nearest healthy region when its own is down, paying the WAN one-way latency between them.
//!
//! The edges live in the router process: they share its client connection budget, its upstream pools and its
//! view of region health, so that the CDN costs no extra process or proxied socket pair.
//!
//! Authorization: the edge forwards the client's `Authorization` header to the origin, and a cacheable request
//! must itself carry a token with the read scope, which the edge checks (a hit is answered without asking the
//! region, so the region cannot). The policy sees the header too, so, as RFC 9111 requires of a shared cache, an
//! answer to an authorized request is stored only when it allows it explicitly (`public`, as the catalogue's
//! `Cache-Control: public, max-age=…` does; also `s-maxage` or `must-revalidate`).
//!
//! Answers carry `X-Cache` (`Hit`, `RefreshHit`, `Miss`, or `Pass` for requests that are not cacheable),
//! `Age`, and `X-Served-By: <edge region>`.

use super::RegionState;
use super::message::{Body, auth_error_bytes, authorize, error_bytes, read_body, set, strip_hop_by_hop};
use super::policy::RecordKind;
use super::proxy::{Attempt, Proxy, ms};
use crate::auth::{Scope, Tokens};
use crate::config::Defects;
use crate::node::http::catalog::etag_matches;
use bytes::Bytes;
use http_body_util::Full;
use http_cache_semantics::{AfterResponse, BeforeRequest, CachePolicy};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::time::Instant;

/// The route prefix the edges cache.
pub const CACHEABLE_PREFIX: &str = "/v1/catalog/";
/// Bytes charged per entry on top of key and body: the stored headers (twice, request and answer, in the
/// policy) and bookkeeping; catalogue answers carry well under this.
const ENTRY_OVERHEAD_BYTES: usize = 1536;

/// One stored answer.
pub struct Cached {
    /// The caching policy of the stored request and answer.
    policy: CachePolicy,
    /// The stored body.
    body: Bytes,
}

/// One edge: the cache of one region, and its counters.
pub struct Edge {
    /// Path and query -> stored answer.
    cache: moka::future::Cache<String, Arc<Cached>>,
    /// Answers served fresh from the cache.
    hits: AtomicU64,
    /// Stale entries revalidated by a `304`.
    refresh_hits: AtomicU64,
    /// Cacheable requests fetched from an origin.
    misses: AtomicU64,
    /// Requests passed through uncached.
    passes: AtomicU64,
}

/// Every region's edge, in region order.
pub struct Edges(Vec<Edge>);

impl Edges {
    /// One edge per region, each caching at most `bytes_max` bytes.
    pub fn new(regions: &[String], bytes_max: u64) -> Edges {
        Edges(
            regions
                .iter()
                .map(|_| Edge {
                    cache: moka::future::Cache::builder()
                        .max_capacity(bytes_max)
                        .weigher(|k: &String, v: &Arc<Cached>| weight(k, v))
                        .build(),
                    hits: AtomicU64::new(0),
                    refresh_hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    passes: AtomicU64::new(0),
                })
                .collect(),
        )
    }

    /// Counters per edge, for `/router/status`.
    pub async fn status(&self, regions: &[Arc<RegionState>]) -> serde_json::Value {
        // Entry counts and sizes are updated lazily; settle them so the status is exact.
        for e in &self.0 {
            e.cache.run_pending_tasks().await;
        }
        let edges: Vec<serde_json::Value> = self
            .0
            .iter()
            .zip(regions)
            .map(|(e, r)| {
                serde_json::json!({
                    "region": r.name,
                    "hits": e.hits.load(Ordering::Relaxed),
                    "refresh_hits": e.refresh_hits.load(Ordering::Relaxed),
                    "misses": e.misses.load(Ordering::Relaxed),
                    "passes": e.passes.load(Ordering::Relaxed),
                    "entries": e.cache.entry_count(),
                    "bytes": e.cache.weighted_size(),
                })
            })
            .collect();
        serde_json::Value::Array(edges)
    }
}

/// An entry's charge against the cache's byte budget: key, body, and a fixed share for headers and policy.
fn weight(key: &str, v: &Cached) -> u32 {
    u32::try_from(key.len() + v.body.len() + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
}

/// What the edge did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served fresh from the cache.
    Hit,
    /// Stale, revalidated with the origin (`304`), served from the cache.
    RefreshHit,
    /// Fetched from the origin.
    Miss,
    /// Not cacheable: passed through.
    Pass,
}

impl CacheOutcome {
    fn header(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "Hit",
            CacheOutcome::RefreshHit => "RefreshHit",
            CacheOutcome::Miss => "Miss",
            CacheOutcome::Pass => "Pass",
        }
    }
}

/// A request as the cache policy sees it: method, path and headers, without the client's own validators (the
/// edge answers those itself, so that a client's `If-None-Match` never turns a miss into an empty `304`).
fn policy_request(method: &Method, path: &str, headers: &HeaderMap) -> Request<()> {
    let mut req = Request::builder().method(method.clone()).uri(path);
    if let Some(h) = req.headers_mut() {
        for (name, value) in headers {
            if name != header::IF_NONE_MATCH && name != header::IF_MODIFIED_SINCE && name != header::HOST {
                h.append(name.clone(), value.clone());
            }
        }
    }
    req.body(()).unwrap_or_default()
}

/// The decision for a stored entry: serve it fresh (the headers carry an updated `Age`), or revalidate with
/// these request headers.
pub fn lookup(entry: &Cached, req: &Request<()>, now: SystemTime) -> BeforeRequest {
    entry.policy.before_request(req, now)
}

/// Serves one request to the CDN listener: through `proxy` to the origins, from `edges`' caches, with `tokens`
/// checking the read scope of a cacheable request (everything passes without them: `auth_disabled`).
pub async fn handle(proxy: &Proxy, edges: &Edges, tokens: Option<&Tokens>, req: Request<Incoming>) -> Response<Body> {
    let arrival = Instant::now();
    let location = match proxy.location(&req) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    let edge_index = proxy.policy.by_nearness.get(&location).and_then(|v| v.first().copied()).unwrap_or(0);
    let edge_region = proxy.regions[edge_index].name.clone();
    let edge = &edges.0[edge_index];
    let edge_ms = ms(proxy.routing.edge_one_way_ms.get(&location).copied().unwrap_or(0.0));
    crate::sleep_until(arrival + edge_ms).await;

    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let cacheable = parts.method == Method::GET && parts.uri.path().starts_with(CACHEABLE_PREFIX);
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return finish(resp, &edge_region, &location, None, CacheOutcome::Pass),
    };
    if cacheable && let Err(e) = authorize(tokens, &parts.headers, Scope::Read) {
        tracing::info!(path = parts.uri.path(), status = e.status().as_u16(), "CDN edge: request refused");
        let resp = auth_error_bytes(&e);
        crate::sleep_until(Instant::now() + edge_ms).await;
        return finish(resp, &edge_region, &location, None, CacheOutcome::Pass);
    }
    if !cacheable {
        edge.passes.fetch_add(1, Ordering::Relaxed);
        let (resp, origin) = fetch(proxy, edge_index, &location, &parts.method, &path, &parts.headers, body).await;
        crate::sleep_until(Instant::now() + edge_ms).await;
        return finish(resp, &edge_region, &location, origin.as_deref(), CacheOutcome::Pass);
    }
    let client_inm = parts.headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
    let preq = policy_request(&parts.method, &path, &parts.headers);
    let stored = if proxy.defects.cdn_never_caches { None } else { edge.cache.get(&path).await };
    let (resp, origin, outcome) = match stored {
        Some(entry) => match lookup(&entry, &preq, SystemTime::now()) {
            BeforeRequest::Fresh(mut fresh) => {
                edge.hits.fetch_add(1, Ordering::Relaxed);
                // The policy rewrites `Date` in a non-HTTP format; the server sets a correct one instead.
                fresh.headers.remove(header::DATE);
                (Response::from_parts(fresh, entry.body.clone()), None, CacheOutcome::Hit)
            }
            BeforeRequest::Stale { request, .. } => {
                let (resp, origin) =
                    fetch(proxy, edge_index, &location, &request.method, &path, &request.headers, Bytes::new()).await;
                let now = SystemTime::now();
                let (rparts, rbody) = resp.into_parts();
                let unit = Response::from_parts(rparts.clone(), ());
                let is_origin_answer = origin.is_some();
                match entry.policy.after_response(&request, &unit, now) {
                    AfterResponse::NotModified(policy, mut fresh) if is_origin_answer => {
                        fresh.headers.remove(header::DATE);
                        edge.refresh_hits.fetch_add(1, Ordering::Relaxed);
                        let body = entry.body.clone();
                        edge.cache.insert(path.clone(), Arc::new(Cached { policy, body: body.clone() })).await;
                        (Response::from_parts(fresh, body), origin, CacheOutcome::RefreshHit)
                    }
                    AfterResponse::Modified(policy, _) | AfterResponse::NotModified(policy, _) => {
                        edge.misses.fetch_add(1, Ordering::Relaxed);
                        let body = rbody;
                        if is_origin_answer && rparts.status == StatusCode::OK && policy.is_storable() {
                            edge.cache.insert(path.clone(), Arc::new(Cached { policy, body: body.clone() })).await;
                        } else {
                            edge.cache.invalidate(&path).await;
                        }
                        (Response::from_parts(rparts, body), origin, CacheOutcome::Miss)
                    }
                }
            }
        },
        None => {
            edge.misses.fetch_add(1, Ordering::Relaxed);
            let (resp, origin) =
                fetch(proxy, edge_index, &location, &parts.method, &path, preq.headers(), Bytes::new()).await;
            let (rparts, body) = resp.into_parts();
            let unit = Response::from_parts(rparts.clone(), ());
            let policy = CachePolicy::new(&preq, &unit);
            let store = !proxy.defects.cdn_never_caches && origin.is_some() && rparts.status == StatusCode::OK;
            if store && policy.is_storable() {
                edge.cache.insert(path.clone(), Arc::new(Cached { policy, body: body.clone() })).await;
            }
            (Response::from_parts(rparts, body), origin, CacheOutcome::Miss)
        }
    };
    let resp = conditional(resp, client_inm.as_deref());
    crate::sleep_until(Instant::now() + edge_ms).await;
    finish(resp, &edge_region, &location, origin.as_deref(), outcome)
}

/// Answers a client's own `If-None-Match` at the edge: a `200` whose ETag matches becomes an empty `304`.
fn conditional(resp: Response<Bytes>, if_none_match: Option<&str>) -> Response<Bytes> {
    let Some(inm) = if_none_match else { return resp };
    let matches = resp.status() == StatusCode::OK
        && resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).is_some_and(|e| etag_matches(inm, e));
    if !matches {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    Response::from_parts(parts, Bytes::new())
}

/// Fetches from the edge's region, or from the nearest healthy region when it is down, retrying once at the
/// next region like routed requests do (`Proxy::after_attempt`; edge fetches are `GET`s, so idempotent). Returns the answer and the origin region, or a
/// `502`/`503` error answer and `None`.
async fn fetch(
    proxy: &Proxy,
    edge_index: usize,
    location: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> (Response<Bytes>, Option<String>) {
    // The origin order ignores the location defects: the CDN is not a routing record.
    let candidates = proxy.candidates(RecordKind::Latency, location, &Defects::default());
    if candidates.is_empty() {
        return (
            error_bytes(StatusCode::SERVICE_UNAVAILABLE, "no_healthy_region", "no origin region is healthy"),
            None,
        );
    }
    let outcome = proxy
        .try_candidates(
            &candidates,
            true,
            |rest| (!rest.is_empty()).then_some((0, None)),
            |index, _| {
                let body = body.clone();
                Box::pin(async move {
                    let origin = &proxy.regions[index];
                    crate::sleep_until(Instant::now() + ms(proxy.region_one_way_ms[edge_index][index])).await;
                    origin.origin_fetches.fetch_add(1, Ordering::Relaxed);
                    proxy.send(origin, method, path, headers, body).await
                })
            },
        )
        .await;
    let last = match outcome {
        Some((index, Attempt::Answer(resp))) => {
            crate::sleep_until(Instant::now() + ms(proxy.region_one_way_ms[edge_index][index])).await;
            let (mut p, b) = resp.into_parts();
            strip_hop_by_hop(&mut p.headers);
            return (Response::from_parts(p, b), Some(proxy.regions[index].name.clone()));
        }
        Some((_, Attempt::Failed(e))) => e,
        None => "no origin region could be tried".to_string(),
    };
    proxy.rejected.upstream_failed.fetch_add(1, Ordering::Relaxed);
    (error_bytes(StatusCode::BAD_GATEWAY, "upstream_failed", &last), None)
}

fn finish(
    resp: Response<Bytes>,
    edge: &str,
    location: &str,
    origin: Option<&str>,
    outcome: CacheOutcome,
) -> Response<Body> {
    let mut resp = resp.map(Full::new);
    let h = resp.headers_mut();
    set(h, "x-cache", outcome.header());
    set(h, "x-served-by", edge);
    set(h, "x-client-location", location);
    if let Some(o) = origin {
        set(h, "x-origin", o);
    }
    if !h.contains_key(header::AGE) && outcome != CacheOutcome::Pass {
        h.insert(header::AGE, HeaderValue::from_static("0"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn origin_answer(max_age: u64, date: SystemTime) -> Response<()> {
        Response::builder()
            .status(200)
            .header("cache-control", format!("public, max-age={max_age}"))
            .header("etag", "\"abc\"")
            .header("date", httpdate(date))
            .body(())
            .unwrap()
    }

    /// RFC 7231 IMF-fixdate for the tests (the policy reads `Date` to compute age).
    fn httpdate(t: SystemTime) -> String {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let month =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(m - 1) as usize];
        format!("{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT", rem / 3600, rem % 3600 / 60, rem % 60)
    }

    /// Goal: the edge's caching rules through http-cache-semantics: a `public, max-age` answer is storable,
    /// fresh within max-age with a growing `Age`, stale after it with an `If-None-Match` revalidation request,
    /// and a `304` with the same ETag refreshes it. Method: drive the policy with explicit clocks.
    #[test]
    fn freshness_age_and_revalidation() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let req = policy_request(&Method::GET, "/v1/catalog/x", &HeaderMap::new());
        let policy = CachePolicy::new_options(&req, &origin_answer(60, t0), t0, Default::default());
        assert!(policy.is_storable());
        let entry = Cached { policy, body: Bytes::from_static(b"{}") };
        match lookup(&entry, &req, t0 + Duration::from_secs(10)) {
            BeforeRequest::Fresh(parts) => assert_eq!(parts.headers["age"], "10"),
            BeforeRequest::Stale { .. } => panic!("fresh within max-age"),
        }
        let request = match lookup(&entry, &req, t0 + Duration::from_secs(61)) {
            BeforeRequest::Stale { request, matches } => {
                assert!(matches);
                request
            }
            BeforeRequest::Fresh(_) => panic!("stale after max-age"),
        };
        assert_eq!(request.headers["if-none-match"], "\"abc\"");
        let not_modified = Response::builder()
            .status(304)
            .header("etag", "\"abc\"")
            .header("cache-control", "public, max-age=60")
            .header("date", httpdate(t0 + Duration::from_secs(61)))
            .body(())
            .unwrap();
        let t1 = t0 + Duration::from_secs(61);
        match entry.policy.after_response(&request, &not_modified, t1) {
            AfterResponse::NotModified(policy, parts) => {
                assert_eq!(parts.status, 200, "the refreshed answer is the stored 200");
                let refreshed = Cached { policy, body: entry.body.clone() };
                assert!(matches!(lookup(&refreshed, &req, t1 + Duration::from_secs(5)), BeforeRequest::Fresh(_)));
            }
            AfterResponse::Modified(..) => panic!("a 304 with the same ETag is not a modification"),
        }
        // A different ETag means new content.
        let changed = Response::builder().status(200).header("etag", "\"def\"").body(()).unwrap();
        assert!(matches!(entry.policy.after_response(&request, &changed, t1), AfterResponse::Modified(..)));
    }

    /// Goal: answers the edge must not store are recognised: `no-store`, `private` (a shared cache).
    #[test]
    fn uncacheable_answers() {
        let req = policy_request(&Method::GET, "/v1/catalog/x", &HeaderMap::new());
        for cc in ["no-store", "private, max-age=60"] {
            let resp = Response::builder().status(200).header("cache-control", cc).body(()).unwrap();
            assert!(!CachePolicy::new(&req, &resp).is_storable(), "{cc}");
        }
    }

    /// Goal: a client's If-None-Match is answered at the edge, and never sent to the origin by the policy.
    #[test]
    fn client_conditionals() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(policy_request(&Method::GET, "/v1/catalog/x", &h).headers().get(header::IF_NONE_MATCH).is_none());
        let resp = Response::builder().status(200).header("etag", "\"abc\"").body(Bytes::from("x")).unwrap();
        assert_eq!(conditional(resp, Some("\"abc\"")).status(), 304);
        let resp = Response::builder().status(200).header("etag", "\"abc\"").body(Bytes::from("x")).unwrap();
        assert_eq!(conditional(resp, Some("\"zzz\"")).status(), 200);
    }
}
