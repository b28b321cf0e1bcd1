//! Replication: a shipper per peer that streams this region's outbox, and a receiver that applies what peers
//! send.
//!
//! The shipper keeps one TCP connection per directed link (dialled through the WAN proxy) and pipelines: it sends
//! every committed entry as soon as the writer announces it, without waiting for acks, up to
//! `INFLIGHT_ENTRIES_MAX` unacknowledged entries. Acks move the in-memory cursor; the cursor flusher makes it
//! durable. After a reconnect it resends from the acked cursor; applying an entry twice changes nothing. It sends
//! a `Heartbeat` right after `Hello` and whenever it has sent nothing for `lab.node.heartbeat_interval_ms`, so the
//! receiver hears an idle link and learns the sender's head.
//!
//! The receiver validates each whole batch before applying any of it (a malformed frame closes the connection),
//! applies it in one durable transaction through the store's writer, then acks its highest seq. Each batch is
//! due at arrival + `replication_delay_ms` (0 unless the defect is on), in order, so a delay defect does not
//! slow delivery of the batches behind it. Every frame counts as hearing from the peer (`PeerState::heard`), as
//! does every ack the shipper receives; a stream that stays silent for `idle_timeout` is dropped.
//!
//! A connection that opens with `Probe` instead of `Hello` is a round-trip probe (`rtt`), answered there.

use super::link::{Conn, IO_TIMEOUT, StreamError, accept_tls, check_identity, dial, send};
use super::store::{WriteOp, WriteOutcome};
use super::{Node, PeerState, rtt};
use crate::proto::{self, BATCH_BYTES_TARGET, BATCH_ENTRIES_MAX, BatchError, Entry, Frame};
use crate::record::MergePolicy;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
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

/// How long a receiver waits for the next frame before it drops the stream as dead (a blackholed link): the
/// longest of `IO_TIMEOUT`, two contact timeouts and four heartbeat intervals, so a healthy idle stream, which
/// sends a heartbeat every interval, is never dropped.
pub fn idle_timeout(settings: &crate::config::NodeConfig) -> Duration {
    let contact = Duration::from_millis(settings.contact_timeout_ms) * 2;
    let heartbeats = Duration::from_millis(settings.heartbeat_interval_ms) * 4;
    IO_TIMEOUT.max(contact).max(heartbeats)
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

/// One connection's life: Hello, then pipelined batches and asynchronous acks. Returns Ok when the peer's
/// address changed (dial again at once) and Err when the stream broke.
async fn stream_to(
    node: &Node,
    peer: &PeerState,
    addr: SocketAddr,
    addr_rx: &mut tokio::sync::watch::Receiver<Option<SocketAddr>>,
    backoff: &mut Duration,
) -> Result<(), StreamError> {
    let stream = dial(node, &peer.name, addr).await?;
    let mut conn: Conn = Framed::new(stream, proto::codec());
    send(&mut conn, &Frame::Hello { from: node.region.clone() }).await?;
    let heartbeat_interval = Duration::from_millis(node.settings.heartbeat_interval_ms);
    let heartbeat = || Frame::Heartbeat { head: node.head_seq(), acked: peer.acked_seq.load(Ordering::Acquire) };
    send(&mut conn, &heartbeat()).await?;
    let mut last_sent = Instant::now();
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
            let entries = for_peer(node, &peer.name, entries);
            send(&mut conn, &Frame::Batch { after, entries, through: last }).await?;
            last_sent = Instant::now();
            sent = last;
        }
        let acked = peer.acked_seq.load(Ordering::Acquire);
        tokio::select! {
            _ = tokio::time::sleep_until(last_progress + ack_timeout), if sent > acked => {
                return Err(StreamError::Protocol(format!("no ack for {} entries within {ack_timeout:?}", sent - acked)));
            }
            _ = tokio::time::sleep_until(last_sent + heartbeat_interval) => {
                send(&mut conn, &heartbeat()).await?;
                last_sent = Instant::now();
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
                        peer.touch();
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

/// Whether the residency policy lets `region` hold records tagged `tag` (an unknown tag: nowhere).
fn allows(node: &Node, tag: &str, region: &str) -> bool {
    node.security.residency.get(tag).is_some_and(|regions| regions.iter().any(|r| r == region))
}

/// Whether this region may hold records tagged `tag`.
fn may_hold(node: &Node, tag: &str) -> bool {
    allows(node, tag, &node.region)
}

/// The entries `peer` may hold: an entry tagged with a residency tag goes only to the tag's regions (an unknown
/// tag to none), unless `residency_disabled`. The skipped ones are still covered by the batch's `through`.
pub fn for_peer(node: &Node, peer: &str, entries: Vec<Entry>) -> Vec<Entry> {
    if node.defects.residency_disabled {
        return entries;
    }
    entries
        .into_iter()
        .filter(|e| match &e.residency {
            None => true,
            Some(tag) => allows(node, tag, peer),
        })
        .collect()
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
    let (stream, identity) = accept_tls(node, stream).await?;
    let mut conn: Conn = Framed::new(stream, proto::codec());
    let hello = tokio::time::timeout(IO_TIMEOUT, conn.next()).await.map_err(|_| StreamError::Timeout)?;
    let from = match hello {
        Some(b) => match proto::decode(&b?)? {
            Frame::Hello { from } if node.peers.contains_key(&from) => {
                check_identity(node, &from, identity.as_ref())?;
                from
            }
            Frame::Probe { from } if node.peers.contains_key(&from) => {
                check_identity(node, &from, identity.as_ref())?;
                return rtt::answer(&mut conn).await;
            }
            Frame::Call { from, call } if node.peers.contains_key(&from) => {
                check_identity(node, &from, identity.as_ref())?;
                let answer = super::app::serve(node, &from, call).await;
                return send(&mut conn, &Frame::Answer { answer }).await;
            }
            Frame::Hello { from } | Frame::Probe { from } | Frame::Call { from, .. } => {
                return Err(StreamError::Protocol(format!("hello from unknown region {from:?}")));
            }
            other => return Err(StreamError::Protocol(format!("expected hello, probe or call, got {other:?}"))),
        },
        None => return Err(StreamError::Closed),
    };
    let peer = node.peers.get(&from).cloned().ok_or_else(|| StreamError::Protocol(format!("no peer {from:?}")))?;
    peer.touch();
    let stream_id = node.streams.fetch_add(1, Ordering::Relaxed) + 1;
    // Whichever way this connection ends (shutdown included), the head it advertised stops being current.
    let _ended = StreamEnded { peer: &peer, stream: stream_id };
    let (mut sink, mut stream) = conn.split();
    tracing::info!(region = %node.region, %from, "replication stream accepted");
    let idle = idle_timeout(&node.settings);
    let delay = Duration::from_millis(node.defects.replication_delay_ms);
    let policy = if node.defects.lww_arrival_order { MergePolicy::ArrivalOrder } else { MergePolicy::Lww };
    let (tx, mut rx) = mpsc::channel::<Pending>(RECEIVE_QUEUE_BATCHES);
    // A batch taken from the queue that was not yet due when merging.
    let mut held: Option<Pending> = None;

    let reader = async {
        // The sender ships its outbox in order on one connection, so each batch must start where the previous one
        // ended (the first one where the sender's first heartbeat says its cursor is). A gap means frames were
        // lost on the link (the WAN emulator's `Drop` discards bytes from a live connection; over TLS the record
        // layer usually notices first); acking past it would skip the lost entries for good, so the stream is
        // closed instead and the sender resends from its acknowledged cursor on a new connection.
        let mut next_after: Option<u64> = None;
        loop {
            let Ok(frame) = tokio::time::timeout(idle, stream.next()).await else {
                return Err(StreamError::Protocol(format!("no frame for {idle:?}; presuming the link dead")));
            };
            let Some(frame) = frame else { break };
            let arrived = Instant::now();
            let entries = match proto::decode(&frame?)? {
                Frame::Batch { after, entries, through } => (after, entries, through),
                Frame::Heartbeat { head, acked } => {
                    // The sender's first heartbeat on a stream carries the cursor its first batch follows.
                    next_after.get_or_insert(acked);
                    // The cursor the sender holds for us was acknowledged after a durable apply, in this run or
                    // an earlier one; unless this region acks without applying (the defect), it is applied.
                    peer.advertised(stream_id, head, (!node.apply_disabled).then_some(acked));
                    continue;
                }
                other => return Err(StreamError::Protocol(format!("expected a batch or heartbeat, got {other:?}"))),
            };
            peer.touch();
            let (after, entries, through) = entries;
            if let Some(want) = next_after
                && after != want
            {
                return Err(StreamError::Protocol(format!(
                    "batch covers seqs after {after} but the previous one ended at {want}: entries were lost on the link"
                )));
            }
            let entries = accept_batch(node, &from, after, entries, through)?;
            next_after = Some(through);
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
            apply_and_ack(node, &peer, policy, entries, ack_seq, &mut sink).await?;
            if let Some(next) = held.take() {
                crate::sleep_until(next.due).await;
                apply_and_ack(node, &peer, policy, next.entries, next.ack_seq, &mut sink).await?;
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

/// Clears the head an incoming stream advertised when the stream ends.
struct StreamEnded<'a> {
    peer: &'a PeerState,
    stream: u64,
}

impl Drop for StreamEnded<'_> {
    fn drop(&mut self) {
        self.peer.stream_ended(self.stream);
    }
}

/// Applies entries from `peer` durably, then acks `ack_seq`. With `Node::apply_disabled` (the
/// `no_catch_up_after_restart` defect) it acks without applying.
async fn apply_and_ack(
    node: &Node,
    peer: &PeerState,
    policy: MergePolicy,
    entries: Vec<Entry>,
    ack_seq: u64,
    sink: &mut futures::stream::SplitSink<Conn, bytes::Bytes>,
) -> Result<(), StreamError> {
    if !node.apply_disabled {
        if !entries.is_empty() {
            let op = WriteOp::Apply { from: peer.name.clone(), entries, policy };
            match node.store.write(op).await {
                Ok(WriteOutcome::Applied(_)) => {}
                Ok(other) => return Err(StreamError::Store(format!("unexpected outcome {other:?}"))),
                Err(e) => return Err(StreamError::Store(e.to_string())),
            }
        }
        peer.applied_through(ack_seq);
    }
    let ack = proto::encode(&Frame::Ack { seq: ack_seq });
    tokio::time::timeout(IO_TIMEOUT, sink.send(ack)).await.map_err(|_| StreamError::Timeout)??;
    Ok(())
}

/// Validates a received batch and applies the `drop_one_in` defect; returns the seq to ack and the entries to
/// apply. An invalid batch is rejected whole.
pub fn accept_batch(
    node: &Node,
    from: &str,
    after: u64,
    entries: Vec<Entry>,
    through: u64,
) -> Result<(u64, Vec<Entry>), BatchError> {
    proto::validate_batch_frame(from, after, &entries, through)?;
    // The sender never ships an entry this region may not hold; a batch that has one is refused whole, so a
    // faulty or hostile peer cannot place tagged data here (unless tags are ignored everywhere: the defect).
    if !node.defects.residency_disabled
        && let Some(e) = entries.iter().find(|e| e.residency.as_ref().is_some_and(|tag| !may_hold(node, tag)))
    {
        return Err(BatchError::Residency {
            seq: e.seq,
            tag: e.residency.clone().unwrap_or_default(),
            region: node.region.clone(),
        });
    }
    let ack_seq = through;
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
    use crate::node::testutil::{self, entry, listen, next, open, send, ship_to, wait_until};

    /// Goal: a good batch is applied and acked; a malformed batch closes the connection and none of it is
    /// applied, not even its valid leading entries. Method: speak the protocol by hand to a real receiver.
    #[tokio::test]
    async fn malformed_batch_closes_with_no_partial_apply() {
        let node = testutil::node("malformed", "a", &["b"], Defects::default());
        let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "k1", "b"), entry(2, "k2", "b")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 2 }));
        assert_eq!(node.store.get("k1").unwrap().unwrap().value.as_deref(), Some("v1"));
        assert_eq!(node.peers["b"].heard().applied, 2);

        // Entry 3 is fine, entry 4 claims another origin: the whole batch must be rejected.
        send(&mut conn, testutil::batch(vec![entry(3, "k3", "b"), entry(4, "k4", "c")])).await;
        assert_eq!(next(&mut conn).await, None, "the connection stayed open");
        assert_eq!(node.store.get("k3").unwrap(), None);
        assert_eq!(node.store.get("k4").unwrap(), None);
        node.shutdown.cancel();
    }

    /// Goal: a receiver refuses, whole, a batch holding an entry tagged for a residency it may not hold (a faulty
    /// or hostile sender), and accepts the same entry where the policy allows it or with the residency defect.
    #[tokio::test]
    async fn receiver_refuses_entries_it_may_not_hold() {
        let tagged = |seq: u64, key: &str| {
            let mut e = entry(seq, key, "b");
            e.residency = Some("eu".into());
            e
        };
        let node = testutil::node("residency-in", "a", &["b"], Defects::default());
        let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "plain", "b"), tagged(2, "eu-only")])).await;
        assert_eq!(next(&mut conn).await, None, "the connection stayed open");
        assert_eq!(node.store.get("plain").unwrap(), None, "part of a refused batch was applied");
        assert_eq!(node.store.get("eu-only").unwrap(), None);
        node.shutdown.cancel();

        let eu = testutil::node("residency-in-eu", "eu", &["b"], Defects::default());
        let mut conn = open(listen(&eu).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![tagged(1, "eu-only")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 1 }));
        assert!(eu.store.get("eu-only").unwrap().is_some());
        eu.shutdown.cancel();

        let ignored = Defects { residency_disabled: true, ..Defects::default() };
        let node = testutil::node("residency-in-off", "a", &["b"], ignored);
        let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![tagged(1, "eu-only")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 1 }), "the defect ignores tags");
        node.shutdown.cancel();
    }

    /// Goal: a batch that does not start right after the previous one on the same connection (bytes lost on the
    /// link) closes the stream and is not applied, so the sender's cursor never skips the lost entries.
    #[tokio::test]
    async fn gap_between_batches_closes_the_stream() {
        let node = testutil::node("gap", "a", &["b"], Defects::default());
        let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "k1", "b"), entry(2, "k2", "b")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 2 }));
        send(&mut conn, testutil::batch(vec![entry(5, "k5", "b")])).await;
        assert_eq!(next(&mut conn).await, None, "the connection stayed open");
        assert_eq!(node.store.get("k5").unwrap(), None);
        // A new connection may start anywhere at or below the next entry: the sender resends from its cursor.
        let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(2, "k2", "b"), entry(3, "k3", "b")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 3 }));
        node.shutdown.cancel();
    }

    /// Goal: a Hello from a region that is not a peer is refused, and so is a stream that does not start with
    /// Hello or Probe (a heartbeat first) or that carries a frame only a receiver sends.
    #[tokio::test]
    async fn strangers_and_stray_frames_are_refused() {
        let node = testutil::node("stranger", "a", &["b"], Defects::default());
        let addr = listen(&node).await;
        let mut conn = open(addr, Frame::Hello { from: "zz".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "k", "zz")])).await;
        assert_eq!(next(&mut conn).await, None);
        assert_eq!(node.store.get("k").unwrap(), None);
        let mut conn = open(addr, Frame::Heartbeat { head: 1, acked: 0 }).await;
        assert_eq!(next(&mut conn).await, None, "a heartbeat cannot open a stream");
        let mut conn = open(addr, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, Frame::Ack { seq: 1 }).await;
        assert_eq!(next(&mut conn).await, None, "an ack on an incoming stream");
        node.shutdown.cancel();
    }

    /// Goal: replication is mutual TLS. A client without a certificate is refused with a `certificate_required`
    /// alert and nothing it sends is applied; a certified peer cannot speak as another region; with the
    /// `mtls_disabled` defect a client without a certificate is let in. Method: real listeners, hand-made TLS
    /// clients from the test lab's PKI.
    #[tokio::test]
    async fn replication_needs_the_peers_own_client_certificate() {
        let node = testutil::node("mtls", "a", &["b", "c"], Defects::default());
        let addr = listen(&node).await;
        let pki = crate::pki::Pki::load(&testutil::lab("mtls")).unwrap();
        let no_cert = pki.client_config().unwrap();

        let mut conn = testutil::connect(addr, Some(no_cert.clone()), "a").await.expect("TLS 1.3 client finishes");
        // The client's side of a TLS 1.3 handshake ends before the server has judged its certificate: the refusal
        // arrives as an alert on the first read. Nothing is written first: data arriving after the server closed
        // would make it reset the connection, and the reset could discard the alert.
        let err = match tokio::time::timeout(testutil::WAIT, conn.next()).await.expect("an answer in time") {
            Some(Err(e)) => e,
            other => panic!("expected a TLS alert, got {other:?}"),
        };
        let alert = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(alert, Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired))),
            "{err:?}"
        );
        assert_eq!(node.store.get("k").unwrap(), None);

        // Region c's certificate, claiming to be b: refused after the handshake, nothing applied.
        let as_c = pki.repl_client_config("c").unwrap();
        let mut conn = testutil::connect(addr, Some(as_c), "a").await.expect("c's certificate is valid");
        send(&mut conn, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "k", "b")])).await;
        assert_eq!(next(&mut conn).await, None, "c spoke as b");
        assert_eq!(node.store.get("k").unwrap(), None);
        // b's own certificate: accepted.
        let mut conn = open(addr, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "k", "b")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 1 }));
        node.shutdown.cancel();

        let open_door = testutil::node("mtls-off", "a", &["b"], Defects { mtls_disabled: true, ..Defects::default() });
        let addr = listen(&open_door).await;
        let no_cert = crate::pki::Pki::load(&testutil::lab("mtls-off")).unwrap().client_config().unwrap();
        let mut conn = testutil::connect(addr, Some(no_cert), "a").await.unwrap();
        send(&mut conn, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, testutil::batch(vec![entry(1, "k", "b")])).await;
        assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq: 1 }), "the defect lets a stranger replicate");
        open_door.shutdown.cancel();
    }

    /// Goal: two in-process regions replicate both ways through real shippers and receivers, acks move the
    /// cursor, and a concurrent write to the same key converges to the same winner on both.
    #[tokio::test]
    async fn two_nodes_replicate_and_converge() {
        let a = testutil::node("pair", "a", &["b"], Defects::default());
        let b = testutil::node("pair", "b", &["a"], Defects::default());
        ship_to(&b, "a", listen(&a).await);
        ship_to(&a, "b", listen(&b).await);
        for i in 0..50 {
            let op = WriteOp::Local { key: format!("a/{i}"), value: Some(i.to_string()), residency: None };
            a.store.write(op).await.unwrap();
        }
        b.store
            .write(WriteOp::Local { key: "same".into(), value: Some("from-b".into()), residency: None })
            .await
            .unwrap();
        a.store
            .write(WriteOp::Local { key: "same".into(), value: Some("from-a".into()), residency: None })
            .await
            .unwrap();
        wait_until("replication finished", || {
            b.store.get("a/49").unwrap().is_some()
                && a.peers["b"].acked_seq.load(Ordering::Acquire) == a.head_seq()
                && b.peers["a"].acked_seq.load(Ordering::Acquire) == b.head_seq()
        })
        .await;
        let (sa, _) = a.store.scan("", None, 1000).unwrap();
        let (sb, _) = b.store.scan("", None, 1000).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(sa.len(), 51);
        a.shutdown.cancel();
        b.shutdown.cancel();
    }

    /// Goal: on an idle link the shipper's heartbeats keep the receiver hearing from the sender (the time it
    /// last heard moves on while nothing is written), and they carry the sender's head and cursor, so the
    /// receiver knows it has applied everything. Method: a ships to b, one write, then an idle link.
    #[tokio::test]
    async fn heartbeats_keep_an_idle_link_in_contact() {
        let settings = testutil::fast_settings();
        let a = testutil::node_with("heartbeat", "a", &["b"], Defects::default(), settings.clone());
        let b = testutil::node_with("heartbeat", "b", &["a"], Defects::default(), settings.clone());
        ship_to(&a, "b", listen(&b).await);
        a.store.write(WriteOp::Local { key: "k".into(), value: Some("v".into()), residency: None }).await.unwrap();
        wait_until("b applied a's write", || b.peers["a"].heard().applied == 1).await;
        let batches_done = b.peers["a"].heard().at;
        let mut seen = Vec::new();
        wait_until("b heard three heartbeats", || {
            let heard = b.peers["a"].heard();
            if heard.at > seen.last().copied().unwrap_or(batches_done) {
                seen.push(heard.at);
            }
            seen.len() >= 3
        })
        .await;
        assert_eq!(a.head_seq(), 1, "nothing else was written");
        let heard = b.peers["a"].heard();
        assert_eq!((heard.head, heard.applied, heard.caught_up()), (Some(1), 1, true));
        assert!(a.peers["b"].connected.load(Ordering::Acquire));
        assert!(a.peers["b"].heard().at.is_some(), "a heard b's ack");
        a.shutdown.cancel();
        b.shutdown.cancel();
    }

    /// Goal: the receiver drops an incoming stream that stays silent past `idle_timeout` (a blackholed link),
    /// and the head that stream advertised stops counting. Method: a hand-driven stream that says hello and a
    /// heartbeat, then nothing, against a receiver with the shortest idle timeout.
    #[tokio::test]
    async fn silent_stream_is_dropped_and_forgets_its_head() {
        let settings = testutil::fast_settings();
        assert_eq!(idle_timeout(&settings), IO_TIMEOUT);
        let node = testutil::node_with("silent", "a", &["b"], Defects::default(), settings);
        let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
        send(&mut conn, Frame::Heartbeat { head: 7, acked: 3 }).await;
        wait_until("the heartbeat arrived", || node.peers["b"].heard().head == Some(7)).await;
        assert_eq!(node.peers["b"].heard().applied, 3, "the sender's cursor counts as applied");
        assert_eq!(next(&mut conn).await, None, "the silent stream was dropped");
        wait_until("the head is forgotten", || node.peers["b"].heard().head.is_none()).await;
        node.shutdown.cancel();
    }
}
