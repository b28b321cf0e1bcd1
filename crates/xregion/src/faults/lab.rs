//! The lab's injector: a client of the lab's control API (`POST /regions/{name}/fail`, `POST /regions/{name}/restore`,
//! `GET /faults`) and of each region's lab-only `PUT /lab/health`. Every call has its own request timeout, and an
//! answer that is not what the API promises is an error naming the URL.

use super::{FaultError, http_client, region_endpoint, root_cause, secs};
use std::time::Duration;
use xregion_model::fault::{ActiveFault, FaultSpec, FaultStatus, RegionFaultStatus};
use xregion_model::wire::ErrorBody;

/// Timeout of `POST /regions/{name}/fail`: a complete failure SIGKILLs a process and waits for it to be gone.
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of `POST /regions/{name}/restore`: lifting a complete failure restarts the region's process, which
/// may take the lab's readiness timeout (15 s) plus the wait for its replication streams (10 s).
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(45);
/// Timeout of `GET /faults`: the lab checks every region's health, each with its own short timeout.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a region's `PUT /lab/health`.
const SET_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The lab's injector: its control API, and each region's `/lab/health`.
#[derive(Debug, Clone)]
pub struct LabInjector {
    /// Base URL of the lab's control API (`xregion_lab::ControlServer`); `None` when the lab runs without one,
    /// and then only `set_health` works.
    control_url: Option<String>,
    /// Region name to probe-contract base URL, in config order: `set_health` talks to the region itself.
    endpoints: Vec<(String, String)>,
    /// HTTP client with a connect timeout; every call sets its own request timeout.
    client: reqwest::Client,
}

impl LabInjector {
    /// An injector for the lab whose control API is at `control_url`.
    pub fn new(control_url: Option<&str>, endpoints: impl IntoIterator<Item = (String, String)>) -> LabInjector {
        LabInjector {
            control_url: control_url.map(|u| u.trim_end_matches('/').to_string()),
            endpoints: endpoints.into_iter().map(|(n, e)| (n, e.trim_end_matches('/').to_string())).collect(),
            client: http_client(),
        }
    }

    /// The same injector calling through `client` (TLS and token of the deployment).
    pub fn with_client(mut self, client: reqwest::Client) -> LabInjector {
        self.client = client;
        self
    }

    /// The control API's base URL.
    pub fn control_url(&self) -> Option<&str> {
        self.control_url.as_deref()
    }

    /// `{control}/{segments…}`, with each segment percent-encoded so that a region name stays one segment.
    fn url(&self, segments: &[&str]) -> Result<String, FaultError> {
        let Some(base) = &self.control_url else {
            return Err(FaultError::Unavailable(
                "the lab runs without its control API, so only health-check faults can be injected".into(),
            ));
        };
        let mut url = reqwest::Url::parse(base)
            .map_err(|e| FaultError::Unavailable(format!("the lab's control URL {base:?} is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| FaultError::Unavailable(format!("the lab's control URL {base:?} cannot take a path")))?
            .pop_if_empty()
            .extend(segments);
        Ok(url.to_string())
    }

    /// Sends one control request and decodes its answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: String,
        req: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
        expected: &'static str,
    ) -> Result<T, FaultError> {
        let resp = req.timeout(timeout).send().await.map_err(|e| {
            if e.is_connect() {
                FaultError::Unreachable { action: action.clone(), url: url.to_string(), cause: root_cause(&e) }
            } else if e.is_timeout() {
                FaultError::NoAnswer {
                    action: action.clone(),
                    url: url.to_string(),
                    cause: format!("no answer within {} s", secs(&timeout)),
                }
            } else {
                FaultError::NoAnswer { action: action.clone(), url: url.to_string(), cause: root_cause(&e) }
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| FaultError::NoAnswer {
            action: action.clone(),
            url: url.to_string(),
            cause: if e.is_timeout() {
                format!("the answer did not arrive within {} s", secs(&timeout))
            } else {
                root_cause(&e)
            },
        })?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error, b.message),
                Err(_) => ("-".to_string(), String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()),
            };
            return Err(FaultError::Rejected { action, url: url.to_string(), status: status.as_u16(), code, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| FaultError::BadAnswer {
            action,
            url: url.to_string(),
            expected,
            cause: e.to_string(),
        })
    }

    /// `POST /regions/{region}/fail`.
    pub async fn fail(&self, region: &str, spec: &FaultSpec) -> Result<ActiveFault, FaultError> {
        region_endpoint(&self.endpoints, region)?;
        if let Some(reason) = spec.problem() {
            return Err(FaultError::InvalidSpec { region: region.to_string(), reason });
        }
        let url = self.url(&["regions", region, "fail"])?;
        let req = self.client.post(&url).json(spec);
        self.call(format!("fail {region}"), req, &url, FAIL_TIMEOUT, "an ActiveFault").await
    }

    /// `POST /regions/{region}/restore`: the region's state afterwards.
    pub async fn restore_region(&self, region: &str) -> Result<RegionFaultStatus, FaultError> {
        region_endpoint(&self.endpoints, region)?;
        let url = self.url(&["regions", region, "restore"])?;
        let req = self.client.post(&url);
        self.call(format!("restore {region}"), req, &url, RESTORE_TIMEOUT, "a RegionFaultStatus").await
    }

    /// `GET /faults`.
    pub async fn status(&self) -> Result<FaultStatus, FaultError> {
        let url = self.url(&["faults"])?;
        let req = self.client.get(&url);
        self.call("fault status".to_string(), req, &url, STATUS_TIMEOUT, "a FaultStatus").await
    }

    /// `PUT {endpoint}/lab/health` on the region itself.
    pub async fn set_health(&self, region: &str, healthy: bool) -> Result<(), String> {
        let base = region_endpoint(&self.endpoints, region)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown region {region}"))?;
        let status = if healthy { "ok" } else { "down" };
        let resp = self
            .client
            .put(format!("{base}/lab/health"))
            .json(&serde_json::json!({ "status": status }))
            .timeout(SET_HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("cannot set the health of {region} at {base}: {}", root_cause(&e)))?;
        if resp.status().is_success() { Ok(()) } else { Err(format!("{base}/lab/health answered {}", resp.status())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xregion_model::fault::FaultKind;

    /// Goal: an unreachable control URL is an error naming it, quickly, and an unknown region is refused
    /// before any request.
    #[tokio::test]
    async fn unreachable_control_url_is_named() {
        // Port 9 on loopback: nothing listens there, so the connection is refused at once.
        let l = LabInjector::new(Some("http://127.0.0.1:9"), [("a".to_string(), "http://127.0.0.1:9".to_string())]);
        let e = l.fail("a", &FaultSpec::new(FaultKind::Complete)).await.unwrap_err();
        assert!(matches!(e, FaultError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("http://127.0.0.1:9/regions/a/fail"), "{e}");
        let e = l.restore_region("b").await.unwrap_err();
        assert!(matches!(e, FaultError::UnknownRegion { .. }), "{e}");
    }
}
