//! What a fault does, planned without touching anything: the directed WAN links it acts on, the [`Effects`] it
//! claims (fault rules on links, a killed node, a node fault, clients cut off), and the rule a link carries when
//! several faults in force claim it (the most severe wins, `Pass` when none does). `faults` carries the plan out
//! on a running lab and undoes it on restore; the supervisor keeps each fault's plan with it.

use crate::wan::Rule;
use std::collections::BTreeMap;
use std::time::Duration;
use xregion_model::fault::{ActiveFault, Direction, FaultKind, FaultSpec};

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
    /// It set the node's clock off (`PUT /lab/clock`).
    pub clock: bool,
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
        FaultKind::Clock => effects.clock = true,
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
