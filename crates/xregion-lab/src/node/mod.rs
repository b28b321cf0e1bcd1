//! One region of the lab: a process that stores data durably, serves the probe contract over HTTP and
//! replicates its own writes to every other region.
//!
//! `run_node` wires the parts: the store (`store`, group commit and the HLC), the HTTP API (`http`), the lab's
//! commerce application (`app`, its calls to other regions over the replication path), the
//! replication shippers and receiver (`repl`), the round-trip probes over the replication links (`rtt`), the
//! split-brain fence (`fence`), and the background tasks that persist cursors, collect the outbox and refresh
//! gauges. It prints exactly one `READY {json}` line to stdout once both listeners are bound; logs go to stderr.
//! SIGTERM or SIGINT stop it cleanly, and it dies with its parent (parent-death signal).
//!
//! `open_region` prepares the region directory for a run: it tells whether the previous run ended cleanly (a
//! `running` marker file exists from start until a clean stop removes it) and applies the restart defects
//! (`lose_unreplicated_on_kill`, `no_catch_up_after_restart`).

pub mod app;
pub mod fence;
pub mod http;
pub mod link;
pub mod repl;
pub mod rtt;
pub mod security;
pub mod store;
#[cfg(test)]
pub(crate) mod testutil;

use crate::LabError;
use crate::config::{Defects, NodeConfig};
use crate::layout::LabDir;
use crate::spec::Spec;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{Store, WriteOp};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use xregion_model::fault::NodeFault;

/// How often acknowledged cursors are made durable: the durable cursor may lag the acks by about this much
/// (re-sending is safe), which keeps cursor fsyncs off the write path.
pub const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// How often the outbox is collected and replication gauges are refreshed.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);
/// How long shutdown waits for in-flight work before giving up on it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The line a lab process prints on stdout once it is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReady {
    /// Region name.
    pub region: String,
    /// Probe-contract HTTP address.
    pub http_addr: SocketAddr,
    /// Replication listener address.
    pub repl_addr: SocketAddr,
    /// Process id.
    pub pid: u32,
}

/// Replication state towards one peer, shared by its shipper, its receiver, the HTTP API, the fence and the
/// cursor flusher.
#[derive(Debug)]
pub struct PeerState {
    /// Peer region name.
    pub name: String,
    /// Highest seq the peer acknowledged (in memory; at least the durable cursor).
    pub acked_seq: AtomicU64,
    /// Highest seq saved durably in the `cursors` table.
    pub durable_seq: AtomicU64,
    /// Whether the stream to the peer is up.
    pub connected: AtomicBool,
    /// Where to dial the peer (the WAN proxy's link address); set by `PUT /lab/peers`.
    pub addr: watch::Sender<Option<SocketAddr>>,
    /// What this region heard from the peer (in memory only).
    heard: Mutex<Heard>,
}

/// What a region heard from one peer: the contact clock, the peer's advertised head and how much of the peer's
/// outbox is applied here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// When a frame last came from the peer: anything on its stream to us, or an ack on our stream to it.
    pub at: Option<Instant>,
    /// The peer's outbox head from the latest heartbeat on its current stream to us; `None` when no stream from
    /// the peer is up (or it has not sent a heartbeat yet), so that a head from before an outage never counts as
    /// current.
    pub head: Option<u64>,
    /// Highest seq of the peer's outbox applied here. In memory: after a restart it starts at 0 and is raised
    /// by the cursor the peer reports in its heartbeats (what this region acknowledged before the restart, so
    /// applied durably) and by every applied batch.
    pub applied: u64,
    /// The incoming stream that advertised `head`.
    head_stream: u64,
}

impl Heard {
    /// Whether the peer was heard from within `timeout` of `now`.
    pub fn in_contact(&self, now: Instant, timeout: Duration) -> bool {
        self.at.is_some_and(|at| now.saturating_duration_since(at) <= timeout)
    }

    /// Whether everything the peer advertised is applied here (false while its head is unknown).
    pub fn caught_up(&self) -> bool {
        self.head.is_some_and(|h| self.applied >= h)
    }
}

impl PeerState {
    /// The state of peer `name` whose durable cursor is `acked`.
    pub fn new(name: &str, acked: u64) -> PeerState {
        PeerState {
            name: name.to_string(),
            acked_seq: AtomicU64::new(acked),
            durable_seq: AtomicU64::new(acked),
            connected: AtomicBool::new(false),
            addr: watch::channel(None).0,
            heard: Mutex::new(Heard::default()),
        }
    }

    fn heard_mut(&self) -> MutexGuard<'_, Heard> {
        // Every update keeps the fields valid on its own, so a poisoned lock holds usable data.
        self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of what was heard from the peer.
    pub fn heard(&self) -> Heard {
        *self.heard_mut()
    }

    /// The peer was heard from just now.
    pub fn touch(&self) {
        self.heard_mut().at = Some(Instant::now());
    }

    /// A heartbeat on incoming stream `stream`: the peer's head, and (when it may count as applied) the cursor
    /// the peer holds for this region.
    pub fn advertised(&self, stream: u64, head: u64, acked: Option<u64>) {
        let mut h = self.heard_mut();
        h.at = Some(Instant::now());
        h.head = Some(head);
        h.head_stream = stream;
        if let Some(acked) = acked {
            h.applied = h.applied.max(acked);
        }
    }

    /// Every entry of the peer up to `seq` is applied here.
    pub fn applied_through(&self, seq: u64) {
        let mut h = self.heard_mut();
        h.applied = h.applied.max(seq);
    }

    /// Incoming stream `stream` ended: the head it advertised is no longer current.
    pub fn stream_ended(&self, stream: u64) {
        let mut h = self.heard_mut();
        if h.head_stream == stream {
            h.head = None;
        }
    }
}

/// The partial failure in force (`PUT /lab/fault`) and the error-share accumulator that spreads its failures.
#[derive(Debug, Default)]
pub struct FaultState {
    /// The fault.
    pub fault: NodeFault,
    /// Grows by `error_share` per `/v1/*` request; each time it reaches 1 the request fails and 1 is taken off.
    acc: f64,
}

impl FaultState {
    /// Replaces the fault and restarts the spreading.
    pub fn set(&mut self, fault: NodeFault) {
        *self = FaultState { fault, acc: 0.0 };
    }

    /// Whether this `/v1/*` request gets the injected error: exactly `error_share` of requests, evenly spread
    /// and deterministic (with 0.5, every second one).
    pub fn roll(&mut self) -> bool {
        if self.fault.error_share <= 0.0 {
            return false;
        }
        self.acc += self.fault.error_share;
        // The tolerance absorbs rounding, so that ten requests at 0.1 give exactly one failure.
        if self.acc >= 1.0 - 1e-9 {
            self.acc = (self.acc - 1.0).max(0.0);
            true
        } else {
            false
        }
    }
}

/// How this run of a region started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Startup {
    /// The previous run did not stop cleanly (its `running` marker was still there).
    pub unclean: bool,
    /// The store already held data: this is a restart, not the region's first start.
    pub had_data: bool,
    /// Outbox entries deleted by the `lose_unreplicated_on_kill` defect.
    pub lost: u64,
}

/// Everything the node's tasks share.
pub struct Node {
    /// This region.
    pub region: String,
    /// Where this region's sockets bind (outgoing ones too, so peers see the region's address).
    pub ip: std::net::IpAddr,
    /// The store.
    pub store: Store,
    /// Per peer region, in name order.
    pub peers: BTreeMap<String, Arc<PeerState>>,
    /// Deliberate defects from the spec.
    pub defects: Defects,
    /// Load shedding and catalogue settings.
    pub settings: NodeConfig,
    /// The status set by `PUT /lab/health` (`ok` unless set; anything else makes `/healthz` answer 503).
    pub health: std::sync::Mutex<String>,
    /// The partial failure set by `PUT /lab/fault`.
    pub fault: Mutex<FaultState>,
    /// Whether the region is fenced off (split-brain prevention, `fence`): it refuses writes.
    pub fenced: AtomicBool,
    /// The receiver acknowledges batches without applying them (`no_catch_up_after_restart` on a restart).
    pub apply_disabled: bool,
    /// Numbers the incoming replication streams.
    pub streams: AtomicU64,
    /// `/v1/*` requests being served now, for load shedding at `settings.max_in_flight`.
    pub in_flight: AtomicU64,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Counts received entries for the `drop_one_in` defect.
    pub received_entries: AtomicU64,
    /// Bounds the round-trip probes running at once (`rtt::PROBES_MAX`).
    pub rtt_probes: tokio::sync::Semaphore,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// TLS configs, tokens, the sealer and the audit log (`security`).
    pub security: security::Security,
}

impl Node {
    /// The node of `region` on `store`, with one peer per entry of `cursors` (peer -> durable cursor).
    pub fn new(
        region: &str,
        ip: IpAddr,
        store: Store,
        cursors: &BTreeMap<String, u64>,
        lab: (&Defects, &NodeConfig),
        startup: Startup,
        metrics: Option<PrometheusHandle>,
    ) -> Node {
        let (defects, settings) = lab;
        let peers =
            cursors.iter().map(|(name, acked)| (name.clone(), Arc::new(PeerState::new(name, *acked)))).collect();
        Node {
            region: region.to_string(),
            ip,
            store,
            peers,
            defects: defects.clone(),
            settings: settings.clone(),
            health: std::sync::Mutex::new("ok".to_string()),
            fault: Mutex::new(FaultState::default()),
            fenced: AtomicBool::new(false),
            apply_disabled: defects.no_catch_up_after_restart && startup.had_data,
            streams: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            metrics,
            received_entries: AtomicU64::new(0),
            rtt_probes: tokio::sync::Semaphore::new(rtt::PROBES_MAX),
            shutdown: CancellationToken::new(),
            security: security::Security::none(),
        }
    }

    /// The node with `security` in force.
    pub fn with_security(mut self, security: security::Security) -> Node {
        self.security = security;
        self
    }

    /// Highest local outbox seq committed.
    pub fn head_seq(&self) -> u64 {
        *self.store.head().borrow()
    }

    /// Whether the region is fenced now.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// The partial-failure state.
    pub fn fault(&self) -> MutexGuard<'_, FaultState> {
        // The state is two plain fields; a panic elsewhere cannot leave them inconsistent.
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A region's store, opened and prepared for a run by `open_region`.
pub struct OpenedRegion {
    /// The store.
    pub store: Store,
    /// Its writer thread (ends after the last store handle is dropped).
    pub writer: std::thread::JoinHandle<()>,
    /// Durable cursor per peer (every peer has an entry).
    pub cursors: BTreeMap<String, u64>,
    /// Highest outbox seq.
    pub head_seq: u64,
    /// How the run started.
    pub startup: Startup,
}

/// Opens the store of `region` in the lab directory `lab` for a run with `peers`: reads and then sets the
/// `running` marker, and applies `lose_unreplicated_on_kill` after an unclean stop. Call `mark_stopped` after a
/// clean shutdown.
pub async fn open_region(
    lab: &LabDir,
    region: &str,
    peers: &[String],
    defects: &Defects,
    sealer: crate::crypto::Sealer,
) -> Result<OpenedRegion, LabError> {
    let marker = lab.running_marker(region);
    let unclean = marker.exists();
    let (store, recovered, writer) = Store::open(&lab.store_file(region), region, sealer)?;
    let mut startup = Startup { unclean, had_data: recovered.had_data, lost: 0 };
    let mut cursors: BTreeMap<String, u64> =
        peers.iter().map(|p| (p.clone(), recovered.cursors.get(p).copied().unwrap_or(0))).collect();
    if unclean {
        tracing::warn!(region, "the previous run did not stop cleanly");
        if defects.lose_unreplicated_on_kill {
            startup.lost = lose_unreplicated(&store, region, &mut cursors, recovered.head_seq).await?;
        }
    }
    std::fs::write(&marker, b"")
        .map_err(|e| LabError::io(format!("cannot create the marker {}", marker.display()), e))?;
    Ok(OpenedRegion { store, writer, cursors, head_seq: recovered.head_seq, startup })
}

/// Removes the `running` marker of `region`: the run stopped cleanly.
pub fn mark_stopped(lab: &LabDir, region: &str) {
    let marker = lab.running_marker(region);
    if let Err(e) = std::fs::remove_file(&marker)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(marker = %marker.display(), error = %e, "cannot remove the running marker");
    }
}

/// The `lose_unreplicated_on_kill` defect: deletes every outbox entry above the lowest durable peer cursor and
/// moves every cursor to the head, so writes this region acknowledged but some peer had not are never shipped
/// (the records stay in the local store). Returns how many entries were deleted.
async fn lose_unreplicated(
    store: &Store,
    region: &str,
    cursors: &mut BTreeMap<String, u64>,
    head_seq: u64,
) -> Result<u64, LabError> {
    let op = WriteOp::ForgetUnacked { peers: cursors.keys().cloned().collect() };
    let deleted = match store.write(op).await {
        Ok(store::WriteOutcome::Done(n)) => n,
        Ok(other) => return Err(LabError::State(format!("unexpected outcome of the outbox truncation: {other:?}"))),
        Err(e) => return Err(LabError::State(format!("cannot truncate the outbox: {e}"))),
    };
    for (peer, cursor) in cursors.iter_mut() {
        let never = head_seq.saturating_sub(*cursor);
        if never > 0 {
            tracing::warn!(region, %peer, writes = never, "DEFECT lose_unreplicated_on_kill: acknowledged writes will never reach this peer");
        }
        *cursor = (*cursor).max(head_seq);
    }
    tracing::warn!(
        region,
        deleted,
        "DEFECT lose_unreplicated_on_kill: deleted unreplicated outbox entries after an unclean stop"
    );
    Ok(deleted)
}

/// Installs the process-wide metrics recorder and returns its render handle (None if one was installed
/// already, for example by a test in the same process).
fn install_metrics() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder already installed; /metrics will be empty");
            None
        }
    }
}

/// Runs the node of `region` from the spec file until SIGTERM or SIGINT.
pub async fn run_node(spec_path: &Path, region: &str) -> Result<(), LabError> {
    // Die with the supervisor even if it is SIGKILLed and cannot clean up.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!(error = %e, "cannot set the parent-death signal");
    }
    let spec = Spec::load(spec_path)?;
    let me = spec.region(region)?.clone();
    let lab_dir = spec.lab_dir();
    let data_dir = lab_dir.region_dir(region);
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| LabError::io(format!("cannot create the region directory {}", data_dir.display()), e))?;
    let metrics = install_metrics();
    let peer_names: Vec<String> = spec.regions.iter().filter(|r| r.name != region).map(|r| r.name.clone()).collect();
    let mut security = security::Security::load(lab_dir.path(), region, &spec.lab.defects, spec.lab.tls_min())?;
    security.residency = spec.lab.residency_policy();
    let opened = open_region(&lab_dir, region, &peer_names, &spec.lab.defects, security.sealer.clone()).await?;
    opened.store.set_commit_delay(spec.lab.defects.store_commit_delay_ms);
    if let Some(&offset_ms) = spec.lab.defects.clock_offset_ms.get(region) {
        opened.store.set_clock_offset(offset_ms);
        tracing::warn!(
            region,
            offset_ms,
            "DEFECT clock_offset_ms: this region's versions are stamped on a skewed clock"
        );
    }

    let http_listener = TcpListener::bind((me.ip, me.http_port))
        .await
        .map_err(|e| LabError::io(format!("cannot listen for HTTP on {}:{}", me.ip, me.http_port), e))?;
    let repl_listener = TcpListener::bind((me.ip, me.repl_port))
        .await
        .map_err(|e| LabError::io(format!("cannot listen for replication on {}:{}", me.ip, me.repl_port), e))?;
    let http_addr = http_listener.local_addr().map_err(|e| LabError::io("cannot read the HTTP address", e))?;
    let repl_addr = repl_listener.local_addr().map_err(|e| LabError::io("cannot read the replication address", e))?;

    let OpenedRegion { store, writer, cursors, head_seq, startup } = opened;
    let lab = (&spec.lab.defects, &spec.lab.node);
    let node = Arc::new(Node::new(region, me.ip, store, &cursors, lab, startup, metrics).with_security(security));
    if node.apply_disabled {
        tracing::warn!(region, "DEFECT no_catch_up_after_restart: replicated batches are acknowledged, never applied");
    }

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(http::serve(node.clone(), http_listener));
    tasks.spawn(repl::accept_loop(node.clone(), repl_listener));
    for peer in node.peers.values() {
        tasks.spawn(repl::ship(node.clone(), peer.clone()));
    }
    tasks.spawn(flush_cursors_loop(node.clone()));
    tasks.spawn(housekeeping_loop(node.clone()));
    tasks.spawn(fence::fence_loop(node.clone()));

    let ready = NodeReady { region: region.to_string(), http_addr, repl_addr, pid: std::process::id() };
    print_ready(&ready)?;
    tracing::info!(region, %http_addr, %repl_addr, head_seq, restart = startup.had_data, unclean = startup.unclean, "node ready");

    wait_for_signal().await?;
    tracing::info!(region, "shutting down");
    node.shutdown.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(region, "tasks did not stop in time; aborting them");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    flush_cursors(&node).await;
    // Dropping the last store handle stops the writer thread after its current commit.
    drop(node);
    let joined = tokio::time::timeout(SHUTDOWN_GRACE, tokio::task::spawn_blocking(move || writer.join())).await;
    if joined.is_err() {
        tracing::warn!(region, "store writer did not stop in time");
    }
    mark_stopped(&lab_dir, region);
    tracing::info!(region, "stopped");
    Ok(())
}

/// Prints the single `READY` line on stdout and flushes it.
pub(crate) fn print_ready<T: Serialize>(ready: &T) -> Result<(), LabError> {
    let json = serde_json::to_string(ready).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {json}")
        .and_then(|()| out.flush())
        .map_err(|e| LabError::io("cannot report readiness on stdout", e))
}

/// Waits for SIGTERM or SIGINT.
pub(crate) async fn wait_for_signal() -> Result<(), LabError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| LabError::io("cannot handle SIGTERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| LabError::io("cannot handle SIGINT", e))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Saves acked cursors that moved since the last save.
async fn flush_cursors(node: &Node) {
    let moved: BTreeMap<String, u64> = node
        .peers
        .values()
        .filter_map(|p| {
            let acked = p.acked_seq.load(Ordering::Acquire);
            (acked > p.durable_seq.load(Ordering::Acquire)).then(|| (p.name.clone(), acked))
        })
        .collect();
    if moved.is_empty() {
        return;
    }
    match node.store.write(WriteOp::SaveCursors(moved.clone())).await {
        Ok(_) => {
            for (name, seq) in moved {
                if let Some(p) = node.peers.get(&name) {
                    p.durable_seq.fetch_max(seq, Ordering::AcqRel);
                }
            }
        }
        Err(e) => tracing::warn!(region = %node.region, error = %e, "cannot save replication cursors"),
    }
}

async fn flush_cursors_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(CURSOR_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => flush_cursors(&node).await,
        }
    }
}

/// Collects the outbox and refreshes the replication gauges.
async fn housekeeping_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let peers: Vec<String> = node.peers.keys().cloned().collect();
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match node.store.write(WriteOp::Gc { peers: peers.clone() }).await {
            Ok(store::WriteOutcome::Done(n)) if n > 0 => {
                tracing::debug!(region = %node.region, removed = n, "outbox collected");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(region = %node.region, error = %e, "outbox collection failed"),
        }
        for p in node.peers.values() {
            let (pending, lag_ms) = peer_backlog(&node, p).await;
            metrics::gauge!("xregion_outbox_pending", "peer" => p.name.clone()).set(pending as f64);
            metrics::gauge!("xregion_replication_lag_ms", "peer" => p.name.clone()).set(lag_ms as f64);
        }
        if let Some(m) = &node.metrics {
            m.run_upkeep();
        }
    }
}

/// Entries not yet acknowledged by `peer` and the age of the oldest of them in milliseconds.
pub async fn peer_backlog(node: &Node, peer: &PeerState) -> (u64, u64) {
    let acked = peer.acked_seq.load(Ordering::Acquire);
    let pending = node.head_seq().saturating_sub(acked);
    if pending == 0 {
        return (0, 0);
    }
    let oldest = node.store.read(move |s| s.oldest_after_wall_ms(acked)).await;
    let lag_ms = match oldest {
        // The entries were stamped on the region's own (possibly skewed) clock: measure their age on it too.
        Ok(Some(wall_ms)) => node.store.wall_now_ms().saturating_sub(wall_ms),
        Ok(None) => 0,
        Err(e) => {
            tracing::warn!(region = %node.region, error = %e, "cannot read the outbox");
            0
        }
    };
    (pending, lag_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Frame;
    use testutil::{entry, listen, next, open, send, wait_until};

    /// Opens region a (peers b and c) in `lab`.
    async fn start(lab: &LabDir, defects: &Defects) -> OpenedRegion {
        open_region(lab, "a", &["b".to_string(), "c".to_string()], defects, crate::crypto::Sealer::plaintext())
            .await
            .unwrap()
    }

    /// Closes the store and waits for its writer; `clean` removes the marker as a clean stop does, otherwise the
    /// run ends as a SIGKILL would leave it.
    async fn stop(store: Store, writer: std::thread::JoinHandle<()>, lab: &LabDir, clean: bool) {
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await.unwrap().unwrap();
        if clean {
            mark_stopped(lab, "a");
        }
    }

    fn outbox_seqs(store: &Store) -> Vec<u64> {
        store.outbox_after(0, 100, usize::MAX).unwrap().iter().map(|e| e.seq).collect()
    }

    /// Goal: `lose_unreplicated_on_kill` deletes the outbox entries above the lowest durable cursor and moves
    /// every cursor to the head, only on a start after an unclean stop; the records stay. Without the defect,
    /// or after a clean stop, the outbox is kept. Method: one region directory started five times.
    #[tokio::test]
    async fn lose_unreplicated_truncates_the_outbox_only_after_an_unclean_stop() {
        let dir = testutil::fresh_region("lose-unreplicated", "a");
        let defect = Defects { lose_unreplicated_on_kill: true, ..Defects::default() };
        let r = start(&dir, &defect).await;
        assert_eq!(r.startup, Startup::default(), "first start");
        for i in 1..=5 {
            r.store
                .write(WriteOp::Local { key: format!("k{i}"), value: Some("v".into()), residency: None })
                .await
                .unwrap();
        }
        r.store.write(WriteOp::SaveCursors([("b".into(), 4), ("c".into(), 2)].into())).await.unwrap();
        stop(r.store, r.writer, &dir, false).await;

        let r = start(&dir, &Defects::default()).await;
        assert_eq!(r.startup, Startup { unclean: true, had_data: true, lost: 0 }, "no defect: nothing lost");
        assert_eq!(outbox_seqs(&r.store), [1, 2, 3, 4, 5]);
        stop(r.store, r.writer, &dir, true).await;

        let r = start(&dir, &defect).await;
        assert_eq!(r.startup, Startup { unclean: false, had_data: true, lost: 0 }, "clean stop: nothing lost");
        assert_eq!(r.cursors, [("b".into(), 4), ("c".into(), 2)].into());
        stop(r.store, r.writer, &dir, false).await;

        let r = start(&dir, &defect).await;
        assert_eq!(r.startup, Startup { unclean: true, had_data: true, lost: 3 });
        assert_eq!(outbox_seqs(&r.store), [1, 2], "entries above c's cursor are gone");
        assert_eq!(r.cursors, [("b".into(), 5), ("c".into(), 5)].into());
        assert!(r.store.get("k5").unwrap().is_some(), "the records stay");
        stop(r.store, r.writer, &dir, true).await;

        let r = start(&dir, &defect).await;
        assert_eq!((r.startup.unclean, r.cursors.clone()), (false, [("b".into(), 5), ("c".into(), 5)].into()));
        stop(r.store, r.writer, &dir, true).await;
    }

    /// Goal: with `no_catch_up_after_restart`, a region's first start applies replicated batches, and after a
    /// restart (its store held data) it acknowledges them without applying; the cursor in heartbeats does not
    /// count as applied then, so it never counts as caught up. Method: speak replication by hand to each run.
    #[tokio::test]
    async fn no_catch_up_after_restart_acks_without_applying() {
        let dir = testutil::fresh_region("no-catch-up", "a");
        let defect = Defects { no_catch_up_after_restart: true, ..Defects::default() };
        for (seq, restart) in [(1, false), (2, true)] {
            let OpenedRegion { store, writer, cursors, startup, .. } = start(&dir, &defect).await;
            assert_eq!(startup.had_data, restart);
            let lab = (&defect, &NodeConfig::default());
            let node = Arc::new(Node::new("a", "127.0.0.1".parse().unwrap(), store, &cursors, lab, startup, None));
            assert_eq!(node.apply_disabled, restart);
            let mut conn = open(listen(&node).await, Frame::Hello { from: "b".into() }).await;
            send(&mut conn, Frame::Heartbeat { head: seq, acked: seq - 1 }).await;
            send(&mut conn, testutil::batch(vec![entry(seq, &format!("k{seq}"), "b")])).await;
            assert_eq!(next(&mut conn).await, Some(Frame::Ack { seq }));
            let heard = node.peers["b"].heard();
            assert_eq!(node.store.get(&format!("k{seq}")).unwrap().is_some(), !restart);
            assert_eq!(
                (heard.head, heard.applied, heard.caught_up()),
                (Some(seq), if restart { 0 } else { 1 }, !restart)
            );
            node.shutdown.cancel();
            drop(conn);
            wait_until("the node's tasks ended", || Arc::strong_count(&node) == 1).await;
            let node = Arc::into_inner(node).unwrap();
            stop(node.store, writer, &dir, true).await;
        }
    }
}
