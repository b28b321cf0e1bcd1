//! What `LabConfig::validate` checks, and the errors it gives: each says which key is wrong and what to do.

use super::{LabConfig, REGIONS_MAX, builtin_rtt_ms};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Largest clock offset a region may be given, either way: a day. A skew is a clock that is off by a little; beyond
/// this the offset is a mistake (seconds typed as milliseconds, say), and the stamps would stop looking like times.
pub const CLOCK_OFFSET_MS_MAX: u64 = 86_400_000;

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
    /// A routing or CDN key names a region or location that does not exist.
    #[error("{key} names unknown {kind} {name:?}; known {kind}s are {known}")]
    UnknownName {
        /// The config key, for example `lab.router.weights`.
        key: String,
        /// `region` or `location`.
        kind: &'static str,
        /// The unknown name.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A routing or CDN value that cannot be used.
    #[error("{key}: {message}")]
    Invalid {
        /// The config key.
        key: String,
        /// What is wrong and what to do.
        message: String,
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
                if !pairs.contains(&pair) && builtin_rtt_ms(a, b).is_none() {
                    return Err(LabConfigError::MissingPair { a: a.clone(), b: b.clone() });
                }
            }
        }
        if self.node.max_in_flight == 0 {
            return invalid("lab.node.max_in_flight", "must be at least 1");
        }
        if let Some(v) = self.defects.tls_min_version.as_deref()
            && v != "1.2"
            && v != "1.3"
        {
            return invalid("lab.defects.tls_min_version", &format!("{v:?} is not \"1.2\" or \"1.3\""));
        }
        for (region, offset_ms) in &self.defects.clock_offset_ms {
            if !self.regions.contains(region) {
                return Err(LabConfigError::UnknownName {
                    key: "lab.defects.clock_offset_ms".into(),
                    kind: "region",
                    name: region.clone(),
                    known: self.regions.join(", "),
                });
            }
            if offset_ms.unsigned_abs() > CLOCK_OFFSET_MS_MAX {
                return invalid(
                    &format!("lab.defects.clock_offset_ms.{region}"),
                    &format!(
                        "{offset_ms} ms is beyond the {CLOCK_OFFSET_MS_MAX} ms (one day) either way a skew may have"
                    ),
                );
            }
        }
        for (tag, regions) in self.residency.iter().flatten() {
            if let Some(r) = regions.iter().find(|r| !self.regions.contains(r)) {
                return invalid(&format!("lab.residency.{tag}"), &format!("{r} is not a lab region"));
            }
        }
        if self.node.heartbeat_interval_ms == 0 {
            return invalid("lab.node.heartbeat_interval_ms", "must be at least 1");
        }
        if self.node.contact_timeout_ms <= self.node.heartbeat_interval_ms {
            return invalid("lab.node.contact_timeout_ms", "must be longer than lab.node.heartbeat_interval_ms");
        }
        if let Some(ip) = self.router.ip
            && !ip.is_loopback()
        {
            return invalid("lab.router.ip", &format!("{ip} is not a loopback address (for example 127.0.1.254)"));
        }
        self.routing().map(|_| ())
    }
}

/// An `Invalid` error for `key`.
pub(super) fn invalid<T>(key: &str, message: &str) -> Result<T, LabConfigError> {
    Err(LabConfigError::Invalid { key: key.to_string(), message: message.to_string() })
}

/// A `Negative` error unless `value` is finite and not negative.
pub(super) fn check_non_negative(field: &str, value: f64) -> Result<(), LabConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(LabConfigError::Negative { field: field.to_string(), value })
    }
}
