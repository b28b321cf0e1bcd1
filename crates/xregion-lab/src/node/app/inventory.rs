//! Inventory in escrow: `POST /app/v1/stock/{sku}` receives units into this region's allocation, `GET
//! /app/v1/stock/{sku}` answers the total every region agrees on once replication has caught up.
//!
//! Each region writes only its own escrow record `app/stock/{sku}/{region}`: the units it received, sold, took
//! from each other region (`inbound`) and gave to each (`outbound`). It sells only what its record says it
//! holds (`Escrow::available`), in one read-modify-write with the order, so it never sells a unit twice. A
//! region short of units asks the others for some (`Call::Take`); the giver moves them to its `outbound` in its
//! own record before answering, and the taker adds them to its `inbound` (also learning them from the giver's
//! replicated record, should the answer be lost). A unit is therefore in one region's allocation at a time, or
//! in transit and in none: a partition can strand units but never sell one twice. The total is what every
//! region received minus what every region sold.
//!
//! With the `inventory_escrow_disabled` defect there is one shared counter `app/stock-shared/{sku}`, which every
//! region decrements in its own copy and replicates by last-writer-wins: concurrent orders in two regions both
//! sell the last unit, and the counter no longer equals what was received minus what was sold.

use super::rpc::{self, Answer, Call};
use super::{ApiError, body, decoded, regions, stored, update, writable};
use crate::auth::Principal;
use crate::node::Node;
use crate::node::http::audit::{audited, principal_of};
use crate::node::http::catalog::{ITEM_LEN_MAX, valid_item};
use crate::node::http::reply::{Shared, err, json};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most units one receipt may add.
pub const RECEIVE_MAX: u64 = 1_000_000;
/// Rounds of asking the other regions for units before an order is refused as sold out.
pub const REBALANCE_ROUNDS: usize = 3;
/// Pause after a round that found no unit: units given to a region moments ago may be in its answer's way back,
/// not yet in its record, so another round asks again.
pub const REBALANCE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// A region's escrow record of one item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Escrow {
    /// Units received here.
    pub received: u64,
    /// Units sold here.
    pub sold: u64,
    /// Units taken from each other region (as far as this region knows; only grows).
    #[serde(default)]
    pub inbound: BTreeMap<String, u64>,
    /// Units given to each other region (only grows).
    #[serde(default)]
    pub outbound: BTreeMap<String, u64>,
}

impl Escrow {
    /// Units this region may sell now.
    pub fn available(&self) -> u64 {
        let have = self.received + self.inbound.values().sum::<u64>();
        have.saturating_sub(self.outbound.values().sum::<u64>() + self.sold)
    }
}

/// `GET /app/v1/stock/{sku}` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockView {
    /// The item.
    pub sku: String,
    /// Units received and not sold, over every region, as this region's copy says.
    pub units: u64,
    /// Units received, over every region.
    pub received: u64,
    /// Units sold, over every region.
    pub sold: u64,
    /// Units each region may sell now (escrow only), as this region's copy says.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub available: BTreeMap<String, u64>,
    /// The region answering.
    pub region: String,
}

/// The shared counter of the `inventory_escrow_disabled` defect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Shared_ {
    units: u64,
    received: u64,
    sold: u64,
}

/// `POST /app/v1/stock/{sku}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Receipt {
    units: u64,
}

fn escrow_key(sku: &str, region: &str) -> String {
    format!("app/stock/{sku}/{region}")
}

fn shared_key(sku: &str) -> String {
    format!("app/stock-shared/{sku}")
}

/// The keys an escrow update reads: this region's record first, then every other region's.
fn escrow_keys(node: &Node, sku: &str) -> (Vec<String>, Vec<String>) {
    let others: Vec<String> = node.peers.keys().cloned().collect();
    let mut keys = vec![escrow_key(sku, &node.region)];
    keys.extend(others.iter().map(|r| escrow_key(sku, r)));
    (keys, others)
}

/// This region's escrow from the values of `escrow_keys`, with what the others gave it folded in (their
/// replicated records, and `known`: what their answers said).
fn mine(me: &str, others: &[String], values: &[Option<String>], known: &BTreeMap<String, u64>) -> Escrow {
    let mut e: Escrow = decoded(values[0].as_ref()).unwrap_or_default();
    for (other, value) in others.iter().zip(&values[1..]) {
        let theirs: Escrow = decoded(value.as_ref()).unwrap_or_default();
        let gave = theirs.outbound.get(me).copied().unwrap_or(0).max(known.get(other).copied().unwrap_or(0));
        let got = e.inbound.entry(other.clone()).or_insert(0);
        *got = (*got).max(gave);
    }
    e.inbound.retain(|_, n| *n > 0);
    e
}

fn checked_sku(sku: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(sku) = sku.map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_sku", e.body_text()))?;
    if !valid_item(&sku) {
        return Err(err(StatusCode::BAD_REQUEST, "invalid_sku", format!("a SKU is 1 to {ITEM_LEN_MAX} of a-z 0-9 -")));
    }
    Ok(sku)
}

/// `POST /app/v1/stock/{sku}` (write): adds `units` to this region's allocation; answers the stock.
pub(super) async fn receive(
    State(node): Shared,
    principal: Option<axum::Extension<Principal>>,
    sku: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let sku = checked_sku(sku)?;
    let result = async {
        writable(&node)?;
        let Receipt { units } = body(raw, r#"{"units": n}"#)?;
        if units == 0 || units > RECEIVE_MAX {
            return Err(err(StatusCode::BAD_REQUEST, "invalid_units", format!("units must be 1 to {RECEIVE_MAX}")));
        }
        if node.defects.inventory_escrow_disabled {
            let key = shared_key(&sku);
            let k = key.clone();
            update(&node, vec![key], move |values| {
                let mut s: Shared_ = decoded(values[0].as_ref()).unwrap_or_default();
                s.units += units;
                s.received += units;
                (vec![(k.clone(), stored(&s))], serde_json::Value::Null)
            })
            .await?;
        } else {
            let key = escrow_key(&sku, &node.region);
            let k = key.clone();
            update(&node, vec![key], move |values| {
                let mut e: Escrow = decoded(values[0].as_ref()).unwrap_or_default();
                e.received += units;
                (vec![(k.clone(), stored(&e))], serde_json::Value::Null)
            })
            .await?;
        }
        Ok(json(&view(&node, &sku).await?))
    }
    .await;
    audited(&node, &principal_of(&principal), "receive", &format!("stock/{sku}"), result).await
}

/// `GET /app/v1/stock/{sku}` (read): the item's stock as this region's copy says; 404 `unknown_sku` if no
/// region has received it.
pub(super) async fn stock(State(node): Shared, sku: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let sku = checked_sku(sku)?;
    Ok(json(&view(&node, &sku).await?))
}

async fn view(node: &Node, sku: &str) -> Result<StockView, ApiError> {
    let mut v = StockView {
        sku: sku.to_string(),
        units: 0,
        received: 0,
        sold: 0,
        available: BTreeMap::new(),
        region: node.region.clone(),
    };
    let mut known = false;
    if node.defects.inventory_escrow_disabled {
        if let Some(s) = super::read::<Shared_>(node, shared_key(sku)).await? {
            (v.units, v.received, v.sold, known) = (s.units, s.received, s.sold, true);
        }
    } else {
        for region in regions(node) {
            if let Some(e) = super::read::<Escrow>(node, escrow_key(sku, &region)).await? {
                v.received += e.received;
                v.sold += e.sold;
                v.available.insert(region, e.available());
                known = true;
            }
        }
        v.units = v.received.saturating_sub(v.sold);
    }
    if !known {
        return Err(err(StatusCode::NOT_FOUND, "unknown_sku", format!("no region has received {sku}")));
    }
    Ok(v)
}

/// Why an order's units could not be taken.
pub(super) struct Short {
    /// Units this region could sell at the last attempt.
    pub available: u64,
    /// Regions that could not be asked for units, with why.
    pub unreachable: Vec<String>,
}

/// Takes `qty` units of `sku` for an order and writes `order` (key, value) in the same transaction: from this
/// region's allocation, else after asking the other regions for units, up to `REBALANCE_ROUNDS` times (an order
/// is refused only when every round found too few).
pub(super) async fn sell(
    node: &Node,
    sku: &str,
    qty: u64,
    order: (String, String),
) -> Result<Result<(), Short>, ApiError> {
    if node.defects.inventory_escrow_disabled {
        tracing::warn!(region = %node.region, "DEFECT inventory_escrow_disabled: one shared counter, last-writer-wins");
        let key = shared_key(sku);
        let k = key.clone();
        let decided = update(node, vec![key], move |values| {
            let mut s: Shared_ = decoded(values[0].as_ref()).unwrap_or_default();
            if s.units < qty {
                return (Vec::new(), serde_json::json!(s.units));
            }
            s.units -= qty;
            s.sold += qty;
            (vec![(k.clone(), stored(&s)), order.clone()], serde_json::Value::Null)
        })
        .await?;
        return Ok(match decided.as_u64() {
            Some(available) => Err(Short { available, unreachable: Vec::new() }),
            None => Ok(()),
        });
    }
    let mut known: BTreeMap<String, u64> = BTreeMap::new();
    let mut unreachable: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..=REBALANCE_ROUNDS {
        let (keys, others) = escrow_keys(node, sku);
        let (me, k, o, kn) = (node.region.clone(), keys[0].clone(), order.clone(), known.clone());
        let decided = update(node, keys, move |values| {
            let mut e = mine(&me, &others, values, &kn);
            let available = e.available();
            if available < qty {
                return (Vec::new(), serde_json::json!(available));
            }
            e.sold += qty;
            (vec![(k.clone(), stored(&e)), o.clone()], serde_json::Value::Null)
        })
        .await?;
        let Some(available) = decided.as_u64() else { return Ok(Ok(())) };
        if round == REBALANCE_ROUNDS {
            let unreachable = unreachable.into_iter().map(|(r, why)| format!("{r} ({why})")).collect();
            return Ok(Err(Short { available, unreachable }));
        }
        let given = rebalance(node, sku, qty - available, &mut known, &mut unreachable).await?;
        if given == 0 {
            tokio::time::sleep(REBALANCE_PAUSE).await;
        }
    }
    unreachable!("the last round returns")
}

/// Asks every other region at once for `want` units (at once, so that a partitioned region costs one call
/// timeout, not one per region); records what each says it gave in `known`. A region that could not be asked goes
/// into `unreachable` and is not asked again for this order. Returns the units given (possibly more than `want`:
/// units only move, they are never lost).
async fn rebalance(
    node: &Node,
    sku: &str,
    want: u64,
    known: &mut BTreeMap<String, u64>,
    unreachable: &mut BTreeMap<String, String>,
) -> Result<u64, ApiError> {
    let asked: Vec<String> = node.peers.keys().filter(|p| !unreachable.contains_key(*p)).cloned().collect();
    let call = Call::Take { sku: sku.to_string(), want };
    let answers = futures::future::join_all(asked.iter().map(|other| rpc::call(node, other, &call))).await;
    let mut given_total = 0;
    for (other, answer) in asked.into_iter().zip(answers) {
        match answer {
            Ok(Answer::Given { given, out_total }) => {
                given_total += given;
                let k = known.entry(other).or_insert(0);
                *k = (*k).max(out_total);
            }
            Ok(other_answer) => {
                unreachable.insert(other, format!("{other_answer:?}"));
            }
            Err(why) => {
                unreachable.insert(other, why);
            }
        }
    }
    Ok(given_total)
}

/// Gives region `to` units of `sku` from this region's allocation, in one transaction: `want`, or half of what
/// this region holds if that is more (so that a busy region does not come back at once), and never more than it
/// holds.
pub(super) async fn give(node: &Node, sku: &str, to: &str, want: u64) -> Answer {
    if !valid_item(sku) || node.defects.inventory_escrow_disabled {
        return Answer::Unavailable { why: format!("no escrow of {sku:?} here") };
    }
    let (keys, others) = escrow_keys(node, sku);
    let (me, k, to_) = (node.region.clone(), keys[0].clone(), to.to_string());
    let decided = update(node, keys, move |values| {
        let mut e = mine(&me, &others, values, &BTreeMap::new());
        let available = e.available();
        let give = available.min(want.max(available / 2));
        let out = e.outbound.entry(to_.clone()).or_insert(0);
        *out += give;
        let out_total = *out;
        let answer = serde_json::json!({ "given": give, "out_total": out_total });
        if give == 0 { (Vec::new(), answer) } else { (vec![(k.clone(), stored(&e))], answer) }
    })
    .await;
    match decided {
        Ok(v) => {
            Answer::Given { given: v["given"].as_u64().unwrap_or(0), out_total: v["out_total"].as_u64().unwrap_or(0) }
        }
        Err(e) => Answer::Unavailable { why: e.body.message },
    }
}
