//! Region-to-region round trips for `GET /v1/peers/rtt`, measured over the path replication uses.
//!
//! For each peer the measuring region dials the peer's link address (the WAN proxy's listener that
//! `PUT /lab/peers` gave it, from the region's own IP, exactly as the shipper does) on a fresh connection, sends
//! `Probe{from}` and then `count` sequential `Ping`s, and times each until its `Pong` arrives. So a sample holds
//! the emulated one-way delay and jitter of both directions plus the real cost of the proxies and sockets, and
//! a fault rule on a link (extra delay, drop, refuse) shows in it as it would in replication. Peers are measured
//! concurrently; each has a deadline, and a peer that fails is reported with its error, never as a failed request.
//!
//! The probed region answers on its replication listener (`repl::receive` hands probe connections to `answer`),
//! never mixing pings with a replication stream.

use super::link::{self, Conn, IO_TIMEOUT, StreamError};
use super::{Node, PeerState};
use crate::proto::{self, Frame, PROBE_PINGS_MAX};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::codec::Framed;
use xregion_model::wire::{PeerRtt, PeersRtt, RTT_COUNT_DEFAULT, RTT_COUNT_MAX};

/// Longest one round trip may take (or the connection and its `Probe` frame) before the peer is reported as
/// failed: a blackholed link fails in this time, not at the deadline.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(2);
/// Base of a peer's deadline: connection set-up and a margin.
pub const DEADLINE_BASE: Duration = Duration::from_secs(5);
/// Added to a peer's deadline per round trip asked for, so that `RTT_COUNT_MAX` round trips fit over the lab's
/// slowest default link (125 ms) with room for jitter and a loaded machine.
pub const DEADLINE_PER_ROUND_TRIP: Duration = Duration::from_millis(150);
/// Most peer measurements a region runs at once, over all requests: each holds a connection on a WAN link and
/// on the peer's replication listener, whose slots replication needs too.
pub const PROBES_MAX: usize = 8;
/// How long the probed side waits for the next ping before it closes a probe connection.
pub const PROBE_IDLE_TIMEOUT: Duration = IO_TIMEOUT;

/// The number of round trips a query asks for: `RTT_COUNT_DEFAULT` when absent, else 1 to `RTT_COUNT_MAX`.
pub fn checked_count(count: Option<u32>) -> Result<u32, String> {
    match count.unwrap_or(RTT_COUNT_DEFAULT) {
        n @ 1..=RTT_COUNT_MAX => Ok(n),
        n => Err(format!("count is {n}; it must be 1 to {RTT_COUNT_MAX}")),
    }
}

/// How long the measurement of one peer may take in all, for `count` round trips.
pub fn deadline(count: u32) -> Duration {
    DEADLINE_BASE + DEADLINE_PER_ROUND_TRIP * count
}

/// Measures `count` round trips to every peer, concurrently.
pub async fn measure_all(node: &Node, count: u32) -> PeersRtt {
    let peers = futures::future::join_all(node.peers.values().map(|p| measure(node, p, count))).await;
    PeersRtt { region: node.region.clone(), peers }
}

/// Measures one peer within `deadline(count)`; a failure becomes the entry's `error`.
async fn measure(node: &Node, peer: &PeerState, count: u32) -> PeerRtt {
    let limit = deadline(count);
    let attempt = async {
        let _permit = node.rtt_probes.acquire().await.map_err(|_| "the region is shutting down".to_string())?;
        let addr = (*peer.addr.borrow()).ok_or_else(|| {
            format!("no link address for {} yet: the lab supervisor has not wired this region", peer.name)
        })?;
        round_trips(node, &peer.name, addr, count).await.map_err(|e| format!("via {addr}: {e}"))
    };
    let result = tokio::select! {
        _ = node.shutdown.cancelled() => Err("the region is shutting down".to_string()),
        r = tokio::time::timeout(limit, attempt) => {
            r.unwrap_or_else(|_| Err(format!("{count} round trips did not finish within {limit:?}")))
        }
    };
    match result {
        Ok(samples_ms) => PeerRtt { region: peer.name.clone(), samples_ms, error: None },
        Err(e) => {
            tracing::info!(region = %node.region, peer = %peer.name, error = %e, "round-trip probe failed");
            PeerRtt { region: peer.name.clone(), samples_ms: Vec::new(), error: Some(e) }
        }
    }
}

/// Dials `addr`, opens a probe, and times `count` sequential pings, in milliseconds.
async fn round_trips(node: &Node, peer: &str, addr: SocketAddr, count: u32) -> Result<Vec<f64>, String> {
    let open = async {
        let stream = link::dial(node, peer, addr).await?;
        let mut conn: Conn = Framed::new(stream, proto::codec());
        conn.send(proto::encode(&Frame::Probe { from: node.region.clone() })).await?;
        Ok::<_, StreamError>(conn)
    };
    let mut conn = tokio::time::timeout(ROUND_TRIP_TIMEOUT, open)
        .await
        .map_err(|_| format!("cannot open a probe connection within {ROUND_TRIP_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot open a probe connection: {e}"))?;
    let mut samples_ms = Vec::with_capacity(count as usize);
    for nonce in 1..=u64::from(count) {
        let started = Instant::now();
        let exchange = async {
            conn.send(proto::encode(&Frame::Ping { nonce })).await?;
            match conn.next().await {
                Some(bytes) => Ok(proto::decode(&bytes?)?),
                None => Err(StreamError::Closed),
            }
        };
        let answer = tokio::time::timeout(ROUND_TRIP_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("round trip {nonce} got no answer within {ROUND_TRIP_TIMEOUT:?}"))?
            .map_err(|e| format!("round trip {nonce} failed: {e}"))?;
        let elapsed = started.elapsed();
        match answer {
            // Whole microseconds: finer digits would be noise, and they keep the JSON short.
            Frame::Pong { nonce: n } if n == nonce => samples_ms.push(elapsed.as_micros() as f64 / 1000.0),
            other => return Err(format!("round trip {nonce}: expected pong {nonce}, got {other:?}")),
        }
    }
    Ok(samples_ms)
}

/// Answers the pings of a probe connection (its `Probe` frame already read): a `Pong` for each of at most
/// `PROBE_PINGS_MAX` pings, until the prober closes. Anything else, more pings, or silence for
/// `PROBE_IDLE_TIMEOUT` closes the connection.
pub(super) async fn answer(conn: &mut Conn) -> Result<(), StreamError> {
    let mut answered = 0u32;
    loop {
        let frame = match tokio::time::timeout(PROBE_IDLE_TIMEOUT, conn.next()).await {
            Err(_) => return Err(StreamError::Timeout),
            Ok(None) => return Ok(()),
            Ok(Some(bytes)) => proto::decode(&bytes?)?,
        };
        match frame {
            Frame::Ping { nonce } if answered < PROBE_PINGS_MAX => {
                link::send(conn, &Frame::Pong { nonce }).await?;
                answered += 1;
            }
            Frame::Ping { .. } => {
                return Err(StreamError::Protocol(format!("more than {PROBE_PINGS_MAX} pings on one probe")));
            }
            other => {
                return Err(StreamError::Protocol(format!("expected a ping on a probe connection, got {other:?}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defects;
    use crate::node::testutil;

    /// Goal: the count defaults to 20 and is limited to 1..=100.
    #[test]
    fn count_is_validated() {
        assert_eq!(checked_count(None), Ok(RTT_COUNT_DEFAULT));
        assert_eq!(checked_count(Some(1)), Ok(1));
        assert_eq!(checked_count(Some(RTT_COUNT_MAX)), Ok(RTT_COUNT_MAX));
        assert!(checked_count(Some(0)).is_err());
        assert!(checked_count(Some(RTT_COUNT_MAX + 1)).is_err());
        assert!(deadline(RTT_COUNT_MAX) > Duration::from_millis(125) * RTT_COUNT_MAX, "the largest count fits");
    }

    /// Goal: a region measures a peer through the peer's real replication listener, an unwired peer is
    /// reported with an error instead of failing the whole answer, and probing stores nothing. Method: two
    /// in-process nodes, only one of b's two peers wired.
    #[tokio::test]
    async fn measures_wired_peers_and_reports_the_rest() {
        let a = testutil::node("rtt-measure", "a", &["b"], Defects::default());
        let b = testutil::node("rtt-measure", "b", &["a", "c"], Defects::default());
        b.peers["a"].addr.send_replace(Some(testutil::listen(&a).await));
        let got = measure_all(&b, 3).await;
        assert_eq!(got.region, "b");
        assert_eq!(got.peers.len(), 2);
        assert_eq!((got.peers[0].region.as_str(), got.peers[0].samples_ms.len()), ("a", 3), "{got:?}");
        assert!(got.peers[0].error.is_none() && got.peers[0].samples_ms.iter().all(|s| *s >= 0.0));
        assert_eq!(got.peers[1].region, "c");
        assert!(got.peers[1].samples_ms.is_empty());
        assert!(got.peers[1].error.as_deref().is_some_and(|e| e.contains("no link address")), "{got:?}");
        assert_eq!(a.head_seq(), 0);
        a.shutdown.cancel();
        b.shutdown.cancel();
    }

    /// Goal: the probed side answers pings with matching pongs and closes a probe that sends anything else (a
    /// batch, a heartbeat), or a probe from a region that is not a peer. Method: speak the protocol by hand.
    #[tokio::test]
    async fn probe_connections_answer_pings_only() {
        let node = testutil::node("rtt-answer", "a", &["b"], Defects::default());
        let addr = testutil::listen(&node).await;
        let mut conn = testutil::open(addr, Frame::Probe { from: "b".into() }).await;
        for nonce in [5, 9] {
            testutil::send(&mut conn, Frame::Ping { nonce }).await;
            assert_eq!(testutil::next(&mut conn).await, Some(Frame::Pong { nonce }));
        }
        // A batch on a probe connection is malformed: the connection closes and nothing is applied.
        testutil::send(&mut conn, testutil::batch(vec![testutil::entry(1, "k", "b")])).await;
        assert_eq!(testutil::next(&mut conn).await, None, "the connection stayed open");
        assert_eq!(node.store.get("k").unwrap(), None);

        let mut conn = testutil::open(addr, Frame::Probe { from: "b".into() }).await;
        testutil::send(&mut conn, Frame::Heartbeat { head: 3, acked: 0 }).await;
        assert_eq!(testutil::next(&mut conn).await, None, "a heartbeat on a probe connection");
        assert_eq!(node.peers["b"].heard().head, None, "the heartbeat did not count");

        let mut stranger = testutil::open(addr, Frame::Probe { from: "zz".into() }).await;
        testutil::send(&mut stranger, Frame::Ping { nonce: 1 }).await;
        assert_eq!(testutil::next(&mut stranger).await, None, "a stranger got an answer");
        node.shutdown.cancel();
    }
}
