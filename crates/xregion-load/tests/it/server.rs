//! A tiny HTTP/1.1 server for the tests: keep-alive, `Connection: close` every N responses, chunked bodies,
//! stalls on a schedule, 5xx on request, and a header naming the "region" that served.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server behaves.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Close the connection after every N-th response on it (0: never).
    pub close_every: u32,
    /// Send bodies chunked.
    pub chunked: bool,
    /// Stall: `(period, stall)`: from the first request on, requests arriving in the last `stall` of each
    /// `period` are answered only when it ends.
    pub stall: Option<(Duration, Duration)>,
    /// Slow answers: `(n, delay)`: every n-th request the server receives is answered only after `delay`.
    pub slow_every: Option<(u64, Duration)>,
}

/// A running server; it stops when dropped.
pub struct Server {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<AtomicU64>,
    /// The addresses connections came from.
    pub peers: Arc<std::sync::Mutex<std::collections::BTreeSet<std::net::IpAddr>>>,
    _rt: std::thread::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts a server on its own thread and runtime at 127.0.0.1:0.
pub fn start(b: Behaviour) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let requests = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::OnceLock::new());
    let peers = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let (r2, f2, p2) = (requests.clone(), first.clone(), peers.clone());
    let rt = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let accept = async {
                loop {
                    let (s, peer) = listener.accept().await.unwrap();
                    p2.lock().unwrap().insert(peer.ip());
                    tokio::spawn(serve(s, b.clone(), r2.clone(), f2.clone()));
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stop_rx => {}
            }
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    Server { addr, requests, peers, _rt: rt, stop: Some(stop_tx) }
}

async fn serve(mut s: TcpStream, b: Behaviour, count: Arc<AtomicU64>, first: Arc<std::sync::OnceLock<Instant>>) {
    s.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut served = 0u32;
    loop {
        // Read one request head (and its body, by Content-Length).
        let (head_len, body_len, path) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf[..filled]) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse::<usize>().unwrap());
                break (n, len, req.path.unwrap_or("/").to_string());
            }
            match s.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        };
        while filled < head_len + body_len {
            match s.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
        buf.copy_within(head_len + body_len..filled, 0);
        filled -= head_len + body_len;
        let now = Instant::now();
        let t0 = *first.get_or_init(|| now);
        let nth = count.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((n, delay)) = b.slow_every
            && nth.is_multiple_of(n)
        {
            tokio::time::sleep(delay).await;
        }
        if let Some((period, stall)) = b.stall {
            let p = period.as_secs_f64();
            let t = now.duration_since(t0).as_secs_f64();
            let into = t % p;
            if into >= p - stall.as_secs_f64() {
                tokio::time::sleep(Duration::from_secs_f64(p - into)).await;
            }
        }
        served += 1;
        let close = b.close_every > 0 && served.is_multiple_of(b.close_every);
        let status = if path.starts_with("/fail") { "503 Service Unavailable" } else { "200 OK" };
        let region = if path.contains("eu") { "eu-west-1" } else { "us-east-1" };
        let conn = if close { "Connection: close\r\n" } else { "" };
        let resp = if b.chunked {
            format!(
                "HTTP/1.1 {status}\r\nx-served-by: {region}\r\n{conn}Transfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n"
            )
        } else {
            format!("HTTP/1.1 {status}\r\nx-served-by: {region}\r\n{conn}Content-Length: 12\r\n\r\nhello, world")
        };
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        if close {
            return;
        }
    }
}
