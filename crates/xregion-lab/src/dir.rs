//! Opening a lab directory: what a running (or just started) lab left there, read through one API.
//!
//! This module reads, for the rest of xregion: whether the lab is hardened (it wrote a CA), the CA file and bearer
//! tokens a client needs ([`LabDir::credentials`]), each region's replication listener from `spec.json`
//! ([`LabDir::replication_listeners`]), and the lab that `xregion lab up` runs there, from `lab.json`
//! ([`LabDir::running`], which also checks that the recorded supervisor is alive). `lab.json`'s format,
//! [`LabRecord`], is defined here too; the control server writes it.
//!
//! The paths themselves are named by `layout`, whose `LabDir` this module re-exports and extends: `auth`, `pki`,
//! `crypto` and the node need the paths too, and this module reads the tokens through `auth`, so naming and
//! reading cannot share one module without a circle.
//!
//! Errors are [`LabDirError`]s whose messages say what to do (start a lab, stop a stale one).

pub use crate::layout::LabDir;

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
    /// How its node ended, when it crashed (an exit the lab did not cause) and has not been restarted since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ProcExit>,
}

/// How a lab child process ended, as the supervisor's task that waited on it saw it (`child`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcExit {
    /// `killed by signal 9` or `exited 3`.
    pub how: String,
    /// When it was reaped, in ms since the Unix epoch.
    pub at_ms: u64,
}

impl ProcExit {
    /// `killed by signal 9 at 07:31:02 UTC`.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.how, hms_utc(self.at_ms))
    }

    /// `down (killed by signal 9 at 07:31:02 UTC)`: a region's health while its node is down after a crash.
    pub fn health(&self) -> String {
        format!("down ({})", self.describe())
    }
}

/// `HH:MM:SS UTC` of a time in ms since the Unix epoch.
pub fn hms_utc(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
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
    #[error(
        "no lab is running in {} (lab.json is stale: pid {pid} is gone); start one with `xregion lab up`",
        show_dir(.dir)
    )]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LabConfig;
    use crate::secret_file::TestDir;

    /// A lab.json whose supervisor is `pid`, with two regions.
    fn write_record(dir: &LabDir, pid: u32) {
        let region = |name: &str, port: u16| RegionRecord {
            name: name.to_string(),
            endpoint: format!("https://127.0.1.1:{port}"),
            pid: Some(pid),
            exit: None,
        };
        let record = LabRecord {
            supervisor_pid: pid,
            control_url: "https://localhost:4000".to_string(),
            dir: dir.path().to_path_buf(),
            wan_pid: None,
            wan_admin_url: None,
            router_pid: None,
            traffic: None,
            ca_file: dir.ca_file(),
            tokens_file: dir.tokens_file(),
            regions: vec![region("us-east-1", 4001), region("eu-west-1", 4002)],
        };
        std::fs::write(dir.lab_json(), serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    }

    /// Goal: every path sits where the lab has always put it; method: compare each with the path spelled out.
    #[test]
    fn layout_names_every_path() {
        let dir = LabDir::new("/lab");
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(dir.path(), Path::new("/lab"));
        assert_eq!(
            [dir.lab_json(), dir.spec_file(), dir.tokens_file(), dir.kek_file(), dir.wan_log(), dir.router_log()],
            [
                p("/lab/lab.json"),
                p("/lab/spec.json"),
                p("/lab/tokens.json"),
                p("/lab/keys/kek"),
                p("/lab/wan.log"),
                p("/lab/router.log")
            ]
        );
        assert_eq!(
            [dir.ca_file(), dir.ca_key_file(), dir.pki_manifest()],
            [p("/lab/pki/ca.pem"), p("/lab/pki/ca.key"), p("/lab/pki/pki.json")]
        );
        let server = dir.server_cert("eu.west");
        assert_eq!((server.pem, server.key), (p("/lab/pki/server-eu.west.pem"), p("/lab/pki/server-eu.west.key")));
        assert_eq!(dir.client_cert("a").pem, p("/lab/pki/client-a.pem"));
        assert_eq!(
            [
                dir.store_file("a"),
                dir.data_key_file("a"),
                dir.audit_log("a"),
                dir.node_log("a"),
                dir.running_marker("a")
            ],
            [
                p("/lab/a/store.redb"),
                p("/lab/a/data.key"),
                p("/lab/a/audit.log"),
                p("/lab/a/node.log"),
                p("/lab/a/running")
            ]
        );
    }

    /// Goal: a relative directory reads as a path in messages; method: `show_dir` on each kind of path.
    #[test]
    fn show_dir_prefixes_bare_relative_paths() {
        assert_eq!(show_dir(Path::new("xregion-lab")), "./xregion-lab");
        assert_eq!(show_dir(Path::new("labs/one")), "./labs/one");
        for kept in ["./xregion-lab", "../lab", "/tmp/lab", ".lab"] {
            assert_eq!(show_dir(Path::new(kept)), kept);
        }
    }

    /// Goal: no lab.json means no lab, said as `xregion lab` has always said it; method: a relative and a temp dir.
    #[test]
    fn running_without_lab_json() {
        let relative = LabDir::new("xregion-lab-test-no-such-dir");
        let e = relative.running().unwrap_err();
        assert!(matches!(e, LabDirError::NotRunning { .. }), "{e:?}");
        let msg = "no lab is running in ./xregion-lab-test-no-such-dir; start one with `xregion lab up`";
        assert_eq!(e.to_string(), msg);
        let tmp = TestDir::new("dir-missing");
        let e = LabDir::new(&*tmp).running().unwrap_err();
        let msg = format!("no lab is running in {}; start one with `xregion lab up`", tmp.display());
        assert_eq!(e.to_string(), msg);
    }

    /// Goal: a gone supervisor makes lab.json stale, a live one the running lab; method: pid u32::MAX, then ours.
    #[test]
    fn running_checks_the_supervisor_pid() {
        let tmp = TestDir::new("dir-stale");
        let dir = LabDir::new(&*tmp);
        // Above Linux's `pid_max` (at most 2^22), so never a live process.
        write_record(&dir, u32::MAX);
        let e = dir.running().unwrap_err();
        assert!(matches!(e, LabDirError::Stale { pid: u32::MAX, .. }), "{e:?}");
        let msg = format!(
            "no lab is running in {} (lab.json is stale: pid {} is gone); start one with `xregion lab up`",
            tmp.display(),
            u32::MAX
        );
        assert_eq!(e.to_string(), msg);
        assert_eq!(dir.record().unwrap().supervisor_pid, u32::MAX, "the record itself still reads");

        write_record(&dir, std::process::id());
        let lab = dir.running().unwrap();
        assert_eq!(lab.control_url, "https://localhost:4000");
        let names: Vec<&str> = lab.regions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["us-east-1", "eu-west-1"], "config order");
        assert_eq!(lab.regions[1].1, "https://127.0.1.1:4002");
    }

    /// Goal: a lab.json that is not a record, or cannot be read, says so and what to do; method: garbage, a dir.
    #[test]
    fn running_with_a_broken_lab_json() {
        let tmp = TestDir::new("dir-garbage");
        let dir = LabDir::new(&*tmp);
        std::fs::write(dir.lab_json(), b"{not json").unwrap();
        let e = dir.running().unwrap_err();
        assert!(matches!(e, LabDirError::NotARecord { .. }), "{e:?}");
        let msg = e.to_string();
        let head = format!("{} is not a lab record (", dir.lab_json().display());
        assert!(msg.starts_with(&head) && msg.ends_with("); stop the lab with `xregion lab down`"), "{msg}");

        std::fs::remove_file(dir.lab_json()).unwrap();
        std::fs::create_dir(dir.lab_json()).unwrap();
        let e = dir.running().unwrap_err();
        assert!(matches!(e, LabDirError::Read { .. }), "{e:?}");
        assert!(e.to_string().starts_with(&format!("cannot read {}: ", dir.lab_json().display())), "{e}");
    }

    /// Goal: the CA file, each role's token and principal round-trip; method: `Tokens::create`, then a CA.
    #[test]
    fn credentials_round_trip() {
        let tmp = TestDir::new("dir-credentials");
        let dir = LabDir::new(&*tmp);
        assert!(matches!(dir.credentials(), Err(LabDirError::Tokens(_))), "no tokens file yet");
        let tokens = Tokens::create(dir.path()).unwrap();
        let creds = dir.credentials().unwrap();
        assert_eq!(creds.ca_file, dir.ca_file());
        assert_eq!(creds.read_token.as_deref(), tokens.token_of(READER));
        assert_eq!(creds.write_token.as_deref(), tokens.token_of(WRITER));
        assert_eq!(creds.admin_token.as_deref(), tokens.token_of(ADMIN));
        assert!(creds.read_token.is_some() && creds.read_token != creds.admin_token);
        let principals = [&creds.reader_principal, &creds.writer_principal, &creds.admin_principal];
        assert_eq!(principals, ["reader", "writer", "admin"]);

        assert!(!dir.is_hardened(), "no CA yet");
        let local = "127.0.0.1".parse().unwrap();
        crate::pki::Pki::create(dir.path(), &[("a".into(), local)], local, Default::default()).unwrap();
        assert!(dir.is_hardened());
    }

    /// Goal: `Debug` of the credentials never shows a token; method: format them and look for each token.
    #[test]
    fn credentials_debug_redacts_tokens() {
        let tmp = TestDir::new("dir-redact");
        let dir = LabDir::new(&*tmp);
        Tokens::create(dir.path()).unwrap();
        let mut creds = dir.credentials().unwrap();
        creds.write_token = None;
        let shown = format!("{creds:?} {creds:#?}");
        for token in [creds.read_token.as_deref(), creds.admin_token.as_deref()].into_iter().flatten() {
            assert!(!shown.contains(token), "{shown}");
        }
        assert!(!shown.contains(crate::auth::TOKEN_PREFIX), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("write_token: None") && shown.contains("admin"));
    }

    /// Goal: the replication listeners come from spec.json, without the ones not bound yet; method: a saved spec.
    #[test]
    fn replication_listeners_from_the_spec() {
        let tmp = TestDir::new("dir-spec");
        let dir = LabDir::new(&*tmp);
        assert!(dir.replication_listeners().is_empty(), "no spec");
        let mut spec = Spec::new(&LabConfig::default(), dir.path()).unwrap();
        spec.regions[0].repl_port = 4100;
        spec.regions[2].repl_port = 4102;
        spec.save(&dir.spec_file()).unwrap();
        let listeners = dir.replication_listeners();
        let expected: BTreeMap<String, String> =
            [("us-east-1".into(), "127.0.1.1:4100".into()), ("eu-west-1".into(), "127.0.1.3:4102".into())].into();
        assert_eq!(listeners, expected);
    }
}
