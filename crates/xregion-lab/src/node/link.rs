//! A connection on the replication path, shared by the replication streams (`repl`) and the round-trip probes
//! (`rtt`): dialled from the region's own address with mutual TLS, accepted with the client certificate's region
//! at hand for checking against the first frame, and framed with `proto::codec`. Every step is bounded by
//! `IO_TIMEOUT`.
//!
//! Without replication TLS configured (unit tests of other parts of the node) the connection is plain TCP.

use super::Node;
use crate::proto::{self, BatchError, Frame};
use futures::SinkExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Framed;

/// Longest wait to connect, to send a frame, or for the peer's Hello.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A replication connection's bytes: mutual TLS in the lab, plain TCP only for unit tests whose node has no
/// replication TLS configured.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A framed replication connection: one `proto` frame per length-delimited message.
pub(super) type Conn = Framed<Box<dyn Io>, tokio_util::codec::LengthDelimitedCodec>;

/// Why a replication stream (or a probe connection) ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol (or the TLS handshake failed).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A received batch is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A step took longer than its bound.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// Dials `peer` at `addr` (its WAN link) from this region's own address, so the peer (and its logs) see where
/// the traffic comes from, and opens mutual TLS: this region's client certificate, and the peer's server
/// certificate verified for the peer's region name (the link's address is the WAN proxy's, not the peer's).
pub(super) async fn dial(node: &Node, peer: &str, addr: SocketAddr) -> Result<Box<dyn Io>, StreamError> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if node.ip.is_ipv4() == addr.is_ipv4() {
        socket.bind(SocketAddr::new(node.ip, 0))?;
    }
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr)).await.map_err(|_| StreamError::Timeout)??;
    stream.set_nodelay(true)?;
    let Some(config) = &node.security.repl_client else { return Ok(Box::new(stream)) };
    let name = rustls::pki_types::ServerName::try_from(peer.to_string())
        .map_err(|e| StreamError::Protocol(format!("peer name {peer:?} is not a TLS server name: {e}")))?;
    let tls = tokio::time::timeout(IO_TIMEOUT, tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream))
        .await
        .map_err(|_| StreamError::Timeout)?
        .map_err(|e| StreamError::Protocol(format!("TLS handshake with {peer} failed: {e}")))?;
    Ok(Box::new(tls))
}

/// Opens the TLS side of an inbound replication connection: the handshake (which, unless `mtls_disabled`,
/// refuses a client without a certificate from the lab's CA with a `certificate_required` alert), then who the
/// client certificate names. `None` for a node without replication TLS (unit tests of other parts).
pub(super) async fn accept_tls(node: &Node, stream: TcpStream) -> Result<(Box<dyn Io>, Option<Identity>), StreamError> {
    let Some(config) = &node.security.repl_server else { return Ok((Box::new(stream), None)) };
    let tls = tokio::time::timeout(IO_TIMEOUT, tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream))
        .await
        .map_err(|_| StreamError::Timeout)?
        .map_err(|e| StreamError::Protocol(format!("TLS handshake refused: {e}")))?;
    let identity = crate::pki::peer_region(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string());
    Ok((Box::new(tls), Some(identity)))
}

/// The region an inbound connection's client certificate names, or why it names none.
pub(super) type Identity = Result<String, String>;

/// Checks that a connection whose first frame says it comes from `from` is certified as `from`. A connection
/// without a usable certificate only gets here with the `mtls_disabled` defect, which lets it through.
pub(super) fn check_identity(node: &Node, from: &str, identity: Option<&Identity>) -> Result<(), StreamError> {
    match identity {
        None => Ok(()),
        Some(Ok(name)) if name == from => Ok(()),
        Some(Ok(name)) => {
            Err(StreamError::Protocol(format!("hello from {from:?} over a connection certified as {name:?}")))
        }
        Some(Err(_)) if node.defects.mtls_disabled => Ok(()),
        Some(Err(e)) => Err(StreamError::Protocol(format!("hello from {from:?} without a usable certificate: {e}"))),
    }
}

/// Sends one frame within `IO_TIMEOUT`.
pub(super) async fn send(conn: &mut Conn, frame: &Frame) -> Result<(), StreamError> {
    tokio::time::timeout(IO_TIMEOUT, conn.send(proto::encode(frame))).await.map_err(|_| StreamError::Timeout)??;
    Ok(())
}
