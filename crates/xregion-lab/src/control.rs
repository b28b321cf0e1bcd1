//! The control API of a running lab, served in-process by whoever owns the `Lab` (`xregion lab up`, which is
//! `run_foreground` here, and `xregion run`, whose fault injector calls it).
//!
//! Routes (every error is a JSON `ErrorBody`):
//! - `GET /status`: the `LabRecord` (also written to `DIR/lab.json`).
//! - `POST /regions/{name}/kill`, `POST /regions/{name}/start`: SIGKILL or restart a region's node.
//! - `POST /regions/{name}/fail` with a `FaultSpec`: 200 `ActiveFault`; 400 invalid spec; 404 unknown region or
//!   peer; 409 when the region already has a fault.
//! - `POST /regions/{name}/restore`: 200 `RegionFaultStatus`; clears whatever fault is in force, and makes sure
//!   the node runs and its links pass (so it also undoes a bare kill). Idempotent.
//! - `GET /faults`: `FaultStatus`, every region in config order.
//!
//! The API is HTTPS (the router's certificate, whose names include `localhost`: the URL is
//! `https://localhost:PORT`, listening on 127.0.0.1) and every route needs the admin token (`Authorization:
//! Bearer …`): none or an unknown one gets 401 with `WWW-Authenticate: Bearer`, another principal 403, both as a
//! JSON `ErrorBody`. The `auth_disabled` defect lets every request through.
//!
//! `lab.json` is rewritten whenever a child of the lab exits (the supervisor's task per child tells this server),
//! so that `xregion lab status` shows a crashed region as down, with how and when, without asking the API.
//!
//! A fault with `duration_ms` is restored by a timer task. The timer is cancelled (under the lab's lock) by a
//! restore or by shutdown, and checks its cancellation again once it holds the lock, so it never restores a
//! newer fault than its own.

use crate::LabError;
use crate::auth::{Scope, Tokens};
use crate::config::LabConfig;
use crate::dir::{LabRecord, pid_alive};
use crate::layout::LabDir;
use crate::node::wait_for_signal;
use crate::pki::{Pki, ROUTER};
use crate::supervisor::{CONTROL_TIMEOUT, Lab};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xregion_model::fault::FaultSpec;
use xregion_model::wire::ErrorBody;

/// A lab with its control API. Dropping it without `shutdown` stops serving and SIGKILLs the lab's processes.
pub struct ControlServer {
    /// State shared with the handlers and timers.
    shared: Arc<Shared>,
    /// The serving task.
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// `DIR/lab.json`.
    record_path: PathBuf,
}

/// What the handlers share.
struct Shared {
    /// The lab and the auto-restore timers, under one lock.
    inner: Mutex<Inner>,
    /// The control API base URL.
    url: String,
    /// The last record written to lab.json (pids change on kill and restart).
    record: std::sync::Mutex<LabRecord>,
    /// Stops the server and every timer.
    stop: CancellationToken,
}

struct Inner {
    /// The lab (None once shutdown has taken it).
    lab: Option<Lab>,
    /// Auto-restore timers by region; cancelled by a restore, a newer fault, or shutdown.
    timers: BTreeMap<String, CancellationToken>,
}

/// Longest a control connection's TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ControlServer {
    /// Serves the control API for `lab` on 127.0.0.1:0 over HTTPS and writes `DIR/lab.json`.
    pub async fn start(mut lab: Lab) -> Result<ControlServer, LabError> {
        let cfg = &lab.spec.lab;
        let tls = Pki::load(lab.dir())?.server_config(ROUTER, cfg.tls_min())?;
        let tokens = if cfg.defects.auth_disabled { None } else { Some(Arc::new(Tokens::load(lab.dir())?)) };
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| LabError::io("cannot listen for the control API", e))?;
        let addr = listener.local_addr().map_err(|e| LabError::io("cannot read the control address", e))?;
        let url = format!("https://localhost:{}", addr.port());
        let record = lab.record(&url);
        let record_path = LabDir::new(lab.dir()).lab_json();
        let exits = lab.take_exit_notices();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { lab: Some(lab), timers: BTreeMap::new() }),
            url,
            record: std::sync::Mutex::new(record),
            stop: CancellationToken::new(),
        });
        shared.save_record().await?;
        if let Some(exits) = exits {
            tokio::spawn(record_exits(shared.clone(), exits));
        }
        let app = Router::new()
            .route("/status", get(get_status))
            .route("/regions/{name}/kill", post(post_kill))
            .route("/regions/{name}/start", post(post_start))
            .route("/regions/{name}/fail", post(post_fail))
            .route("/regions/{name}/restore", post(post_restore))
            .route("/faults", get(get_faults))
            .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
            .layer(axum::middleware::from_fn_with_state(tokens, require_admin))
            .with_state(shared.clone());
        let stop = shared.stop.clone();
        let server = tokio::spawn(serve_https(listener, tls, app, stop));
        Ok(ControlServer { shared, server: Some(server), record_path })
    }

    /// The control API base URL, `https://localhost:PORT`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The lab as last recorded in `lab.json`: regions, endpoints, pids, routing.
    pub fn record(&self) -> LabRecord {
        self.shared.record.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops serving, cancels the auto-restore timers, shuts the lab down (whatever faults are in force) and
    /// removes `lab.json`.
    pub async fn shutdown(mut self) -> Result<(), LabError> {
        self.shared.stop.cancel();
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(CONTROL_TIMEOUT, &mut server).await.is_err()
        {
            server.abort();
        }
        let lab = {
            let mut inner = self.shared.inner.lock().await;
            for (_, t) in std::mem::take(&mut inner.timers) {
                t.cancel();
            }
            inner.lab.take()
        };
        let result = match lab {
            Some(lab) => lab.shutdown().await,
            None => Ok(()),
        };
        let _ = std::fs::remove_file(&self.record_path);
        result
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Without `shutdown` (a panic, an early return): stop serving so that the last reference to the lab goes
        // and its `Drop` kills the processes.
        if self.server.is_some() {
            self.shared.stop.cancel();
            if let Ok(mut inner) = self.shared.inner.try_lock() {
                inner.lab.take();
            }
            let _ = std::fs::remove_file(&self.record_path);
        }
    }
}

impl Shared {
    /// Runs `f` on the lab and its timers under the lock; fails when the lab is shutting down.
    async fn with_lab<T>(
        &self,
        f: impl AsyncFnOnce(&mut Lab, &mut BTreeMap<String, CancellationToken>) -> Result<T, LabError>,
    ) -> Result<T, LabError> {
        let mut inner = self.inner.lock().await;
        let Inner { lab, timers } = &mut *inner;
        match lab.as_mut() {
            None => Err(shutting_down()),
            Some(lab) => f(lab, timers).await,
        }
    }

    /// Writes lab.json from the lab's current state and keeps a copy for `record`.
    async fn save_record(&self) -> Result<LabRecord, LabError> {
        let inner = self.inner.lock().await;
        let Some(lab) = inner.lab.as_ref() else {
            return Err(shutting_down());
        };
        let record = lab.record(&self.url);
        let path = LabDir::new(lab.dir()).lab_json();
        crate::spec::write_atomic(&path, &serde_json::to_vec_pretty(&record).unwrap_or_default())?;
        *self.record.lock().unwrap_or_else(|p| p.into_inner()) = record.clone();
        Ok(record)
    }
}

/// Rewrites `lab.json` after each child exit until the server stops, so that it never shows a dead child's pid.
async fn record_exits(shared: Arc<Shared>, mut exits: tokio::sync::mpsc::Receiver<()>) {
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            notice = exits.recv() => match notice {
                None => return,
                Some(()) => {
                    if let Err(e) = shared.save_record().await {
                        tracing::debug!(error = %e, "cannot update lab.json after a child exited");
                    }
                }
            },
        }
    }
}

/// Serves `app` over TLS until `stop`: each connection's handshake runs in its own task under
/// `HANDSHAKE_TIMEOUT`; a failed one is logged at debug and dropped, and never ends the loop.
async fn serve_https(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "control API: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%remote, error = %e, "control API: TLS handshake failed"),
                Err(_) => return tracing::debug!(%remote, "control API: TLS handshake timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "control API: connection ended with an error");
                },
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CONTROL_TIMEOUT, conn.as_mut()).await;
                }
            }
        });
    }
}

/// Lets a request through only with the admin token (every request under the `auth_disabled` defect, where
/// `tokens` is `None`); 401 or 403 with a JSON `ErrorBody` otherwise.
async fn require_admin(State(tokens): State<Option<Arc<Tokens>>>, req: Request, next: Next) -> Response {
    let Some(tokens) = tokens else { return next.run(req).await };
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match tokens.authorize(header, Scope::Admin) {
        Ok(_) => next.run(req).await,
        Err(e) => {
            tracing::info!(path = req.uri().path(), status = e.status().as_u16(), "control API: request refused");
            let body = e.body();
            let mut resp = error_response(e.status(), &body.error, body.message);
            if let Some(challenge) = e.www_authenticate() {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
            }
            resp
        }
    }
}

fn shutting_down() -> LabError {
    LabError::State("the lab is shutting down".into())
}

/// Restores `region` after `after` unless `token` is cancelled first (or while it waits for the lab).
async fn auto_restore(shared: Arc<Shared>, region: String, token: CancellationToken, after: Duration) {
    tokio::select! {
        _ = token.cancelled() => return,
        _ = tokio::time::sleep(after) => {}
    }
    {
        let mut inner = shared.inner.lock().await;
        if token.is_cancelled() {
            return;
        }
        inner.timers.remove(&region);
        let Some(lab) = inner.lab.as_mut() else { return };
        match lab.restore(&region).await {
            Ok(_) => tracing::info!(region, ?after, "fault restored after its duration"),
            Err(e) => tracing::warn!(region, error = %e, "cannot restore the fault after its duration"),
        }
    }
    if let Err(e) = shared.save_record().await {
        tracing::debug!(error = %e, "cannot update lab.json after an automatic restore");
    }
}

fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: code.into(), message }).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn lab_error(e: &LabError) -> Response {
    let (status, code) = match e {
        LabError::UnknownRegion { .. } => (StatusCode::NOT_FOUND, "unknown_region"),
        LabError::State(_) => (StatusCode::CONFLICT, "conflict"),
        LabError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_fault"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
    };
    error_response(status, code, e.to_string())
}

fn answer<T: serde::Serialize>(r: Result<T, LabError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => lab_error(&e),
    }
}

async fn get_status(State(s): State<Arc<Shared>>) -> Response {
    answer(s.save_record().await)
}

async fn post_kill(State(s): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    region_action(s, name, true).await
}

async fn post_start(State(s): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    region_action(s, name, false).await
}

async fn region_action(s: Arc<Shared>, name: String, kill_it: bool) -> Response {
    let result = s
        .with_lab(async |lab, _| if kill_it { lab.kill_region(&name).await } else { lab.start_region(&name).await })
        .await;
    answer(result.and(s.save_record().await))
}

async fn post_fail(State(s): State<Arc<Shared>>, UrlPath(name): UrlPath<String>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_body", format!("expected a fault spec: {e}"));
        }
    };
    let result = s
        .with_lab(async |lab, timers| {
            let fault = lab.fail(&name, &spec).await?;
            if let Some(ms) = spec.duration_ms {
                let token = s.stop.child_token();
                if let Some(old) = timers.insert(name.clone(), token.clone()) {
                    old.cancel();
                }
                tokio::spawn(auto_restore(s.clone(), name.clone(), token, Duration::from_millis(ms)));
            }
            Ok(fault)
        })
        .await;
    let _ = s.save_record().await;
    answer(result)
}

async fn post_restore(State(s): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    let result = s
        .with_lab(async |lab, timers| {
            // Whatever the outcome, the fault's timer is moot: the fault is restored or needs another restore.
            if let Some(t) = timers.remove(&name) {
                t.cancel();
            }
            lab.restore(&name).await
        })
        .await;
    let _ = s.save_record().await;
    answer(result)
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    // Snapshot under the lock, check health without it.
    let (client, targets) = {
        let inner = s.inner.lock().await;
        match inner.lab.as_ref() {
            None => return lab_error(&shutting_down()),
            Some(lab) => (lab.client.clone(), lab.fault_targets()),
        }
    };
    axum::Json(crate::faults::check_targets(&client, targets).await).into_response()
}

/// `xregion lab up`: starts the lab, records it in `DIR/lab.json`, serves the control API, and runs until
/// SIGINT or SIGTERM; then stops every process and removes lab.json.
pub async fn run_foreground(cfg: &LabConfig, dir: &Path, exe: &Path) -> Result<(), LabError> {
    if let Ok(old) = LabDir::new(dir).record()
        && pid_alive(old.supervisor_pid)
    {
        return Err(LabError::State(format!(
            "a lab is already running in {} (pid {}); stop it with `xregion lab down`",
            dir.display(),
            old.supervisor_pid
        )));
    }
    let lab = tokio::select! {
        r = Lab::start(cfg, dir, exe) => r?,
        r = wait_for_signal() => {
            r?;
            return Err(LabError::State("interrupted while starting the lab".into()));
        }
    };
    let server = ControlServer::start(lab).await?;
    let record = server.record();
    println!("lab up in {} (pid {})", record.dir.display(), record.supervisor_pid);
    for r in &record.regions {
        println!("  {:<16} {}", r.name, r.endpoint);
    }
    if let Some(t) = &record.traffic {
        for (name, url) in &t.records {
            println!("  router {:<11} {url}", name);
        }
        println!("  cdn                {}", t.cdn);
        println!("  router status      {}", t.router_status);
    }
    println!("trust {}; tokens in {} (0600)", record.ca_file.display(), record.tokens_file.display());
    println!("control {}  (stop with Ctrl-C or `xregion lab down`)", record.control_url);
    let waited = wait_for_signal().await;
    let result = server.shutdown().await;
    waited?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ADMIN, READER, WRITER};
    use crate::http_client::Client;
    use crate::pki::{PkiOptions, TlsMin};
    use crate::secret_file::TestDir;
    use axum::routing::get;

    /// Goal: the control API's transport and guard: HTTPS reachable as `localhost` (the URL the record gives),
    /// 401 with a challenge and a JSON body without a token or with an unknown one, 403 for a writer, 200 for the
    /// admin; with `auth_disabled` (no tokens) everything passes.
    #[tokio::test]
    async fn https_and_admin_token_required() {
        let dir = TestDir::new("control-auth");
        let local = "127.0.0.1".parse().unwrap();
        let pki = Pki::create(&dir, &[("us-east-1".into(), local)], local, PkiOptions::default()).unwrap();
        let tokens = Tokens::create(&dir).unwrap();
        let serve = |tokens: Option<Arc<Tokens>>| {
            let pki = pki.clone();
            async move {
                let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
                let addr = listener.local_addr().unwrap();
                let app = Router::new()
                    .route("/status", get(|| async { "{}" }))
                    .layer(axum::middleware::from_fn_with_state(tokens, require_admin));
                let stop = CancellationToken::new();
                tokio::spawn(serve_https(
                    listener,
                    pki.server_config(ROUTER, TlsMin::Tls13).unwrap(),
                    app,
                    stop.clone(),
                ));
                (addr, stop)
            }
        };
        let (addr, stop) = serve(Some(Arc::new(tokens.clone()))).await;
        let call = async |token: Option<&str>| {
            let client = Client::tls(pki.client_config().unwrap(), token);
            client.request_named("GET", addr, Some("localhost"), "/status", None, CONTROL_TIMEOUT).await.unwrap()
        };
        let (code, body) = call(None).await;
        assert_eq!(code, 401);
        let err: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(err.error, "unauthorized");
        assert_eq!(call(Some("xrl_0000")).await.0, 401);
        assert_eq!(call(tokens.token_of(WRITER)).await.0, 403);
        assert_eq!(call(tokens.token_of(READER)).await.0, 403);
        assert_eq!(call(tokens.token_of(ADMIN)).await, (200, b"{}".to_vec()));
        let plain = Client::plain().request("GET", addr, "/status", None, CONTROL_TIMEOUT).await;
        assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
        // A failed handshake does not end the loop.
        assert_eq!(call(tokens.token_of(ADMIN)).await.0, 200);
        stop.cancel();

        let (addr, stop) = serve(None).await;
        let client = Client::tls(pki.client_config().unwrap(), None);
        let (code, _) =
            client.request_named("GET", addr, Some("localhost"), "/status", None, CONTROL_TIMEOUT).await.unwrap();
        assert_eq!(code, 200, "auth_disabled lets everything through");
        stop.cancel();
    }
}
