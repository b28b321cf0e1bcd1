//! The MySQL/MariaDB region client (Galera nodes, a primary, replicas): the probe operations on xregion's table
//! over a `mysql_async` connection pool (TLS through rustls).
//!
//! Every region reads and writes its own database. The version of a record is a per-key counter that each write
//! increments in the same statement (`ver = LAST_INSERT_ID(ver + 1)`, returned in the OK packet), so it is the
//! commit order of the key's writes: in Galera, a transaction is certified against every node before it commits,
//! and a write that conflicts with one committed elsewhere is refused at commit (a deadlock error, 1213) rather
//! than overwritten. The version's `origin` is the region that took the write. A delete keeps the row as a
//! tombstone (`value` NULL). A node outside Galera's primary component refuses every statement (1047).
//!
//! Every operation has the deployment's request timeout and connecting has its connect timeout. Errors keep the
//! history's distinction: a server error certainly rolled the statement back; a connection lost after sending
//! leaves it in doubt.

use super::pool::POOL_MAX;
use super::schema::TABLE;
use super::settings::{DbSettings, SslMode};
use crate::probe::error::ProbeError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};
use std::time::Duration;
use xregion_model::Version;
use xregion_model::wire::{Health, Record};

/// How long an idle pooled connection stays open.
const POOL_IDLE_TTL: Duration = Duration::from_secs(60);
/// Rows one scan query reads; a scan reads pages until one is short.
const SCAN_PAGE: u64 = 1000;

/// One row: key, value (NULL: a tombstone), per-key version, origin.
type Row = (String, Option<String>, u64, String);

/// One region's MySQL or MariaDB database.
#[derive(Clone)]
pub struct MyRegion {
    /// The region.
    region: String,
    /// Where it is (its `Display` has no password).
    settings: DbSettings,
    /// Its connections.
    pool: Pool,
    /// How long getting a connection took, and how often the pool had to open one.
    meter: std::sync::Arc<super::pool::PoolMeter>,
    /// Server connection ids this client has had, to tell an opened connection from a reused one.
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<u32>>>,
    /// Whether the node's reads wait for every write certified before them (Galera's `wsrep_sync_wait` with its
    /// read bit), as the first connection found.
    reads_wait: std::sync::Arc<std::sync::OnceLock<bool>>,
    /// Time allowed to connect.
    connect_timeout: Duration,
    /// Time allowed for one operation.
    timeout: Duration,
}

impl std::fmt::Debug for MyRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MyRegion({})", self.settings)
    }
}

/// What went wrong with one operation, before it is named after the region.
enum Failure {
    /// Certainly not applied: the server's error, with what to check.
    Refused(String),
    /// Could not connect (certainly not applied).
    Unreachable(String),
    /// Sent, outcome unknown.
    InDoubt(String),
    /// No answer in time (outcome unknown once sent).
    Timeout,
}

impl MyRegion {
    /// The client of `region`'s database at `settings`; TLS (when the settings require it) trusts `ca_file`, or
    /// the bundled public roots without one. Connections are made on first use.
    pub fn new(
        region: &str,
        settings: DbSettings,
        ca_file: Option<&std::path::Path>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<MyRegion, String> {
        let constraints = PoolConstraints::new(0, POOL_MAX)
            .ok_or_else(|| format!("region {region}: invalid pool bounds for {settings}"))?;
        let mut opts = OptsBuilder::default()
            .ip_or_hostname(settings.host.clone())
            .tcp_port(settings.port)
            .user(Some(settings.user.clone()))
            .pass(settings.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(Some(settings.dbname.clone()))
            .prefer_socket(false)
            .tcp_nodelay(true)
            // With an inactive-connection TTL of 0 (mysql_async's default), a pool keeps at most `min` idle
            // connections: with min 0 every operation would open a new one. Idle ones now stay, down to min after
            // the TTL. Nor is a connection reset when it returns (COM_RESET_CONNECTION, mysql_async's default):
            // xregion changes no session state, and MariaDB 10.11's Galera stops honouring `wsrep_sync_wait` on a
            // reset connection (read-your-writes broken in 1 to 17 of 120 reads with it, 0 without, 5 rounds
            // each), so a reset would blame the deployment for its client.
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_inactive_connection_ttl(POOL_IDLE_TTL)
                    .with_reset_connection(false),
            );
        if settings.sslmode == SslMode::Require {
            let mut ssl = SslOpts::default();
            if let Some(ca) = ca_file {
                ssl = ssl.with_root_certs(vec![ca.to_path_buf().into()]);
            }
            opts = opts.ssl_opts(Some(ssl));
        }
        Ok(MyRegion {
            region: region.to_string(),
            pool: Pool::new(opts),
            settings,
            meter: std::sync::Arc::new(super::pool::PoolMeter::new(POOL_MAX)),
            seen: Default::default(),
            reads_wait: Default::default(),
            connect_timeout,
            timeout,
        })
    }

    /// The database, without a password: the probe's endpoint in reports and errors.
    pub fn endpoint(&self) -> String {
        self.settings.to_string()
    }

    fn error(&self, f: Failure) -> ProbeError {
        let (region, endpoint) = (self.region.clone(), self.endpoint());
        match f {
            Failure::Refused(message) => ProbeError::Refused { region, endpoint, message },
            Failure::Unreachable(cause) => ProbeError::Unreachable { region, endpoint, cause },
            Failure::InDoubt(cause) => ProbeError::InDoubt { region, endpoint, cause },
            Failure::Timeout => ProbeError::Timeout { region, endpoint, timeout_ms: self.timeout.as_millis() as u64 },
        }
    }

    /// Classifies a driver error: a server error rolled the statement back; anything else after sending leaves
    /// the outcome in doubt, and before sending (connecting) means unreachable.
    fn classify(&self, e: mysql_async::Error, connecting: bool) -> Failure {
        if let mysql_async::Error::Server(s) = &e {
            let hint = match s.code {
                1045 => "; check the user and password (the URL, PGUSER, PGPASSWORD or MYSQL_PWD)",
                1049 => "; check the database name (the URL or PGDATABASE)",
                1146 => "; run `xregion db init` to create it",
                1213 => " (a conflicting write committed first elsewhere: refused at certification)",
                1047 => " (the node is not in the primary component: it has lost the quorum)",
                _ => "",
            };
            return Failure::Refused(format!("error {} ({}): {}{hint}", s.code, s.state, s.message));
        }
        let cause = match &e {
            mysql_async::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        };
        if connecting { Failure::Unreachable(cause) } else { Failure::InDoubt(cause) }
    }

    /// A connection from the pool, within the connect timeout.
    async fn conn(&self) -> Result<Conn, Failure> {
        let asked = std::time::Instant::now();
        match tokio::time::timeout(self.connect_timeout, self.pool.get_conn()).await {
            Ok(Ok(mut c)) => {
                let opened = self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(c.id());
                self.meter.record(asked.elapsed(), opened);
                if opened && self.reads_wait.get().is_none() {
                    // The operation has not been sent: a connection that fails here is unreachable, not in doubt.
                    self.learn_reads_wait(&mut c).await.map_err(|e| self.classify(e, true))?;
                }
                Ok(c)
            }
            Ok(Err(e)) => Err(self.classify(e, true)),
            Err(_) => Err(Failure::Unreachable(format!(
                "did not accept a connection within {} ms",
                self.connect_timeout.as_millis()
            ))),
        }
    }

    /// Finds out, on a new connection (whose session variables are the server's defaults, `init_connect`
    /// included), whether this node is a Galera node whose reads wait for the writes the cluster certified before
    /// them: `wsrep_on` and bit 1 (reads) of `wsrep_sync_wait`. A server without these variables (MySQL, MariaDB
    /// without wsrep) refuses the query with 1193: no. Another server error (a node not ready, whose waiting read
    /// is refused) leaves it unknown, for the next connection; a failed connection is the operation's error.
    async fn learn_reads_wait(&self, c: &mut Conn) -> Result<(), mysql_async::Error> {
        match c.query_first::<mysql_async::Row, _>("SELECT @@wsrep_on, @@wsrep_sync_wait").await {
            Ok(Some(row)) => {
                // Read without panicking on an unexpected type: anything but two numbers is "no".
                let at = |i: usize| row.get_opt::<u64, _>(i).and_then(Result::ok).unwrap_or(0);
                let _ = self.reads_wait.set(at(0) == 1 && at(1) & 1 == 1);
            }
            Ok(None) => {
                let _ = self.reads_wait.set(false);
            }
            Err(mysql_async::Error::Server(s)) if s.code == 1193 => {
                let _ = self.reads_wait.set(false);
            }
            Err(mysql_async::Error::Server(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Whether this node's reads wait for every write the cluster certified before them (Galera with the read
    /// bit of `wsrep_sync_wait`), once a connection has found out.
    pub fn reads_wait(&self) -> Option<bool> {
        self.reads_wait.get().copied()
    }

    /// Runs `work` on a pooled connection within the request timeout.
    async fn with_conn<T, F>(&self, work: impl FnOnce(Conn) -> F) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, mysql_async::Error>>,
    {
        let run = async {
            let conn = self.conn().await?;
            work(conn).await.map_err(|e| self.classify(e, false))
        };
        tokio::time::timeout(self.timeout, run).await.unwrap_or(Err(Failure::Timeout)).map_err(|f| self.error(f))
    }

    fn record(&self, row: Row) -> Record {
        let (key, value, ver, origin) = row;
        Record {
            key,
            value,
            version: Version { wall_ms: ver, logical: 0, origin },
            region: self.region.clone(),
            residency: None,
        }
    }

    /// Writes `value` (`None`: a tombstone), incrementing the key's version in the same statement.
    async fn write(&self, key: &str, value: Option<&str>) -> Result<Record, ProbeError> {
        let sql = format!(
            "INSERT INTO {TABLE} (k, value, ver, origin) VALUES (?, ?, LAST_INSERT_ID(1), ?) \
             ON DUPLICATE KEY UPDATE value = VALUES(value), ver = LAST_INSERT_ID(ver + 1), origin = VALUES(origin)"
        );
        let params = (key.to_string(), value.map(str::to_string), self.region.clone());
        let ver = self
            .with_conn(|mut c| async move {
                c.exec_drop(sql, params).await?;
                Ok(c.last_insert_id())
            })
            .await?;
        let ver = ver.ok_or_else(|| {
            self.error(Failure::InDoubt("the server's answer to the write carried no version".into()))
        })?;
        Ok(self.record((key.to_string(), value.map(str::to_string), ver, self.region.clone())))
    }

    /// What this region's connection pool did since the last call.
    pub fn pool_report(&self) -> super::pool::PoolReport {
        self.meter.take()
    }

    /// Writes `value` to `key`.
    pub async fn put(&self, key: &str, value: &str) -> Result<Record, ProbeError> {
        self.write(key, Some(value)).await
    }

    /// Deletes `key`, keeping a tombstone.
    pub async fn delete(&self, key: &str) -> Result<Record, ProbeError> {
        self.write(key, None).await
    }

    /// Reads `key` from this region's own database; `None` when absent or deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Record>, ProbeError> {
        let sql = format!("SELECT k, value, ver, origin FROM {TABLE} WHERE k = ?");
        let key = key.to_string();
        let row: Option<Row> = self.with_conn(|mut c| async move { c.exec_first(sql, (key,)).await }).await?;
        Ok(row.map(|r| self.record(r)).filter(|r| r.value.is_some()))
    }

    /// Every record under `prefix` in this region's database, tombstones included, in key (byte) order.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<Record>, ProbeError> {
        let sql = format!(
            "SELECT k, value, ver, origin FROM {TABLE} WHERE LEFT(k, CHAR_LENGTH(?)) = ? AND k > ? ORDER BY k LIMIT ?"
        );
        let mut out: Vec<Record> = Vec::new();
        let mut after = String::new();
        loop {
            let (sql, params) = (sql.clone(), (prefix.to_string(), prefix.to_string(), after.clone(), SCAN_PAGE));
            let rows: Vec<Row> = self.with_conn(|mut c| async move { c.exec(sql, params).await }).await?;
            let short = (rows.len() as u64) < SCAN_PAGE;
            out.extend(rows.into_iter().map(|r| self.record(r)));
            match out.last() {
                Some(last) if !short => after = last.key.clone(),
                _ => return Ok(out),
            }
        }
    }

    /// `ok` when the database answers and has xregion's table.
    pub async fn health(&self) -> Result<Health, ProbeError> {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{TABLE}'"
        );
        let n: Option<u64> = self.with_conn(|mut c| async move { c.query_first(sql).await }).await?;
        if n.unwrap_or(0) == 0 {
            let message = format!("table {TABLE} does not exist; run `xregion db init` (see `xregion db schema`)");
            return Err(self.error(Failure::Refused(message)));
        }
        Ok(Health { status: "ok".into(), region: self.region.clone() })
    }

    /// Whether this region's database accepts writes (`@@read_only` is off).
    pub async fn accepts_writes(&self) -> Result<bool, ProbeError> {
        let ro: Option<u64> = self.with_conn(|mut c| async move { c.query_first("SELECT @@read_only").await }).await?;
        Ok(ro == Some(0))
    }

    /// Runs `ddl` on this region's database (`xregion db init`).
    pub async fn execute(&self, ddl: &str) -> Result<(), ProbeError> {
        let ddl = ddl.to_string();
        self.with_conn(|mut c| async move { c.query_drop(ddl).await }).await
    }
}
