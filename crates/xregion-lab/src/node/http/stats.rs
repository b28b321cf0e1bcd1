//! What a region reports about itself: `GET /v1/replication` (each peer's cursor, backlog and contact, and the
//! fence), `GET /v1/peers/rtt` (round trips over the replication links, `rtt`), `GET /v1/stats/store` (the store's
//! waits and durations, `store::timings::StoreTimings`) and `GET /metrics` (Prometheus text).

use super::reply::{ApiError, Shared, err, json};
use crate::node::{peer_backlog, rtt};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xregion_model::wire::{PeerStatus, ReplicationStatus, StoreStats};

pub(super) async fn replication(State(node): Shared) -> Response {
    let contact_timeout = Duration::from_millis(node.settings.contact_timeout_ms);
    let mut peers = Vec::with_capacity(node.peers.len());
    for p in node.peers.values() {
        let (pending_entries, lag_ms) = peer_backlog(&node, p).await;
        let heard = p.heard();
        let now = Instant::now();
        peers.push(PeerStatus {
            region: p.name.clone(),
            acked_seq: p.acked_seq.load(Ordering::Acquire),
            pending_entries,
            lag_ms,
            connected: p.connected.load(Ordering::Acquire),
            in_contact: Some(heard.in_contact(now, contact_timeout)),
            heard_ms_ago: heard
                .at
                .map(|at| u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)),
            applied_seq: Some(heard.applied),
            peer_head_seq: heard.head,
        });
    }
    let fenced = Some(node.is_fenced());
    json(&ReplicationStatus { region: node.region.clone(), head_seq: node.head_seq(), peers, fenced })
}

/// Query of `GET /v1/peers/rtt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RttQuery {
    /// Round trips per peer, 1..=RTT_COUNT_MAX (default RTT_COUNT_DEFAULT).
    count: Option<u32>,
}

/// `GET /v1/peers/rtt?count=N`: N round trips to each peer over its replication link; a peer that cannot be
/// measured is listed with its error (still 200).
pub(super) async fn peers_rtt(
    State(node): Shared,
    q: Result<Query<RttQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let count = rtt::checked_count(q.count).map_err(|m| err(StatusCode::BAD_REQUEST, "invalid_query", m))?;
    Ok(json(&rtt::measure_all(&node, count).await))
}

/// Query of `GET /v1/stats/store`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    /// Empty the histograms after answering.
    #[serde(default)]
    reset: bool,
}

/// `GET /v1/stats/store[?reset=true]`: the store's acquire, commit and read times since the start or the last
/// reset.
pub(super) async fn store_stats(
    State(node): Shared,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let s = node.store.timings().summaries(q.reset);
    Ok(json(&StoreStats {
        region: node.region.clone(),
        acquire_ms: s.acquire,
        write_acquire_ms: Some(s.write_acquire),
        read_acquire_ms: Some(s.read_acquire),
        commit_ms: s.commit,
        read_ms: s.read,
    }))
}

pub(super) async fn metrics_text(State(node): Shared) -> Response {
    let text = node.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
