//! A tiny HTTP/1.1 client for the lab's own control traffic (wiring peers, health checks, control API).
//!
//! The lab only talks to its own processes, on loopback, with small JSON bodies whose length is known, so one
//! request per connection with `Connection: close` and a bounded read to EOF is all it needs; that keeps an HTTP
//! client stack out of the lab crate.

use crate::LabError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response the client reads, in bytes; control answers are small.
const RESPONSE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Sends one request and returns the status code and body; every step is bounded by `timeout`.
pub async fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), LabError> {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
        stream.write_all(body).await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .take(RESPONSE_BYTES_MAX)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("cannot read the answer of {addr}: {e}"))?;
        parse_response(&raw).ok_or_else(|| format!("{addr} sent a malformed HTTP answer"))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(LabError::Http(format!("{method} http://{addr}{path}: {e}"))),
        Err(_) => Err(LabError::Http(format!("{method} http://{addr}{path}: no answer within {timeout:?}"))),
    }
}

/// Sends `body` as JSON with `method` and returns the answer's body; any status but 200 is an error that names
/// `what` (for example `region us-east-1`) and quotes the answer.
pub async fn call_json<T: serde::Serialize + ?Sized>(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: &T,
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>, LabError> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let (status, answer) = request(method, addr, path, Some(&body), timeout).await?;
    if status != 200 {
        return Err(LabError::Http(format!(
            "{what} refused {method} {path} ({status}): {}",
            String::from_utf8_lossy(&answer)
        )));
    }
    Ok(answer)
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
    }
}
