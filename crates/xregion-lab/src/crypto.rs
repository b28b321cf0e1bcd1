//! Encryption at rest: envelope encryption with AES-256-GCM.
//!
//! What: one key-encryption key (KEK) for the lab, `DIR/keys/kek` (32 random bytes, mode 0600), which the
//! supervisor makes at lab start with [`ensure_kek`]; and per region a data key, stored only wrapped (sealed under
//! the KEK, bound to the region's name) in `DIR/<region>/data.key` (mode 0600). [`DataKey::load_or_create`] gives a
//! region its [`Sealer`], which seals every value (and replication log entry) before it reaches the store.
//!
//! Why: the issue asks that a raw read of a region's database file reveal no stored value, with a per-region data
//! key under a key file, and for an `encrypt_at_rest = false` defect that shows the check failing.
//!
//! How: a sealed value is `[format][nonce][ciphertext][tag]`: a format byte ([`FORMAT_AES256GCM_V1`]), a random
//! 96-bit nonce, and the AES-256-GCM ciphertext with its 128-bit tag, which also authenticates the caller's
//! associated data (AAD). Callers pass the record's key as AAD, so a value copied to another key fails to open.
//! [`Sealer::plaintext`] (the defect) stores `[FORMAT_PLAINTEXT][bytes]` instead; every sealer opens plaintext
//! values, so a store may hold both formats. Random nonces allow about 2^32 values per data key before the
//! chance of a repeated nonce matters, far beyond a lab's life. Key bytes are zeroized on drop, and so is the
//! AES key schedule (the `aes` crate's `zeroize` feature).
//!
//! A plaintext value is, by definition, not authenticated: whoever can write the store can also write one, or
//! turn a sealed value's format byte into [`FORMAT_PLAINTEXT`] (which yields the sealed bytes, not the value).

use crate::LabError;
use crate::layout::LabDir;
use crate::secret_file::{self, SECRET_MODE};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rand::RngCore;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

/// Bytes of an AES-256 key (the KEK and every data key).
const KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce (96 bits, the size GCM is designed for).
const NONCE_BYTES: usize = 12;
/// Bytes of an AES-GCM authentication tag.
const TAG_BYTES: usize = 16;
/// Bytes of the format prefix.
const FORMAT_BYTES: usize = 1;
/// Format byte of a value stored as-is (the `encrypt_at_rest = false` defect).
pub const FORMAT_PLAINTEXT: u8 = 0x00;
/// Format byte of a value sealed with AES-256-GCM, version 1: `[0x01][nonce 12][ciphertext][tag 16]`.
pub const FORMAT_AES256GCM_V1: u8 = 0x01;
/// AAD of a wrapped data key, followed by the region's name: a data key file moved to another region fails.
const DATA_KEY_AAD: &[u8] = b"xregion-lab/data-key/v1/";

/// Why a value cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Too short to be a value of its format.
    #[error("the sealed value is truncated ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// A format byte this version does not know.
    #[error("the sealed value has unknown format 0x{0:02x}")]
    UnknownFormat(u8),
    /// An encrypted value met a sealer without a key (the plaintext defect).
    #[error("the value is encrypted, but this sealer stores plaintext and has no key")]
    NoKey,
    /// The tag does not verify: the value was altered, sealed under another key, or for other associated data.
    #[error("the sealed value does not authenticate: it was altered, or sealed under another key or for other data")]
    Authentication,
}

/// Seals and opens values at rest: AES-256-GCM under a region's data key, or plaintext for the defect.
#[derive(Clone)]
pub struct Sealer {
    /// `None`: the plaintext defect.
    cipher: Option<Aes256Gcm>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.cipher.is_some() { "aes-256-gcm" } else { "plaintext" };
        f.debug_struct("Sealer").field("mode", &mode).finish()
    }
}

impl Sealer {
    /// A sealer that stores values as they are behind [`FORMAT_PLAINTEXT`] (the `encrypt_at_rest = false` defect).
    /// It opens plaintext values only.
    pub fn plaintext() -> Sealer {
        Sealer { cipher: None }
    }

    /// A sealer under `key`.
    fn with_key(key: &[u8; KEY_BYTES]) -> Sealer {
        Sealer { cipher: Some(Aes256Gcm::new(key.into())) }
    }

    /// Whether this sealer encrypts.
    pub fn is_encrypting(&self) -> bool {
        self.cipher.is_some()
    }

    /// `plaintext` sealed for `aad` (AAD is authenticated, not stored; pass it again to `open`).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let Some(cipher) = &self.cipher else {
            let mut out = Vec::with_capacity(FORMAT_BYTES + plaintext.len());
            out.push(FORMAT_PLAINTEXT);
            out.extend_from_slice(plaintext);
            return out;
        };
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let header = FORMAT_BYTES + NONCE_BYTES;
        let mut out = Vec::with_capacity(header + plaintext.len() + TAG_BYTES);
        out.push(FORMAT_AES256GCM_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[header..])
            .expect("AES-GCM seals up to 64 GiB at once; lab values are far smaller");
        out.extend_from_slice(&tag);
        out
    }

    /// The plaintext of a value sealed (by any sealer with the same key, or in plaintext) for `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&format, rest) = sealed.split_first().ok_or(CryptoError::Truncated { len: 0 })?;
        match format {
            FORMAT_PLAINTEXT => Ok(rest.to_vec()),
            FORMAT_AES256GCM_V1 => {
                let cipher = self.cipher.as_ref().ok_or(CryptoError::NoKey)?;
                if rest.len() < NONCE_BYTES + TAG_BYTES {
                    return Err(CryptoError::Truncated { len: sealed.len() });
                }
                let (nonce, body) = rest.split_at(NONCE_BYTES);
                let (ciphertext, tag) = body.split_at(body.len() - TAG_BYTES);
                let mut out = ciphertext.to_vec();
                // aes-gcm checks the tag before it decrypts, so a failure leaves no plaintext behind.
                cipher
                    .decrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut out, Tag::from_slice(tag))
                    .map_err(|_| CryptoError::Authentication)?;
                Ok(out)
            }
            other => Err(CryptoError::UnknownFormat(other)),
        }
    }
}

/// `DIR/keys/kek`.
pub fn kek_path(lab_dir: &Path) -> PathBuf {
    LabDir::new(lab_dir).kek_file()
}

/// `DIR/<region>/data.key`.
pub fn data_key_path(lab_dir: &Path, region: &str) -> PathBuf {
    LabDir::new(lab_dir).data_key_file(region)
}

/// Makes the lab's KEK at lab start, unless there is one already (it must outlive restarts: every region's data
/// key is wrapped under it). Only the supervisor calls this, before it starts any region.
pub fn ensure_kek(lab_dir: &Path) -> Result<(), LabError> {
    let path = kek_path(lab_dir);
    if path.exists() {
        return read_kek(lab_dir).map(drop);
    }
    secret_file::create_dir(&LabDir::new(lab_dir).keys_dir())?;
    let kek = secret_file::random_bytes::<KEY_BYTES>()?;
    secret_file::write_file(&path, &kek[..], SECRET_MODE)
}

/// The KEK as a sealer.
fn read_kek(lab_dir: &Path) -> Result<Sealer, LabError> {
    let path = kek_path(lab_dir);
    if !path.exists() {
        return Err(LabError::State(format!(
            "there is no key-encryption key at {}; the supervisor makes it at lab start",
            path.display()
        )));
    }
    let bytes = secret_file::read_secret(&path)?;
    let key: &[u8; KEY_BYTES] = bytes[..].try_into().map_err(|_| {
        LabError::State(format!("{} holds {} bytes; a key-encryption key has {KEY_BYTES}", path.display(), bytes.len()))
    })?;
    Ok(Sealer::with_key(key))
}

/// A region's data key. It exists unwrapped only inside the [`Sealer`] that [`DataKey::load_or_create`] returns.
#[derive(Debug)]
pub struct DataKey;

impl DataKey {
    /// The sealer of `region`: its data key unwrapped with the lab's KEK, or a new data key, wrapped and written
    /// to `DIR/<region>/data.key` (0600) before it is used.
    pub fn load_or_create(lab_dir: &Path, region: &str) -> Result<Sealer, LabError> {
        secret_file::check_name(region)?;
        let kek = read_kek(lab_dir)?;
        let path = data_key_path(lab_dir, region);
        let aad = [DATA_KEY_AAD, region.as_bytes()].concat();
        if path.exists() {
            let wrapped = secret_file::read_secret(&path)?;
            let unwrap_error = |why: String| {
                LabError::State(format!(
                    "cannot unwrap the data key of {region} in {} with {}: {why}",
                    path.display(),
                    kek_path(lab_dir).display()
                ))
            };
            let mut key = kek.open(&wrapped, &aad).map_err(|e| unwrap_error(e.to_string()))?;
            let sealer = <&[u8; KEY_BYTES]>::try_from(&key[..])
                .map(Sealer::with_key)
                .map_err(|_| unwrap_error(format!("it holds {} bytes, not {KEY_BYTES}", key.len())));
            key.zeroize();
            return sealer;
        }
        let key = secret_file::random_bytes::<KEY_BYTES>()?;
        secret_file::create_dir(&LabDir::new(lab_dir).region_dir(region))?;
        secret_file::write_file(&path, &kek.seal(&key[..], &aad), SECRET_MODE)?;
        Ok(Sealer::with_key(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_file::TestDir;
    use std::os::unix::fs::PermissionsExt;

    const REGION: &str = "us-east-1";
    const CANARY: &[u8] = b"canary-7f3a9c21-do-not-store-in-clear";
    const AAD: &[u8] = b"key:user/42";

    fn sealer(dir: &Path, region: &str) -> Sealer {
        ensure_kek(dir).unwrap();
        DataKey::load_or_create(dir, region).unwrap()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Goal: a value seals and opens again; the sealed bytes have the v1 format and do not contain the value;
    /// sealing twice gives different bytes (fresh nonce); an empty value works too.
    #[test]
    fn round_trip() {
        let dir = TestDir::new("crypto-rt");
        let s = sealer(&dir, REGION);
        assert!(s.is_encrypting());
        let sealed = s.seal(CANARY, AAD);
        assert_eq!(sealed[0], FORMAT_AES256GCM_V1);
        assert_eq!(sealed.len(), FORMAT_BYTES + NONCE_BYTES + CANARY.len() + TAG_BYTES);
        assert!(!contains(&sealed, CANARY));
        assert_eq!(s.open(&sealed, AAD).unwrap(), CANARY);
        assert_ne!(s.seal(CANARY, AAD), sealed);
        assert_eq!(s.open(&s.seal(b"", AAD), AAD).unwrap(), b"");
    }

    /// Goal: another AAD, any altered byte after the format byte, another region's key, a truncated value or an
    /// unknown format are errors, never a wrong plaintext.
    #[test]
    fn tampering_fails() {
        let dir = TestDir::new("crypto-tamper");
        let s = sealer(&dir, REGION);
        let sealed = s.seal(CANARY, AAD);
        assert_eq!(s.open(&sealed, b"key:user/43"), Err(CryptoError::Authentication));
        for i in FORMAT_BYTES..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(s.open(&bad, AAD), Err(CryptoError::Authentication), "byte {i}");
        }
        let other = sealer(&dir, "eu-west-1");
        assert_eq!(other.open(&sealed, AAD), Err(CryptoError::Authentication));
        assert_eq!(s.open(&sealed[..FORMAT_BYTES + NONCE_BYTES], AAD), Err(CryptoError::Truncated { len: 13 }));
        assert_eq!(s.open(&[], AAD), Err(CryptoError::Truncated { len: 0 }));
        let mut unknown = sealed.clone();
        unknown[0] = 0x7f;
        assert_eq!(s.open(&unknown, AAD), Err(CryptoError::UnknownFormat(0x7f)));
    }

    /// Goal: the KEK and the wrapped data key have mode 0600; a reload (a restarted region) opens what the first
    /// sealer sealed; the data key file holds neither the KEK nor its own key in clear; ensure_kek keeps the KEK.
    #[test]
    fn wrapped_key_survives_reload() {
        let dir = TestDir::new("crypto-reload");
        let first = sealer(&dir, REGION);
        let sealed = first.seal(CANARY, AAD);
        let kek = std::fs::read(kek_path(&dir)).unwrap();
        assert_eq!(kek.len(), KEY_BYTES);
        ensure_kek(&dir).unwrap();
        assert_eq!(std::fs::read(kek_path(&dir)).unwrap(), kek, "ensure_kek keeps an existing KEK");

        let again = DataKey::load_or_create(&dir, REGION).unwrap();
        assert_eq!(again.open(&sealed, AAD).unwrap(), CANARY);
        let wrapped = std::fs::read(data_key_path(&dir, REGION)).unwrap();
        assert_eq!(wrapped.len(), FORMAT_BYTES + NONCE_BYTES + KEY_BYTES + TAG_BYTES);
        assert!(!contains(&wrapped, &kek));
        for path in [kek_path(&dir), data_key_path(&dir, REGION)] {
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, SECRET_MODE, "{path:?}");
        }
    }

    /// Goal: loading fails clearly without a KEK, with another KEK, and with a data key moved from another region.
    #[test]
    fn wrong_keys_are_refused() {
        let dir = TestDir::new("crypto-wrong");
        let err = DataKey::load_or_create(&dir, REGION).unwrap_err().to_string();
        assert!(err.contains("no key-encryption key"), "{err}");
        sealer(&dir, REGION);
        sealer(&dir, "eu-west-1");

        std::fs::copy(data_key_path(&dir, REGION), data_key_path(&dir, "eu-west-1")).unwrap();
        let err = DataKey::load_or_create(&dir, "eu-west-1").unwrap_err().to_string();
        assert!(err.contains("cannot unwrap the data key of eu-west-1"), "{err}");

        std::fs::remove_file(kek_path(&dir)).unwrap();
        ensure_kek(&dir).unwrap();
        let err = DataKey::load_or_create(&dir, REGION).unwrap_err().to_string();
        assert!(err.contains("does not authenticate"), "{err}");
        assert!(DataKey::load_or_create(&dir, "../escape").is_err());
    }

    /// Goal: the plaintext defect round-trips behind its own format byte; an encrypting sealer reads plaintext
    /// values too, and the plaintext sealer says it has no key for encrypted ones.
    #[test]
    fn plaintext_mode() {
        let dir = TestDir::new("crypto-plain");
        let plain = Sealer::plaintext();
        assert!(!plain.is_encrypting());
        let stored = plain.seal(CANARY, AAD);
        assert_eq!(stored[0], FORMAT_PLAINTEXT);
        assert_eq!(&stored[FORMAT_BYTES..], CANARY);
        assert_eq!(plain.open(&stored, AAD).unwrap(), CANARY);
        let encrypting = sealer(&dir, REGION);
        assert_eq!(encrypting.open(&stored, AAD).unwrap(), CANARY);
        assert_eq!(plain.open(&encrypting.seal(CANARY, AAD), AAD), Err(CryptoError::NoKey));
        assert_eq!(
            format!("{plain:?} {encrypting:?}"),
            "Sealer { mode: \"plaintext\" } Sealer { mode: \"aes-256-gcm\" }"
        );
    }
}
