//! The embedded lab as a target: start it inside its control API, fill in what clients of it need (CA, tokens,
//! residency policy, raw files, replication listeners), find a lab that `xregion lab up` runs, and stop it.
//!
//! With `lab_cmd`, this is the only module of the binary crate that imports `xregion_lab`: the lab's processes,
//! its directory layout and its API stay behind this file.

use crate::config::{Config, Secret, Traffic};
use crate::error::{Error, Result};
use std::path::Path;
use xregion_model::report::RegionInfo;

/// A lab this process started, serving its control API; shut it down with `shutdown` (dropping it kills it).
pub struct RunningLab {
    /// The lab inside its control API server.
    server: xregion_lab::ControlServer,
}

impl RunningLab {
    /// Base URL of the control API, which the lab's fault injector calls.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Stops the lab and every process of it.
    pub async fn shutdown(self) -> std::result::Result<(), String> {
        self.server.shutdown().await.map_err(|e| e.to_string())
    }
}

/// What a started lab offers a run.
pub struct Started {
    /// The lab.
    pub lab: RunningLab,
    /// Its regions in config order.
    pub regions: Vec<RegionInfo>,
    /// Its routing records and CDN.
    pub traffic: Option<Traffic>,
}

/// Starts the lab of `config` in `dir`, filling in `config`'s client settings from it. Ctrl-C while it starts is
/// `Error::Interrupted`.
pub async fn start(
    config: &mut Config,
    dir: &Path,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<Started> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Target(format!("cannot find the xregion executable to start the lab: {e}")))?;
    let started = tokio::select! {
        r = xregion_lab::Lab::start(&config.lab, dir, &exe) => r,
        _ = interrupt => return Err(Error::Interrupted("while starting the lab; nothing was measured".into())),
    };
    let l = started.map_err(|e| Error::Target(format!("the lab did not start: {e}")))?;
    let regions = l.regions();
    let traffic = traffic_of(&l);
    // On an error below, dropping the lab SIGKILLs its processes.
    fill_client_settings(config, dir).map_err(|e| Error::Target(format!("cannot read the lab's CA or tokens: {e}")))?;
    let server = xregion_lab::ControlServer::start(l)
        .await
        .map_err(|e| Error::Target(format!("the lab's control API did not start: {e}")))?;
    Ok(Started { lab: RunningLab { server }, regions, traffic })
}

/// The lab's routing records and CDN in the runner's terms.
fn traffic_of(lab: &xregion_lab::Lab) -> Option<Traffic> {
    let t = lab.traffic()?;
    Some(Traffic {
        records: t.records,
        cdn: Some(t.cdn),
        nearest: t.nearest,
        geolocation: t.geolocation,
        locations: t.locations,
        weights: t.weights.into_iter().map(|(k, v)| (k, f64::from(v))).collect(),
        capacity: t.capacity.into_iter().map(|(k, v)| (k, u64::from(v))).collect(),
        failover_order: t.failover_order,
        ..Traffic::default()
    })
}

/// Fills in what clients of the lab in `dir` need and the config does not set: the CA the lab's listeners chain
/// to, its tokens (read, write, admin) and the principal its writes are audited under, its residency policy, its
/// directory as the raw files to scan, and its replication listeners. Everything comes from `LabDir`, which alone
/// knows the directory's layout.
pub fn fill_client_settings(config: &mut Config, dir: &Path) -> std::result::Result<(), String> {
    let lab = xregion_lab::LabDir::new(dir);
    let creds = lab.credentials().map_err(|e| e.to_string())?;
    let d = &mut config.deployment;
    if d.tls.ca_file.is_none() {
        d.tls.ca_file = Some(creds.ca_file.clone());
    }
    for (slot, token) in [
        (&mut d.auth.read_token, &creds.read_token),
        (&mut d.auth.write_token, &creds.write_token),
        (&mut d.auth.admin_token, &creds.admin_token),
    ] {
        if slot.is_none() {
            *slot = token.as_deref().map(Secret::new);
        }
    }
    let s = &mut d.security;
    if s.writer_principal.is_none() {
        s.writer_principal = Some(creds.writer_principal.clone());
    }
    if s.residency_regions.is_empty()
        && let Some(regions) = config.lab.residency_policy().get(&s.residency_tag)
    {
        s.residency_regions = regions.clone();
    }
    if s.raw_paths.is_empty() {
        s.raw_paths = vec![dir.to_path_buf()];
    }
    if s.replication.is_empty() {
        s.replication = lab.replication_listeners();
    }
    Ok(())
}

/// A lab that `xregion lab up` runs in `dir`: its control API URL and its regions as (name, endpoint), with
/// `config`'s client settings filled in from its directory. The error says what to do.
pub fn find_running(dir: &Path, config: &mut Config) -> std::result::Result<(String, Vec<(String, String)>), String> {
    let lab = xregion_lab::LabDir::new(dir);
    let running = lab.running().map_err(|e| e.to_string())?;
    // A lab without a CA is an older, plain one: nothing to fill in.
    if lab.is_hardened() {
        fill_client_settings(config, dir).map_err(|e| format!("cannot read the lab's CA or tokens: {e}"))?;
    }
    Ok((running.control_url, running.regions))
}
