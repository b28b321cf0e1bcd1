//! The audit log over HTTP: the entry each write, erasure and refusal appends before its answer is sent, and
//! `GET /v1/audit` (admin), which pages through the log.

use super::reply::{ApiError, Shared, err, json, store_failed};
use crate::auth::Principal;
use crate::node::Node;
use crate::node::security::ANONYMOUS;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use xregion_model::wire::AuditPage;

/// Appends an audit entry (unless `audit_disabled`); a failure to write it is logged.
///
/// The file write runs on the blocking pool, one at a time (the others wait on the log's gate without holding a
/// thread): a `write` can wait for the disk (ext4 holds a page under writeback, and the store's fsyncs keep the
/// journal busy), and on a runtime worker that wait would stall every task of the region, replication included.
pub(crate) async fn audit(node: &Node, principal: &str, action: &str, key: &str, status: u16) {
    let Some(a) = node.security.audit.clone() else { return };
    let Ok(_turn) = a.gate.acquire().await else { return };
    let (principal, action, key) = (principal.to_string(), action.to_string(), key.to_string());
    let log = a.clone();
    match tokio::task::spawn_blocking(move || log.append(&principal, &action, &key, status)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(region = %node.region, error = %e, "cannot write the audit log"),
        Err(e) => tracing::error!(region = %node.region, error = %e, "the audit writer failed"),
    }
}

/// The principal the `authorize` layer let through.
pub(crate) fn principal_of(p: &Option<axum::Extension<Principal>>) -> String {
    p.as_ref().map_or_else(|| ANONYMOUS.to_string(), |axum::Extension(p)| p.name.clone())
}

/// Writes the audit entry of a write's answer, before the answer is sent.
pub(crate) async fn audited(
    node: &Node,
    principal: &str,
    action: &str,
    key: &str,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    audit(node, principal, action, key, status.as_u16()).await;
    result
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Only entries with a greater seq.
    after: Option<u64>,
    /// Page size, 1..=AUDIT_LIMIT_MAX.
    limit: Option<usize>,
}

/// Largest audit page.
pub const AUDIT_LIMIT_MAX: usize = 1000;

/// `GET /v1/audit?after=SEQ&limit=N` (admin): one page of the audit log, oldest first.
pub(super) async fn audit_page(
    State(node): Shared,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(AUDIT_LIMIT_MAX);
    if limit == 0 || limit > AUDIT_LIMIT_MAX {
        return Err(err(StatusCode::BAD_REQUEST, "invalid_query", format!("limit must be 1 to {AUDIT_LIMIT_MAX}")));
    }
    let after = q.after.unwrap_or(0);
    let (entries, more) = match node.security.audit.clone() {
        None => (Vec::new(), false),
        Some(a) => tokio::task::spawn_blocking(move || a.page(after, limit))
            .await
            .map_err(store_failed)?
            .map_err(store_failed)?,
    };
    let next_after = if more { entries.last().map(|e| e.seq) } else { None };
    Ok(json(&AuditPage { region: node.region.clone(), entries, next_after }))
}
