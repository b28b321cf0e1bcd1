//! `[faults]`: which fault injector a run uses and, for a real deployment, the shell commands that inject and lift
//! faults. The injectors themselves are `crate::faults`; this is their configuration and its validation.

use super::Config;
use super::deployment::DeploymentKind;
use serde::{Deserialize, Serialize};

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

/// `[stop]`: conditions that abort an injected fault early, as AWS FIS stop conditions do. When one holds, the
/// fault is lifted at once (the restore command runs) and the scenario's checks are `error: stopped by
/// condition …`. None is set by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stop {
    /// Abort when the canaries' error rate, in percent, stays above this over `error_rate_for_s`.
    pub error_rate_pct: Option<f64>,
    /// The window the error rate is taken over, in seconds.
    pub error_rate_for_s: f64,
    /// Abort when this URL fails to answer 2xx `health_failures` times in a row (it is asked once a second).
    pub health_url: Option<String>,
    /// Consecutive failures of `health_url` that abort the fault.
    pub health_failures: u32,
}

impl Default for Stop {
    fn default() -> Self {
        Stop { error_rate_pct: None, error_rate_for_s: 10.0, health_url: None, health_failures: 3 }
    }
}

impl Stop {
    /// Whether any condition is set.
    pub fn any(&self) -> bool {
        self.error_rate_pct.is_some() || self.health_url.is_some()
    }

    /// What is wrong with the table, as (token to locate, message).
    pub fn validate(&self) -> Result<(), (Option<String>, String)> {
        if self.error_rate_pct.is_some_and(|p| !(p.is_finite() && p > 0.0 && p <= 100.0)) {
            return Err((Some("error_rate_pct".into()), "stop.error_rate_pct must be in (0, 100]".into()));
        }
        if !(self.error_rate_for_s.is_finite() && self.error_rate_for_s > 0.0) {
            return Err((Some("error_rate_for_s".into()), "stop.error_rate_for_s must be above 0".into()));
        }
        if let Some(u) = &self.health_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err((Some(u.clone()), format!("stop.health_url \"{u}\" must start with http:// or https://")));
        }
        if self.health_failures == 0 {
            return Err((Some("health_failures".into()), "stop.health_failures must be at least 1".into()));
        }
        Ok(())
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
    /// Sets a region's clock off (`XREGION_FAULT_CLOCK_OFFSET_MS`). `fail` does not stand in for it: a command
    /// written before clock faults existed would do something else.
    pub fail_clock: Option<String>,
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
    /// The command that injects `kind`: its own, else `fail` (except for clock faults, which need their own).
    pub fn fail_for(&self, kind: xregion_model::fault::FaultKind) -> Option<&str> {
        use xregion_model::fault::FaultKind;
        let own = match kind {
            FaultKind::Complete => &self.fail_complete,
            FaultKind::Partial => &self.fail_partial,
            FaultKind::Network => &self.fail_network,
            FaultKind::Latency => &self.fail_latency,
            FaultKind::Clock => return self.fail_clock.as_deref(),
        };
        own.as_deref().or(self.fail.as_deref())
    }

    /// Every command that is set, with its key, for validation.
    fn all(&self) -> [(&'static str, &Option<String>); 10] {
        [
            ("fail", &self.fail),
            ("fail_complete", &self.fail_complete),
            ("fail_partial", &self.fail_partial),
            ("fail_network", &self.fail_network),
            ("fail_latency", &self.fail_latency),
            ("fail_clock", &self.fail_clock),
            ("restore", &self.restore),
            ("status", &self.status),
            ("health_down", &self.health_down),
            ("health_up", &self.health_up),
        ]
    }
}

/// Checks `[faults]`; errors carry a token to locate in the file.
pub(super) fn validate_faults(config: &Config) -> Result<(), (Option<String>, String)> {
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
                     fail_network, fail_latency, fail_clock)"
                        .into(),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
