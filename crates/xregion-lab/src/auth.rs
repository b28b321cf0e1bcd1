//! Bearer tokens with scopes: who may read, write and manage the lab.
//!
//! What: three principals, each with a random 32-byte token: `reader` (read), `writer` (read, write) and `admin`
//! (read, write, admin: fault control and lab management). [`Tokens::create`] writes them at lab start to
//! `DIR/tokens.json` (mode 0600); region processes and the router [`Tokens::load`] it, and xregion reads the
//! tokens it needs with [`Tokens::token_of`].
//!
//! Why: the issue asks that a request without a token get 401 and a request with the wrong scope 403, with
//! tokens in a file only the user can read, and that no token ever appear in the lab's logs.
//!
//! How: a handler calls [`Tokens::authorize`] with the request's `Authorization` header and the scope the route
//! needs. It gets the [`Principal`] (whose name, and only that, may be logged: audit entries carry it), or an
//! [`AuthError`] with the status, the `WWW-Authenticate` challenge and the JSON body to answer with. Tokens are
//! compared in constant time with `subtle`, against every principal, so the time taken tells nothing about how
//! much of a guess was right. Token values are zeroized on drop, and neither `Debug` nor any error shows them.

use crate::LabError;
use crate::layout::{LabDir, TOKENS_FILE};
use crate::secret_file::{self, SECRET_MODE};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use xregion_model::wire::ErrorBody;
use zeroize::{Zeroize, Zeroizing};

/// Version of the tokens file's format.
const TOKENS_VERSION: u32 = 1;
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;
/// Every token starts with this, so that a leaked token is easy to recognise (and to scan logs for).
pub const TOKEN_PREFIX: &str = "xrl_";
/// The authentication scheme of the `Authorization` header (compared without regard to case, RFC 9110).
const BEARER: &str = "Bearer";
/// The `WWW-Authenticate` challenge of a request without a token (RFC 6750).
const CHALLENGE_MISSING: &str = "Bearer realm=\"xregion-lab\"";
/// The `WWW-Authenticate` challenge of a request with a bad token (RFC 6750).
const CHALLENGE_INVALID: &str = "Bearer realm=\"xregion-lab\", error=\"invalid_token\"";

/// The principal with the read scope only.
pub const READER: &str = "reader";
/// The principal with the read and write scopes.
pub const WRITER: &str = "writer";
/// The principal with every scope.
pub const ADMIN: &str = "admin";

/// The principals [`Tokens::create`] makes, with their scopes.
const PRINCIPALS: &[(&str, &[Scope])] = &[
    (READER, &[Scope::Read]),
    (WRITER, &[Scope::Read, Scope::Write]),
    (ADMIN, &[Scope::Read, Scope::Write, Scope::Admin]),
];

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reading values.
    Read,
    /// Writing and deleting values.
    Write,
    /// Fault control and lab management.
    Admin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        })
    }
}

/// Who made a request, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The principal's name, the only part of a token that may be logged.
    pub name: String,
    /// What the principal may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Whether the principal has `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a request is not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (401).
    #[error("missing bearer token: send `Authorization: Bearer <token>` with a token from the lab's {TOKENS_FILE}")]
    Missing,
    /// An `Authorization` header that is not `Bearer` with a known token (401).
    #[error(
        "invalid bearer token: the Authorization header must be `Bearer <token>` with a token from the lab's {TOKENS_FILE}"
    )]
    Invalid,
    /// A known token whose principal lacks the scope (403).
    #[error("principal {principal} lacks the {needed} scope")]
    Forbidden {
        /// The principal's name.
        principal: String,
        /// The scope the request needs.
        needed: Scope,
    },
}

impl AuthError {
    /// The answer's status: 401 or 403.
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid => http::StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } => http::StatusCode::FORBIDDEN,
        }
    }

    /// The `WWW-Authenticate` header a 401 answer must carry; none for 403.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => Some(CHALLENGE_MISSING),
            AuthError::Invalid => Some(CHALLENGE_INVALID),
            AuthError::Forbidden { .. } => None,
        }
    }

    /// The JSON error body: code `unauthorized` or `forbidden`, and the message.
    pub fn body(&self) -> ErrorBody {
        let code = match self {
            AuthError::Missing | AuthError::Invalid => "unauthorized",
            AuthError::Forbidden { .. } => "forbidden",
        };
        ErrorBody { error: code.to_string(), message: self.to_string() }
    }
}

/// One principal and its token, as the file holds them. The token is zeroized on drop.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    scopes: Vec<Scope>,
    token: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.token.zeroize();
    }
}

/// The tokens file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    version: u32,
    principals: Vec<Entry>,
}

/// The lab's principals and their tokens. `Debug` names the principals only.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("Tokens").field("principals", &names).finish_non_exhaustive()
    }
}

impl Tokens {
    /// `DIR/tokens.json`.
    pub fn path(dir: &Path) -> PathBuf {
        LabDir::new(dir).tokens_file()
    }

    /// Makes fresh tokens for `reader`, `writer` and `admin` and writes them to `DIR/tokens.json` (mode 0600),
    /// replacing any earlier ones.
    pub fn create(dir: &Path) -> Result<Tokens, LabError> {
        let mut entries = Vec::with_capacity(PRINCIPALS.len());
        for (name, scopes) in PRINCIPALS {
            entries.push(Entry { name: name.to_string(), scopes: scopes.to_vec(), token: new_token()? });
        }
        let file = TokensFile { version: TOKENS_VERSION, principals: entries };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).unwrap_or_default());
        secret_file::create_dir(dir)?;
        secret_file::write_file(&Tokens::path(dir), &json, SECRET_MODE)?;
        Ok(Tokens { entries: file.principals })
    }

    /// Reads `DIR/tokens.json`, refusing it when others can read it.
    pub fn load(dir: &Path) -> Result<Tokens, LabError> {
        let path = Tokens::path(dir);
        let bytes = secret_file::read_secret(&path)?;
        let file: TokensFile =
            secret_file::parse_versioned(&path, &bytes, "tokens file", |f: &TokensFile| f.version, TOKENS_VERSION)?;
        for (i, e) in file.principals.iter().enumerate() {
            if e.token.len() < TOKEN_PREFIX.len() + TOKEN_BYTES || !e.token.starts_with(TOKEN_PREFIX) {
                return Err(LabError::State(format!("{}: the token of {} is malformed", path.display(), e.name)));
            }
            if file.principals[..i].iter().any(|other| other.name == e.name) {
                return Err(LabError::State(format!("{}: principal {} is listed twice", path.display(), e.name)));
            }
        }
        Ok(Tokens { entries: file.principals })
    }

    /// The token of principal `name`, to send as `Authorization: Bearer <token>`.
    pub fn token_of(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.name == name).map(|e| e.token.as_str())
    }

    /// The principals, without their tokens.
    pub fn principals(&self) -> Vec<Principal> {
        self.entries.iter().map(|e| Principal { name: e.name.clone(), scopes: e.scopes.clone() }).collect()
    }

    /// Who sent `authorization_header` (the `Authorization` header's value), if they may do what needs `needed`.
    pub fn authorize(&self, authorization_header: Option<&str>, needed: Scope) -> Result<Principal, AuthError> {
        let header = authorization_header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Invalid)?;
        if !scheme.eq_ignore_ascii_case(BEARER) {
            return Err(AuthError::Invalid);
        }
        let entry = self.find(token.trim_start().as_bytes()).ok_or(AuthError::Invalid)?;
        if !entry.scopes.contains(&needed) {
            return Err(AuthError::Forbidden { principal: entry.name.clone(), needed });
        }
        Ok(Principal { name: entry.name.clone(), scopes: entry.scopes.clone() })
    }

    /// The entry whose token is `presented`, comparing with every entry in constant time (a length mismatch
    /// returns early inside `ct_eq`, but every token has the same public length).
    fn find(&self, presented: &[u8]) -> Option<&Entry> {
        // 0 = no match, i + 1 = entry i.
        let mut found = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            let index = u64::try_from(i + 1).unwrap_or(u64::MAX);
            found.conditional_assign(&index, e.token.as_bytes().ct_eq(presented));
        }
        usize::try_from(found).ok()?.checked_sub(1).and_then(|i| self.entries.get(i))
    }
}

/// A fresh token: the prefix and 32 random bytes in lowercase hex.
fn new_token() -> Result<String, LabError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = secret_file::random_bytes::<TOKEN_BYTES>()?;
    // Sized up front, so that it never reallocates and leaves a copy behind.
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
    token.push_str(TOKEN_PREFIX);
    for b in bytes.iter() {
        token.push(char::from(HEX[usize::from(b >> 4)]));
        token.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_file::TestDir;
    use std::os::unix::fs::PermissionsExt;

    /// Goal: the file has mode 0600 and reloads to the same tokens; tokens are distinct, prefixed and 32 bytes.
    #[test]
    fn create_and_load() {
        let dir = TestDir::new("auth-file");
        let tokens = Tokens::create(&dir).unwrap();
        let mode = std::fs::metadata(Tokens::path(&dir)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SECRET_MODE);
        let loaded = Tokens::load(&dir).unwrap();
        let mut seen = Vec::new();
        for name in [READER, WRITER, ADMIN] {
            let token = tokens.token_of(name).unwrap();
            assert_eq!(loaded.token_of(name), Some(token));
            assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
            assert!(!seen.contains(&token), "tokens are distinct");
            seen.push(token);
        }
        assert_eq!(tokens.token_of("nobody"), None);
        assert_eq!(loaded.principals(), tokens.principals());
        let again = Tokens::create(&dir).unwrap();
        assert_ne!(again.token_of(ADMIN), tokens.token_of(ADMIN), "create makes new tokens");
    }

    /// Goal: no header is `Missing`, a bad scheme or unknown token `Invalid` (both 401 with a challenge), a known
    /// token without the scope `Forbidden` (403, naming the principal and scope); the right scope passes.
    #[test]
    fn authorize_cases() {
        let dir = TestDir::new("auth-cases");
        let tokens = Tokens::create(&dir).unwrap();
        let bearer = |name: &str| format!("Bearer {}", tokens.token_of(name).unwrap());

        let missing = tokens.authorize(None, Scope::Read).unwrap_err();
        assert_eq!(missing, AuthError::Missing);
        assert_eq!(missing.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(missing.www_authenticate(), Some(CHALLENGE_MISSING));

        let reader_token = tokens.token_of(READER).unwrap();
        // The token with its last character changed (to one it is not).
        let last = if reader_token.ends_with('0') { '1' } else { '0' };
        let wrong_last = format!("Bearer {}{last}", &reader_token[..reader_token.len() - 1]);
        let basic = format!("Basic {reader_token}");
        for bad in ["", "Bearer", "Bearer ", "Bearer xrl_00", basic.as_str(), wrong_last.as_str()] {
            let err = tokens.authorize(Some(bad), Scope::Read).unwrap_err();
            assert_eq!(err, AuthError::Invalid, "{bad:?}");
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
            assert_eq!(err.body().error, "unauthorized");
        }

        let forbidden = tokens.authorize(Some(&bearer(READER)), Scope::Write).unwrap_err();
        assert_eq!(forbidden, AuthError::Forbidden { principal: READER.into(), needed: Scope::Write });
        assert_eq!(forbidden.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(forbidden.www_authenticate(), None);
        assert_eq!(forbidden.body().error, "forbidden");
        assert_eq!(forbidden.body().message, "principal reader lacks the write scope");
        let err = tokens.authorize(Some(&bearer(WRITER)), Scope::Admin).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);

        assert_eq!(tokens.authorize(Some(&bearer(READER)), Scope::Read).unwrap().name, READER);
        assert_eq!(tokens.authorize(Some(&bearer(WRITER)), Scope::Write).unwrap().name, WRITER);
        let admin = tokens.authorize(Some(&format!("bearer  {}", tokens.token_of(ADMIN).unwrap())), Scope::Admin);
        assert_eq!(admin.unwrap().scopes, vec![Scope::Read, Scope::Write, Scope::Admin]);
    }

    /// Goal: neither `Debug` of `Tokens` nor any error's `Display`, `Debug` or body contains a token.
    #[test]
    fn tokens_never_shown() {
        let dir = TestDir::new("auth-redact");
        let tokens = Tokens::create(&dir).unwrap();
        let shown = format!("{tokens:?} {tokens:#?}");
        assert!(shown.contains(READER) && !shown.contains(TOKEN_PREFIX), "{shown}");
        let mut errors = String::new();
        for name in [READER, WRITER, ADMIN] {
            let header = format!("Bearer {}", tokens.token_of(name).unwrap());
            for scope in [Scope::Read, Scope::Write, Scope::Admin] {
                let got = tokens.authorize(Some(&header), scope);
                errors.push_str(&format!("{got:?}"));
                if let Err(e) = got {
                    errors.push_str(&format!("{e} {:?}", e.body()));
                }
            }
            let invalid = tokens.authorize(Some(&format!("{header}x")), Scope::Read).unwrap_err();
            errors.push_str(&format!("{invalid} {invalid:?} {:?}", invalid.body()));
        }
        assert!(!errors.contains(TOKEN_PREFIX), "{errors}");
    }

    /// Goal: a tokens file that others can read, or that is malformed, is refused with a message naming the file.
    #[test]
    fn load_refuses_bad_files() {
        let dir = TestDir::new("auth-bad");
        Tokens::create(&dir).unwrap();
        let path = Tokens::path(&dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Tokens::load(&dir).unwrap_err().to_string().contains("mode 640"));
        secret_file::write_file(
            &path,
            br#"{"version":1,"principals":[{"name":"a","scopes":[],"token":"x"}]}"#,
            SECRET_MODE,
        )
        .unwrap();
        assert!(Tokens::load(&dir).unwrap_err().to_string().contains("malformed"));
    }
}
