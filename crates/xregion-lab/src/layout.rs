//! Where everything lives in a lab directory: the one place that spells a path under it.
//!
//! The supervisor writes the directory at lab start (`Lab::start`), every lab process reads what it needs from it,
//! and xregion opens a running lab through `dir` (`LabDir::running`, `LabDir::credentials`, defined there on this
//! module's `LabDir`, which `dir` re-exports). So that no two places can disagree, every path under the directory
//! is built here, from the directory and, for a region's files, the region's name:
//!
//! ```text
//! DIR/lab.json            the running `lab up` (control URL, pids, endpoints)
//! DIR/spec.json           the lab spec every lab process reads
//! DIR/tokens.json         bearer tokens (0600)
//! DIR/keys/kek            the key-encryption key (0600)
//! DIR/pki/ca.pem          the CA clients trust; ca.key, pki.json, server-<who>.pem/.key, client-<region>.pem/.key
//! DIR/wan.log, router.log the WAN's and the router's logs
//! DIR/<region>/           store.redb, data.key, audit.log, node.log, and `running` while the node runs
//! ```
//!
//! This module only names paths (and uses no other module of the crate), so every other module can use it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The lab's record of a running `lab up`, under the lab directory.
pub const LAB_JSON_FILE: &str = "lab.json";
/// The lab spec, under the lab directory.
pub const SPEC_FILE: &str = "spec.json";
/// The bearer tokens, under the lab directory.
pub const TOKENS_FILE: &str = "tokens.json";
/// The directory of the lab's key files, under the lab directory.
pub const KEYS_DIR: &str = "keys";
/// The key-encryption key's file, under [`KEYS_DIR`].
pub const KEK_FILE: &str = "kek";
/// The PKI's directory, under the lab directory.
pub const PKI_DIR: &str = "pki";
/// The CA certificate (PEM), under [`PKI_DIR`]: the file that clients trust.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key (PEM, PKCS#8, mode 0600), under [`PKI_DIR`].
pub const CA_KEY_FILE: &str = "ca.key";
/// The PKI's manifest, under [`PKI_DIR`].
pub const PKI_MANIFEST_FILE: &str = "pki.json";
/// The WAN process's log, under the lab directory.
pub const WAN_LOG_FILE: &str = "wan.log";
/// The router process's log, under the lab directory.
pub const ROUTER_LOG_FILE: &str = "router.log";
/// A region's store, under the region's directory.
pub const STORE_FILE: &str = "store.redb";
/// A region's wrapped data key, under the region's directory.
pub const DATA_KEY_FILE: &str = "data.key";
/// A region's audit log, under the region's directory.
pub const AUDIT_FILE: &str = "audit.log";
/// A region's node log, under the region's directory.
pub const NODE_LOG_FILE: &str = "node.log";
/// The file in the region directory that exists while a node runs; found at start, it means the previous run
/// did not stop cleanly (SIGKILL, crash).
pub const RUNNING_MARKER: &str = "running";

/// A lab directory: a running or just-started lab's, or one about to be made. Cheap to build from a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabDir {
    /// The directory, as given (relative paths stay relative).
    path: PathBuf,
}

/// A certificate's two files: the chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain (PEM), readable by anyone.
    pub pem: PathBuf,
    /// The private key (PEM, mode 0600).
    pub key: PathBuf,
}

impl LabDir {
    /// The lab directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> LabDir {
        LabDir { path: path.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// DIR/lab.json: how other processes find a running `lab up`.
    pub fn lab_json(&self) -> PathBuf {
        self.path.join(LAB_JSON_FILE)
    }

    /// DIR/spec.json: the spec every lab process reads.
    pub fn spec_file(&self) -> PathBuf {
        self.path.join(SPEC_FILE)
    }

    /// DIR/tokens.json: the bearer tokens (mode 0600).
    pub fn tokens_file(&self) -> PathBuf {
        self.path.join(TOKENS_FILE)
    }

    /// DIR/keys: the directory of the key-encryption key.
    pub fn keys_dir(&self) -> PathBuf {
        self.path.join(KEYS_DIR)
    }

    /// DIR/keys/kek: the key-encryption key (mode 0600).
    pub fn kek_file(&self) -> PathBuf {
        self.keys_dir().join(KEK_FILE)
    }

    /// DIR/pki: the CA and every certificate.
    pub fn pki_dir(&self) -> PathBuf {
        self.path.join(PKI_DIR)
    }

    /// DIR/pki/ca.pem
    pub fn ca_file(&self) -> PathBuf {
        self.pki_dir().join(CA_CERT_FILE)
    }

    /// DIR/pki/ca.key: the CA's private key (mode 0600).
    pub fn ca_key_file(&self) -> PathBuf {
        self.pki_dir().join(CA_KEY_FILE)
    }

    /// DIR/pki/pki.json: the names and options the certificates were issued with.
    pub fn pki_manifest(&self) -> PathBuf {
        self.pki_dir().join(PKI_MANIFEST_FILE)
    }

    /// DIR/pki/server-<who>.pem and .key: the server certificate of a region or of the router.
    pub fn server_cert(&self, who: &str) -> CertFiles {
        cert_files(&self.pki_dir(), &format!("server-{who}"))
    }

    /// DIR/pki/client-<region>.pem and .key: a region's replication client certificate.
    pub fn client_cert(&self, region: &str) -> CertFiles {
        cert_files(&self.pki_dir(), &format!("client-{region}"))
    }

    /// DIR/wan.log
    pub fn wan_log(&self) -> PathBuf {
        self.path.join(WAN_LOG_FILE)
    }

    /// DIR/router.log
    pub fn router_log(&self) -> PathBuf {
        self.path.join(ROUTER_LOG_FILE)
    }

    /// DIR/<region>: the region's data.
    pub fn region_dir(&self, region: &str) -> PathBuf {
        self.path.join(region)
    }

    /// DIR/<region>/store.redb
    pub fn store_file(&self, region: &str) -> PathBuf {
        self.region_dir(region).join(STORE_FILE)
    }

    /// DIR/<region>/data.key: the region's data key, wrapped under the KEK (mode 0600).
    pub fn data_key_file(&self, region: &str) -> PathBuf {
        self.region_dir(region).join(DATA_KEY_FILE)
    }

    /// DIR/<region>/audit.log
    pub fn audit_log(&self, region: &str) -> PathBuf {
        self.region_dir(region).join(AUDIT_FILE)
    }

    /// DIR/<region>/node.log
    pub fn node_log(&self, region: &str) -> PathBuf {
        self.region_dir(region).join(NODE_LOG_FILE)
    }

    /// DIR/<region>/running: present while the region's node runs.
    pub fn running_marker(&self, region: &str) -> PathBuf {
        self.region_dir(region).join(RUNNING_MARKER)
    }
}

/// `dir/base.pem` and `dir/base.key`, appended rather than set as extensions: a region name may contain a dot.
fn cert_files(dir: &Path, base: &str) -> CertFiles {
    let with = |ext: &str| {
        let mut name = OsString::from(base);
        name.push(ext);
        dir.join(name)
    };
    CertFiles { pem: with(".pem"), key: with(".key") }
}
