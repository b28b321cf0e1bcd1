//! Customers: `POST /app/v1/customers` registers one (the region that takes it is its home), `GET
//! /app/v1/customers?email=` lists this region's copy of the customers with an e-mail.
//!
//! An e-mail is unique across the regions: the region that owns its hash (`owner_of`) holds the reservation
//! `app/email/{hash}`, and the home region writes the customer `app/customer/{hash}/{id}` only once the owner has
//! reserved the e-mail for it. An owner that cannot be reached makes the registration 503, never a second account.
//! With the `email_uniqueness_disabled` defect the home region checks only its own copy of the reservations, so
//! two regions register the same e-mail at once.

use super::rpc::{self, Answer, Call};
use super::{ApiError, answer, body, decoded, hash_hex, list, new_id, regions, stored, update, writable};
use crate::auth::Principal;
use crate::node::Node;
use crate::node::http::audit::{audited, principal_of};
use crate::node::http::reply::{Shared, err, json};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// Longest e-mail address (RFC 5321's path limit).
pub const EMAIL_LEN_MAX: usize = 254;
/// Longest customer name.
pub const NAME_LEN_MAX: usize = 200;

/// A customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Its id.
    pub id: String,
    /// Its e-mail, lowercased.
    pub email: String,
    /// Its name.
    pub name: String,
    /// The region it registered in.
    pub home: String,
}

/// `POST /app/v1/customers` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Registration {
    email: String,
    name: String,
}

/// `GET /app/v1/customers` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Find {
    email: String,
}

/// An e-mail's reservation, held by the region that owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reservation {
    customer: String,
    home: String,
}

fn email_key(hash: &str) -> String {
    format!("app/email/{hash}")
}

fn customer_key(hash: &str, id: &str) -> String {
    format!("app/customer/{hash}/{id}")
}

/// The region that owns e-mails of hash `hash`: the same in every region.
pub fn owner_of(regions: &[String], hash: &str) -> String {
    let n = u64::from_str_radix(hash.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    regions[(n % regions.len() as u64) as usize].clone()
}

/// The e-mail, normalised, or why it is not one.
fn checked_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_ascii_lowercase();
    let shaped = e.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if e.len() > EMAIL_LEN_MAX || !shaped || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_email",
            format!("{email:?} is not an e-mail address (local@domain, at most {EMAIL_LEN_MAX} characters)"),
        ));
    }
    Ok(e)
}

/// `POST /app/v1/customers` (write): 201 `{customer}`, 409 `email_taken`, 503 `owner_unavailable`.
pub(super) async fn register(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut audit_key = "customer".to_string();
    let result = async {
        writable(&node)?;
        let reg: Registration = body(raw, r#"{"email": "...", "name": "..."}"#)?;
        let email = checked_email(&reg.email)?;
        if reg.name.trim().is_empty() || reg.name.len() > NAME_LEN_MAX {
            return Err(err(StatusCode::BAD_REQUEST, "invalid_name", format!("a name is 1 to {NAME_LEN_MAX} bytes")));
        }
        let hash = hash_hex(&email);
        let customer = Customer { id: new_id("c-"), email, name: reg.name, home: node.region.clone() };
        audit_key = format!("customer/{}", customer.id);
        let owner = owner_of(&regions(&node), &hash);
        let local = node.defects.email_uniqueness_disabled || owner == node.region;
        if node.defects.email_uniqueness_disabled {
            tracing::warn!(region = %node.region, "DEFECT email_uniqueness_disabled: the e-mail is checked in this region's copy only");
        }
        if !local {
            let call = Call::Reserve { email_hash: hash.clone(), customer: customer.id.clone(), home: node.region.clone() };
            match rpc::call(&node, &owner, &call).await {
                Ok(Answer::Reserved) => {}
                Ok(Answer::Taken { .. }) => return Err(taken()),
                Ok(other) => return Err(owner_unavailable(&owner, &format!("{other:?}"))),
                Err(why) => return Err(owner_unavailable(&owner, &why)),
            }
        }
        let reservation = stored(&Reservation { customer: customer.id.clone(), home: node.region.clone() });
        let record = (customer_key(&hash, &customer.id), stored(&customer));
        let keys = if local { vec![email_key(&hash)] } else { Vec::new() };
        let email_k = email_key(&hash);
        let decided = update(&node, keys, move |values| {
            if local && values[0].is_some() {
                return (Vec::new(), serde_json::json!(false));
            }
            let mut writes = vec![record.clone()];
            if local {
                writes.push((email_k.clone(), reservation.clone()));
            }
            (writes, serde_json::json!(true))
        })
        .await?;
        if decided != serde_json::json!(true) {
            return Err(taken());
        }
        Ok(answer(StatusCode::CREATED, &serde_json::json!({ "customer": customer })))
    }
    .await;
    audited(&node, &principal_of(&principal), "register", &audit_key, result).await
}

fn taken() -> ApiError {
    err(StatusCode::CONFLICT, "email_taken", "a customer with this e-mail is already registered")
}

fn owner_unavailable(owner: &str, why: &str) -> ApiError {
    err(
        StatusCode::SERVICE_UNAVAILABLE,
        "owner_unavailable",
        format!("the region that owns this e-mail ({owner}) cannot reserve it now ({why}); nothing was registered"),
    )
}

/// Reserves e-mail `hash` for `customer` in this region (its owner): `Reserved` when it was free or is already
/// this customer's, else `Taken`.
pub(super) async fn reserve(node: &Node, hash: &str, customer: &str, home: &str) -> Answer {
    let mine = Reservation { customer: customer.to_string(), home: home.to_string() };
    let value = stored(&mine);
    let key = email_key(hash);
    let k = key.clone();
    let decided = update(node, vec![key], move |values| match decoded::<Reservation>(values[0].as_ref()) {
        Some(held) if held.customer != mine.customer => (Vec::new(), serde_json::json!({ "taken": held.customer })),
        Some(_) => (Vec::new(), serde_json::json!({ "reserved": true })),
        None => (vec![(k.clone(), value.clone())], serde_json::json!({ "reserved": true })),
    })
    .await;
    match decided {
        Ok(v) => match v["taken"].as_str() {
            Some(holder) => Answer::Taken { customer: holder.to_string() },
            None => Answer::Reserved,
        },
        Err(e) => Answer::Unavailable { why: e.body.message },
    }
}

/// `GET /app/v1/customers?email=` (read): `{email, customers}` as this region holds them.
pub(super) async fn find(State(node): Shared, q: Result<Query<Find>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let email = checked_email(&q.email)?;
    let customers: Vec<Customer> = list(&node, format!("app/customer/{}/", hash_hex(&email))).await?;
    Ok(json(&serde_json::json!({ "email": email, "customers": customers })))
}
