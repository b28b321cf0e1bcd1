//! The WAN emulator: a TCP proxy per directed replication link that adds the latency of a real network.
//!
//! Every chunk read from one side is stamped and released to the other side at `stamp + one-way delay +
//! jitter`, never before the previous chunk of the same direction, so a stream keeps its bandwidth and byte
//! order and only gains latency. A connection on link A->B carries A's data with A->B's rules and B's answers
//! (acks) with B->A's rules.
//!
//! What a link does is decided by rules that compose like turmoil's: `Pass | Delay(d) | Drop | Refuse`, and the
//! first rule that does not pass wins. Each link has a fault rule (set over the admin API, `Pass` by default)
//! in front of its base rule (`Delay(rtt / 2)`), so partitions and extra latency are just rules.

use crate::LabError;
use crate::node::{print_ready, wait_for_signal};
use crate::spec::Spec;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xregion_model::wire::ErrorBody;

/// Largest chunk read at once, in bytes.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// Chunks in flight per direction of a connection: bounds memory to `CHUNK_BYTES_MAX` times this, which still
/// covers the bandwidth-delay product of a replication stream at the lab's largest delays.
pub const CHUNKS_IN_FLIGHT_MAX: usize = 256;
/// Most simultaneous connections per link (one is normal; the rest is slack for reconnects).
pub const LINK_CONNECTIONS_MAX: usize = 64;
/// Longest wait to connect to the destination region.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a link does to traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// No opinion: the next rule decides (traffic passes undelayed if every rule passes).
    Pass,
    /// Deliver after this one-way delay (plus jitter).
    Delay(Duration),
    /// Blackhole: accept connections and read, but forward nothing.
    Drop,
    /// Close existing connections and refuse new ones.
    Refuse,
}

/// JSON form of a rule: `{"rule":"pass"}`, `{"rule":"delay","ms":30}`, `{"rule":"drop"}`, `{"rule":"refuse"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
enum RuleWire {
    Pass,
    Delay { ms: f64 },
    Drop,
    Refuse,
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = match self {
            Rule::Pass => RuleWire::Pass,
            Rule::Delay(d) => RuleWire::Delay { ms: d.as_secs_f64() * 1000.0 },
            Rule::Drop => RuleWire::Drop,
            Rule::Refuse => RuleWire::Refuse,
        };
        w.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match RuleWire::deserialize(d)? {
            RuleWire::Pass => Rule::Pass,
            RuleWire::Delay { ms } => {
                if !(ms.is_finite() && (0.0..=3_600_000.0).contains(&ms)) {
                    return Err(serde::de::Error::custom(format!("delay ms {ms} must be 0 to 3600000")));
                }
                Rule::Delay(Duration::from_secs_f64(ms / 1000.0))
            }
            RuleWire::Drop => Rule::Drop,
            RuleWire::Refuse => Rule::Refuse,
        })
    }
}

/// The verdict of a rule list: the first rule that does not pass, or `Pass`.
pub fn compose(rules: &[Rule]) -> Rule {
    rules.iter().copied().find(|r| *r != Rule::Pass).unwrap_or(Rule::Pass)
}

/// One directed link.
struct Link {
    /// Sending region.
    from: String,
    /// Receiving region.
    to: String,
    /// Where the sender dials (this proxy's listener).
    listen_addr: SocketAddr,
    /// The receiving region's replication listener.
    dest: SocketAddr,
    /// The sending region's address; the proxy dials the destination from it so the receiver sees the sender.
    from_ip: IpAddr,
    /// The rule set over the admin API, in front of the base rule.
    fault: watch::Sender<Rule>,
    /// The base rule: the one-way delay of the pair.
    base: Rule,
    /// Upper bound of the uniform extra delay per chunk.
    jitter: Duration,
    /// Seed of this link's jitter; each connection derives its own from it.
    seed: u64,
    /// Counts connections, to derive per-connection seeds.
    connections: AtomicU64,
    /// Bytes discarded by a `Drop` rule on this link, so tests and fault reports can see a blackhole acted.
    dropped_bytes: AtomicU64,
}

impl Link {
    fn effective(&self, fault: Rule) -> Rule {
        compose(&[fault, self.base])
    }
}

/// All links, keyed `(from, to)`.
struct Wan {
    links: BTreeMap<(String, String), Arc<Link>>,
    shutdown: CancellationToken,
}

/// The `READY` line of the WAN process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WanReady {
    /// Admin API address.
    pub admin_addr: SocketAddr,
    /// Every link's listener.
    pub links: Vec<LinkAddr>,
    /// Process id.
    pub pid: u32,
}

/// Where the sender of a link dials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkAddr {
    /// Sending region.
    pub from: String,
    /// Receiving region.
    pub to: String,
    /// Proxy listener address.
    pub addr: SocketAddr,
}

/// One link as shown by `GET /links`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Sending region.
    pub from: String,
    /// Receiving region.
    pub to: String,
    /// Proxy listener.
    pub addr: SocketAddr,
    /// Destination replication listener.
    pub dest: SocketAddr,
    /// The fault rule (`pass` when none).
    pub fault: Rule,
    /// The base rule.
    pub base: Rule,
    /// What applies now.
    pub effective: Rule,
    /// Bytes a `Drop` rule discarded on this link since the WAN started.
    pub dropped_bytes: u64,
}

fn seed_of(name: &str) -> u64 {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Runs the WAN emulator from the spec until SIGTERM or SIGINT.
pub async fn run_wan(spec_path: &FsPath) -> Result<(), LabError> {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!(error = %e, "cannot set the parent-death signal");
    }
    let spec = Spec::load(spec_path)?;
    let jitter = Duration::from_secs_f64(spec.lab.wan.jitter_ms / 1000.0);
    let mut links = BTreeMap::new();
    let mut listeners = Vec::new();
    for from in &spec.regions {
        for to in &spec.regions {
            if from.name == to.name {
                continue;
            }
            if to.repl_port == 0 {
                return Err(LabError::Spec(format!("the spec has no replication port for {}", to.name)));
            }
            let listener = TcpListener::bind((to.ip, 0)).await.map_err(|e| {
                LabError::io(format!("cannot listen for link {}->{} on {}", from.name, to.name, to.ip), e)
            })?;
            let listen_addr = listener.local_addr().map_err(|e| LabError::io("cannot read a link address", e))?;
            let one_way = Duration::from_secs_f64(spec.lab.rtt_ms(&from.name, &to.name) / 2000.0);
            let link = Arc::new(Link {
                from: from.name.clone(),
                to: to.name.clone(),
                listen_addr,
                dest: to.repl_addr(),
                from_ip: from.ip,
                fault: watch::channel(Rule::Pass).0,
                base: Rule::Delay(one_way),
                jitter,
                seed: seed_of(&format!("{}->{}", from.name, to.name)),
                connections: AtomicU64::new(0),
                dropped_bytes: AtomicU64::new(0),
            });
            links.insert((from.name.clone(), to.name.clone()), link.clone());
            listeners.push((link, listener));
        }
    }
    let wan = Arc::new(Wan { links, shutdown: CancellationToken::new() });
    for (link, listener) in listeners {
        tokio::spawn(accept_link(wan.clone(), link, listener));
    }
    let admin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| LabError::io("cannot listen for the WAN admin API", e))?;
    let admin_addr = admin.local_addr().map_err(|e| LabError::io("cannot read the admin address", e))?;
    let app = admin_router(wan.clone());
    let stop = wan.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(admin, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    let ready = WanReady {
        admin_addr,
        links: wan
            .links
            .values()
            .map(|l| LinkAddr { from: l.from.clone(), to: l.to.clone(), addr: l.listen_addr })
            .collect(),
        pid: std::process::id(),
    };
    print_ready(&ready)?;
    tracing::info!(%admin_addr, links = wan.links.len(), "wan ready");
    wait_for_signal().await?;
    tracing::info!("wan shutting down");
    wan.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

/// A links file for `xregion wan`: the WAN emulator as a standalone proxy, for a third-party cluster on one
/// machine whose members name their upstreams (Postgres `primary_conninfo`, pglogical DSNs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksFile {
    /// Upper bound of the uniform extra delay per chunk, in ms.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Where the admin API listens (default `127.0.0.1:0`); `PUT /links/FROM/TO` with a rule sets a fault.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// The directed links.
    #[serde(rename = "link")]
    pub links: Vec<LinkSpec>,
}

/// One directed link of a links file: `from` dials `listen`, and the proxy forwards to `upstream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The dialling side's name.
    pub from: String,
    /// The upstream side's name.
    pub to: String,
    /// The proxy's listener; the proxy dials the upstream from this address's IP, so the upstream sees `from`.
    pub listen: SocketAddr,
    /// Where the traffic goes.
    pub upstream: SocketAddr,
    /// One-way delay in ms, each direction (a link without its reverse in the file answers with this delay too).
    pub one_way_ms: f64,
}

/// Runs the links of `file` until SIGTERM or Ctrl-C; prints `admin http://ADDR` once every listener is bound.
pub async fn run_links(file: &FsPath) -> Result<(), LabError> {
    let text = std::fs::read_to_string(file).map_err(|e| LabError::io(format!("cannot read {}", file.display()), e))?;
    let spec: LinksFile = toml::from_str(&text).map_err(|e| LabError::Spec(format!("{}: {e}", file.display())))?;
    let jitter = Duration::from_secs_f64(spec.jitter_ms.max(0.0) / 1000.0);
    let mut links = BTreeMap::new();
    let mut listeners = Vec::new();
    for l in &spec.links {
        if !(l.one_way_ms.is_finite() && l.one_way_ms >= 0.0) {
            return Err(LabError::Spec(format!("link {}->{}: one_way_ms must be 0 or more", l.from, l.to)));
        }
        let listener = TcpListener::bind(l.listen)
            .await
            .map_err(|e| LabError::io(format!("cannot listen for link {}->{} on {}", l.from, l.to, l.listen), e))?;
        let link = new_link(&l.from, &l.to, l.listen, l.upstream, l.one_way_ms, jitter);
        if links.insert((l.from.clone(), l.to.clone()), link.clone()).is_some() {
            return Err(LabError::Spec(format!("link {}->{} is listed twice", l.from, l.to)));
        }
        listeners.push((link, listener));
    }
    // A link whose reverse is not in the file answers through a reverse with the same delay and no listener.
    for l in &spec.links {
        links
            .entry((l.to.clone(), l.from.clone()))
            .or_insert_with(|| new_link(&l.to, &l.from, l.upstream, l.listen, l.one_way_ms, jitter));
    }
    let wan = Arc::new(Wan { links, shutdown: CancellationToken::new() });
    for (link, listener) in listeners {
        tokio::spawn(accept_link(wan.clone(), link, listener));
    }
    let admin_at = spec.admin.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    let admin = TcpListener::bind(admin_at)
        .await
        .map_err(|e| LabError::io(format!("cannot listen for the WAN admin API on {admin_at}"), e))?;
    let admin_addr = admin.local_addr().map_err(|e| LabError::io("cannot read the admin address", e))?;
    let app = admin_router(wan.clone());
    let stop = wan.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(admin, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    println!("admin http://{admin_addr}");
    wait_for_signal().await?;
    wan.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

fn new_link(
    from: &str,
    to: &str,
    listen: SocketAddr,
    dest: SocketAddr,
    one_way_ms: f64,
    jitter: Duration,
) -> Arc<Link> {
    Arc::new(Link {
        from: from.to_string(),
        to: to.to_string(),
        listen_addr: listen,
        dest,
        from_ip: listen.ip(),
        fault: watch::channel(Rule::Pass).0,
        base: Rule::Delay(Duration::from_secs_f64(one_way_ms / 1000.0)),
        jitter,
        seed: seed_of(&format!("{from}->{to}")),
        connections: AtomicU64::new(0),
        dropped_bytes: AtomicU64::new(0),
    })
}

/// Accepts connections of one link until shutdown.
async fn accept_link(wan: Arc<Wan>, link: Arc<Link>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(LINK_CONNECTIONS_MAX));
    loop {
        let (client, _) = tokio::select! {
            _ = wan.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(from = %link.from, to = %link.to, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(from = %link.from, to = %link.to, "too many connections on link; refusing one");
            continue;
        };
        let wan = wan.clone();
        let link = link.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = proxy(&wan, &link, client).await {
                tracing::info!(from = %link.from, to = %link.to, error = %e, "proxied connection ended");
            }
        });
    }
}

/// Proxies one connection until either side closes, a rule refuses it, or the WAN stops.
async fn proxy(wan: &Wan, link: &Link, client: TcpStream) -> Result<(), String> {
    let Some(reverse) = wan.links.get(&(link.to.clone(), link.from.clone())) else {
        return Err("no reverse link".into());
    };
    let mut fwd_rx = link.fault.subscribe();
    let mut rev_rx = reverse.fault.subscribe();
    let refused = |f: Rule, r: Rule| link.effective(f) == Rule::Refuse || reverse.effective(r) == Rule::Refuse;
    if refused(*fwd_rx.borrow(), *rev_rx.borrow()) {
        return Err("refused by rule".into());
    }
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if link.from_ip.is_ipv4() && link.dest.is_ipv4() {
        socket.bind(SocketAddr::new(link.from_ip, 0)).map_err(|e| format!("cannot bind {}: {e}", link.from_ip))?;
    }
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(link.dest))
        .await
        .map_err(|_| format!("connect to {} timed out", link.dest))?
        .map_err(|e| format!("cannot connect to {}: {e}", link.dest))?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let n = link.connections.fetch_add(1, Ordering::Relaxed);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let forward = pump(cr, uw, link, link.fault.subscribe(), link.seed ^ n.wrapping_mul(2));
    let backward = pump(ur, cw, reverse, reverse.fault.subscribe(), link.seed ^ n.wrapping_mul(2).wrapping_add(1));
    let refuse_watch = async {
        loop {
            tokio::select! {
                r = fwd_rx.changed() => if r.is_err() { return },
                r = rev_rx.changed() => if r.is_err() { return },
            }
            if refused(*fwd_rx.borrow(), *rev_rx.borrow()) {
                return;
            }
        }
    };
    tokio::select! {
        _ = wan.shutdown.cancelled() => Ok(()),
        _ = refuse_watch => Err("closed by a refuse rule".into()),
        r = async { tokio::try_join!(forward, backward) } => r.map(|_| ()),
    }
}

/// Moves bytes one way, releasing each chunk at its stamp plus the link's delay, in order.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &Link,
    rule_rx: watch::Receiver<Rule>,
    seed: u64,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(CHUNKS_IN_FLIGHT_MAX);
    let reader = async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut last_release = Instant::now();
        let mut buf = vec![0u8; CHUNK_BYTES_MAX];
        loop {
            let n = from.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok::<(), String>(());
            }
            let stamp = Instant::now();
            let rule = link.effective(*rule_rx.borrow());
            let release = match rule {
                Rule::Drop => {
                    link.dropped_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                Rule::Refuse => return Err("refused".into()),
                Rule::Pass => stamp,
                Rule::Delay(d) => {
                    let jitter =
                        if link.jitter.is_zero() { Duration::ZERO } else { link.jitter.mul_f64(rng.random::<f64>()) };
                    stamp + d + jitter
                }
            };
            // Never reorder: a chunk leaves no earlier than the one before it.
            last_release = last_release.max(release);
            if tx.send((last_release, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((release, chunk)) = rx.recv().await {
            crate::sleep_until(release).await;
            to.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        // The reading side finished: pass the half-close on.
        let _ = to.shutdown().await;
        Ok::<(), String>(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

fn admin_router(wan: Arc<Wan>) -> Router {
    Router::new()
        .route("/links", get(get_links))
        .route("/links/{from}/{to}", put(put_link))
        .fallback(|| async { admin_error(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .with_state(wan)
}

fn admin_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: code.into(), message }).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn link_status(l: &Link) -> LinkStatus {
    let fault = *l.fault.borrow();
    LinkStatus {
        from: l.from.clone(),
        to: l.to.clone(),
        addr: l.listen_addr,
        dest: l.dest,
        fault,
        base: l.base,
        effective: l.effective(fault),
        dropped_bytes: l.dropped_bytes.load(Ordering::Relaxed),
    }
}

async fn get_links(State(wan): State<Arc<Wan>>) -> Response {
    let links: Vec<LinkStatus> = wan.links.values().map(|l| link_status(l)).collect();
    axum::Json(links).into_response()
}

async fn put_link(State(wan): State<Arc<Wan>>, Path((from, to)): Path<(String, String)>, body: Bytes) -> Response {
    let Some(link) = wan.links.get(&(from.clone(), to.clone())) else {
        return admin_error(StatusCode::NOT_FOUND, "not_found", format!("no link {from}->{to}"));
    };
    let rule: Rule = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, "invalid_body", format!("expected a rule: {e}")),
    };
    link.fault.send_replace(rule);
    tracing::info!(%from, %to, ?rule, "link rule set");
    axum::Json(link_status(link)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the first rule that does not pass wins, and an all-pass list passes.
    #[test]
    fn rules_compose_first_non_pass_wins() {
        let d = Rule::Delay(Duration::from_millis(30));
        assert_eq!(compose(&[]), Rule::Pass);
        assert_eq!(compose(&[Rule::Pass, Rule::Pass]), Rule::Pass);
        assert_eq!(compose(&[Rule::Pass, d]), d);
        assert_eq!(compose(&[Rule::Drop, d]), Rule::Drop);
        assert_eq!(compose(&[Rule::Pass, Rule::Refuse, Rule::Drop]), Rule::Refuse);
        assert_eq!(compose(&[d, Rule::Refuse]), d);
    }

    /// Goal: rules have a stable JSON form and bad ones are rejected.
    #[test]
    fn rule_json() {
        let r: Rule = serde_json::from_str(r#"{"rule":"delay","ms":12.5}"#).unwrap();
        assert_eq!(r, Rule::Delay(Duration::from_micros(12_500)));
        assert_eq!(serde_json::to_string(&Rule::Drop).unwrap(), r#"{"rule":"drop"}"#);
        assert!(serde_json::from_str::<Rule>(r#"{"rule":"delay","ms":-1}"#).is_err());
        assert!(serde_json::from_str::<Rule>(r#"{"rule":"slow"}"#).is_err());
    }

    /// Goal: a proxied stream gains the link delay, keeps every byte in order, and a drop rule blackholes it.
    /// Method: echo server behind a one-link WAN built in-process; no timing assertions beyond "not before".
    #[tokio::test]
    async fn proxy_delays_in_order_and_drop_blackholes() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dest = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let mk = |from: &str, to: &str, listen_addr: SocketAddr| {
            Arc::new(Link {
                from: from.into(),
                to: to.into(),
                listen_addr,
                dest,
                from_ip: "127.0.0.1".parse().unwrap(),
                fault: watch::channel(Rule::Pass).0,
                base: Rule::Delay(Duration::from_millis(20)),
                jitter: Duration::from_millis(2),
                seed: 1,
                connections: AtomicU64::new(0),
                dropped_bytes: AtomicU64::new(0),
            })
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ab = mk("a", "b", addr);
        let ba = mk("b", "a", addr);
        let mut links = BTreeMap::new();
        links.insert(("a".to_string(), "b".to_string()), ab.clone());
        links.insert(("b".to_string(), "a".to_string()), ba);
        let wan = Arc::new(Wan { links, shutdown: CancellationToken::new() });
        tokio::spawn(accept_link(wan.clone(), ab.clone(), listener));

        let mut s = TcpStream::connect(addr).await.unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&payload).await.unwrap();
        };
        let mut got = vec![0u8; payload.len()];
        let recv = async {
            r.read_exact(&mut got).await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(send, recv) }).await.unwrap();
        assert_eq!(got, payload);
        // Both directions are delayed by at least the base one-way delay.
        assert!(started.elapsed() >= Duration::from_millis(40));

        // Blackhole: bytes go in, nothing comes back.
        ab.fault.send_replace(Rule::Drop);
        w.write_all(b"lost").await.unwrap();
        let mut one = [0u8; 1];
        let r2 = tokio::time::timeout(Duration::from_millis(300), r.read(&mut one)).await;
        assert!(r2.is_err(), "a dropped link delivered data");
        assert_eq!(ab.dropped_bytes.load(Ordering::Relaxed), 4);

        // Refuse closes the existing connection.
        ab.fault.send_replace(Rule::Refuse);
        let closed = tokio::time::timeout(Duration::from_secs(5), r.read(&mut one)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)));
        wan.shutdown.cancel();
    }
}
