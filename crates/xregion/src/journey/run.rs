//! Runs journeys against a deployment's regions and records what every step did, then reads what the invariants
//! need from every region.
//!
//! An attempt's outcome is what a history needs: `Ok` (an expected 2xx, assertions held), `Refused` (an expected
//! non-2xx: the application said no), `Failed` (certainly not done: refused connection, an unexpected 4xx, a failed
//! assertion) or `Unknown` (maybe done: a timeout, a connection lost after sending, a 5xx). A journey ends at the
//! first step that is not `Ok`.

use super::fault::FaultGate;
use super::spec::{Invariant, Journey, RetryWhen, Step};
use super::template::{self, Vars};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use xregion_check::invariant::{Read, Subject};

/// Largest answer body read, in bytes; beyond it the answer counts as unreadable.
const BODY_BYTES_MAX: usize = 1 << 20;

/// Pause between two rounds of invariant reads that do not hold yet.
const READ_POLL: Duration = Duration::from_millis(100);

/// Invariant reads in flight at once.
const READS_IN_FLIGHT_MAX: usize = 16;

/// Where journeys go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Region name and base URL (no trailing slash), in config order.
    pub regions: Vec<(String, String)>,
    /// The HTTP client (TLS, timeouts, the user token).
    pub client: reqwest::Client,
    /// The `run` variable: a token unique to this run.
    pub run: String,
    /// The run's seed: every `uuid` comes from it (a stream per journey run).
    pub seed: u64,
    /// Base URL of the deployment's routing record, where a step with `region = "router"` goes (the region that
    /// serves it is the router's choice).
    pub router: Option<String>,
}

/// The `region` of a step that goes through the deployment's routing record.
pub const ROUTER: &str = "router";

impl Target {
    /// The name and base URL of endpoint `i`: a region, or the router (`i` = the number of regions).
    fn endpoint(&self, i: usize) -> (&str, &str) {
        match self.regions.get(i) {
            Some((name, base)) => (name, base),
            None => (ROUTER, self.router.as_deref().unwrap_or_default()),
        }
    }

    /// The region a step's `region` names, for a journey at home in region `home` (an index).
    fn pick(&self, which: Option<&str>, home: usize) -> Result<usize, String> {
        let n = self.regions.len();
        match which.unwrap_or("home") {
            "home" => Ok(home),
            "other" => Ok((home + 1) % n),
            ROUTER if self.router.is_some() => Ok(n),
            ROUTER => Err("a step goes through the router, but the deployment has no routing record: set \
                 [deployment.traffic] records.latency (or --router)"
                .into()),
            name => self.regions.iter().position(|(r, _)| r == name).ok_or_else(|| {
                let known: Vec<&str> = self.regions.iter().map(|(r, _)| r.as_str()).collect();
                format!("no region {name}; the deployment has {}", known.join(", "))
            }),
        }
    }
}

/// How an attempt or a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Refused,
    Failed,
    Unknown,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Where it went.
    pub region: String,
    /// The answer's status, if there was one.
    pub status: Option<u16>,
    /// From send to the end of the answer, in ms.
    pub ms: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it is not `Ok`.
    pub why: Option<String>,
    /// When it ended.
    pub ended: Instant,
    /// No answer came within the request's timeout.
    pub timed_out: bool,
}

impl Attempt {
    /// A request that could not be sent (a template or a region that does not resolve): certainly not done.
    fn not_sent(why: String) -> Attempt {
        Attempt {
            region: String::new(),
            status: None,
            ms: 0.0,
            outcome: Outcome::Failed,
            why: Some(why),
            ended: Instant::now(),
            timed_out: false,
        }
    }
}

/// One step of one run.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The step's name.
    pub step: String,
    /// Every attempt, the first one first.
    pub attempts: Vec<Attempt>,
    /// `Ok` if any attempt succeeded; else `Unknown` if any may have taken effect; else `Refused` if any was
    /// refused; else `Failed`.
    pub outcome: Outcome,
    /// The journey's fault was in force when it started or when it ended.
    pub in_fault: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Every step succeeded.
    Completed,
    /// A step was refused with an expected status.
    Refused { step: String, status: u16 },
    /// A step failed or has an unknown outcome.
    Failed { step: String, why: String },
}

/// One run of a journey.
#[derive(Debug, Clone)]
pub struct Run {
    /// The journey's name.
    pub journey: String,
    /// Its instance number.
    pub instance: u32,
    /// Its home region.
    pub home: String,
    /// Its variables at the end.
    pub vars: Vars,
    /// Its steps, as far as it got.
    pub steps: Vec<StepRecord>,
    /// How it ended.
    pub end: End,
    /// From its first request to its end, in ms.
    pub total_ms: f64,
}

impl Run {
    /// `journey#instance`, as violations list it.
    pub fn id(&self) -> String {
        format!("{}#{}", self.journey, self.instance)
    }

    /// How its step `name` ended, if it got there.
    pub fn step_outcome(&self, name: &str) -> Option<Outcome> {
        self.steps.iter().find(|s| s.step == name).map(|s| s.outcome)
    }
}

/// The source of a run's `uuid`s: a stream of the run seed per run token and journey run, so one seed and token
/// give the same keys, and another token (a load run's) other keys.
fn uuids(target: &Target, j: &Journey, instance: u32) -> rand_chacha::ChaCha8Rng {
    crate::drive::seed::rng(target.seed, &format!("journey/{}/{}/{instance}", target.run, j.name))
}

/// The built-in and `vars` variables of instance `instance` (member `member` of group `group`, at home in `home`).
fn instance_vars(
    target: &Target,
    j: &Journey,
    instance: u32,
    home: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Vars, String> {
    let (group, member) = (instance / j.group, instance % j.group);
    let n = target.regions.len();
    let mut vars: Vars = [
        ("region", Value::from(target.regions[home].0.clone())),
        ("other", Value::from(target.regions[(home + 1) % n].0.clone())),
        ("instance", Value::from(instance)),
        ("group", Value::from(group)),
        ("member", Value::from(member)),
        ("run", Value::from(target.run.clone())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    fresh(&mut vars, rng);
    let mut own = Vars::new();
    for (k, t) in &j.vars {
        own.insert(k.clone(), Value::from(template::render(t, &vars)?));
    }
    vars.extend(own);
    Ok(vars)
}

/// Sets the variables that change at every use: `uuid` and `now_ms`.
fn fresh(vars: &mut Vars, rng: &mut rand_chacha::ChaCha8Rng) {
    use rand::Rng;
    let uuid = format!("{:032x}", rng.random::<u128>());
    let uuid = format!("{}-{}-{}-{}-{}", &uuid[..8], &uuid[8..12], &uuid[12..16], &uuid[16..20], &uuid[20..]);
    vars.insert("uuid".into(), Value::from(uuid));
    vars.insert("now_ms".into(), Value::from(crate::drive::clock::now_ms()));
}

/// Every instance's home region: group `g`'s members start in regions `g`, `g + 1`, … so that a group's
/// concurrent attempts land in different regions.
fn home_of(j: &Journey, instance: u32, regions: usize) -> usize {
    ((instance / j.group + instance % j.group) as usize) % regions
}

/// Runs every instance of `j`: groups start together, at most `concurrency` instances at once. Stops starting new
/// ones when `cancel` fires. With `gate`, every run waits at the gate's step until the gate opens.
pub async fn run_journey(
    target: &Target,
    j: &Journey,
    cancel: &CancellationToken,
    gate: Option<Arc<FaultGate>>,
) -> Vec<Run> {
    let limit = j.concurrency.unwrap_or(j.instances).max(j.group) as usize;
    let slots = Arc::new(Semaphore::new(limit));
    let mut tasks = tokio::task::JoinSet::new();
    let groups = j.instances.div_ceil(j.group);
    for g in 0..groups {
        let members: Vec<u32> = (g * j.group..((g + 1) * j.group).min(j.instances)).collect();
        let permit = tokio::select! {
            p = slots.clone().acquire_many_owned(members.len() as u32) => p,
            _ = cancel.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let permit = Arc::new(permit);
        for instance in members {
            let (target, j, permit, gate) = (target.clone(), j.clone(), permit.clone(), gate.clone());
            tasks.spawn(async move {
                let run = run_instance(&target, &j, instance, gate.as_deref(), None).await;
                drop(permit);
                run
            });
        }
    }
    let mut runs = Vec::with_capacity(j.instances as usize);
    while let Some(r) = tasks.join_next().await {
        if let Ok(run) = r {
            runs.push(run);
        }
    }
    runs.sort_by_key(|r| r.instance);
    runs
}

/// What sees each step of a run as soon as it ends (the load runs record requests so, and keep those of an
/// instance they abandon).
pub(super) type OnStep<'a> = Option<&'a (dyn Fn(&StepRecord) + Sync)>;

/// One run, bounded by twice its deadline.
pub(super) async fn run_instance(
    target: &Target,
    j: &Journey,
    instance: u32,
    gate: Option<&FaultGate>,
    on_step: OnStep<'_>,
) -> Run {
    let home = home_of(j, instance, target.regions.len());
    let start = Instant::now();
    let mut run = Run {
        journey: j.name.clone(),
        instance,
        home: target.regions[home].0.clone(),
        vars: Vars::new(),
        steps: Vec::new(),
        end: End::Completed,
        total_ms: 0.0,
    };
    let limit = Duration::from_millis(j.deadline_ms.saturating_mul(2));
    let mut rng = uuids(target, j, instance);
    // Whether this run has passed the gate (or never will): it counts there exactly once.
    let passed = std::sync::atomic::AtomicBool::new(gate.is_none());
    let steps = async {
        run.vars = match instance_vars(target, j, instance, home, &mut rng) {
            Ok(v) => v,
            Err(why) => return End::Failed { step: "vars".into(), why },
        };
        for step in &j.steps {
            if let Some(g) = gate
                && g.step == step.name
                && !passed.swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                g.arrive().await;
            }
            let fault_at_start = gate.is_some_and(FaultGate::active);
            let mut rec = run_step(target, step, home, &mut run.vars, &mut rng, j.timeout_ms).await;
            rec.in_fault = fault_at_start || gate.is_some_and(FaultGate::active);
            if let Some(f) = on_step {
                f(&rec);
            }
            let outcome = rec.outcome;
            let last = rec.attempts.last().cloned();
            run.steps.push(rec);
            match outcome {
                Outcome::Ok => {}
                Outcome::Refused => {
                    return End::Refused { step: step.name.clone(), status: last.and_then(|a| a.status).unwrap_or(0) };
                }
                Outcome::Failed | Outcome::Unknown => {
                    let why = last.and_then(|a| a.why).unwrap_or_else(|| "failed".into());
                    return End::Failed { step: step.name.clone(), why };
                }
            }
            if step.think_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.think_ms)).await;
            }
        }
        End::Completed
    };
    let ended = tokio::time::timeout(limit, steps).await;
    if let Some(g) = gate
        && !passed.swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        g.leave();
    }
    run.end = match ended {
        Ok(end) => end,
        Err(_) => End::Failed {
            step: j.steps.get(run.steps.len()).map_or_else(String::new, |s| s.name.clone()),
            why: format!("did not finish within {:.0} s, twice its deadline", limit.as_secs_f64()),
        },
    };
    run.total_ms = start.elapsed().as_secs_f64() * 1000.0;
    run
}

/// A rendered request, sent as is by every attempt of a step.
struct Request {
    timeout: Duration,
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

/// One step: its request, rendered once, sent to its region and then retried as its `retry` policies say, one
/// after the other. A successful answer's extractions are added to `vars`.
async fn run_step(
    target: &Target,
    step: &Step,
    home: usize,
    vars: &mut Vars,
    rng: &mut rand_chacha::ChaCha8Rng,
    timeout_ms: u64,
) -> StepRecord {
    let mut rec =
        StepRecord { step: step.name.clone(), attempts: Vec::new(), outcome: Outcome::Failed, in_fault: false };
    fresh(vars, rng);
    let prepared = render(step, vars, Duration::from_millis(timeout_ms))
        .and_then(|r| Ok((r, target.pick(step.region.as_deref(), home)?)));
    let (request, first) = match prepared {
        Ok(x) => x,
        Err(why) => {
            rec.attempts.push(Attempt::not_sent(why));
            return rec;
        }
    };
    let mut extracted = None;
    let (attempt, body) = send(target, first, &request, step, vars).await;
    if attempt.outcome == Outcome::Ok {
        extracted = body;
    }
    rec.attempts.push(attempt);
    'policies: for r in &step.retry {
        for _ in 0..r.times {
            let last = rec.attempts.last().map(|a| a.outcome);
            let again = match r.when {
                RetryWhen::Always => true,
                RetryWhen::Unknown => last == Some(Outcome::Unknown),
                RetryWhen::UnlessOk => matches!(last, Some(Outcome::Failed | Outcome::Unknown)),
            };
            if !again {
                break;
            }
            let region = match r.region.as_deref() {
                None => first,
                which => match target.pick(which, home) {
                    Ok(x) => x,
                    Err(why) => {
                        rec.attempts.push(Attempt::not_sent(why));
                        break 'policies;
                    }
                },
            };
            if r.backoff_ms > 0 {
                tokio::time::sleep(Duration::from_millis(r.backoff_ms)).await;
            }
            let (attempt, body) = send(target, region, &request, step, vars).await;
            if attempt.outcome == Outcome::Ok && extracted.is_none() {
                extracted = body;
            }
            rec.attempts.push(attempt);
        }
    }
    rec.outcome = if extracted.is_some() {
        Outcome::Ok
    } else {
        let seen = |o: Outcome| rec.attempts.iter().any(|a| a.outcome == o);
        if seen(Outcome::Unknown) {
            Outcome::Unknown
        } else if seen(Outcome::Refused) {
            Outcome::Refused
        } else {
            Outcome::Failed
        }
    };
    if let Some(body) = extracted {
        for (var, p) in &step.extract {
            if let Some(v) = body.pointer(p) {
                vars.insert(var.clone(), v.clone());
            }
        }
    }
    rec
}

/// The step's request with every template rendered.
fn render(step: &Step, vars: &Vars, timeout: Duration) -> Result<Request, String> {
    let method =
        reqwest::Method::from_bytes(step.method.as_bytes()).map_err(|_| format!("bad method {}", step.method))?;
    let mut headers = Vec::new();
    for (k, v) in &step.headers {
        headers.push((k.clone(), template::render(v, vars)?));
    }
    let body = step.body.as_ref().map(|b| template::render_json(b, vars)).transpose()?;
    Ok(Request { timeout, method, path: template::render(&step.path, vars)?, headers, body })
}

/// Sends `req` and reads the whole answer: its status and body.
async fn fetch(req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

/// The host of a base URL, for transport errors.
fn host_of(base: &str) -> &str {
    base.split("://").nth(1).unwrap_or(base).split('/').next().unwrap_or(base)
}

/// Sends `request` to region `region` and judges the answer by `step`; the answer's JSON when it is a success.
async fn send(target: &Target, region: usize, request: &Request, step: &Step, vars: &Vars) -> (Attempt, Option<Value>) {
    let (name, base) = target.endpoint(region);
    let name = name.to_string();
    let url = format!("{base}{}", request.path);
    let mut req = target.client.request(request.method.clone(), &url).timeout(request.timeout);
    for (k, v) in &request.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(b) = &request.body {
        req = req.json(b);
    }
    let start = Instant::now();
    let answer = fetch(req).await;
    let ended = Instant::now();
    let ms = ended.duration_since(start).as_secs_f64() * 1000.0;
    let timed_out = matches!(&answer, Err(e) if e.is_timeout());
    let attempt = |status, outcome, why: Option<String>| Attempt {
        region: name.clone(),
        status,
        ms,
        outcome,
        why,
        ended,
        timed_out,
    };
    let (status, bytes) = match answer {
        Ok(x) => x,
        Err(e) => {
            let cause = crate::net::transport_problem(&e, host_of(base), None);
            let (outcome, why) = if e.is_connect() {
                (Outcome::Failed, format!("{name} ({url}) is unreachable: {cause}"))
            } else if e.is_timeout() {
                (Outcome::Unknown, format!("{name} ({url}) did not answer in time"))
            } else {
                (Outcome::Unknown, format!("{name} ({url}): {cause}"))
            };
            return (attempt(None, outcome, Some(why)), None);
        }
    };
    let expected = if step.expect.is_empty() { (200..300).contains(&status) } else { step.expect.contains(&status) };
    let excerpt = || String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).trim().to_string();
    if !expected {
        let outcome = if status >= 500 { Outcome::Unknown } else { Outcome::Failed };
        let why = format!("{} {} in {name} answered {status}: {}", step.method, request.path, excerpt());
        return (attempt(Some(status), outcome, Some(why)), None);
    }
    if !(200..300).contains(&status) {
        let why = format!("{} {} in {name} was refused with {status}: {}", step.method, request.path, excerpt());
        return (attempt(Some(status), Outcome::Refused, Some(why)), None);
    }
    let needs_body = !step.extract.is_empty() || !step.asserts.is_empty();
    let body: Value = if bytes.len() > BODY_BYTES_MAX {
        return (
            attempt(Some(status), Outcome::Failed, Some(format!("the answer is over {BODY_BYTES_MAX} bytes"))),
            None,
        );
    } else if bytes.is_empty() && !needs_body {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) if !needs_body => Value::Null,
            Err(e) => {
                let why =
                    format!("{} {} in {name}: the answer is not JSON ({e}): {}", step.method, request.path, excerpt());
                return (attempt(Some(status), Outcome::Failed, Some(why)), None);
            }
        }
    };
    for (var, p) in &step.extract {
        if body.pointer(p).is_none() {
            let why =
                format!("{} {} in {name}: no {p} in the answer (for {var}): {}", step.method, request.path, excerpt());
            return (attempt(Some(status), Outcome::Failed, Some(why)), None);
        }
    }
    for a in &step.asserts {
        let want = match template::render_json(&a.equals, vars) {
            Ok(v) => v,
            Err(why) => return (attempt(Some(status), Outcome::Failed, Some(why)), None),
        };
        let got = body.pointer(&a.pointer);
        if got != Some(&want) {
            let got = got.map_or_else(|| "nothing".to_string(), Value::to_string);
            let why = format!("{} {} in {name}: {} is {got}, expected {want}", step.method, request.path, a.pointer);
            return (attempt(Some(status), Outcome::Failed, Some(why)), None);
        }
    }
    (attempt(Some(status), Outcome::Ok, None), Some(body))
}

/// The subjects of `inv`: every value its variable took in `runs` of its journey, with how the judged step ended.
pub fn subjects(inv: &Invariant, runs: &[Run]) -> Vec<Subject> {
    let mut by_key: BTreeMap<String, Subject> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.journey == inv.journey) {
        let Some(v) = run.vars.get(&inv.per) else { continue };
        let key = template::text(v);
        let s = by_key.entry(key.clone()).or_insert_with(|| Subject { key, ..Subject::default() });
        s.journeys.push(run.id());
        let rec = inv.step.as_deref().and_then(|step| run.steps.iter().find(|s| s.step == step));
        match rec.map(|r| (r.outcome, r.in_fault)) {
            Some((Outcome::Ok, _)) => s.ok += 1,
            Some((Outcome::Unknown, _)) => s.unknown += 1,
            Some((Outcome::Refused, in_fault)) => {
                s.refused += 1;
                s.refused_in_fault += u64::from(in_fault);
            }
            Some((Outcome::Failed, _)) | None => {}
        }
    }
    by_key.into_values().collect()
}

/// Reads `inv`'s resource for `key` in every region.
pub async fn read_all(target: &Target, inv: &Invariant, key: &str) -> BTreeMap<String, Read> {
    let vars: Vars =
        [(inv.per.clone(), Value::from(key.to_string())), ("run".to_string(), Value::from(target.run.clone()))].into();
    let rendered = template::render(&inv.read.path, &vars).and_then(|path| {
        let headers = inv.read.headers.iter().map(|(k, v)| Ok((k.clone(), template::render(v, &vars)?)));
        Ok((path, headers.collect::<Result<Vec<_>, String>>()?))
    });
    let reads = target.regions.iter().map(|(region, base)| {
        let rendered = &rendered;
        async move {
            let read = match rendered {
                Ok((path, headers)) => read_one(target, inv, base, path, headers).await,
                Err(e) => Read::Error(e.clone()),
            };
            (region.clone(), read)
        }
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

async fn read_one(target: &Target, inv: &Invariant, base: &str, path: &str, headers: &[(String, String)]) -> Read {
    let mut req = target.client.get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let (status, bytes) = match fetch(req).await {
        Ok(x) => x,
        Err(e) if e.is_timeout() => return Read::Error(format!("GET {path} did not answer in time")),
        Err(e) => {
            return Read::Error(format!("GET {path}: {}", crate::net::transport_problem(&e, host_of(base), None)));
        }
    };
    if status == 404 && inv.read.count.is_some() {
        return Read::Count(0);
    }
    if !(200..300).contains(&status) {
        return Read::Error(format!("GET {path} answered {status}"));
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return Read::Error(format!("GET {path}: the answer is not JSON ({e})")),
    };
    let p = inv.pointer();
    match (body.pointer(p), inv.read.count.is_some()) {
        (Some(Value::Array(a)), true) => Read::Count(a.len() as u64),
        (Some(v), true) => match v.as_u64() {
            Some(n) => Read::Count(n),
            None => Read::Error(format!("GET {path}: {p} is {v}, not an array or a count")),
        },
        (Some(v), false) => Read::Value(v.to_string()),
        (None, _) => Read::Error(format!("GET {path}: no {p} in the answer")),
    }
}

/// Reads the subjects at `indices` in every region, at most `READS_IN_FLIGHT_MAX` at once.
async fn read_round(
    target: &Target,
    inv: &Invariant,
    subjects: &[Subject],
    indices: &[usize],
) -> Vec<(usize, BTreeMap<String, Read>)> {
    use futures::StreamExt;
    futures::stream::iter(indices.iter().map(|&i| {
        let key = subjects[i].key.clone();
        async move { (i, read_all(target, inv, &key).await) }
    }))
    .buffer_unordered(READS_IN_FLIGHT_MAX)
    .collect()
    .await
}

/// Reads every subject in every region after the journeys, again every `READ_POLL` until the invariant holds for it
/// (replication may lag) or `inv.within_ms` has passed; the last reads are kept.
pub async fn read_after(target: &Target, inv: &Invariant, subjects: &mut [Subject]) {
    let kind = inv.kind();
    let deadline = Instant::now() + Duration::from_millis(inv.within_ms);
    let mut pending: Vec<usize> = (0..subjects.len()).collect();
    loop {
        for (i, reads) in read_round(target, inv, subjects, &pending).await {
            subjects[i].after = reads;
        }
        pending.retain(|&i| !kind.judge(std::slice::from_ref(&subjects[i])).holds());
        if pending.is_empty() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(READ_POLL).await;
    }
}

/// Reads every subject in every region before the journeys (conservation's initial stock), again every
/// `READ_POLL` until every region answers the same for it (the setup journeys' writes may still be replicating) or
/// `inv.within_ms` has passed; the last reads are kept. So the journeys start from stock every region has seen.
pub async fn read_before(target: &Target, inv: &Invariant, subjects: &mut [Subject]) {
    let deadline = Instant::now() + Duration::from_millis(inv.within_ms);
    let mut pending: Vec<usize> = (0..subjects.len()).collect();
    loop {
        for (i, reads) in read_round(target, inv, subjects, &pending).await {
            subjects[i].before = reads;
        }
        pending.retain(|&i| !agreed(&subjects[i].before));
        if pending.is_empty() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(READ_POLL).await;
    }
}

/// Whether every region was read and answered the same.
fn agreed(reads: &BTreeMap<String, Read>) -> bool {
    let mut values = reads.values();
    let first = values.next();
    first.is_some_and(|f| !matches!(f, Read::Error(_)) && values.all(|v| v == f))
}

/// The values conservation judges, known before the journeys: `per` as each instance's `vars` render it.
pub fn planned_keys(target: &Target, j: &Journey, per: &str) -> Vec<String> {
    let mut keys: Vec<String> = (0..j.instances)
        .filter_map(|i| instance_vars(target, j, i, home_of(j, i, target.regions.len()), &mut uuids(target, j, i)).ok())
        .filter_map(|v| v.get(per).map(template::text))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey(instances: u32, group: u32) -> Journey {
        toml::from_str(&format!(
            "name = \"j\"\ncheck = \"payment\"\ninstances = {instances}\ngroup = {group}\n[vars]\nkey = \"k-{{{{run}}}}-{{{{group}}}}\"\n[[step]]\nname = \"s\"\npath = \"/\"\n"
        ))
        .unwrap()
    }

    /// Goal: a group's members start in different regions and share `group`; `run` and `vars` render.
    #[test]
    fn groups_spread_over_regions() {
        let target = Target {
            regions: ["a", "b", "c"].iter().map(|r| (r.to_string(), format!("http://{r}"))).collect(),
            client: crate::probe::client(&crate::config::Deployment::default()),
            run: "r1".into(),
            seed: 7,
            router: None,
        };
        let j = journey(6, 3);
        let homes: Vec<usize> = (0..6).map(|i| home_of(&j, i, 3)).collect();
        assert_eq!(homes, vec![0, 1, 2, 1, 2, 0]);
        let v = instance_vars(&target, &j, 4, 2, &mut uuids(&target, &j, 4)).unwrap();
        assert_eq!(v["key"], "k-r1-1");
        assert_eq!((v["region"].as_str(), v["other"].as_str(), v["member"].as_u64()), (Some("c"), Some("a"), Some(1)));
        assert_eq!(planned_keys(&target, &j, "key"), vec!["k-r1-0", "k-r1-1"]);
    }

    /// Goal: a step's region resolves to home, the next region, a named one, or the router; a router step on a
    /// deployment without a routing record is an error that says what to set.
    #[test]
    fn steps_go_home_elsewhere_or_through_the_router() {
        let mut target = Target {
            regions: ["a", "b", "c"].iter().map(|r| (r.to_string(), format!("http://{r}"))).collect(),
            client: crate::probe::client(&crate::config::Deployment::default()),
            run: "r1".into(),
            seed: 7,
            router: None,
        };
        assert_eq!([None, Some("other"), Some("a")].map(|w| target.pick(w, 2)), [Ok(2), Ok(0), Ok(0)]);
        assert!(target.pick(Some("router"), 0).unwrap_err().contains("records.latency"));
        assert!(target.pick(Some("mars"), 0).unwrap_err().contains("no region mars"));
        target.router = Some("http://router".into());
        let i = target.pick(Some("router"), 0).unwrap();
        assert_eq!((i, target.endpoint(i)), (3, ("router", "http://router")));
        assert_eq!(target.endpoint(1), ("b", "http://b"));
    }
}
