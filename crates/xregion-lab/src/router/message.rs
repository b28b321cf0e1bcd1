//! The HTTP plumbing the router's listeners share (the routing proxy, the CDN edges, the status listener):
//! buffered request bodies, hop-by-hop headers, JSON answers and JSON `ErrorBody` errors, and the bearer-token
//! check of the status listener and of the CDN's cacheable requests.

use crate::auth::{AuthError, Scope, Tokens};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use xregion_model::wire::ErrorBody;

/// Largest request body the router buffers (it buffers bodies so that a failed attempt can be retried).
pub const REQUEST_BODY_BYTES_MAX: usize = 1 << 20;

/// The body of every answer: the router buffers bodies (see `REQUEST_BODY_BYTES_MAX`).
pub type Body = Full<Bytes>;

/// Buffers a request body up to `REQUEST_BODY_BYTES_MAX`.
pub(super) async fn read_body(body: Incoming) -> Result<Bytes, Response<Bytes>> {
    match Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(error_bytes(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the router buffers request bodies up to {REQUEST_BODY_BYTES_MAX} bytes"),
        )),
        Err(e) => Err(error_bytes(StatusCode::BAD_REQUEST, "invalid_body", &format!("cannot read the body: {e}"))),
    }
}

/// Whether `name` is a hop-by-hop header, which a proxy must not forward (RFC 9110, 7.6.1).
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes every hop-by-hop header.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for n in drop {
        headers.remove(n);
    }
}

/// Sets header `name` to `value`, unless `value` cannot be a header value.
pub(super) fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// A JSON answer, unwrapped.
fn json_bytes<T: Serialize>(status: StatusCode, value: &T) -> Response<Bytes> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON answer.
pub(super) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_bytes(status, value).map(Full::new)
}

/// A JSON `ErrorBody` answer, unwrapped.
pub(super) fn error_bytes(status: StatusCode, code: &str, message: &str) -> Response<Bytes> {
    json_bytes(status, &ErrorBody { error: code.to_string(), message: message.to_string() })
}

/// A JSON `ErrorBody` answer.
pub(super) fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    error_bytes(status, code, message).map(Full::new)
}

/// A 401 or 403 answer with the JSON `ErrorBody` and, for 401, the `WWW-Authenticate` challenge.
pub(super) fn auth_error_bytes(e: &AuthError) -> Response<Bytes> {
    let body = e.body();
    let mut resp = error_bytes(e.status(), &body.error, &body.message);
    if let Some(challenge) = e.www_authenticate() {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    resp
}

/// Whether a request with `headers` may do what needs `needed`: always when `tokens` is `None` (the
/// `auth_disabled` defect), else by its `Authorization` header.
pub(super) fn authorize(tokens: Option<&Tokens>, headers: &HeaderMap, needed: Scope) -> Result<(), AuthError> {
    let Some(tokens) = tokens else { return Ok(()) };
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    tokens.authorize(header, needed).map(|_| ())
}
