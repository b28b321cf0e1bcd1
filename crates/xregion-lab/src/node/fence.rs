//! Split-brain prevention: a region that has lost contact with a majority of the regions fences itself off.
//!
//! Every `CHECK_INTERVAL` the fence counts the regions in contact: this one, plus every peer it heard from
//! (`PeerState::heard`) within `lab.node.contact_timeout_ms`. When that is not a strict majority of all regions
//! continuously for `lab.node.fence_timeout_ms`, the region is fenced: it refuses writes with `503 fenced` and
//! `/healthz` reports `fenced` (reads stay served). It unfences once a majority is in contact again **and** it
//! has caught up: every peer in contact advertised its head on a stream that is up now, and everything up to that
//! head is applied here. `Defects::fence_disabled` turns the fence off (the region never fences).
//!
//! Contact is what a region hears, in either direction of a link: a stream `a -> b` carries `a`'s batches and
//! heartbeats, which `b` hears, and `b`'s acks, which `a` hears. A one-way cut therefore does not cut contact
//! both ways. If the connection of one directed link breaks, both regions usually still hear each other over the
//! other link's stream (batches and heartbeats one way, acks the other). If all traffic *from* `a` is dropped (the
//! WAN's directed rules act on bytes by direction), `b` stops hearing `a` but `a` still hears `b`'s heartbeats:
//! `a` keeps its majority and does not fence, although its writes no longer reach `b`. Both are fine and
//! expected: the fence protects against a region losing its majority as that region sees it; what a one-way cut
//! breaks shows in the replication status (`connected`, `pending_entries`, `lag_ms`, and `applied_seq` below
//! `peer_head_seq` on the side that no longer hears).

use super::Node;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the fence is evaluated: a region is fenced at most this long after its timeout.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What the fence sees at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Regions in contact, this one included.
    pub in_contact: usize,
    /// All regions.
    pub regions: usize,
    /// Every peer in contact advertised a head that is applied here.
    pub caught_up: bool,
}

impl View {
    /// Whether the regions in contact are a strict majority.
    pub fn majority(&self) -> bool {
        2 * self.in_contact > self.regions
    }
}

/// The node's contact and catch-up at `now`.
pub fn view(node: &Node, now: Instant) -> View {
    let timeout = Duration::from_millis(node.settings.contact_timeout_ms);
    let mut in_contact = 1;
    let mut caught_up = true;
    for p in node.peers.values() {
        let heard = p.heard();
        if heard.in_contact(now, timeout) {
            in_contact += 1;
            caught_up &= heard.caught_up();
        }
    }
    View { in_contact, regions: node.peers.len() + 1, caught_up }
}

/// The fence's memory between evaluations.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// Since when the region has been without a majority, continuously.
    without_majority_since: Option<Instant>,
    /// Whether the region is fenced.
    fenced: bool,
}

impl Fence {
    /// Whether the region is fenced.
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// Takes one evaluation at `now`; returns the new state when it changed.
    pub fn step(&mut self, view: View, now: Instant, timeout: Duration) -> Option<bool> {
        if view.majority() {
            self.without_majority_since = None;
        } else {
            self.without_majority_since.get_or_insert(now);
        }
        let next = if self.fenced {
            !(view.majority() && view.caught_up)
        } else {
            self.without_majority_since.is_some_and(|since| now.saturating_duration_since(since) >= timeout)
        };
        let changed = next != self.fenced;
        self.fenced = next;
        changed.then_some(next)
    }
}

/// Evaluates the fence every `CHECK_INTERVAL` until shutdown and publishes it in `Node::fenced`.
///
/// The clock starts once the region knows where its peers are (`PUT /lab/peers`): before that it is being
/// deployed, not cut off, and the lab's start-up may take longer than the timeout on a loaded machine. A region
/// that is wired but cannot reach its peers fences after the timeout, not at once.
pub async fn fence_loop(node: Arc<Node>) {
    if node.defects.fence_disabled {
        tracing::warn!(region = %node.region, "DEFECT fence_disabled: this region never fences itself off");
        return;
    }
    if !node.peers.is_empty() {
        let wired = futures::future::select_all(node.peers.values().map(|p| {
            let mut rx = p.addr.subscribe();
            Box::pin(async move { rx.wait_for(Option::is_some).await.map(|_| ()) })
        }));
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = wired => {}
        }
    }
    let timeout = Duration::from_millis(node.settings.fence_timeout_ms);
    let mut fence = Fence::default();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let v = view(&node, Instant::now());
        match fence.step(v, Instant::now(), timeout) {
            Some(true) => {
                node.fenced.store(true, Ordering::Release);
                tracing::warn!(region = %node.region, in_contact = v.in_contact, regions = v.regions, ?timeout,
                    "fenced: no majority of regions in contact; refusing writes");
            }
            Some(false) => {
                node.fenced.store(false, Ordering::Release);
                tracing::info!(region = %node.region, in_contact = v.in_contact, regions = v.regions,
                    "unfenced: a majority is in contact and this region has caught up; accepting writes");
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defects;
    use crate::node::store::WriteOp;
    use crate::node::testutil::{self, listen, ship_to, wait_until};

    /// Goal: the state machine fences only after a continuous loss of majority for the timeout, and unfences
    /// only with a majority and caught up. Method: hand-made views at chosen instants.
    #[test]
    fn fences_after_timeout_and_unfences_when_caught_up() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let timeout = Duration::from_millis(100);
        let alone = View { in_contact: 1, regions: 3, caught_up: true };
        let majority = View { in_contact: 2, regions: 3, caught_up: true };
        let behind = View { caught_up: false, ..majority };
        let mut f = Fence::default();
        assert_eq!(f.step(alone, ms(0), timeout), None);
        assert_eq!(f.step(alone, ms(60), timeout), None);
        assert_eq!(f.step(majority, ms(80), timeout), None, "contact back: the clock restarts");
        assert_eq!(f.step(alone, ms(90), timeout), None);
        assert_eq!(f.step(alone, ms(180), timeout), None);
        assert_eq!(f.step(alone, ms(190), timeout), Some(true));
        assert!(f.fenced());
        assert_eq!(f.step(behind, ms(200), timeout), None, "a majority, but not caught up");
        assert_eq!(f.step(alone, ms(400), timeout), None);
        assert_eq!(f.step(majority, ms(410), timeout), Some(false));
        assert!(!View { in_contact: 1, regions: 2, caught_up: true }.majority(), "two regions need both");
        assert!(View { in_contact: 3, regions: 5, caught_up: true }.majority());
    }

    /// Goal: a region whose peers are unreachable fences after the timeout; when a peer comes back it stays
    /// fenced until it has applied everything that peer advertised, then unfences; and it fences again when the
    /// peer goes away. Method: a (peers b and c) with short timeouts and a receive delay, so there is a window
    /// where b is in contact but a has not caught up; at every poll an unfenced a must have caught up.
    #[tokio::test]
    async fn cut_off_region_fences_and_unfences_after_catching_up() {
        let settings = testutil::fast_settings();
        let slow_apply = Defects { replication_delay_ms: 300, ..Defects::default() };
        let a = testutil::node_with("fence", "a", &["b", "c"], slow_apply, settings.clone());
        let b = testutil::node_with("fence", "b", &["a", "c"], Defects::default(), settings);
        let a_addr = listen(&a).await;
        tokio::spawn(fence_loop(a.clone()));
        let unreachable = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        for p in a.peers.values() {
            p.addr.send_replace(Some(unreachable));
        }
        wait_until("a fenced with no peer in contact", || a.is_fenced()).await;
        for i in 0..20 {
            b.store
                .write(WriteOp::Local { key: format!("b/{i}"), value: Some("x".into()), residency: None })
                .await
                .unwrap();
        }
        ship_to(&b, "a", a_addr);
        wait_until("a heard b's head", || a.peers["b"].heard().head == Some(20)).await;
        wait_until("a unfenced", || {
            let unfenced = !a.is_fenced();
            assert!(!unfenced || a.peers["b"].heard().applied >= 20, "unfenced before catching up");
            unfenced
        })
        .await;
        assert!(a.store.get("b/19").unwrap().is_some());
        b.shutdown.cancel();
        wait_until("a fenced again without b", || a.is_fenced()).await;
        a.shutdown.cancel();
    }

    /// Goal: with `fence_disabled` the fence task ends at once, so the region never fences, even cut off.
    #[tokio::test]
    async fn fence_disabled_never_fences() {
        let defects = Defects { fence_disabled: true, ..Defects::default() };
        let a = testutil::node_with("fence-off", "a", &["b", "c"], defects, testutil::fast_settings());
        tokio::time::timeout(testutil::WAIT, fence_loop(a.clone())).await.expect("the fence task ended");
        assert!(!a.is_fenced());
        assert!(!view(&a, Instant::now()).majority(), "cut off, yet not fenced");
    }
}
