//! The PostgreSQL region client: the probe operations (put, get, scan, delete, health) on xregion's table, over a
//! deadpool pool of tokio-postgres connections (TLS through rustls).
//!
//! It works whatever regions accept writes. Every region reads its own database. A write goes to the region's own
//! database when that one accepts writes (a multi-writer mesh), and otherwise to the region that does, found with
//! `pg_is_in_recovery()` (a primary with standbys). After a promotion the old writer refuses the connection or
//! answers `25006 read_only_sql_transaction`; both certainly left the write undone, so the client finds the new
//! writer and sends it there once more. The region a write landed on is its `origin`.
//!
//! Every operation has the deployment's request timeout, and connecting has its connect timeout, so a database that
//! does not answer is an error naming it, never a hang. Errors keep the history's distinction: refused (certainly
//! not applied) versus in doubt (the connection broke or the time ran out after sending).

use super::pool::POOL_MAX;
use super::schema::TABLE;
use super::settings::{DbSettings, SslMode};
use crate::probe::error::ProbeError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use xregion_model::Version;
use xregion_model::wire::{Health, Record};

/// Rows one scan query reads; a scan reads pages until one is short.
const SCAN_PAGE: i64 = 1000;

/// The columns every read returns, in `row_to_record`'s order.
const COLUMNS: &str = "key, value, ver_ms, ver_logical, origin";
/// The same columns where the version is the commit timestamp of the row's transaction (`Order::CommitTimestamp`),
/// in microseconds: milliseconds, then microseconds within the millisecond. Rows are read `FROM {TABLE} t, {CTS}`.
const COLUMNS_CTS: &str = "key, value, (cts.us / 1000)::bigint, (cts.us % 1000)::int, origin";
/// The commit timestamp of a row's transaction in microseconds, as a lateral source named `cts` (a row too old to
/// have one falls back to its stamped version).
const CTS: &str = "LATERAL (SELECT coalesce((extract(epoch FROM pg_xact_commit_timestamp(t.xmin)) * 1000000)::bigint, \
     t.ver_ms * 1000) AS us) cts";

/// How a node orders the writes of a key, found on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The version each write stamps itself: a per-key hybrid logical clock at the writer, its commit order.
    Stamp,
    /// The commit timestamp of the writing transaction, in microseconds, from the node that took the write: what a
    /// mesh that resolves conflicts by timestamp compares (pglogical `last_update_wins` with
    /// `track_commit_timestamp`), preserved when the row is applied elsewhere.
    CommitTimestamp,
}

/// One region's database.
struct Node {
    /// The region.
    region: String,
    /// Where it is (its `Display` has no password).
    settings: DbSettings,
    /// Its connections.
    pool: Pool,
    /// How long getting a connection took, and how often the pool had to open one.
    meter: super::pool::PoolMeter,
    /// How it orders writes, once known.
    order: tokio::sync::OnceCell<Order>,
}

/// Every region's database, and where each region's writes go.
pub struct PgCluster {
    nodes: Vec<Node>,
    /// For each region, the index of the node that took its last write, if known: its own node in a mesh, the
    /// primary with standbys. Each region finds its own, so that in a mesh no region writes through another's node.
    writers: Vec<Mutex<Option<usize>>>,
    /// Time allowed for one operation.
    timeout: Duration,
    /// The CA file TLS trusts, for error messages.
    ca_file: Option<std::path::PathBuf>,
}

/// One region's client: reads its own database, writes where writes are accepted.
#[derive(Clone)]
pub struct PgRegion {
    cluster: Arc<PgCluster>,
    index: usize,
}

impl std::fmt::Debug for PgRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgRegion({})", self.node().settings)
    }
}

impl PgCluster {
    /// The clients of `regions` (name, database), one pool each. Connections are made on first use.
    pub fn connect(
        regions: &[(String, DbSettings)],
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        timeout: Duration,
        ca_file: Option<std::path::PathBuf>,
    ) -> Result<Vec<PgRegion>, String> {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let mut nodes = Vec::new();
        for (region, s) in regions {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host(&s.host)
                .port(s.port)
                .user(&s.user)
                .dbname(&s.dbname)
                .application_name("xregion")
                .connect_timeout(connect_timeout)
                .ssl_mode(match s.sslmode {
                    SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    SslMode::Require => tokio_postgres::config::SslMode::Require,
                });
            if let Some(p) = &s.password {
                cfg.password(p.expose());
            }
            let manager =
                Manager::from_config(cfg, tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
            let pool = Pool::builder(manager)
                .max_size(POOL_MAX)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(connect_timeout))
                .recycle_timeout(Some(timeout))
                .build()
                .map_err(|e| format!("region {region}: cannot build a connection pool for {s}: {e}"))?;
            let meter = super::pool::PoolMeter::new(POOL_MAX);
            nodes.push(Node { region: region.clone(), settings: s.clone(), pool, meter, order: Default::default() });
        }
        let writers = nodes.iter().map(|_| Mutex::new(None)).collect();
        let cluster = Arc::new(PgCluster { nodes, writers, timeout, ca_file });
        Ok((0..cluster.nodes.len()).map(|index| PgRegion { cluster: cluster.clone(), index }).collect())
    }
}

/// What went wrong with one operation, before it is named after a region.
enum Failure {
    /// Certainly not applied.
    Refused(String, Option<SqlState>),
    /// Could not connect (certainly not applied).
    Unreachable(String),
    /// Sent, outcome unknown.
    InDoubt(String),
    /// No answer in time (outcome unknown once sent).
    Timeout,
}

impl PgRegion {
    fn node(&self) -> &Node {
        &self.cluster.nodes[self.index]
    }

    /// The region's database, without a password: the probe's endpoint in reports and errors.
    pub fn endpoint(&self) -> String {
        self.node().settings.to_string()
    }

    fn error(&self, at: usize, f: Failure) -> ProbeError {
        let node = &self.cluster.nodes[at];
        let region = self.node().region.clone();
        let endpoint = node.settings.to_string();
        let via = if at == self.index { String::new() } else { format!("(writing through {}) ", node.region) };
        match f {
            Failure::Refused(message, _) => {
                ProbeError::Refused { region, endpoint, message: format!("{via}{message}") }
            }
            Failure::Unreachable(cause) => ProbeError::Unreachable { region, endpoint, cause: format!("{via}{cause}") },
            Failure::InDoubt(cause) => ProbeError::InDoubt { region, endpoint, cause: format!("{via}{cause}") },
            Failure::Timeout => {
                ProbeError::Timeout { region, endpoint, timeout_ms: self.cluster.timeout.as_millis() as u64 }
            }
        }
    }

    /// Classifies a driver error: a database error is a refusal (the statement failed and its transaction
    /// rolled back), a broken connection leaves the outcome in doubt.
    fn classify(&self, at: usize, e: &tokio_postgres::Error, connecting: bool) -> Failure {
        if let Some(db) = e.as_db_error() {
            let hint = match db.code() {
                c if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    "; check the user and password (PGUSER, PGPASSWORD, PGPASSFILE or the URL)"
                }
                c if *c == SqlState::UNDEFINED_TABLE => "; run `xregion db init` to create it",
                c if *c == SqlState::INVALID_CATALOG_NAME => "; check the database name (PGDATABASE or the URL)",
                _ => "",
            };
            let message = format!("{} {}: {}{hint}", db.severity(), db.code().code(), db.message());
            return Failure::Refused(message, Some(db.code().clone()));
        }
        let node = &self.cluster.nodes[at];
        let cause = crate::net::transport_problem(e, &node.settings.host, self.cluster.ca_file.as_deref());
        if connecting { Failure::Unreachable(cause) } else { Failure::InDoubt(cause) }
    }

    fn pool_failure(&self, at: usize, e: PoolError) -> Failure {
        match e {
            PoolError::Backend(e) => self.classify(at, &e, true),
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => Failure::Unreachable(format!(
                "all {POOL_MAX} connections stayed busy for {} ms",
                self.cluster.timeout.as_millis()
            )),
            PoolError::Timeout(_) => Failure::Unreachable("did not accept a connection in time".into()),
            other => Failure::Unreachable(other.to_string()),
        }
    }

    /// Runs one statement on node `at` and returns its rows, within the timeout.
    async fn query(
        &self,
        at: usize,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        let node = &self.cluster.nodes[at];
        let work = async {
            let asked = std::time::Instant::now();
            let client = node.pool.get().await.map_err(|e| self.pool_failure(at, e))?;
            // A connection the pool reused was recycled on the way out; a new one never was.
            node.meter.record(asked.elapsed(), deadpool_postgres::Object::metrics(&client).recycled.is_none());
            let stmt = client.prepare_cached(sql).await.map_err(|e| self.classify(at, &e, false))?;
            client.query(&stmt, params).await.map_err(|e| self.classify(at, &e, false))
        };
        tokio::time::timeout(self.cluster.timeout, work).await.unwrap_or(Err(Failure::Timeout))
    }

    /// How node `at` orders writes: by commit timestamp where it resolves conflicts by them (pglogical's
    /// last_update_wins with track_commit_timestamp on), by the write's own stamp otherwise. Asked once per node.
    async fn order(&self, at: usize) -> Result<Order, Failure> {
        let sql = "SELECT current_setting('track_commit_timestamp') = 'on' \
                   AND coalesce(current_setting('pglogical.conflict_resolution', true), '') = 'last_update_wins'";
        let ask = || async {
            let rows = self.query(at, sql, &[]).await?;
            Ok(if rows.first().is_some_and(|r| r.get::<_, bool>(0)) { Order::CommitTimestamp } else { Order::Stamp })
        };
        self.cluster.nodes[at].order.get_or_try_init(ask).await.copied()
    }

    /// How this region's database orders writes, once an operation has found out.
    pub fn order_known(&self) -> Option<Order> {
        self.node().order.get().copied()
    }

    /// Whether node `at` accepts writes (`pg_is_in_recovery()` is false).
    async fn writable(&self, at: usize) -> Result<bool, Failure> {
        let rows = self.query(at, "SELECT pg_is_in_recovery()", &[]).await?;
        Ok(rows.first().is_some_and(|r| !r.get::<_, bool>(0)))
    }

    /// The node a write should go to: this region's own when it accepts writes, else the first that does (in
    /// the configured order). `None` when no reachable region accepts writes.
    async fn find_writer(&self) -> Option<usize> {
        let n = self.cluster.nodes.len();
        let order = std::iter::once(self.index).chain((0..n).filter(|i| *i != self.index));
        let probes = order.map(|i| async move { (i, self.writable(i).await) });
        let found = futures::future::join_all(probes).await.into_iter().find(|(_, w)| matches!(w, Ok(true)));
        let found = found.map(|(i, _)| i);
        *self.cluster.writers[self.index].lock().unwrap_or_else(|p| p.into_inner()) = found;
        found
    }

    /// Where the last write went, or the result of a fresh search.
    async fn writer(&self) -> Option<usize> {
        let cached = *self.cluster.writers[self.index].lock().unwrap_or_else(|p| p.into_inner());
        match cached {
            Some(i) => Some(i),
            None => self.find_writer().await,
        }
    }

    /// Writes `value` (`None`: a tombstone) at the writer, following it once if it moved.
    async fn write(&self, key: &str, value: Option<&str>) -> Result<Record, ProbeError> {
        let sql = format!(
            "INSERT INTO {TABLE} AS t (key, value, ver_ms, ver_logical, origin) \
             VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 0, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
               ver_ms = greatest(t.ver_ms, excluded.ver_ms), \
               ver_logical = CASE WHEN excluded.ver_ms > t.ver_ms THEN 0 ELSE t.ver_logical + 1 END, \
               origin = excluded.origin, written_at = clock_timestamp() \
             RETURNING {COLUMNS}, xmin::text"
        );
        let mut at = self.writer().await;
        for attempt in 0..2 {
            let Some(w) = at else {
                return Err(self.error(
                    self.index,
                    Failure::Unreachable(
                        "no reachable region accepts writes (every one is in recovery or down)".into(),
                    ),
                ));
            };
            let origin = self.cluster.nodes[w].region.clone();
            let written = async { Ok((self.order(w).await?, self.query(w, &sql, &[&key, &value, &origin]).await?)) };
            match written.await {
                Ok((order, rows)) => {
                    let row = rows.first().ok_or_else(|| self.error(w, Failure::InDoubt("no row returned".into())))?;
                    let mut record = self.row_to_record(row);
                    if order == Order::CommitTimestamp {
                        // The statement committed on its own: its commit timestamp is the version the mesh resolves by.
                        let xid: String = row.get(5);
                        record.version = self.commit_version(w, &xid, &origin).await?;
                    }
                    return Ok(record);
                }
                // The writer moved (a standby now, or gone): the write certainly did not happen; follow it once.
                Err(Failure::Refused(_, Some(code))) if code == SqlState::READ_ONLY_SQL_TRANSACTION && attempt == 0 => {
                    at = self.find_writer().await;
                }
                // The writer could not be reached: certainly not applied either; look for one that can be.
                Err(Failure::Unreachable(_)) if attempt == 0 => at = self.find_writer().await,
                Err(f) => return Err(self.error(w, f)),
            }
        }
        Err(self.error(self.index, Failure::Unreachable("the writer kept moving".into())))
    }

    /// The version of the committed transaction `xid` on node `w`: its commit timestamp in microseconds. The write
    /// has committed by then, so a failure to read it (the node died in between) leaves the write in doubt, never
    /// refused: the history must not call a committed write failed.
    async fn commit_version(&self, w: usize, xid: &str, origin: &str) -> Result<Version, ProbeError> {
        let sql = "SELECT (extract(epoch FROM pg_xact_commit_timestamp($1::text::xid)) * 1000000)::bigint";
        let rows = self.query(w, sql, &[&xid]).await.map_err(|f| {
            let why = match f {
                Failure::Refused(m, _) | Failure::Unreachable(m) | Failure::InDoubt(m) => m,
                Failure::Timeout => "no answer in time".into(),
            };
            self.error(
                w,
                Failure::InDoubt(format!("the write committed, but its commit timestamp could not be read: {why}")),
            )
        })?;
        let us: Option<i64> = rows.first().and_then(|r| r.get(0));
        let us = us.ok_or_else(|| {
            self.error(w, Failure::InDoubt(format!("no commit timestamp for the write's transaction {xid}")))
        })?;
        let us = us.max(0) as u64;
        Ok(Version { wall_ms: us / 1000, logical: (us % 1000) as u32, origin: origin.to_string() })
    }

    /// The columns and source of a read at this region, for its order: `SELECT {columns} FROM {source}`.
    async fn read_source(&self) -> Result<(&'static str, String), ProbeError> {
        match self.order(self.index).await.map_err(|f| self.error(self.index, f))? {
            Order::Stamp => Ok((COLUMNS, format!("{TABLE} t"))),
            Order::CommitTimestamp => Ok((COLUMNS_CTS, format!("{TABLE} t, {CTS}"))),
        }
    }

    fn row_to_record(&self, row: &tokio_postgres::Row) -> Record {
        Record {
            key: row.get(0),
            value: row.get(1),
            version: Version {
                wall_ms: row.get::<_, i64>(2).max(0) as u64,
                logical: row.get::<_, i32>(3).max(0) as u32,
                origin: row.get(4),
            },
            region: self.node().region.clone(),
            residency: None,
        }
    }

    /// What this region's connection pool did since the last call.
    pub fn pool_report(&self) -> super::pool::PoolReport {
        self.node().meter.take()
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
        let (columns, source) = self.read_source().await?;
        let sql = format!("SELECT {columns} FROM {source} WHERE key = $1");
        let rows = self.query(self.index, &sql, &[&key]).await.map_err(|f| self.error(self.index, f))?;
        Ok(rows.first().map(|r| self.row_to_record(r)).filter(|r| r.value.is_some()))
    }

    /// Every record under `prefix` in this region's database, tombstones included, in key order.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<Record>, ProbeError> {
        let (columns, source) = self.read_source().await?;
        let sql = format!(
            "SELECT {columns} FROM {source} WHERE starts_with(key, $1) AND key COLLATE \"C\" > $2 ORDER BY key COLLATE \"C\" LIMIT $3"
        );
        let mut out: Vec<Record> = Vec::new();
        let mut after = String::new();
        loop {
            let rows = self
                .query(self.index, &sql, &[&prefix, &after, &SCAN_PAGE])
                .await
                .map_err(|f| self.error(self.index, f))?;
            let short = (rows.len() as i64) < SCAN_PAGE;
            out.extend(rows.iter().map(|r| self.row_to_record(r)));
            match out.last() {
                Some(last) if !short => after = last.key.clone(),
                _ => return Ok(out),
            }
        }
    }

    /// `ok` when the database answers; `degraded` when it answers but xregion's table is missing.
    pub async fn health(&self) -> Result<Health, ProbeError> {
        let sql = format!("SELECT to_regclass('{TABLE}') IS NOT NULL");
        let rows = self.query(self.index, &sql, &[]).await.map_err(|f| self.error(self.index, f))?;
        let has_table = rows.first().is_some_and(|r| r.get::<_, bool>(0));
        if !has_table {
            let message = format!("table {TABLE} does not exist; run `xregion db init` (see `xregion db schema`)");
            return Err(self.error(self.index, Failure::Refused(message, None)));
        }
        Ok(Health { status: "ok".into(), region: self.node().region.clone() })
    }

    /// Whether this region's own database accepts writes.
    pub async fn accepts_writes(&self) -> Result<bool, ProbeError> {
        self.writable(self.index).await.map_err(|f| self.error(self.index, f))
    }

    /// Runs `ddl` on this region's own database (`xregion db init`).
    pub async fn execute(&self, ddl: &str) -> Result<(), ProbeError> {
        let node = self.node();
        let work = async {
            let client = node.pool.get().await.map_err(|e| self.pool_failure(self.index, e))?;
            client.batch_execute(ddl).await.map_err(|e| self.classify(self.index, &e, false))
        };
        tokio::time::timeout(self.cluster.timeout, work)
            .await
            .unwrap_or(Err(Failure::Timeout))
            .map_err(|f| self.error(self.index, f))
    }
}
