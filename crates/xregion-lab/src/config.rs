//! The lab's configuration: the `[lab]` table of xregion's TOML config.
//!
//! `LabConfig` is plain data with defaults that give a realistic 3-region deployment (us-east-1, us-west-2,
//! eu-west-1 with round-trip times like the real ones). `validate` checks everything a user can get wrong and
//! says what to do; the supervisor refuses to start a lab from an invalid config.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// Most regions a lab may have: every region is an OS process with a full mesh of replication links, so the
/// link count grows with the square of this.
pub const REGIONS_MAX: usize = 16;

/// The `[lab]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabConfig {
    /// Region names; one node process per region, in this order (region i listens on `base_addr + i`).
    pub regions: Vec<String>,
    /// Loopback address of the first region; each region gets its own address so logs and failures look like
    /// a real network.
    pub base_addr: IpAddr,
    /// Lab data directory; the CLI supplies one when absent.
    pub dir: Option<PathBuf>,
    /// The emulated wide-area network between regions.
    pub wan: WanConfig,
    /// Deliberate defects, so that every check can be shown to fail.
    pub defects: Defects,
}

/// The emulated WAN: latency between every pair of regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WanConfig {
    /// Extra delay added to each chunk, uniform in `[0, jitter_ms)`, never reordering a connection's bytes.
    pub jitter_ms: f64,
    /// Round-trip time per unordered region pair, keyed `"a/b"`; the one-way delay is half of it.
    pub rtt_ms: BTreeMap<String, f64>,
}

/// Defects the lab can be told to have. All are off by default; later work adds knobs here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defects {
    /// The receiver holds every replicated batch this long before applying it.
    pub replication_delay_ms: u64,
    /// The receiver applies remote entries in arrival order instead of by last-writer-wins.
    pub lww_arrival_order: bool,
    /// The receiver silently skips one in this many replicated entries (but acknowledges it); 0 = never.
    pub drop_one_in: u64,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            regions: ["us-east-1", "us-west-2", "eu-west-1"].iter().map(|s| s.to_string()).collect(),
            base_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)),
            dir: None,
            wan: WanConfig::default(),
            defects: Defects::default(),
        }
    }
}

impl Default for WanConfig {
    fn default() -> Self {
        let rtt_ms = [("us-east-1/us-west-2", 65.0), ("us-east-1/eu-west-1", 70.0), ("us-west-2/eu-west-1", 125.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        WanConfig { jitter_ms: 1.0, rtt_ms }
    }
}

/// Why a lab config cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabConfigError {
    /// Fewer than two regions.
    #[error("lab.regions has {count} region(s); a multi-region lab needs at least 2")]
    TooFewRegions {
        /// How many were given.
        count: usize,
    },
    /// More than `REGIONS_MAX` regions.
    #[error("lab.regions has {count} regions; the lab supports at most {REGIONS_MAX}")]
    TooManyRegions {
        /// How many were given.
        count: usize,
    },
    /// A region name appears twice.
    #[error("lab.regions lists {name:?} twice; region names must be unique")]
    DuplicateRegion {
        /// The repeated name.
        name: String,
    },
    /// A region name that cannot be used in paths, URLs and keys.
    #[error("lab.regions has the name {name:?}; use 1 to 64 characters from a-z A-Z 0-9 . _ -")]
    BadRegionName {
        /// The name.
        name: String,
    },
    /// The base address is not loopback.
    #[error("lab.base_addr is {addr}; the lab only runs on loopback addresses (for example 127.0.1.1)")]
    NotLoopback {
        /// The address given.
        addr: IpAddr,
    },
    /// Region addresses would run past the end of the loopback range.
    #[error("lab.base_addr {addr} leaves no room for {count} consecutive loopback addresses")]
    AddressRange {
        /// The address given.
        addr: IpAddr,
        /// How many regions need an address.
        count: usize,
    },
    /// An rtt key is not `a/b`.
    #[error("lab.wan.rtt_ms key {key:?} is not of the form \"region-a/region-b\"")]
    BadRttKey {
        /// The key.
        key: String,
    },
    /// An rtt key names a region that is not in `regions`.
    #[error("lab.wan.rtt_ms key {key:?} names unknown region {region:?}; known regions are {known}")]
    UnknownRegion {
        /// The key.
        key: String,
        /// The unknown region.
        region: String,
        /// The known regions, comma-separated.
        known: String,
    },
    /// Two keys give the same pair.
    #[error("lab.wan.rtt_ms gives the pair {a}/{b} twice (keys are unordered pairs)")]
    DuplicatePair {
        /// One region.
        a: String,
        /// The other region.
        b: String,
    },
    /// A region pair has no rtt.
    #[error("lab.wan.rtt_ms has no entry for {a}/{b}; add \"{a}/{b}\" = <round trip in ms> (0 for none)")]
    MissingPair {
        /// One region.
        a: String,
        /// The other region.
        b: String,
    },
    /// A number that must be finite and not negative.
    #[error("{field} is {value}; it must be a finite number >= 0")]
    Negative {
        /// The field.
        field: String,
        /// The value.
        value: f64,
    },
}

impl LabConfig {
    /// Checks everything a user can get wrong; the first problem found is returned.
    pub fn validate(&self) -> Result<(), LabConfigError> {
        let count = self.regions.len();
        if count < 2 {
            return Err(LabConfigError::TooFewRegions { count });
        }
        if count > REGIONS_MAX {
            return Err(LabConfigError::TooManyRegions { count });
        }
        let mut seen = BTreeSet::new();
        for name in &self.regions {
            let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
                return Err(LabConfigError::BadRegionName { name: name.clone() });
            }
            if !seen.insert(name.as_str()) {
                return Err(LabConfigError::DuplicateRegion { name: name.clone() });
            }
        }
        if !self.base_addr.is_loopback() {
            return Err(LabConfigError::NotLoopback { addr: self.base_addr });
        }
        for i in 0..count {
            if self.region_ip(i).is_none() {
                return Err(LabConfigError::AddressRange { addr: self.base_addr, count });
            }
        }
        check_non_negative("lab.wan.jitter_ms", self.wan.jitter_ms)?;
        let mut pairs = BTreeSet::new();
        for (key, rtt) in &self.wan.rtt_ms {
            let Some((a, b)) = key.split_once('/') else {
                return Err(LabConfigError::BadRttKey { key: key.clone() });
            };
            if a == b {
                return Err(LabConfigError::BadRttKey { key: key.clone() });
            }
            for r in [a, b] {
                if !seen.contains(r) {
                    return Err(LabConfigError::UnknownRegion {
                        key: key.clone(),
                        region: r.to_string(),
                        known: self.regions.join(", "),
                    });
                }
            }
            check_non_negative(&format!("lab.wan.rtt_ms.\"{key}\""), *rtt)?;
            let pair = if a < b { (a, b) } else { (b, a) };
            if !pairs.insert(pair) {
                return Err(LabConfigError::DuplicatePair { a: a.to_string(), b: b.to_string() });
            }
        }
        for (i, a) in self.regions.iter().enumerate() {
            for b in &self.regions[i + 1..] {
                let pair = if a < b { (a.as_str(), b.as_str()) } else { (b.as_str(), a.as_str()) };
                if !pairs.contains(&pair) {
                    return Err(LabConfigError::MissingPair { a: a.clone(), b: b.clone() });
                }
            }
        }
        Ok(())
    }

    /// The address of region number `index` (`base_addr + index`), or `None` past the end of the range.
    pub fn region_ip(&self, index: usize) -> Option<IpAddr> {
        let index = u32::try_from(index).ok()?;
        match self.base_addr {
            IpAddr::V4(v4) => {
                let ip = u32::from(v4).checked_add(index)?;
                let ip = Ipv4Addr::from(ip);
                ip.is_loopback().then_some(IpAddr::V4(ip))
            }
            // IPv6 has a single loopback address, so every region shares it (ports still differ).
            IpAddr::V6(v6) => Some(IpAddr::V6(v6)),
        }
    }

    /// Round-trip time between two regions in milliseconds, whichever order the key uses; 0 when absent.
    pub fn rtt_ms(&self, a: &str, b: &str) -> f64 {
        self.wan
            .rtt_ms
            .get(&format!("{a}/{b}"))
            .or_else(|| self.wan.rtt_ms.get(&format!("{b}/{a}")))
            .copied()
            .unwrap_or(0.0)
    }
}

fn check_non_negative(field: &str, value: f64) -> Result<(), LabConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(LabConfigError::Negative { field: field.to_string(), value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the defaults describe a valid 3-region lab.
    #[test]
    fn default_is_valid() {
        let cfg = LabConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.rtt_ms("us-west-2", "us-east-1"), 65.0);
        assert_eq!(cfg.region_ip(2), Some("127.0.1.3".parse().unwrap()));
    }

    /// Goal: every user mistake gets its own clear error. Method: break a default config one way at a time.
    #[test]
    fn validation_errors_name_the_problem() {
        let mut c = LabConfig::default();
        c.wan.rtt_ms.insert("us-east-1/ap-south-1".into(), 200.0);
        let e = c.validate().unwrap_err();
        assert!(matches!(&e, LabConfigError::UnknownRegion { region, .. } if region == "ap-south-1"));
        let msg = e.to_string();
        assert!(msg.contains("us-east-1/ap-south-1") && msg.contains("us-east-1, us-west-2, eu-west-1"), "{msg}");

        let mut c = LabConfig::default();
        c.wan.rtt_ms.remove("us-west-2/eu-west-1");
        assert!(matches!(c.validate(), Err(LabConfigError::MissingPair { .. })));

        let mut c = LabConfig::default();
        c.wan.rtt_ms.insert("us-east-1/us-west-2".into(), -1.0);
        assert!(matches!(c.validate(), Err(LabConfigError::Negative { .. })));

        let mut c = LabConfig::default();
        c.wan.jitter_ms = -0.5;
        assert!(matches!(c.validate(), Err(LabConfigError::Negative { .. })));

        let mut c = LabConfig::default();
        c.wan.rtt_ms.insert("us-west-2/us-east-1".into(), 60.0);
        assert!(matches!(c.validate(), Err(LabConfigError::DuplicatePair { .. })));

        let mut c = LabConfig::default();
        c.regions.push("us-east-1".into());
        assert!(matches!(c.validate(), Err(LabConfigError::DuplicateRegion { .. })));

        let mut c = LabConfig::default();
        c.regions.truncate(1);
        c.wan.rtt_ms.clear();
        assert!(matches!(c.validate(), Err(LabConfigError::TooFewRegions { count: 1 })));

        let c = LabConfig { base_addr: "10.0.0.1".parse().unwrap(), ..LabConfig::default() };
        assert!(matches!(c.validate(), Err(LabConfigError::NotLoopback { .. })));

        let c = LabConfig { base_addr: "127.255.255.254".parse().unwrap(), ..LabConfig::default() };
        assert!(matches!(c.validate(), Err(LabConfigError::AddressRange { .. })));

        let mut c = LabConfig::default();
        c.wan.rtt_ms.insert("us-east-1".into(), 1.0);
        assert!(matches!(c.validate(), Err(LabConfigError::BadRttKey { .. })));
    }

    /// Goal: the table parses from JSON-like data with defaults and rejects unknown fields.
    #[test]
    fn serde_defaults_and_unknown_fields() {
        let c: LabConfig = serde_json::from_str(r#"{"defects":{"drop_one_in":5}}"#).unwrap();
        assert_eq!(c.defects.drop_one_in, 5);
        assert_eq!(c.regions.len(), 3);
        assert!(serde_json::from_str::<LabConfig>(r#"{"regoins":[]}"#).is_err());
        assert!(serde_json::from_str::<LabConfig>(r#"{"defects":{"nope":1}}"#).is_err());
    }
}
