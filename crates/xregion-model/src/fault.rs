//! Faults: what xregion asks a fault injector to do to a region, and what the injector reports back.
//!
//! The same types cross three boundaries, so they live here: the lab's control API (`POST /regions/{name}/fail`,
//! `POST /regions/{name}/restore`, `GET /faults`), the node's lab-only route for partial failures
//! (`PUT /lab/fault`), and the environment that the `command` injector gives the user's commands.

use serde::{Deserialize, Serialize};

/// What kind of failure a region suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The region is gone: in the lab its process is SIGKILLed and its replication links refuse connections.
    Complete,
    /// One dependency fails while the region stays up: its store fails writes and/or a share of requests gets
    /// 503; its health reports `degraded`.
    Partial,
    /// The region is cut off from the other regions (and optionally from clients): links blackhole traffic.
    Network,
    /// The region's links gain extra one-way latency (a latency spike), in the direction(s) chosen.
    Latency,
    /// The region's clock runs `clock_offset_ms` off the others' (in the lab: the wall clock its hybrid logical
    /// clock reads; on a real target, for example, a restart under libfaketime). Nothing else changes.
    Clock,
}

impl FaultKind {
    /// Every kind, for help texts and random schedules.
    pub const ALL: [FaultKind; 5] =
        [FaultKind::Complete, FaultKind::Partial, FaultKind::Network, FaultKind::Latency, FaultKind::Clock];

    /// The name used on the command line, in configs and in `XREGION_FAULT_KIND`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Complete => "complete",
            FaultKind::Partial => "partial",
            FaultKind::Network => "network",
            FaultKind::Latency => "latency",
            FaultKind::Clock => "clock",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown fault kind {s:?}; expected complete, partial, network, latency or clock"))
    }
}

/// Which way a network or latency fault acts, seen from the faulted region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// Only what the region sends to its peers (links `region -> peer`).
    Outbound,
    /// Only what the peers send to the region (links `peer -> region`).
    Inbound,
}

impl Direction {
    /// The name used on the command line and in `XREGION_FAULT_DIRECTION`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "both" => Ok(Direction::Both),
            "outbound" => Ok(Direction::Outbound),
            "inbound" => Ok(Direction::Inbound),
            _ => Err(format!("unknown direction {s:?}; expected both, outbound or inbound")),
        }
    }
}

fn default_true() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A fault to inject into one region. Fields that do not apply to the kind are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The kind of failure.
    pub kind: FaultKind,
    /// Restore the region by itself after this long; `None` keeps the fault until `restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Network and latency: which way the fault acts.
    #[serde(default)]
    pub direction: Direction,
    /// Network and latency: only the links to and from these peers; empty means every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Network: cut the region off from clients (the global router) too, not only from its peers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub clients: bool,
    /// Partial: the region's store fails every write (503 `store_unavailable`).
    #[serde(default = "default_true")]
    pub writes_fail: bool,
    /// Partial: this share (0 to 1) of the region's `/v1/*` requests is answered 503 `injected_fault`.
    #[serde(default)]
    pub error_share: f64,
    /// Latency: one-way delay added on top of each link's own.
    #[serde(default)]
    pub extra_delay_ms: f64,
    /// Clock: how far the region's clock is set off, in ms; positive is ahead.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clock_offset_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Largest clock offset a clock fault may set, either way: a day.
pub const CLOCK_OFFSET_MS_MAX: i64 = 86_400_000;

impl FaultSpec {
    /// A fault of `kind` with every option at its default.
    pub fn new(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            duration_ms: None,
            direction: Direction::Both,
            peers: Vec::new(),
            clients: false,
            writes_fail: true,
            error_share: 0.0,
            extra_delay_ms: 0.0,
            clock_offset_ms: 0,
        }
    }

    /// Why the spec is invalid, or `None`.
    pub fn problem(&self) -> Option<String> {
        if !(self.error_share.is_finite() && (0.0..=1.0).contains(&self.error_share)) {
            return Some(format!("error_share {} must be between 0 and 1", self.error_share));
        }
        if !(self.extra_delay_ms.is_finite() && (0.0..=3_600_000.0).contains(&self.extra_delay_ms)) {
            return Some(format!("extra_delay_ms {} must be between 0 and 3600000", self.extra_delay_ms));
        }
        if self.kind == FaultKind::Partial && !self.writes_fail && self.error_share == 0.0 {
            return Some("a partial fault needs writes_fail or an error_share above 0".into());
        }
        if self.kind == FaultKind::Latency && self.extra_delay_ms == 0.0 {
            return Some("a latency fault needs extra_delay_ms above 0".into());
        }
        if self.clock_offset_ms.abs() > CLOCK_OFFSET_MS_MAX {
            return Some(format!(
                "clock_offset_ms {} is beyond the {CLOCK_OFFSET_MS_MAX} ms (a day) either way a skew may have",
                self.clock_offset_ms
            ));
        }
        if self.kind == FaultKind::Clock && self.clock_offset_ms == 0 {
            return Some("a clock fault needs a clock_offset_ms other than 0".into());
        }
        None
    }

    /// One line for logs and reports, for example `network (outbound, to eu-west-1) for 10 s`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.kind {
            FaultKind::Complete => {}
            FaultKind::Clock => parts.push(format!("{:+} ms", self.clock_offset_ms)),
            FaultKind::Partial => {
                if self.writes_fail {
                    parts.push("store fails writes".to_string());
                }
                if self.error_share > 0.0 {
                    parts.push(format!("{:.0}% of requests get 503", self.error_share * 100.0));
                }
            }
            FaultKind::Network | FaultKind::Latency => {
                if self.kind == FaultKind::Latency {
                    parts.push(format!("+{} ms", self.extra_delay_ms));
                }
                parts.push(self.direction.name().to_string());
                if !self.peers.is_empty() {
                    parts.push(format!("peers {}", self.peers.join(", ")));
                }
                if self.clients {
                    parts.push("clients cut off".into());
                }
            }
        }
        let mut s = self.kind.name().to_string();
        if !parts.is_empty() {
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        if let Some(ms) = self.duration_ms {
            s.push_str(&format!(" for {:.1} s", ms as f64 / 1000.0));
        }
        s
    }
}

/// A fault in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// The faulted region.
    pub region: String,
    /// What was asked.
    pub spec: FaultSpec,
    /// When it was injected, in ms since the Unix epoch.
    pub since_ms: u64,
    /// When it will be restored by itself, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// One region in `GET /faults` and `xregion status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionFaultStatus {
    /// Region name.
    pub name: String,
    /// Probe-contract base URL.
    pub endpoint: String,
    /// Process id, when the injector knows one and it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `ok`, `degraded`, `fenced`, `down`, or why the health check failed.
    pub health: String,
    /// The fault in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<ActiveFault>,
}

/// `GET /faults`: every region and its fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    /// Regions in configuration order.
    pub regions: Vec<RegionFaultStatus>,
}

/// `PUT /lab/fault` on a lab node (and `GET /lab/fault`): the partial failure in force. All off clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFault {
    /// The store fails every write: `PUT` and `DELETE` get 503 `store_unavailable`.
    #[serde(default)]
    pub writes_fail: bool,
    /// This share (0 to 1) of `/v1/*` requests gets 503 `injected_fault`, spread evenly.
    #[serde(default)]
    pub error_share: f64,
}

impl NodeFault {
    /// Whether any fault is set.
    pub fn active(&self) -> bool {
        self.writes_fail || self.error_share > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a minimal JSON spec takes the documented defaults, and bad shares are named.
    #[test]
    fn spec_defaults_and_problems() {
        let s: FaultSpec = serde_json::from_str(r#"{"kind":"partial"}"#).unwrap();
        assert_eq!(s, FaultSpec::new(FaultKind::Partial));
        assert!(s.problem().is_none());
        let bad = FaultSpec { error_share: 1.5, ..FaultSpec::new(FaultKind::Partial) };
        assert!(bad.problem().unwrap().contains("error_share"));
        let lat = FaultSpec::new(FaultKind::Latency);
        assert!(lat.problem().unwrap().contains("extra_delay_ms"));
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"partial","bogus":1}"#).is_err());
        assert_eq!("network".parse::<FaultKind>().unwrap(), FaultKind::Network);
        assert!("nope".parse::<FaultKind>().unwrap_err().contains("complete"));
        let n = FaultSpec {
            direction: Direction::Outbound,
            duration_ms: Some(10_000),
            ..FaultSpec::new(FaultKind::Network)
        };
        assert_eq!(n.describe(), "network (outbound) for 10.0 s");
        let c: FaultSpec = serde_json::from_str(r#"{"kind":"clock","clock_offset_ms":-1500}"#).unwrap();
        assert_eq!(c.describe(), "clock (-1500 ms)");
        assert!(c.problem().is_none());
        assert!(FaultSpec::new(FaultKind::Clock).problem().unwrap().contains("clock_offset_ms"));
        let far = FaultSpec { clock_offset_ms: CLOCK_OFFSET_MS_MAX + 1, ..c };
        assert!(far.problem().unwrap().contains("a day"));
    }
}
