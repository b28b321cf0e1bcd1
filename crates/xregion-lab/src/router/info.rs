//! What the rest of the lab learns about the router: its `READY` line, and [`TrafficInfo`], the routing records,
//! the CDN and their tables as `lab.json` records them for the routing and CDN checks.

use crate::config::routing::Routing;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The `READY` line of the router process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterReady {
    /// Record name -> listener.
    pub records: BTreeMap<String, SocketAddr>,
    /// The CDN edges' listener.
    pub cdn_addr: SocketAddr,
    /// The status listener (`GET /router/status`).
    pub status_addr: SocketAddr,
    /// Process id.
    pub pid: u32,
}

/// How to reach the lab's routing and CDN, and the tables they use: what the routing and CDN checks need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficInfo {
    /// Record name (`latency`, `geolocation`, `weighted`, `failover`) -> base URL.
    pub records: BTreeMap<String, String>,
    /// Base URL of the CDN edges.
    pub cdn: String,
    /// URL of the router's status (`GET`), lab-only.
    pub router_status: String,
    /// Location -> region -> one-way ms.
    pub locations: BTreeMap<String, BTreeMap<String, f64>>,
    /// Location -> its nearest region.
    pub nearest: BTreeMap<String, String>,
    /// Location -> region of the geolocation record.
    pub geolocation: BTreeMap<String, String>,
    /// Region -> weight of the weighted record.
    pub weights: BTreeMap<String, u32>,
    /// Region -> most requests in flight through the router.
    pub capacity: BTreeMap<String, u32>,
    /// Regions in the failover record's order.
    pub failover_order: Vec<String>,
    /// Location of requests without `X-Client-Location`.
    pub default_location: String,
    /// Location -> one-way ms to its CDN edge.
    pub edge_one_way_ms: BTreeMap<String, f64>,
}

impl TrafficInfo {
    /// The info for a router that reported `ready` and routes by `routing`.
    pub fn new(ready: &RouterReady, routing: &Routing) -> TrafficInfo {
        TrafficInfo {
            records: ready.records.iter().map(|(k, a)| (k.clone(), format!("https://{a}"))).collect(),
            cdn: format!("https://{}", ready.cdn_addr),
            router_status: format!("https://{}/router/status", ready.status_addr),
            locations: routing.locations.clone(),
            nearest: routing.nearest.clone(),
            geolocation: routing.geolocation.clone(),
            weights: routing.weights.clone(),
            capacity: routing.capacity.clone(),
            failover_order: routing.failover_order.clone(),
            default_location: routing.default_location.clone(),
            edge_one_way_ms: routing.edge_one_way_ms.clone(),
        }
    }
}
