//! The lab spec: the file (`DIR/spec.json`) the supervisor writes and every lab process reads.
//!
//! It carries the validated config plus the concrete addresses: each region's IP and ports. Ports start at 0
//! (the node picks) and the supervisor writes back the ports the nodes bound, so a restarted region comes back
//! on the same address and ports and the WAN proxy keeps reaching it.

use crate::LabError;
use crate::config::LabConfig;
use crate::layout::LabDir;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The whole spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Lab data directory; region data lives in `dir/<region>/`.
    pub dir: PathBuf,
    /// The validated config (WAN matrix, defects).
    pub lab: LabConfig,
    /// One entry per region, in config order.
    pub regions: Vec<RegionSpec>,
}

/// Where one region listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Region name.
    pub name: String,
    /// The region's own loopback address.
    pub ip: IpAddr,
    /// Probe-contract HTTP port; 0 = pick one.
    pub http_port: u16,
    /// Replication port (what the WAN proxy dials); 0 = pick one.
    pub repl_port: u16,
}

impl RegionSpec {
    /// The replication listener address.
    pub fn repl_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.repl_port)
    }
}

impl Spec {
    /// A spec for `cfg` with every port still to be picked.
    pub fn new(cfg: &LabConfig, dir: &Path) -> Result<Spec, LabError> {
        cfg.validate()?;
        let regions = cfg
            .regions
            .iter()
            .enumerate()
            .map(|(i, name)| {
                // validate() has checked that every region has an address.
                let ip = cfg.region_ip(i).unwrap_or(cfg.base_addr);
                RegionSpec { name: name.clone(), ip, http_port: 0, repl_port: 0 }
            })
            .collect();
        Ok(Spec { dir: dir.to_path_buf(), lab: cfg.clone(), regions })
    }

    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Spec, LabError> {
        let text =
            std::fs::read(path).map_err(|e| LabError::io(format!("cannot read the lab spec {}", path.display()), e))?;
        serde_json::from_slice(&text)
            .map_err(|e| LabError::Spec(format!("{} is not a valid lab spec: {e}", path.display())))
    }

    /// Writes the spec atomically (temp file + rename), so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), LabError> {
        write_atomic(path, &serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// The lab directory, `dir`.
    pub fn lab_dir(&self) -> LabDir {
        LabDir::new(&self.dir)
    }

    /// The entry of `region`.
    pub fn region(&self, region: &str) -> Result<&RegionSpec, LabError> {
        self.regions.iter().find(|r| r.name == region).ok_or_else(|| {
            let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
            LabError::UnknownRegion { name: region.to_string(), known: known.join(", ") }
        })
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| LabError::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| LabError::io(format!("cannot rename {} into place", tmp.display()), e))
}
