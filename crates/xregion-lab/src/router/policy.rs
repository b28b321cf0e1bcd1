//! Routing policies: which region a request goes to, as pure functions of the routing tables, the regions'
//! health and a seeded random number generator (no sockets, no clocks), so every rule is unit-tested.
//!
//! A policy answers with an ordered list of candidates: the record's choice first, then every other eligible
//! region nearest first (by the client location's one-way latency). The proxy walks that list when a region
//! is at its capacity (the traffic dial overflows to the next nearest) or when a connection fails.
//!
//! `X-Route-To: <region>` overrides the record on any listener (`Policy::forced`): the request goes to that region
//! only, so that xregion can measure the API latency from every client location to every region.

use crate::config::Defects;
use crate::config::routing::Routing;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The routing records, one listener each (like one DNS name per routing policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The nearest healthy region by the client location's latency.
    Latency,
    /// A fixed location -> region map, falling back to the nearest healthy region.
    Geolocation,
    /// Per-region weights among the healthy regions.
    Weighted,
    /// The first healthy region in a primary order.
    Failover,
}

impl RecordKind {
    /// Every record, in the order of their listeners.
    pub const ALL: [RecordKind; 4] =
        [RecordKind::Latency, RecordKind::Geolocation, RecordKind::Weighted, RecordKind::Failover];

    /// The record's name in URLs, headers and status.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Latency => "latency",
            RecordKind::Geolocation => "geolocation",
            RecordKind::Weighted => "weighted",
            RecordKind::Failover => "failover",
        }
    }

    /// Index into per-record counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why an `X-Route-To` override cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteToError {
    /// The header names no region.
    Unknown {
        /// The header's value.
        name: String,
        /// Every region, in config order.
        known: Vec<String>,
    },
    /// The region may not get traffic now (its health check fails).
    Unhealthy(String),
}

impl RouteToError {
    /// The error code of the answer: `unknown_region` (400) or `region_unhealthy` (503).
    pub fn code(&self) -> &'static str {
        match self {
            RouteToError::Unknown { .. } => "unknown_region",
            RouteToError::Unhealthy(_) => "region_unhealthy",
        }
    }
}

impl std::fmt::Display for RouteToError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteToError::Unknown { name, known } => {
                write!(f, "X-Route-To {name:?} is not a known region; known regions are {}", known.join(", "))
            }
            RouteToError::Unhealthy(name) => {
                write!(f, "X-Route-To names {name}, whose health check fails; it gets no traffic until it passes")
            }
        }
    }
}

/// The routing tables by region index, ready for per-request use.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Region names in config order; every other table uses these indexes.
    pub regions: Vec<String>,
    /// Location -> one-way ms per region index.
    pub latency_ms: BTreeMap<String, Vec<f64>>,
    /// Location -> region indexes, nearest first (ties in config order).
    pub by_nearness: BTreeMap<String, Vec<usize>>,
    /// Location -> the geolocation record's region.
    pub geolocation: BTreeMap<String, usize>,
    /// Weight per region index.
    pub weights: Vec<u32>,
    /// Failover order as region indexes.
    pub failover: Vec<usize>,
}

impl Policy {
    /// Builds the tables from validated routing data (`LabConfig::routing`).
    pub fn new(regions: &[String], routing: &Routing) -> Policy {
        let index = |name: &str| regions.iter().position(|r| r == name).unwrap_or(0);
        let latency_ms: BTreeMap<String, Vec<f64>> = routing
            .locations
            .iter()
            .map(|(loc, t)| (loc.clone(), regions.iter().map(|r| t.get(r).copied().unwrap_or(f64::MAX)).collect()))
            .collect();
        let by_nearness = latency_ms
            .iter()
            .map(|(loc, ms)| {
                let mut order: Vec<usize> = (0..regions.len()).collect();
                // A stable sort keeps config order among equal latencies.
                order.sort_by(|a, b| ms[*a].total_cmp(&ms[*b]));
                (loc.clone(), order)
            })
            .collect();
        Policy {
            regions: regions.to_vec(),
            latency_ms,
            by_nearness,
            geolocation: routing.geolocation.iter().map(|(l, r)| (l.clone(), index(r))).collect(),
            weights: regions.iter().map(|r| routing.weights.get(r).copied().unwrap_or(0)).collect(),
            failover: routing.failover_order.iter().map(|r| index(r)).collect(),
        }
    }

    /// One-way ms from `location` to region `region`.
    pub fn one_way_ms(&self, location: &str, region: usize) -> f64 {
        self.latency_ms.get(location).and_then(|v| v.get(region)).copied().unwrap_or(0.0)
    }

    /// The region an `X-Route-To: <name>` override forces (names compare ASCII case-insensitively, surrounding
    /// blanks ignored), if `eligible` lets it get traffic.
    pub fn forced(&self, name: &str, eligible: &[bool]) -> Result<usize, RouteToError> {
        let wanted = name.trim();
        let Some(index) = self.regions.iter().position(|r| r.eq_ignore_ascii_case(wanted)) else {
            return Err(RouteToError::Unknown { name: wanted.to_string(), known: self.regions.clone() });
        };
        if eligible.get(index).copied().unwrap_or(false) {
            Ok(index)
        } else {
            Err(RouteToError::Unhealthy(self.regions[index].clone()))
        }
    }

    /// The candidates for a request from `location` on `record`: the record's choice, then every other
    /// eligible region nearest first. `eligible[i]` says whether region `i` may get traffic (healthy, or any
    /// region under `router_ignores_health`). Empty when no region is eligible.
    pub fn candidates(
        &self,
        record: RecordKind,
        location: &str,
        eligible: &[bool],
        defects: &Defects,
        rng: &mut impl Rng,
    ) -> Vec<usize> {
        let Some(near) = self.by_nearness.get(location) else {
            return Vec::new();
        };
        let ok = |i: usize| eligible.get(i).copied().unwrap_or(false);
        let nearest = near.iter().copied().find(|i| ok(*i));
        let Some(nearest) = nearest else {
            return Vec::new();
        };
        let random_eligible = |rng: &mut dyn rand::RngCore| {
            let all: Vec<usize> = (0..self.regions.len()).filter(|i| ok(*i)).collect();
            all[rng.random_range(0..all.len())]
        };
        let choice = match record {
            RecordKind::Latency | RecordKind::Geolocation if defects.router_ignores_location => random_eligible(rng),
            RecordKind::Latency => nearest,
            RecordKind::Geolocation => match self.geolocation.get(location) {
                Some(r) if ok(*r) => *r,
                _ => nearest,
            },
            RecordKind::Weighted => {
                let weight = |i: usize| if defects.router_weights_ignored { 1 } else { u64::from(self.weights[i]) };
                let total: u64 = (0..self.regions.len()).filter(|i| ok(*i)).map(weight).sum();
                if total == 0 {
                    nearest
                } else {
                    let mut pick = rng.random_range(0..total);
                    let mut chosen = nearest;
                    for i in (0..self.regions.len()).filter(|i| ok(*i)) {
                        let w = weight(i);
                        if pick < w {
                            chosen = i;
                            break;
                        }
                        pick -= w;
                    }
                    chosen
                }
            }
            RecordKind::Failover => self.failover.iter().copied().find(|i| ok(*i)).unwrap_or(nearest),
        };
        let mut out = Vec::with_capacity(self.regions.len());
        out.push(choice);
        out.extend(near.iter().copied().filter(|i| ok(*i) && *i != choice));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LabConfig;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(cfg: &LabConfig) -> Policy {
        Policy::new(&cfg.regions, &cfg.routing().expect("valid routing"))
    }

    const ALL_UP: [bool; 3] = [true, true, true];

    /// Goal: the latency record sends each built-in location to its nearest region and the rest follow
    /// nearest first; an unhealthy nearest region is skipped.
    #[test]
    fn latency_picks_nearest_healthy() {
        let p = policy(&LabConfig::default());
        let d = Defects::default();
        let mut rng = StdRng::seed_from_u64(1);
        // Regions: 0 us-east-1, 1 us-west-2, 2 eu-west-1.
        assert_eq!(p.candidates(RecordKind::Latency, "london", &ALL_UP, &d, &mut rng), vec![2, 0, 1]);
        assert_eq!(p.candidates(RecordKind::Latency, "new-york", &ALL_UP, &d, &mut rng), vec![0, 1, 2]);
        assert_eq!(p.candidates(RecordKind::Latency, "seattle", &ALL_UP, &d, &mut rng), vec![1, 0, 2]);
        assert_eq!(p.candidates(RecordKind::Latency, "london", &[true, true, false], &d, &mut rng), vec![0, 1]);
        assert!(p.candidates(RecordKind::Latency, "london", &[false; 3], &d, &mut rng).is_empty());
        assert!(p.candidates(RecordKind::Latency, "mars", &ALL_UP, &d, &mut rng).is_empty());
    }

    /// Goal: geolocation follows its map, and falls back to the nearest healthy region when the mapped one is
    /// down. Method: map london to us-west-2 (not its nearest).
    #[test]
    fn geolocation_map_and_fallback() {
        let mut cfg = LabConfig::default();
        cfg.router.geolocation = Some([("london".to_string(), "us-west-2".to_string())].into());
        let p = policy(&cfg);
        let d = Defects::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(p.candidates(RecordKind::Geolocation, "london", &ALL_UP, &d, &mut rng), vec![1, 2, 0]);
        assert_eq!(p.candidates(RecordKind::Geolocation, "london", &[true, false, true], &d, &mut rng), vec![2, 0]);
        assert_eq!(p.candidates(RecordKind::Geolocation, "dublin", &ALL_UP, &d, &mut rng)[0], 2);
    }

    /// Goal: the weighted record's split follows the weights among healthy regions, and evenly under the
    /// `router_weights_ignored` defect. Method: 30,000 seeded draws; tolerance 2 percentage points.
    #[test]
    fn weighted_split_follows_weights() {
        let mut cfg = LabConfig::default();
        cfg.router.weights =
            [("us-east-1".to_string(), 70), ("us-west-2".to_string(), 20), ("eu-west-1".to_string(), 10)].into();
        let p = policy(&cfg);
        let share = |eligible: &[bool], d: &Defects| {
            let mut rng = StdRng::seed_from_u64(7);
            let mut counts = [0u32; 3];
            for _ in 0..30_000 {
                counts[p.candidates(RecordKind::Weighted, "london", eligible, d, &mut rng)[0]] += 1;
            }
            counts.map(|c| f64::from(c) / 30_000.0)
        };
        let s = share(&ALL_UP, &Defects::default());
        for (got, want) in s.iter().zip([0.7, 0.2, 0.1]) {
            assert!((got - want).abs() < 0.02, "{s:?}");
        }
        let s = share(&[false, true, true], &Defects::default());
        assert!((s[1] - 2.0 / 3.0).abs() < 0.02 && s[0] == 0.0, "{s:?}");
        let d = Defects { router_weights_ignored: true, ..Defects::default() };
        let s = share(&ALL_UP, &d);
        assert!(s.iter().all(|x| (x - 1.0 / 3.0).abs() < 0.02), "{s:?}");
    }

    /// Goal: failover takes the first healthy region of its order; the rest follow nearest first.
    #[test]
    fn failover_takes_first_healthy() {
        let mut cfg = LabConfig::default();
        cfg.router.failover_order = vec!["eu-west-1".into(), "us-west-2".into(), "us-east-1".into()];
        let p = policy(&cfg);
        let d = Defects::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(p.candidates(RecordKind::Failover, "seattle", &ALL_UP, &d, &mut rng), vec![2, 1, 0]);
        assert_eq!(p.candidates(RecordKind::Failover, "seattle", &[true, true, false], &d, &mut rng), vec![1, 0]);
        assert_eq!(p.candidates(RecordKind::Failover, "seattle", &[true, false, false], &d, &mut rng), vec![0]);
    }

    /// Goal: `X-Route-To` picks the named region whatever its distance, rejects unknown names with the known
    /// ones, and refuses an unhealthy region instead of overflowing elsewhere.
    #[test]
    fn route_to_forces_a_region() {
        let p = policy(&LabConfig::default());
        assert_eq!(p.forced("eu-west-1", &ALL_UP), Ok(2));
        assert_eq!(p.forced(" US-West-2 ", &ALL_UP), Ok(1));
        let e = p.forced("mars-1", &ALL_UP).unwrap_err();
        assert_eq!(e.code(), "unknown_region");
        assert!(e.to_string().contains("us-east-1, us-west-2, eu-west-1"), "{e}");
        assert!(matches!(p.forced("", &ALL_UP), Err(RouteToError::Unknown { .. })));
        let e = p.forced("eu-west-1", &[true, true, false]).unwrap_err();
        assert_eq!((e.code(), e), ("region_unhealthy", RouteToError::Unhealthy("eu-west-1".into())));
    }

    /// Goal: `router_ignores_location` spreads a location over every region instead of its nearest.
    #[test]
    fn ignores_location_defect_spreads() {
        let p = policy(&LabConfig::default());
        let d = Defects { router_ignores_location: true, ..Defects::default() };
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[p.candidates(RecordKind::Latency, "london", &ALL_UP, &d, &mut rng)[0]] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
    }
}
