//! The etcd region client: the probe operations on xregion's key prefix, through each member's JSON gateway
//! (`/v3/kv/put`, `/v3/kv/range`, `/v3/kv/deleterange`), so a fresh clone needs no protobuf compiler.
//!
//! Every member accepts writes (it forwards them to the leader), and reads are linearizable, etcd's default: a read
//! in any region sees every write acknowledged before it began, and a member cut off from the quorum answers
//! neither. etcd orders all writes by one cluster-wide revision, so a record's version is its `mod_revision`
//! (`wall_ms` holds the revision, `origin` is `etcd`): the store's own order, which the last-write-wins checker
//! then judges. A delete leaves no tombstone; the checkers take an absent key as the latest known delete.
//!
//! Errors keep the history's distinction. A refused connection, a 4xx, `no leader` and authentication failures
//! certainly left the operation undone; a timeout, `request timed out` or a broken connection leave it in doubt.

use super::schema::TABLE;
use super::settings::{DbSettings, SslMode};
use crate::probe::error::ProbeError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xregion_model::Version;
use xregion_model::wire::{Health, Record};

/// Keys one range request returns; a scan reads pages until etcd says there are no more.
const SCAN_PAGE: u64 = 1000;
/// Most pages one scan reads, to bound a scan of a store that keeps saying `more`.
const SCAN_PAGES_MAX: usize = 10_000;
/// Most connections kept idle per member.
const IDLE_MAX: usize = 64;

/// The `origin` of every etcd version: the order is the cluster's, not a region's.
pub const ORIGIN: &str = "etcd";

/// One region's etcd member.
#[derive(Clone)]
pub struct EtcdRegion {
    /// The region.
    region: String,
    /// Where the member is (its `Display` has no password).
    settings: DbSettings,
    /// `http://host:port` or `https://host:port`.
    base: String,
    /// The HTTP client (TLS trusting the deployment's CA).
    client: reqwest::Client,
    /// Time allowed for one request.
    timeout: Duration,
    /// The authentication token, once obtained, when the settings name a user.
    token: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for EtcdRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdRegion({})", self.settings)
    }
}

/// A key-value pair as the gateway returns it (bytes in base64, 64-bit integers as strings).
#[derive(Deserialize)]
struct Kv {
    key: String,
    #[serde(default)]
    value: String,
    mod_revision: String,
}

/// The response header every call returns.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Deserialize)]
struct WriteResponse {
    header: Header,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct AuthResponse {
    token: String,
}

/// The gateway's error body (a gRPC status).
#[derive(Deserialize)]
struct GatewayError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i32,
}

/// gRPC status codes that say the operation certainly did not happen.
fn definitely_not_applied(code: i32, message: &str) -> bool {
    // 3 invalid argument, 5 not found, 7 permission denied, 9 failed precondition, 11 out of range,
    // 12 unimplemented, 16 unauthenticated. "no leader" is refused before it is proposed.
    matches!(code, 3 | 5 | 7 | 9 | 11 | 12 | 16) || message.contains("no leader")
}

/// The HTTP client of every etcd region: the deployment's TLS trust and timeouts, and no bearer token (etcd has its
/// own authentication, and the deployment's tokens are not for it).
pub fn client(deployment: &crate::config::Deployment) -> Result<reqwest::Client, String> {
    crate::net::client_builder(deployment, crate::net::Role::Anonymous)
        .connect_timeout(Duration::from_millis(deployment.connect_timeout_ms))
        .timeout(Duration::from_millis(deployment.request_timeout_ms))
        .pool_max_idle_per_host(IDLE_MAX)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client of the etcd regions: {e}"))
}

impl EtcdRegion {
    /// The client of `region`'s member at `settings`, over `client` (shared by every etcd region; see
    /// `client`), whose request timeout is `timeout`.
    pub fn new(region: &str, settings: DbSettings, client: reqwest::Client, timeout: Duration) -> EtcdRegion {
        let scheme = if settings.sslmode == SslMode::Require { "https" } else { "http" };
        let host = if settings.host.contains(':') { format!("[{}]", settings.host) } else { settings.host.clone() };
        EtcdRegion {
            region: region.to_string(),
            base: format!("{scheme}://{host}:{}", settings.port),
            settings,
            client,
            timeout,
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// The member, without a password: the probe's endpoint in reports and errors.
    pub fn endpoint(&self) -> String {
        self.settings.to_string()
    }

    fn full_key(key: &str) -> String {
        format!("{TABLE}/{key}")
    }

    fn refused(&self, message: String) -> ProbeError {
        ProbeError::Refused { region: self.region.clone(), endpoint: self.endpoint(), message }
    }

    fn transport(&self, e: reqwest::Error) -> ProbeError {
        let (region, endpoint) = (self.region.clone(), self.endpoint());
        if e.is_timeout() {
            ProbeError::Timeout { region, endpoint, timeout_ms: self.timeout.as_millis() as u64 }
        } else if e.is_connect() {
            ProbeError::Unreachable {
                region,
                endpoint,
                cause: crate::net::transport_problem(&e, &self.settings.host, None),
            }
        } else {
            ProbeError::InDoubt {
                region,
                endpoint,
                cause: crate::net::transport_problem(&e, &self.settings.host, None),
            }
        }
    }

    /// A token for the settings' user, obtained once and again after etcd forgets it.
    async fn token(&self, fresh: bool) -> Result<Option<String>, ProbeError> {
        if self.settings.user.is_empty() {
            return Ok(None);
        }
        if !fresh && let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(Some(t));
        }
        let password = self.settings.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        let body = serde_json::json!({ "name": self.settings.user, "password": password });
        let resp: AuthResponse = self.call_once("/v3/auth/authenticate", &body, None).await?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(resp.token.clone());
        Ok(Some(resp.token))
    }

    /// One POST to the gateway, decoded; gateway errors classified.
    async fn call_once<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> Result<T, ProbeError> {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ProbeError::Contract {
                region: self.region.clone(),
                endpoint: self.endpoint(),
                cause: format!("the etcd gateway answered {path} with unexpected JSON: {e}"),
            });
        }
        let err: Option<GatewayError> = serde_json::from_slice(&bytes).ok();
        let (code, message) = match err {
            Some(g) => (g.code, if g.message.is_empty() { g.error } else { g.message }),
            None => (0, String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()),
        };
        let hint = match code {
            16 => "; check the etcd user and password (the URL, ETCDCTL_USER or ETCDCTL_PASSWORD)",
            7 => "; grant the user readwrite on the key prefix xregion_kv/ (see `xregion db schema --kind etcd`)",
            _ => "",
        };
        let message = format!("{message}{hint}");
        if status.is_client_error() || definitely_not_applied(code, &message) {
            Err(self.refused(message))
        } else {
            Err(ProbeError::Status {
                region: self.region.clone(),
                endpoint: self.endpoint(),
                status: status.as_u16(),
                message,
            })
        }
    }

    /// One call with authentication, authenticating again once when etcd no longer knows the token.
    async fn call<T: serde::de::DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T, ProbeError> {
        let token = self.token(false).await?;
        match self.call_once(path, &body, token.as_deref()).await {
            Err(ProbeError::Refused { message, .. }) if token.is_some() && message.contains("invalid auth token") => {
                let token = self.token(true).await?;
                self.call_once(path, &body, token.as_deref()).await
            }
            other => other,
        }
    }

    fn record(&self, key: &str, value: Option<String>, revision: Option<&str>) -> Result<Record, ProbeError> {
        let revision = revision.and_then(|r| r.parse::<u64>().ok()).ok_or_else(|| ProbeError::Contract {
            region: self.region.clone(),
            endpoint: self.endpoint(),
            cause: "the etcd gateway's answer has no revision".into(),
        })?;
        Ok(Record {
            key: key.to_string(),
            value,
            version: Version { wall_ms: revision, logical: 0, origin: ORIGIN.into() },
            region: self.region.clone(),
            residency: None,
        })
    }

    fn decode(&self, kv: Kv) -> Result<Record, ProbeError> {
        let bad = |what: &str| ProbeError::Contract {
            region: self.region.clone(),
            endpoint: self.endpoint(),
            cause: format!("the etcd gateway returned a {what} that is not base64 UTF-8"),
        };
        let key = B64.decode(&kv.key).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| bad("key"))?;
        let value = B64.decode(&kv.value).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| bad("value"))?;
        let key = key.strip_prefix(&format!("{TABLE}/")).unwrap_or(&key).to_string();
        self.record(&key, Some(value), Some(&kv.mod_revision))
    }

    /// Writes `value` to `key`; the version is the revision of the write.
    pub async fn put(&self, key: &str, value: &str) -> Result<Record, ProbeError> {
        let body = serde_json::json!({ "key": B64.encode(Self::full_key(key)), "value": B64.encode(value) });
        let resp: WriteResponse = self.call("/v3/kv/put", body).await?;
        self.record(key, Some(value.to_string()), resp.header.revision.as_deref())
    }

    /// Deletes `key`; the tombstone's version is the revision of the delete (etcd itself keeps none).
    pub async fn delete(&self, key: &str) -> Result<Record, ProbeError> {
        let body = serde_json::json!({ "key": B64.encode(Self::full_key(key)) });
        let resp: WriteResponse = self.call("/v3/kv/deleterange", body).await?;
        self.record(key, None, resp.header.revision.as_deref())
    }

    /// Reads `key` through this region's member (linearizable); `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Record>, ProbeError> {
        let body = serde_json::json!({ "key": B64.encode(Self::full_key(key)) });
        let resp: RangeResponse = self.call("/v3/kv/range", body).await?;
        resp.kvs.into_iter().next().map(|kv| self.decode(kv)).transpose()
    }

    /// Every key under `prefix` through this region's member, in key order (byte order, as etcd sorts).
    pub async fn scan(&self, prefix: &str) -> Result<Vec<Record>, ProbeError> {
        let start = Self::full_key(prefix).into_bytes();
        let end = prefix_end(&start);
        let mut from = start;
        let mut out = Vec::new();
        for _ in 0..SCAN_PAGES_MAX {
            let body = serde_json::json!({
                "key": B64.encode(&from), "range_end": B64.encode(&end), "limit": SCAN_PAGE.to_string()
            });
            let resp: RangeResponse = self.call("/v3/kv/range", body).await?;
            let last = resp.kvs.last().map(|kv| kv.key.clone());
            for kv in resp.kvs {
                out.push(self.decode(kv)?);
            }
            match (resp.more, last) {
                (true, Some(last)) => {
                    from = B64.decode(last).unwrap_or_default();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
        Err(ProbeError::Contract {
            region: self.region.clone(),
            endpoint: self.endpoint(),
            cause: format!("a scan of {prefix} did not end within {SCAN_PAGES_MAX} pages"),
        })
    }

    /// `ok` when a linearizable read of xregion's prefix succeeds (the member has a leader and a quorum).
    pub async fn health(&self) -> Result<Health, ProbeError> {
        let body = serde_json::json!({ "key": B64.encode(Self::full_key("")), "count_only": true });
        let _: serde_json::Value = self.call("/v3/kv/range", body).await?;
        Ok(Health { status: "ok".into(), region: self.region.clone() })
    }
}

/// The smallest key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a prefix's range end is the next key after every key with that prefix, as etcdctl computes it.
    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"xregion_kv/a"), b"xregion_kv/b".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    /// Goal: only what certainly did not happen is a refusal; a timeout inside etcd leaves the outcome open.
    #[test]
    fn only_certain_failures_are_refusals() {
        assert!(definitely_not_applied(14, "etcdserver: no leader"));
        assert!(definitely_not_applied(16, "etcdserver: invalid auth token"));
        assert!(!definitely_not_applied(14, "etcdserver: request timed out"));
        assert!(!definitely_not_applied(4, "context deadline exceeded"));
    }
}
