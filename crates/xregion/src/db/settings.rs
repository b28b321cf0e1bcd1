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
    /// An etcd v3 member, through its JSON gateway (`/v3/kv/*`).
    Etcd,
    /// MySQL or MariaDB (a Galera node, a primary or a replica).
    Mysql,
}

impl DbKind {
    /// The name used in `XREGION_DB_KIND`, `xregion db schema --kind` and reports.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Postgres => "postgres",
            DbKind::Etcd => "etcd",
            DbKind::Mysql => "mysql",
        }
    }

    /// The port a setting without one uses.
    pub fn default_port(self) -> u16 {
        match self {
            DbKind::Postgres => 5432,
            DbKind::Etcd => 2379,
            DbKind::Mysql => 3306,
        }
    }

    /// The kind named `s`, or what to write instead.
    pub fn parse(s: &str) -> Result<DbKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(DbKind::Postgres),
            "etcd" => Ok(DbKind::Etcd),
            "mysql" | "mariadb" | "galera" => Ok(DbKind::Mysql),
            _ => Err(format!("unknown database kind \"{s}\"; use postgres, mysql or etcd")),
        }
    }
}

/// How a Postgres connection uses TLS. When TLS is used, the server's certificate is always verified against
/// `[deployment.tls] ca_file` (or the system's roots): xregion has no mode that encrypts without verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (for etcd, `etcd://`: plain HTTP).
    Disable,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS or nothing (`require`, `verify-ca` and `verify-full` alike; for etcd, `etcd+https://`).
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
    /// The user (for etcd: empty when authentication is off).
    pub user: String,
    /// The password, if any (from the URL, `PGPASSWORD` or the password file; for etcd, `ETCDCTL_USER`'s
    /// `name:password` or `ETCDCTL_PASSWORD`).
    pub password: Option<Secret>,
    /// The database name (empty for etcd, which has none).
    pub dbname: String,
    /// TLS use.
    pub sslmode: SslMode,
}

impl fmt::Display for DbSettings {
    /// The URL without the password, for reports and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.kind {
            DbKind::Postgres | DbKind::Mysql => {
                write!(f, "{}://{}@{host}:{}/{}", self.kind.name(), self.user, self.port, self.dbname)
            }
            DbKind::Etcd => {
                let scheme = if self.sslmode == SslMode::Require { "etcd+https" } else { "etcd" };
                let user = if self.user.is_empty() { String::new() } else { format!("{}@", self.user) };
                write!(f, "{scheme}://{user}{host}:{}", self.port)
            }
        }
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
    let scheme = setting.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if matches!(scheme.as_deref(), Some("etcd" | "etcd+https"))
        || (scheme.is_none() && var("XREGION_DB_KIND").is_some_and(|k| DbKind::parse(&k) == Ok(DbKind::Etcd)))
    {
        return parse_etcd(setting, env);
    }
    let default_user = var("PGUSER").or_else(|| var("USER")).unwrap_or_else(|| "postgres".into());
    let (kind, host, port, user, password, dbname, sslmode) = if let Some((scheme, _)) = setting.split_once("://") {
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => DbKind::Postgres,
            "mysql" | "mariadb" => DbKind::Mysql,
            _ => {
                return Err(format!(
                    "unknown database URL scheme \"{scheme}://\"; use postgres://, mysql:// or etcd://"
                ));
            }
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
                "sslmode" | "ssl-mode" => sslmode = Some(v.to_ascii_lowercase().replace('_', "-")),
                other => return Err(format!("database URL parameter \"{other}\" is not supported; use sslmode")),
            }
        }
        (kind, host, url.port().unwrap_or(kind.default_port()), user, password, dbname, sslmode)
    } else {
        let kind = DbKind::parse(&var("XREGION_DB_KIND").unwrap_or_else(|| "postgres".into()))
            .map_err(|e| format!("XREGION_DB_KIND: {e}"))?;
        let (host, port) = split_host_port(setting)?;
        let dbname = var("PGDATABASE").unwrap_or_else(|| default_user.clone());
        (kind, host, port.unwrap_or(kind.default_port()), default_user, None, dbname, var("PGSSLMODE"))
    };
    let sslmode = match sslmode.as_deref().unwrap_or("prefer") {
        "disable" | "disabled" => SslMode::Disable,
        "allow" | "prefer" | "preferred" => SslMode::Prefer,
        "require" | "required" | "verify-ca" | "verify-full" | "verify-identity" => SslMode::Require,
        other => return Err(format!("sslmode \"{other}\" is not one of disable, prefer, require, verify-full")),
    };
    // MySQL's own client takes its password from MYSQL_PWD.
    let env_password = var("PGPASSWORD").or_else(|| if kind == DbKind::Mysql { var("MYSQL_PWD") } else { None });
    let password = match password.or_else(|| env_password.map(Secret::new)) {
        Some(p) => Some(p),
        None if kind == DbKind::Postgres => match var("PGPASSFILE") {
            Some(file) => password_from_file(Path::new(&file), &host, port, &dbname, &user)?,
            None => None,
        },
        None => None,
    };
    Ok(DbSettings { kind, host, port, user, password, dbname, sslmode })
}

/// An etcd member: `etcd://[user[:password]@]host[:port]`, `etcd+https://…` (TLS, verified against the
/// deployment's CA), or a bare `host[:port]` with `XREGION_DB_KIND=etcd`. Without credentials in the URL, etcdctl's
/// `ETCDCTL_USER` (`name` or `name:password`) and `ETCDCTL_PASSWORD` give them; without either, no authentication.
fn parse_etcd(setting: &str, env: &BTreeMap<String, String>) -> Result<DbSettings, String> {
    let var = |k: &str| env.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let (host, port, tls, mut user, mut password) = if setting.contains("://") {
        let url = reqwest::Url::parse(setting).map_err(|e| format!("etcd URL \"{}\": {e}", redact(setting)))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("an etcd URL needs a host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!("etcd URL \"{}\" has a path or parameters; use etcd://host:port", redact(setting)));
        }
        let password = url.password().map(|p| Secret::new(decode(p)));
        (host, url.port(), url.scheme() == "etcd+https", decode(url.username()), password)
    } else {
        let (host, port) = split_host_port(setting)?;
        (host, port, false, String::new(), None)
    };
    if user.is_empty()
        && let Some(u) = var("ETCDCTL_USER")
    {
        match u.split_once(':') {
            Some((name, pass)) => (user, password) = (name.to_string(), Some(Secret::new(pass.to_string()))),
            None => user = u,
        }
    }
    if password.is_none() && !user.is_empty() {
        password = var("ETCDCTL_PASSWORD").map(Secret::new);
    }
    if !user.is_empty() && password.is_none() {
        return Err(format!(
            "etcd user \"{user}\" has no password; put it in the URL, ETCDCTL_USER or ETCDCTL_PASSWORD"
        ));
    }
    Ok(DbSettings {
        kind: DbKind::Etcd,
        host,
        port: port.unwrap_or(DbKind::Etcd.default_port()),
        user,
        password,
        dbname: String::new(),
        sslmode: if tls { SslMode::Require } else { SslMode::Disable },
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("database \"{s}\" is neither host[:port] nor a database URL");
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
        assert!(parse("cassandra://127.0.0.1/x", &e).unwrap_err().contains("use postgres://, mysql:// or etcd://"));
        assert!(parse("etcd://127.0.0.1:2379/prefix", &e).unwrap_err().contains("use etcd://host:port"));
        assert!(parse("host:port", &e).unwrap_err().contains("is not a number"));
        assert!(parse("postgres://h/db?application=x", &e).unwrap_err().contains("not supported"));
        let e = env(&[("XREGION_DB_KIND", "cassandra")]);
        assert!(parse("127.0.0.1", &e).unwrap_err().starts_with("XREGION_DB_KIND: unknown database kind"));
    }

    /// Goal: MySQL (MariaDB, Galera) takes the same variables as Postgres, plus MYSQL_PWD, and its own default
    /// port and ssl-mode spelling.
    #[test]
    fn mysql_settings_take_the_same_variables_and_mysql_pwd() {
        let e = env(&[("XREGION_DB_KIND", "galera"), ("PGUSER", "app"), ("PGDATABASE", "shop"), ("MYSQL_PWD", "pw")]);
        let s = parse("127.0.5.1", &e).unwrap();
        assert_eq!((s.kind, s.port, s.user.as_str(), s.dbname.as_str()), (DbKind::Mysql, 3306, "app", "shop"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("pw"));
        let s = parse("mariadb://root:x@db:3307/orders?ssl-mode=REQUIRED", &e).unwrap();
        assert_eq!((s.kind, s.port, s.sslmode), (DbKind::Mysql, 3307, SslMode::Require));
        assert_eq!(s.to_string(), "mysql://root@db:3307/orders");
        assert!(parse("127.0.0.1", &env(&[("MYSQL_PWD", "pw")])).unwrap().password.is_none(), "postgres ignores it");
    }

    /// Goal: etcd members are named by URL or by a bare host with XREGION_DB_KIND=etcd; credentials come from the
    /// URL or etcdctl's variables and are never displayed; TLS only with etcd+https.
    #[test]
    fn etcd_settings_take_etcdctl_credentials() {
        let s = parse("etcd://127.0.8.1", &env(&[("PGUSER", "ignored")])).unwrap();
        assert_eq!((s.kind, s.port, s.user.as_str(), s.sslmode), (DbKind::Etcd, 2379, "", SslMode::Disable));
        assert_eq!(s.to_string(), "etcd://127.0.8.1:2379");
        let e = env(&[("XREGION_DB_KIND", "etcd"), ("ETCDCTL_USER", "root:pa:ss")]);
        let s = parse("10.0.0.1:32379", &e).unwrap();
        assert_eq!((s.kind, s.port, s.user.as_str()), (DbKind::Etcd, 32379, "root"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("pa:ss"));
        assert_eq!(s.to_string(), "etcd://root@10.0.0.1:32379");
        let s = parse("etcd+https://app:pw@[::1]:2379", &env(&[])).unwrap();
        assert_eq!((s.sslmode, s.user.as_str()), (SslMode::Require, "app"));
        assert!(!format!("{s} {s:?}").contains("pw"));
        assert!(parse("etcd://app@h", &env(&[])).unwrap_err().contains("has no password"));
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
