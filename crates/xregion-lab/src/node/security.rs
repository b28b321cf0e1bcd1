//! The node's protections (issue #5): HTTPS on the probe-contract listener, bearer tokens with scopes, the
//! audit log, and the keys for encryption at rest and mutual TLS on replication.
//!
//! `Security::load` builds everything from the lab directory the supervisor prepared (`DIR/pki`,
//! `DIR/tokens.json`, `DIR/keys/kek`); the region's data key is created on first start. `serve_tls` is the accept
//! loop of the HTTPS listener: each connection's handshake runs under `HANDSHAKE_TIMEOUT` in its own task, a
//! failed handshake is logged at debug and dropped, and at most `HTTP_CONNECTIONS_MAX` connections are served at
//! once (further ones wait in the kernel's backlog).
//!
//! The audit log (`DIR/<region>/audit.log`) holds one JSON `AuditEntry` per line, appended with one `write` per
//! entry before the answer is sent. It is not fsynced per entry: an entry survives the process being killed
//! (it is in the kernel's page cache), not a power loss. Values and tokens are never written to it.

use crate::LabError;
use crate::auth::{Principal, Scope, Tokens};
use crate::config::Defects;
use crate::crypto::{DataKey, Sealer};
use crate::layout::LabDir;
use crate::pki::{Pki, TlsMin};
use axum::Router;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use xregion_model::wire::AuditEntry;

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most HTTPS connections served at once.
pub const HTTP_CONNECTIONS_MAX: usize = 8192;
/// The principal of every request when `auth_disabled` is set.
pub const ANONYMOUS: &str = "anonymous";

/// A node's protections.
pub struct Security {
    /// The HTTPS listener's config; `None` serves plain HTTP (unit tests of other parts only).
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    /// The replication listener's config (mutual TLS unless `mtls_disabled`); `None`: plain TCP.
    pub repl_server: Option<Arc<rustls::ServerConfig>>,
    /// The shipper's and the prober's config (presents the region's client certificate); `None`: plain TCP.
    pub repl_client: Option<Arc<rustls::ClientConfig>>,
    /// The tokens; `None` lets everything through as `anonymous` (`auth_disabled`).
    pub tokens: Option<Tokens>,
    /// Seals values at rest.
    pub sealer: Sealer,
    /// The audit log; `None` with `audit_disabled`.
    pub audit: Option<Arc<Audit>>,
    /// Residency tag -> the regions where tagged records may be stored (`LabConfig::residency_policy`).
    pub residency: std::collections::BTreeMap<String, Vec<String>>,
    /// The lab directory the protections were loaded from (`None` without any).
    pub lab_dir: Option<PathBuf>,
}

impl Security {
    /// No protection at all: plain HTTP and TCP, no auth, no audit, plaintext at rest.
    pub fn none() -> Security {
        Security {
            http_tls: None,
            repl_server: None,
            repl_client: None,
            tokens: None,
            sealer: Sealer::plaintext(),
            audit: None,
            residency: std::collections::BTreeMap::new(),
            lab_dir: None,
        }
    }

    /// The protections of `region` from the lab directory `lab_dir`, as `defects` and `tls_min` allow.
    pub fn load(lab_dir: &Path, region: &str, defects: &Defects, tls_min: TlsMin) -> Result<Security, LabError> {
        let pki = Pki::load(lab_dir)?;
        let http_tls = Some(pki.server_config(region, tls_min)?);
        let repl_server = Some(pki.repl_server_config(region, !defects.mtls_disabled)?);
        let repl_client = Some(pki.repl_client_config(region)?);
        let tokens = if defects.auth_disabled {
            tracing::warn!(region, "DEFECT auth_disabled: every request is let through as {ANONYMOUS}");
            None
        } else {
            Some(Tokens::load(lab_dir)?)
        };
        let sealer = if defects.plaintext_at_rest {
            tracing::warn!(region, "DEFECT plaintext_at_rest: values are stored unencrypted");
            Sealer::plaintext()
        } else {
            DataKey::load_or_create(lab_dir, region)?
        };
        let audit = if defects.audit_disabled {
            tracing::warn!(region, "DEFECT audit_disabled: nothing is written to the audit log");
            None
        } else {
            Some(Arc::new(Audit::open(&LabDir::new(lab_dir).audit_log(region))?))
        };
        if defects.mtls_disabled {
            tracing::warn!(region, "DEFECT mtls_disabled: replication peers need no client certificate");
        }
        Ok(Security {
            http_tls,
            repl_server,
            repl_client,
            tokens,
            sealer,
            audit,
            residency: std::collections::BTreeMap::new(),
            lab_dir: Some(lab_dir.to_path_buf()),
        })
    }

    /// Who sent `authorization`, if they hold `needed`.
    pub fn authorize(&self, authorization: Option<&str>, needed: Scope) -> Result<Principal, crate::auth::AuthError> {
        match &self.tokens {
            None => {
                Ok(Principal { name: ANONYMOUS.to_string(), scopes: vec![Scope::Read, Scope::Write, Scope::Admin] })
            }
            Some(t) => t.authorize(authorization, needed),
        }
    }
}

/// A region's append-only audit log.
pub struct Audit {
    path: PathBuf,
    /// The open file and the seq of the last entry.
    file: Mutex<(std::fs::File, u64)>,
    /// One append at a time on the blocking pool; the rest wait here, asynchronously, in order.
    pub gate: tokio::sync::Semaphore,
}

impl Audit {
    /// Opens (or creates) the log at `path`, continuing its numbering.
    pub fn open(path: &Path) -> Result<Audit, LabError> {
        let mut last = 0;
        if let Ok(f) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(f).lines() {
                let line = line.map_err(|e| LabError::io(format!("cannot read {}", path.display()), e))?;
                if let Ok(e) = serde_json::from_str::<AuditEntry>(&line) {
                    last = last.max(e.seq);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| LabError::io(format!("cannot open the audit log {}", path.display()), e))?;
        Ok(Audit { path: path.to_path_buf(), file: Mutex::new((file, last)), gate: tokio::sync::Semaphore::new(1) })
    }

    /// Appends one entry (its seq and time are set here) and returns it.
    pub fn append(&self, principal: &str, action: &str, key: &str, status: u16) -> std::io::Result<AuditEntry> {
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let entry = AuditEntry {
            seq: g.1 + 1,
            time_ms: crate::hlc::wall_now_ms(),
            principal: principal.to_string(),
            action: action.to_string(),
            key: key.to_string(),
            status,
        };
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        // One write of the whole line: O_APPEND keeps lines whole.
        g.0.write_all(&line)?;
        g.1 = entry.seq;
        Ok(entry)
    }

    /// Entries with seq greater than `after`, at most `limit`, and whether more follow.
    pub fn page(&self, after: u64, limit: usize) -> std::io::Result<(Vec<AuditEntry>, bool)> {
        let f = std::fs::File::open(&self.path)?;
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            let Ok(e) = serde_json::from_str::<AuditEntry>(&line) else { continue };
            if e.seq <= after {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(e);
        }
        Ok((out, false))
    }
}

/// Serves `app` over TLS on `listener` until `shutdown`; connections in flight are then finished by their tasks.
pub async fn serve_tls(
    region: &str,
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(HTTP_CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(region, error = %e, "accept failed");
                    // EMFILE and friends: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let region = region.to_string();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(region, %remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(region, %remote, "TLS handshake timed out");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    tracing::debug!(region, %remote, error = %e, "HTTPS connection ended with an error");
                },
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(super::SHUTDOWN_GRACE, conn.as_mut()).await;
                }
            }
        });
    }
}
