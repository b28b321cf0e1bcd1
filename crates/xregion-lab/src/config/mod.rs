//! The lab's configuration: the `[lab]` table of xregion's TOML config.
//!
//! `LabConfig` is plain data with defaults that give a realistic 3-region deployment (us-east-1, us-west-2,
//! eu-west-1 with round-trip times like the real ones). `validate` checks everything a user can get wrong and
//! says what to do (`validate`); the supervisor refuses to start a lab from an invalid config. `routing` fills in
//! the routing tables' defaults.

pub mod routing;
pub mod validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// What every region's node does beyond the probe contract (load shedding, the catalogue).
    pub node: NodeConfig,
    /// Global routing: the router process with one listener per routing record.
    pub router: RouterConfig,
    /// The CDN edges in front of the regions' catalogue.
    pub cdn: CdnConfig,
    /// Data residency: tag to the regions where records with that tag may be stored (`[lab.residency]`).
    /// Default: `eu` = the regions whose name starts with `eu-`.
    pub residency: Option<BTreeMap<String, Vec<String>>>,
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
    /// The router sends requests to unhealthy regions as if they were healthy.
    pub router_ignores_health: bool,
    /// The router never overflows a full region to the next one (the node then sheds the excess).
    pub router_ignores_capacity: bool,
    /// The weighted record splits evenly among healthy regions, whatever the weights.
    pub router_weights_ignored: bool,
    /// The latency and geolocation records pick a healthy region at random instead of by location.
    pub router_ignores_location: bool,
    /// The CDN edges never store a response, so every request is a miss.
    pub cdn_never_caches: bool,
    /// Every `/v1/*` request to a node takes this much longer (a server slower than the thresholds).
    pub slow_ms: u64,
    /// The store holds every commit this long (a slow disk), so requests wait to get the store.
    pub store_commit_delay_ms: u64,
    /// Split-brain prevention is off: a region cut off from the majority keeps acknowledging writes.
    pub fence_disabled: bool,
    /// A region that crashes (SIGKILL) loses the outbox entries its peers had not acknowledged, so writes it
    /// acknowledged never reach the other regions: permanent data loss.
    pub lose_unreplicated_on_kill: bool,
    /// After a restart, a region acknowledges replicated batches without applying them: it never catches up.
    pub no_catch_up_after_restart: bool,
    /// The router never fails over: it ignores health checks, never ejects a region and never retries.
    pub router_never_fails_over: bool,
    /// Lowest TLS version the lab's listeners accept: `"1.3"` (unset, the hardened default) or `"1.2"`.
    pub tls_min_version: Option<String>,
    /// The lab's server certificates are already expired.
    pub cert_expired: bool,
    /// Replication accepts peers that present no client certificate.
    pub mtls_disabled: bool,
    /// No bearer token is checked: every request is allowed, as `anonymous`.
    pub auth_disabled: bool,
    /// Stored values and the replication log are written in plaintext.
    pub plaintext_at_rest: bool,
    /// Residency tags are ignored: tagged records replicate to every region.
    pub residency_disabled: bool,
    /// Nothing is written to the audit log.
    pub audit_disabled: bool,
    /// An erasure removes the value only in the region that received it; it does not replicate.
    pub erasure_local_only: bool,
    /// A skewed clock: region name to milliseconds added to the wall clock its hybrid logical clock reads
    /// (negative: behind). Its writes are then stamped as if made that much later (or earlier), so timestamp
    /// last-writer-wins lets a write beat a later one from another region that had not received it yet.
    pub clock_offset_ms: BTreeMap<String, i64>,
    /// The shop's inventory is one shared counter per item, decremented in each region's copy and replicated by
    /// last-writer-wins, instead of per-region allocations: concurrent orders in two regions sell the last unit
    /// twice.
    pub inventory_escrow_disabled: bool,
    /// The shop charges a payment in whichever region receives it, ignoring its idempotency key: a retry in
    /// another region charges twice.
    pub payment_idempotency_disabled: bool,
    /// The shop checks an e-mail against the registering region's own copy only, instead of reserving it with
    /// the region that owns it: the same e-mail registers twice in two regions at once.
    pub email_uniqueness_disabled: bool,
}

/// The `[lab.node]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Most `/v1/*` requests a node serves at once; beyond it the node sheds load with `503 overloaded`, like
    /// a real server at its limit. Also the router's default capacity per region.
    pub max_in_flight: u32,
    /// `max-age` of the catalogue's `Cache-Control`, in seconds.
    pub catalog_max_age_s: u64,
    /// How often a replication stream sends a heartbeat when it has no batch to send.
    pub heartbeat_interval_ms: u64,
    /// A peer counts as in contact while this region heard from it (any frame) within this long.
    pub contact_timeout_ms: u64,
    /// Split-brain prevention: a region out of contact with a majority of regions for this long stops
    /// acknowledging writes (503 `fenced`) and reports itself unhealthy, until contact returns and it has caught
    /// up with its peers.
    pub fence_timeout_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_in_flight: 1024,
            catalog_max_age_s: 60,
            heartbeat_interval_ms: 200,
            contact_timeout_ms: 1000,
            fence_timeout_ms: 3000,
        }
    }
}

/// The `[lab.router]` table: global routing in front of the regions, like DNS records of a traffic manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Whether the lab starts the router (and the CDN edges, which live in it).
    pub enabled: bool,
    /// The router's loopback address; default: the last host of `base_addr`'s /24 (127.0.1.254), or `::1`.
    pub ip: Option<IpAddr>,
    /// Seed of the weighted record's choices (and of `router_ignores_location`'s).
    pub seed: u64,
    /// Interval between two active health checks of a region (`GET /healthz`).
    pub health_interval_ms: u64,
    /// Timeout of one health check.
    pub health_timeout_ms: u64,
    /// Consecutive failed checks that mark a healthy region down.
    pub health_failures: u32,
    /// Consecutive passed checks that mark a down region up again.
    pub health_successes: u32,
    /// Location of requests without `X-Client-Location`; default: the first location (by name).
    pub default_location: Option<String>,
    /// Client network (CIDR, for example `127.0.21.0/24`) -> location: a request without `X-Client-Location` from
    /// an address in the network is at that location (the longest prefix wins), as a geo-DNS or anycast router
    /// places clients by their address. A request from no listed network is at `default_location`.
    pub client_networks: BTreeMap<String, String>,
    /// One-way latency in ms from each named client location to each region; default: a built-in table of
    /// public figures when it covers `regions`, else one `near-<region>` location per region.
    pub locations: Option<BTreeMap<String, BTreeMap<String, f64>>>,
    /// Geolocation record: location -> region; a location without an entry goes to its nearest region.
    /// Default: every location to its nearest region.
    pub geolocation: Option<BTreeMap<String, String>>,
    /// Weighted record: region -> weight; empty means n, n-1, …, 1 in region order, and a region left out weighs 0.
    pub weights: BTreeMap<String, u32>,
    /// Failover record: regions in order of preference; empty means config order.
    pub failover_order: Vec<String>,
    /// Most requests in flight per region through the router (a traffic dial); at the limit, requests
    /// overflow to the next nearest healthy region. Default: `node.max_in_flight`.
    pub capacity: BTreeMap<String, u32>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            enabled: true,
            ip: None,
            seed: 1,
            health_interval_ms: 1000,
            health_timeout_ms: 500,
            health_failures: 2,
            health_successes: 2,
            default_location: None,
            client_networks: BTreeMap::new(),
            locations: None,
            geolocation: None,
            weights: BTreeMap::new(),
            failover_order: Vec::new(),
            capacity: BTreeMap::new(),
        }
    }
}

/// The `[lab.cdn]` table: one caching edge per region, serving the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdnConfig {
    /// One-way latency between a client location and its edge, in ms.
    pub edge_one_way_ms: f64,
    /// Per-location overrides of `edge_one_way_ms`.
    pub edge_one_way_ms_by_location: BTreeMap<String, f64>,
    /// Bytes each edge's cache may hold (bodies plus headers).
    pub cache_bytes_max: u64,
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig { edge_one_way_ms: 5.0, edge_one_way_ms_by_location: BTreeMap::new(), cache_bytes_max: 64 << 20 }
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            regions: ["us-east-1", "us-west-2", "eu-west-1"].iter().map(|s| s.to_string()).collect(),
            base_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)),
            dir: None,
            wan: WanConfig::default(),
            node: NodeConfig::default(),
            router: RouterConfig::default(),
            cdn: CdnConfig::default(),
            residency: None,
            defects: Defects::default(),
        }
    }
}

/// Round trips between the default regions, approximating public inter-region figures. A config that names
/// some pairs in `[lab.wan.rtt_ms]` keeps these for the pairs it leaves out.
const BUILTIN_RTT_MS: [(&str, &str, f64); 3] =
    [("us-east-1", "us-west-2", 65.0), ("us-east-1", "eu-west-1", 70.0), ("us-west-2", "eu-west-1", 125.0)];

/// The built-in round trip between `a` and `b`, in either order.
fn builtin_rtt_ms(a: &str, b: &str) -> Option<f64> {
    BUILTIN_RTT_MS.iter().find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a)).map(|(_, _, v)| *v)
}

impl Default for WanConfig {
    fn default() -> Self {
        let rtt_ms = BUILTIN_RTT_MS.iter().map(|(a, b, v)| (format!("{a}/{b}"), *v)).collect();
        WanConfig { jitter_ms: 1.0, rtt_ms }
    }
}

/// Most requests (and so pooled connections) the router sends to one region at once; more wait for a connection,
/// like an upstream connection pool of a real proxy. A region's capacity behind the router is at most this.
pub const UPSTREAM_CONNECTIONS_MAX: usize = 512;

impl LabConfig {
    /// A region's capacity behind the router when `lab.router.capacity` does not set it: what the node admits,
    /// but no more than the router's connections to one region, so that a request the router admits never waits
    /// for a connection.
    pub fn default_capacity(&self) -> u32 {
        self.node.max_in_flight.min(UPSTREAM_CONNECTIONS_MAX as u32)
    }

    /// The residency policy in force: `[lab.residency]`, or `eu` = every region whose name starts with `eu-` (none
    /// when the lab has no such region).
    pub fn residency_policy(&self) -> BTreeMap<String, Vec<String>> {
        match &self.residency {
            Some(p) => p.clone(),
            None => {
                let eu: Vec<String> = self.regions.iter().filter(|r| r.starts_with("eu-")).cloned().collect();
                if eu.is_empty() { BTreeMap::new() } else { BTreeMap::from([("eu".to_string(), eu)]) }
            }
        }
    }

    /// The lowest TLS version the lab's listeners accept, from `defects.tls_min_version`.
    pub fn tls_min(&self) -> crate::pki::TlsMin {
        match self.defects.tls_min_version.as_deref() {
            Some("1.2") => crate::pki::TlsMin::Tls12,
            _ => crate::pki::TlsMin::Tls13,
        }
    }

    /// The router's address: `router.ip`, or the last host of `base_addr`'s /24 (`::1` for IPv6).
    pub fn router_ip(&self) -> IpAddr {
        match (self.router.ip, self.base_addr) {
            (Some(ip), _) => ip,
            (None, IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, 254))
            }
            (None, IpAddr::V6(v6)) => IpAddr::V6(v6),
        }
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

    /// Round-trip time between two regions in milliseconds, whichever order the key uses; the built-in figure
    /// when the config leaves the pair out; 0 when there is none (validation rejects that for lab regions).
    pub fn rtt_ms(&self, a: &str, b: &str) -> f64 {
        self.wan
            .rtt_ms
            .get(&format!("{a}/{b}"))
            .or_else(|| self.wan.rtt_ms.get(&format!("{b}/{a}")))
            .copied()
            .or_else(|| builtin_rtt_ms(a, b))
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::routing::BUILTIN_LOCATIONS;
    use super::validate::LabConfigError;
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

        // A pair left out falls back to the built-in figure; a pair with no built-in figure must be given.
        let mut c = LabConfig::default();
        c.wan.rtt_ms.remove("us-west-2/eu-west-1");
        assert!(c.validate().is_ok());
        assert_eq!(c.rtt_ms("eu-west-1", "us-west-2"), 125.0);
        let mut c = LabConfig { regions: vec!["us-east-1".into(), "ap-south-1".into()], ..Default::default() };
        c.wan.rtt_ms.clear();
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

        let c = LabConfig { base_addr: "192.0.2.1".parse().unwrap(), ..LabConfig::default() };
        assert!(matches!(c.validate(), Err(LabConfigError::NotLoopback { .. })));

        let c = LabConfig { base_addr: "127.255.255.254".parse().unwrap(), ..LabConfig::default() };
        assert!(matches!(c.validate(), Err(LabConfigError::AddressRange { .. })));

        let mut c = LabConfig::default();
        c.wan.rtt_ms.insert("us-east-1".into(), 1.0);
        assert!(matches!(c.validate(), Err(LabConfigError::BadRttKey { .. })));
    }

    /// Goal: a clock offset names a lab region and stays a skew: an unknown region is named with the known ones,
    /// an offset beyond a day is refused, and negative offsets (a clock behind) are allowed.
    #[test]
    fn clock_offsets_name_lab_regions() {
        let mut c = LabConfig::default();
        c.defects.clock_offset_ms = [("us-west-2".to_string(), -400), ("eu-west-1".to_string(), 400)].into();
        assert_eq!(c.validate(), Ok(()));
        c.defects.clock_offset_ms.insert("mars-north-1".into(), 400);
        let m = c.validate().unwrap_err().to_string();
        assert!(m.contains("lab.defects.clock_offset_ms") && m.contains("\"mars-north-1\""), "{m}");
        assert!(m.contains("us-east-1, us-west-2, eu-west-1"), "{m}");
        let mut c = LabConfig::default();
        c.defects.clock_offset_ms.insert("us-east-1".into(), -86_400_001);
        assert!(c.validate().unwrap_err().to_string().contains("lab.defects.clock_offset_ms.us-east-1"));
        let c: LabConfig = serde_json::from_str(r#"{"defects":{"clock_offset_ms":{"us-east-1":400}}}"#).unwrap();
        assert_eq!(c.defects.clock_offset_ms["us-east-1"], 400);
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

    /// Goal: the default routing tables are complete and plausible: every location has every region, the
    /// nearest regions are the expected ones, and weights, failover order and capacity get their defaults.
    #[test]
    fn routing_defaults() {
        let c = LabConfig::default();
        let r = c.routing().unwrap();
        assert_eq!(r.locations.len(), BUILTIN_LOCATIONS.len());
        assert_eq!(r.nearest["london"], "eu-west-1");
        assert_eq!(r.nearest["new-york"], "us-east-1");
        assert_eq!(r.nearest["seattle"], "us-west-2");
        assert_eq!(r.default_location, "chicago", "the first location by name");
        assert_eq!(r.geolocation, r.nearest);
        assert_eq!(
            r.weights.values().copied().collect::<Vec<_>>(),
            [1, 3, 2],
            "by name: eu-west-1, us-east-1, us-west-2"
        );
        assert_eq!(r.failover_order, c.regions);
        assert!(r.capacity.values().all(|v| *v == c.default_capacity()));
        assert_eq!(c.default_capacity(), 512, "the node admits 1024, the router holds 512 connections per region");
        assert!(r.edge_one_way_ms.values().all(|v| *v == 5.0));
        assert_eq!(c.router_ip(), "127.0.1.254".parse::<IpAddr>().unwrap());
    }

    /// Goal: with regions the built-in table does not know, every region gets a `near-<region>` location.
    #[test]
    fn routing_synthetic_locations() {
        let mut c = LabConfig { regions: vec!["ap-south-1".into(), "us-east-1".into()], ..LabConfig::default() };
        c.wan.rtt_ms = [("ap-south-1/us-east-1".to_string(), 200.0)].into();
        let r = c.routing().unwrap();
        assert_eq!(r.locations["near-ap-south-1"]["ap-south-1"], 5.0);
        assert_eq!(r.locations["near-ap-south-1"]["us-east-1"], 105.0);
        assert_eq!(r.nearest["near-us-east-1"], "us-east-1");
        // A subset of the built-in regions keeps the built-in locations.
        let mut c = LabConfig { regions: vec!["us-east-1".into(), "eu-west-1".into()], ..LabConfig::default() };
        c.wan.rtt_ms = [("us-east-1/eu-west-1".to_string(), 70.0)].into();
        assert_eq!(c.routing().unwrap().nearest["seattle"], "us-east-1");
    }

    /// Goal: a request without the header is placed by its address: the longest matching client network, else
    /// the default location; a network that does not parse, or an unknown location, names its key.
    #[test]
    fn routing_client_networks() {
        let mut c = LabConfig::default();
        c.router.client_networks = [
            ("127.0.21.0/24".to_string(), "london".to_string()),
            ("127.0.21.7/32".to_string(), "seattle".to_string()),
            ("127.0.0.0/8".to_string(), "new-york".to_string()),
        ]
        .into();
        let r = c.routing().unwrap();
        let at = |a: &str| r.location_of(Some(a.parse().unwrap())).to_string();
        assert_eq!(at("127.0.21.9"), "london");
        assert_eq!(at("127.0.21.7"), "seattle", "the longest prefix wins");
        assert_eq!(at("127.0.0.1"), "new-york");
        assert_eq!(at("::ffff:127.0.21.9"), "london", "an IPv4-mapped peer is its IPv4 address");
        assert_eq!(at("::1"), "chicago", "no network: the default location");
        assert_eq!(r.location_of(None), "chicago");
        let mut c = LabConfig::default();
        c.router.client_networks = [("127.0.21/24".to_string(), "london".to_string())].into();
        let m = c.validate().unwrap_err().to_string();
        assert!(m.contains("lab.router.client_networks") && m.contains("prefix length"), "{m}");
        let mut c = LabConfig::default();
        c.router.client_networks = [("127.0.21.0/24".to_string(), "mars".to_string())].into();
        let m = c.validate().unwrap_err().to_string();
        assert!(m.contains("lab.router.client_networks") && m.contains("london"), "{m}");
        let mut c = LabConfig::default();
        c.router.client_networks =
            [("127.0.21.0/24".to_string(), "london".to_string()), ("127.0.21.5/24".to_string(), "seattle".to_string())]
                .into();
        let m = c.validate().unwrap_err().to_string();
        assert!(m.contains("127.0.21.0/24 again") && m.contains("london"), "{m}");
        let mut c = LabConfig::default();
        c.router.client_networks = [("::ffff:127.0.21.0/120".to_string(), "london".to_string())].into();
        let m = c.validate().unwrap_err().to_string();
        assert!(m.contains("IPv4-mapped"), "{m}");
    }

    /// Goal: every routing and CDN mistake names the key and the known names. Method: one mistake at a time.
    #[test]
    fn routing_validation_names_keys() {
        let msg = |c: LabConfig| c.validate().unwrap_err().to_string();
        let mut c = LabConfig::default();
        c.router.weights.insert("ap-south-1".into(), 1);
        let m = msg(c);
        assert!(m.contains("lab.router.weights") && m.contains("us-east-1, us-west-2, eu-west-1"), "{m}");
        let mut c = LabConfig::default();
        c.router.default_location = Some("mars".into());
        let m = msg(c);
        assert!(m.contains("lab.router.default_location") && m.contains("london"), "{m}");
        let mut c = LabConfig::default();
        c.router.geolocation = Some([("london".to_string(), "nowhere".to_string())].into());
        assert!(msg(c).contains("lab.router.geolocation.london"));
        let mut c = LabConfig::default();
        c.router.locations = Some([("x".to_string(), [("us-east-1".to_string(), 1.0)].into())].into());
        let m = msg(c);
        assert!(m.contains("lab.router.locations.x") && m.contains("us-west-2"), "{m}");
        let mut c = LabConfig::default();
        c.router.failover_order = vec!["us-east-1".into(), "us-east-1".into()];
        assert!(msg(c).contains("twice"));
        let mut c = LabConfig::default();
        c.router.capacity.insert("eu-west-1".into(), 0);
        assert!(msg(c).contains("lab.router.capacity.eu-west-1"));
        let mut c = LabConfig::default();
        c.router.weights.insert("eu-west-1".into(), 0);
        assert!(msg(c).contains("every weight is 0"));
        let mut c = LabConfig::default();
        c.router.health_failures = 0;
        assert!(msg(c).contains("lab.router.health_failures"));
        let mut c = LabConfig::default();
        c.cdn.edge_one_way_ms_by_location.insert("mars".into(), 1.0);
        assert!(msg(c).contains("lab.cdn.edge_one_way_ms_by_location"));
        let mut c = LabConfig::default();
        c.router.ip = Some("192.0.2.1".parse().unwrap());
        assert!(msg(c).contains("lab.router.ip"));
        let mut c = LabConfig::default();
        c.node.max_in_flight = 0;
        assert!(msg(c).contains("lab.node.max_in_flight"));
        // The new tables parse with defaults and reject unknown keys.
        let c: LabConfig =
            serde_json::from_str(r#"{"router":{"weights":{"us-east-1":3}},"defects":{"slow_ms":5}}"#).unwrap();
        assert_eq!((c.routing().unwrap().weights["us-west-2"], c.defects.slow_ms), (0, 5));
        assert!(serde_json::from_str::<LabConfig>(r#"{"router":{"wieghts":{}}}"#).is_err());
        assert!(serde_json::from_str::<LabConfig>(r#"{"cdn":{"ttl":1}}"#).is_err());
    }
}
