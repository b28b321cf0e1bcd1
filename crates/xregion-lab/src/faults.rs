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
//!
//! Each fault remembers what it did (`Effects`). A link can be claimed by two faults (a region's outbound link
//! is its peer's inbound one), so the fault rule a link carries is always recomputed from every fault in force:
//! the most severe rule wins (`Refuse`, then `Drop`, then the longest delay), and `Pass` when none claims it.
//! Restoring one region therefore never undoes another region's fault.

use crate::LabError;
use crate::http_client::Client;
use crate::supervisor::{CONTROL_TIMEOUT, HEALTH_TIMEOUT, Lab};
use crate::wan::{LinkStatus, Rule};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xregion_model::fault::{ActiveFault, Direction, FaultKind, FaultSpec, FaultStatus, NodeFault, RegionFaultStatus};

/// A directed WAN link, `(from, to)`.
pub type LinkKey = (String, String);

/// What a fault did to the lab, so that restoring it undoes exactly that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Fault rules it claims on WAN links.
    pub links: BTreeMap<LinkKey, Rule>,
    /// It SIGKILLed the node.
    pub killed: bool,
    /// It set a node fault (`PUT /lab/fault`).
    pub node_fault: bool,
    /// It cut the region off from the router.
    pub clients_cut: bool,
}

/// A fault in force and what it did.
#[derive(Debug, Clone)]
pub struct InForce {
    /// What `GET /faults` shows.
    pub fault: ActiveFault,
    /// What restore undoes.
    pub effects: Effects,
}

/// The directed links a network or latency fault on `region` acts on: `region -> peer` (outbound),
/// `peer -> region` (inbound) or both, for every peer in `peers` (every other region when empty), in
/// `regions` order.
pub fn fault_links(regions: &[String], region: &str, direction: Direction, peers: &[String]) -> Vec<LinkKey> {
    let mut links = Vec::new();
    for peer in regions.iter().filter(|p| *p != region) {
        if !peers.is_empty() && !peers.contains(peer) {
            continue;
        }
        if matches!(direction, Direction::Both | Direction::Outbound) {
            links.push((region.to_string(), peer.clone()));
        }
        if matches!(direction, Direction::Both | Direction::Inbound) {
            links.push((peer.clone(), region.to_string()));
        }
    }
    links
}

/// How hard a rule cuts a link: `Refuse` > `Drop` > a longer delay > a shorter one > `Pass`.
fn severity(rule: Rule) -> (u8, Duration) {
    match rule {
        Rule::Pass => (0, Duration::ZERO),
        Rule::Delay(d) => (1, d),
        Rule::Drop => (2, Duration::ZERO),
        Rule::Refuse => (3, Duration::ZERO),
    }
}

/// The fault rule `link` should carry under the faults in force: the most severe claim, or `Pass`.
pub fn link_rule<'a>(faults: impl IntoIterator<Item = &'a Effects>, link: &LinkKey) -> Rule {
    faults.into_iter().filter_map(|e| e.links.get(link).copied()).max_by_key(|r| severity(*r)).unwrap_or(Rule::Pass)
}

/// What `Lab::fail` is about to do for `spec` on `region` (pure; `bases` are the links' one-way delays, only
/// used by latency faults).
pub fn plan_effects(
    regions: &[String],
    region: &str,
    spec: &FaultSpec,
    bases: &BTreeMap<LinkKey, Duration>,
) -> Effects {
    let mut effects = Effects::default();
    match spec.kind {
        FaultKind::Complete => {
            effects.killed = true;
            effects.links =
                fault_links(regions, region, Direction::Both, &[]).into_iter().map(|l| (l, Rule::Refuse)).collect();
        }
        FaultKind::Partial => effects.node_fault = true,
        FaultKind::Network => {
            effects.clients_cut = spec.clients;
            effects.links = fault_links(regions, region, spec.direction, &spec.peers)
                .into_iter()
                .map(|l| (l, Rule::Drop))
                .collect();
        }
        FaultKind::Latency => {
            let extra = Duration::from_secs_f64(spec.extra_delay_ms / 1000.0);
            effects.links = fault_links(regions, region, spec.direction, &spec.peers)
                .into_iter()
                .map(|l| {
                    let base = bases.get(&l).copied().unwrap_or_default();
                    (l, Rule::Delay(base + extra))
                })
                .collect();
        }
    }
    effects
}

/// A region's health as `/healthz` tells it: its `status` (`ok`, `degraded`, `fenced`, …) whatever the HTTP
/// code, or why the check failed. Bounded by `HEALTH_TIMEOUT`.
pub async fn health_of(client: &Client, addr: SocketAddr) -> String {
    match client.request("GET", addr, "/healthz", None, HEALTH_TIMEOUT).await {
        Ok((code, body)) => match serde_json::from_slice::<xregion_model::wire::Health>(&body) {
            Ok(h) => h.status,
            Err(_) if code == 200 => "bad health answer".to_string(),
            Err(_) => format!("http {code}"),
        },
        Err(e) => e.to_string(),
    }
}

/// One region to report in `FaultStatus`, taken from the lab without checking anything.
#[derive(Debug, Clone)]
pub struct FaultTarget {
    name: String,
    addr: SocketAddr,
    pid: Option<u32>,
    fault: Option<ActiveFault>,
}

/// Checks every target's health (concurrently, each bounded by `HEALTH_TIMEOUT`); a region without a running
/// node is `down` without asking.
pub async fn check_targets(client: &Client, targets: Vec<FaultTarget>) -> FaultStatus {
    let checks = targets.into_iter().map(|t| async move {
        let health = match t.pid {
            None => "down".to_string(),
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
        if spec.kind == FaultKind::Partial && self.region_pid(region).is_none() {
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

    /// Clears whatever fault `region` has (none is fine), makes sure its node runs and its links carry no rule
    /// but other regions' faults, and reports the region. On error the fault stays recorded, so that another
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
        } else if effects.is_some_and(|e| e.node_fault)
            && let Err(e) = self.set_node_fault(region, &NodeFault::default()).await
        {
            first_err.get_or_insert(e);
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

    async fn set_reachable(&self, region: &str, reachable: bool) -> Result<(), LabError> {
        let Some(router) = &self.router_ready else {
            return Err(LabError::State("the lab runs without a router".into()));
        };
        let path = format!("/router/regions/{region}/reachable");
        let body = serde_json::json!({ "reachable": reachable });
        self.client.call_json("PUT", router.status_addr, &path, &body, "the router", CONTROL_TIMEOUT).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    fn link(from: &str, to: &str) -> LinkKey {
        (from.to_string(), to.to_string())
    }

    /// Goal: the links per direction and peers: outbound is `region -> peer`, inbound `peer -> region`, both is
    /// the two, and `peers` narrows them (empty = every other region).
    #[test]
    fn links_per_direction_and_peers() {
        let r = names();
        assert_eq!(fault_links(&r, "a", Direction::Outbound, &[]), vec![link("a", "b"), link("a", "c")]);
        assert_eq!(fault_links(&r, "a", Direction::Inbound, &[]), vec![link("b", "a"), link("c", "a")]);
        assert_eq!(
            fault_links(&r, "b", Direction::Both, &[]),
            vec![link("b", "a"), link("a", "b"), link("b", "c"), link("c", "b")]
        );
        let only_c = vec!["c".to_string()];
        assert_eq!(fault_links(&r, "a", Direction::Both, &only_c), vec![link("a", "c"), link("c", "a")]);
        assert_eq!(fault_links(&r, "a", Direction::Inbound, &only_c), vec![link("c", "a")]);
    }

    /// Goal: each kind claims the right rules: complete refuses every link both ways and kills, network drops
    /// the chosen links (and cuts clients when asked), latency delays by base + extra, partial touches no link.
    #[test]
    fn effects_per_kind() {
        let r = names();
        let bases: BTreeMap<LinkKey, Duration> =
            [(link("a", "b"), Duration::from_millis(30)), (link("b", "a"), Duration::from_millis(30))].into();
        let c = plan_effects(&r, "a", &FaultSpec::new(FaultKind::Complete), &bases);
        assert!(c.killed && !c.node_fault && !c.clients_cut);
        assert_eq!(c.links.len(), 4);
        assert!(c.links.values().all(|r| *r == Rule::Refuse));

        let p = plan_effects(&r, "a", &FaultSpec::new(FaultKind::Partial), &bases);
        assert_eq!(p, Effects { node_fault: true, ..Effects::default() });

        let n = FaultSpec {
            direction: Direction::Outbound,
            peers: vec!["b".into()],
            clients: true,
            ..FaultSpec::new(FaultKind::Network)
        };
        let n = plan_effects(&r, "a", &n, &bases);
        assert!(n.clients_cut && !n.killed);
        assert_eq!(n.links, [(link("a", "b"), Rule::Drop)].into());

        let l = FaultSpec { extra_delay_ms: 100.0, peers: vec!["b".into()], ..FaultSpec::new(FaultKind::Latency) };
        let l = plan_effects(&r, "a", &l, &bases);
        assert_eq!(
            l.links,
            [
                (link("a", "b"), Rule::Delay(Duration::from_millis(130))),
                (link("b", "a"), Rule::Delay(Duration::from_millis(130)))
            ]
            .into()
        );
    }

    /// Goal: a link claimed by two faults carries the more severe rule, and goes back to the other's rule (or
    /// `Pass`) when one is restored.
    #[test]
    fn overlapping_faults_compose() {
        let slow =
            Effects { links: [(link("a", "b"), Rule::Delay(Duration::from_millis(50)))].into(), ..Effects::default() };
        let slower =
            Effects { links: [(link("a", "b"), Rule::Delay(Duration::from_millis(80)))].into(), ..Effects::default() };
        let cut = Effects { links: [(link("a", "b"), Rule::Drop)].into(), ..Effects::default() };
        let gone = Effects { links: [(link("a", "b"), Rule::Refuse)].into(), ..Effects::default() };
        let ab = link("a", "b");
        assert_eq!(link_rule([], &ab), Rule::Pass);
        assert_eq!(link_rule([&slow], &link("b", "a")), Rule::Pass);
        assert_eq!(link_rule([&slow, &slower], &ab), Rule::Delay(Duration::from_millis(80)));
        assert_eq!(link_rule([&slow, &cut], &ab), Rule::Drop);
        assert_eq!(link_rule([&gone, &cut, &slow], &ab), Rule::Refuse);
    }
}
