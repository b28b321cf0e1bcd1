//! The routing tables with every default filled in and every name checked (`LabConfig::routing`): the client
//! locations and their latencies (a built-in table of public figures for the default regions), the geolocation,
//! weighted and failover records, the capacity per region, and the CDN edges' latencies. The router and
//! `TrafficInfo` use them.

use super::LabConfig;
use super::validate::{LabConfigError, check_non_negative, invalid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Built-in client locations: one-way latency in ms to each default region (about half of public round-trip
/// figures between these cities and the AWS regions: us-east-1 is northern Virginia, us-west-2 Oregon,
/// eu-west-1 Ireland).
pub const BUILTIN_LOCATIONS: &[(&str, [(&str, f64); 3])] = &[
    ("new-york", [("us-east-1", 4.0), ("us-west-2", 35.0), ("eu-west-1", 38.0)]),
    ("chicago", [("us-east-1", 10.0), ("us-west-2", 25.0), ("eu-west-1", 48.0)]),
    ("seattle", [("us-east-1", 33.0), ("us-west-2", 4.0), ("eu-west-1", 70.0)]),
    ("san-francisco", [("us-east-1", 35.0), ("us-west-2", 10.0), ("eu-west-1", 72.0)]),
    ("london", [("us-east-1", 38.0), ("us-west-2", 68.0), ("eu-west-1", 6.0)]),
    ("dublin", [("us-east-1", 36.0), ("us-west-2", 66.0), ("eu-west-1", 2.0)]),
    ("frankfurt", [("us-east-1", 45.0), ("us-west-2", 75.0), ("eu-west-1", 12.0)]),
];

/// The routing tables with every default filled in and every name checked: what the router and
/// `TrafficInfo` use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// Location -> region -> one-way ms; every location has every region.
    pub locations: BTreeMap<String, BTreeMap<String, f64>>,
    /// Location of requests without the header.
    pub default_location: String,
    /// Client networks and their locations, longest prefix first: where a request without the header is.
    pub client_networks: Vec<(ipnet::IpNet, String)>,
    /// Location -> region for the geolocation record (every location has an entry).
    pub geolocation: BTreeMap<String, String>,
    /// Region -> weight (every region has an entry).
    pub weights: BTreeMap<String, u32>,
    /// Regions in failover order.
    pub failover_order: Vec<String>,
    /// Region -> most requests in flight (every region has an entry).
    pub capacity: BTreeMap<String, u32>,
    /// Location -> its nearest region (lowest one-way latency; ties go to the earlier region in config order).
    pub nearest: BTreeMap<String, String>,
    /// Location -> one-way ms to its CDN edge.
    pub edge_one_way_ms: BTreeMap<String, f64>,
}

impl Routing {
    /// The location of a request without the header from `peer`: its longest-prefix client network's, else the
    /// default location.
    pub fn location_of(&self, peer: Option<std::net::IpAddr>) -> &str {
        let peer = peer.map(|ip| ip.to_canonical());
        peer.and_then(|ip| self.client_networks.iter().find(|(n, _)| n.contains(&ip)))
            .map_or(self.default_location.as_str(), |(_, loc)| loc.as_str())
    }
}

impl LabConfig {
    /// The routing tables with defaults filled in; checks every region and location name.
    pub fn routing(&self) -> Result<Routing, LabConfigError> {
        let r = &self.router;
        let regions = &self.regions;
        let known_regions = regions.join(", ");
        let check_region = |key: &str, name: &str| -> Result<(), LabConfigError> {
            if regions.iter().any(|x| x == name) {
                Ok(())
            } else {
                Err(LabConfigError::UnknownName {
                    key: key.to_string(),
                    kind: "region",
                    name: name.to_string(),
                    known: known_regions.clone(),
                })
            }
        };
        for (key, v) in
            [("lab.router.health_failures", r.health_failures), ("lab.router.health_successes", r.health_successes)]
        {
            if v == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if r.health_interval_ms < 10 {
            return invalid("lab.router.health_interval_ms", "must be at least 10");
        }
        if r.health_timeout_ms == 0 {
            return invalid("lab.router.health_timeout_ms", "must be at least 1");
        }
        let locations = match &r.locations {
            Some(l) => l.clone(),
            None => self.default_locations(),
        };
        if locations.is_empty() {
            return invalid("lab.router.locations", "needs at least one location");
        }
        let known_locations: Vec<&str> = locations.keys().map(String::as_str).collect();
        let known_locations = known_locations.join(", ");
        let check_location = |key: &str, name: &str| -> Result<(), LabConfigError> {
            if locations.contains_key(name) {
                Ok(())
            } else {
                Err(LabConfigError::UnknownName {
                    key: key.to_string(),
                    kind: "location",
                    name: name.to_string(),
                    known: known_locations.clone(),
                })
            }
        };
        for (loc, table) in &locations {
            let ok_chars = loc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if loc.is_empty() || loc.len() > 64 || !ok_chars {
                return invalid(
                    &format!("lab.router.locations.{loc:?}"),
                    "a location name is 1 to 64 characters from a-z 0-9 -",
                );
            }
            for (region, ms) in table {
                check_region(&format!("lab.router.locations.{loc}"), region)?;
                check_non_negative(&format!("lab.router.locations.{loc}.{region}"), *ms)?;
            }
            for region in regions {
                if !table.contains_key(region) {
                    return invalid(
                        &format!("lab.router.locations.{loc}"),
                        &format!("has no latency for region {region}; give every region ({known_regions})"),
                    );
                }
            }
        }
        let nearest: BTreeMap<String, String> = locations
            .iter()
            .map(|(loc, table)| {
                // Strictly smaller wins, so ties go to the region that comes first in config order.
                let mut best = &regions[0];
                for region in regions {
                    if table[region] < table[best] {
                        best = region;
                    }
                }
                (loc.clone(), best.clone())
            })
            .collect();
        let default_location = match &r.default_location {
            Some(d) => {
                check_location("lab.router.default_location", d)?;
                d.clone()
            }
            None => locations.keys().next().cloned().unwrap_or_default(),
        };
        let mut client_networks = Vec::new();
        for (net, loc) in &r.client_networks {
            let key = format!("lab.router.client_networks.{net:?}");
            let Ok(parsed) = net.parse::<ipnet::IpNet>() else {
                return invalid(&key, "is not a network: write an address and a prefix length, e.g. 127.0.21.0/24");
            };
            // Peers are matched as the IPv4 addresses they are.
            if let ipnet::IpNet::V6(v6) = parsed
                && v6.addr().to_ipv4_mapped().is_some()
            {
                return invalid(&key, "is an IPv4-mapped network: write it as the IPv4 network it maps");
            }
            check_location(&key, loc)?;
            let parsed = parsed.trunc();
            if let Some((_, other)) = client_networks.iter().find(|(n, _)| *n == parsed) {
                return invalid(&key, &format!("is the network {parsed} again, already mapped to {other}"));
            }
            client_networks.push((parsed, loc.clone()));
        }
        client_networks.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let mut geolocation = nearest.clone();
        if let Some(g) = &r.geolocation {
            for (loc, region) in g {
                check_location("lab.router.geolocation", loc)?;
                check_region(&format!("lab.router.geolocation.{loc}"), region)?;
                geolocation.insert(loc.clone(), region.clone());
            }
        }
        let weights: BTreeMap<String, u32> = if r.weights.is_empty() {
            // Unequal by default (n, n-1, …, 1 in config order), so that a router ignoring weights shows.
            let n = regions.len() as u32;
            regions.iter().enumerate().map(|(i, x)| (x.clone(), n - i as u32)).collect()
        } else {
            for name in r.weights.keys() {
                check_region("lab.router.weights", name)?;
            }
            regions.iter().map(|x| (x.clone(), r.weights.get(x).copied().unwrap_or(0))).collect()
        };
        if weights.values().all(|w| *w == 0) {
            return invalid("lab.router.weights", "every weight is 0; give at least one region a weight above 0");
        }
        let failover_order = if r.failover_order.is_empty() {
            regions.clone()
        } else {
            let mut seen = BTreeSet::new();
            for name in &r.failover_order {
                check_region("lab.router.failover_order", name)?;
                if !seen.insert(name) {
                    return invalid("lab.router.failover_order", &format!("lists {name:?} twice"));
                }
            }
            r.failover_order.clone()
        };
        for (name, c) in &r.capacity {
            check_region("lab.router.capacity", name)?;
            if *c == 0 || *c as usize > super::UPSTREAM_CONNECTIONS_MAX {
                return invalid(
                    &format!("lab.router.capacity.{name}"),
                    &format!(
                        "must be 1 to {} (the router's connections to one region)",
                        super::UPSTREAM_CONNECTIONS_MAX
                    ),
                );
            }
        }
        let capacity = regions
            .iter()
            .map(|x| (x.clone(), r.capacity.get(x).copied().unwrap_or(self.default_capacity())))
            .collect();
        check_non_negative("lab.cdn.edge_one_way_ms", self.cdn.edge_one_way_ms)?;
        for (loc, ms) in &self.cdn.edge_one_way_ms_by_location {
            check_location("lab.cdn.edge_one_way_ms_by_location", loc)?;
            check_non_negative(&format!("lab.cdn.edge_one_way_ms_by_location.{loc}"), *ms)?;
        }
        if self.cdn.cache_bytes_max == 0 {
            return invalid("lab.cdn.cache_bytes_max", "must be at least 1");
        }
        let edge_one_way_ms = locations
            .keys()
            .map(|loc| {
                let ms = self.cdn.edge_one_way_ms_by_location.get(loc).copied().unwrap_or(self.cdn.edge_one_way_ms);
                (loc.clone(), ms)
            })
            .collect();
        Ok(Routing {
            locations,
            default_location,
            client_networks,
            geolocation,
            weights,
            failover_order,
            capacity,
            nearest,
            edge_one_way_ms,
        })
    }

    /// The built-in locations when they cover every region (restricted to the lab's regions); otherwise one
    /// `near-<region>` location per region, 5 ms from it and 5 ms plus half the WAN round trip from the others.
    fn default_locations(&self) -> BTreeMap<String, BTreeMap<String, f64>> {
        let builtin_covers = self.regions.iter().all(|r| BUILTIN_LOCATIONS[0].1.iter().any(|(name, _)| name == r));
        if builtin_covers {
            BUILTIN_LOCATIONS
                .iter()
                .map(|(loc, table)| {
                    let t = table
                        .iter()
                        .filter(|(region, _)| self.regions.iter().any(|r| r == region))
                        .map(|(region, ms)| (region.to_string(), *ms))
                        .collect();
                    (loc.to_string(), t)
                })
                .collect()
        } else {
            self.regions
                .iter()
                .map(|home| {
                    let t = self.regions.iter().map(|r| (r.clone(), 5.0 + self.rtt_ms(home, r) / 2.0)).collect();
                    (format!("near-{}", home.to_ascii_lowercase().replace(['.', '_'], "-")), t)
                })
                .collect()
        }
    }
}
