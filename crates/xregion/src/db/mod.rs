//! Databases as regions: how a region's `database` setting (or the seed's `DB_ENDPOINT_<REGION>`) names a database,
//! the one table (or key prefix) xregion owns in it, and the region clients that speak each database's own protocol.
//!
//! A database setting is either a full URL (`postgres://user@host:port/db?sslmode=require`, `etcd://host:port`,
//! `etcd+https://user:password@host:port`, `mysql://user@host:port/db`) or a bare
//! `host[:port]`, which takes the rest from the libpq variables `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`
//! and `PGPASSFILE` (for MySQL also `MYSQL_PWD`; for etcd, etcdctl's `ETCDCTL_USER` and `ETCDCTL_PASSWORD`), and its kind from `XREGION_DB_KIND`
//! (default `postgres`). A password is never written to a report: the settings' `Display` and every error show the
//! URL without it.

pub mod etcd;
pub mod mysql;
pub mod pool;
pub mod postgres;
pub mod schema;
pub mod settings;

pub use settings::{DbKind, DbSettings, parse, redact};

use crate::probe::capabilities::Capabilities;
use crate::probe::error::ProbeError;
use xregion_model::wire::{Health, Record};

/// One region's database client. A new kind of database is one more variant: its client, and its answers to
/// `capabilities` below (a database never speaks the HTTP probe contract).
#[derive(Debug, Clone)]
pub enum DbRegion {
    /// A PostgreSQL database (primary, standby or mesh node).
    Postgres(postgres::PgRegion),
    /// An etcd member.
    Etcd(etcd::EtcdRegion),
    /// A MySQL or MariaDB database (a Galera node, a primary or a replica).
    Mysql(mysql::MyRegion),
}

impl DbRegion {
    /// What this database can do and how it orders writes, for the checks' `Needs` and their notes.
    pub fn capabilities(&self) -> Capabilities {
        use xregion_check::consistency::Guarantee;
        let (kind, tombstones, order, promises, promises_why): (_, _, _, &'static [Guarantee], _) = match self {
            DbRegion::Postgres(c) if c.order_known() == Some(postgres::Order::CommitTimestamp) => (
                "postgres database",
                true,
                "the commit timestamp of the write's transaction at the node that took it (µs; a row applied \
                 elsewhere keeps it), which pglogical's last_update_wins resolves conflicts by",
                &[],
                "a node of a logical-replication mesh answers from what it has applied, so neither guarantee holds \
                 across nodes",
            ),
            DbRegion::Postgres(_) => (
                "postgres database",
                true,
                "per-key versions stamped by the database that took the write (its clock in ms, a counter \
                        within a ms, its region)",
                &[],
                "a standby answers reads from the WAL it has replayed: asynchronous standbys keep neither guarantee, \
                 and even synchronous ones (remote_apply) can show a commit on the primary before they apply it",
            ),
            DbRegion::Mysql(c) => {
                let (promises, why): (&'static [Guarantee], _) = match c.reads_wait() {
                    Some(true) => (
                        &Guarantee::ALL,
                        "a Galera node whose wsrep_sync_wait has its read bit (1) set makes each read wait until the \
                         node has applied every write the cluster certified before the read began, which implies both",
                    ),
                    None => (
                        &[],
                        "whether a Galera node's reads wait (wsrep_sync_wait) is read from its first connection, and \
                         no connection could read it; without that, a Galera node answers reads before it has applied \
                         writes certified elsewhere",
                    ),
                    Some(false) => (
                        &[],
                        "a Galera node answers reads before it has applied writes certified elsewhere unless \
                         wsrep_sync_wait makes reads wait, and the read bit was unset on at least one node's first \
                         connection; an asynchronous replica lags its source",
                    ),
                };
                (
                    "mysql database",
                    true,
                    "the commit order of each key's writes (a per-key counter each write increments; Galera refuses a \
                     conflicting write at commit instead of overwriting it)",
                    promises,
                    why,
                )
            }
            DbRegion::Etcd(_) => (
                "etcd member",
                false,
                "etcd's mod_revision (the cluster's one commit order, shown as the version's first number)",
                &Guarantee::ALL,
                "etcd's reads are linearizable by default (each member confirms with the leader), which implies both",
            ),
        };
        Capabilities { http_contract: false, keys: true, kind, tombstones, order, promises, promises_why }
    }

    /// What the region's connection pool did since the last call; `None` for a client without a pool of its
    /// own (etcd's JSON gateway is plain HTTP, whose connections the HTTP client keeps out of sight).
    pub fn pool_report(&self) -> Option<pool::PoolReport> {
        match self {
            DbRegion::Postgres(c) => Some(c.pool_report()),
            DbRegion::Mysql(c) => Some(c.pool_report()),
            DbRegion::Etcd(_) => None,
        }
    }

    /// The kind of database.
    pub fn kind(&self) -> DbKind {
        match self {
            DbRegion::Postgres(_) => DbKind::Postgres,
            DbRegion::Etcd(_) => DbKind::Etcd,
            DbRegion::Mysql(_) => DbKind::Mysql,
        }
    }

    /// `xregion db init` for this region: creates xregion's table where the database accepts writes, and says
    /// what it did (a read-only standby or replica gets the table through its own replication).
    pub async fn init(&self) -> Result<String, ProbeError> {
        let (writable, read_only) = match self {
            DbRegion::Postgres(d) => (d.accepts_writes().await?, "a standby; it gets the table from its primary"),
            DbRegion::Mysql(d) => {
                (d.accepts_writes().await?, "read-only (a replica); it gets the table from its source")
            }
            DbRegion::Etcd(_) => return Ok(format!("nothing to create (keys under {}/)", schema::TABLE)),
        };
        if !writable {
            return Ok(read_only.to_string());
        }
        let ddl = schema::ddl(self.kind());
        match self {
            DbRegion::Postgres(d) => d.execute(ddl).await?,
            DbRegion::Mysql(d) => d.execute(ddl).await?,
            DbRegion::Etcd(_) => {}
        }
        Ok(format!("table {} ready", schema::TABLE))
    }

    /// The database without a password, for reports and errors.
    pub fn endpoint(&self) -> String {
        match self {
            DbRegion::Postgres(d) => d.endpoint(),
            DbRegion::Etcd(d) => d.endpoint(),
            DbRegion::Mysql(d) => d.endpoint(),
        }
    }

    /// Writes `value` to `key`.
    pub async fn put(&self, key: &str, value: &str) -> Result<Record, ProbeError> {
        match self {
            DbRegion::Postgres(d) => d.put(key, value).await,
            DbRegion::Etcd(d) => d.put(key, value).await,
            DbRegion::Mysql(d) => d.put(key, value).await,
        }
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<Record, ProbeError> {
        match self {
            DbRegion::Postgres(d) => d.delete(key).await,
            DbRegion::Etcd(d) => d.delete(key).await,
            DbRegion::Mysql(d) => d.delete(key).await,
        }
    }

    /// Reads `key` in this region; `None` when absent or deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Record>, ProbeError> {
        match self {
            DbRegion::Postgres(d) => d.get(key).await,
            DbRegion::Etcd(d) => d.get(key).await,
            DbRegion::Mysql(d) => d.get(key).await,
        }
    }

    /// Every record under `prefix` in this region, in key order (tombstones included where kept).
    pub async fn scan(&self, prefix: &str) -> Result<Vec<Record>, ProbeError> {
        match self {
            DbRegion::Postgres(d) => d.scan(prefix).await,
            DbRegion::Etcd(d) => d.scan(prefix).await,
            DbRegion::Mysql(d) => d.scan(prefix).await,
        }
    }

    /// Whether the region answers and has what xregion needs.
    pub async fn health(&self) -> Result<Health, ProbeError> {
        match self {
            DbRegion::Postgres(d) => d.health().await,
            DbRegion::Etcd(d) => d.health().await,
            DbRegion::Mysql(d) => d.health().await,
        }
    }
}
