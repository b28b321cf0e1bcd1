//! The probe contract over HTTP (see `docs/probe-contract.md`), plus the lab-only `PUT /lab/peers`.
//!
//! Every 4xx and 5xx answer is a JSON `ErrorBody`, including the ones axum would produce itself (unknown route,
//! wrong method, oversized body), so a client can always parse an error.

use super::store::{StoreError, WriteOp, WriteOutcome};
use super::{Node, peer_backlog};
use crate::record::StoredRecord;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use xregion_model::Version;
use xregion_model::wire::{
    BODY_BYTES_MAX, ErrorBody, Health, PeerStatus, PutRequest, Record, ReplicationStatus, SCAN_LIMIT_MAX, ScanPage,
    key_problem,
};

/// Records per scan page when the client gives no limit.
pub const SCAN_LIMIT_DEFAULT: usize = 100;
/// Longest a write waits for its group commit before the client gets 503.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Shared = State<Arc<Node>>;

/// Serves the API until the node shuts down (then finishes in-flight requests).
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let shutdown = node.shutdown.clone();
    let app = router(node.clone());
    let result = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = result {
        tracing::error!(region = %node.region, error = %e, "HTTP server failed");
    }
}

/// The router; public so tests can drive it without a socket.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/kv", get(scan))
        .route("/v1/kv/{*key}", get(get_kv).put(put_kv).delete(delete_kv))
        .route("/v1/replication", get(replication))
        .route("/metrics", get(metrics_text))
        .route("/lab/peers", put(set_peers))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(node)
}

/// An error answer: status plus `ErrorBody`, optionally with the version of a tombstone.
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    version: Option<Version>,
}

/// `ErrorBody` plus the tombstone's version; a superset, so clients that parse `ErrorBody` still can.
#[derive(Serialize)]
struct ErrorWire<'a> {
    #[serde(flatten)]
    body: &'a ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a Version>,
}

fn err(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError { status, body: ErrorBody { error: code.to_string(), message: message.into() }, version: None }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let json =
            serde_json::to_vec(&ErrorWire { body: &self.body, version: self.version.as_ref() }).unwrap_or_default();
        (self.status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
    }
}

fn store_failed(e: impl std::fmt::Display) -> ApiError {
    err(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the store cannot serve this request: {e}"))
}

fn json<T: Serialize>(value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn record(node: &Node, key: String, r: StoredRecord) -> Record {
    Record { key, value: r.value, version: r.version, region: node.region.clone() }
}

/// The key from the path, checked against the contract's key rules.
fn path_key(key: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = key.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_key", e.body_text()))?;
    checked_key(&key)?;
    Ok(key)
}

fn checked_key(key: &str) -> Result<(), ApiError> {
    match key_problem(key) {
        Some(p) => Err(err(StatusCode::BAD_REQUEST, "invalid_key", p)),
        None => Ok(()),
    }
}

/// Maps a body rejection: too large is 413, anything else 400.
fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {BODY_BYTES_MAX} bytes"),
        )
    } else {
        err(StatusCode::BAD_REQUEST, "invalid_body", r.body_text())
    }
}

async fn count_requests(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    metrics::counter!("xregion_http_requests_total", "route" => route, "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

async fn healthz(State(node): Shared) -> Response {
    json(&Health { status: "ok".into(), region: node.region.clone() })
}

async fn get_kv(State(node): Shared, key: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let key = path_key(key)?;
    let k = key.clone();
    let found = node.store.read(move |s| s.get(&k)).await.map_err(store_failed)?;
    match found {
        Some(r) if r.value.is_some() => Ok(json(&record(&node, key, r))),
        Some(r) => {
            let mut e = err(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("key {key} was deleted (tombstone version {})", r.version),
            );
            e.version = Some(r.version);
            Err(e)
        }
        None => Err(err(StatusCode::NOT_FOUND, "not_found", format!("key {key} does not exist"))),
    }
}

async fn put_kv(
    State(node): Shared,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = path_key(key)?;
    let body = body.map_err(body_rejection)?;
    let req: PutRequest = serde_json::from_slice(&body)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_body", format!("expected {{\"value\": \"...\"}}: {e}")))?;
    write(&node, key, Some(req.value)).await
}

async fn delete_kv(State(node): Shared, key: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let key = path_key(key)?;
    write(&node, key, None).await
}

async fn write(node: &Node, key: String, value: Option<String>) -> Result<Response, ApiError> {
    let op = WriteOp::Local { key: key.clone(), value };
    let outcome = tokio::time::timeout(WRITE_TIMEOUT, node.store.write(op))
        .await
        .map_err(|_| store_failed(format!("the write did not commit within {WRITE_TIMEOUT:?}")))?
        .map_err(|e: Arc<StoreError>| store_failed(e))?;
    match outcome {
        WriteOutcome::Written(r) => Ok(json(&record(node, key, r))),
        other => Err(store_failed(format!("unexpected write outcome {other:?}"))),
    }
}

/// Query of `GET /v1/kv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanQuery {
    /// Only keys starting with this.
    #[serde(default)]
    prefix: String,
    /// Only keys greater than this (the previous page's `next_after`).
    after: Option<String>,
    /// Page size, 1..=SCAN_LIMIT_MAX.
    limit: Option<usize>,
}

async fn scan(State(node): Shared, q: Result<Query<ScanQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    if !q.prefix.is_empty() {
        checked_key(&q.prefix)?;
    }
    if let Some(a) = &q.after {
        checked_key(a)?;
    }
    let limit = q.limit.unwrap_or(SCAN_LIMIT_DEFAULT);
    if limit == 0 || limit > SCAN_LIMIT_MAX {
        return Err(err(StatusCode::BAD_REQUEST, "invalid_query", format!("limit must be 1 to {SCAN_LIMIT_MAX}")));
    }
    let (rows, more) =
        node.store.read(move |s| s.scan(&q.prefix, q.after.as_deref(), limit)).await.map_err(store_failed)?;
    let next_after = if more { rows.last().map(|(k, _)| k.clone()) } else { None };
    let records = rows.into_iter().map(|(k, r)| record(&node, k, r)).collect();
    Ok(json(&ScanPage { records, next_after }))
}

async fn replication(State(node): Shared) -> Response {
    let mut peers = Vec::with_capacity(node.peers.len());
    for p in node.peers.values() {
        let (pending_entries, lag_ms) = peer_backlog(&node, p).await;
        peers.push(PeerStatus {
            region: p.name.clone(),
            acked_seq: p.acked_seq.load(Ordering::Acquire),
            pending_entries,
            lag_ms,
            connected: p.connected.load(Ordering::Acquire),
        });
    }
    json(&ReplicationStatus { region: node.region.clone(), head_seq: node.head_seq(), peers })
}

async fn metrics_text(State(node): Shared) -> Response {
    let text = node.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `PUT /lab/peers`: `{"us-west-2": "127.0.1.2:41000", ...}`, where to dial each peer.
async fn set_peers(State(node): Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(body_rejection)?;
    let map: BTreeMap<String, SocketAddr> = serde_json::from_slice(&body).map_err(|e| {
        err(StatusCode::BAD_REQUEST, "invalid_body", format!("expected {{\"region\": \"ip:port\"}}: {e}"))
    })?;
    for name in map.keys() {
        if !node.peers.contains_key(name) {
            let known: Vec<&str> = node.peers.keys().map(String::as_str).collect();
            return Err(err(
                StatusCode::BAD_REQUEST,
                "unknown_region",
                format!("{name:?} is not a peer of {}; peers are {}", node.region, known.join(", ")),
            ));
        }
    }
    for (name, addr) in map {
        if let Some(p) = node.peers.get(&name) {
            p.addr.send_if_modified(|cur| {
                let changed = *cur != Some(addr);
                *cur = Some(addr);
                changed
            });
            tracing::info!(region = %node.region, peer = %name, %addr, "peer address set");
        }
    }
    Ok(json(&serde_json::json!({ "ok": true })))
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
    use super::*;
    use crate::config::Defects;
    use crate::http_client::request;
    use crate::node::testutil;

    async fn start(test: &str) -> (Arc<Node>, SocketAddr) {
        let node = testutil::node(test, "a", &["b"], Defects::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(node.clone(), listener));
        (node, addr)
    }

    async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
        let (status, body) = request(method, addr, path, body, Duration::from_secs(10)).await.unwrap();
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
        ];
        for (method, path, body, status, code) in cases {
            let (s, r) = call(addr, method, path, body).await;
            assert_eq!((s, r["error"].as_str()), (status, Some(code)), "{method} {path}: {r}");
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {r}");
        }
        node.shutdown.cancel();
    }
}
