//! The records of the probe contract: `GET|PUT|DELETE /v1/kv/{key}`, the scan `GET /v1/kv`, and the erasure
//! `POST /v1/erase/{key}`.
//!
//! Writes (`PUT` and `DELETE`, and erasures) are refused with `503 fenced` while the region is fenced (`fence`)
//! and with `503 store_unavailable` while a partial fault fails the store's writes; a tagged write is refused where
//! the residency policy does not allow it. Each write's answer is audited before it is sent.

use super::audit::{audited, principal_of};
use super::reply::{ApiError, Shared, body_rejection, checked_key, err, json, path_key, store_failed};
use crate::auth::Principal;
use crate::node::Node;
use crate::node::store::{StoreError, WriteOp, WriteOutcome};
use crate::record::StoredRecord;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use xregion_model::wire::{EraseReceipt, PutRequest, Record, SCAN_LIMIT_MAX, ScanPage};

/// Records per scan page when the client gives no limit.
pub const SCAN_LIMIT_DEFAULT: usize = 100;

/// Longest a write waits for its group commit before the client gets 503.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn record(node: &Node, key: String, r: StoredRecord) -> Record {
    Record { key, value: r.value, version: r.version, region: node.region.clone(), residency: r.residency }
}

pub(super) async fn get_kv(
    State(node): Shared,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
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

pub(super) async fn put_kv(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = path_key(key)?;
    let result = async {
        let body = body.map_err(body_rejection)?;
        let req: PutRequest = serde_json::from_slice(&body).map_err(|e| {
            err(StatusCode::BAD_REQUEST, "invalid_body", format!("expected {{\"value\": \"...\"}}: {e}"))
        })?;
        if let Some(tag) = &req.residency {
            residency_allows(&node, tag)?;
        }
        write(&node, key.clone(), Some(req.value), req.residency).await
    }
    .await;
    audited(&node, &principal_of(&principal), "put", &key, result).await
}

pub(super) async fn delete_kv(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = path_key(key)?;
    let result = write(&node, key.clone(), None, None).await;
    audited(&node, &principal_of(&principal), "delete", &key, result).await
}

/// `POST /v1/erase/{key}` (write): the value is replaced by a tombstone without value, removed from every
/// outbox entry of the key, and the erasure replicates to every peer (not with `erasure_local_only`).
pub(super) async fn erase(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = path_key(key)?;
    let result = async {
        if node.is_fenced() {
            return Err(fenced(&node, "the erasure was not made"));
        }
        let replicate = !node.defects.erasure_local_only;
        if !replicate {
            tracing::warn!(region = %node.region, %key, "DEFECT erasure_local_only: the erasure is not replicated");
        }
        let op = WriteOp::Erase { key: key.clone(), replicate };
        let outcome = tokio::time::timeout(WRITE_TIMEOUT, node.store.write(op))
            .await
            .map_err(|_| store_failed(format!("the erasure did not commit within {WRITE_TIMEOUT:?}")))?
            .map_err(|e: Arc<StoreError>| store_failed(e))?;
        match outcome {
            WriteOutcome::Written(r) => {
                tracing::info!(region = %node.region, %key, version = %r.version, "key erased");
                Ok(json(&EraseReceipt { key: key.clone(), region: node.region.clone(), version: r.version }))
            }
            other => Err(store_failed(format!("unexpected erase outcome {other:?}"))),
        }
    }
    .await;
    audited(&node, &principal_of(&principal), "erase", &key, result).await
}

/// Whether this region may store a record tagged `tag`: 400 `unknown_residency` for a tag the policy does not
/// know, 403 `residency_violation` when this region is not among the tag's regions.
fn residency_allows(node: &Node, tag: &str) -> Result<(), ApiError> {
    let Some(allowed) = node.security.residency.get(tag) else {
        let known: Vec<&str> = node.security.residency.keys().map(String::as_str).collect();
        return Err(err(
            StatusCode::BAD_REQUEST,
            "unknown_residency",
            format!("residency tag {tag:?} is not in the policy (known: {})", known.join(", ")),
        ));
    };
    if !allowed.contains(&node.region) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "residency_violation",
            format!(
                "records tagged {tag:?} may be stored only in {}; region {} is not one of them",
                allowed.join(", "),
                node.region
            ),
        ));
    }
    Ok(())
}

/// `503 fenced`, with what happened to the write.
fn fenced(node: &Node, what: &str) -> ApiError {
    err(
        StatusCode::SERVICE_UNAVAILABLE,
        "fenced",
        format!(
            "region {} is fenced off: it lost contact with a majority of the regions and refuses writes until \
             contact returns; {what}",
            node.region
        ),
    )
}

/// A local write or delete.
///
/// The fence is checked twice. At admission, so that a fenced region starts no write. And again after the
/// commit, right before the answer: a write admitted just before the region fenced (its commit can take
/// milliseconds, or seconds on a slow disk) is then answered `503 fenced` instead of `200`. So no write is
/// acknowledged later than the fence's publication plus the few microseconds between this check and the answer.
/// Such a write is committed locally and will still replicate: that is allowed, since the client saw no
/// acknowledgement and must count the outcome as unknown (as for any 503 on a write).
async fn write(
    node: &Node,
    key: String,
    value: Option<String>,
    residency: Option<String>,
) -> Result<Response, ApiError> {
    if node.is_fenced() {
        return Err(fenced(node, "the write was not made"));
    }
    if node.fault().fault.writes_fail {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the store of region {} fails every write (a partial fault is injected)", node.region),
        ));
    }
    let op = WriteOp::Local { key: key.clone(), value, residency };
    let outcome = tokio::time::timeout(WRITE_TIMEOUT, node.store.write(op))
        .await
        .map_err(|_| store_failed(format!("the write did not commit within {WRITE_TIMEOUT:?}")))?
        .map_err(|e: Arc<StoreError>| store_failed(e))?;
    match outcome {
        WriteOutcome::Written(_) if node.is_fenced() => {
            Err(fenced(node, "the write was committed here just before the fence and is not acknowledged"))
        }
        WriteOutcome::Written(r) => Ok(json(&record(node, key, r))),
        other => Err(store_failed(format!("unexpected write outcome {other:?}"))),
    }
}

/// Query of `GET /v1/kv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScanQuery {
    /// Only keys starting with this.
    #[serde(default)]
    prefix: String,
    /// Only keys greater than this (the previous page's `next_after`).
    after: Option<String>,
    /// Page size, 1..=SCAN_LIMIT_MAX.
    limit: Option<usize>,
}

pub(super) async fn scan(
    State(node): Shared,
    q: Result<Query<ScanQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
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
