//! One region of the lab: a process that stores data durably, serves the probe contract over HTTP and
//! replicates its own writes to every other region.
//!
//! `run_node` wires the parts: the store (`store`, group commit and the HLC), the HTTP API (`http`), the
//! replication shippers and receiver (`repl`), the round-trip probes over the replication links (`rtt`), and
//! the background tasks that persist cursors, collect the outbox and refresh gauges. It prints exactly one
//! `READY {json}` line to stdout once both listeners are bound; logs go to stderr. SIGTERM or SIGINT stop it
//! cleanly, and it dies with its parent (parent-death signal).

pub mod http;
pub mod repl;
pub mod rtt;
pub mod store;

use crate::LabError;
use crate::config::{Defects, NodeConfig};
use crate::hlc::wall_now_ms;
use crate::spec::Spec;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use store::{Store, WriteOp};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

/// Replication state towards one peer, shared by its shipper, the HTTP API and the cursor flusher.
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
    /// What `/healthz` reports: `ok`, or the status set by `PUT /lab/health` (then `/healthz` answers 503).
    pub health: std::sync::Mutex<String>,
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
}

impl Node {
    /// Highest local outbox seq committed.
    pub fn head_seq(&self) -> u64 {
        *self.store.head().borrow()
    }
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
    let data_dir = spec.dir.join(region);
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| LabError::io(format!("cannot create the region directory {}", data_dir.display()), e))?;
    let metrics = install_metrics();
    let (store, recovered, writer) = Store::open(&data_dir.join("store.redb"), region)?;
    store.set_commit_delay(spec.lab.defects.store_commit_delay_ms);

    let http_listener = TcpListener::bind((me.ip, me.http_port))
        .await
        .map_err(|e| LabError::io(format!("cannot listen for HTTP on {}:{}", me.ip, me.http_port), e))?;
    let repl_listener = TcpListener::bind((me.ip, me.repl_port))
        .await
        .map_err(|e| LabError::io(format!("cannot listen for replication on {}:{}", me.ip, me.repl_port), e))?;
    let http_addr = http_listener.local_addr().map_err(|e| LabError::io("cannot read the HTTP address", e))?;
    let repl_addr = repl_listener.local_addr().map_err(|e| LabError::io("cannot read the replication address", e))?;

    let peers = spec
        .regions
        .iter()
        .filter(|r| r.name != region)
        .map(|r| {
            let acked = recovered.cursors.get(&r.name).copied().unwrap_or(0);
            let state = PeerState {
                name: r.name.clone(),
                acked_seq: AtomicU64::new(acked),
                durable_seq: AtomicU64::new(acked),
                connected: AtomicBool::new(false),
                addr: watch::channel(None).0,
            };
            (r.name.clone(), Arc::new(state))
        })
        .collect();
    let node = Arc::new(Node {
        region: region.to_string(),
        ip: me.ip,
        store,
        peers,
        defects: spec.lab.defects.clone(),
        settings: spec.lab.node.clone(),
        health: std::sync::Mutex::new("ok".to_string()),
        in_flight: AtomicU64::new(0),
        metrics,
        received_entries: AtomicU64::new(0),
        rtt_probes: tokio::sync::Semaphore::new(rtt::PROBES_MAX),
        shutdown: CancellationToken::new(),
    });

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(http::serve(node.clone(), http_listener));
    tasks.spawn(repl::accept_loop(node.clone(), repl_listener));
    for peer in node.peers.values() {
        tasks.spawn(repl::ship(node.clone(), peer.clone()));
    }
    tasks.spawn(flush_cursors_loop(node.clone()));
    tasks.spawn(housekeeping_loop(node.clone()));

    let ready = NodeReady { region: region.to_string(), http_addr, repl_addr, pid: std::process::id() };
    print_ready(&ready)?;
    tracing::info!(region, %http_addr, %repl_addr, head_seq = recovered.head_seq, "node ready");

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
        Ok(Some(wall_ms)) => wall_now_ms().saturating_sub(wall_ms),
        Ok(None) => 0,
        Err(e) => {
            tracing::warn!(region = %node.region, error = %e, "cannot read the outbox");
            0
        }
    };
    (pending, lag_ms)
}

/// Builds in-process nodes for the unit tests of the node's parts.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A node of `region` with `peers`, its store in a fresh temp dir.
    pub fn node(test: &str, region: &str, peers: &[&str], defects: Defects) -> Arc<Node> {
        node_with(test, region, peers, defects, NodeConfig::default())
    }

    /// As `node`, with node settings.
    pub fn node_with(test: &str, region: &str, peers: &[&str], defects: Defects, settings: NodeConfig) -> Arc<Node> {
        let dir = std::env::temp_dir().join(format!("xregion-lab-unit-{}-{test}-{region}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (store, _, _writer) = Store::open(&dir.join("store.redb"), region).unwrap();
        let peers = peers
            .iter()
            .map(|p| {
                let state = PeerState {
                    name: p.to_string(),
                    acked_seq: AtomicU64::new(0),
                    durable_seq: AtomicU64::new(0),
                    connected: AtomicBool::new(false),
                    addr: watch::channel(None).0,
                };
                (p.to_string(), Arc::new(state))
            })
            .collect();
        Arc::new(Node {
            region: region.to_string(),
            ip: "127.0.0.1".parse().unwrap(),
            store,
            peers,
            defects,
            settings,
            health: std::sync::Mutex::new("ok".to_string()),
            in_flight: AtomicU64::new(0),
            metrics: None,
            received_entries: AtomicU64::new(0),
            rtt_probes: tokio::sync::Semaphore::new(rtt::PROBES_MAX),
            shutdown: CancellationToken::new(),
        })
    }
}
