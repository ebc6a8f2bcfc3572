//! Gateway configuration from `POSTERN_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use postern_state::store_url::PolicyStoreUrl;
use postern_tunnel::Secret;
use postern_tunnel::env::{ConfigError, Env};

use crate::policy_cache::CacheSettings;
use crate::{GatewayOptions, Settings, new_replica_id};

mod cluster;
pub mod oidc;
mod redis_ca;
mod tls;

pub const VARS: &[&str] = &[
    "POSTERN_LISTEN_ADDR",
    "POSTERN_INTERNAL_ADDR",
    "POSTERN_TLS_CERT",
    "POSTERN_TLS_KEY",
    "POSTERN_TLS_CERT_PEM",
    "POSTERN_TLS_KEY_PEM",
    "POSTERN_TLS_DISABLED",
    "POSTERN_SQLITE_PATH",
    "POSTERN_POLICY_STORE",
    "POSTERN_REPLICA_ID",
    "POSTERN_KEEPALIVE_INTERVAL_MS",
    "POSTERN_SESSION_OPEN_TIMEOUT_MS",
    "POSTERN_DRAIN_GRACE_MS",
    "POSTERN_BOOTSTRAP_ADMIN_TOKEN",
    "POSTERN_LOG_FORMAT",
    "POSTERN_DATA_DIR",
    "POSTERN_HEARTBEAT_INTERVAL_MS",
    "POSTERN_REPLICA_TTL_MS",
    "POSTERN_AGENT_ROUTE_TTL_MS",
    "POSTERN_REDIS_URL",
    "POSTERN_REDIS_CA_CERT",
    "POSTERN_PEER_SECRET",
    "POSTERN_PEER_SECRET_ACCEPTED",
    "POSTERN_PEER_ADDR",
    "POSTERN_PEER_ADVERTISE_ADDR",
    "POSTERN_PEER_TLS_DISABLED",
    "POSTERN_PEER_CONNECTIONS",
    "POSTERN_PEER_TRANSPORT",
    "POSTERN_REVIEW_WEBHOOK_URL",
    "POSTERN_POLICY_POLL_MS",
    "POSTERN_POLICY_STALE_LIMIT_MS",
    "POSTERN_OIDC_ISSUER",
    "POSTERN_OIDC_AUDIENCE",
    "POSTERN_OIDC_CLIENT_ID",
    "POSTERN_OIDC_SCOPES",
    "POSTERN_OIDC_GROUPS_CLAIM",
    "POSTERN_OIDC_USERNAME_CLAIM",
    "POSTERN_OIDC_ALGORITHMS",
    "POSTERN_OIDC_JWKS_REFRESH_COOLDOWN",
    "POSTERN_OIDC_MFA_ACR",
    crate::ecs_stop::ENABLE_VAR,
];

#[derive(Debug)]
pub struct GatewayConfig {
    pub options: GatewayOptions,
    /// `POSTERN_POLICY_STORE`, else SQLite at `POSTERN_SQLITE_PATH`.
    pub policy_store: PolicyStoreUrl,
    /// Registered as an admin token at start if no token with its hash exists:
    /// how the first admin gets in without dev mode.
    pub bootstrap_admin_token: Option<Secret>,
    /// Shared route store; `None` runs one replica on in-memory routes.
    pub redis_url: Option<Secret>,
    /// `POSTERN_REDIS_CA_CERT`: the PEM bundle `rediss://` servers are verified
    /// against instead of the system roots (Memorystore's private CA).
    pub redis_ca: Option<redis_ca::RedisCa>,
    /// Which variable chose `options.listen_addr` (`POSTERN_LISTEN_ADDR`, `PORT`
    /// or the default), for the start-up log.
    pub listen_addr_from: &'static str,
    /// On ECS: drain as soon as ECS wants the task stopped, not at SIGTERM.
    pub ecs_stop: Option<crate::ecs_stop::TaskStopWatch>,
}

pub fn settings_from_env(env: &Env) -> Result<Settings, ConfigError> {
    let defaults = Settings::default();
    let heartbeat_interval = env.millis(
        "POSTERN_HEARTBEAT_INTERVAL_MS",
        defaults.heartbeat_interval,
        Duration::from_millis(50),
    )?;
    let replica_ttl = env.millis(
        "POSTERN_REPLICA_TTL_MS",
        defaults.replica_ttl,
        Duration::from_millis(100),
    )?;
    if replica_ttl < heartbeat_interval * 2 {
        return Err(ConfigError {
            var: "POSTERN_REPLICA_TTL_MS".into(),
            message: format!(
                "must be at least twice POSTERN_HEARTBEAT_INTERVAL_MS ({} ms), or one late heartbeat makes the replica vanish",
                heartbeat_interval.as_millis()
            ),
        });
    }
    // A Slack webhook URL is a credential: kept masked, checked here.
    let review_webhook = env.secret("POSTERN_REVIEW_WEBHOOK_URL");
    if let Some(url) = &review_webhook {
        let valid = reqwest::Url::parse(url.expose())
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !valid {
            return Err(ConfigError {
                var: "POSTERN_REVIEW_WEBHOOK_URL".into(),
                message: "must be an http:// or https:// URL".into(),
            });
        }
    }
    Ok(Settings {
        policy_cache: policy_cache_settings(env, defaults.policy_cache)?,
        review_webhook,
        keepalive_interval: env.millis(
            "POSTERN_KEEPALIVE_INTERVAL_MS",
            defaults.keepalive_interval,
            Duration::from_millis(100),
        )?,
        session_open_timeout: env.millis(
            "POSTERN_SESSION_OPEN_TIMEOUT_MS",
            defaults.session_open_timeout,
            Duration::from_millis(100),
        )?,
        drain_grace: env.millis(
            "POSTERN_DRAIN_GRACE_MS",
            defaults.drain_grace,
            Duration::ZERO,
        )?,
        heartbeat_interval,
        replica_ttl,
        agent_route_ttl: env.millis(
            "POSTERN_AGENT_ROUTE_TTL_MS",
            defaults.agent_route_ttl,
            Duration::from_millis(300),
        )?,
    })
}

/// `POSTERN_POLICY_POLL_MS` (how often the policy generation is read) and
/// `POSTERN_POLICY_STALE_LIMIT_MS` (how long cached policy serves while the
/// store does not answer).
fn policy_cache_settings(env: &Env, defaults: CacheSettings) -> Result<CacheSettings, ConfigError> {
    let poll_interval = env.millis(
        "POSTERN_POLICY_POLL_MS",
        defaults.poll_interval,
        Duration::from_millis(50),
    )?;
    if poll_interval > Duration::from_secs(60) {
        return Err(ConfigError {
            var: "POSTERN_POLICY_POLL_MS".into(),
            message:
                "must be at most 60000: replicas without Redis see policy changes only this often"
                    .into(),
        });
    }
    let stale_limit = env.millis(
        "POSTERN_POLICY_STALE_LIMIT_MS",
        defaults.stale_limit,
        Duration::ZERO,
    )?;
    // Polls may fail for a while without the cache going stale: the limit
    // must leave room for the next poll to answer.
    let settings = CacheSettings {
        poll_interval,
        // One poll may take as long as a few intervals, within reason.
        poll_timeout: (poll_interval * 4).clamp(Duration::from_millis(500), Duration::from_secs(2)),
        stale_limit,
        ..defaults
    };
    if stale_limit < settings.fresh_window() {
        return Err(ConfigError {
            var: "POSTERN_POLICY_STALE_LIMIT_MS".into(),
            message: format!(
                "must be at least {} ms (POSTERN_POLICY_POLL_MS plus the poll's timeout), or cached policy turns stale between two polls",
                settings.fresh_window().as_millis()
            ),
        });
    }
    Ok(settings)
}

impl GatewayConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let (listen_addr, listen_addr_from) = listen_addr(env)?;
        let internal_addr: SocketAddr = env.or(
            "POSTERN_INTERNAL_ADDR",
            SocketAddr::from(([0, 0, 0, 0], 9090)),
        )?;
        let tls = tls::server_tls(env)?;
        let bootstrap_admin_token = env.secret("POSTERN_BOOTSTRAP_ADMIN_TOKEN");
        if let Some(token) = &bootstrap_admin_token
            && token.expose().len() < 32
        {
            return Err(ConfigError {
                var: "POSTERN_BOOTSTRAP_ADMIN_TOKEN".into(),
                message: "must be at least 32 characters (e.g. `openssl rand -hex 32`)".into(),
            });
        }
        let redis_url = env.secret("POSTERN_REDIS_URL");
        let redis_ca = redis_ca::from_env(env, redis_url.as_ref())?;
        Ok(Self {
            options: GatewayOptions {
                listen_addr,
                internal_addr,
                tls,
                replica_id: env.or("POSTERN_REPLICA_ID", new_replica_id())?,
                settings: settings_from_env(env)?,
                peer: cluster::peer_options(env, redis_url.as_ref())?,
                oidc: oidc::from_env(env)?,
            },
            policy_store: policy_store(env)?,
            bootstrap_admin_token,
            redis_url,
            redis_ca,
            listen_addr_from,
            ecs_stop: crate::ecs_stop::TaskStopWatch::from_env(env)?,
        })
    }
}

/// `POSTERN_LISTEN_ADDR`, else `0.0.0.0:$PORT` where the platform sets `PORT`
/// (Cloud Run), else 0.0.0.0:8443; with the variable that chose it.
fn listen_addr(env: &Env) -> Result<(SocketAddr, &'static str), ConfigError> {
    if let Some(addr) = env.optional("POSTERN_LISTEN_ADDR")? {
        return Ok((addr, "POSTERN_LISTEN_ADDR"));
    }
    let Some(port) = env.raw("PORT") else {
        return Ok((SocketAddr::from(([0, 0, 0, 0], 8443)), "default"));
    };
    match port.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok((SocketAddr::from(([0, 0, 0, 0], port)), "PORT")),
        _ => Err(ConfigError {
            var: "PORT".into(),
            message: format!(
                "invalid value {port:?}: expected a port number from 1 to 65535 (or set POSTERN_LISTEN_ADDR)"
            ),
        }),
    }
}

/// `POSTERN_POLICY_STORE` (sqlite:PATH, postgres://…, dynamodb://…), or the
/// embedded SQLite at `POSTERN_SQLITE_PATH`; setting both is ambiguous.
fn policy_store(env: &Env) -> Result<PolicyStoreUrl, ConfigError> {
    let sqlite_path: Option<PathBuf> = env.optional("POSTERN_SQLITE_PATH")?;
    let Some(url) = env.secret("POSTERN_POLICY_STORE") else {
        return Ok(PolicyStoreUrl::Sqlite(
            sqlite_path.unwrap_or_else(|| PathBuf::from("postern-data/postern.db")),
        ));
    };
    let invalid = |message: String| ConfigError {
        var: "POSTERN_POLICY_STORE".into(),
        message,
    };
    if sqlite_path.is_some() {
        return Err(invalid(
            "and POSTERN_SQLITE_PATH are both set: use POSTERN_POLICY_STORE=sqlite:PATH alone"
                .into(),
        ));
    }
    // A DynamoDB URL without a region takes AWS_REGION from the same snapshot.
    PolicyStoreUrl::parse_with_env(url.expose(), &|name| env.raw(name).map(str::to_owned))
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_required_unless_explicitly_disabled() {
        let err = GatewayConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(err.var, "POSTERN_TLS_CERT");
        assert!(err.message.contains("POSTERN_TLS_DISABLED"));
        let config =
            GatewayConfig::from_env(&Env::from_pairs([("POSTERN_TLS_DISABLED", "true")])).unwrap();
        assert!(config.options.tls.is_none());
        let env = Env::from_pairs([("POSTERN_TLS_CERT", "/nonexistent/cert.pem")]);
        assert_eq!(
            GatewayConfig::from_env(&env).unwrap_err().var,
            "POSTERN_TLS_KEY"
        );
        let env = Env::from_pairs([
            ("POSTERN_TLS_CERT", "/nonexistent/cert.pem"),
            ("POSTERN_TLS_KEY", "/k"),
        ]);
        let err = GatewayConfig::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn cloud_run_port_is_the_fallback_for_the_listen_address() {
        // (variables, Ok((address, chosen by)) or Err(variable named))
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Result<(&'a str, &'a str), &'a str>,
        );
        let cases: [Case; 7] = [
            (&[], Ok(("0.0.0.0:8443", "default"))),
            (&[("PORT", "8080")], Ok(("0.0.0.0:8080", "PORT"))),
            (&[("PORT", " 9000 ")], Ok(("0.0.0.0:9000", "PORT"))),
            (
                &[("PORT", "8080"), ("POSTERN_LISTEN_ADDR", "127.0.0.1:7000")],
                Ok(("127.0.0.1:7000", "POSTERN_LISTEN_ADDR")),
            ),
            (&[("PORT", "http")], Err("PORT")),
            (&[("PORT", "0")], Err("PORT")),
            (&[("PORT", "70000")], Err("PORT")),
        ];
        for (pairs, expected) in cases {
            let mut env = Env::from_pairs([("POSTERN_TLS_DISABLED", "true")]);
            for (name, value) in pairs {
                env.set(name, *value);
            }
            match (GatewayConfig::from_env(&env), expected) {
                (Ok(config), Ok((addr, from))) => {
                    assert_eq!(config.options.listen_addr.to_string(), addr, "{pairs:?}");
                    assert_eq!(config.listen_addr_from, from, "{pairs:?}");
                }
                (Err(err), Err(var)) => {
                    assert_eq!(err.var, var, "{pairs:?}: {err}");
                    assert!(err.message.contains("1 to 65535"), "{err}");
                }
                (got, expected) => panic!("{pairs:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("POSTERN_LISTEN_ADDR", "localhost"),
            ("POSTERN_INTERNAL_ADDR", "1.2.3.4"),
            ("POSTERN_KEEPALIVE_INTERVAL_MS", "fast"),
            ("POSTERN_SESSION_OPEN_TIMEOUT_MS", "5"),
            ("POSTERN_TLS_DISABLED", "maybe"),
            ("POSTERN_BOOTSTRAP_ADMIN_TOKEN", "short"),
            ("POSTERN_POLICY_POLL_MS", "10"),
            ("POSTERN_POLICY_POLL_MS", "600000"),
            ("POSTERN_POLICY_STALE_LIMIT_MS", "100"),
        ] {
            let env = Env::from_pairs([("POSTERN_TLS_DISABLED", "true"), (var, value)]);
            let err = GatewayConfig::from_env(&env).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn the_policy_store_is_chosen_by_url() {
        let config = |pairs: &[(&str, &str)]| {
            let mut env = Env::from_pairs([("POSTERN_TLS_DISABLED", "true")]);
            for (name, value) in pairs {
                env.set(name, *value);
            }
            GatewayConfig::from_env(&env)
        };
        let sqlite = |path: &str| PolicyStoreUrl::Sqlite(PathBuf::from(path));
        assert_eq!(
            format!("{:?}", config(&[]).unwrap().policy_store),
            format!("{:?}", sqlite("postern-data/postern.db"))
        );
        for pairs in [
            &[("POSTERN_SQLITE_PATH", "/data/p.db")][..],
            &[("POSTERN_POLICY_STORE", "sqlite:/data/p.db")][..],
        ] {
            let store = config(pairs).unwrap().policy_store;
            assert_eq!(format!("{store:?}"), format!("{:?}", sqlite("/data/p.db")));
        }
        let pg = config(&[(
            "POSTERN_POLICY_STORE",
            "postgres://gw:hunter2@db:5432/postern",
        )])
        .unwrap();
        assert!(matches!(pg.policy_store, PolicyStoreUrl::Postgres(_)));
        assert!(!format!("{pg:?}").contains("hunter2"), "{pg:?}");
        let dynamo = config(&[(
            "POSTERN_POLICY_STORE",
            "dynamodb://postern?region=eu-west-1",
        )])
        .unwrap();
        assert!(
            matches!(dynamo.policy_store, PolicyStoreUrl::DynamoDb(c) if c.region == "eu-west-1")
        );
        let ecs = config(&[
            ("POSTERN_POLICY_STORE", "dynamodb://postern"),
            ("AWS_REGION", "eu-north-1"),
        ])
        .unwrap();
        assert!(
            matches!(ecs.policy_store, PolicyStoreUrl::DynamoDb(c) if c.region == "eu-north-1")
        );

        for (pairs, why) in [
            (
                &[("POSTERN_POLICY_STORE", "redis://x")][..],
                "expected sqlite:PATH",
            ),
            (
                &[("POSTERN_POLICY_STORE", "dynamodb://postern")][..],
                "region is required",
            ),
            (
                &[("POSTERN_POLICY_STORE", "postgres://gw:hunter2@db:x/p")][..],
                "postgres://",
            ),
            (
                &[
                    ("POSTERN_POLICY_STORE", "sqlite:/a.db"),
                    ("POSTERN_SQLITE_PATH", "/b.db"),
                ][..],
                "both set",
            ),
        ] {
            let err = config(pairs).unwrap_err();
            assert_eq!(err.var, "POSTERN_POLICY_STORE", "{err}");
            assert!(err.message.contains(why), "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn policy_cache_settings_come_from_the_environment() {
        let env = Env::from_pairs([("POSTERN_TLS_DISABLED", "true")]);
        let defaults = GatewayConfig::from_env(&env)
            .unwrap()
            .options
            .settings
            .policy_cache;
        assert_eq!(defaults, CacheSettings::default());
        let env = Env::from_pairs([
            ("POSTERN_TLS_DISABLED", "true"),
            ("POSTERN_POLICY_POLL_MS", "100"),
            ("POSTERN_POLICY_STALE_LIMIT_MS", "2000"),
        ]);
        let cache = GatewayConfig::from_env(&env)
            .unwrap()
            .options
            .settings
            .policy_cache;
        assert_eq!(cache.poll_interval, Duration::from_millis(100));
        assert_eq!(cache.poll_timeout, Duration::from_millis(500));
        assert_eq!(cache.stale_limit, Duration::from_secs(2));
    }

    #[test]
    fn the_bootstrap_token_is_never_printed() {
        let token = "pst_user_0123456789abcdef0123456789abcdef";
        let env = Env::from_pairs([
            ("POSTERN_TLS_DISABLED", "1"),
            ("POSTERN_BOOTSTRAP_ADMIN_TOKEN", token),
        ]);
        let config = GatewayConfig::from_env(&env).unwrap();
        assert!(!format!("{config:?}").contains(token));
    }
}
