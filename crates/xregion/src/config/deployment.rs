//! The deployment under test as the config describes it: which kind (the lab or regions over HTTP), how to reach
//! each region (endpoints, timeouts, TLS trust, bearer tokens), how clients reach it (`Traffic`: routing records,
//! the CDN, the expected region of each client location) and what the security suite needs to know.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::secret::Secret;

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
    /// Address every HTTP request is sent from (`xregion run --source-address`), so that a router that places
    /// clients by their address sees this one. Not a config key: it belongs to the machine, not the deployment.
    #[serde(skip)]
    pub source_address: Option<std::net::IpAddr>,
}

/// `[deployment.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM file of the CA certificate(s) every HTTPS endpoint must chain to; `XREGION_CA_FILE` overrides it.
    /// Unset: the system's trusted roots (which honour `SSL_CERT_FILE`).
    pub ca_file: Option<PathBuf>,
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
    /// Client location to the regions it should be served by, most preferred first: where a routing record sends
    /// a location's requests when its nearest region is full or down. Overrides the order `locations` implies.
    pub preferences: BTreeMap<String, Vec<String>>,
    /// Path the routing checks request through the records: a cheap read every region serves.
    pub probe_path: String,
    /// Cacheable path the CDN checks read; `{i}` becomes the item number (so many distinct objects are read).
    pub cdn_path: String,
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
            source_address: None,
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
            preferences: BTreeMap::new(),
            probe_path: "/v1/catalog/routing-probe".to_string(),
            cdn_path: "/v1/catalog/item-{i}".to_string(),
        }
    }
}

/// One region of a deployment of the user's: an API endpoint, a database, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEndpoint {
    /// Region name, for example `us-east-1`.
    pub name: String,
    /// Base URL of the region's probe contract, for example `https://api-us-east-1.example.com`. Empty: the
    /// region has no API, only a database.
    #[serde(default)]
    pub endpoint: String,
    /// The region's database: `host[:port]` (with the libpq variables `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGSSLMODE`, `PGPASSFILE` and `XREGION_DB_KIND`), or a `postgres://`, `etcd://` or `etcd+https://` URL. A
    /// password in it never reaches a report. Used when the region has no API endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "redacted_url")]
    pub database: Option<String>,
    /// Base URL of the region's own application API, which journeys call (the e2e checks); default: `endpoint`.
    /// A region may have only this, and is then reached by journeys alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// Serializes a database setting without its password (the report records the config).
fn redacted_url<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => s.serialize_str(&crate::db::settings::redact(url)),
        None => s.serialize_none(),
    }
}
