//! What the node's handlers answer with: JSON bodies, and `ApiError`, a status with a JSON `ErrorBody` (plus the
//! version of a tombstone a `404` found), including the rejections of axum's extractors (bad key, bad body, body
//! too large) mapped to the contract's error codes.

use crate::node::Node;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use xregion_model::Version;
use xregion_model::wire::{BODY_BYTES_MAX, ErrorBody, key_problem};

/// The state every handler extracts: the node.
pub(crate) type Shared = State<Arc<Node>>;

/// An error answer: status plus `ErrorBody`, optionally with the version of a tombstone.
pub(crate) struct ApiError {
    /// The answer's status.
    pub(crate) status: StatusCode,
    /// What went wrong, for the client.
    pub(crate) body: ErrorBody,
    /// The version of the tombstone a `404` found, if any.
    pub(crate) version: Option<Version>,
}

/// `ErrorBody` plus the tombstone's version; a superset, so clients that parse `ErrorBody` still can.
#[derive(Serialize)]
struct ErrorWire<'a> {
    #[serde(flatten)]
    body: &'a ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a Version>,
}

pub(crate) fn err(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError { status, body: ErrorBody { error: code.to_string(), message: message.into() }, version: None }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let json =
            serde_json::to_vec(&ErrorWire { body: &self.body, version: self.version.as_ref() }).unwrap_or_default();
        (self.status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
    }
}

pub(crate) fn store_failed(e: impl std::fmt::Display) -> ApiError {
    err(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the store cannot serve this request: {e}"))
}

pub(crate) fn json<T: Serialize>(value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The key from the path, checked against the contract's key rules.
pub(crate) fn path_key(key: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = key.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_key", e.body_text()))?;
    checked_key(&key)?;
    Ok(key)
}

pub(crate) fn checked_key(key: &str) -> Result<(), ApiError> {
    match key_problem(key) {
        Some(p) => Err(err(StatusCode::BAD_REQUEST, "invalid_key", p)),
        None => Ok(()),
    }
}

/// Maps a body rejection: too large is 413, anything else 400.
pub(crate) fn body_rejection(r: BytesRejection) -> ApiError {
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
