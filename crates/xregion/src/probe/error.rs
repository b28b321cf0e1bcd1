//! Why a region client's request did not return a result, classified the way a history needs it: certainly not
//! applied (`is_definite_failure`) or outcome unknown.

/// Why a probe request did not return a result. Each message is one sentence naming the region and its endpoint,
/// what went wrong and what to check.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    /// No connection could be made (refused, no such host, a certificate that does not verify); the request
    /// certainly did not take effect.
    #[error("region {region} at {endpoint}: {cause}")]
    Unreachable {
        /// The region.
        region: String,
        /// The endpoint that could not be reached.
        endpoint: String,
        /// What happened and what to check, for example `refused the connection; check that …`.
        cause: String,
    },
    /// The request was sent but no answer came in time; it may or may not have taken effect.
    #[error(
        "region {region} at {endpoint} did not answer within {timeout_ms} ms; check that it is up and not \
         overloaded, or raise [deployment] request_timeout_ms"
    )]
    Timeout {
        /// The region.
        region: String,
        /// The endpoint.
        endpoint: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The deployment answered with an error status.
    #[error("region {region} at {endpoint} answered {status}: {message}")]
    Status {
        /// The region.
        region: String,
        /// The endpoint.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// The error body's message, or the raw body.
        message: String,
    },
    /// A database refused the operation (an error from the server, an authentication failure, a read-only
    /// standby): it certainly did not take effect.
    #[error("region {region} at {endpoint} refused: {message}")]
    Refused {
        /// The region.
        region: String,
        /// The database, without a password.
        endpoint: String,
        /// The server's error, with what to check.
        message: String,
    },
    /// The connection to a database broke after the operation was sent: it may or may not have taken effect.
    #[error("region {region} at {endpoint}: the connection broke with the operation in flight: {cause}")]
    InDoubt {
        /// The region.
        region: String,
        /// The database, without a password.
        endpoint: String,
        /// What happened.
        cause: String,
    },
    /// The answer did not follow the probe contract.
    #[error("region {region} at {endpoint} broke the probe contract: {cause}")]
    Contract {
        /// The region.
        region: String,
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        cause: String,
    },
}

impl ProbeError {
    /// The message without the region, for a row or a line that already names it: `ENDPOINT: what happened`.
    pub fn detail(&self) -> String {
        match self {
            ProbeError::Unreachable { endpoint, cause, .. } => format!("{endpoint}: {cause}"),
            ProbeError::Timeout { endpoint, timeout_ms, .. } => format!(
                "{endpoint} did not answer within {timeout_ms} ms; check that it is up and not overloaded, or raise \
                 [deployment] request_timeout_ms"
            ),
            ProbeError::Status { endpoint, status, message, .. } => format!("{endpoint} answered {status}: {message}"),
            ProbeError::Contract { endpoint, cause, .. } => format!("{endpoint} broke the probe contract: {cause}"),
            ProbeError::Refused { endpoint, message, .. } => format!("{endpoint} refused: {message}"),
            ProbeError::InDoubt { endpoint, cause, .. } => {
                format!("{endpoint}: the connection broke with the operation in flight: {cause}")
            }
        }
    }

    /// Whether the operation certainly did not take effect (versus an unknown outcome).
    pub fn is_definite_failure(&self) -> bool {
        match self {
            ProbeError::Unreachable { .. } | ProbeError::Refused { .. } => true,
            ProbeError::Status { status, .. } => (400..500).contains(status),
            ProbeError::Timeout { .. } | ProbeError::Contract { .. } | ProbeError::InDoubt { .. } => false,
        }
    }
}
