//! What the checks hold the deployment to and how they run: `Targets` are the promises (the specification's
//! figures by default), `Checks` the tuning of individual checks, and `Profile` the size of the performance load.

use serde::{Deserialize, Serialize};

/// Size of the performance suite's load: `quick` fits the whole run in a few minutes on 2 cores; `spec` is the
/// specification's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Profile {
    /// At least 2,000 users, stages of tens of seconds.
    Quick,
    /// `MAX_CONCURRENT_USERS` (10,000): ramp over 5 minutes, hold 10 minutes.
    Spec,
}

impl Profile {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Spec => "spec",
        }
    }
}

/// The promises. Defaults are the specification's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Targets {
    /// Replication delay P99 for every ordered region pair must be below this, in milliseconds.
    pub replication_p99_ms: f64,
    /// Cross-region latency P95 must be below this, in milliseconds (`MAX_LATENCY_MS`).
    pub max_latency_ms: f64,
    /// Recovery time objective, in seconds (`TARGET_RTO_SECONDS`).
    pub rto_s: f64,
    /// Recovery point objective, in seconds (`TARGET_RPO_SECONDS`).
    pub rpo_s: f64,
    /// Concurrent users the deployment must serve (`MAX_CONCURRENT_USERS`).
    pub max_concurrent_users: u64,
    /// P95 latency of requests through a routing record must be below this, in milliseconds (the seed's
    /// load-balancing criterion).
    pub routing_p95_ms: f64,
    /// Share of a client location's requests its expected region must serve, in percent.
    pub routing_share_min_pct: f64,
    /// Longest time an unhealthy region may keep receiving new requests, in seconds.
    pub health_detection_s: f64,
    /// Largest error rate under load, failover or overflow, in percent.
    pub error_rate_max_pct: f64,
    /// P95 response time under load must be below this, in milliseconds.
    pub load_p95_ms: f64,
    /// Smallest CDN hit rate over cacheable GETs, in percent.
    pub cdn_hit_rate_min_pct: f64,
    /// CDN edge P95 latency must be below this, in milliseconds.
    pub cdn_p95_ms: f64,
    /// Store read and write P95 at each region must be below this, in milliseconds.
    pub db_p95_ms: f64,
    /// Store (connection-pool) acquisition P95 at each region must be below this, in milliseconds.
    pub pool_acquire_p95_ms: f64,
    /// Smallest share of a database region's connection acquisitions that reuse an open connection, in percent.
    pub pool_reuse_min_pct: f64,
    /// Smallest share of successful client requests from a fault to the end of recovery, in percent.
    pub availability_min_pct: f64,
    /// Smallest steady-state availability (share of successful requests under the sustained load), in percent;
    /// judged on its 95% lower confidence bound.
    pub steady_availability_min_pct: f64,
    /// Longest time a restored region may take to be healthy, caught up and serving its users again, in seconds.
    pub failback_s: f64,
    /// Longest time a region cut off from the majority may keep acknowledging writes, in seconds. Unset: for the
    /// lab, its contact plus fence timeouts plus one second; for other deployments, 10.
    pub fence_s: Option<f64>,
    /// Fewest days a served certificate must have left before it expires.
    pub cert_days_min: f64,
    /// Longest time an erased record may stay readable in any region, in seconds.
    pub erasure_s: f64,
    /// The session guarantees the deployment promises across regions (`read-your-writes`, `monotonic-reads`).
    /// Unset: what its kind of store keeps by default (etcd: both; the lab, an HTTP deployment, Postgres standbys
    /// and Galera: none). An empty list promises none, and the check reports its figures without a verdict.
    pub session_guarantees: Option<Vec<xregion_check::consistency::Guarantee>>,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            replication_p99_ms: 100.0,
            max_latency_ms: 200.0,
            rto_s: 120.0,
            rpo_s: 1.0,
            max_concurrent_users: 10_000,
            routing_p95_ms: 200.0,
            routing_share_min_pct: 95.0,
            health_detection_s: 10.0,
            error_rate_max_pct: 1.0,
            load_p95_ms: 2_000.0,
            cdn_hit_rate_min_pct: 90.0,
            cdn_p95_ms: 100.0,
            db_p95_ms: 100.0,
            pool_acquire_p95_ms: 10.0,
            pool_reuse_min_pct: 90.0,
            availability_min_pct: 99.0,
            steady_availability_min_pct: 99.99,
            failback_s: 60.0,
            fence_s: None,
            cert_days_min: 30.0,
            erasure_s: 10.0,
            session_guarantees: None,
        }
    }
}

/// Per-check tuning, keyed by the last part of the check id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// `cross-region.consistency.write-replicate`.
    #[serde(rename = "write-replicate")]
    pub write_replicate: WriteReplicate,
    /// `cross-region.consistency.concurrent-writes`.
    #[serde(rename = "concurrent-writes")]
    pub concurrent_writes: ConcurrentWrites,
    /// `cross-region.consistency.conflict-lww`.
    #[serde(rename = "conflict-lww")]
    pub conflict_lww: ConflictLww,
    /// `cross-region.consistency.lww-realtime`.
    #[serde(rename = "lww-realtime")]
    pub lww_realtime: LwwRealtime,
    /// `cross-region.consistency.session-guarantees`.
    #[serde(rename = "session-guarantees")]
    pub session_guarantees: SessionGuarantees,
    /// `performance.load.*`.
    pub load: Load,
    /// `cross-region.failover.*` and `disaster-recovery.*`.
    pub failover: Failover,
}

/// Tuning of the failover and disaster-recovery scenarios.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// The region that fails; default: the first region.
    pub region: Option<String>,
    /// Steady traffic before the fault, in ms.
    pub warmup_ms: u64,
    /// Longest observation after the fault before the region is restored, in ms; default: the RTO target plus
    /// `stable_ms`, so that a region that has not recovered when the observation ends has missed the target.
    pub observe_max_ms: Option<u64>,
    /// The fault is kept until the success rate has stayed above the threshold this long, in ms.
    pub stable_ms: u64,
    /// Longest observation after the restore, in ms.
    pub restore_observe_max_ms: u64,
    /// Canary requests per second from each client location, through the routing record; default by profile
    /// (50 quick, 100 spec).
    pub canary_rate_per_location: Option<f64>,
    /// Sequenced writes per second the RPO writer sends straight into the failing region.
    pub rpo_writes_per_s: f64,
    /// Width of the sliding success-rate window, in ms.
    pub window_ms: u64,
    /// Step between two windows, in ms (the RTO's resolution).
    pub step_ms: u64,
    /// A window recovers at this success rate, in percent.
    pub success_threshold_pct: f64,
    /// Longest wait for the regions to converge at the end of a scenario, in ms.
    pub settle_timeout_ms: u64,
    /// The partial-failure scenario's share of requests answered 503 on top of failing writes (0 to 1).
    pub partial_error_share: f64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            region: None,
            warmup_ms: 3_000,
            observe_max_ms: None,
            stable_ms: 5_000,
            restore_observe_max_ms: 60_000,
            canary_rate_per_location: None,
            rpo_writes_per_s: 100.0,
            window_ms: 1_000,
            step_ms: 100,
            success_threshold_pct: 99.0,
            settle_timeout_ms: 30_000,
            partial_error_share: 0.0,
        }
    }
}

/// Tuning of the load checks, on top of the `--profile`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Load {
    /// Users to reach instead of the profile's (2,000 for `quick`, `MAX_CONCURRENT_USERS` for `spec`).
    pub users: Option<u32>,
    /// Multiplies every stage's duration; below 1 shortens the profile.
    pub time_scale: f64,
    /// Journeys of the journey file that the users run as their script instead of the single-request mix (with
    /// the setup journeys of their checks run first); empty: the mix.
    pub journeys: Vec<String>,
}

impl Default for Load {
    fn default() -> Self {
        Load { users: None, time_scale: 1.0, journeys: Vec::new() }
    }
}

/// Tuning of the write-replicate check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteReplicate {
    /// Probe writes per origin region; each is watched in every other region.
    pub writes_per_region: u64,
    /// Probe writes per second per origin region (open model: sent on schedule, not after the previous one).
    pub rate_per_s: f64,
    /// How often each observer polls every key it has not seen yet, in milliseconds; bounds the resolution.
    pub poll_interval_ms: u64,
    /// A key not visible in an observer this long after its write was acknowledged counts as never replicated.
    pub visibility_timeout_ms: u64,
    /// Extra unwatched writes per second per region during the check, to measure replication under load.
    pub background_writes_per_s: f64,
    /// How an observer looks for the writes it waits for: `scan` reads, each poll, one ordered page per origin
    /// (`GET /v1/kv?prefix=…&after=…`) holding every key it still waits for; `read` sends one `GET /v1/kv/{key}` per
    /// key. `auto` (the default) scans over the HTTP probe contract, whose scan is an ordered range read, and
    /// reads key by key in a database, where a prefix scan may not use an index.
    pub observe: Observe,
}

/// How the write-replicate observers look for writes (see [`WriteReplicate::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observe {
    /// `scan` over the HTTP probe contract, `read` in a database.
    #[default]
    Auto,
    /// One scan per origin and poll.
    Scan,
    /// One read per key and poll.
    Read,
}

impl Default for WriteReplicate {
    fn default() -> Self {
        WriteReplicate {
            writes_per_region: 600,
            rate_per_s: 100.0,
            poll_interval_ms: 2,
            visibility_timeout_ms: 5_000,
            background_writes_per_s: 0.0,
            observe: Observe::Auto,
        }
    }
}

/// Tuning of the concurrent-writes check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrentWrites {
    /// Concurrent writers in each region.
    pub writers_per_region: u32,
    /// Size of the shared key space all writers pick from.
    pub keys: u32,
    /// How long the writers run, in milliseconds.
    pub duration_ms: u64,
    /// Share of operations that are deletes, from 0 to 1.
    pub delete_ratio: f64,
    /// How long to wait for the regions to converge after the last write, in milliseconds.
    pub quiet_timeout_ms: u64,
}

impl Default for ConcurrentWrites {
    fn default() -> Self {
        ConcurrentWrites {
            writers_per_region: 4,
            keys: 24,
            duration_ms: 3_000,
            delete_ratio: 0.1,
            quiet_timeout_ms: 15_000,
        }
    }
}

/// Tuning of the conflict-lww check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConflictLww {
    /// Keys written from every region at nearly the same moment.
    pub keys: u32,
    /// How long to wait for the regions to converge after the last write, in milliseconds.
    pub quiet_timeout_ms: u64,
}

impl Default for ConflictLww {
    fn default() -> Self {
        ConflictLww { keys: 60, quiet_timeout_ms: 15_000 }
    }
}

/// Tuning of the lww-realtime check. A write may lose to an earlier one only when it began within `tolerance()` of
/// that one's end; both parts are stated here, so that a store which promises less can be held to what it promises.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LwwRealtime {
    /// Keys, each written once from every region in turn, every write sent right after the previous one was
    /// acknowledged (and the tolerance has passed).
    pub keys: u32,
    /// The store's stated clock resolution, in milliseconds: how far apart in real time two writes in different
    /// regions must be for its timestamps to order them (its timestamps' granularity plus the bound it states on
    /// its regions' clock differences). The lab stamps whole milliseconds from one machine's clock: 1.
    pub clock_resolution_ms: f64,
    /// How far xregion's own measure of real time may be off, in milliseconds. Its start and end times come from
    /// one monotonic clock in one process and bracket each write, so they can only understate a gap; this covers
    /// the rate difference between that clock and the stores' wall clocks, with room to spare.
    pub measuring_tolerance_ms: f64,
    /// How long to wait for the regions to converge after the last write, in milliseconds.
    pub quiet_timeout_ms: u64,
    /// A clock fault to write under, in milliseconds (positive: ahead): the check sets `clock_fault_region`'s clock
    /// this far off through the fault injector (the lab's, or `faults.command.fail_clock`) before the first write
    /// and restores it after the last. 0 (the default): no clock fault.
    pub clock_fault_ms: i64,
    /// The region whose clock the fault sets off; default the first region.
    pub clock_fault_region: Option<String>,
}

impl LwwRealtime {
    /// Largest tolerance the check accepts, in milliseconds: every chained write waits this long after the previous
    /// one, so a larger one would make the check long and let replication order the chain instead of the clocks.
    pub const TOLERANCE_MS_MAX: f64 = 10_000.0;

    /// Clock resolution plus measuring tolerance: how much later than a write's end another may begin and still
    /// lose to it.
    pub fn tolerance(&self) -> std::time::Duration {
        // Whole nanoseconds, rounded: validation keeps the sum finite, not negative and at most TOLERANCE_MS_MAX.
        std::time::Duration::from_nanos(((self.clock_resolution_ms + self.measuring_tolerance_ms) * 1e6).round() as u64)
    }
}

/// Tuning of the session-guarantees check: two kinds of sessions run at once, every operation of a session right
/// after the previous one completed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionGuarantees {
    /// Writing sessions: each writes a key of its own in one region, then reads it in every other region in turn,
    /// `writes` times, starting one region further each time (read your writes).
    pub sessions: u32,
    /// Writes per writing session.
    pub writes: u32,
    /// Reading sessions: each reads a key that another client keeps writing in one region, every read in the next
    /// region (monotonic reads).
    pub readers: u32,
    /// Reads per reading session.
    pub reads: u32,
    /// Pause between two writes of a key the reading sessions read, in milliseconds.
    pub write_interval_ms: u64,
}

impl Default for SessionGuarantees {
    fn default() -> Self {
        SessionGuarantees { sessions: 6, writes: 10, readers: 6, reads: 24, write_interval_ms: 10 }
    }
}

impl Default for LwwRealtime {
    fn default() -> Self {
        LwwRealtime {
            keys: 40,
            clock_resolution_ms: 1.0,
            measuring_tolerance_ms: 1.0,
            quiet_timeout_ms: 10_000,
            clock_fault_ms: 0,
            clock_fault_region: None,
        }
    }
}
