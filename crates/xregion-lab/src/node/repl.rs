//! Replication: a shipper per peer that streams this region's outbox, and a receiver that applies what peers
//! send.
//!
//! The shipper keeps one TCP connection per directed link (dialled through the WAN proxy) and pipelines: it sends
//! every committed entry as soon as the writer announces it, without waiting for acks, up to
//! `INFLIGHT_ENTRIES_MAX` unacknowledged entries. Acks move the in-memory cursor; the cursor flusher makes it
//! durable. After a reconnect it resends from the acked cursor; applying an entry twice changes nothing.
//!
//! The receiver validates each whole batch before applying any of it (a malformed frame closes the connection),
//! applies it in one durable transaction through the store's writer, then acks its highest seq. Each batch is
//! due at arrival + `replication_delay_ms` (0 unless the defect is on), in order, so a delay defect does not
//! slow delivery of the batches behind it.
//!
//! A connection that opens with `Probe` instead of `Hello` is a round-trip probe (`rtt`), answered there.

use super::store::{WriteOp, WriteOutcome};
use super::{Node, PeerState, rtt};
use crate::proto::{self, BATCH_BYTES_TARGET, BATCH_ENTRIES_MAX, BatchError, Entry, Frame};
use crate::record::MergePolicy;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// Most entries sent but not yet acknowledged per link: bounds the receiver's queue and a resend after reconnect.
pub const INFLIGHT_ENTRIES_MAX: u64 = 32 * BATCH_ENTRIES_MAX as u64;
/// Batches a receiver holds between reading and applying (the delay defect queues here).
pub const RECEIVE_QUEUE_BATCHES: usize = 64;
/// Most entries merged into one apply when batches queue up at a receiver.
pub const APPLY_ENTRIES_MAX: usize = 4 * BATCH_ENTRIES_MAX;
/// Most replication connections a region accepts at once (one per peer is normal; the rest is slack for
/// reconnects that overlap a dying connection).
pub const INBOUND_CONNECTIONS_MAX: usize = 64;
/// First reconnect delay; doubles up to `RECONNECT_BACKOFF_MAX`.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long outstanding entries may go unacknowledged before the stream is redialled (plus the receiver's
/// delay defect, if any).
pub const ACK_TIMEOUT_BASE: Duration = Duration::from_secs(5);
/// Longest wait to connect, to send a frame, or for the peer's Hello.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) type Conn = Framed<TcpStream, tokio_util::codec::LengthDelimitedCodec>;

/// Why a replication stream (or a probe connection) ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("timed out")]
    Timeout,
    #[error("peer closed the connection")]
    Closed,
    #[error("store: {0}")]
    Store(String),
}

/// Ships this region's outbox to `peer` until shutdown, reconnecting with bounded backoff.
pub async fn ship(node: Arc<Node>, peer: Arc<PeerState>) {
    let mut addr_rx = peer.addr.subscribe();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        // Wait until the supervisor has told us where the peer is.
        let addr = loop {
            if let Some(a) = *addr_rx.borrow_and_update() {
                break a;
            }
            tokio::select! {
                _ = node.shutdown.cancelled() => return,
                r = addr_rx.changed() => if r.is_err() { return },
            }
        };
        let result = tokio::select! {
            _ = node.shutdown.cancelled() => return,
            r = stream_to(&node, &peer, addr, &mut addr_rx, &mut backoff) => r,
        };
        peer.connected.store(false, Ordering::Release);
        match result {
            Ok(()) => backoff = RECONNECT_BACKOFF_MIN, // address changed: dial the new one now
            Err(e) => {
                tracing::warn!(region = %node.region, peer = %peer.name, %addr, error = %e, "replication stream down");
                tokio::select! {
                    _ = node.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                    _ = addr_rx.changed() => {}
                }
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
        }
    }
}

/// Dials from this region's own address, so the peer (and its logs) see where the traffic comes from.
pub(super) async fn dial(node: &Node, addr: SocketAddr) -> Result<TcpStream, StreamError> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if node.ip.is_ipv4() == addr.is_ipv4() {
        socket.bind(SocketAddr::new(node.ip, 0))?;
    }
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr)).await.map_err(|_| StreamError::Timeout)??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection's life: Hello, then pipelined batches and asynchronous acks. Returns Ok when the peer's
/// address changed (dial again at once) and Err when the stream broke.
async fn stream_to(
    node: &Node,
    peer: &PeerState,
    addr: SocketAddr,
    addr_rx: &mut tokio::sync::watch::Receiver<Option<SocketAddr>>,
    backoff: &mut Duration,
) -> Result<(), StreamError> {
    let stream = dial(node, addr).await?;
    let mut conn: Conn = Framed::new(stream, proto::codec());
    send(&mut conn, &Frame::Hello { from: node.region.clone() }).await?;
    peer.connected.store(true, Ordering::Release);
    *backoff = RECONNECT_BACKOFF_MIN;
    tracing::info!(region = %node.region, peer = %peer.name, %addr, acked_seq = peer.acked_seq.load(Ordering::Acquire), "replication stream up");
    let mut head_rx = node.store.head();
    // Resend from the acked cursor: anything sent on an earlier connection may not have been applied.
    let mut sent = peer.acked_seq.load(Ordering::Acquire);
    // Liveness: if entries are outstanding and no ack has advanced for this long, the stream is presumed dead
    // (a blackholed link, or a byte stream cut mid-frame) and is redialled. The receiver's delay defect is
    // known from the spec and added, so a deliberately slow receiver is not mistaken for a dead one.
    let ack_timeout = ACK_TIMEOUT_BASE + Duration::from_millis(node.defects.replication_delay_ms);
    let mut last_progress = Instant::now();
    let mut last_acked = peer.acked_seq.load(Ordering::Acquire);
    loop {
        // Progress is an ack that moved, or nothing outstanding (so the clock starts when sending resumes).
        let acked = peer.acked_seq.load(Ordering::Acquire);
        if acked != last_acked || acked >= sent {
            last_acked = acked;
            last_progress = Instant::now();
        }
        let head = *head_rx.borrow_and_update();
        while head > sent && sent - peer.acked_seq.load(Ordering::Acquire) < INFLIGHT_ENTRIES_MAX {
            let after = sent;
            let entries = node
                .store
                .read(move |s| s.outbox_after(after, BATCH_ENTRIES_MAX, BATCH_BYTES_TARGET))
                .await
                .map_err(|e| StreamError::Store(e.to_string()))?;
            let Some(last) = entries.last().map(|e| e.seq) else {
                return Err(StreamError::Store(format!("outbox has no entries after seq {after} but head is {head}")));
            };
            if entries[0].seq != after + 1 {
                // Only possible if the outbox was collected past an unacknowledged entry: a bug, not a peer fault.
                tracing::error!(region = %node.region, peer = %peer.name, expected = after + 1, found = entries[0].seq, "outbox gap");
            }
            send(&mut conn, &Frame::Batch { entries }).await?;
            sent = last;
        }
        let acked = peer.acked_seq.load(Ordering::Acquire);
        tokio::select! {
            _ = tokio::time::sleep_until(last_progress + ack_timeout), if sent > acked => {
                return Err(StreamError::Protocol(format!("no ack for {} entries within {ack_timeout:?}", sent - acked)));
            }
            r = head_rx.changed() => if r.is_err() { return Err(StreamError::Store("writer stopped".into())) },
            r = addr_rx.changed() => {
                if r.is_err() { return Err(StreamError::Closed) }
                tracing::info!(region = %node.region, peer = %peer.name, "peer address changed; reconnecting");
                return Ok(());
            }
            frame = conn.next() => {
                let bytes = match frame {
                    Some(b) => b?,
                    None => return Err(StreamError::Closed),
                };
                match proto::decode(&bytes)? {
                    Frame::Ack { seq } if seq <= sent => {
                        peer.acked_seq.fetch_max(seq, Ordering::AcqRel);
                    }
                    Frame::Ack { seq } => {
                        return Err(StreamError::Protocol(format!("ack for seq {seq} but only {sent} was sent")));
                    }
                    other => return Err(StreamError::Protocol(format!("unexpected frame from receiver: {other:?}"))),
                }
            }
        }
    }
}

async fn send(conn: &mut Conn, frame: &Frame) -> Result<(), StreamError> {
    tokio::time::timeout(IO_TIMEOUT, conn.send(proto::encode(frame))).await.map_err(|_| StreamError::Timeout)??;
    Ok(())
}

/// Accepts replication connections from peers until shutdown.
pub async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    loop {
        let (stream, remote) = tokio::select! {
            _ = node.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(region = %node.region, error = %e, "accept failed");
                    tokio::time::sleep(RECONNECT_BACKOFF_MIN).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(region = %node.region, %remote, "too many replication connections; refusing one");
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = tokio::select! {
                _ = node.shutdown.cancelled() => Ok(()),
                r = receive(&node, stream) => r,
            };
            match result {
                Ok(()) | Err(StreamError::Closed) => {
                    tracing::info!(region = %node.region, %remote, "replication connection closed")
                }
                Err(e) => tracing::warn!(region = %node.region, %remote, error = %e, "replication connection dropped"),
            }
        });
    }
}

/// A batch waiting to be applied.
struct Pending {
    /// When it may be applied (arrival + defect delay).
    due: Instant,
    /// Highest seq in the batch (acked once applied, even if entries were dropped by the defect).
    ack_seq: u64,
    /// The entries to apply.
    entries: Vec<Entry>,
}

/// Serves one inbound connection: Hello, then batches; or Probe, then pings.
async fn receive(node: &Node, stream: TcpStream) -> Result<(), StreamError> {
    stream.set_nodelay(true)?;
    let mut conn: Conn = Framed::new(stream, proto::codec());
    let hello = tokio::time::timeout(IO_TIMEOUT, conn.next()).await.map_err(|_| StreamError::Timeout)?;
    let from = match hello {
        Some(b) => match proto::decode(&b?)? {
            Frame::Hello { from } if node.peers.contains_key(&from) => from,
            Frame::Probe { from } if node.peers.contains_key(&from) => return rtt::answer(&mut conn).await,
            Frame::Hello { from } | Frame::Probe { from } => {
                return Err(StreamError::Protocol(format!("hello from unknown region {from:?}")));
            }
            other => return Err(StreamError::Protocol(format!("expected hello or probe, got {other:?}"))),
        },
        None => return Err(StreamError::Closed),
    };
    let (mut sink, mut stream) = conn.split();
    tracing::info!(region = %node.region, %from, "replication stream accepted");
    let delay = Duration::from_millis(node.defects.replication_delay_ms);
    let policy = if node.defects.lww_arrival_order { MergePolicy::ArrivalOrder } else { MergePolicy::Lww };
    let (tx, mut rx) = mpsc::channel::<Pending>(RECEIVE_QUEUE_BATCHES);
    // A batch taken from the queue that was not yet due when merging.
    let mut held: Option<Pending> = None;

    let reader = async {
        while let Some(frame) = stream.next().await {
            let arrived = Instant::now();
            let entries = match proto::decode(&frame?)? {
                Frame::Batch { entries } => entries,
                other => return Err(StreamError::Protocol(format!("expected a batch, got {other:?}"))),
            };
            let entries = accept_batch(node, &from, entries)?;
            let pending = Pending { due: arrived + delay, ack_seq: entries.0, entries: entries.1 };
            if tx.send(pending).await.is_err() {
                return Ok(());
            }
        }
        Err(StreamError::Closed)
    };
    let applier = async {
        while let Some(first) = rx.recv().await {
            crate::sleep_until(first.due).await;
            // Merge the batches already due behind this one into one apply (one commit, one ack), so a backlog
            // drains at the store's group-commit rate instead of one fsync per batch.
            let mut ack_seq = first.ack_seq;
            let mut entries = first.entries;
            while entries.len() < APPLY_ENTRIES_MAX {
                match rx.try_recv() {
                    Ok(next) if next.due <= Instant::now() => {
                        ack_seq = next.ack_seq;
                        entries.extend(next.entries);
                    }
                    Ok(next) => {
                        held = Some(next);
                        break;
                    }
                    Err(_) => break,
                }
            }
            apply_and_ack(node, &from, policy, entries, ack_seq, &mut sink).await?;
            if let Some(next) = held.take() {
                crate::sleep_until(next.due).await;
                apply_and_ack(node, &from, policy, next.entries, next.ack_seq, &mut sink).await?;
            }
        }
        Ok(())
    };
    // Whichever side ends first ends the connection; a malformed batch never reaches the applier.
    tokio::select! {
        r = reader => r,
        r = applier => r,
    }
}

/// Applies entries from `from` durably, then acks `ack_seq`.
async fn apply_and_ack(
    node: &Node,
    from: &str,
    policy: MergePolicy,
    entries: Vec<Entry>,
    ack_seq: u64,
    sink: &mut futures::stream::SplitSink<Conn, bytes::Bytes>,
) -> Result<(), StreamError> {
    if !entries.is_empty() {
        let op = WriteOp::Apply { from: from.to_string(), entries, policy };
        match node.store.write(op).await {
            Ok(WriteOutcome::Applied(_)) => {}
            Ok(other) => return Err(StreamError::Store(format!("unexpected outcome {other:?}"))),
            Err(e) => return Err(StreamError::Store(e.to_string())),
        }
    }
    let ack = proto::encode(&Frame::Ack { seq: ack_seq });
    tokio::time::timeout(IO_TIMEOUT, sink.send(ack)).await.map_err(|_| StreamError::Timeout)??;
    Ok(())
}

/// Validates a received batch and applies the `drop_one_in` defect; returns the seq to ack and the entries to
/// apply. An invalid batch is rejected whole.
pub fn accept_batch(node: &Node, from: &str, entries: Vec<Entry>) -> Result<(u64, Vec<Entry>), BatchError> {
    proto::validate_batch(from, &entries)?;
    let ack_seq = entries.last().map_or(0, |e| e.seq);
    let n = node.defects.drop_one_in;
    if n == 0 {
        return Ok((ack_seq, entries));
    }
    let kept = entries
        .into_iter()
        .filter(|_| {
            let count = node.received_entries.fetch_add(1, Ordering::Relaxed) + 1;
            !count.is_multiple_of(n)
        })
        .collect();
    Ok((ack_seq, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defects;
    use crate::node::testutil;
    use xregion_model::Version;

    fn entry(seq: u64, key: &str, origin: &str) -> Entry {
        Entry {
            seq,
            key: key.into(),
            value: Some(format!("v{seq}")),
            version: Version { wall_ms: 1_000 + seq, logical: 0, origin: origin.into() },
        }
    }

    /// Goal: a good batch is applied and acked; a malformed batch closes the connection and none of it is
    /// applied, not even its valid leading entries. Method: speak the protocol by hand to a real receiver.
    #[tokio::test]
    async fn malformed_batch_closes_with_no_partial_apply() {
        let node = testutil::node("malformed", "a", &["b"], Defects::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(node.clone(), listener));
        let mut conn: Conn = Framed::new(TcpStream::connect(addr).await.unwrap(), proto::codec());
        let t = Duration::from_secs(10);
        conn.send(proto::encode(&Frame::Hello { from: "b".into() })).await.unwrap();
        let good = vec![entry(1, "k1", "b"), entry(2, "k2", "b")];
        conn.send(proto::encode(&Frame::Batch { entries: good })).await.unwrap();
        let ack = tokio::time::timeout(t, conn.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(proto::decode(&ack).unwrap(), Frame::Ack { seq: 2 });
        assert_eq!(node.store.get("k1").unwrap().unwrap().value.as_deref(), Some("v1"));

        // Entry 3 is fine, entry 4 claims another origin: the whole batch must be rejected.
        let bad = vec![entry(3, "k3", "b"), entry(4, "k4", "c")];
        conn.send(proto::encode(&Frame::Batch { entries: bad })).await.unwrap();
        let end = tokio::time::timeout(t, conn.next()).await.unwrap();
        assert!(matches!(end, None | Some(Err(_))), "connection stayed open: {end:?}");
        assert_eq!(node.store.get("k3").unwrap(), None);
        assert_eq!(node.store.get("k4").unwrap(), None);
        node.shutdown.cancel();
    }

    /// Goal: a Hello from a region that is not a peer is refused.
    #[tokio::test]
    async fn hello_from_stranger_is_refused() {
        let node = testutil::node("stranger", "a", &["b"], Defects::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(node.clone(), listener));
        let mut conn: Conn = Framed::new(TcpStream::connect(addr).await.unwrap(), proto::codec());
        conn.send(proto::encode(&Frame::Hello { from: "zz".into() })).await.unwrap();
        conn.send(proto::encode(&Frame::Batch { entries: vec![entry(1, "k", "zz")] })).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), conn.next()).await.unwrap();
        assert!(matches!(end, None | Some(Err(_))));
        assert_eq!(node.store.get("k").unwrap(), None);
        node.shutdown.cancel();
    }

    /// Goal: two in-process regions replicate both ways through real shippers and receivers, acks move the
    /// cursor, and a concurrent write to the same key converges to the same winner on both.
    #[tokio::test]
    async fn two_nodes_replicate_and_converge() {
        let a = testutil::node("pair", "a", &["b"], Defects::default());
        let b = testutil::node("pair", "b", &["a"], Defects::default());
        for (me, other) in [(&a, &b), (&b, &a)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(accept_loop((*me).clone(), listener));
            let peer = other.peers[&me.region].clone();
            peer.addr.send_replace(Some(addr));
            tokio::spawn(ship((*other).clone(), peer));
        }
        for i in 0..50 {
            let op = WriteOp::Local { key: format!("a/{i}"), value: Some(i.to_string()) };
            a.store.write(op).await.unwrap();
        }
        b.store.write(WriteOp::Local { key: "same".into(), value: Some("from-b".into()) }).await.unwrap();
        a.store.write(WriteOp::Local { key: "same".into(), value: Some("from-a".into()) }).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = b.store.get("a/49").unwrap().is_some()
                && a.peers["b"].acked_seq.load(Ordering::Acquire) == a.head_seq()
                && b.peers["a"].acked_seq.load(Ordering::Acquire) == b.head_seq();
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "replication did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (sa, _) = a.store.scan("", None, 1000).unwrap();
        let (sb, _) = b.store.scan("", None, 1000).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(sa.len(), 51);
        a.shutdown.cancel();
        b.shutdown.cancel();
    }
}
