//! Fault injection, as far as the checks of this build need it: turning a region's health check off and on.
//!
//! Checks never reach into a deployment's internals; they ask a `FaultInjector`. The lab's injector uses the
//! lab-only control routes of each region (`PUT /lab/health`). A real deployment has no injector until one is
//! configured, and checks that need one are `skipped` with that reason.

use std::collections::BTreeMap;
use std::time::Duration;

/// How faults reach the deployment.
#[derive(Debug, Clone)]
pub enum FaultInjector {
    /// The embedded lab: region name to its base URL, whose `/lab/*` routes take faults.
    Lab {
        /// Region endpoints.
        endpoints: BTreeMap<String, String>,
        /// HTTP client with timeouts.
        client: reqwest::Client,
    },
    /// No way to inject faults; the reason is shown in skipped checks.
    None(String),
}

/// Timeout of one control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

impl FaultInjector {
    /// Why faults cannot be injected, or `None` when they can.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            FaultInjector::Lab { .. } => None,
            FaultInjector::None(why) => Some(why),
        }
    }

    /// Makes `region`'s health check fail (`healthy = false`) or pass again, while it keeps serving requests.
    pub async fn set_health(&self, region: &str, healthy: bool) -> Result<(), String> {
        match self {
            FaultInjector::Lab { endpoints, client } => {
                let base = endpoints.get(region).ok_or_else(|| format!("unknown region {region}"))?;
                let status = if healthy { "ok" } else { "down" };
                let resp = client
                    .put(format!("{base}/lab/health"))
                    .json(&serde_json::json!({ "status": status }))
                    .timeout(CONTROL_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| format!("cannot set the health of {region} at {base}: {e}"))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{base}/lab/health answered {}", resp.status()))
                }
            }
            FaultInjector::None(why) => Err(why.clone()),
        }
    }
}
