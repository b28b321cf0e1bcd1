//! Faults in the lab: what `Lab::fail` does to a region for each `FaultKind`, and how `Lab::restore` undoes it.
//!
//! - `complete`: SIGKILL the node and `Refuse` every WAN link from and to the region. Restore: links pass, the
//!   node restarts on the same ports from its data, and is rewired.
//! - `partial`: `PUT /lab/fault` on the node (`NodeFault`); restore clears it.
//! - `network`: `Drop` (a blackhole: connections hang, as in a real partition) on the region's links chosen by
//!   `direction` and `peers`; `clients` also cuts the region off from the router
//!   (`PUT /router/regions/{name}/reachable`). Restore: the links pass and the router reaches it again.
//! - `latency`: `Delay(base one-way + extra)` on the chosen links (the fault rule replaces the base delay, since
//!   the first rule that does not pass wins). Restore: the links pass.
//! - `clock`: `PUT /lab/clock` on the node sets the wall clock its hybrid logical clock reads `clock_offset_ms`
//!   off; restore puts it back to the configured one (the `clock_offset_ms` defect, else none).
//!
//! A restore also brings back a region whose node crashed without any fault (a `kill -9` from outside): the node
//! restarts from its store on the same ports, exactly as after a `complete` fault.
//!
//! Each fault remembers what it did (`Effects`). A link can be claimed by two faults (a region's outbound link
//! is its peer's inbound one), so the fault rule a link carries is always recomputed from every fault in force:
//! the most severe rule wins (`Refuse`, then `Drop`, then the longest delay), and `Pass` when none claims it.
//! Restoring one region therefore never undoes another region's fault. That planning is pure and lives in
//! `fault_plan`; this module carries it out on a running `Lab`.

use crate::LabError;
use crate::dir::ProcExit;
use crate::fault_plan::{Effects, InForce, LinkKey, fault_links, link_rule, plan_effects};
use crate::http_client::{Client, health_of};
use crate::supervisor::{CONTROL_TIMEOUT, Lab};
use crate::wan::{LinkStatus, Rule};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xregion_model::fault::{ActiveFault, Direction, FaultKind, FaultSpec, FaultStatus, NodeFault, RegionFaultStatus};

/// One region to report in `FaultStatus`, taken from the lab without checking anything.
#[derive(Debug, Clone)]
pub struct FaultTarget {
    /// Region name.
    name: String,
    /// The node's probe-contract address.
    addr: SocketAddr,
    /// The node's pid; `None` while it is not running.
    pid: Option<u32>,
    /// The fault in force, if any.
    fault: Option<ActiveFault>,
    /// How the node ended, when it crashed (an exit the lab did not cause) and has not been restarted.
    crash: Option<ProcExit>,
}

/// Checks every target's health (concurrently, each bounded by `HEALTH_TIMEOUT`); a region without a running
/// node is `down` without asking, with how its node ended when it crashed (`down (killed by signal 9 at …)`).
pub async fn check_targets(client: &Client, targets: Vec<FaultTarget>) -> FaultStatus {
    let checks = targets.into_iter().map(|t| async move {
        let health = match t.pid {
            None => t.crash.as_ref().map_or_else(|| "down".to_string(), ProcExit::health),
            Some(_) => health_of(client, t.addr).await,
        };
        RegionFaultStatus { name: t.name, endpoint: format!("https://{}", t.addr), pid: t.pid, health, fault: t.fault }
    });
    FaultStatus { regions: futures::future::join_all(checks).await }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Lab {
    /// The faults in force, by region.
    pub fn faults(&self) -> BTreeMap<String, ActiveFault> {
        self.faults.iter().map(|(k, v)| (k.clone(), v.fault.clone())).collect()
    }

    /// Injects `spec` into `region`. Errors: `UnknownRegion` for the region or a peer, `Invalid` for a spec
    /// with a problem, `State` when the region already has a fault (restore it first) or a partial fault meets
    /// a stopped node. A failure part-way undoes what was done.
    pub async fn fail(&mut self, region: &str, spec: &FaultSpec) -> Result<ActiveFault, LabError> {
        let names = self.region_names();
        if !names.iter().any(|n| n == region) {
            return Err(self.unknown(region));
        }
        if let Some(p) = spec.problem() {
            return Err(LabError::Invalid(p));
        }
        let applies_to_links = matches!(spec.kind, FaultKind::Network | FaultKind::Latency);
        if applies_to_links {
            if let Some(p) = spec.peers.iter().find(|p| !names.contains(p)) {
                return Err(self.unknown(p));
            }
            if spec.peers.iter().any(|p| p == region) {
                return Err(LabError::Invalid(format!("peers lists {region} itself; a region is not its own peer")));
            }
        }
        if spec.kind == FaultKind::Network && spec.clients && self.router_ready.is_none() {
            return Err(LabError::Invalid(
                "clients: true cuts a region off from the router, and this lab runs without one".into(),
            ));
        }
        if let Some(f) = self.faults.get(region) {
            return Err(LabError::State(format!(
                "region {region} already has a fault ({}); restore it first",
                f.fault.spec.describe()
            )));
        }
        if matches!(spec.kind, FaultKind::Partial | FaultKind::Clock) && self.region_pid(region).is_none() {
            return Err(LabError::State(format!("region {region} is not running; restore it first")));
        }
        let bases = if spec.kind == FaultKind::Latency { self.link_bases().await? } else { BTreeMap::new() };
        let effects = plan_effects(&names, region, spec, &bases);
        let since_ms = now_ms();
        let fault = ActiveFault {
            region: region.to_string(),
            spec: spec.clone(),
            since_ms,
            until_ms: spec.duration_ms.map(|d| since_ms.saturating_add(d)),
        };
        self.faults.insert(region.to_string(), InForce { fault: fault.clone(), effects: effects.clone() });
        match self.apply(region, &effects).await {
            Ok(()) => {
                tracing::info!(region, fault = %spec.describe(), "fault injected");
                Ok(fault)
            }
            Err(e) => {
                tracing::warn!(region, error = %e, "fault injection failed; undoing it");
                if let Err(undo) = self.restore(region).await {
                    tracing::warn!(region, error = %undo, "cannot undo the failed fault injection");
                }
                Err(e)
            }
        }
    }

    /// Clears whatever fault `region` has (none is fine), makes sure its node runs (restarting a killed or
    /// crashed one from its store, and waiting until it is ready) and its links carry no rule but other regions'
    /// faults, and reports the region. On error the fault stays recorded, so that another
    /// restore tries again.
    pub async fn restore(&mut self, region: &str) -> Result<RegionFaultStatus, LabError> {
        let names = self.region_names();
        if !names.iter().any(|n| n == region) {
            return Err(self.unknown(region));
        }
        let removed = self.faults.remove(region);
        let result = self.undo(region, removed.as_ref().map(|f| &f.effects)).await;
        if let Err(e) = result {
            if let Some(f) = removed {
                self.faults.insert(region.to_string(), f);
            }
            return Err(e);
        }
        if let Some(f) = &removed {
            tracing::info!(region, fault = %f.fault.spec.describe(), "fault restored");
        }
        let targets = self.fault_targets().into_iter().filter(|t| t.name == region).collect();
        let mut status = check_targets(&self.client, targets).await;
        status.regions.pop().ok_or_else(|| self.unknown(region))
    }

    /// `GET /faults`: every region in config order with its pid, health and fault.
    pub async fn fault_status(&self) -> FaultStatus {
        check_targets(&self.client, self.fault_targets()).await
    }

    /// What `fault_status` checks, read without any I/O.
    pub fn fault_targets(&self) -> Vec<FaultTarget> {
        self.spec
            .regions
            .iter()
            .filter_map(|r| self.ready.get(&r.name))
            .map(|ready| FaultTarget {
                name: ready.region.clone(),
                addr: ready.http_addr,
                pid: self.region_pid(&ready.region),
                fault: self.faults.get(&ready.region).map(|f| f.fault.clone()),
                crash: self.region_crash(&ready.region),
            })
            .collect()
    }

    fn region_names(&self) -> Vec<String> {
        self.spec.regions.iter().map(|r| r.name.clone()).collect()
    }

    /// Does what `effects` says (the fault is already recorded, so link rules include it).
    async fn apply(&mut self, region: &str, effects: &Effects) -> Result<(), LabError> {
        if effects.killed && self.region_pid(region).is_some() {
            self.kill_region(region).await?;
        }
        for link in effects.links.keys() {
            self.sync_link(link).await?;
        }
        if effects.node_fault {
            let spec = &self.faults[region].fault.spec;
            let nf = NodeFault { writes_fail: spec.writes_fail, error_share: spec.error_share };
            self.set_node_fault(region, &nf).await?;
        }
        if effects.clients_cut {
            self.set_reachable(region, false).await?;
        }
        if effects.clock {
            let offset_ms = self.faults[region].fault.spec.clock_offset_ms;
            self.set_node_clock(region, Some(offset_ms)).await?;
        }
        Ok(())
    }

    /// Undoes `effects` (already removed from the record), and whatever else keeps the region from serving:
    /// every link of the region is set from the other faults, the router reaches it, the node runs.
    async fn undo(&mut self, region: &str, effects: Option<&Effects>) -> Result<(), LabError> {
        let mut links: BTreeSet<LinkKey> =
            fault_links(&self.region_names(), region, Direction::Both, &[]).into_iter().collect();
        links.extend(effects.into_iter().flat_map(|e| e.links.keys().cloned()));
        let mut first_err = None;
        for link in &links {
            if let Err(e) = self.sync_link(link).await {
                first_err.get_or_insert(e);
            }
        }
        if self.router_ready.is_some()
            && let Err(e) = self.set_reachable(region, true).await
        {
            first_err.get_or_insert(e);
        }
        if self.region_pid(region).is_none() {
            // A fresh node has no node fault.
            if let Err(e) = self.start_region(region).await {
                first_err.get_or_insert(e);
            }
        } else {
            if effects.is_some_and(|e| e.node_fault)
                && let Err(e) = self.set_node_fault(region, &NodeFault::default()).await
            {
                first_err.get_or_insert(e);
            }
            if effects.is_some_and(|e| e.clock)
                && let Err(e) = self.set_node_clock(region, None).await
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sets `link`'s fault rule on the WAN to what the faults in force want.
    async fn sync_link(&self, link: &LinkKey) -> Result<(), LabError> {
        let rule = link_rule(self.faults.values().map(|f| &f.effects), link);
        let wan = self.wan_admin_addr()?;
        let path = format!("/links/{}/{}", link.0, link.1);
        Client::plain().call_json("PUT", wan, &path, &rule, "the WAN", CONTROL_TIMEOUT).await.map(|_| ())
    }

    /// Each link's base one-way delay, from the WAN (`GET /links`).
    async fn link_bases(&self) -> Result<BTreeMap<LinkKey, Duration>, LabError> {
        let wan = self.wan_admin_addr()?;
        let (status, body) = Client::plain().request("GET", wan, "/links", None, CONTROL_TIMEOUT).await?;
        if status != 200 {
            return Err(LabError::Http(format!("the WAN answered GET /links with {status}")));
        }
        let links: Vec<LinkStatus> = serde_json::from_slice(&body)
            .map_err(|e| LabError::Http(format!("the WAN's GET /links answer is not valid: {e}")))?;
        Ok(links
            .into_iter()
            .map(|l| {
                let base = match l.base {
                    Rule::Delay(d) => d,
                    _ => Duration::ZERO,
                };
                ((l.from, l.to), base)
            })
            .collect())
    }

    fn wan_admin_addr(&self) -> Result<SocketAddr, LabError> {
        self.wan_ready
            .as_ref()
            .map(|w| w.admin_addr)
            .ok_or_else(|| LabError::State("the lab has no WAN running".into()))
    }

    async fn set_node_fault(&self, region: &str, fault: &NodeFault) -> Result<(), LabError> {
        let ready = self.ready.get(region).ok_or_else(|| self.unknown(region))?;
        let what = format!("region {region}");
        self.client.call_json("PUT", ready.http_addr, "/lab/fault", fault, &what, CONTROL_TIMEOUT).await.map(|_| ())
    }

    /// Sets `region`'s clock `offset_ms` off, or back to its configured one (`None`).
    async fn set_node_clock(&self, region: &str, offset_ms: Option<i64>) -> Result<(), LabError> {
        let ready = self.ready.get(region).ok_or_else(|| self.unknown(region))?;
        let what = format!("region {region}");
        let body = serde_json::json!({ "offset_ms": offset_ms });
        self.client.call_json("PUT", ready.http_addr, "/lab/clock", &body, &what, CONTROL_TIMEOUT).await.map(|_| ())
    }

    async fn set_reachable(&self, region: &str, reachable: bool) -> Result<(), LabError> {
        let Some(router) = &self.router_ready else {
            return Err(LabError::State("the lab runs without a router".into()));
        };
        let path = format!("/router/regions/{region}/reachable");
        let body = serde_json::json!({ "reachable": reachable });
        self.client.call_json("PUT", router.status_addr, &path, &body, "the router", CONTROL_TIMEOUT).await.map(|_| ())
    }
}
