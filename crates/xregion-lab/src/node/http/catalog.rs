//! The cacheable catalogue, `GET /v1/catalog/{item}`: a deterministic product per id, the same in every region
//! (like content from one origin), with `Cache-Control`, a strong `ETag` and `Last-Modified`, answering `304` to a
//! matching `If-None-Match`. The CDN edges cache it (`router::cdn`), and compare ETags with `etag_matches`.

use super::reply::{ApiError, Shared, err};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest `work_ms` a catalogue request may ask for.
pub const WORK_MS_MAX: u64 = 1000;

/// `Last-Modified` of every catalogue item: the catalogue is static, like a product page published once.
pub const CATALOG_LAST_MODIFIED: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// Longest catalogue item id.
pub const ITEM_LEN_MAX: usize = 64;

/// Query of `GET /v1/catalog/{item}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CatalogQuery {
    /// Hold the request this long before answering (service time), at most `WORK_MS_MAX`.
    work_ms: Option<u64>,
}

/// A catalogue product: deterministic for its id, identical in every region (like content from one origin).
#[derive(Debug, Serialize)]
struct Product<'a> {
    item: &'a str,
    name: String,
    price_cents: u64,
    currency: &'static str,
    stock: u64,
    description: String,
}

/// FNV-1a, stable across builds and processes (the ETag must be the same in every region).
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The price of an item, in cents (what the catalogue shows and what the shop charges).
pub fn price_cents(item: &str) -> u64 {
    100 + fnv(item.as_bytes()) % 99_900
}

/// Whether `item` is a valid item id (the catalogue's and the shop's SKUs): 1 to `ITEM_LEN_MAX` of a-z 0-9 -.
pub fn valid_item(item: &str) -> bool {
    let ok_chars = item.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    !item.is_empty() && item.len() <= ITEM_LEN_MAX && ok_chars
}

/// The body and strong ETag of an item.
pub fn catalog_item(item: &str) -> (Vec<u8>, String) {
    let h = fnv(item.as_bytes());
    let product = Product {
        item,
        name: format!("Product {item}"),
        price_cents: price_cents(item),
        currency: "USD",
        stock: (h >> 20) % 1000,
        description: format!("Catalogue entry {item}: deterministic, the same in every region, cacheable."),
    };
    let body = serde_json::to_vec(&product).unwrap_or_default();
    let etag = format!("\"{:016x}\"", fnv(&body));
    (body, etag)
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, as RFC 9110 asks for this header).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// `GET /v1/catalog/{item}`: a cacheable product with `Cache-Control`, `ETag` and `Last-Modified`; answers
/// `304` to a matching `If-None-Match`.
pub(super) async fn catalog(
    State(node): Shared,
    Path(item): Path<String>,
    q: Result<Query<CatalogQuery>, QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    if !valid_item(&item) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_key",
            format!("an item id is 1 to {ITEM_LEN_MAX} characters from a-z 0-9 -"),
        ));
    }
    let work_ms = q.work_ms.unwrap_or(0);
    if work_ms > WORK_MS_MAX {
        return Err(err(StatusCode::BAD_REQUEST, "invalid_query", format!("work_ms must be 0 to {WORK_MS_MAX}")));
    }
    if work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(work_ms)).await;
    }
    let (body, etag) = catalog_item(&item);
    let cache_control = format!("public, max-age={}", node.settings.catalog_max_age_s);
    let matched =
        headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| etag_matches(v, &etag));
    let common = [
        (header::CACHE_CONTROL, cache_control),
        (header::ETAG, etag),
        (header::LAST_MODIFIED, CATALOG_LAST_MODIFIED.to_string()),
    ];
    if matched {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((StatusCode::OK, common, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}
