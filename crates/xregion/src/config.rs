//! The configuration: a TOML file plus the specification's environment variables, turned into one explicit
//! `Config` that is passed down (never global state).
//!
//! The file describes the deployment (the embedded lab by default, or regions reached over HTTP), the targets
//! (the promises, with the specification's figures as defaults) and the tuning of each check. Unknown keys are
//! errors, and every error points at file, line and column so that the user can fix it without guessing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Every setting of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What is tested: the lab, or a deployment reached over HTTP.
    pub deployment: Deployment,
    /// The embedded lab's settings, used when `deployment.kind = "lab"`.
    pub lab: crate::target::lab_config::LabConfig,
    /// The promises each check holds the deployment to.
    pub targets: Targets,
    /// Tuning of individual checks.
    pub checks: Checks,
    /// How faults reach the deployment (`[faults]`).
    pub faults: Faults,
}

/// Size of the performance suite's load: `quick` fits the whole run in a few minutes on 2 cores; `spec` is the
/// specification's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Profile {
    /// At least 2,000 users, stages of tens of seconds.
    Quick,
    /// `MAX_CONCURRENT_USERS` (10,000): ramp over 5 minutes, hold 10 minutes.
    Spec,
}

/// Which deployment to test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentKind {
    /// Start the embedded lab and test it.
    #[default]
    Lab,
    /// Test regions that implement the probe contract at the given endpoints.
    Http,
}

/// The deployment under test.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deployment {
    /// `lab` (default) or `http`.
    pub kind: DeploymentKind,
    /// For `http`: each region and its probe-contract base URL.
    pub regions: Vec<RegionEndpoint>,
    /// Timeout of one probe request, in milliseconds. A request that takes longer has an unknown outcome.
    pub request_timeout_ms: u64,
    /// Timeout of establishing a connection, in milliseconds; an endpoint that does not answer within it is
    /// reported as unreachable.
    pub connect_timeout_ms: u64,
    /// Global routing and CDN entry points, for the routing and CDN checks. The lab fills this in itself.
    pub traffic: Option<Traffic>,
    /// `[deployment.tls]`: what the clients trust. The lab fills this in itself.
    pub tls: Tls,
    /// `[deployment.auth]`: the bearer tokens the clients send. The lab fills this in itself.
    pub auth: Auth,
    /// `[deployment.security]`: what the security suite needs to know about the deployment.
    pub security: Security,
}

/// `[deployment.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM file of the CA certificate(s) every HTTPS endpoint must chain to. Unset: the client trusts no CA, so
    /// only plain `http://` endpoints can be reached.
    pub ca_file: Option<PathBuf>,
}

/// A bearer token: never shown by `Debug`, and serialized as `"[redacted]"` (the report records the config).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's value, to put in a header; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// `[deployment.auth]`: bearer tokens by scope (env `XREGION_TOKEN_READ`, `_WRITE`, `_ADMIN` override).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// A token with the read scope only.
    pub read_token: Option<Secret>,
    /// A token with the read and write scopes.
    pub write_token: Option<Secret>,
    /// A token with every scope (the probes use it: they read, write, and read replication and audit).
    pub admin_token: Option<Secret>,
}

/// `[deployment.security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// The residency tag the data-residency check writes with.
    pub residency_tag: String,
    /// The regions where records tagged `residency_tag` may live.
    pub residency_regions: Vec<String>,
    /// Files or directories scanned for plaintext canaries (stores, logs). The lab fills in its directory.
    pub raw_paths: Vec<PathBuf>,
    /// A Prowler result file (OCSF JSON), read by encryption-at-rest when `raw_paths` is empty.
    pub prowler_ocsf: Option<PathBuf>,
    /// Region name to its replication listener (`host:port`), for the check that a peer without a client
    /// certificate is refused. The lab fills this in from its spec.
    pub replication: BTreeMap<String, String>,
    /// The principal the audit log must name for writes made with the write token (unset: any named principal).
    /// The lab fills in its own.
    pub writer_principal: Option<String>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            residency_tag: "eu".into(),
            residency_regions: Vec::new(),
            raw_paths: Vec::new(),
            prowler_ocsf: None,
            replication: BTreeMap::new(),
            writer_principal: None,
        }
    }
}

/// How clients reach the deployment: routing records, the CDN, and what each client location should get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// Routing record name (`latency`, `geolocation`, `weighted`, `failover`) to its base URL.
    pub records: BTreeMap<String, String>,
    /// Base URL of the CDN.
    pub cdn: Option<String>,
    /// Request header that carries the client location.
    pub location_header: String,
    /// Response header that names the serving region.
    pub served_by_header: String,
    /// Client location to its nearest region (what the latency record must pick).
    pub nearest: BTreeMap<String, String>,
    /// Client location to the region the geolocation record must pick.
    pub geolocation: BTreeMap<String, String>,
    /// Client location to each region's one-way latency in ms; orders the fallback regions.
    pub locations: BTreeMap<String, BTreeMap<String, f64>>,
    /// Region to its weight in the weighted record.
    pub weights: BTreeMap<String, f64>,
    /// Region to its capacity (requests in flight) before the router overflows to the next region.
    pub capacity: BTreeMap<String, u64>,
    /// Primary order of the failover record.
    pub failover_order: Vec<String>,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            kind: DeploymentKind::Lab,
            regions: Vec::new(),
            request_timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
            traffic: None,
            tls: Tls::default(),
            auth: Auth::default(),
            security: Security::default(),
        }
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            records: BTreeMap::new(),
            cdn: None,
            location_header: "X-Client-Location".to_string(),
            served_by_header: "X-Served-By".to_string(),
            nearest: BTreeMap::new(),
            geolocation: BTreeMap::new(),
            locations: BTreeMap::new(),
            weights: BTreeMap::new(),
            capacity: BTreeMap::new(),
            failover_order: Vec::new(),
        }
    }
}

/// One region of an HTTP deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEndpoint {
    /// Region name, for example `us-east-1`.
    pub name: String,
    /// Base URL of the region's probe contract, for example `https://api-us-east-1.example.com`.
    pub endpoint: String,
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
    /// Smallest share of successful client requests from a fault to the end of recovery, in percent.
    pub availability_min_pct: f64,
    /// Longest time a restored region may take to be healthy, caught up and serving its users again, in seconds.
    pub failback_s: f64,
    /// Longest time a region cut off from the majority may keep acknowledging writes, in seconds. Unset: for the
    /// lab, its contact plus fence timeouts plus one second; for other deployments, 10.
    pub fence_s: Option<f64>,
    /// Fewest days a served certificate must have left before it expires.
    pub cert_days_min: f64,
    /// Longest time an erased record may stay readable in any region, in seconds.
    pub erasure_s: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            replication_p99_ms: 100.0,
            max_latency_ms: 200.0,
            rto_s: 120.0,
            rpo_s: 1.0,
            max_concurrent_users: 10_000,
            routing_share_min_pct: 95.0,
            health_detection_s: 10.0,
            error_rate_max_pct: 1.0,
            load_p95_ms: 2_000.0,
            cdn_hit_rate_min_pct: 90.0,
            cdn_p95_ms: 100.0,
            db_p95_ms: 100.0,
            pool_acquire_p95_ms: 10.0,
            availability_min_pct: 99.0,
            failback_s: 60.0,
            fence_s: None,
            cert_days_min: 30.0,
            erasure_s: 10.0,
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
}

impl Default for Load {
    fn default() -> Self {
        Load { users: None, time_scale: 1.0 }
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
}

impl Default for WriteReplicate {
    fn default() -> Self {
        WriteReplicate {
            writes_per_region: 100,
            rate_per_s: 25.0,
            poll_interval_ms: 2,
            visibility_timeout_ms: 5_000,
            background_writes_per_s: 0.0,
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

/// Which fault injector a run (and `xregion fail`) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectorKind {
    /// The lab's control API; only for `deployment.kind = "lab"`.
    Lab,
    /// The user's shell commands in `[faults.command]`.
    Command,
    /// No fault injection: checks that need it are skipped.
    None,
}

/// `[faults]`: how faults are injected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// The injector. Unset: `lab` for the lab, `command` when `[faults.command]` is given, otherwise `none`.
    pub injector: Option<InjectorKind>,
    /// Longest one fault command may run, in seconds; then its whole process group is killed.
    pub timeout_s: f64,
    /// The commands of the `command` injector.
    pub command: Option<FaultCommands>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { injector: None, timeout_s: 120.0, command: None }
    }
}

impl Faults {
    /// The injector in effect for a deployment of `kind`.
    pub fn effective_injector(&self, kind: DeploymentKind) -> InjectorKind {
        match (self.injector, kind) {
            (Some(k), _) => k,
            (None, DeploymentKind::Lab) => InjectorKind::Lab,
            (None, DeploymentKind::Http) if self.command.is_some() => InjectorKind::Command,
            (None, DeploymentKind::Http) => InjectorKind::None,
        }
    }
}

/// `[faults.command]`: shell commands (run with `sh -c`) that inject and lift faults in a real deployment. The
/// contract (environment, exit codes, status JSON) is in `docs/fault-injection.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultCommands {
    /// Injects a fault of any kind that has no command of its own.
    pub fail: Option<String>,
    /// Injects a complete failure.
    pub fail_complete: Option<String>,
    /// Injects a partial failure.
    pub fail_partial: Option<String>,
    /// Injects a network partition.
    pub fail_network: Option<String>,
    /// Injects extra latency.
    pub fail_latency: Option<String>,
    /// Lifts every fault of a region; required.
    pub restore: Option<String>,
    /// Prints the state of every region, ideally as `FaultStatus` JSON.
    pub status: Option<String>,
    /// Makes a region's health check fail while it keeps serving.
    pub health_down: Option<String>,
    /// Makes a region's health check pass again.
    pub health_up: Option<String>,
}

impl FaultCommands {
    /// The command that injects `kind`: its own, else `fail`.
    pub fn fail_for(&self, kind: xregion_model::fault::FaultKind) -> Option<&str> {
        use xregion_model::fault::FaultKind;
        let own = match kind {
            FaultKind::Complete => &self.fail_complete,
            FaultKind::Partial => &self.fail_partial,
            FaultKind::Network => &self.fail_network,
            FaultKind::Latency => &self.fail_latency,
        };
        own.as_deref().or(self.fail.as_deref())
    }

    /// Every command that is set, with its key, for validation.
    fn all(&self) -> [(&'static str, &Option<String>); 9] {
        [
            ("fail", &self.fail),
            ("fail_complete", &self.fail_complete),
            ("fail_partial", &self.fail_partial),
            ("fail_network", &self.fail_network),
            ("fail_latency", &self.fail_latency),
            ("restore", &self.restore),
            ("status", &self.status),
            ("health_down", &self.health_down),
            ("health_up", &self.health_up),
        ]
    }
}

/// Checks `[faults]`; errors carry a token to locate in the file.
fn validate_faults(config: &Config) -> Result<(), (Option<String>, String)> {
    let f = &config.faults;
    if !(f.timeout_s.is_finite() && f.timeout_s > 0.0 && f.timeout_s <= 86_400.0) {
        return Err((
            Some("timeout_s".into()),
            format!("faults.timeout_s must be above 0 and at most 86400, got {}", f.timeout_s),
        ));
    }
    if let Some(c) = &f.command {
        for (key, cmd) in c.all() {
            if cmd.as_ref().is_some_and(|s| s.trim().is_empty()) {
                return Err((Some(key.into()), format!("faults.command.{key} is empty; remove it or give a command")));
            }
        }
    }
    match f.effective_injector(config.deployment.kind) {
        InjectorKind::Lab if config.deployment.kind == DeploymentKind::Http => Err((
            Some("lab".into()),
            "faults.injector = \"lab\" needs deployment.kind = \"lab\"; for an http deployment use \"command\"".into(),
        )),
        InjectorKind::Command => {
            let Some(c) = &f.command else {
                return Err((
                    Some("command".into()),
                    "faults.injector = \"command\" needs a [faults.command] table with fail and restore commands"
                        .into(),
                ));
            };
            if c.restore.is_none() {
                return Err((
                    Some("command".into()),
                    "faults.injector = \"command\" needs faults.command.restore, the command that lifts a fault".into(),
                ));
            }
            if xregion_model::fault::FaultKind::ALL.iter().all(|k| c.fail_for(*k).is_none()) {
                return Err((
                    Some("command".into()),
                    "faults.injector = \"command\" needs faults.command.fail (or fail_complete, fail_partial, \
                     fail_network, fail_latency)"
                        .into(),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A configuration error: what is wrong and where. The CLI exits 2 on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `environment` for a variable.
    pub origin: String,
    /// 1-based line and column, when the error has a place in a file.
    pub position: Option<(usize, usize)>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns a byte offset into a 1-based (line, column), counting columns in characters.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Where `needle` first appears in `src`, quoted if possible, as a 1-based (line, column).
fn locate(src: &str, needle: &str) -> Option<(usize, usize)> {
    let quoted = format!("\"{needle}\"");
    src.find(&quoted).or_else(|| src.find(needle)).map(|i| line_col(src, i))
}

/// Loads the file (if any), applies the environment, and validates. `env` is passed in so tests control it.
pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let (mut config, src, origin) = match path {
        Some(p) => {
            let origin = p.display().to_string();
            let src = std::fs::read_to_string(p).map_err(|e| ConfigError {
                origin: origin.clone(),
                position: None,
                message: format!("cannot read the config file: {e}"),
            })?;
            (parse(&src, &origin)?, src, origin)
        }
        None => (Config::default(), String::new(), "defaults".to_string()),
    };
    apply_env(&mut config, env)?;
    validate(&config).map_err(|(needle, message)| ConfigError {
        position: needle.as_deref().and_then(|n| locate(&src, n)),
        origin: origin.clone(),
        message,
    })?;
    Ok(config)
}

/// Parses TOML text; `origin` names the file in errors.
pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str::<Config>(src).map_err(|e| ConfigError {
        origin: origin.to_string(),
        position: e.span().map(|s| line_col(src, s.start)),
        message: e.message().trim_end_matches('.').trim().to_string(),
    })
}

/// Environment variable error.
fn env_error(message: String) -> ConfigError {
    ConfigError { origin: "environment".to_string(), position: None, message }
}

/// Parses a numeric environment variable, naming it in the error.
fn env_number<T: std::str::FromStr>(env: &BTreeMap<String, String>, name: &str) -> Result<Option<T>, ConfigError> {
    match env.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| env_error(format!("{name}={v:?} is not a number; set it to a plain number or unset it"))),
    }
}

/// `us-east-1` becomes `US_EAST_1`, the suffix of `API_ENDPOINT_US_EAST_1`.
pub fn env_suffix(region: &str) -> String {
    region.to_ascii_uppercase().replace('-', "_")
}

/// Applies the specification's environment variables. They override the file.
///
/// The deployment comes from the environment only when an `API_ENDPOINT_<REGION>` variable is set, because
/// `AWS_REGION` alone is often set for unrelated reasons and must not turn a lab run into a remote one.
fn apply_env(config: &mut Config, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if let Some(v) = env_number::<f64>(env, "MAX_LATENCY_MS")? {
        config.targets.max_latency_ms = v;
    }
    if let Some(v) = env_number::<f64>(env, "TARGET_RTO_SECONDS")? {
        config.targets.rto_s = v;
    }
    if let Some(v) = env_number::<f64>(env, "TARGET_RPO_SECONDS")? {
        config.targets.rpo_s = v;
    }
    if let Some(v) = env_number::<u64>(env, "MAX_CONCURRENT_USERS")? {
        config.targets.max_concurrent_users = v;
    }
    for (var, slot) in [
        ("XREGION_TOKEN_READ", &mut config.deployment.auth.read_token),
        ("XREGION_TOKEN_WRITE", &mut config.deployment.auth.write_token),
        ("XREGION_TOKEN_ADMIN", &mut config.deployment.auth.admin_token),
    ] {
        if let Some(v) = env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            *slot = Some(Secret::new(v));
        }
    }
    let endpoints: BTreeMap<String, String> = env
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("API_ENDPOINT_").map(|s| (s.to_string(), v.clone())))
        .filter(|(s, _)| !s.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Ok(());
    }
    // Region names: AWS_REGION first, then AWS_SECONDARY_REGIONS; without them, the endpoint variables' names.
    let mut names: Vec<String> = Vec::new();
    if let Some(primary) = env.get("AWS_REGION").filter(|s| !s.trim().is_empty()) {
        names.push(primary.trim().to_string());
        if let Some(rest) = env.get("AWS_SECONDARY_REGIONS") {
            names.extend(rest.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
        }
    } else if config.deployment.kind == DeploymentKind::Http && !config.deployment.regions.is_empty() {
        names = config.deployment.regions.iter().map(|r| r.name.clone()).collect();
    } else {
        names = endpoints.keys().map(|s| s.to_ascii_lowercase().replace('_', "-")).collect();
    }
    let mut regions = Vec::new();
    for name in names {
        let var = format!("API_ENDPOINT_{}", env_suffix(&name));
        let file_endpoint = config.deployment.regions.iter().find(|r| r.name == name).map(|r| r.endpoint.clone());
        let endpoint = env.get(&var).cloned().or(file_endpoint).ok_or_else(|| {
            env_error(format!("region {name} is listed in AWS_REGION/AWS_SECONDARY_REGIONS but {var} is not set"))
        })?;
        regions.push(RegionEndpoint { name, endpoint });
    }
    config.deployment.kind = DeploymentKind::Http;
    config.deployment.regions = regions;
    Ok(())
}

/// Checks what the types cannot. Errors carry a token to locate in the file and the message.
fn validate(config: &Config) -> Result<(), (Option<String>, String)> {
    let d = &config.deployment;
    if d.request_timeout_ms == 0 || d.connect_timeout_ms == 0 {
        return Err((Some("timeout_ms".into()), "deployment timeouts must be at least 1 ms".into()));
    }
    match d.kind {
        DeploymentKind::Lab => {
            if !d.regions.is_empty() {
                return Err((
                    Some("regions".into()),
                    "deployment.regions is for kind = \"http\"; the lab's regions are set in [lab] regions".into(),
                ));
            }
            config.lab.validate().map_err(|e| {
                let msg = e.to_string();
                // Point at the first quoted token of the message that occurs in the file, if any.
                let token = msg.split('"').skip(1).step_by(2).find(|t| !t.is_empty()).map(str::to_string);
                (token, msg)
            })?;
        }
        DeploymentKind::Http => {
            if d.regions.len() < 2 {
                return Err((
                    Some("http".into()),
                    format!(
                        "an http deployment needs at least 2 regions in [[deployment.regions]], found {}",
                        d.regions.len()
                    ),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for r in &d.regions {
                if !seen.insert(r.name.as_str()) {
                    return Err((Some(r.name.clone()), format!("region \"{}\" is listed twice", r.name)));
                }
                if !(r.endpoint.starts_with("http://") || r.endpoint.starts_with("https://")) {
                    return Err((
                        Some(r.endpoint.clone()),
                        format!("endpoint \"{}\" of region {} must start with http:// or https://", r.endpoint, r.name),
                    ));
                }
            }
        }
    }
    let t = &config.targets;
    for (name, v) in [
        ("replication_p99_ms", t.replication_p99_ms),
        ("max_latency_ms", t.max_latency_ms),
        ("rto_s", t.rto_s),
        ("rpo_s", t.rpo_s),
        ("routing_share_min_pct", t.routing_share_min_pct),
        ("health_detection_s", t.health_detection_s),
        ("error_rate_max_pct", t.error_rate_max_pct),
        ("load_p95_ms", t.load_p95_ms),
        ("cdn_hit_rate_min_pct", t.cdn_hit_rate_min_pct),
        ("cdn_p95_ms", t.cdn_p95_ms),
        ("db_p95_ms", t.db_p95_ms),
        ("pool_acquire_p95_ms", t.pool_acquire_p95_ms),
        ("availability_min_pct", t.availability_min_pct),
        ("failback_s", t.failback_s),
        ("fence_s", t.fence_s.unwrap_or(1.0)),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err((Some(name.into()), format!("targets.{name} must be a positive number, got {v}")));
        }
    }
    let w = &config.checks.write_replicate;
    if w.writes_per_region == 0 || w.rate_per_s.is_nan() || w.rate_per_s <= 0.0 || w.poll_interval_ms == 0 {
        return Err((
            Some("write-replicate".into()),
            "checks.write-replicate needs writes_per_region, rate_per_s and poll_interval_ms above 0".into(),
        ));
    }
    if w.background_writes_per_s.is_nan() || w.background_writes_per_s < 0.0 {
        return Err((Some("background_writes_per_s".into()), "background_writes_per_s must be 0 or more".into()));
    }
    let c = &config.checks.concurrent_writes;
    if c.writers_per_region == 0 || c.keys == 0 || !(0.0..=1.0).contains(&c.delete_ratio) {
        return Err((
            Some("concurrent-writes".into()),
            "checks.concurrent-writes needs writers_per_region and keys above 0 and delete_ratio in 0..=1".into(),
        ));
    }
    let l = &config.checks.load;
    if !(l.time_scale.is_finite() && l.time_scale > 0.0) || l.users == Some(0) {
        return Err((Some("time_scale".into()), "checks.load needs time_scale above 0 and users above 0".into()));
    }
    let f = &config.checks.failover;
    if f.window_ms == 0
        || f.step_ms == 0
        || f.step_ms > f.window_ms
        || !(f.rpo_writes_per_s.is_finite() && f.rpo_writes_per_s > 0.0)
        || !(0.0..=100.0).contains(&f.success_threshold_pct)
        || !(0.0..1.0).contains(&f.partial_error_share)
        || f.canary_rate_per_location.is_some_and(|r| !(r.is_finite() && r > 0.0))
    {
        return Err((
            Some("failover".into()),
            "checks.failover needs window_ms >= step_ms > 0, rpo_writes_per_s and canary_rate_per_location above 0, \
             success_threshold_pct in 0..=100 and partial_error_share in 0..1"
                .into(),
        ));
    }
    if let Some(r) = &f.region
        && config.deployment.kind == DeploymentKind::Http
        && !config.deployment.regions.iter().any(|x| &x.name == r)
    {
        return Err((Some(r.clone()), format!("checks.failover.region {r} is not a configured region")));
    }
    if config.checks.conflict_lww.keys == 0 {
        return Err((Some("conflict-lww".into()), "checks.conflict-lww.keys must be above 0".into()));
    }
    validate_faults(config)?;
    Ok(())
}

/// The process environment as an ordered map.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Default output directory.
pub fn default_out_dir() -> PathBuf {
    PathBuf::from("xregion-out")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Goal: a syntax error is reported with the line and column where it is.
    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse("[targets]\nreplication_p99_ms = = 3\n", "x.toml").unwrap_err();
        assert_eq!(err.origin, "x.toml");
        assert_eq!(err.position.map(|p| p.0), Some(2));
    }

    /// Goal: an unknown key is an error that points at the key.
    #[test]
    fn unknown_key_is_an_error_at_its_place() {
        let err = parse("[targets]\nreplication_p99 = 3\n", "x.toml").unwrap_err();
        assert_eq!(err.position, Some((2, 1)));
        assert!(err.message.contains("replication_p99"), "{}", err.message);
    }

    /// Goal: the specification's variables override targets, and a bad number names the variable.
    #[test]
    fn env_overrides_targets() {
        let mut c = Config::default();
        apply_env(&mut c, &env(&[("TARGET_RTO_SECONDS", "30"), ("MAX_CONCURRENT_USERS", "500")])).unwrap();
        assert_eq!(c.targets.rto_s, 30.0);
        assert_eq!(c.targets.max_concurrent_users, 500);
        let err = apply_env(&mut c, &env(&[("TARGET_RPO_SECONDS", "soon")])).unwrap_err();
        assert!(err.message.contains("TARGET_RPO_SECONDS"));
    }

    /// Goal: endpoint variables define an http deployment, in AWS_REGION order, and a missing one is named.
    #[test]
    fn env_endpoints_define_the_deployment() {
        let mut c = Config::default();
        let e = env(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_SECONDARY_REGIONS", "us-east-1"),
            ("API_ENDPOINT_US_EAST_1", "http://127.0.0.1:1"),
            ("API_ENDPOINT_US_WEST_2", "http://127.0.0.1:2"),
        ]);
        apply_env(&mut c, &e).unwrap();
        assert_eq!(c.deployment.kind, DeploymentKind::Http);
        let names: Vec<_> = c.deployment.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["us-west-2", "us-east-1"]);
        let mut c = Config::default();
        let e = env(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_SECONDARY_REGIONS", "eu-west-1"),
            ("API_ENDPOINT_US_WEST_2", "http://127.0.0.1:2"),
        ]);
        let err = apply_env(&mut c, &e).unwrap_err();
        assert!(err.message.contains("API_ENDPOINT_EU_WEST_1"), "{}", err.message);
    }

    /// Goal: AWS_REGION alone does not turn a lab run into a remote one.
    #[test]
    fn aws_region_alone_keeps_the_lab() {
        let mut c = Config::default();
        apply_env(&mut c, &env(&[("AWS_REGION", "ap-south-1")])).unwrap();
        assert_eq!(c.deployment.kind, DeploymentKind::Lab);
    }

    /// Goal: semantic errors point at the offending token in the file.
    #[test]
    fn semantic_error_is_located() {
        let src = "[deployment]\nkind = \"http\"\n[[deployment.regions]]\nname = \"a\"\nendpoint = \"ftp://x\"\n\
                   [[deployment.regions]]\nname = \"b\"\nendpoint = \"http://x\"\n";
        let dir = std::env::temp_dir().join(format!("xregion-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, src).unwrap();
        let err = load(Some(&path), &BTreeMap::new()).unwrap_err();
        assert_eq!(err.position, Some((5, 12)), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Goal: line_col counts lines and characters from 1.
    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
