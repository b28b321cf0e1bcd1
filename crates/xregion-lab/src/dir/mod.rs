//! Opening a lab directory: what a running (or just started) lab left there, read through one API.
//!
//! `layout` names every path under the directory; this module reads what is in them for the rest of xregion:
//! whether the lab is hardened (it wrote a CA), the CA file and bearer tokens a client needs
//! ([`LabDir::credentials`]), each region's replication listener from `spec.json`
//! ([`LabDir::replication_listeners`]), and the lab that `xregion lab up` runs there, from `lab.json`
//! ([`LabDir::running`], which also checks that the recorded supervisor is alive). `lab.json`'s format,
//! [`LabRecord`], is defined here too; the control server writes it.
//!
//! Errors are [`LabDirError`]s whose messages say what to do (start a lab, stop a stale one).

pub mod layout;

pub use layout::LabDir;

use crate::LabError;
use crate::auth::{ADMIN, READER, Tokens, WRITER};
use crate::router::info::TrafficInfo;
use crate::spec::Spec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// `DIR/lab.json`: how other processes find a running `lab up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabRecord {
    /// Pid of the `xregion lab up` process.
    pub supervisor_pid: u32,
    /// Base URL of its control API.
    pub control_url: String,
    /// The lab directory.
    pub dir: PathBuf,
    /// Pid of the WAN process.
    pub wan_pid: Option<u32>,
    /// WAN admin API base URL.
    pub wan_admin_url: Option<String>,
    /// Pid of the router process.
    #[serde(default)]
    pub router_pid: Option<u32>,
    /// The routing records, CDN and their tables.
    #[serde(default)]
    pub traffic: Option<TrafficInfo>,
    /// The CA certificate every lab listener's certificate chains to (`DIR/pki/ca.pem`): what clients trust.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// The tokens file (`DIR/tokens.json`, mode 0600): the `reader`, `writer` and `admin` bearer tokens.
    #[serde(default)]
    pub tokens_file: PathBuf,
    /// Regions in config order.
    pub regions: Vec<RegionRecord>,
}

/// One region in `lab.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRecord {
    /// Region name.
    pub name: String,
    /// Probe-contract base URL.
    pub endpoint: String,
    /// Node pid, if running.
    pub pid: Option<u32>,
}

/// What a client of the lab needs to get in: the CA to trust and a token per role, with the principal names the
/// lab writes in its audit log for each. `Debug` shows whether each token is there, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct LabCredentials {
    /// `DIR/pki/ca.pem`, the CA every lab listener's certificate chains to.
    pub ca_file: PathBuf,
    /// The token with the read scope.
    pub read_token: Option<String>,
    /// The token with the read and write scopes.
    pub write_token: Option<String>,
    /// The token with every scope (fault control, the audit log).
    pub admin_token: Option<String>,
    /// The audit log's principal for `read_token`.
    pub reader_principal: String,
    /// The audit log's principal for `write_token`.
    pub writer_principal: String,
    /// The audit log's principal for `admin_token`.
    pub admin_principal: String,
}

impl fmt::Debug for LabCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "[redacted]");
        f.debug_struct("LabCredentials")
            .field("ca_file", &self.ca_file)
            .field("read_token", &redacted(&self.read_token))
            .field("write_token", &redacted(&self.write_token))
            .field("admin_token", &redacted(&self.admin_token))
            .field("reader_principal", &self.reader_principal)
            .field("writer_principal", &self.writer_principal)
            .field("admin_principal", &self.admin_principal)
            .finish()
    }
}

/// The lab that `xregion lab up` runs in a directory, as its `lab.json` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningLab {
    /// Base URL of its control API.
    pub control_url: String,
    /// Its regions in config order: (name, probe-contract endpoint).
    pub regions: Vec<(String, String)>,
}

/// Why a lab directory cannot be opened. The messages are the user's: they say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LabDirError {
    /// There is no `lab.json`.
    #[error("no lab is running in {}; start one with `xregion lab up`", show_dir(.dir))]
    NotRunning {
        /// The lab directory.
        dir: PathBuf,
    },
    /// `lab.json` names a supervisor that is gone.
    #[error("no lab is running in {} (lab.json is stale: pid {pid} is gone); start one with `xregion lab up`", show_dir(.dir))]
    Stale {
        /// The lab directory.
        dir: PathBuf,
        /// The supervisor pid `lab.json` records.
        pid: u32,
    },
    /// A file of the lab cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `lab.json` is not a lab record.
    #[error("{} is not a lab record ({source}); stop the lab with `xregion lab down`", .path.display())]
    NotARecord {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The tokens file cannot be read or is not valid.
    #[error(transparent)]
    Tokens(LabError),
}

/// `dir` for messages: a relative path that does not start with `.` gets `./`, so that it reads as a path.
pub fn show_dir(dir: &Path) -> String {
    let s = dir.display().to_string();
    if dir.is_relative() && !s.starts_with('.') { format!("./{s}") } else { s }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

impl LabDir {
    /// Whether the lab wrote a CA (a hardened lab); false for an older plain one.
    pub fn is_hardened(&self) -> bool {
        self.ca_file().exists()
    }

    /// The lab's CA file and bearer tokens (read/write/admin) and the principal names the lab writes in its audit
    /// log for them.
    pub fn credentials(&self) -> Result<LabCredentials, LabDirError> {
        let tokens = Tokens::load(self.path()).map_err(LabDirError::Tokens)?;
        let token = |who: &str| tokens.token_of(who).map(str::to_string);
        Ok(LabCredentials {
            ca_file: self.ca_file(),
            read_token: token(READER),
            write_token: token(WRITER),
            admin_token: token(ADMIN),
            reader_principal: READER.to_string(),
            writer_principal: WRITER.to_string(),
            admin_principal: ADMIN.to_string(),
        })
    }

    /// region name -> "ip:port" of each region's replication listener, from spec.json (empty map when there is no
    /// spec or no listener).
    pub fn replication_listeners(&self) -> BTreeMap<String, String> {
        let Ok(spec) = Spec::load(&self.spec_file()) else { return BTreeMap::new() };
        spec.regions.iter().filter(|r| r.repl_port != 0).map(|r| (r.name.clone(), r.repl_addr().to_string())).collect()
    }

    /// The lab that `xregion lab up` runs here: reads lab.json and checks the supervisor pid is alive.
    pub fn running(&self) -> Result<RunningLab, LabDirError> {
        let record = self.record()?;
        if !pid_alive(record.supervisor_pid) {
            return Err(LabDirError::Stale { dir: self.path().to_path_buf(), pid: record.supervisor_pid });
        }
        let regions = record.regions.into_iter().map(|r| (r.name, r.endpoint)).collect();
        Ok(RunningLab { control_url: record.control_url, regions })
    }

    /// What lab.json records, whether or not its supervisor is still alive.
    pub fn record(&self) -> Result<LabRecord, LabDirError> {
        let path = self.lab_json();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabDirError::NotRunning { dir: self.path().to_path_buf() });
            }
            Err(source) => return Err(LabDirError::Read { path, source }),
        };
        serde_json::from_slice(&text).map_err(|source| LabDirError::NotARecord { path, source })
    }
}
