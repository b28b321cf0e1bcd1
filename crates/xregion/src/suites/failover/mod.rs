//! Failover and disaster recovery: a region fails under steady traffic, and what clients saw is turned into RTO,
//! availability, RPO, split-brain and fail-back figures.
//!
//! Each scenario (complete, partial, network) runs once per run and feeds several checks:
//! - **canaries** send open-model reads and writes through the routing record from every client location, with no
//!   client-side retries, so RTO and availability are what users saw;
//! - a **writer** streams sequenced writes straight into the failing region: their acknowledgement times give the
//!   RPO, and, during a partition, any acknowledgement after the fence time is a split brain;
//! - during a partition, a **conflict writer** writes the same keys on both sides, for the LWW check after healing;
//! - after the restore, the region must be healthy, caught up, serving its users again, and every acknowledged
//!   write (canaries and writer) must be in every region: the history checkers judge that.
//!
//! The scenario itself is in `scenario`; each check's judgement is in `complete` (complete-region, RTO, RPO),
//! `partial`, `partition` and `recovery`, with the shared report parts in `report`. Each catalogue entry names its
//! scenario, and the first check that needs one runs it for all of them (`Ctx::shared`).
//!
//! Faults go through the `FaultInjector`, never into the deployment's internals. The fault is always restored,
//! whatever happens to the check, and at once when a `[stop]` condition holds (`stop`).

mod complete;
mod partial;
mod partition;
mod recovery;
mod report;
mod scenario;
mod stop;

use crate::check::{CheckDef, Ctx, Needs, ResultBuilder};
use crate::config::{Config, DeploymentKind};
use crate::measure;
use scenario::Outcome;
use std::time::Duration;
use xregion_model::fault::FaultKind;
use xregion_model::report::{CheckResult, Verdict};

/// The failover checks of the `cross-region` suite.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "cross-region.failover.complete-region",
        title: "a whole region fails and traffic recovers with no acknowledged write lost",
        target: |c: &Config| {
            format!(
                "RTO <= {} s, availability >= {}%, 0 writes lost for good",
                c.targets.rto_s, c.targets.availability_min_pct
            )
        },
        needs: scenario_needs(FaultKind::Complete),
        run: measure!(complete_region),
    },
    CheckDef {
        id: "cross-region.failover.partial-service",
        title: "a region whose store fails degrades gracefully: reads served, writes move, few errors",
        target: |c: &Config| {
            format!("client errors < {}%, reads still served, health not ok", c.targets.error_rate_max_pct)
        },
        needs: scenario_needs(FaultKind::Partial),
        run: measure!(partial_service),
    },
    CheckDef {
        id: "cross-region.failover.network-partition",
        title: "a partitioned region fences itself (no split brain) and converges after healing",
        target: |c: &Config| {
            let fence = fence_s(c).map_or_else(|| "its fence time".to_string(), |f| format!("{f:.1} s"));
            format!("no write acknowledged in the minority after {fence}; 0 lost, 0 wrong winners after healing")
        },
        needs: scenario_needs(FaultKind::Network),
        run: measure!(network_partition),
    },
    CheckDef {
        id: "cross-region.failover.auto-recovery",
        title: "a restored region is healthy, caught up and serving its users again, with nothing lost",
        target: |c: &Config| {
            format!("healthy, caught up and users back within {} s of the restore", c.targets.failback_s)
        },
        needs: scenario_needs(FaultKind::Complete),
        run: measure!(auto_recovery),
    },
];

/// The checks of the `disaster-recovery` suite.
pub const DR_CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "disaster-recovery.rto",
        title: "recovery time objective after a complete region failure",
        target: |c: &Config| format!("RTO <= {} s", c.targets.rto_s),
        needs: scenario_needs(FaultKind::Complete),
        run: measure!(rto),
    },
    CheckDef {
        id: "disaster-recovery.rpo",
        title: "recovery point objective after a complete region failure, and no permanent loss",
        target: |c: &Config| format!("RPO <= {} s, 0 acknowledged writes lost for good", c.targets.rpo_s),
        needs: scenario_needs(FaultKind::Complete),
        run: measure!(rpo),
    },
];

/// What a failover check needs: a fault injector that can inject `kind`, the latency record for the canaries
/// (regions that are databases have none: their canaries are clients in each surviving region), and a second
/// region to fail over to.
const fn scenario_needs(kind: FaultKind) -> Needs {
    Needs { injector: true, records: &["latency"], regions_min: 2, fault: Some(kind), contract: false, ..Needs::NONE }
}

/// Canary requests in flight per client location; beyond it a scheduled request counts as failed.
const CANARY_IN_FLIGHT_MAX: usize = 512;
/// Writer requests in flight; beyond it a scheduled write is skipped.
const WRITER_IN_FLIGHT_MAX: usize = 128;
/// How often the scenario looks at the figures and at the failing region.
const OBSERVE_TICK: Duration = Duration::from_millis(250);
/// Fewest canary requests from the fault to the restore for a scenario's verdict: below it the check is
/// `error: not enough evidence` (the lab's complete scenario sees about 2,500).
const FAULT_REQUESTS_MIN: usize = 200;
/// Fewest requests a window must hold to be judged.
const WINDOW_SAMPLES_MIN: usize = 20;
/// Longest wait for every region to be healthy before a scenario starts.
const HEALTHY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Rounds per second of the conflict writer during a partition.
const CONFLICT_ROUNDS_PER_S: f64 = 5.0;
/// Keys the conflict writer cycles through.
const CONFLICT_KEYS: u64 = 10;
/// Longest wait for the survivors' view of the writer's keys to settle after the fault.
const SURVIVOR_SETTLE_MAX: Duration = Duration::from_secs(5);
/// Grace on top of the lab's contact and fence timeouts: the fence is evaluated periodically, and a write admitted
/// just before it may be answered just after.
const FENCE_GRACE_S: f64 = 1.0;
/// Fence time assumed for deployments other than the lab, in seconds.
const FENCE_S_DEFAULT: f64 = 10.0;
/// Reads per second sent straight to the failing region during a partial failure.
const DIRECT_READS_PER_S: f64 = 20.0;
/// Reads straight at the failing region in flight; beyond it a due read is not sent.
const DIRECT_READS_IN_FLIGHT_MAX: usize = 16;

/// Which scenario a check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// The region is killed.
    Complete,
    /// The region's store fails writes.
    Partial,
    /// The region is cut off from its peers.
    Network,
}

impl Scenario {
    /// The fault it injects.
    fn kind(self) -> FaultKind {
        match self {
            Scenario::Complete => FaultKind::Complete,
            Scenario::Partial => FaultKind::Partial,
            Scenario::Network => FaultKind::Network,
        }
    }

    /// Whether a check judges when the restored region's users are back (auto-recovery, on the complete failure);
    /// the other scenarios stop observing once the region is healthy and caught up.
    fn judges_users_back(self) -> bool {
        self == Scenario::Complete
    }

    /// Its name, which keys its outcome among the run's shared results and its keys among the run's.
    fn name(self) -> &'static str {
        match self {
            Scenario::Complete => "fo-complete",
            Scenario::Partial => "fo-partial",
            Scenario::Network => "fo-network",
        }
    }
}

/// The fence time a partition check allows: the configured one, or the lab's.
fn fence_s(c: &Config) -> Option<f64> {
    c.targets.fence_s.or(match c.deployment.kind {
        DeploymentKind::Lab => {
            Some((c.lab.node.contact_timeout_ms + c.lab.node.fence_timeout_ms) as f64 / 1000.0 + FENCE_GRACE_S)
        }
        DeploymentKind::Http => Some(FENCE_S_DEFAULT),
    })
}

/// Runs `scenario` (once per run: later checks reuse its outcome) and judges it with `judge`.
async fn judged(
    rb: ResultBuilder,
    ctx: &Ctx,
    scenario: Scenario,
    judge: fn(ResultBuilder, &Ctx, &Outcome) -> CheckResult,
) -> CheckResult {
    let (outcome, reused) =
        ctx.shared.get_or_compute(scenario.name(), scenario::run(ctx, ctx.traffic(), scenario)).await;
    if reused {
        ctx.progress.phase("using this run's earlier scenario");
    }
    match outcome.as_ref() {
        Ok(o) => judge(rb, ctx, o),
        Err(e) => rb.finish(Verdict::Error, e.clone()),
    }
}

async fn complete_region(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    judged(rb, ctx, Scenario::Complete, complete::judge_complete).await
}

async fn partial_service(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    judged(rb, ctx, Scenario::Partial, partial::judge_partial).await
}

async fn network_partition(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    judged(rb, ctx, Scenario::Network, partition::judge_partition).await
}

async fn auto_recovery(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    judged(rb, ctx, Scenario::Complete, recovery::judge_recovery).await
}

async fn rto(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    judged(rb, ctx, Scenario::Complete, complete::judge_rto).await
}

async fn rpo(rb: ResultBuilder, ctx: &Ctx) -> CheckResult {
    judged(rb, ctx, Scenario::Complete, complete::judge_rpo).await
}
