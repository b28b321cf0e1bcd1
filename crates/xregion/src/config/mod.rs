//! The configuration: a TOML file plus the specification's environment variables, turned into one explicit
//! `Config` that is passed down (never global state).
//!
//! The file describes the deployment (the embedded lab by default, or regions reached over HTTP), the targets
//! (the promises, with the specification's figures as defaults) and the tuning of each check. Unknown keys are
//! errors, and every error points at file, line and column so that the user can fix it without guessing.
//!
//! Each concept has its own module: `deployment`, `checks` (with the targets) and `faults` for the file's tables,
//! `env` for the environment variables; this one loads, parses, validates and locates errors.

mod checks;
mod deployment;
mod env;
mod faults;

pub use checks::{
    Checks, ConcurrentWrites, ConflictLww, Failover, Load, LwwRealtime, Observe, Profile, Targets, WriteReplicate,
};
pub use deployment::{Auth, Deployment, DeploymentKind, RegionEndpoint, Secret, Security, Tls, Traffic};
pub use env::env_suffix;
pub use faults::{FaultCommands, Faults, InjectorKind, Stop};

use env::apply_env;
use faults::validate_faults;
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
    /// Conditions that abort an injected fault early (`[stop]`).
    pub stop: Stop,
    /// Business journeys (`[e2e]`).
    pub e2e: E2e,
    /// The journey file `e2e.journeys` names, loaded and validated.
    #[serde(skip)]
    pub journeys: Option<std::sync::Arc<crate::journey::Loaded>>,
    /// The libpq variables (`PG*`), etcdctl's (`ETCDCTL_*`) and `XREGION_DB_KIND`, which complete a region's `database` setting.
    #[serde(skip)]
    pub db_env: BTreeMap<String, String>,
}

/// `[e2e]`: the business journeys the `cross-region.e2e.*` checks run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E2e {
    /// The journey file (`docs/journeys.md`), relative to the config file.
    pub journeys: Option<PathBuf>,
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
    if let Some(file) = &config.e2e.journeys {
        let file = match path.and_then(Path::parent) {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.clone(),
        };
        config.journeys = Some(std::sync::Arc::new(load_journeys(&file)?));
    } else if config.deployment.kind == DeploymentKind::Lab {
        let builtin = Path::new(LAB_JOURNEYS_NAME);
        config.journeys = Some(std::sync::Arc::new(parse_journeys(LAB_JOURNEYS, builtin)?));
    }
    let names = &config.checks.load.journeys;
    if !names.is_empty() {
        let chosen = match &config.journeys {
            Some(loaded) => {
                loaded.file.for_load(names).map(|_| ()).map_err(|e| format!("{}: {e}", loaded.path.display()))
            }
            None => Err("checks.load.journeys needs a journey file: set [e2e] journeys".to_string()),
        };
        chosen.map_err(|message| ConfigError {
            position: names
                .iter()
                .find(|n| config.journeys.as_ref().and_then(|l| l.file.journey(n)).is_none_or(|j| j.setup))
                .and_then(|n| locate(&src, n))
                .or_else(|| locate(&src, "journeys")),
            origin: origin.clone(),
            message: format!("checks.load.journeys: {message}"),
        })?;
    }
    Ok(config)
}

/// The lab's journeys (`crates/xregion/journeys/lab.toml`), run against the lab's shop when `[e2e] journeys` is
/// not set.
pub const LAB_JOURNEYS: &str = include_str!("../../journeys/lab.toml");

/// What reports call the lab's journey file.
pub const LAB_JOURNEYS_NAME: &str = "crates/xregion/journeys/lab.toml (built in)";

/// Reads, parses and validates a journey file; errors point at its line and column.
pub fn load_journeys(path: &Path) -> Result<crate::journey::Loaded, ConfigError> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        position: None,
        message: format!("cannot read the journey file: {e}"),
    })?;
    parse_journeys(&src, path)
}

/// Parses and validates the text of the journey file at `path`.
fn parse_journeys(src: &str, path: &Path) -> Result<crate::journey::Loaded, ConfigError> {
    let origin = path.display().to_string();
    let src = src.to_string();
    let file: crate::journey::JourneyFile = toml::from_str(&src).map_err(|e| ConfigError {
        origin: origin.clone(),
        position: e.span().map(|s| line_col(&src, s.start)),
        message: e.message().trim_end_matches('.').trim().to_string(),
    })?;
    file.validate().map_err(|(needle, message)| ConfigError {
        position: locate(&src, &needle),
        origin: origin.clone(),
        message,
    })?;
    Ok(crate::journey::Loaded { path: path.to_path_buf(), file })
}

/// Parses TOML text; `origin` names the file in errors.
pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str::<Config>(src).map_err(|e| ConfigError {
        origin: origin.to_string(),
        position: e.span().map(|s| line_col(src, s.start)),
        message: e.message().trim_end_matches('.').trim().to_string(),
    })
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
                if let Some(app) = &r.app
                    && !(app.starts_with("http://") || app.starts_with("https://"))
                {
                    return Err((
                        Some(app.clone()),
                        format!("app \"{app}\" of region {} must start with http:// or https://", r.name),
                    ));
                }
                if r.endpoint.is_empty() {
                    match &r.database {
                        None if r.app.is_some() => {}
                        None => {
                            return Err((
                                Some(r.name.clone()),
                                format!("region {} has neither an endpoint, a database nor an app", r.name),
                            ));
                        }
                        Some(db) => {
                            crate::db::settings::parse(db, &config.db_env)
                                .map_err(|e| (Some(db.clone()), format!("database of region {}: {e}", r.name)))?;
                        }
                    }
                } else if !(r.endpoint.starts_with("http://") || r.endpoint.starts_with("https://")) {
                    return Err((
                        Some(r.endpoint.clone()),
                        format!("endpoint \"{}\" of region {} must start with http:// or https://", r.endpoint, r.name),
                    ));
                }
            }
        }
    }
    if let Some(t) = &d.traffic {
        for (name, p) in [("probe_path", &t.probe_path), ("cdn_path", &t.cdn_path)] {
            if !p.starts_with('/') {
                return Err((
                    Some(p.clone()),
                    format!("deployment.traffic.{name} must be a path that starts with /, got \"{p}\""),
                ));
            }
        }
    }
    config.stop.validate()?;
    let t = &config.targets;
    for (name, v) in [
        ("replication_p99_ms", t.replication_p99_ms),
        ("max_latency_ms", t.max_latency_ms),
        ("rto_s", t.rto_s),
        ("rpo_s", t.rpo_s),
        ("routing_share_min_pct", t.routing_share_min_pct),
        ("routing_p95_ms", t.routing_p95_ms),
        ("health_detection_s", t.health_detection_s),
        ("error_rate_max_pct", t.error_rate_max_pct),
        ("load_p95_ms", t.load_p95_ms),
        ("cdn_hit_rate_min_pct", t.cdn_hit_rate_min_pct),
        ("cdn_p95_ms", t.cdn_p95_ms),
        ("db_p95_ms", t.db_p95_ms),
        ("pool_acquire_p95_ms", t.pool_acquire_p95_ms),
        ("pool_reuse_min_pct", t.pool_reuse_min_pct),
        ("availability_min_pct", t.availability_min_pct),
        ("steady_availability_min_pct", t.steady_availability_min_pct),
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
    let r = &config.checks.lww_realtime;
    let parts = [r.clock_resolution_ms, r.measuring_tolerance_ms];
    if r.keys == 0
        || !parts.iter().all(|v| v.is_finite() && *v >= 0.0)
        || parts.iter().sum::<f64>() > LwwRealtime::TOLERANCE_MS_MAX
    {
        return Err((
            Some("lww-realtime".into()),
            format!(
                "checks.lww-realtime needs keys above 0, and clock_resolution_ms and measuring_tolerance_ms of 0 or \
                 more that add up to at most {} ms",
                LwwRealtime::TOLERANCE_MS_MAX
            ),
        ));
    }
    if r.clock_fault_ms.abs() > xregion_model::fault::CLOCK_OFFSET_MS_MAX {
        return Err((
            Some("clock_fault_ms".into()),
            format!(
                "checks.lww-realtime.clock_fault_ms {} is beyond the {} ms (a day) either way a skew may have",
                r.clock_fault_ms,
                xregion_model::fault::CLOCK_OFFSET_MS_MAX
            ),
        ));
    }
    if let Some(region) = &r.clock_fault_region
        && config.deployment.kind == DeploymentKind::Http
        && !config.deployment.regions.iter().any(|x| &x.name == region)
    {
        return Err((
            Some(region.clone()),
            format!("checks.lww-realtime.clock_fault_region {region} is not a configured region"),
        ));
    }
    let s = &config.checks.session_guarantees;
    if s.sessions == 0 || s.writes == 0 || s.readers == 0 || s.reads < 2 || s.write_interval_ms == 0 {
        return Err((
            Some("session-guarantees".into()),
            "checks.session-guarantees needs sessions, writes, readers and write_interval_ms above 0, and reads of 2 \
             or more"
                .into(),
        ));
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

    /// Goal: the lww-realtime tolerance is its two stated parts, each 0 or more and bounded together, and a
    /// mistake names the table.
    #[test]
    fn lww_realtime_tolerance_is_validated() {
        let c = parse("[checks.lww-realtime]\nclock_resolution_ms = 0.5\n", "x.toml").unwrap();
        assert!((c.checks.lww_realtime.tolerance().as_secs_f64() - 0.0015).abs() < 1e-9);
        assert!(validate(&c).is_ok());
        assert_eq!(Config::default().checks.lww_realtime.tolerance(), std::time::Duration::from_millis(2));
        for bad in ["clock_resolution_ms = -1", "measuring_tolerance_ms = 20000", "keys = 0"] {
            let c = parse(&format!("[checks.lww-realtime]\n{bad}\n"), "x.toml").unwrap();
            assert!(validate(&c).unwrap_err().1.contains("checks.lww-realtime"), "{bad}");
        }
    }

    /// Goal: line_col counts lines and characters from 1.
    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
