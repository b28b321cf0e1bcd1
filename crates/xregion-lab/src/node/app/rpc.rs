//! Calls between regions of the commerce application: what only another region may do (reserve an e-mail it
//! owns, give units from its allocation, settle a payment of an order it owns), asked over the replication path
//! (`Frame::Call`, answered by one `Frame::Answer`), so a call crosses the WAN's delay and faults exactly as
//! replication does, with mutual TLS. A call that cannot be made or answered within `CALL_TIMEOUT` is an error
//! for the caller, which then refuses with 503 (or, for units, asks the next region).

use super::super::link::{self, Conn, StreamError};
use super::super::{Node, PeerState};
use crate::proto::{self, Frame};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_util::codec::Framed;

/// Longest a call may take in all: connection, TLS, the call's work and the answer.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

/// What one region asks another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    /// Reserve the e-mail of hash `email_hash` (the called region owns it) for `customer`, homed at `home`.
    Reserve {
        /// The e-mail's hash.
        email_hash: String,
        /// The customer id it is reserved for (reserving again for the same id succeeds).
        customer: String,
        /// The customer's home region.
        home: String,
    },
    /// Give the caller up to `want` units of `sku` (or more, up to half of what the called region holds).
    Take {
        /// The item.
        sku: String,
        /// Units the caller is short of.
        want: u64,
    },
    /// Settle a payment of `order` (the called region is its home).
    Pay {
        /// The order id.
        order: String,
        /// The hash of the payment's idempotency key.
        key_hash: String,
        /// The amount the client pays.
        amount_cents: u64,
        /// The new charge's id, if one is made.
        charge: String,
    },
}

/// What the called region answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// The e-mail is reserved for the customer.
    Reserved,
    /// The e-mail is already reserved, for this customer.
    Taken {
        /// The customer holding it.
        customer: String,
    },
    /// Units given: `given` now, and `out_total`, everything the called region ever gave the caller.
    Given {
        /// Units given by this call.
        given: u64,
        /// All units the called region gave the caller so far (monotonic).
        out_total: u64,
    },
    /// A handler's answer, as the client gets it.
    Reply {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: serde_json::Value,
    },
    /// The called region cannot do it now (fenced, store failing, or the call was malformed).
    Unavailable {
        /// Why.
        why: String,
    },
}

/// Calls `peer` and waits for its answer, within `CALL_TIMEOUT`.
pub async fn call(node: &Node, peer: &str, call: &Call) -> Result<Answer, String> {
    let state: &PeerState = node.peers.get(peer).ok_or_else(|| format!("{peer} is not a region of this lab"))?;
    let addr = (*state.addr.borrow()).ok_or_else(|| format!("no link to {peer} yet"))?;
    let exchange = async {
        let stream = link::dial(node, peer, addr).await?;
        let mut conn: Conn = Framed::new(stream, proto::codec());
        let body = serde_json::to_value(call).unwrap_or_default();
        conn.send(proto::encode(&Frame::Call { from: node.region.clone(), call: body })).await?;
        match conn.next().await {
            Some(bytes) => Ok(proto::decode(&bytes?)?),
            None => Err(StreamError::Closed),
        }
    };
    let frame = tokio::select! {
        _ = node.shutdown.cancelled() => return Err("the region is shutting down".to_string()),
        r = tokio::time::timeout(CALL_TIMEOUT, exchange) => r
            .map_err(|_| format!("{peer} did not answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| format!("call to {peer} failed: {e}"))?,
    };
    match frame {
        Frame::Answer { answer } => {
            serde_json::from_value(answer).map_err(|e| format!("{peer} answered something unreadable: {e}"))
        }
        other => Err(format!("{peer} answered {other:?} instead of an answer")),
    }
}
