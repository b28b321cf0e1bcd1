//! A region's database setting: a URL, or `host[:port]` completed by the libpq variables; and the password
//! redaction every report and error uses. A leaf module: the config validates with it.

use crate::secret::Secret;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Which database protocol a region speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// PostgreSQL (a primary, a standby, or a node of a multi-writer mesh).
    Postgres,
}

impl DbKind {
    /// The name used in `XREGION_DB_KIND`, `xregion db schema --kind` and reports.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Postgres => "postgres",
        }
    }

    /// The kind named `s`, or what to write instead.
    pub fn parse(s: &str) -> Result<DbKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(DbKind::Postgres),
            "mysql" | "mariadb" | "galera" | "etcd" => {
                Err(format!("database kind \"{s}\" is not supported yet; xregion speaks postgres"))
            }
            _ => Err(format!("unknown database kind \"{s}\"; use postgres")),
        }
    }
}

/// How a Postgres connection uses TLS. When TLS is used, the server's certificate is always verified against
/// `[deployment.tls] ca_file` (or the system's roots): xregion has no mode that encrypts without verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS or nothing (`require`, `verify-ca` and `verify-full` alike).
    Require,
}

/// One region's database: where it is and how to log in.
#[derive(Clone, PartialEq)]
pub struct DbSettings {
    /// The protocol.
    pub kind: DbKind,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The user.
    pub user: String,
    /// The password, if any (from the URL, `PGPASSWORD` or the password file).
    pub password: Option<Secret>,
    /// The database name.
    pub dbname: String,
    /// TLS use.
    pub sslmode: SslMode,
}

impl fmt::Display for DbSettings {
    /// The URL without the password, for reports and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{}://{}@{host}:{}/{}", self.kind.name(), self.user, self.port, self.dbname)
    }
}

impl fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Parses a region's database setting. `env` gives the libpq variables for a bare `host[:port]` (and the password
/// and password file for a URL without one).
pub fn parse(setting: &str, env: &BTreeMap<String, String>) -> Result<DbSettings, String> {
    let setting = setting.trim();
    let var = |k: &str| env.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let default_user = var("PGUSER").or_else(|| var("USER")).unwrap_or_else(|| "postgres".into());
    let (kind, host, port, user, password, dbname, sslmode) = if let Some((scheme, _)) = setting.split_once("://") {
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => DbKind::Postgres,
            "mysql" | "mariadb" => return Err(format!("{scheme}:// databases are not supported yet; use postgres://")),
            "etcd" | "etcd+https" => return Err(format!("{scheme}:// stores are not supported yet; use postgres://")),
            _ => return Err(format!("unknown database URL scheme \"{scheme}://\"; use postgres://")),
        };
        let url = reqwest::Url::parse(setting).map_err(|e| format!("database URL \"{}\": {e}", redact(setting)))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("a database URL needs a host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let user = if url.username().is_empty() { default_user } else { decode(url.username()) };
        let password = url.password().map(|p| Secret::new(decode(p)));
        let dbname = url.path().trim_start_matches('/');
        let dbname = if dbname.is_empty() { var("PGDATABASE").unwrap_or_else(|| user.clone()) } else { decode(dbname) };
        let mut sslmode = var("PGSSLMODE");
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => sslmode = Some(v.into_owned()),
                other => return Err(format!("database URL parameter \"{other}\" is not supported; use sslmode")),
            }
        }
        (kind, host, url.port().unwrap_or(5432), user, password, dbname, sslmode)
    } else {
        let kind = DbKind::parse(&var("XREGION_DB_KIND").unwrap_or_else(|| "postgres".into()))
            .map_err(|e| format!("XREGION_DB_KIND: {e}"))?;
        let (host, port) = split_host_port(setting)?;
        let dbname = var("PGDATABASE").unwrap_or_else(|| default_user.clone());
        (kind, host, port.unwrap_or(5432), default_user, None, dbname, var("PGSSLMODE"))
    };
    let sslmode = match sslmode.as_deref().unwrap_or("prefer") {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" | "verify-ca" | "verify-full" => SslMode::Require,
        other => return Err(format!("sslmode \"{other}\" is not one of disable, prefer, require, verify-full")),
    };
    let password = match password.or_else(|| var("PGPASSWORD").map(Secret::new)) {
        Some(p) => Some(p),
        None => match var("PGPASSFILE") {
            Some(file) => password_from_file(Path::new(&file), &host, port, &dbname, &user)?,
            None => None,
        },
    };
    Ok(DbSettings { kind, host, port, user, password, dbname, sslmode })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("database \"{s}\" is neither host[:port] nor a postgres:// URL");
    if s.is_empty() || s.contains('/') || s.contains('@') {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h.to_string(), after.strip_prefix(':'))
    } else if s.matches(':').count() == 1 {
        let (h, p) = s.split_once(':').ok_or_else(bad)?;
        (h.to_string(), Some(p))
    } else {
        (s.to_string(), None)
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("database \"{s}\": port \"{p}\" is not a number"))?),
        None => None,
    };
    Ok((host, port))
}

/// Percent-decoding of a URL part.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A database URL with any password replaced, for an error message.
pub fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(a), Some(b)) if b > a => {
            let userinfo = &s[a + 3..b];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:[redacted]{}", &s[..a + 3], &s[b..]),
                None => s.to_string(),
            }
        }
        _ => s.to_string(),
    }
}

/// The password of the first matching line of a libpq password file (`host:port:db:user:password`, `*` matches
/// anything, `\:` and `\\` escape).
fn password_from_file(file: &Path, host: &str, port: u16, db: &str, user: &str) -> Result<Option<Secret>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("PGPASSFILE {}: {e}", file.display()))?;
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let port = port.to_string();
        let matches = |f: &str, v: &str| f == "*" || f == v;
        if matches(&fields[0], host)
            && matches(&fields[1], &port)
            && matches(&fields[2], db)
            && matches(&fields[3], user)
        {
            return Ok(Some(Secret::new(fields[4].clone())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Goal: a bare host[:port] takes user, database, password and TLS from the libpq variables; a URL carries
    /// its own and shows no password when displayed.
    #[test]
    fn host_port_uses_libpq_variables_and_urls_hide_passwords() {
        let e = env(&[("PGUSER", "app"), ("PGDATABASE", "shop"), ("PGPASSWORD", "s3cret"), ("PGSSLMODE", "disable")]);
        let s = parse("127.0.2.1:5433", &e).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()), ("127.0.2.1", 5433, "app", "shop"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(s.sslmode, SslMode::Disable);
        assert_eq!(parse("db.internal", &e).unwrap().port, 5432);
        let s = parse("postgres://bob:p%40ss@[::1]:6000/orders?sslmode=require", &e).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()), ("::1", 6000, "bob", "orders"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(s.sslmode, SslMode::Require);
        assert_eq!(s.to_string(), "postgres://bob@[::1]:6000/orders");
        assert!(!format!("{s:?}").contains("p@ss"));
        assert_eq!(redact("postgres://bob:pw@h/db"), "postgres://bob:[redacted]@h/db");
    }

    /// Goal: what xregion cannot speak yet, and what is malformed, is refused with what to write instead.
    #[test]
    fn unsupported_and_malformed_settings_say_what_to_do() {
        let e = env(&[]);
        assert!(parse("mysql://root@127.0.0.1/x", &e).unwrap_err().contains("not supported yet"));
        assert!(parse("etcd://127.0.0.1:2379", &e).unwrap_err().contains("not supported yet"));
        assert!(parse("host:port", &e).unwrap_err().contains("is not a number"));
        assert!(parse("postgres://h/db?application=x", &e).unwrap_err().contains("not supported"));
        let e = env(&[("XREGION_DB_KIND", "cassandra")]);
        assert!(parse("127.0.0.1", &e).unwrap_err().starts_with("XREGION_DB_KIND: unknown database kind"));
    }

    /// Goal: the password file is read the way libpq reads it: first matching line, `*` wildcards, escapes.
    #[test]
    fn password_file_matches_like_libpq() {
        let dir = std::env::temp_dir().join(format!("xregion-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, "# comment\nother:*:*:*:no\n127.0.2.1:5432:*:app:a\\:b\n*:*:*:*:fallback\n").unwrap();
        let e = env(&[("PGUSER", "app"), ("PGPASSFILE", file.to_str().unwrap())]);
        assert_eq!(parse("127.0.2.1", &e).unwrap().password.unwrap().expose(), "a:b");
        assert_eq!(parse("127.0.2.2", &e).unwrap().password.unwrap().expose(), "fallback");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
