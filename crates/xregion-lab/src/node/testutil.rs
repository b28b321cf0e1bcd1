//! Builds in-process nodes for the unit tests of the node's parts (each with the hardened lab's protections from
//! a test lab directory), and speaks replication to them by hand.

use super::*;
use crate::proto::{self, Entry, Frame};
use futures::{SinkExt, StreamExt};
use std::path::PathBuf;
use xregion_model::Version;

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A node of `region` with `peers`, its store in a fresh temp dir.
pub fn node(test: &str, region: &str, peers: &[&str], defects: Defects) -> Arc<Node> {
    node_with(test, region, peers, defects, NodeConfig::default())
}

/// As `node`, with node settings. The node has the hardened lab's protections (HTTPS, tokens, audit,
/// encryption at rest, mutual TLS on replication) from `lab(test)`, as `defects` allow.
pub fn node_with(test: &str, region: &str, peers: &[&str], defects: Defects, settings: NodeConfig) -> Arc<Node> {
    let lab = fresh_region(test, region);
    let mut security = security::Security::load(lab.path(), region, &defects, tls_min(&defects)).unwrap();
    security.residency = [("eu".to_string(), vec!["eu".to_string()])].into();
    let (store, _, _writer) = Store::open(&lab.store_file(region), region, security.sealer.clone()).unwrap();
    let cursors = peers.iter().map(|p| (p.to_string(), 0)).collect();
    let startup = Startup::default();
    let node = Node::new(region, "127.0.0.1".parse().unwrap(), store, &cursors, (&defects, &settings), startup, None);
    Arc::new(node.with_security(security))
}

/// The lab directory and region of each replication listener a test started over mutual TLS, so that `open`
/// can present a client certificate the listener trusts.
static LISTENERS: std::sync::Mutex<BTreeMap<SocketAddr, (PathBuf, String)>> = std::sync::Mutex::new(BTreeMap::new());

/// The TLS minimum `defects` ask for.
pub fn tls_min(defects: &Defects) -> crate::pki::TlsMin {
    if defects.tls_min_version.as_deref() == Some("1.2") {
        crate::pki::TlsMin::Tls12
    } else {
        crate::pki::TlsMin::Tls13
    }
}

/// Regions the test labs have certificates for.
pub const REGIONS: &[&str] = &["a", "b", "c", "eu"];

/// The lab directory of `test`, prepared once as the supervisor prepares a lab's: the PKI (for `REGIONS` on
/// 127.0.0.1), the tokens and the key-encryption key.
pub fn lab(test: &str) -> PathBuf {
    let lab = std::env::temp_dir().join(format!("xregion-lab-unit-{}-{test}", std::process::id()));
    if !lab.join("ready").exists() {
        let _ = std::fs::remove_dir_all(&lab);
        std::fs::create_dir_all(&lab).unwrap();
        let regions: Vec<(String, IpAddr)> =
            REGIONS.iter().map(|r| (r.to_string(), "127.0.0.1".parse().unwrap())).collect();
        crate::pki::Pki::create(&lab, &regions, "127.0.0.1".parse().unwrap(), crate::pki::PkiOptions::default())
            .unwrap();
        crate::auth::Tokens::create(&lab).unwrap();
        crate::crypto::ensure_kek(&lab).unwrap();
        std::fs::write(lab.join("ready"), b"").unwrap();
    }
    lab
}

/// A client of `test`'s lab: TLS 1.3 trusting its CA, with the token of `principal` (none: no token).
pub fn client(test: &str, principal: Option<&str>) -> crate::http_client::Client {
    let lab = lab(test);
    let pki = crate::pki::Pki::load(&lab).unwrap();
    let tokens = crate::auth::Tokens::load(&lab).unwrap();
    crate::http_client::Client::tls(pki.client_config().unwrap(), principal.and_then(|p| tokens.token_of(p)))
}

/// `lab(test)`, with a fresh, empty directory for `region`.
pub fn fresh_region(test: &str, region: &str) -> LabDir {
    let lab = LabDir::new(lab(test));
    let dir = lab.region_dir(region);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    lab
}

/// Settings with short heartbeat, contact and fence times, for tests that wait for them.
pub fn fast_settings() -> NodeConfig {
    NodeConfig { heartbeat_interval_ms: 20, contact_timeout_ms: 200, fence_timeout_ms: 300, ..NodeConfig::default() }
}

/// An entry of `origin`'s outbox.
pub fn entry(seq: u64, key: &str, origin: &str) -> Entry {
    Entry {
        seq,
        key: key.into(),
        value: Some(format!("v{seq}")),
        version: Version { wall_ms: 1_000 + seq, logical: 0, origin: origin.into() },
        residency: None,
        erase: false,
    }
}

/// A batch frame of `entries` covering the seqs from its first entry through its last.
pub fn batch(entries: Vec<Entry>) -> Frame {
    let after = entries.first().map_or(0, |e| e.seq - 1);
    let through = entries.last().map_or(0, |e| e.seq);
    Frame::Batch { after, entries, through }
}

/// Starts `node`'s replication listener on a fresh port and returns its address.
pub async fn listen(node: &Arc<Node>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    if let (Some(lab), Some(_)) = (&node.security.lab_dir, &node.security.repl_server) {
        LISTENERS.lock().unwrap().insert(addr, (lab.clone(), node.region.clone()));
    } else {
        LISTENERS.lock().unwrap().remove(&addr);
    }
    tokio::spawn(repl::accept_loop(node.clone(), listener));
    addr
}

/// Starts `from`'s shipper to its peer `to`, dialling `addr`.
pub fn ship_to(from: &Arc<Node>, to: &str, addr: SocketAddr) {
    let peer = from.peers[to].clone();
    peer.addr.send_replace(Some(addr));
    tokio::spawn(repl::ship(from.clone(), peer));
}

/// A hand-driven connection to a replication listener that opened with `first`: over mutual TLS with the
/// client certificate of the region `first` names (of region `c` for a name the lab has no certificate for,
/// or a first frame that names none), or plain TCP for a listener of a node without replication TLS.
pub async fn open(addr: SocketAddr, first: Frame) -> link::Conn {
    let region = match &first {
        Frame::Hello { from } | Frame::Probe { from } if REGIONS.contains(&from.as_str()) => from.as_str(),
        _ => "c",
    };
    let (client, server) = match LISTENERS.lock().unwrap().get(&addr).cloned() {
        Some((lab, server)) => (Some(crate::pki::Pki::load(&lab).unwrap().repl_client_config(region).unwrap()), server),
        None => (None, String::new()),
    };
    let mut conn = connect(addr, client, &server).await.expect("a replication connection");
    send(&mut conn, first).await;
    conn
}

/// A connection to the replication listener at `addr`: TLS with `client` (verifying the server as region
/// `server`), or plain TCP without one.
pub async fn connect(
    addr: SocketAddr,
    client: Option<Arc<rustls::ClientConfig>>,
    server: &str,
) -> std::io::Result<link::Conn> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let io: Box<dyn link::Io> = match client {
        None => Box::new(stream),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(server.to_string()).unwrap();
            Box::new(tokio_rustls::TlsConnector::from(config).connect(name, stream).await?)
        }
    };
    Ok(tokio_util::codec::Framed::new(io, proto::codec()))
}

/// Sends one frame.
pub async fn send(conn: &mut link::Conn, frame: Frame) {
    conn.send(proto::encode(&frame)).await.unwrap();
}

/// The next frame, or `None` when the other side closed the connection (or broke it). A TLS error fails the
/// test: a refusal by the replication protocol must not pass for one by the TLS layer (a wrong certificate).
pub async fn next(conn: &mut link::Conn) -> Option<Frame> {
    match tokio::time::timeout(WAIT, conn.next()).await.expect("no frame and no close in time") {
        Some(Ok(bytes)) => Some(proto::decode(&bytes).unwrap()),
        Some(Err(e)) => {
            let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            assert!(tls.is_none(), "the TLS layer refused, not the protocol: {e:?}");
            None
        }
        None => None,
    }
}

/// Waits until `cond` holds, polling; fails the test after `WAIT`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
