//! The journey file: named journeys (each a list of HTTP steps) and the invariants judged over what they did. The
//! format is documented in `docs/journeys.md`; every error points at file, line and column.

use super::template;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use xregion_check::invariant::Kind;

/// The e2e checks a journey may belong to, by their last id segment.
pub const CHECKS: [&str; 3] = ["registration-order", "fulfillment", "payment"];

/// Variables every journey has: its home region, another region, its instance, its group (instances of one group
/// start together, each in another home region, and share `group`), its place in the group, a token unique to the
/// run, a fresh UUID at each use, and the time in ms since the Unix epoch.
pub const BUILTINS: [&str; 8] = ["region", "other", "instance", "group", "member", "run", "uuid", "now_ms"];

/// Most instances of one journey, and most steps in one.
const INSTANCES_MAX: u32 = 10_000;
const STEPS_MAX: usize = 100;
/// Most attempts of one retry policy, and the longest pause before each.
const RETRIES_MAX: u32 = 50;
const BACKOFF_MS_MAX: u64 = 60_000;

/// A journey file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyFile {
    /// `[[journey]]`.
    #[serde(default, rename = "journey")]
    pub journeys: Vec<Journey>,
    /// `[[invariant]]`.
    #[serde(default, rename = "invariant")]
    pub invariants: Vec<Invariant>,
}

/// One journey: a virtual user's script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journey {
    /// Its name, unique in the file.
    pub name: String,
    /// The e2e check that runs it: `registration-order`, `fulfillment` or `payment`.
    pub check: String,
    /// Runs, all instances, before the check's other journeys, and is not judged (stocking an item, say); a setup
    /// journey that fails makes the check an error.
    #[serde(default)]
    pub setup: bool,
    /// How many times it runs.
    #[serde(default = "one")]
    pub instances: u32,
    /// Instances per group: a group's instances start at the same moment, each with another home region, and share
    /// the `group` variable (concurrent registrations of one e-mail, orders for one last unit).
    #[serde(default = "one")]
    pub group: u32,
    /// Most instances running at once (default: all of them).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Each run must complete within this (the seed's 30 s by default); twice this ends it as failed.
    #[serde(default = "deadline_ms")]
    pub deadline_ms: u64,
    /// How long one request may take before its outcome is unknown, in ms (default 10 s: a business step may do
    /// more than a probe, calls to other regions included).
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// Variables set when an instance starts, templated from the built-in ones.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The steps, in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// A fault injected while the runs go on (a region failing over during the payments, a partition during the
    /// orders).
    #[serde(default)]
    pub fault: Option<JourneyFault>,
}

/// `[journey.fault]`: every run waits before step `before` until all runs have reached it (or ended); then the
/// fault is injected in `region`, the runs go on, and the fault is lifted after `for_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyFault {
    /// The step the runs wait before.
    pub before: String,
    /// `complete` (the region is down), `network` (cut off from the other regions) or `partial` (its store
    /// fails writes).
    pub kind: xregion_model::fault::FaultKind,
    /// The region: a name, `first` (the default: the deployment's first region) or `last`.
    #[serde(default)]
    pub region: Option<String>,
    /// How long the fault lasts, in ms.
    pub for_ms: u64,
    /// Network: cut the region off from clients too, not only from the other regions.
    #[serde(default)]
    pub clients: bool,
}

/// One HTTP request of a journey.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Its name, unique in the journey; metrics are per step.
    pub name: String,
    /// `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`.
    #[serde(default = "get")]
    pub method: String,
    /// Path and query, a template, appended to the region's endpoint.
    pub path: String,
    /// Where it goes: `home` (default), `other`, or a region's name.
    #[serde(default)]
    pub region: Option<String>,
    /// Request headers, values templated.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body, templated.
    #[serde(default)]
    pub body: Option<Value>,
    /// The statuses that are expected. A 2xx among them (any 2xx when empty) is success; any other is a refusal
    /// that ends the journey without failing it (409 for an e-mail taken, say).
    #[serde(default)]
    pub expect: Vec<u16>,
    /// Variables taken from a successful answer: name to JSON pointer.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    /// Conditions on a successful answer.
    #[serde(default, rename = "assert")]
    pub asserts: Vec<Assert>,
    /// Pause after the step succeeded, in ms.
    #[serde(default)]
    pub think_ms: u64,
    /// Sends the same request again, same headers and body (so the same idempotency key): one policy, or a list
    /// applied one after the other.
    #[serde(default, deserialize_with = "one_or_many")]
    pub retry: Vec<Retry>,
}

/// A table or an array of tables.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Retry>, D::Error> {
    use serde::de::Error;
    let value = toml::Value::deserialize(d)?;
    match value {
        toml::Value::Array(items) => {
            items.into_iter().map(|v| v.try_into::<Retry>().map_err(|e| D::Error::custom(e.message()))).collect()
        }
        other => Ok(vec![other.try_into::<Retry>().map_err(|e| D::Error::custom(e.message()))?]),
    }
}

/// `{ pointer = "/status", equals = "paid" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    /// A JSON pointer into the answer.
    pub pointer: String,
    /// The value it must hold (templated).
    pub equals: Value,
}

/// When a step is sent again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryWhen {
    /// After every attempt, whatever it answered: a client that never saw the answer.
    Always,
    /// After an attempt whose outcome is unknown (a timeout, a lost connection, a 5xx).
    #[default]
    Unknown,
    /// After an attempt that neither succeeded nor was refused: a client that keeps trying until it gets an
    /// answer (during a failover, say).
    UnlessOk,
}

/// `{ times = 1, region = "other", when = "always" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Further attempts, at most.
    #[serde(default = "one")]
    pub times: u32,
    /// Where they go: `home`, `other` or a region's name (default: where the first one went).
    #[serde(default)]
    pub region: Option<String>,
    /// When.
    #[serde(default)]
    pub when: RetryWhen,
    /// Pause before each of these attempts, in ms.
    #[serde(default)]
    pub backoff_ms: u64,
}

/// An invariant over a journey's runs and what the regions hold afterwards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    /// Its name, for the report.
    pub name: String,
    /// `exactly-once`, `uniqueness`, `convergence` or `conservation`.
    pub kind: String,
    /// The journey it judges.
    pub journey: String,
    /// The variable whose every value is one subject (an order id, an e-mail, a SKU).
    pub per: String,
    /// The step whose outcome counts (the charge, the registration, the order); not used by convergence.
    #[serde(default)]
    pub step: Option<String>,
    /// The read made in every region for each value.
    pub read: Read,
    /// How long the reads may take to agree with the invariant (replication), in ms.
    #[serde(default = "within_ms")]
    pub within_ms: u64,
}

/// `{ path = "/orders/{{order}}/charges", count = "/charges" }` or `{ path = …, value = "/status" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Read {
    /// Path and query, templated from `per` and `run`.
    pub path: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A pointer to an array whose length is counted.
    #[serde(default)]
    pub count: Option<String>,
    /// A pointer to the value compared.
    #[serde(default)]
    pub value: Option<String>,
}

fn one() -> u32 {
    1
}
fn get() -> String {
    "GET".into()
}
fn deadline_ms() -> u64 {
    30_000
}
fn timeout_ms() -> u64 {
    10_000
}
fn within_ms() -> u64 {
    5_000
}

impl Invariant {
    /// Its kind (validated).
    pub fn kind(&self) -> Kind {
        self.kind.parse().unwrap_or(Kind::Convergence)
    }

    /// The pointer its read takes (validated: exactly one is set).
    pub fn pointer(&self) -> &str {
        self.read.count.as_deref().or(self.read.value.as_deref()).unwrap_or("")
    }
}

impl JourneyFile {
    /// The journeys of check `name`.
    pub fn journeys_of<'a>(&'a self, check: &'a str) -> impl Iterator<Item = &'a Journey> + 'a {
        self.journeys.iter().filter(move |j| j.check == check)
    }

    /// The journey called `name`.
    pub fn journey(&self, name: &str) -> Option<&Journey> {
        self.journeys.iter().find(|j| j.name == name)
    }

    /// What virtual users run for the journeys `names` (all but the setup journeys when empty): those journeys,
    /// and the setup journeys of their checks (which stock what they order, say). Errs naming a journey that the
    /// file does not have, or that is a setup journey.
    pub fn for_load(&self, names: &[String]) -> Result<Vec<&Journey>, String> {
        for name in names {
            match self.journey(name) {
                Some(j) if !j.setup => {}
                Some(_) => return Err(format!("journey {name} is a setup journey; name the journeys it prepares for")),
                None => {
                    let known: Vec<&str> = self.journeys.iter().filter(|j| !j.setup).map(|j| j.name.as_str()).collect();
                    return Err(format!("no journey named {name}; the file has {}", known.join(", ")));
                }
            }
        }
        let wanted = |j: &Journey| !j.setup && (names.is_empty() || names.contains(&j.name));
        let checks: std::collections::BTreeSet<&str> =
            self.journeys.iter().filter(|j| wanted(j)).map(|j| j.check.as_str()).collect();
        Ok(self.journeys.iter().filter(|j| wanted(j) || (j.setup && checks.contains(j.check.as_str()))).collect())
    }

    /// Checks what the types cannot; an error carries a token to locate in the file.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names = BTreeSet::new();
        for j in &self.journeys {
            if !names.insert(j.name.as_str()) {
                return Err((j.name.clone(), format!("two journeys are called {}", j.name)));
            }
            validate_journey(j)?;
            if j.fault.is_some() && self.journeys_of(&j.check).filter(|o| o.fault.is_some()).count() > 1 {
                return Err((j.name.clone(), format!("check {} has two journeys with a fault; one may", j.check)));
            }
        }
        for inv in &self.invariants {
            validate_invariant(self, inv)?;
        }
        Ok(())
    }
}

fn validate_journey(j: &Journey) -> Result<(), (String, String)> {
    let at = |msg: String| Err((j.name.clone(), format!("journey {}: {msg}", j.name)));
    if !CHECKS.contains(&j.check.as_str()) {
        return Err((
            j.check.clone(),
            format!("journey {}: check {:?} is not one of {}", j.name, j.check, CHECKS.join(", ")),
        ));
    }
    if !(1..=INSTANCES_MAX).contains(&j.instances) {
        return at(format!("instances must be between 1 and {INSTANCES_MAX}"));
    }
    if j.group == 0 || j.group > j.instances {
        return at("group must be between 1 and instances".into());
    }
    if j.concurrency == Some(0) {
        return at("concurrency must be above 0".into());
    }
    if !(1..=600_000).contains(&j.deadline_ms) {
        return at("deadline_ms must be between 1 and 600000".into());
    }
    if !(1..=600_000).contains(&j.timeout_ms) {
        return at("timeout_ms must be between 1 and 600000".into());
    }
    if j.steps.is_empty() || j.steps.len() > STEPS_MAX {
        return at(format!("a journey has 1 to {STEPS_MAX} steps"));
    }
    if let Some(f) = &j.fault {
        validate_fault(j, f)?;
    }
    let mut known: BTreeSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    for (name, value) in &j.vars {
        if BUILTINS.contains(&name.as_str()) {
            return Err((name.clone(), format!("journey {}: {name} is a built-in variable", j.name)));
        }
        unknown(&template::names(value).map_err(|e| (value.clone(), e))?, &known, value)?;
    }
    known.extend(j.vars.keys().cloned());
    let mut steps = BTreeSet::new();
    for s in &j.steps {
        let here = |msg: String| Err((s.name.clone(), format!("journey {}, step {}: {msg}", j.name, s.name)));
        if !steps.insert(s.name.as_str()) {
            return here("two steps have this name".into());
        }
        if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&s.method.as_str()) {
            return Err((
                s.method.clone(),
                format!(
                    "journey {}, step {}: method {:?} is not GET, POST, PUT, PATCH, DELETE or HEAD",
                    j.name, s.name, s.method
                ),
            ));
        }
        if !s.path.starts_with('/') {
            return Err((s.path.clone(), format!("journey {}, step {}: the path must start with /", j.name, s.name)));
        }
        if let Some(bad) = s.expect.iter().find(|c| !(100..=599).contains(*c)) {
            return here(format!("{bad} is not an HTTP status"));
        }
        for r in &s.retry {
            if !(1..=RETRIES_MAX).contains(&r.times) {
                return here(format!("retry.times must be between 1 and {RETRIES_MAX}"));
            }
            if r.backoff_ms > BACKOFF_MS_MAX {
                return here(format!("retry.backoff_ms must be at most {BACKOFF_MS_MAX}"));
            }
        }
        let mut used = template::names(&s.path).map_err(|e| (s.path.clone(), e))?;
        for v in s.headers.values() {
            used.extend(template::names(v).map_err(|e| (v.clone(), e))?);
        }
        if let Some(b) = &s.body {
            used.extend(template::names_in_json(b).map_err(|e| (s.name.clone(), e))?);
        }
        for a in &s.asserts {
            used.extend(template::names_in_json(&a.equals).map_err(|e| (a.pointer.clone(), e))?);
            pointer(&a.pointer)?;
        }
        unknown(&used, &known, &s.name)?;
        for (var, p) in &s.extract {
            pointer(p)?;
            if BUILTINS.contains(&var.as_str()) {
                return Err((var.clone(), format!("journey {}: {var} is a built-in variable", j.name)));
            }
            known.insert(var.clone());
        }
    }
    Ok(())
}

fn validate_fault(j: &Journey, f: &JourneyFault) -> Result<(), (String, String)> {
    use xregion_model::fault::FaultKind;
    let at = |msg: String| Err((f.before.clone(), format!("journey {}, fault: {msg}", j.name)));
    if !j.steps.iter().any(|s| s.name == f.before) {
        return at(format!("before = {:?} names no step of the journey", f.before));
    }
    if !matches!(f.kind, FaultKind::Complete | FaultKind::Network | FaultKind::Partial) {
        return at(format!("kind {} is not complete, network or partial", f.kind.name()));
    }
    if !(1..=600_000).contains(&f.for_ms) {
        return at("for_ms must be between 1 and 600000".into());
    }
    if j.setup {
        return at("a setup journey has no fault".into());
    }
    if j.concurrency.is_some_and(|c| c < j.instances) {
        return at("every run waits for the others before the fault, so concurrency must allow all of them".into());
    }
    Ok(())
}

/// A JSON pointer is empty or starts with `/`.
fn pointer(p: &str) -> Result<(), (String, String)> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err((p.to_string(), format!("{p:?} is not a JSON pointer; write it as /field/0/name")))
    }
}

/// An error for the first name in `used` that is not `known`.
fn unknown(used: &[&str], known: &BTreeSet<String>, at: &str) -> Result<(), (String, String)> {
    match used.iter().find(|n| !known.contains(**n)) {
        Some(n) => Err((
            at.to_string(),
            format!(
                "{{{{{n}}}}} is no variable here; known so far: {}",
                known.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn validate_invariant(file: &JourneyFile, inv: &Invariant) -> Result<(), (String, String)> {
    let at = |msg: String| Err((inv.name.clone(), format!("invariant {}: {msg}", inv.name)));
    let kind: Kind = inv.kind.parse().map_err(|e| (inv.kind.clone(), e))?;
    let Some(j) = file.journey(&inv.journey) else {
        return Err((inv.journey.clone(), format!("invariant {}: no journey is called {}", inv.name, inv.journey)));
    };
    if j.setup {
        return at(format!("{} is a setup journey, which is not judged", j.name));
    }
    let extracted = j.steps.iter().flat_map(|s| s.extract.keys());
    let set_by_vars = j.vars.contains_key(&inv.per);
    if !set_by_vars && !extracted.clone().any(|v| v == &inv.per) && !["group", "instance"].contains(&inv.per.as_str()) {
        return at(format!("per = {:?} is not a variable of journey {} (vars, or a step's extract)", inv.per, j.name));
    }
    if kind == Kind::Conservation && !set_by_vars && inv.per != "group" {
        return at("conservation reads the stock before the journeys, so per must be set in vars".into());
    }
    if kind == Kind::Conservation
        && let Some(t) = j.vars.get(&inv.per)
        && template::names(t).unwrap_or_default().iter().any(|n| ["uuid", "now_ms"].contains(n))
    {
        return at(format!("conservation reads {} before the journeys, so it may not use uuid or now_ms", inv.per));
    }
    match (&inv.step, kind) {
        (None, Kind::Convergence) => {}
        (None, _) => return at(format!("a {} invariant names the step whose outcome counts: step = …", kind.name())),
        (Some(s), _) if !j.steps.iter().any(|x| &x.name == s) => {
            return at(format!("journey {} has no step {s}", j.name));
        }
        _ => {}
    }
    match (&inv.read.count, &inv.read.value) {
        (Some(p), None) if kind.counts() => pointer(p)?,
        (None, Some(p)) if !kind.counts() => pointer(p)?,
        _ => {
            let want = if kind.counts() { "count" } else { "value" };
            return at(format!("a {} invariant's read gives `{want} = \"/pointer\"` (and only that)", kind.name()));
        }
    }
    if !inv.read.path.starts_with('/') {
        return Err((inv.read.path.clone(), format!("invariant {}: the read's path must start with /", inv.name)));
    }
    let known: BTreeSet<String> = [inv.per.clone(), "run".to_string()].into();
    let mut used = template::names(&inv.read.path).map_err(|e| (inv.read.path.clone(), e))?;
    for v in inv.read.headers.values() {
        used.extend(template::names(v).map_err(|e| (v.clone(), e))?);
    }
    unknown(&used, &known, &inv.read.path)?;
    if !(1..=600_000).contains(&inv.within_ms) {
        return at("within_ms must be between 1 and 600000".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[journey]]
name = "pay"
check = "payment"
instances = 4
[journey.vars]
key = "k-{{run}}-{{instance}}"
[[journey.step]]
name = "order"
method = "POST"
path = "/orders"
body = { item = "{{key}}" }
extract = { order = "/id" }
[[journey.step]]
name = "charge"
method = "POST"
path = "/orders/{{order}}/charge"
headers = { "Idempotency-Key" = "{{key}}" }
retry = { region = "other", when = "always" }

[[invariant]]
name = "one charge per order"
kind = "exactly-once"
journey = "pay"
per = "order"
step = "charge"
read = { path = "/orders/{{order}}/charges", count = "/charges" }
"#;

    fn parse(src: &str) -> Result<JourneyFile, String> {
        let f: JourneyFile = toml::from_str(src).map_err(|e| e.to_string())?;
        f.validate().map_err(|(_, m)| m)?;
        Ok(f)
    }

    /// Goal: a complete file parses and validates; each kind of mistake is an error that says what is wrong.
    #[test]
    fn validates_what_types_cannot() {
        let f = parse(GOOD).unwrap();
        assert_eq!(f.journeys[0].steps[1].retry[0].when, RetryWhen::Always);
        assert_eq!(f.invariants[0].kind(), Kind::ExactlyOnce);
        let bad = |from: &str, to: &str| parse(&GOOD.replacen(from, to, 1)).unwrap_err();
        assert!(bad("{{order}}/charge\"", "{{nope}}/charge\"").contains("{{nope}} is no variable here"));
        assert!(bad("check = \"payment\"", "check = \"refund\"").contains("not one of"));
        assert!(bad("kind = \"exactly-once\"", "kind = \"at-most-once\"").contains("unknown invariant kind"));
        assert!(bad("count = \"/charges\"", "value = \"/charges\"").contains("count = \"/pointer\""));
        assert!(bad("per = \"order\"", "per = \"nothing\"").contains("not a variable of journey pay"));
        assert!(bad("step = \"charge\"", "step = \"refund\"").contains("has no step refund"));
        assert!(bad("extract = { order = \"/id\" }", "extract = { order = \"id\" }").contains("not a JSON pointer"));
        assert!(bad("method = \"POST\"", "method = \"FETCH\"").contains("method \"FETCH\""));
        assert!(bad("instances = 4", "instances = 4\ngroup = 5").contains("group must be"));
        assert!(bad("kind = \"exactly-once\"", "kind = \"conservation\"").contains("per must be set in vars"));
    }

    /// Goal: a step's retries are one policy or a list of them, with backoff; a journey's fault names a step of
    /// it, a kind that fits, and lets every run reach the gate.
    #[test]
    fn retry_lists_and_faults() {
        let retries = "retry = [{ region = \"other\", when = \"always\" }, { times = 20, when = \"unless_ok\", backoff_ms = 100 }]";
        let f = parse(&GOOD.replacen("retry = { region = \"other\", when = \"always\" }", retries, 1)).unwrap();
        let r = &f.journeys[0].steps[1].retry;
        assert_eq!((r.len(), r[1].when, r[1].times, r[1].backoff_ms), (2, RetryWhen::UnlessOk, 20, 100));
        let bad_retry = GOOD.replacen("when = \"always\" }", "when = \"always\", pause = 1 }", 1);
        assert!(parse(&bad_retry).unwrap_err().contains("unknown field `pause`"));
        let with = |fault: &str| {
            parse(&GOOD.replacen(
                "[[journey.step]]\nname = \"order\"",
                &format!("{fault}\n[[journey.step]]\nname = \"order\""),
                1,
            ))
        };
        let f = with("[journey.fault]\nbefore = \"charge\"\nkind = \"complete\"\nfor_ms = 1000").unwrap();
        assert_eq!(f.journeys[0].fault.as_ref().unwrap().before, "charge");
        let e = with("[journey.fault]\nbefore = \"refund\"\nkind = \"complete\"\nfor_ms = 1000").unwrap_err();
        assert!(e.contains("names no step"), "{e}");
        let e = with("[journey.fault]\nbefore = \"charge\"\nkind = \"clock\"\nfor_ms = 1000").unwrap_err();
        assert!(e.contains("not complete, network or partial"), "{e}");
        let limited = GOOD.replacen("instances = 4", "instances = 4\nconcurrency = 2", 1).replacen(
            "[[journey.step]]\nname = \"order\"",
            "[journey.fault]\nbefore = \"charge\"\nkind = \"network\"\nfor_ms = 1000\n[[journey.step]]\nname = \"order\"",
            1,
        );
        assert!(parse(&limited).unwrap_err().contains("concurrency must allow all"));
    }
}
