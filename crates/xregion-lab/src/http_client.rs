//! A tiny HTTP/1.1 client for the lab's own control traffic (wiring peers, health checks, control API).
//!
//! The lab only talks to its own processes, on loopback, with small JSON bodies whose length is known, so one
//! request per connection with `Connection: close` and a bounded read to EOF is all it needs; that keeps an HTTP
//! client stack out of the lab crate.
//!
//! The hardened lab's listeners are HTTPS: a [`Client`] built with [`Client::for_lab`] speaks TLS 1.3 trusting
//! the lab's CA (`Pki::client_config`, verifying the server by the address it dials, which every lab certificate
//! carries as a SAN) and sends the admin token. [`Client::plain`] speaks plain HTTP (the WAN's loopback admin API,
//! and tests of plain servers).

use crate::LabError;
use crate::auth::{ADMIN, Tokens};
use crate::pki::Pki;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// Largest response the client reads, in bytes; control answers are small.
const RESPONSE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Timeout of one health check (`health_of`), in `lab status` and in the control API's `GET /faults`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// A client for the lab's processes: plain HTTP, or HTTPS with the lab's CA and, optionally, a bearer token.
#[derive(Clone)]
pub struct Client {
    /// `None`: plain HTTP.
    tls: Option<tokio_rustls::TlsConnector>,
    /// The `Authorization` header's value, if any (zeroized on drop; never shown).
    authorization: Option<Arc<Zeroizing<String>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("token", &self.authorization.is_some())
            .finish()
    }
}

impl Client {
    /// Plain HTTP without a token.
    pub fn plain() -> Client {
        Client { tls: None, authorization: None }
    }

    /// HTTPS with `config`, sending `token` as a bearer token when given.
    pub fn tls(config: Arc<rustls::ClientConfig>, token: Option<&str>) -> Client {
        Client {
            tls: Some(tokio_rustls::TlsConnector::from(config)),
            authorization: token.map(|t| Arc::new(Zeroizing::new(format!("Bearer {t}")))),
        }
    }

    /// The lab's own client for the lab in `dir`: TLS 1.3 trusting `DIR/pki/ca.pem`, with the admin token of
    /// `DIR/tokens.json`.
    pub fn for_lab(dir: &Path) -> Result<Client, LabError> {
        let pki = Pki::load(dir)?;
        let tokens = Tokens::load(dir)?;
        let token = tokens
            .token_of(ADMIN)
            .ok_or_else(|| LabError::State(format!("{} has no {ADMIN} token", Tokens::path(dir).display())))?;
        Ok(Client::tls(pki.client_config()?, Some(token)))
    }

    /// The same client without its token (for public routes such as `/healthz`).
    pub fn without_token(&self) -> Client {
        Client { tls: self.tls.clone(), authorization: None }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Sends one request to `addr`, verifying the server by that address, and returns the status code and body;
    /// every step is bounded by `timeout`.
    pub async fn request(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), LabError> {
        self.request_named(method, addr, None, path, body, timeout).await
    }

    /// Like [`Client::request`], verifying the server as `name` (a DNS name its certificate carries) when given.
    pub async fn request_named(
        &self,
        method: &str,
        addr: SocketAddr,
        name: Option<&str>,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), LabError> {
        let url = format!(
            "{} {}://{}{path}",
            method,
            self.scheme(),
            name.map_or(addr.to_string(), |n| format!("{n}:{}", addr.port()))
        );
        let fut = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let host = name.map_or(addr.to_string(), |n| format!("{n}:{}", addr.port()));
            let auth =
                self.authorization.as_ref().map(|a| Zeroizing::new(format!("authorization: {}\r\n", a.as_str())));
            let head = Zeroizing::new(format!(
                "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-type: application/json\r\n\
                 {}content-length: {}\r\n\r\n",
                auth.as_deref().map_or("", |a| a.as_str()),
                body.map_or(0, <[u8]>::len)
            ));
            match &self.tls {
                None => exchange(tcp, addr, &head, body).await,
                Some(connector) => {
                    let server_name = match name {
                        Some(n) => {
                            ServerName::try_from(n.to_string()).map_err(|e| format!("bad server name {n:?}: {e}"))?
                        }
                        None => ServerName::IpAddress(addr.ip().into()),
                    };
                    let tls = connector
                        .connect(server_name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
                    exchange(tls, addr, &head, body).await
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(LabError::Http(format!("{url}: {e}"))),
            Err(_) => Err(LabError::Http(format!("{url}: no answer within {timeout:?}"))),
        }
    }

    /// Sends `body` as JSON with `method` and returns the answer's body; any status but 200 is an error that
    /// names `what` (for example `region us-east-1`) and quotes the answer.
    pub async fn call_json<T: serde::Serialize + ?Sized>(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        body: &T,
        what: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, LabError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let (status, answer) = self.request(method, addr, path, Some(&body), timeout).await?;
        if status != 200 {
            return Err(LabError::Http(format!(
                "{what} refused {method} {path} ({status}): {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(answer)
    }
}

/// Writes the request and reads the answer to EOF. A TLS peer that closes without `close_notify` after a
/// complete answer is fine: the answer is what counts.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    head: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), String> {
    stream.write_all(head.as_bytes()).await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
    stream.write_all(body.unwrap_or_default()).await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
    stream.flush().await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let read = (&mut stream).take(RESPONSE_BYTES_MAX).read_to_end(&mut raw).await;
    match (read, parse_response(&raw)) {
        (_, Some(answer)) => Ok(answer),
        (Err(e), None) => Err(format!("cannot read the answer of {addr}: {e}")),
        (Ok(_), None) => Err(format!("{addr} sent a malformed HTTP answer")),
    }
}

/// Sends one plain-HTTP request without a token (`Client::plain().request`).
pub async fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), LabError> {
    Client::plain().request(method, addr, path, body, timeout).await
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

/// Splits a raw `Connection: close` response into status and body.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut body = raw[split + 4..].to_vec();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            body = dechunk(&body)?;
        } else if name == "content-length" {
            let len: usize = value.parse().ok()?;
            // A shorter body is a cut-off answer, not a complete one.
            body.get(..len)?;
            body.truncate(len);
        }
    }
    Some((status, body))
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: both length-delimited and chunked answers parse.
    #[test]
    fn parses_answers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r, (200, b"{}".to_vec()));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r, (404, b"{}".to_vec()));
        assert!(parse_response(b"garbage").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").is_none(), "cut off");
    }
}
