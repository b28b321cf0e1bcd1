//! `xregion load URL`: a quick load run against one URL, like oha or hey, on the `xregion-load` engine; and the
//! hidden `load-worker` subcommand that runs a plan from stdin in its own process (`xregion_load::run_in_child`).
//! `xregion load --journey FILE --region NAME=URL…` runs a journey file's journeys as virtual users' scripts
//! instead (`journey::vu`), with per-step metrics.
//!
//! Flags are parsed into `LoadArgs`, then turned into a `Plan`: `--vus` (or `--connections` alone) selects the
//! closed model, `--rate` the open one. Exit code 1 when a threshold fails, 2 when the run could not be done.

use anyhow::Context as _;
use std::process::ExitCode;
use std::time::Duration;
use xregion_load::{Executor, LoadResult, Percentiles, Plan, RequestSpec, Threshold};

/// VUs (closed model) or connections (open model) when neither `--vus` nor `--connections` is given.
const CONNECTIONS_DEFAULT: u32 = 50;
/// In-flight iterations allowed per connection in the open model when `--max-in-flight` is not given.
const IN_FLIGHT_PER_CONNECTION: u32 = 100;
/// A run ends with an error when no connection has opened this long after its start (a wrong port, a server
/// not up): a result of connect errors alone measures nothing.
const NO_CONNECTION_ABORT_MS: u64 = 3_000;

/// Arguments of `xregion load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target URL, `http://host[:port]/path`. Only loopback addresses unless `--allow-remote`.
    #[arg(required_unless_present = "journey", conflicts_with = "journey")]
    pub url: Option<String>,
    /// Run a journey file's journeys (`docs/journeys.md`) as the VUs' scripts instead of one request: closed model,
    /// per-step metrics named `journey/step`. Needs `--region` for every region the journeys name.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rate", "max_in_flight", "method", "body", "capture_headers"])]
    pub journey: Option<std::path::PathBuf>,
    /// With `--journey`: a region and its application's base URL, `NAME=URL`, in order (the first is home to the
    /// first VU); repeat for each region.
    #[arg(long = "region", value_name = "NAME=URL", requires = "journey")]
    pub regions: Vec<String>,
    /// With `--journey`: the routing record's base URL, where steps with `region = "router"` go.
    #[arg(long, value_name = "URL", requires = "journey")]
    pub router: Option<String>,
    /// With `--journey`: run only this journey (and the setup journeys of its check); repeat for several.
    #[arg(long = "only", value_name = "JOURNEY", requires = "journey")]
    pub only: Vec<String>,
    /// Closed model: concurrent virtual users, each with its own connection (default: --connections, or 50).
    #[arg(long, conflicts_with = "rate")]
    pub vus: Option<u32>,
    /// Open model: requests started per second whatever the responses; latency is corrected for coordinated
    /// omission.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Length of the run, e.g. `10s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Connections: the VUs of the closed model, or the connections the open model shares (default 50).
    #[arg(long, short = 'c')]
    pub connections: Option<u32>,
    /// Open model: most requests in progress; past it a scheduled request is dropped (default: 100 per connection).
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// HTTP method.
    #[arg(long, short = 'm', default_value = "GET")]
    pub method: String,
    /// Request header `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, short = 'd')]
    pub body: Option<String>,
    /// Closed model: pause of each VU between its requests.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub think_time: Duration,
    /// Limit of one request, connect included.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Pass/fail criterion, e.g. `p95 < 200ms`, `error_rate < 1%`, `rps > 100`; repeat for several.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Response header whose values are counted, e.g. `x-served-by`; repeat for several.
    #[arg(long = "capture-header")]
    pub capture_headers: Vec<String>,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Seed of random choices (recorded in the result; default 0). With `--journey`, it also makes the journeys'
    /// `run` token and `uuid`s: without it, each run gets its own, so that a second run does not replay the first.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Allow a target that is not a loopback address. Only for hosts you are responsible for.
    #[arg(long)]
    pub allow_remote: bool,
    /// PEM file of the CA an `https://` target's certificate must chain to (TLS 1.3 only).
    #[arg(long, visible_alias = "ca-file")]
    pub ca: Option<std::path::PathBuf>,
    /// Connect from this local address, like curl's `--interface`.
    #[arg(long, value_name = "ADDR")]
    pub source_address: Option<std::net::IpAddr>,
    /// Print the full result as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// `--header` values as name and value.
    fn parsed_headers(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.headers
            .iter()
            .map(|h| {
                let (k, v) = h.split_once(':').with_context(|| format!("--header {h:?}: expected `Name: value`"))?;
                Ok((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    /// `--threshold` values, parsed.
    fn parsed_thresholds(&self) -> anyhow::Result<Vec<Threshold>> {
        Ok(self.thresholds.iter().map(|t| t.parse::<Threshold>()).collect::<Result<Vec<_>, _>>()?)
    }

    /// The plan these flags describe.
    pub fn to_plan(&self) -> anyhow::Result<Plan> {
        let duration_ms = u64::try_from(self.duration.as_millis()).context("--duration is too long")?;
        let headers = self.parsed_headers()?;
        let thresholds = self.parsed_thresholds()?;
        let (executor, connections_max) = match self.rate {
            Some(rate_per_s) => {
                let conns = self.connections.unwrap_or(CONNECTIONS_DEFAULT);
                let max_in_flight = self.max_in_flight.unwrap_or(conns.saturating_mul(IN_FLIGHT_PER_CONNECTION));
                (Executor::ConstantArrivalRate { rate_per_s, duration_ms, max_in_flight }, Some(conns))
            }
            None => {
                let vus = self.vus.or(self.connections).unwrap_or(CONNECTIONS_DEFAULT);
                let think_time_ms = self.think_time.as_millis() as u64;
                (Executor::ConstantVus { vus, duration_ms, think_time_ms }, self.connections.map(|c| c.max(vus)))
            }
        };
        Ok(Plan {
            targets: vec![RequestSpec {
                name: "load".into(),
                url: self.url.clone().unwrap_or_default(),
                method: self.method.clone(),
                headers,
                body: self.body.clone(),
                weight: 1,
            }],
            executor,
            request_timeout_ms: self.timeout.as_millis().max(1) as u64,
            connections_max,
            window_ms: 1_000,
            capture_headers: self.capture_headers.clone(),
            thresholds,
            seed: self.seed.unwrap_or(0),
            workers: self.workers,
            allow_remote: self.allow_remote,
            ca_file: self.ca.clone(),
            phases: Vec::new(),
            no_connection_abort_ms: Some(NO_CONNECTION_ABORT_MS),
            local_address: self.source_address,
        })
    }
}

/// Runs `xregion load`: 0 when every threshold passed, 1 when one failed.
pub fn run_load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let plan = args.to_plan()?;
    let result = xregion_load::run_plan(&plan)?;
    // Written without `println!`, which panics when the reader of a pipe has gone.
    let text = if args.json { serde_json::to_string_pretty(&result)? + "\n" } else { summary(&plan, &result) };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()).context("cannot write the result")?;
    Ok(if result.thresholds_pass() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Runs the hidden `load-worker` subcommand: a plan as JSON on stdin, the result as JSON on stdout.
pub fn run_worker() -> anyhow::Result<ExitCode> {
    xregion_load::worker_main(std::io::stdin().lock(), std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// The human summary: throughput, errors, statuses, the latency table, open-model counters and thresholds.
pub fn summary(plan: &Plan, r: &LoadResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let model = if plan.executor.is_open() {
        format!("open model, {} connections", plan.connections_needed())
    } else {
        format!("closed model, {} VUs", r.vus_max)
    };
    let _ = writeln!(s, "Summary ({model}, {} workers):", r.workers);
    s.push_str(&counts_text(r, ""));
    let _ = writeln!(s, "  Connections   {} opened, {} reconnects", r.connections_opened, r.reconnects);
    if plan.executor.is_open() {
        let _ = writeln!(
            s,
            "  Open model    late {} (max lag {:.1} ms), dropped {}, interrupted {}",
            r.late, r.late_lag_ms_max, r.dropped, r.interrupted
        );
    }
    s.push_str(&statuses_text(r));
    let _ = writeln!(s, "Latency (ms):        p50       p90       p95       p99     p99.9       max");
    let row = |label: &str, p: Percentiles| {
        format!(
            "  {label:<14}{:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
            p.p50, p.p90, p.p95, p.p99, p.p999, p.max
        )
    };
    if let Some(p) = r.percentiles(None) {
        s.push_str(&row(if plan.executor.is_open() { "corrected" } else { "" }, p));
    }
    if plan.executor.is_open()
        && let Some(p) = r.percentiles_uncorrected(None)
    {
        s.push_str(&row("uncorrected", p));
    }
    let failed = r.latency_errors_all();
    if !failed.is_empty() {
        s.push_str(&row("failed only", Percentiles::of(&failed)));
    }
    let _ = writeln!(s, "  (every request counts, failed ones too: a timeout counts its full wait)");
    for (name, stats) in &r.per_request {
        for (header, values) in &stats.header_counts {
            let list: Vec<String> = values.iter().map(|(v, n)| format!("{v}: {n}")).collect();
            let _ = writeln!(s, "Header {header} ({name}): {}", list.join(", "));
        }
    }
    s.push_str(&thresholds_text(r));
    s
}

/// Requests, their rate and the errors by kind (`errors_note` ends the errors' line).
fn counts_text(r: &LoadResult, errors_note: &str) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "  Requests      {} in {:.2} s", r.requests, r.duration_s);
    let _ = writeln!(s, "  Requests/s    {:.1} successful, {:.1} in all", r.requests_per_s.ok, r.requests_per_s.total);
    let e = &r.errors;
    let _ = writeln!(
        s,
        "  Errors        {} (connect {}, timeout {}, status {}, protocol {}){errors_note}",
        e.total(),
        e.connect,
        e.timeout,
        e.status,
        e.protocol
    );
    s
}

/// The status codes seen, one line each.
fn statuses_text(r: &LoadResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if !r.statuses.is_empty() {
        let _ = writeln!(s, "Status codes:");
        for (code, n) in &r.statuses {
            let _ = writeln!(s, "  [{code}] {n}");
        }
    }
    s
}

/// Each threshold's outcome and what it measured.
fn thresholds_text(r: &LoadResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if !r.thresholds.is_empty() {
        let _ = writeln!(s, "Thresholds:");
        for t in &r.thresholds {
            let measured = match (t.measured, &t.detail) {
                (Some(m), _) => format!("{m:.3} {}", t.unit),
                (None, Some(d)) => d.clone(),
                (None, None) => "-".into(),
            };
            let _ = writeln!(s, "  {} {}  (measured {measured})", if t.pass { "PASS" } else { "FAIL" }, t.threshold);
        }
    }
    s
}

/// Runs `xregion load --journey`: the journey file's journeys as the VUs' scripts against `--region`s. 0 when
/// every threshold passed, 1 when one failed.
pub async fn run_journeys(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let path = args.journey.as_deref().context("--journey names no file")?;
    let loaded = crate::config::load_journeys(path)?;
    let mut regions = Vec::new();
    for r in &args.regions {
        let (name, url) = r.split_once('=').with_context(|| format!("--region {r:?}: expected `NAME=URL`"))?;
        let url = url.trim().trim_end_matches('/').to_string();
        refuse_remote(&url, args.allow_remote)?;
        regions.push((name.trim().to_string(), url));
    }
    anyhow::ensure!(!regions.is_empty(), "--journey needs at least one --region NAME=URL");
    let chosen = loaded.file.for_load(&args.only).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in args.parsed_headers()? {
        let name =
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).with_context(|| format!("header name {k:?}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(&v).with_context(|| format!("header {k}: bad value"))?;
        value.set_sensitive(name == reqwest::header::AUTHORIZATION);
        headers.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(crate::net::tls_config(args.ca.as_deref())?)
        .default_headers(headers)
        .local_address(args.source_address)
        .connect_timeout(args.timeout)
        .build()
        .context("cannot build the HTTP client")?;
    let seed = args.seed.unwrap_or(0);
    let run = crate::runner::key_prefix(seed, args.seed.is_some()).replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let router = match &args.router {
        Some(url) => {
            let url = url.trim().trim_end_matches('/').to_string();
            refuse_remote(&url, args.allow_remote)?;
            Some(url)
        }
        None => None,
    };
    let target = crate::journey::run::Target { regions, client, run: format!("load-{run}"), seed, router };
    let vus = args.vus.or(args.connections).unwrap_or(CONNECTIONS_DEFAULT);
    let mut plan = crate::journey::vu::VuPlan::constant(vus, args.duration, args.think_time);
    plan.thresholds = args.parsed_thresholds()?;
    plan.seed = seed;
    let mut endpoints = target.regions.clone();
    endpoints.extend(target.router.iter().map(|u| (crate::journey::run::ROUTER.to_string(), u.clone())));
    reachable(&endpoints, args.timeout).await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let loaded_result =
        crate::journey::vu::drive(&target, &chosen, &plan, &cancel).await.map_err(anyhow::Error::msg)?;
    let r = &loaded_result.result;
    let text =
        if args.json { serde_json::to_string_pretty(&loaded_result)? + "\n" } else { journey_summary(&loaded_result) };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()).context("cannot write the result")?;
    Ok(if r.thresholds_pass() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Refuses a region URL whose host is not a loopback address, unless `allow_remote`.
fn refuse_remote(url: &str, allow_remote: bool) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).with_context(|| format!("--region URL {url:?}"))?;
    let host = u.host_str().with_context(|| format!("--region URL {url:?} has no host"))?;
    let port = u.port_or_known_default().with_context(|| format!("--region URL {url:?} has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .with_context(|| format!("cannot resolve {host} of {url}"))?
        .collect();
    if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        anyhow::bail!("{url} is not a loopback address; pass --allow-remote for a host you are responsible for");
    }
    Ok(())
}

/// Fails, naming the region, when a region's address does not accept a connection within `limit`.
async fn reachable(regions: &[(String, String)], limit: Duration) -> anyhow::Result<()> {
    for (name, url) in regions {
        let u = reqwest::Url::parse(url)?;
        let host = u.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = u.port_or_known_default().unwrap_or(80);
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("region {name} ({url}) is unreachable: {e}"),
            Err(_) => anyhow::bail!("region {name} ({url}) did not accept a connection within {limit:?}"),
        }
    }
    Ok(())
}

/// The human summary of a journey load run: requests, journeys' iterations, steps, statuses and thresholds.
pub fn journey_summary(j: &crate::journey::vu::JourneyLoad) -> String {
    use std::fmt::Write as _;
    let r = &j.result;
    let mut s = String::new();
    let _ = writeln!(s, "Summary (journeys, closed model, {} VUs):", r.vus_max);
    if j.stopped_early {
        let _ = writeln!(s, "  Stopped early by Ctrl-C: what follows is what was measured until then");
    }
    s.push_str(&counts_text(r, "; expected refusals are no errors"));
    let w = j.iterations.keys().chain(r.per_request.keys()).map(|n| n.chars().count()).max().unwrap_or(0).max(10);
    let _ = writeln!(
        s,
        "{:<w$}  started completed  refused   failed  interrupted   p50 ms   p95 ms   max ms",
        "Journeys:",
        w = w + 2
    );
    for (name, it) in &j.iterations {
        let p = Percentiles::of(&it.duration.0);
        let _ = writeln!(
            s,
            "  {name:<w$}{:>9}{:>10}{:>9}{:>9}{:>13}{:>9.1}{:>9.1}{:>9.1}",
            it.started, it.completed, it.refused, it.failed, it.interrupted, p.p50, p.p95, p.max
        );
    }
    let _ = writeln!(s, "{:<w$}    count   errors      p50      p95      p99      max", "Steps (ms):", w = w + 2);
    for (name, st) in &r.per_request {
        let p = Percentiles::of(&st.latency.0);
        let _ = writeln!(
            s,
            "  {name:<w$}{:>9}{:>9}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
            st.count, st.errors, p.p50, p.p95, p.p99, p.max
        );
    }
    s.push_str(&statuses_text(r));
    s.push_str(&thresholds_text(r));
    s
}
