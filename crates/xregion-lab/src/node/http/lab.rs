//! The lab-internal routes, not part of the probe contract: `PUT /lab/peers` (where to dial each peer, from the
//! supervisor's wiring), `PUT /lab/health` (a forced `/healthz` status), `PUT|GET /lab/fault` (a partial
//! fault, `NodeFault`) and `PUT /lab/clock` (a clock fault: the offset of the clock that stamps versions).

use super::reply::{ApiError, Shared, body_rejection, err, json};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use xregion_model::fault::NodeFault;
use xregion_model::wire::Health;

/// Body of `PUT /lab/health`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetHealth {
    /// `ok`, `degraded` or `down`.
    status: String,
}

/// `PUT /lab/health`: `{"status":"down"}` makes `/healthz` answer 503 with that status (the node keeps serving
/// everything else: a failing health check, not a dead region); `{"status":"ok"}` restores it.
pub(super) async fn set_health(State(node): Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(body_rejection)?;
    let req: SetHealth = serde_json::from_slice(&body).map_err(|e| {
        err(StatusCode::BAD_REQUEST, "invalid_body", format!("expected {{\"status\": \"ok\"|\"down\"}}: {e}"))
    })?;
    if !matches!(req.status.as_str(), "ok" | "degraded" | "down") {
        return Err(err(StatusCode::BAD_REQUEST, "invalid_body", "status must be ok, degraded or down"));
    }
    match node.health.lock() {
        Ok(mut s) => *s = req.status.clone(),
        Err(p) => *p.into_inner() = req.status.clone(),
    }
    tracing::info!(region = %node.region, status = %req.status, "health set");
    Ok(json(&Health { status: req.status, region: node.region.clone() }))
}

/// `PUT /lab/fault`: a `NodeFault` (`{"writes_fail": true, "error_share": 0.2}`) replaces the partial failure in
/// force; `{}` (or every field off) clears it. Answers with the fault now in force.
pub(super) async fn set_fault(State(node): Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(body_rejection)?;
    let fault: NodeFault = serde_json::from_slice(&body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("expected {{\"writes_fail\": bool, \"error_share\": 0..1}}: {e}"),
        )
    })?;
    if !(fault.error_share.is_finite() && (0.0..=1.0).contains(&fault.error_share)) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("error_share is {}; it must be between 0 and 1", fault.error_share),
        ));
    }
    node.fault().set(fault.clone());
    tracing::info!(region = %node.region, writes_fail = fault.writes_fail, error_share = fault.error_share, "partial fault set");
    Ok(json(&fault))
}

/// `GET /lab/fault`: the partial failure in force (all off when none).
pub(super) async fn get_fault(State(node): Shared) -> Response {
    let fault = node.fault().fault.clone();
    json(&fault)
}

/// Body of `PUT /lab/clock`, and its answer.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct SetClock {
    /// Milliseconds the clock that stamps this region's versions is set off (positive: ahead); `null` puts it back
    /// to the configured one (the `clock_offset_ms` defect, else none).
    offset_ms: Option<i64>,
}

/// `PUT /lab/clock`: `{"offset_ms": 400}` sets this region's clock 400 ms ahead from the next write on (a clock
/// fault); `{"offset_ms": null}` lifts it. Answers with the offset now in force.
pub(super) async fn set_clock(State(node): Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    use xregion_model::fault::CLOCK_OFFSET_MS_MAX;
    let body = body.map_err(body_rejection)?;
    let req: SetClock = serde_json::from_slice(&body).map_err(|e| {
        err(StatusCode::BAD_REQUEST, "invalid_body", format!("expected {{\"offset_ms\": integer | null}}: {e}"))
    })?;
    let configured = node.defects.clock_offset_ms.get(&node.region).copied().unwrap_or(0);
    let offset_ms = req.offset_ms.unwrap_or(configured);
    if offset_ms.abs() > CLOCK_OFFSET_MS_MAX {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("offset_ms {offset_ms} is beyond the {CLOCK_OFFSET_MS_MAX} ms a skew may have either way"),
        ));
    }
    node.store.set_clock_offset(offset_ms);
    tracing::info!(region = %node.region, offset_ms, "clock offset set");
    Ok(json(&SetClock { offset_ms: Some(offset_ms) }))
}

/// `PUT /lab/peers`: `{"us-west-2": "127.0.1.2:41000", ...}`, where to dial each peer.
pub(super) async fn set_peers(State(node): Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
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
