//! The specification's environment variables (`MAX_LATENCY_MS`, `TARGET_RTO_SECONDS`, `API_ENDPOINT_<REGION>`, …)
//! and the token and CA variables (`XREGION_TOKEN_*`, `XREGION_CA_FILE`), applied on top of the file. A bad value is a `ConfigError` whose origin is
//! `environment` and whose message names the variable.

use super::deployment::{DeploymentKind, RegionEndpoint, Secret};
use super::{Config, ConfigError};
use std::collections::BTreeMap;

/// Environment variable error.
fn env_error(message: String) -> ConfigError {
    ConfigError { origin: "environment".to_string(), position: None, message }
}

/// Parses a numeric environment variable, naming it in the error.
fn env_number<T: std::str::FromStr>(env: &BTreeMap<String, String>, name: &str) -> Result<Option<T>, ConfigError> {
    match env.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| env_error(format!("{name}={v:?} is not a number; set it to a plain number or unset it"))),
    }
}

/// `us-east-1` becomes `US_EAST_1`, the suffix of `API_ENDPOINT_US_EAST_1`.
pub fn env_suffix(region: &str) -> String {
    region.to_ascii_uppercase().replace('-', "_")
}

/// Applies the specification's environment variables. They override the file.
///
/// The deployment comes from the environment only when an `API_ENDPOINT_<REGION>` variable is set, because
/// `AWS_REGION` alone is often set for unrelated reasons and must not turn a lab run into a remote one.
pub(super) fn apply_env(config: &mut Config, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if let Some(v) = env_number::<f64>(env, "MAX_LATENCY_MS")? {
        config.targets.max_latency_ms = v;
    }
    if let Some(v) = env_number::<f64>(env, "TARGET_RTO_SECONDS")? {
        config.targets.rto_s = v;
    }
    if let Some(v) = env_number::<f64>(env, "TARGET_RPO_SECONDS")? {
        config.targets.rpo_s = v;
    }
    if let Some(v) = env_number::<u64>(env, "MAX_CONCURRENT_USERS")? {
        config.targets.max_concurrent_users = v;
    }
    for (var, slot) in [
        ("XREGION_TOKEN_READ", &mut config.deployment.auth.read_token),
        ("XREGION_TOKEN_WRITE", &mut config.deployment.auth.write_token),
        ("XREGION_TOKEN_ADMIN", &mut config.deployment.auth.admin_token),
    ] {
        if let Some(v) = env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            *slot = Some(Secret::new(v));
        }
    }
    // The CA the endpoints chain to, beside the tokens: a deployment described by variables alone can name it.
    if let Some(v) = env.get("XREGION_CA_FILE").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        config.deployment.tls.ca_file = Some(std::path::PathBuf::from(v));
    }
    config.db_env = env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("PG")
                || k.starts_with("ETCDCTL_")
                || k.as_str() == "MYSQL_PWD"
                || k.as_str() == "XREGION_DB_KIND"
                || k.as_str() == "USER"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let by_suffix = |prefix: &str| -> BTreeMap<String, String> {
        env.iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.trim().to_string())))
            .filter(|(s, v)| !s.is_empty() && !v.is_empty())
            .collect()
    };
    let endpoints = by_suffix("API_ENDPOINT_");
    let databases = by_suffix("DB_ENDPOINT_");
    if endpoints.is_empty() && databases.is_empty() {
        return Ok(());
    }
    // Region names: AWS_REGION first, then AWS_SECONDARY_REGIONS; without them, the endpoint variables' names.
    let mut names: Vec<String> = Vec::new();
    if let Some(primary) = env.get("AWS_REGION").filter(|s| !s.trim().is_empty()) {
        names.push(primary.trim().to_string());
        if let Some(rest) = env.get("AWS_SECONDARY_REGIONS") {
            names.extend(rest.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
        }
    } else if config.deployment.kind == DeploymentKind::Http && !config.deployment.regions.is_empty() {
        names = config.deployment.regions.iter().map(|r| r.name.clone()).collect();
    } else {
        let suffixes: std::collections::BTreeSet<&String> = endpoints.keys().chain(databases.keys()).collect();
        names = suffixes.into_iter().map(|s| s.to_ascii_lowercase().replace('_', "-")).collect();
    }
    let mut regions = Vec::new();
    for name in names {
        let suffix = env_suffix(&name);
        let from_file = config.deployment.regions.iter().find(|r| r.name == name);
        let endpoint = endpoints.get(&suffix).cloned().or(from_file.map(|r| r.endpoint.clone())).unwrap_or_default();
        let database = databases.get(&suffix).cloned().or(from_file.and_then(|r| r.database.clone()));
        if endpoint.is_empty() && database.is_none() {
            return Err(env_error(format!(
                "region {name} is listed in AWS_REGION/AWS_SECONDARY_REGIONS but neither API_ENDPOINT_{suffix} nor \
                 DB_ENDPOINT_{suffix} is set"
            )));
        }
        regions.push(RegionEndpoint { name, endpoint, database, app: None });
    }
    config.deployment.kind = DeploymentKind::Http;
    config.deployment.regions = regions;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Goal: the specification's variables override targets, and a bad number names the variable.
    #[test]
    fn env_overrides_targets() {
        let mut c = Config::default();
        apply_env(&mut c, &env(&[("TARGET_RTO_SECONDS", "30"), ("MAX_CONCURRENT_USERS", "500")])).unwrap();
        assert_eq!(c.targets.rto_s, 30.0);
        assert_eq!(c.targets.max_concurrent_users, 500);
        let err = apply_env(&mut c, &env(&[("TARGET_RPO_SECONDS", "soon")])).unwrap_err();
        assert!(err.message.contains("TARGET_RPO_SECONDS"));
    }

    /// Goal: endpoint variables define an http deployment, in AWS_REGION order, and a missing one is named.
    #[test]
    fn env_endpoints_define_the_deployment() {
        let mut c = Config::default();
        let e = env(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_SECONDARY_REGIONS", "us-east-1"),
            ("API_ENDPOINT_US_EAST_1", "http://127.0.0.1:1"),
            ("API_ENDPOINT_US_WEST_2", "http://127.0.0.1:2"),
        ]);
        apply_env(&mut c, &e).unwrap();
        assert_eq!(c.deployment.kind, DeploymentKind::Http);
        let names: Vec<_> = c.deployment.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["us-west-2", "us-east-1"]);
        let mut c = Config::default();
        let e = env(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_SECONDARY_REGIONS", "eu-west-1"),
            ("API_ENDPOINT_US_WEST_2", "http://127.0.0.1:2"),
        ]);
        let err = apply_env(&mut c, &e).unwrap_err();
        assert!(err.message.contains("API_ENDPOINT_EU_WEST_1"), "{}", err.message);
    }

    /// Goal: the seed's DB_ENDPOINT_* variables alone describe a deployment of databases, with the libpq
    /// variables kept to complete them; a region may have both an API and a database.
    #[test]
    fn db_endpoints_alone_define_the_deployment() {
        let mut c = Config::default();
        let e = env(&[
            ("DB_ENDPOINT_US_EAST_1", "127.0.2.1:5432"),
            ("DB_ENDPOINT_EU_WEST_1", "postgres://app@127.0.2.3/shop"),
            ("API_ENDPOINT_EU_WEST_1", "https://eu.example"),
            ("PGUSER", "app"),
            ("HOME", "/root"),
        ]);
        apply_env(&mut c, &e).unwrap();
        assert_eq!(c.deployment.kind, DeploymentKind::Http);
        let r = &c.deployment.regions;
        assert_eq!((r[0].name.as_str(), r[0].endpoint.as_str()), ("eu-west-1", "https://eu.example"));
        assert_eq!(r[0].database.as_deref(), Some("postgres://app@127.0.2.3/shop"));
        assert_eq!((r[1].name.as_str(), r[1].endpoint.as_str()), ("us-east-1", ""));
        assert_eq!(c.db_env.keys().collect::<Vec<_>>(), ["PGUSER"]);
    }

    /// Goal: XREGION_CA_FILE names the CA the clients trust, over the file's ca_file; empty leaves it unset.
    #[test]
    fn ca_file_from_the_environment() {
        let mut c = Config::default();
        c.deployment.tls.ca_file = Some("from-file.pem".into());
        apply_env(&mut c, &env(&[("XREGION_CA_FILE", "/etc/xregion/ca.pem")])).unwrap();
        assert_eq!(c.deployment.tls.ca_file.as_deref(), Some(std::path::Path::new("/etc/xregion/ca.pem")));
        let mut c = Config::default();
        apply_env(&mut c, &env(&[("XREGION_CA_FILE", " ")])).unwrap();
        assert_eq!(c.deployment.tls.ca_file, None);
    }

    /// Goal: AWS_REGION alone does not turn a lab run into a remote one.
    #[test]
    fn aws_region_alone_keeps_the_lab() {
        let mut c = Config::default();
        apply_env(&mut c, &env(&[("AWS_REGION", "ap-south-1")])).unwrap();
        assert_eq!(c.deployment.kind, DeploymentKind::Lab);
    }
}
