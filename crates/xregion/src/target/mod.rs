//! The target lifecycle: the deployment a command tests, from start (the lab) or connection (a deployment over
//! HTTP) to teardown.
//!
//! `Target::open` starts the lab or describes the configured deployment, checks that its clients can be built,
//! and hands back the probes, the routing records and the fault injector. `Target::close` lifts the faults this
//! process injected and stops the lab; dropping a `Target` without closing it (a panic, an early return) still
//! kills the lab's processes. `run`, `chaos`, `fail`, `restore` and `status` all go through this module.

pub mod lab;
pub mod lab_config;

use crate::config::{self, Config, DeploymentKind, Traffic};
use crate::error::{Error, Result};
use crate::faults::{FaultInjector, LabInjector};
use crate::probe::Probe;
use crate::progress::Progress;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xregion_model::report::RegionInfo;

/// Directory of a lab started with `xregion lab up` when neither `--dir` nor `lab.dir` names one.
pub const DEFAULT_LAB_DIR: &str = "xregion-lab";

/// The deployment a command tests, ready to use.
pub struct Target {
    /// The lab, when this process started one; stopped by `close`, killed on drop.
    lab: Option<lab::RunningLab>,
    /// The regions, in configuration order.
    pub regions: Vec<RegionInfo>,
    /// Routing records and CDN: the lab's, or the config's for a real deployment.
    pub traffic: Option<Traffic>,
    /// How faults reach the deployment.
    pub faults: FaultInjector,
    /// One probe per region, in configuration order.
    pub probes: Vec<Probe>,
    /// The config with what the lab filled in (CA, tokens, residency, raw paths).
    pub config: Config,
}

impl Target {
    /// The deployment of `config`: for the lab, starts it in `lab.dir` (default `OUT/lab`, cleared first) inside
    /// its control API. Ctrl-C while the lab starts is `Error::Interrupted`.
    pub async fn open(config: &Config, out: &Path, progress: &Progress) -> Result<Target> {
        let mut config = config.clone();
        let (lab, regions, traffic) = match config.deployment.kind {
            DeploymentKind::Http => {
                let regions = config.deployment.regions.iter();
                let regions =
                    regions.map(|r| RegionInfo { name: r.name.clone(), endpoint: shown_endpoint(r) }).collect();
                (None, regions, config.deployment.traffic.clone())
            }
            DeploymentKind::Lab => {
                let dir = config.lab.dir.clone().unwrap_or_else(|| out.join("lab"));
                if dir.exists() && config.lab.dir.is_none() {
                    std::fs::remove_dir_all(&dir)
                        .map_err(|e| Error::Target(format!("cannot clear old lab data {}: {e}", dir.display())))?;
                }
                progress.line(&format!("[xregion] starting the lab in {}", dir.display()));
                let started = lab::start(&mut config, &dir, interrupted()).await?;
                (Some(started.lab), started.regions, started.traffic)
            }
        };
        // A CA file must be usable; without one, the system's roots must be there if any endpoint is HTTPS.
        let https = regions.iter().any(|r| r.endpoint.starts_with("https://"));
        if (config.deployment.tls.ca_file.is_some() || https)
            && let Err(e) = crate::net::tls_config(config.deployment.tls.ca_file.as_deref())
        {
            if let Some(lab) = lab
                && let Err(e) = lab.shutdown().await
            {
                eprintln!("warning: lab shutdown: {e}");
            }
            return Err(Error::Target(format!("{e:#}")));
        }
        let timeout = Duration::from_millis(config.deployment.request_timeout_ms);
        let client = crate::probe::client(&config.deployment);
        let faults = FaultInjector::from_config(&config, &regions, lab.as_ref().map(|l| l.url()));
        let mut probes: Vec<Probe> =
            regions.iter().map(|r| Probe::new(&r.name, &r.endpoint, client.clone(), timeout)).collect();
        if lab.is_none() {
            databases(&config, &mut probes)?;
            for (probe, r) in probes.iter_mut().zip(&config.deployment.regions) {
                if let (true, None, Some(app)) = (r.endpoint.is_empty(), &r.database, &r.app) {
                    *probe = Probe::app_only(&r.name, app, timeout);
                }
            }
        }
        Ok(Target { lab, regions, traffic, faults, probes, config })
    }

    /// Lifts the faults this process injected that may still be in force, then stops the lab if there is one.
    pub async fn close(mut self, progress: &Progress) {
        for (region, e) in self.faults.restore_injected().await {
            eprintln!("warning: could not restore {region}: {e}");
        }
        if let Some(lab) = self.lab.take() {
            progress.line("[xregion] stopping the lab");
            if let Err(e) = lab.shutdown().await {
                eprintln!("warning: lab shutdown: {e}");
            }
        }
    }
}

/// What a report shows of a region: its API endpoint, or its database without the password, or its application.
fn shown_endpoint(r: &config::RegionEndpoint) -> String {
    match (&r.database, &r.app, r.endpoint.is_empty()) {
        (Some(db), _, true) => crate::db::redact(db),
        (None, Some(app), true) => app.clone(),
        _ => r.endpoint.clone(),
    }
}

/// Replaces the probe of every region without an API endpoint by a client of its database.
fn databases(config: &Config, probes: &mut [Probe]) -> Result<()> {
    let d = &config.deployment;
    let dbs: Vec<(String, crate::db::DbSettings)> = d
        .regions
        .iter()
        .filter(|r| r.endpoint.is_empty())
        .filter_map(|r| r.database.as_ref().map(|db| (r, db)))
        .map(|(r, db)| {
            crate::db::parse(db, &config.db_env)
                .map(|s| (r.name.clone(), s))
                .map_err(|e| Error::Target(format!("database of region {}: {e}", r.name)))
        })
        .collect::<Result<_>>()?;
    if dbs.is_empty() {
        return Ok(());
    }
    let tls = crate::net::tls_config(d.tls.ca_file.as_deref())
        .unwrap_or_else(|_| xregion_load::tls::config_with(rustls::RootCertStore::empty()));
    let timeout = Duration::from_millis(d.request_timeout_ms);
    let connect = Duration::from_millis(d.connect_timeout_ms);
    let mut clients: Vec<(String, crate::db::DbRegion)> = Vec::new();
    let mut pg = Vec::new();
    let mut etcd_client = None;
    for (name, s) in dbs {
        match s.kind {
            crate::db::DbKind::Postgres => pg.push((name, s)),
            crate::db::DbKind::Etcd => {
                let http = match &etcd_client {
                    Some(c) => c,
                    None => etcd_client.insert(crate::db::etcd::client(d).map_err(Error::Target)?),
                };
                let client = crate::db::etcd::EtcdRegion::new(&name, s, http.clone(), timeout);
                clients.push((name, crate::db::DbRegion::Etcd(client)));
            }
            crate::db::DbKind::Mysql => {
                let ca = d.tls.ca_file.as_deref();
                let client = crate::db::mysql::MyRegion::new(&name, s, ca, connect, timeout);
                clients.push((name, crate::db::DbRegion::Mysql(client.map_err(Error::Target)?)));
            }
        }
    }
    // The Postgres regions share one cluster client: a standby's writes follow the cluster's writer.
    if !pg.is_empty() {
        let pg_clients = crate::db::postgres::PgCluster::connect(&pg, tls, connect, timeout, d.tls.ca_file.clone())
            .map_err(Error::Target)?;
        clients.extend(pg.into_iter().map(|(n, _)| n).zip(pg_clients.into_iter().map(crate::db::DbRegion::Postgres)));
    }
    for (name, client) in clients {
        if let Some(p) = probes.iter_mut().find(|p| p.region == name) {
            *p = Probe::database_client(&name, client, timeout);
        }
    }
    Ok(())
}

/// Where `xregion fail`, `restore` and `status` send a fault: the deployment of `--config` when it is an http
/// deployment (its `[faults]` injector), and otherwise the lab that `xregion lab up` runs in `--dir` (default:
/// `lab.dir` from the config, or `./xregion-lab`). The error says what is wrong and what to do.
pub fn injector_for(config_path: Option<&Path>, dir: Option<&Path>) -> Result<FaultInjector> {
    let config = match config_path {
        Some(path) => Some(config::load(Some(path), &config::process_env())?),
        None => None,
    };
    if let Some(c) = &config
        && c.deployment.kind == DeploymentKind::Http
    {
        let regions: Vec<_> = c
            .deployment
            .regions
            .iter()
            .map(|r| RegionInfo { name: r.name.clone(), endpoint: r.endpoint.clone() })
            .collect();
        let injector = FaultInjector::from_config(c, &regions, None);
        if let Some(why) = injector.unavailable() {
            let path = config_path.map(|p| p.display().to_string()).unwrap_or_default();
            return Err(Error::Usage(format!("{path} describes an http deployment, but {why}")));
        }
        return Ok(injector);
    }
    let dir = dir
        .map(Path::to_path_buf)
        .or_else(|| config.as_ref().and_then(|c| c.lab.dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_DIR));
    let mut c = config.unwrap_or_default();
    let (control_url, endpoints) = lab::find_running(&dir, &mut c).map_err(Error::Usage)?;
    let client = crate::faults::injector_client(&c.deployment);
    Ok(FaultInjector::Lab(LabInjector::new(Some(&control_url), endpoints).with_client(client)))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, so that either stops a command cleanly and takes the lab down with it.
pub async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
