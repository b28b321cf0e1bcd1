//! One HTTP/1.1 client connection on a raw `TcpStream`: writes pre-rendered requests, parses responses with
//! `httparse` (Content-Length, chunked, or until close), keeps the connection alive, and reconnects when the
//! server has closed it. Nothing on this path allocates once the read buffer exists.

use crate::plan::CompiledTarget;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection: plain TCP, or TLS over it for `https://` targets. The plain path is one match away from the
/// socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => {
                s.write_all(buf).await?;
                // rustls buffers the record; push it out now.
                s.flush().await
            }
        }
    }
}

/// Read buffer of a connection; responses larger than it stream through it.
const READ_BUF_BYTES: usize = 8 * 1024;
/// Largest response head (status line and headers) accepted; the buffer grows up to it.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most response headers parsed.
const HEADERS_MAX: usize = 64;
/// Wait before the first retry after a failed connect; each further failure doubles it up to `CONNECT_BACKOFF_MAX`.
pub(crate) const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between two connect attempts of one connection.
pub(crate) const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Could not connect.
    Connect,
    /// Over the request timeout.
    Timeout,
    /// Malformed response, or closed mid-response.
    Protocol,
}

/// Internal outcome of one attempt: a closed keep-alive connection before any response byte is retried.
enum AttemptError {
    /// The server closed (or reset) the connection before sending anything: a keep-alive race.
    ClosedBeforeResponse,
    /// Anything else.
    Failed(Failure),
}

/// A client connection that reconnects on demand.
pub(crate) struct Conn {
    stream: Option<Stream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether a connection was ever opened, so that later ones count as reconnects.
    opened_before: bool,
    /// Connections opened since the caller last asked.
    pub opened: u32,
    /// Of which reconnects.
    pub reconnects: u32,
    /// Wait after the last failed connect (zero once a connect succeeds).
    backoff: Duration,
    /// No connect attempt before this instant (set by a failed connect).
    retry_at: Option<Instant>,
    /// Why the last connect failed, as words (`connection refused`), for a run that never connects.
    pub last_connect_error: Option<String>,
    /// The request timeout's timer, kept across requests: re-armed only when it fires before the current
    /// request's deadline (about once per timeout), not inserted into and removed from the timer wheel per request.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    pub(crate) fn new() -> Conn {
        Conn {
            stream: None,
            buf: Vec::new(),
            start: 0,
            end: 0,
            opened_before: false,
            opened: 0,
            reconnects: 0,
            backoff: Duration::ZERO,
            retry_at: None,
            last_connect_error: None,
            timer: None,
        }
    }

    /// When the next request must wait for the connect backoff: the instant before which no connect is tried.
    pub(crate) fn backoff_until(&self) -> Option<Instant> {
        if self.stream.is_some() { None } else { self.retry_at.filter(|t| *t > Instant::now()) }
    }

    /// Records a failed connect: the next attempt waits, 10 ms doubling up to 1 s, so a dead server is not
    /// hammered (a refused connect takes microseconds on loopback).
    fn connect_failed(&mut self, reason: String) -> Failure {
        self.backoff = (self.backoff * 2).clamp(CONNECT_BACKOFF_MIN, CONNECT_BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + self.backoff);
        self.last_connect_error = Some(reason);
        Failure::Connect
    }

    fn close(&mut self) {
        self.stream = None;
        self.start = 0;
        self.end = 0;
    }

    /// Sends `target` and reads the whole response by `deadline` (the send plus the request timeout);
    /// `on_head(status, headers)` sees the response head once. Returns the status code.
    pub(crate) async fn request(
        &mut self,
        target: &CompiledTarget,
        deadline: Instant,
        on_head: &mut impl FnMut(u16, &[httparse::Header<'_>]),
    ) -> Result<u16, Failure> {
        let deadline = tokio::time::Instant::from_std(deadline);
        // Deadlines only grow, so a kept timer is due at or before this one: when it fires early, re-arm it.
        let mut timer = self.timer.take().unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)));
        let result = {
            let exchange = self.exchange(target, on_head);
            tokio::pin!(exchange);
            loop {
                tokio::select! {
                    biased;
                    r = &mut exchange => break r,
                    () = timer.as_mut() => {
                        if tokio::time::Instant::now() >= deadline {
                            break Err(Failure::Timeout);
                        }
                        timer.as_mut().reset(deadline);
                    }
                }
            }
        };
        self.timer = Some(timer);
        if result == Err(Failure::Timeout) {
            self.close();
        }
        result
    }

    async fn exchange(
        &mut self,
        target: &CompiledTarget,
        on_head: &mut impl FnMut(u16, &[httparse::Header<'_>]),
    ) -> Result<u16, Failure> {
        // A reused connection may have been closed by the server while idle; one retry on a fresh connection
        // covers that race, and a fresh connection that closes at once is a real failure.
        for _ in 0..2 {
            let fresh = self.stream.is_none();
            if fresh {
                self.connect(target).await?;
            }
            match self.attempt(target, on_head).await {
                Ok(status) => return Ok(status),
                Err(AttemptError::ClosedBeforeResponse) if !fresh => self.close(),
                Err(AttemptError::ClosedBeforeResponse) => {
                    self.close();
                    return Err(Failure::Protocol);
                }
                Err(AttemptError::Failed(f)) => {
                    self.close();
                    return Err(f);
                }
            }
        }
        Err(Failure::Protocol)
    }

    /// Opens a connection to `target`, with its TLS handshake for `https://` (inside the request's timeout and
    /// latency, as a new connection costs a user).
    async fn connect(&mut self, target: &CompiledTarget) -> Result<(), Failure> {
        let addr: SocketAddr = target.addr;
        let tcp = match target.local {
            None => TcpStream::connect(addr).await,
            Some(local) => connect_from(local, addr).await,
        };
        let tcp = match tcp {
            Ok(t) => t,
            // The kind reads as words (`connection refused`), where the error itself adds `(os error 111)`.
            Err(e) => return Err(self.connect_failed(e.kind().to_string())),
        };
        // Requests are small and written whole; Nagle would only add delay.
        if let Err(e) = tcp.set_nodelay(true) {
            return Err(self.connect_failed(e.kind().to_string()));
        }
        let stream = match &target.tls {
            None => Stream::Plain(tcp),
            Some(t) => match t.connector.connect(t.name.clone(), tcp).await {
                Ok(s) => Stream::Tls(Box::new(s)),
                Err(e) => return Err(self.connect_failed(format!("TLS handshake failed: {e}"))),
            },
        };
        self.backoff = Duration::ZERO;
        self.retry_at = None;
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUF_BYTES];
        }
        self.stream = Some(stream);
        self.start = 0;
        self.end = 0;
        self.opened += 1;
        if self.opened_before {
            self.reconnects += 1;
        }
        self.opened_before = true;
        Ok(())
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= HEAD_BYTES_MAX {
                return Err(std::io::Error::other("response head too large"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let stream = self.stream.as_mut().expect("fill is only called on an open connection");
        let n = stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    async fn attempt(
        &mut self,
        target: &CompiledTarget,
        on_head: &mut impl FnMut(u16, &[httparse::Header<'_>]),
    ) -> Result<u16, AttemptError> {
        let failed = AttemptError::Failed;
        let stream = self.stream.as_mut().expect("attempt runs on an open connection");
        if stream.write_all(&target.bytes).await.is_err() {
            return Err(AttemptError::ClosedBeforeResponse);
        }
        // Leftover bytes from a previous response would be a protocol error; they are parsed as such below.
        let mut got_any = self.end > self.start;
        let (status, body, close) = loop {
            if self.end > self.start {
                let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = resp.code.unwrap_or(0);
                        let head = read_head(&resp, status, target.is_head);
                        self.start += n;
                        if (100..200).contains(&status) {
                            continue; // 100 Continue and friends: the real response follows.
                        }
                        on_head(status, resp.headers);
                        break (status, head.0, head.1);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Err(failed(Failure::Protocol)),
                }
            }
            match self.fill().await {
                Ok(0) | Err(_) if !got_any => return Err(AttemptError::ClosedBeforeResponse),
                Ok(0) | Err(_) => return Err(failed(Failure::Protocol)),
                Ok(_) => got_any = true,
            }
        };
        match body {
            Body::None => {}
            Body::Length(n) => self.skip(n).await.map_err(|_| failed(Failure::Protocol))?,
            Body::Chunked => self.skip_chunked().await.map_err(|_| failed(Failure::Protocol))?,
            Body::UntilClose => {
                self.start = self.end;
                loop {
                    match self.fill().await {
                        Ok(0) => break,
                        Ok(_) => self.start = self.end,
                        Err(_) => return Err(failed(Failure::Protocol)),
                    }
                }
            }
        }
        if close || matches!(body, Body::UntilClose) {
            self.close();
        }
        Ok(status)
    }

    /// Discards `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> std::io::Result<()> {
        loop {
            let avail = (self.end - self.start) as u64;
            if avail >= n {
                self.start += n as usize;
                return Ok(());
            }
            n -= avail;
            self.start = self.end;
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Discards a chunked body, trailers included.
    async fn skip_chunked(&mut self) -> std::io::Result<()> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill().await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Err(_) => return Err(std::io::ErrorKind::InvalidData.into()),
                }
            };
            if size == 0 {
                break;
            }
            // The chunk's data, then its CRLF.
            self.skip(size + 2).await?;
        }
        // Trailers: lines up to an empty one.
        loop {
            match self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.start += 2;
                    return Ok(());
                }
                Some(i) => self.start += i + 2,
                None => {
                    if self.fill().await? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The body framing and whether the server will close the connection after this response.
fn read_head(resp: &httparse::Response<'_, '_>, status: u16, is_head: bool) -> (Body, bool) {
    let mut length = None;
    let mut chunked = false;
    // HTTP/1.0 closes unless it says keep-alive; HTTP/1.1 keeps alive unless it says close.
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.split(|b| *b == b',').any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let body = if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        Body::None
    } else if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        Body::UntilClose
    };
    (body, close)
}

/// A TCP connection to `addr` from `local` (any port).
async fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(addr).await
}
