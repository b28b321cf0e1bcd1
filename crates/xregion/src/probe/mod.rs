//! The probe-contract client: the only way the suites reach a deployment.
//!
//! Every call has a connect timeout and a request timeout, so an unreachable or stuck endpoint becomes an error
//! that names it instead of a hang. Errors are classified the way a history needs them: a request that certainly
//! did not take effect (refused connection, 4xx) versus one whose outcome is unknown (timeout, 5xx, a connection
//! lost after sending).

use std::time::Duration;
use xregion_model::wire::{ErrorBody, Health, PutRequest, Record, ReplicationStatus, ScanPage};

/// Most pages one scan reads, to bound a scan of a deployment that keeps returning `next_after`.
const SCAN_PAGES_MAX: usize = 10_000;

pub mod capabilities;
pub mod error;

pub use capabilities::Capabilities;
pub use error::ProbeError;

/// A client for one region: its probe-contract endpoint over HTTP, or its database.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The region's name, for records and errors.
    pub region: String,
    /// Base URL without a trailing slash, or the database's URL without its password.
    pub endpoint: String,
    /// How the region is reached.
    backend: Backend,
    /// Request timeout, reported in errors.
    timeout: Duration,
}

/// How a probe reaches its region. A new kind of target is one more variant: a client plus what it can do.
#[derive(Debug, Clone)]
enum Backend {
    /// The HTTP probe contract, through the shared connection pool.
    Http(reqwest::Client),
    /// A database holding xregion's table (or key prefix).
    Database(crate::db::DbRegion),
    /// Only the region's own application API (`app`), which journeys call: no probe contract, no database.
    App,
}

/// Builds the shared HTTP client with the configured timeouts, TLS trusting the deployment's CA, and the admin
/// token (probes read, write, and read replication and audit).
pub fn client(deployment: &crate::config::Deployment) -> reqwest::Client {
    let connect_timeout = Duration::from_millis(deployment.connect_timeout_ms);
    let request_timeout = Duration::from_millis(deployment.request_timeout_ms);
    crate::net::client_builder(deployment, crate::net::Role::Admin)
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl Probe {
    /// A probe for `region` at `endpoint`, sharing `client`'s pool.
    pub fn new(region: &str, endpoint: &str, client: reqwest::Client, timeout: Duration) -> Probe {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        Probe { region: region.to_string(), endpoint, backend: Backend::Http(client), timeout }
    }

    /// A probe for `region` that reaches its database.
    pub fn database_client(region: &str, db: crate::db::DbRegion, timeout: Duration) -> Probe {
        Probe { region: region.to_string(), endpoint: db.endpoint(), backend: Backend::Database(db), timeout }
    }

    /// A region known only by its application API at `app`: journeys reach it, probes do not.
    pub fn app_only(region: &str, app: &str, timeout: Duration) -> Probe {
        let endpoint = app.trim_end_matches('/').to_string();
        Probe { region: region.to_string(), endpoint, backend: Backend::App, timeout }
    }

    /// What this region's client can do.
    pub fn capabilities(&self) -> Capabilities {
        match &self.backend {
            Backend::App => Capabilities {
                http_contract: false,
                keys: false,
                kind: "application API without the probe contract",
                tombstones: false,
                order: "none xregion can read",
                promises: &[],
                promises_why: "xregion reads nothing of an application API but what its journeys ask",
            },
            Backend::Http(_) => Capabilities {
                http_contract: true,
                keys: true,
                kind: "HTTP probe contract",
                tombstones: true,
                order: "the deployment's versions (HLC wall time, logical counter, origin region)",
                promises: &[],
                promises_why: "an HTTP deployment states no session guarantee xregion could know of; a region that \
                               replicates asynchronously answers from what it has received",
            },
            Backend::Database(db) => db.capabilities(),
        }
    }

    /// The database client, when the region is a database.
    pub fn database(&self) -> Option<&crate::db::DbRegion> {
        match &self.backend {
            Backend::Database(db) => Some(db),
            Backend::Http(_) | Backend::App => None,
        }
    }

    /// The HTTP client, or the error for an operation only the HTTP contract has.
    fn http(&self, what: &str) -> Result<&reqwest::Client, ProbeError> {
        match &self.backend {
            Backend::Http(c) => Ok(c),
            Backend::Database(_) | Backend::App => Err(ProbeError::Refused {
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
                message: format!("this {} has no {what}", self.capabilities().kind),
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn transport_error(&self, e: reqwest::Error) -> ProbeError {
        let (region, endpoint) = (self.region.clone(), self.endpoint.clone());
        if e.is_timeout() {
            ProbeError::Timeout { region, endpoint, timeout_ms: self.timeout.as_millis() as u64 }
        } else if e.is_connect() {
            let host = reqwest::Url::parse(&self.endpoint).ok().and_then(|u| u.host_str().map(str::to_string));
            let host = host.unwrap_or_else(|| self.endpoint.clone());
            let host = host.trim_start_matches('[').trim_end_matches(']');
            ProbeError::Unreachable { region, endpoint, cause: crate::net::transport_problem(&e, host, None) }
        } else {
            let cause = crate::net::transport_problem(&e, &self.endpoint, None);
            ProbeError::Contract { region, endpoint, cause }
        }
    }

    fn contract(&self, cause: String) -> ProbeError {
        ProbeError::Contract { region: self.region.clone(), endpoint: self.endpoint.clone(), cause }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ProbeError> {
        req.send().await.map_err(|e| self.transport_error(e))
    }

    async fn decode<T: serde::de::DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ProbeError> {
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| format!("{}: {}", b.error, b.message))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
            return Err(ProbeError::Status {
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| self.contract(format!("bad JSON: {e}")))
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ProbeError> {
        if let Backend::Database(db) = &self.backend {
            return db.health().await;
        }
        let resp = self.send(self.http("/healthz")?.get(self.url("/healthz"))).await?;
        self.decode(resp).await
    }

    /// `PUT /v1/kv/{key}`: returns the stored record with its version.
    pub async fn put(&self, key: &str, value: &str) -> Result<Record, ProbeError> {
        if let Backend::Database(db) = &self.backend {
            return db.put(key, value).await;
        }
        let body = PutRequest { value: value.to_string(), residency: None };
        let resp = self.send(self.http("key-value route")?.put(self.url(&format!("/v1/kv/{key}"))).json(&body)).await?;
        self.decode(resp).await
    }

    /// `PUT /v1/kv/{key}` with a residency tag.
    pub async fn put_tagged(&self, key: &str, value: &str, residency: Option<&str>) -> Result<Record, ProbeError> {
        let body = PutRequest { value: value.to_string(), residency: residency.map(str::to_string) };
        let resp = self.send(self.http("residency tags")?.put(self.url(&format!("/v1/kv/{key}"))).json(&body)).await?;
        self.decode(resp).await
    }

    /// `POST /v1/erase/{key}`: the erasure receipt.
    pub async fn erase(&self, key: &str) -> Result<xregion_model::wire::EraseReceipt, ProbeError> {
        let resp = self.send(self.http("erase route")?.post(self.url(&format!("/v1/erase/{key}")))).await?;
        self.decode(resp).await
    }

    /// `GET /v1/audit?after=…&limit=…`: one page of the region's audit log.
    pub async fn audit(&self, after: Option<u64>, limit: u32) -> Result<xregion_model::wire::AuditPage, ProbeError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        let resp = self.send(self.http("audit route")?.get(self.url("/v1/audit")).query(&query)).await?;
        self.decode(resp).await
    }

    /// The same probe sending through `client` (another token).
    pub fn with_client(&self, client: reqwest::Client) -> Probe {
        match self.backend {
            Backend::Http(_) => Probe { backend: Backend::Http(client), ..self.clone() },
            Backend::Database(_) | Backend::App => self.clone(),
        }
    }

    /// `DELETE /v1/kv/{key}`: returns the tombstone with its version.
    pub async fn delete(&self, key: &str) -> Result<Record, ProbeError> {
        if let Backend::Database(db) = &self.backend {
            return db.delete(key).await;
        }
        let resp = self.send(self.http("key-value route")?.delete(self.url(&format!("/v1/kv/{key}")))).await?;
        self.decode(resp).await
    }

    /// `GET /v1/kv/{key}`: `None` when the key is absent or deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Record>, ProbeError> {
        if let Backend::Database(db) = &self.backend {
            return db.get(key).await;
        }
        let resp = self.send(self.http("key-value route")?.get(self.url(&format!("/v1/kv/{key}")))).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.decode(resp).await.map(Some)
    }

    /// `GET /v1/kv?prefix=…`, every page: all records under `prefix`, tombstones included, in key order.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<Record>, ProbeError> {
        self.scan_after(prefix, None).await
    }

    /// Every record under `prefix` whose key is greater than `after` (all of them when `None`), in key order.
    pub async fn scan_after(&self, prefix: &str, after: Option<&str>) -> Result<Vec<Record>, ProbeError> {
        if let Backend::Database(db) = &self.backend {
            let mut records = db.scan(prefix).await?;
            if let Some(after) = after {
                records.retain(|r| r.key.as_str() > after);
            }
            return Ok(records);
        }
        let client = self.http("key-value route")?;
        let mut out = Vec::new();
        let mut after: Option<String> = after.map(str::to_string);
        for _ in 0..SCAN_PAGES_MAX {
            let mut query = vec![("prefix", prefix.to_string()), ("limit", "1000".to_string())];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let resp = self.send(client.get(self.url("/v1/kv")).query(&query)).await?;
            let page: ScanPage = self.decode(resp).await?;
            out.extend(page.records);
            match page.next_after {
                Some(next) if Some(&next) != after.as_ref() => after = Some(next),
                Some(_) => {
                    return Err(self.contract("scan returned the same next_after twice".into()));
                }
                None => return Ok(out),
            }
        }
        Err(self.contract(format!("scan exceeded {SCAN_PAGES_MAX} pages")))
    }

    /// `GET {path}` for an optional route of the contract: `None` when the deployment answers 404 (or 405), so
    /// the check that needs it can be skipped with a reason.
    pub async fn get_optional<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, ProbeError> {
        let mut req = self.http(path)?.get(self.url(path));
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = self.send(req).await?;
        if matches!(resp.status(), reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED) {
            return Ok(None);
        }
        self.decode(resp).await.map(Some)
    }

    /// `GET /v1/replication`.
    pub async fn replication(&self) -> Result<ReplicationStatus, ProbeError> {
        let resp = self.send(self.http("replication status route")?.get(self.url("/v1/replication"))).await?;
        self.decode(resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: pin the wording of a refused connection and a timeout: each names the region, the endpoint and what
    /// to check. Method: a closed port, and a listener that never answers, on loopback.
    #[tokio::test]
    async fn errors_name_the_region_the_endpoint_and_what_to_do() {
        let timeout = Duration::from_millis(300);
        let client = crate::net::client_builder(&crate::config::Deployment::default(), crate::net::Role::Anonymous)
            .timeout(timeout)
            .build()
            .unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let p = Probe::new("us-east-1", &format!("http://{closed}/"), client.clone(), timeout);
        let e = p.health().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "region us-east-1 at http://{closed}: refused the connection; check that the service is running and \
                 listens on that port"
            )
        );
        assert!(e.is_definite_failure());
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let p = Probe::new("eu-west-1", &format!("http://{addr}"), client, timeout);
        let e = p.health().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "region eu-west-1 at http://{addr} did not answer within 300 ms; check that it is up and not \
                 overloaded, or raise [deployment] request_timeout_ms"
            )
        );
        assert_eq!(
            e.detail(),
            format!(
                "http://{addr} did not answer within 300 ms; check that it is up and not overloaded, or raise \
                 [deployment] request_timeout_ms"
            )
        );
        drop(silent);
    }
}
