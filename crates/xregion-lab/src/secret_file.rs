//! Files that hold the lab's secrets (private keys, bearer tokens, encryption keys), shared by `pki`, `auth` and
//! `crypto`.
//!
//! Why: a secret must never be readable by other users, not even for the moment between creating a file and
//! changing its mode, and a reader must never see half a key. How: `write_file` creates a temporary file with the
//! final mode already set, writes and syncs it, renames it into place and syncs the directory (a key must be on
//! disk before any data sealed with it is). `read_secret` refuses a secret file that group or others can read,
//! like `ssh` refuses a loose private key. `random_bytes` draws key material from the operating system.

use crate::LabError;
use rand::TryRngCore;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Mode of a file that holds a secret: read and write for the owner only.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Mode of a file that others may read (certificates, manifests).
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode bits that give group or others any access.
const GROUP_OTHER_BITS: u32 = 0o077;
/// Longest name (region) that may become part of a file name; the config allows no longer.
const NAME_LEN_MAX: usize = 64;

/// Writes `bytes` to `path` atomically with `mode` (temporary file created with the mode, fsync, rename, fsync
/// of the directory).
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LabError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A stale temporary file may have another mode; `create_new` below must create a fresh one.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io(format!("cannot remove {}", tmp.display()), e)),
    }
    let written = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).and_then(|mut f| {
        // The umask may have cleared bits of `mode` (never added any); set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    });
    written.map_err(|e| LabError::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| LabError::io(format!("cannot rename {} into place", tmp.display()), e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| LabError::io(format!("cannot sync the directory {}", parent.display()), e))?;
    }
    Ok(())
}

/// Reads a secret file, refusing it when group or others have any access to it.
pub(crate) fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, LabError> {
    let mut file = File::open(path).map_err(|e| LabError::io(format!("cannot open {}", path.display()), e))?;
    let meta = file.metadata().map_err(|e| LabError::io(format!("cannot stat {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(LabError::State(format!(
            "{} holds a secret but has mode {mode:03o}; it must be {SECRET_MODE:03o} (chmod {SECRET_MODE:o} it)",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .map_err(|e| LabError::io(format!("cannot read {}", path.display()), e))?;
    Ok(bytes)
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, LabError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rand::rngs::OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|e| LabError::io("cannot read the operating system's random source", std::io::Error::other(e)))?;
    Ok(bytes)
}

/// Checks that `name` (a region) is safe as part of a file name and as a DNS name: the config's rule for region
/// names (ASCII letters, digits, `.`, `_`, `-`; not starting with `.`; at most 64 bytes).
pub(crate) fn check_name(name: &str) -> Result<(), LabError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > NAME_LEN_MAX || !ok_chars || name.starts_with('.') {
        return Err(LabError::Invalid(format!(
            "{name:?} is not a valid region name (ASCII letters, digits, '.', '_', '-'; at most {NAME_LEN_MAX})"
        )));
    }
    Ok(())
}

/// Parses one of the lab's versioned JSON files (`what` names it in errors) and checks that `version_of` it is
/// `expected`. A parse error gives the line, column and category only: serde_json's message can quote the file's
/// content, which may be a secret.
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    what: &str,
    version_of: impl Fn(&T) -> u32,
    expected: u32,
) -> Result<T, LabError> {
    let parsed: T = serde_json::from_slice(bytes).map_err(|e| {
        let (line, column, category) = (e.line(), e.column(), e.classify());
        LabError::State(format!(
            "{} is not a valid {what} ({category:?} error at line {line}, column {column})",
            path.display()
        ))
    })?;
    let found = version_of(&parsed);
    if found != expected {
        return Err(LabError::State(format!(
            "{} has version {found}; this xregion reads version {expected}",
            path.display()
        )));
    }
    Ok(parsed)
}

/// Creates `dir` (and its parents) if needed.
pub(crate) fn create_dir(dir: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("cannot create {}", dir.display()), e))
}

/// A fresh directory under the system temp dir for one test, removed when dropped.
#[cfg(test)]
pub(crate) struct TestDir(std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(tag: &str) -> TestDir {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("xregion-lab-{tag}-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

#[cfg(test)]
impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a secret is written with mode 0600, replaces an older file, and a loosened file is refused on read.
    #[test]
    fn secret_files_are_private() {
        let dir = TestDir::new("secret");
        let path = dir.join("s.key");
        write_file(&path, b"one", SECRET_MODE).unwrap();
        write_file(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, SECRET_MODE);
        assert_eq!(&read_secret(&path).unwrap()[..], b"two");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&path).unwrap_err().to_string();
        assert!(err.contains("644") && err.contains("600"), "{err}");
        assert!(check_name("us-east-1").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let parse = |text: &str| {
            parse_versioned::<serde_json::Value>(
                &path,
                text.as_bytes(),
                "test file",
                |v| v["version"].as_u64().unwrap_or(0) as u32,
                1,
            )
        };
        assert!(parse(r#"{"version": 1}"#).is_ok());
        assert!(parse(r#"{"version": 2}"#).unwrap_err().to_string().contains("version 2"));
        let err = parse(r#"{"version": "secret-value"#).unwrap_err().to_string();
        assert!(err.contains("line 1") && !err.contains("secret-value"), "{err}");
    }
}
