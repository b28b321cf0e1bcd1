//! The load plan: what to request, how often and for how long, as plain data (JSON in and out, so a plan crosses
//! into a worker process unchanged).
//!
//! Two models, as in k6. The closed model runs virtual users (VUs), each with its own connection, each sending
//! its next request only after the previous one answered (and an optional think time). The open model starts
//! iterations on a schedule whatever the responses do, so a stalled server shows up as latency measured from the
//! intended start (the coordinated-omission correction of wrk2) instead of as fewer requests.

use crate::error::LoadError;
use crate::threshold::Threshold;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Most VUs or connections a single plan may ask for; the descriptor limit usually bites earlier.
pub const CONNECTIONS_MAX: u32 = 1_000_000;
/// Longest run, so a typo cannot start a run that never ends.
pub const DURATION_MS_MAX: u64 = 7 * 24 * 3_600_000;
/// Most windows in a result; longer runs get wider windows, which keeps memory constant.
pub const WINDOWS_MAX: u64 = 3600;
/// Most phases a plan may name: every completed request is counted in each phase holding its completion.
pub const PHASES_MAX: usize = 16;
/// Smallest window, below which per-window percentiles are mostly noise.
pub const WINDOW_MS_MIN: u64 = 10;
/// Most captured response headers per plan (each costs a bounded map per request name).
pub const CAPTURE_HEADERS_MAX: usize = 16;
/// Highest arrival rate a plan may ask for.
pub const RATE_PER_S_MAX: f64 = 10_000_000.0;

fn default_request_timeout_ms() -> u64 {
    5_000
}
fn default_window_ms() -> u64 {
    1_000
}
fn default_method() -> String {
    "GET".to_string()
}
fn default_weight() -> u32 {
    1
}

/// A complete load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The requests; each iteration picks one by weight.
    pub targets: Vec<RequestSpec>,
    /// How iterations are started.
    pub executor: Executor,
    /// Limit of one request, connect included; a request over it counts as a `timeout` error.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Most connections open at once. Closed model: at least the peak VUs (default: exactly that). Open model:
    /// the connections iterations share (default: `max_in_flight`).
    #[serde(default)]
    pub connections_max: Option<u32>,
    /// Width of a chart window; widened if the run would need more than `WINDOWS_MAX` windows.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// Response headers whose values are counted per request name, e.g. `x-served-by`.
    #[serde(default)]
    pub capture_headers: Vec<String>,
    /// Pass/fail criteria evaluated against the result.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// Seed of the weighted request choice.
    #[serde(default)]
    pub seed: u64,
    /// Worker threads, each with its own runtime (default: the CPUs this process may run on).
    #[serde(default)]
    pub workers: Option<u32>,
    /// Allow targets that are not loopback addresses; the user answers for them.
    #[serde(default)]
    pub allow_remote: bool,
    /// PEM file of the CA certificates `https://` targets must chain to (none: the system's roots). The plan reaches a
    /// load-worker child on its stdin, never in its arguments, like the headers (which may carry a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Named time ranges of the run with their own latency histogram and counts, so that one run can feed several
    /// verdicts (a ramp, a hold, a spike) with exact percentiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// Give the run up with `LoadError::NoConnection` when no connection has opened this long after the start (or
    /// by the end of a shorter run). None: keep trying, and count every attempt as a `connect` error (a region
    /// down for a whole fault window is a measurement there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_connection_abort_ms: Option<u64>,
    /// Address every connection is made from (like curl's `--interface`), so that a router that places clients
    /// by their address sees this one; none: the system's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<std::net::IpAddr>,
}

/// A named time range of a run: requests completed in `[from_ms, to_ms)` after the start are counted in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name in the result.
    pub name: String,
    /// Start, ms after the run's start.
    pub from_ms: u64,
    /// End (excluded), ms after the run's start.
    pub to_ms: u64,
}

/// One kind of request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Name in the result and in scoped thresholds.
    pub name: String,
    /// `http://host[:port][/path][?query]`.
    pub url: String,
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Request body, sent with a `Content-Length`.
    #[serde(default)]
    pub body: Option<String>,
    /// Relative share of iterations.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// One stage of a ramp: move linearly to `target` over `duration_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Length of the stage.
    pub duration_ms: u64,
    /// VUs (rounded) or iterations per second at the end of the stage.
    pub target: f64,
}

/// How iterations are started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Executor {
    /// Closed model: a fixed number of VUs for a duration.
    ConstantVus {
        /// VUs, each with one connection.
        vus: u32,
        /// Length of the run.
        duration_ms: u64,
        /// Pause of a VU between its iterations.
        #[serde(default)]
        think_time_ms: u64,
    },
    /// Closed model: the number of active VUs follows the stages linearly (a spike is a short stage).
    RampingVus {
        /// Active VUs at the start.
        start_vus: u32,
        /// The stages, in order.
        stages: Vec<Stage>,
        /// Pause of a VU between its iterations.
        #[serde(default)]
        think_time_ms: u64,
    },
    /// Open model: iterations start at a fixed rate whatever the responses.
    ConstantArrivalRate {
        /// Iterations started per second.
        rate_per_s: f64,
        /// Length of the run.
        duration_ms: u64,
        /// Most iterations in progress (waiting for a connection or on the wire); past it an iteration is dropped.
        max_in_flight: u32,
    },
    /// Open model: the rate follows the stages linearly.
    RampingArrivalRate {
        /// Iterations per second at the start.
        start_rate: f64,
        /// The stages, in order.
        stages: Vec<Stage>,
        /// Most iterations in progress; past it an iteration is dropped.
        max_in_flight: u32,
    },
}

impl Executor {
    /// Length of the schedule.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(match self {
            Executor::ConstantVus { duration_ms, .. } | Executor::ConstantArrivalRate { duration_ms, .. } => {
                *duration_ms
            }
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages.iter().map(|s| s.duration_ms).sum()
            }
        })
    }

    /// Whether this is the open model.
    pub fn is_open(&self) -> bool {
        matches!(self, Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. })
    }

    /// Think time of a closed-model VU.
    pub fn think_time(&self) -> Duration {
        match self {
            Executor::ConstantVus { think_time_ms, .. } | Executor::RampingVus { think_time_ms, .. } => {
                Duration::from_millis(*think_time_ms)
            }
            _ => Duration::ZERO,
        }
    }

    /// Peak VUs (closed model), or `max_in_flight` (open model).
    pub fn concurrency_max(&self) -> u32 {
        match self {
            Executor::ConstantVus { vus, .. } => *vus,
            Executor::RampingVus { start_vus, stages, .. } => {
                stages.iter().map(|s| round_vus(s.target)).fold(*start_vus, u32::max)
            }
            Executor::ConstantArrivalRate { max_in_flight, .. }
            | Executor::RampingArrivalRate { max_in_flight, .. } => *max_in_flight,
        }
    }

    /// Active VUs at `t` after the start (closed model; 0 for the open model).
    pub fn vus_at(&self, t: Duration) -> u32 {
        match self {
            Executor::ConstantVus { vus, duration_ms, .. } if t.as_millis() < u128::from(*duration_ms) => *vus,
            Executor::RampingVus { start_vus, stages, .. } => {
                piecewise(f64::from(*start_vus), stages, t).map_or(0, round_vus)
            }
            _ => 0,
        }
    }

    /// Scheduled iterations per second at `t` (open model; 0 for the closed model).
    pub fn rate_at(&self, t: Duration) -> f64 {
        match self {
            Executor::ConstantArrivalRate { rate_per_s, duration_ms, .. }
                if t.as_millis() < u128::from(*duration_ms) =>
            {
                *rate_per_s
            }
            Executor::RampingArrivalRate { start_rate, stages, .. } => piecewise(*start_rate, stages, t).unwrap_or(0.0),
            _ => 0.0,
        }
    }

    /// The open model's schedule as linear segments `(start_s, length_s, rate_start, rate_end)`.
    pub(crate) fn rate_segments(&self) -> Vec<(f64, f64, f64, f64)> {
        match self {
            Executor::ConstantArrivalRate { rate_per_s, duration_ms, .. } => {
                vec![(0.0, *duration_ms as f64 / 1000.0, *rate_per_s, *rate_per_s)]
            }
            Executor::RampingArrivalRate { start_rate, stages, .. } => {
                let mut out = Vec::with_capacity(stages.len());
                let (mut t, mut r) = (0.0, *start_rate);
                for s in stages {
                    let d = s.duration_ms as f64 / 1000.0;
                    out.push((t, d, r, s.target));
                    t += d;
                    r = s.target;
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

fn round_vus(v: f64) -> u32 {
    v.round().clamp(0.0, f64::from(CONNECTIONS_MAX)) as u32
}

/// Linear interpolation through the stages; `None` after the last one.
fn piecewise(start: f64, stages: &[Stage], t: Duration) -> Option<f64> {
    let t_ms = t.as_secs_f64() * 1000.0;
    let (mut t0, mut v0) = (0.0, start);
    for s in stages {
        let d = s.duration_ms as f64;
        if t_ms < t0 + d {
            return Some(v0 + (s.target - v0) * (t_ms - t0) / d);
        }
        t0 += d;
        v0 = s.target;
    }
    None
}

impl Plan {
    /// Checks every bound and rule that does not need the network.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::InvalidPlan(m));
        if self.targets.is_empty() {
            return bad("no targets; add at least one request".into());
        }
        let mut phases = std::collections::BTreeSet::new();
        for p in &self.phases {
            if p.name.is_empty() || !phases.insert(p.name.as_str()) || p.from_ms >= p.to_ms {
                return bad(format!("phases need unique names and from_ms < to_ms; {:?} has neither", p.name));
            }
        }
        if self.phases.len() > PHASES_MAX {
            return bad(format!("{} phases; at most {PHASES_MAX}", self.phases.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.targets {
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return bad(format!("request names must be unique and non-empty; {:?} is not", t.name));
            }
            parse_url(&t.url)?;
            if t.method.is_empty() || !t.method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return bad(format!("request {:?}: method {:?} is not an HTTP method", t.name, t.method));
            }
            for (k, v) in &t.headers {
                if k.is_empty() || !k.bytes().all(is_token_byte) || v.bytes().any(|b| b == b'\r' || b == b'\n') {
                    return bad(format!("request {:?}: header {k:?} is not a valid header", t.name));
                }
            }
        }
        if self.targets.iter().map(|t| u64::from(t.weight)).sum::<u64>() == 0 {
            return bad("the weights of the targets add up to 0".into());
        }
        let duration_ms = self.executor.duration().as_millis() as u64;
        if duration_ms == 0 || duration_ms > DURATION_MS_MAX {
            return bad(format!("duration {duration_ms} ms is outside 1 ms ..= {DURATION_MS_MAX} ms"));
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms > 3_600_000 {
            return bad(format!("request_timeout_ms {} is outside 1 ..= 3600000", self.request_timeout_ms));
        }
        if self.window_ms < WINDOW_MS_MIN {
            return bad(format!("window_ms {} is below {WINDOW_MS_MIN}", self.window_ms));
        }
        if self.capture_headers.len() > CAPTURE_HEADERS_MAX {
            return bad(format!("at most {CAPTURE_HEADERS_MAX} captured headers"));
        }
        let c = self.executor.concurrency_max();
        if c == 0 || c > CONNECTIONS_MAX {
            return bad(format!("peak VUs or max_in_flight {c} is outside 1 ..= {CONNECTIONS_MAX}"));
        }
        match &self.executor {
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                if stages.is_empty() {
                    return bad("a ramping executor needs at least one stage".into());
                }
                if stages.iter().any(|s| !s.target.is_finite() || s.target < 0.0) {
                    return bad("stage targets must be finite and not negative".into());
                }
            }
            _ => {}
        }
        let rates: Vec<f64> = match &self.executor {
            Executor::ConstantArrivalRate { rate_per_s, .. } => vec![*rate_per_s],
            Executor::RampingArrivalRate { start_rate, stages, .. } => {
                std::iter::once(*start_rate).chain(stages.iter().map(|s| s.target)).collect()
            }
            _ => vec![],
        };
        if rates.iter().any(|r| !r.is_finite() || *r < 0.0 || *r > RATE_PER_S_MAX) {
            return bad(format!("rates must be within 0 ..= {RATE_PER_S_MAX} per second"));
        }
        if let Some(conns) = self.connections_max {
            if conns == 0 || conns > CONNECTIONS_MAX {
                return bad(format!("connections_max {conns} is outside 1 ..= {CONNECTIONS_MAX}"));
            }
            if !self.executor.is_open() && conns < c {
                return bad(format!(
                    "the plan has up to {c} VUs but connections_max is {conns}; each VU owns one connection, so \
                     raise connections_max or lower the VUs"
                ));
            }
        }
        if self.workers == Some(0) {
            return bad("workers must be at least 1".into());
        }
        Ok(())
    }

    /// Connections the run may hold open at once.
    pub fn connections_needed(&self) -> u32 {
        let c = self.executor.concurrency_max();
        if self.executor.is_open() { self.connections_max.unwrap_or(c).min(c) } else { c }
    }

    /// Effective window width: `window_ms`, widened so that the run (plus its drain) fits `WINDOWS_MAX` windows.
    pub fn window(&self) -> Duration {
        let span_ms = self.executor.duration().as_millis() as u64 + self.request_timeout_ms;
        Duration::from_millis(self.window_ms.max(span_ms.div_ceil(WINDOWS_MAX - 1)))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The parts of an `http://` URL the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `https://`.
    pub tls: bool,
    /// Host as written (brackets kept for IPv6).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Parses `http://host[:port][/path][?query]`; `https` and anything else are refused with a reason.
pub fn parse_url(url: &str) -> Result<ParsedUrl, LoadError> {
    let bad = |why: &str| LoadError::InvalidPlan(format!("URL {url:?}: {why}"));
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err(bad("only http:// and https:// URLs are supported")),
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(bad("user info is not supported"));
    }
    let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[..end + 2];
        match &authority[end + 2..] {
            "" => (host, default_port),
            p => (host, p.strip_prefix(':').and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad port"))?),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() || path.bytes().any(|b| b <= b' ') {
        return Err(bad("needs a host and a path without spaces"));
    }
    Ok(ParsedUrl { tls, host: host.to_string(), port, path })
}

/// A request ready to send: its address and its bytes, rendered once.
#[derive(Debug)]
pub(crate) struct CompiledTarget {
    /// Name, for the result.
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The whole request, head and body.
    pub bytes: Box<[u8]>,
    /// A HEAD request has no response body whatever its headers say.
    pub is_head: bool,
    /// For `https://`: the TLS client and the name the certificate must carry.
    pub tls: Option<TlsTarget>,
    /// Address to connect from (`Plan::local_address`).
    pub local: Option<std::net::IpAddr>,
}

/// How to wrap a connection of an `https://` target.
#[derive(Clone)]
pub(crate) struct TlsTarget {
    /// TLS 1.3 client trusting the plan's CA.
    pub connector: tokio_rustls::TlsConnector,
    /// The host (an IP address or a DNS name) the certificate is verified against.
    pub name: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTarget({:?})", self.name)
    }
}

/// The shared client config (`crate::tls`) trusting the CA certificates in `ca_file`, or the system's roots.
fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<tokio_rustls::TlsConnector, LoadError> {
    let config = crate::tls::client_config(ca_file).map_err(LoadError::InvalidPlan)?;
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

/// Resolves and renders every target, refusing non-loopback addresses unless the plan allows remote targets.
pub(crate) fn compile_targets(plan: &Plan) -> Result<Vec<CompiledTarget>, LoadError> {
    let mut connector: Option<tokio_rustls::TlsConnector> = None;
    plan.targets
        .iter()
        .map(|t| {
            let u = parse_url(&t.url)?;
            let tls = if u.tls {
                let c = match &connector {
                    Some(c) => c.clone(),
                    None => {
                        let c = tls_connector(plan.ca_file.as_deref())?;
                        connector = Some(c.clone());
                        c
                    }
                };
                let host = u.host.trim_start_matches('[').trim_end_matches(']').to_string();
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| LoadError::InvalidPlan(format!("URL {:?}: bad TLS server name: {e}", t.url)))?;
                Some(TlsTarget { connector: c, name })
            } else {
                None
            };
            let host = u.host.trim_start_matches('[').trim_end_matches(']');
            // From a local address, only an address of its family can be reached.
            let local = plan.local_address.map(|a| a.to_canonical());
            let addr = (host, u.port)
                .to_socket_addrs()
                .map_err(|source| LoadError::Resolve { url: t.url.clone(), source })?
                .find(|a| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4()))
                .ok_or_else(|| LoadError::Resolve {
                    url: t.url.clone(),
                    source: std::io::Error::other(match local {
                        Some(l) => format!("no address of the family of the local address {l}"),
                        None => "no address".to_string(),
                    }),
                })?;
            if !plan.allow_remote && !addr.ip().is_loopback() {
                return Err(LoadError::RemoteTarget { url: t.url.clone(), addr });
            }
            let method = t.method.to_ascii_uppercase();
            let default_port = if u.tls { 443 } else { 80 };
            let host_header = if u.port == default_port { u.host.clone() } else { format!("{}:{}", u.host, u.port) };
            let mut s = format!("{method} {} HTTP/1.1\r\n", u.path);
            let has = |name: &str| t.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
            if !has("host") {
                s.push_str(&format!("Host: {host_header}\r\n"));
            }
            if !has("user-agent") {
                s.push_str("User-Agent: xregion-load\r\n");
            }
            for (k, v) in &t.headers {
                s.push_str(&format!("{k}: {v}\r\n"));
            }
            if let Some(body) = &t.body {
                s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            } else {
                s.push_str("\r\n");
            }
            Ok(CompiledTarget {
                name: t.name.clone(),
                addr,
                bytes: s.into_bytes().into_boxed_slice(),
                is_head: method == "HEAD",
                tls,
                local,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: URL parsing keeps host, port and path, and refuses what the engine cannot send.
    #[test]
    fn parses_urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b?c=1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8080, "/a/b?c=1"));
        let u = parse_url("http://localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("localhost", 80, "/"));
        let u = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("[::1]", 9, "/x"));
        let u = parse_url("http://h?q").unwrap();
        assert_eq!(u.path, "/?q");
        let u = parse_url("https://127.0.0.1/x").unwrap();
        assert_eq!((u.tls, u.port), (true, 443));
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
    }

    // Goal: ramps interpolate linearly between stage targets and stop after the last stage.
    #[test]
    fn ramps_are_linear() {
        let e = Executor::RampingVus {
            start_vus: 0,
            stages: vec![Stage { duration_ms: 1000, target: 10.0 }, Stage { duration_ms: 1000, target: 0.0 }],
            think_time_ms: 0,
        };
        assert_eq!(e.vus_at(Duration::from_millis(500)), 5);
        assert_eq!(e.vus_at(Duration::from_millis(1000)), 10);
        assert_eq!(e.vus_at(Duration::from_millis(1500)), 5);
        assert_eq!(e.vus_at(Duration::from_millis(2000)), 0);
        assert_eq!(e.concurrency_max(), 10);
        assert_eq!(e.duration(), Duration::from_secs(2));
    }

    // Goal: a non-loopback target is refused unless the plan allows remote targets.
    #[test]
    fn refuses_remote_targets() {
        let mut plan: Plan = serde_json::from_str(
            r#"{"targets":[{"name":"a","url":"http://192.0.2.1/"}],
                "executor":{"kind":"constant-vus","vus":1,"duration_ms":10}}"#,
        )
        .unwrap();
        assert!(matches!(compile_targets(&plan), Err(LoadError::RemoteTarget { .. })));
        plan.allow_remote = true;
        assert!(compile_targets(&plan).is_ok());
        plan.targets[0].url = "http://127.0.0.1:1/".into();
        plan.allow_remote = false;
        let t = compile_targets(&plan).unwrap();
        assert!(std::str::from_utf8(&t[0].bytes).unwrap().starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
    }
}
