//! The lab's commerce application (`/app/v1/*`, `docs/lab-shop.md`): what the `cross-region.e2e.*` checks run
//! their journeys against, built the way a careful active-active team would build it.
//!
//! - **Customers** (`customers`) register in any region, which becomes their home; an e-mail is unique across the
//!   regions because exactly one region owns each e-mail (by its hash) and reserves it before the home region
//!   writes the customer.
//! - **Inventory** (`inventory`) is escrowed: each region sells only from its own allocation of an item, and a
//!   region that runs short takes units from another region's allocation through that region, so no partition
//!   can oversell. The total is the units received minus the units sold, agreed by every region.
//! - **Orders** (`orders`) are owned by the region that took them (their id names it). **Payments** carry an
//!   idempotency key and are settled by the order's home region alone, so a retry in another region, or after a
//!   failover, never charges twice: a region that cannot reach the home region refuses with 503, and the client
//!   retries with the same key.
//!
//! Each record is written only by the region that owns it, so replication's last-writer-wins never has to pick
//! between two regions' writes of one record. What one region must ask of another (reserve an e-mail, give units,
//! settle a payment) is a `Call` over the replication path (`rpc`), through the WAN and its faults.
//!
//! It keeps the lab's standards: HTTPS with TLS 1.3, bearer tokens (`read` for GET, `write` for the rest), values
//! sealed at rest by the store, every write audited before its answer, and JSON errors. The defect knobs
//! `email_uniqueness_disabled`, `inventory_escrow_disabled` and `payment_idempotency_disabled` each break one
//! promise.

pub mod customers;
pub mod inventory;
pub mod orders;
pub mod rpc;

use super::Node;
use super::http::reply::{ApiError, body_rejection, err, store_failed};
use super::store::{Decide, Decision, StoreError, WriteOp, WriteOutcome};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Longest an application write waits for its group commit.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most records one application listing reads (charges of an order, customers of an e-mail).
pub const LIST_MAX: usize = 1000;

/// The application's routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/app/v1/customers", post(customers::register).get(customers::find))
        .route("/app/v1/stock/{sku}", get(inventory::stock).post(inventory::receive))
        .route("/app/v1/orders", post(orders::place))
        .route("/app/v1/orders/{id}", get(orders::get_order))
        .route("/app/v1/orders/{id}/payments", post(orders::pay))
        .route("/app/v1/orders/{id}/charges", get(orders::charges))
}

/// Every region of the lab, this one included, in name order.
fn regions(node: &Node) -> Vec<String> {
    let mut all: Vec<String> = node.peers.keys().cloned().collect();
    all.push(node.region.clone());
    all.sort();
    all
}

/// Refuses a write while the region is fenced or a partial fault fails its store's writes.
fn writable(node: &Node) -> Result<(), ApiError> {
    if node.is_fenced() {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "fenced",
            format!("region {} is fenced off (out of contact with a majority) and takes no writes", node.region),
        ));
    }
    if node.fault().fault.writes_fail {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the store of region {} fails every write (a partial fault is injected)", node.region),
        ));
    }
    Ok(())
}

/// Runs `decide` over `keys` as one read-modify-write in the store and returns its answer.
async fn update(
    node: &Node,
    keys: Vec<String>,
    decide: impl Fn(&[Option<String>]) -> Decision + Send + Sync + 'static,
) -> Result<serde_json::Value, ApiError> {
    let op = WriteOp::Update { keys, decide: Decide(Arc::new(decide)) };
    let outcome = tokio::time::timeout(WRITE_TIMEOUT, node.store.write(op))
        .await
        .map_err(|_| store_failed(format!("the write did not commit within {WRITE_TIMEOUT:?}")))?
        .map_err(|e: Arc<StoreError>| store_failed(e))?;
    match outcome {
        WriteOutcome::Updated(answer) => Ok(answer),
        other => Err(store_failed(format!("unexpected outcome {other:?}"))),
    }
}

/// The record at `key` in this region's copy, decoded; `None` if absent or deleted.
async fn read<T: DeserializeOwned + Send + 'static>(node: &Node, key: String) -> Result<Option<T>, ApiError> {
    let found = node.store.read(move |s| s.get(&key)).await.map_err(store_failed)?;
    Ok(found.and_then(|r| r.value).and_then(|v| serde_json::from_str(&v).ok()))
}

/// Every record under `prefix` in this region's copy (at most `LIST_MAX`), decoded.
async fn list<T: DeserializeOwned + Send + 'static>(node: &Node, prefix: String) -> Result<Vec<T>, ApiError> {
    let (rows, _) = node.store.read(move |s| s.scan(&prefix, None, LIST_MAX)).await.map_err(store_failed)?;
    Ok(rows.into_iter().filter_map(|(_, r)| r.value).filter_map(|v| serde_json::from_str(&v).ok()).collect())
}

/// Parses a JSON request body (400 `invalid_body` with what was expected).
fn body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, expected: &str) -> Result<T, ApiError> {
    let bytes = body.map_err(body_rejection)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_body", format!("expected {expected}: {e}")))
}

/// A JSON answer with `status`.
fn answer<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A record as stored (JSON text).
fn stored<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The decoded value of a record read by an update.
fn decoded<T: DeserializeOwned>(value: Option<&String>) -> Option<T> {
    value.and_then(|v| serde_json::from_str(v).ok())
}

/// A 128-bit hash of `text` as 32 hex digits (two FNV-1a passes): stable across regions and builds, and safe in
/// a key, so e-mails and idempotency keys never appear in keys.
fn hash_hex(text: &str) -> String {
    let a = super::http::catalog::fnv(text.as_bytes());
    let b = super::http::catalog::fnv(format!("{text}\u{1f}{a:016x}").as_bytes());
    format!("{a:016x}{b:016x}")
}

/// A fresh random id with `prefix` (64 random bits in hex).
fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// An error answer carried as JSON through an update or a call.
fn error_json(code: &str, message: impl Into<String>) -> serde_json::Value {
    serde_json::json!({ "error": code, "message": message.into() })
}

/// A status and JSON body as the answer of a handler: 2xx is `Ok`, anything else an `ApiError` from its
/// `error`/`message`.
fn status_answer(status: u16, value: serde_json::Value) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_success() {
        return Ok(answer(status, &value));
    }
    let code = value["error"].as_str().unwrap_or("error").to_string();
    let message = value["message"].as_str().unwrap_or("").to_string();
    Err(err(status, &code, message))
}

#[cfg(test)]
mod tests;

/// Serves a call (`rpc::Call`) from peer `from` and returns the answer as JSON.
pub async fn serve(node: &Node, from: &str, call: serde_json::Value) -> serde_json::Value {
    let answer = match serde_json::from_value::<rpc::Call>(call) {
        Err(e) => rpc::Answer::Unavailable { why: format!("malformed call: {e}") },
        Ok(call) => match writable(node) {
            Err(e) => rpc::Answer::Unavailable { why: e.body.message },
            Ok(()) => match call {
                rpc::Call::Reserve { email_hash, customer, home } => {
                    customers::reserve(node, &email_hash, &customer, &home).await
                }
                rpc::Call::Take { sku, want } => inventory::give(node, &sku, from, want).await,
                rpc::Call::Pay { order, key_hash, amount_cents, charge } => {
                    let (status, body) = orders::settle(node, &order, &key_hash, amount_cents, &charge).await;
                    rpc::Answer::Reply { status, body }
                }
            },
        },
    };
    tracing::debug!(region = %node.region, %from, ?answer, "application call served");
    serde_json::to_value(&answer).unwrap_or_default()
}
