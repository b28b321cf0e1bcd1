//! Orders and payments.
//!
//! `POST /app/v1/orders` places an order in this region, which owns it (its id is `{region}:{random}`), taking
//! its units in the same transaction (`inventory::sell`); 409 `sold_out` only when no region could give a unit.
//! `GET /app/v1/orders/{id}` reads this region's copy.
//!
//! `POST /app/v1/orders/{id}/payments` with an `Idempotency-Key` header is settled by the order's home region
//! alone (`settle`, called over the replication path from any other region): the first payment of a key charges
//! the order (201), the same key again answers the same charge (200, `replayed`), another key for a paid order is
//! 409 `already_paid`. A region that cannot reach the home region answers 503 `home_unavailable` and charges
//! nothing; the client retries with the same key. `GET /app/v1/orders/{id}/charges` lists this region's copy of
//! the order's charges. With the `payment_idempotency_disabled` defect any region charges at once, with no key
//! and no paid check, so a retry in another region charges twice.

use super::rpc::{self, Answer, Call};
use super::{
    ApiError, answer, body, decoded, error_json, hash_hex, list, new_id, regions, status_answer, stored, update,
    writable,
};
use crate::auth::Principal;
use crate::node::Node;
use crate::node::http::audit::{audited, principal_of};
use crate::node::http::catalog::{price_cents, valid_item};
use crate::node::http::reply::{Shared, err, json};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// Most units one order may hold.
pub const QTY_MAX: u64 = 100;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 200;
/// Longest customer id an order may name.
pub const CUSTOMER_LEN_MAX: usize = 64;

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// `{home}:{random}`.
    pub id: String,
    /// The region that took it and owns it.
    pub home: String,
    /// The customer's id.
    pub customer: String,
    /// The item.
    pub sku: String,
    /// Units.
    pub qty: u64,
    /// What it costs.
    pub amount_cents: u64,
    /// `placed` or `paid`.
    pub status: String,
    /// The charge that paid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<String>,
}

/// A charge of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// Its id.
    pub id: String,
    /// The order it pays.
    pub order: String,
    /// The amount.
    pub amount_cents: u64,
    /// The region that made it.
    pub region: String,
}

/// `POST /app/v1/orders` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOrder {
    customer: String,
    sku: String,
    qty: u64,
}

/// `POST /app/v1/orders/{id}/payments` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Payment {
    amount_cents: u64,
}

fn order_key(id: &str) -> String {
    format!("app/order/{id}")
}

fn charge_key(order: &str, id: &str) -> String {
    format!("app/charge/{order}/{id}")
}

fn payment_key(order: &str, key_hash: &str) -> String {
    format!("app/payment/{order}/{key_hash}")
}

/// The order id from the path, and its home region (404 `unknown_order` for an id no region could have made).
fn checked_order(node: &Node, id: Result<Path<String>, PathRejection>) -> Result<(String, String), ApiError> {
    let Path(id) = id.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_order", e.body_text()))?;
    let home = id.split_once(':').map(|(home, rest)| (home.to_string(), rest));
    match home {
        Some((home, rest))
            if regions(node).contains(&home) && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok((id, home))
        }
        _ => Err(err(StatusCode::NOT_FOUND, "unknown_order", format!("no order {id:?}"))),
    }
}

/// `POST /app/v1/orders` (write): 201 `{order}`, 409 `sold_out`.
pub(super) async fn place(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = format!("{}:{}", node.region, new_id(""));
    let result = async {
        writable(&node)?;
        let o: NewOrder = body(raw, r#"{"customer": "...", "sku": "...", "qty": n}"#)?;
        if !valid_item(&o.sku) {
            return Err(err(StatusCode::BAD_REQUEST, "invalid_sku", format!("{:?} is not a SKU", o.sku)));
        }
        if o.qty == 0 || o.qty > QTY_MAX {
            return Err(err(StatusCode::BAD_REQUEST, "invalid_qty", format!("qty must be 1 to {QTY_MAX}")));
        }
        if o.customer.is_empty() || o.customer.len() > CUSTOMER_LEN_MAX {
            return Err(err(StatusCode::BAD_REQUEST, "invalid_customer", "an order names its customer's id"));
        }
        let order = Order {
            id: id.clone(),
            home: node.region.clone(),
            customer: o.customer,
            amount_cents: price_cents(&o.sku) * o.qty,
            sku: o.sku,
            qty: o.qty,
            status: "placed".to_string(),
            charge: None,
        };
        match super::inventory::sell(&node, &order.sku, order.qty, (order_key(&id), stored(&order))).await? {
            Ok(()) => Ok(answer(StatusCode::CREATED, &serde_json::json!({ "order": order }))),
            Err(short) => {
                let mut message = format!(
                    "{} has {} of {} units left here and no region could give more",
                    order.sku, short.available, order.qty
                );
                if !short.unreachable.is_empty() {
                    message += &format!(" (not reached: {})", short.unreachable.join(", "));
                }
                Err(err(StatusCode::CONFLICT, "sold_out", message))
            }
        }
    }
    .await;
    audited(&node, &principal_of(&principal), "order", &format!("order/{id}"), result).await
}

/// `GET /app/v1/orders/{id}` (read): this region's copy of the order.
pub(super) async fn get_order(
    State(node): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, _) = checked_order(&node, id)?;
    match super::read::<Order>(&node, order_key(&id)).await? {
        Some(order) => Ok(json(&serde_json::json!({ "order": order }))),
        None => Err(err(StatusCode::NOT_FOUND, "unknown_order", format!("region {} holds no order {id}", node.region))),
    }
}

/// `GET /app/v1/orders/{id}/charges` (read): this region's copy of the order's charges.
pub(super) async fn charges(
    State(node): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, _) = checked_order(&node, id)?;
    let charges: Vec<Charge> = list(&node, format!("app/charge/{id}/")).await?;
    Ok(json(&serde_json::json!({ "order": id, "charges": charges })))
}

/// `POST /app/v1/orders/{id}/payments` (write): 201 `{charge, replayed: false}`, 200 `{charge, replayed: true}`,
/// 409 `already_paid`, 422 `amount_mismatch`, 404 `unknown_order`, 503 `home_unavailable`.
pub(super) async fn pay(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, home) = checked_order(&node, id)?;
    let result = async {
        writable(&node)?;
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("");
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                format!("a payment needs an Idempotency-Key header of 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters"),
            ));
        }
        let Payment { amount_cents } = body(raw, r#"{"amount_cents": n}"#)?;
        let charge = new_id("ch-");
        if node.defects.payment_idempotency_disabled {
            tracing::warn!(region = %node.region, "DEFECT payment_idempotency_disabled: charged here, key ignored");
            let c = Charge { id: charge.clone(), order: id.clone(), amount_cents, region: node.region.clone() };
            let record = (charge_key(&id, &charge), stored(&c));
            update(&node, Vec::new(), move |_| (vec![record.clone()], serde_json::Value::Null)).await?;
            return Ok(answer(StatusCode::CREATED, &serde_json::json!({ "charge": c, "replayed": false })));
        }
        let key_hash = hash_hex(key);
        let (status, body) = if home == node.region {
            settle(&node, &id, &key_hash, amount_cents, &charge).await
        } else {
            let call = Call::Pay { order: id.clone(), key_hash, amount_cents, charge };
            match rpc::call(&node, &home, &call).await {
                Ok(Answer::Reply { status, body }) => (status, body),
                Ok(other) => return Err(home_unavailable(&home, &format!("{other:?}"))),
                Err(why) => return Err(home_unavailable(&home, &why)),
            }
        };
        status_answer(status, body)
    }
    .await;
    audited(&node, &principal_of(&principal), "pay", &format!("order/{id}"), result).await
}

fn home_unavailable(home: &str, why: &str) -> ApiError {
    err(
        StatusCode::SERVICE_UNAVAILABLE,
        "home_unavailable",
        format!(
            "the order's home region {home} settles its payments and cannot be reached ({why}); retry with the same \
             Idempotency-Key"
        ),
    )
}

/// Settles a payment of `order` here, its home region, in one transaction: the status and body the client gets.
pub(super) async fn settle(
    node: &Node,
    order: &str,
    key_hash: &str,
    amount_cents: u64,
    charge: &str,
) -> (u16, serde_json::Value) {
    let (ok, pk) = (order_key(order), payment_key(order, key_hash));
    let keys = vec![ok.clone(), pk.clone()];
    let (order_id, charge_id, region) = (order.to_string(), charge.to_string(), node.region.clone());
    let decided = update(node, keys, move |values| {
        if let Some(c) = decoded::<Charge>(values[1].as_ref()) {
            return (Vec::new(), serde_json::json!([200, { "charge": c, "replayed": true }]));
        }
        let Some(mut o) = decoded::<Order>(values[0].as_ref()) else {
            let e = error_json("unknown_order", format!("no order {order_id} in its home region {region}"));
            return (Vec::new(), serde_json::json!([404, e]));
        };
        if let Some(paid) = &o.charge {
            let e = error_json("already_paid", format!("order {order_id} is paid by charge {paid}"));
            return (Vec::new(), serde_json::json!([409, e]));
        }
        if o.amount_cents != amount_cents {
            let e = error_json(
                "amount_mismatch",
                format!("order {order_id} costs {} cents, not {amount_cents}", o.amount_cents),
            );
            return (Vec::new(), serde_json::json!([422, e]));
        }
        let c = Charge { id: charge_id.clone(), order: order_id.clone(), amount_cents, region: region.clone() };
        o.status = "paid".to_string();
        o.charge = Some(c.id.clone());
        let writes =
            vec![(ok.clone(), stored(&o)), (charge_key(&order_id, &c.id), stored(&c)), (pk.clone(), stored(&c))];
        (writes, serde_json::json!([201, { "charge": c, "replayed": false }]))
    })
    .await;
    match decided {
        Ok(v) => (v[0].as_u64().unwrap_or(500) as u16, v[1].clone()),
        Err(e) => (e.status.as_u16(), error_json(&e.body.error, e.body.message)),
    }
}
