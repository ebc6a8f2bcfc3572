//! Agent configuration, from `POSTERN_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use postern_tunnel::Secret;

use crate::allowlist::Allowlist;
use crate::pg::cancel::CancelKeys;
use crate::pg::credentials::Credentials;
use postern_tunnel::env::{ConfigError, Env};

pub const VARS: &[&str] = &[
    "POSTERN_GATEWAY_URL",
    "POSTERN_AGENT_TOKEN",
    "POSTERN_CA_CERT",
    "POSTERN_KEEPALIVE_INTERVAL_MS",
    "POSTERN_RECONNECT_BASE_MS",
    "POSTERN_RECONNECT_MAX_MS",
    "POSTERN_DIAL_TIMEOUT_MS",
    "POSTERN_ALLOWED_TARGETS",
    "POSTERN_AGENT_TUNNELS",
    "POSTERN_AGENT_TUNNEL_REFRESH_MS",
    "POSTERN_LOG_FORMAT",
    "POSTERN_CREDENTIALS_DIR",
    "POSTERN_DB_CA_CERT",
];

/// Variables read by prefix (database logins, see `pg::credentials`).
pub const VAR_PREFIXES: &[&str] = &[crate::pg::credentials::ENV_PREFIX];

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `https://gateway.example.com` (or `http://` for h2c behind a TLS-terminating proxy).
    pub gateway_url: String,
    pub token: Secret,
    /// PEM of the CA that signed the gateway's certificate; system roots if absent.
    pub ca_pem: Option<Vec<u8>>,
    pub keepalive_interval: Duration,
    pub reconnect_base: Duration,
    pub reconnect_max: Duration,
    pub dial_timeout: Duration,
    /// Targets this agent may dial; `None` allows any (logged as a warning at start).
    pub allowed_targets: Option<Allowlist>,
    /// Tunnels kept open, each to a different replica when enough exist.
    pub tunnels: usize,
    /// How often each tunnel is re-opened (make before break) so tunnels spread
    /// over replicas added since; zero never.
    pub tunnel_refresh: Duration,
    /// Database logins for Postgres connections, by reference.
    pub credentials: Credentials,
    /// PEM of the CAs trusted for `verify-full` TLS to databases; system roots if absent.
    pub db_ca_pem: Option<Vec<u8>>,
    /// Cancel keys of this agent's live Postgres sessions (shared by clones).
    pub cancel_keys: CancelKeys,
}

impl AgentConfig {
    pub fn new(gateway_url: impl Into<String>, token: Secret) -> Self {
        Self {
            gateway_url: gateway_url.into(),
            token,
            ca_pem: None,
            keepalive_interval: Duration::from_secs(20),
            reconnect_base: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(15),
            dial_timeout: Duration::from_secs(5),
            allowed_targets: None,
            tunnels: 2,
            tunnel_refresh: Duration::from_secs(15 * 60),
            credentials: Credentials::default(),
            db_ca_pem: None,
            cancel_keys: CancelKeys::default(),
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let gateway_url: String = env.required(
            "POSTERN_GATEWAY_URL",
            "the gateway's public URL, e.g. https://postern.example.com",
        )?;
        if !(gateway_url.starts_with("https://") || gateway_url.starts_with("http://")) {
            return Err(ConfigError {
                var: "POSTERN_GATEWAY_URL".into(),
                message: format!("{gateway_url:?} must start with https:// or http://"),
            });
        }
        let token = env
            .secret("POSTERN_AGENT_TOKEN")
            .ok_or_else(|| ConfigError {
                var: "POSTERN_AGENT_TOKEN".into(),
                message: "is required: the token printed by `postern agent add NAME`".into(),
            })?;
        let ca_pem = env
            .optional::<PathBuf>("POSTERN_CA_CERT")?
            .map(|path| {
                std::fs::read(&path).map_err(|e| ConfigError {
                    var: "POSTERN_CA_CERT".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })
            })
            .transpose()?;
        let mut config = Self::new(gateway_url, token);
        config.ca_pem = ca_pem;
        let credentials_dir = env.optional::<PathBuf>("POSTERN_CREDENTIALS_DIR")?;
        if let Some(dir) = &credentials_dir
            && !dir.is_dir()
        {
            return Err(ConfigError {
                var: "POSTERN_CREDENTIALS_DIR".into(),
                message: format!("{} is not a directory", dir.display()),
            });
        }
        config.credentials = Credentials::from_env(env, credentials_dir);
        config.db_ca_pem = env
            .optional::<PathBuf>("POSTERN_DB_CA_CERT")?
            .map(|path| {
                std::fs::read(&path).map_err(|e| ConfigError {
                    var: "POSTERN_DB_CA_CERT".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })
            })
            .transpose()?;
        config.keepalive_interval = env.millis(
            "POSTERN_KEEPALIVE_INTERVAL_MS",
            config.keepalive_interval,
            Duration::from_millis(100),
        )?;
        config.reconnect_base = env.millis(
            "POSTERN_RECONNECT_BASE_MS",
            config.reconnect_base,
            Duration::from_millis(1),
        )?;
        config.reconnect_max = env.millis(
            "POSTERN_RECONNECT_MAX_MS",
            config.reconnect_max,
            config.reconnect_base,
        )?;
        config.dial_timeout = env.millis(
            "POSTERN_DIAL_TIMEOUT_MS",
            config.dial_timeout,
            Duration::from_millis(1),
        )?;
        config.allowed_targets = env.optional("POSTERN_ALLOWED_TARGETS")?;
        config.tunnels = env.or("POSTERN_AGENT_TUNNELS", config.tunnels)?;
        if !(1..=16).contains(&config.tunnels) {
            return Err(ConfigError {
                var: "POSTERN_AGENT_TUNNELS".into(),
                message: format!("must be between 1 and 16, not {}", config.tunnels),
            });
        }
        config.tunnel_refresh = env.millis(
            "POSTERN_AGENT_TUNNEL_REFRESH_MS",
            config.tunnel_refresh,
            Duration::ZERO,
        )?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_url_and_token_and_names_them() {
        let err = AgentConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(err.var, "POSTERN_GATEWAY_URL");
        let env = Env::from_pairs([("POSTERN_GATEWAY_URL", "https://gw:8443")]);
        assert_eq!(
            AgentConfig::from_env(&env).unwrap_err().var,
            "POSTERN_AGENT_TOKEN"
        );
        let env = Env::from_pairs([
            ("POSTERN_GATEWAY_URL", "gw:8443"),
            ("POSTERN_AGENT_TOKEN", "t"),
        ]);
        assert_eq!(
            AgentConfig::from_env(&env).unwrap_err().var,
            "POSTERN_GATEWAY_URL"
        );
    }

    #[test]
    fn reads_tuning_and_keeps_the_token_masked() {
        let env = Env::from_pairs([
            ("POSTERN_GATEWAY_URL", "https://gw:8443"),
            ("POSTERN_AGENT_TOKEN", "pst_agent_secret"),
            ("POSTERN_RECONNECT_MAX_MS", "2000"),
        ]);
        let config = AgentConfig::from_env(&env).unwrap();
        assert_eq!(config.reconnect_max, Duration::from_secs(2));
        assert!(!format!("{config:?}").contains("pst_agent_secret"));
        let env = Env::from_pairs([
            ("POSTERN_GATEWAY_URL", "https://gw:8443"),
            ("POSTERN_AGENT_TOKEN", "t"),
            ("POSTERN_CA_CERT", "/nonexistent/ca.pem"),
        ]);
        let err = AgentConfig::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let env = Env::from_pairs([
            ("POSTERN_GATEWAY_URL", "https://gw:8443"),
            ("POSTERN_AGENT_TOKEN", "t"),
            ("POSTERN_ALLOWED_TARGETS", "db:x"),
        ]);
        assert_eq!(
            AgentConfig::from_env(&env).unwrap_err().var,
            "POSTERN_ALLOWED_TARGETS"
        );
    }
}
