//! A journey's fault (`[journey.fault]`): injected through the deployment's fault injector once every run has
//! reached the step it waits before, so that the fault hits the same moment of every run (all orders placed,
//! every payment about to start), and lifted after `for_ms`. The steps that end while it is in force are marked,
//! so that conservation can excuse a refusal made while units were out of reach.

use super::spec::{Journey, JourneyFault};
use crate::faults::FaultInjector;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use xregion_model::fault::FaultSpec;

/// Where a journey's runs meet before its fault: every run arrives before step `step` (or leaves, ending
/// earlier), and waits until the gate opens; the fault's driver waits until every run has arrived or left,
/// injects the fault, marks it active, and opens the gate.
#[derive(Debug)]
pub struct FaultGate {
    /// The step the runs wait before.
    pub step: String,
    /// Runs that have neither arrived nor left.
    pending: tokio::sync::watch::Sender<u32>,
    /// Opened once the fault is in force (or could not be injected).
    open: CancellationToken,
    /// Whether the fault is in force now.
    active: std::sync::atomic::AtomicBool,
}

impl FaultGate {
    /// A gate before `step` for `runs` runs.
    pub fn new(step: &str, runs: u32) -> Arc<FaultGate> {
        Arc::new(FaultGate {
            step: step.to_string(),
            pending: tokio::sync::watch::channel(runs).0,
            open: CancellationToken::new(),
            active: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A run reached the step: waits until the gate opens.
    pub(super) async fn arrive(&self) {
        self.leave();
        self.open.cancelled().await;
    }

    /// A run ended before the step.
    pub(super) fn leave(&self) {
        self.pending.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits until every run has arrived or left.
    pub async fn all_here(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Lets the runs go on.
    pub fn open(&self) {
        self.open.cancel();
    }

    /// Marks the fault in force, or lifted.
    pub fn set_active(&self, on: bool) {
        self.active.store(on, std::sync::atomic::Ordering::Release);
    }

    /// Whether the fault is in force now.
    pub fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A fault ready to drive.
#[derive(Debug)]
pub struct Planned {
    /// Where the journey's runs wait.
    pub gate: Arc<FaultGate>,
    /// The region it hits.
    pub region: String,
    /// What is injected.
    pub spec: FaultSpec,
    /// How long it lasts.
    pub for_ms: u64,
}

/// What happened to the fault.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// The region and kind, for the report.
    pub what: String,
    /// From the journeys' start until the fault was in force, in s.
    pub injected_at_s: Option<f64>,
    /// How long it was in force, in s.
    pub lasted_s: f64,
    /// Why it could not be injected.
    pub error: Option<String>,
    /// Why it could not be lifted.
    pub restore_error: Option<String>,
}

/// The fault of journey `j`, for a deployment of `regions` (in config order); `Err` says why it cannot be
/// injected (the journeys then run without it).
pub fn plan(j: &Journey, f: &JourneyFault, faults: &FaultInjector, regions: &[String]) -> Result<Planned, String> {
    faults.supports(f.kind)?;
    let region = match f.region.as_deref() {
        None | Some("first") => regions.first().cloned().ok_or("the deployment has no region")?,
        Some("last") => regions.last().cloned().ok_or("the deployment has no region")?,
        Some(name) if regions.iter().any(|r| r == name) => name.to_string(),
        Some(name) => return Err(format!("the fault's region {name} is not one of {}", regions.join(", "))),
    };
    // A partial fault fails the region's store writes (`FaultSpec::new`'s default), as the failover suite's does.
    let spec = FaultSpec { clients: f.clients, ..FaultSpec::new(f.kind) };
    Ok(Planned { gate: FaultGate::new(&f.before, j.instances), region, spec, for_ms: f.for_ms })
}

/// Waits until every run is at the gate (or `done` fires: the runs ended first), injects the fault, opens the
/// gate, and lifts the fault after `for_ms`. The gate opens whatever happens, so no run waits for ever.
pub async fn drive(faults: &FaultInjector, p: &Planned, started: Instant, done: &CancellationToken) -> Log {
    let mut log = Log { what: format!("{} fault in {}", p.spec.kind.name(), p.region), ..Log::default() };
    tokio::select! {
        _ = p.gate.all_here() => {}
        _ = done.cancelled() => {
            p.gate.open();
            log.error = Some("every run ended before reaching the fault's step".into());
            return log;
        }
    }
    if let Err(e) = faults.fail(&p.region, &p.spec).await {
        p.gate.open();
        log.error = Some(e.to_string());
        return log;
    }
    let since = Instant::now();
    log.injected_at_s = Some(since.duration_since(started).as_secs_f64());
    p.gate.set_active(true);
    p.gate.open();
    tokio::time::sleep(Duration::from_millis(p.for_ms)).await;
    if let Err(e) = faults.restore(&p.region).await {
        log.restore_error = Some(e.to_string());
    }
    p.gate.set_active(false);
    log.lasted_s = since.elapsed().as_secs_f64();
    log
}
