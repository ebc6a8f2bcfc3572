//! Where the Redis route store connects, parsed from one URL (forms in the
//! [module documentation](super)).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo, TlsCertificates};

const DEFAULT_PORT: u16 = 6379;

/// What is wrong with a Redis URL. Messages name the offending part but never
/// repeat the whole URL, which may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error(
        "the Redis URL has no scheme: expected redis://, rediss://, redis+cluster:// or rediss+cluster://"
    )]
    MissingScheme,
    #[error(
        "unsupported Redis URL scheme {scheme:?}: expected redis://, rediss://, redis+cluster:// or rediss+cluster://"
    )]
    UnsupportedScheme { scheme: String },
    #[error("the Redis URL names no host")]
    NoHost,
    #[error("empty node in the Redis Cluster node list (a stray comma?)")]
    EmptyNode,
    #[error("invalid Redis node address {node:?}: {source}")]
    InvalidNode {
        node: String,
        source: url::ParseError,
    },
    #[error("the Redis database must be a number, as in redis://host:6379/2, not {path:?}")]
    InvalidDatabase { path: String },
    #[error("Redis Cluster serves only database 0: remove /{database} from the URL")]
    DatabaseInCluster { database: i64 },
    #[error(
        "a redis:// URL names one server but this one names {count}; for a cluster use redis+cluster://host1:port1,host2:port2"
    )]
    SeveralNodesWithoutCluster { count: usize },
    #[error("a Redis URL here takes no {part} (query strings and fragments are not supported)")]
    UnsupportedPart { part: &'static str },
    #[error(
        "a CA certificate for Redis applies only to TLS: use a rediss:// or rediss+cluster:// URL"
    )]
    CaWithoutTls,
    #[error("the Redis client rejects the CA certificates: {source}")]
    RootCa { source: redis::RedisError },
    #[error("the Redis client rejects node {node:?}: {source}")]
    Rejected {
        node: String,
        source: redis::RedisError,
    },
}

/// Connection settings for [`RedisRouteStore`](super::RedisRouteStore): the
/// nodes from the URL plus timeouts, which have short defaults so that an
/// outage surfaces as [`StoreError::Unavailable`](crate::StoreError) quickly.
#[derive(Clone)]
pub struct RedisConfig {
    /// One node, or the cluster's seed nodes.
    pub(super) nodes: Vec<ConnectionInfo>,
    pub(super) cluster: bool,
    /// PEM CA bundle the servers are verified against instead of the system
    /// roots (also given to the cluster client for the nodes it discovers).
    pub(super) root_ca: Option<Vec<u8>>,
    /// Bound on one connection attempt to one node.
    pub connect_timeout: Duration,
    /// Bound on one reply from one node.
    pub response_timeout: Duration,
    /// Bound on a whole store call, reconnection and cluster retries included:
    /// past it the call fails with `Unavailable` instead of waiting for Redis.
    pub operation_timeout: Duration,
    /// How often an idle inbox checks that its connection is still alive, so a
    /// silently dead connection ends the inbox instead of leaving it mute.
    pub inbox_keepalive: Duration,
}

impl RedisConfig {
    /// Parses one of the URL forms in the [module documentation](super).
    pub fn from_url(url: &str) -> Result<Self, RedisUrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(RedisUrlError::MissingScheme)?;
        let (tls, cluster) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+cluster" => (false, true),
            "rediss+cluster" => (true, true),
            _ => {
                return Err(RedisUrlError::UnsupportedScheme {
                    scheme: scheme.to_owned(),
                });
            }
        };
        if rest.contains('?') {
            return Err(RedisUrlError::UnsupportedPart {
                part: "query string",
            });
        }
        if rest.contains('#') {
            return Err(RedisUrlError::UnsupportedPart { part: "fragment" });
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let database = parse_database(path)?;
        if hosts.is_empty() {
            return Err(RedisUrlError::NoHost);
        }
        let hosts: Vec<&str> = hosts.split(',').collect();
        if cluster && database != 0 {
            return Err(RedisUrlError::DatabaseInCluster { database });
        }
        if !cluster && hosts.len() > 1 {
            return Err(RedisUrlError::SeveralNodesWithoutCluster { count: hosts.len() });
        }
        let node_scheme = if tls { "rediss" } else { "redis" };
        let nodes = hosts
            .into_iter()
            .map(|node| node_info(node_scheme, userinfo, node, database))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            nodes,
            cluster,
            root_ca: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(2),
            inbox_keepalive: Duration::from_secs(5),
        })
    }

    /// Verifies the servers against the CA certificates in `pem` (a PEM
    /// bundle) instead of the system's trust store: for a provider whose server
    /// certificates come from a private CA (Memorystore). TLS URLs only.
    pub fn with_root_ca(mut self, pem: Vec<u8>) -> Result<Self, RedisUrlError> {
        if !self.uses_tls() {
            return Err(RedisUrlError::CaWithoutTls);
        }
        let certificates = certificates(&pem);
        // The certificates travel inside each node's address, so the inbox
        // connections (opened from these addresses) verify against them too.
        self.nodes = self
            .nodes
            .into_iter()
            .map(|node| {
                redis::Client::build_with_tls(node, certificates.clone())
                    .map(|client| client.get_connection_info().clone())
            })
            .collect::<Result<_, _>>()
            .map_err(|source| RedisUrlError::RootCa { source })?;
        self.root_ca = Some(pem);
        Ok(self)
    }

    pub(super) fn tls_certificates(&self) -> Option<TlsCertificates> {
        self.root_ca.as_deref().map(certificates)
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    pub fn uses_tls(&self) -> bool {
        matches!(
            self.nodes.first().map(ConnectionInfo::addr),
            Some(redis::ConnectionAddr::TcpTls { .. })
        )
    }
}

impl FromStr for RedisConfig {
    type Err = RedisUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::from_url(url)
    }
}

/// Names the nodes and timeouts but no credentials.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(node_address).collect();
        f.debug_struct("RedisConfig")
            .field("nodes", &nodes)
            .field("cluster", &self.cluster)
            .field("tls", &self.uses_tls())
            .field("private_ca", &self.root_ca.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("inbox_keepalive", &self.inbox_keepalive)
            .finish()
    }
}

fn certificates(pem: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }
}

/// `host:port`, with IPv6 hosts in brackets.
pub(super) fn node_address(node: &ConnectionInfo) -> String {
    match node.addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. }
            if host.contains(':') =>
        {
            format!("[{host}]:{port}")
        }
        other => other.to_string(),
    }
}

fn parse_database(path: &str) -> Result<i64, RedisUrlError> {
    let digits = path.strip_prefix('/').unwrap_or(path);
    if digits.is_empty() {
        return Ok(0);
    }
    digits
        .parse::<u16>()
        .map(i64::from)
        .map_err(|_| RedisUrlError::InvalidDatabase {
            path: path.to_owned(),
        })
}

fn node_info(
    scheme: &str,
    userinfo: Option<&str>,
    node: &str,
    database: i64,
) -> Result<ConnectionInfo, RedisUrlError> {
    if node.is_empty() {
        return Err(RedisUrlError::EmptyNode);
    }
    // The url crate checks the host and port; credentials are added afterwards
    // so that no error can carry them.
    let parsed = url::Url::parse(&format!("{scheme}://{node}")).map_err(|source| {
        RedisUrlError::InvalidNode {
            node: node.to_owned(),
            source,
        }
    })?;
    let host = match parsed.host_str() {
        Some(host) if !host.is_empty() => host,
        _ => return Err(RedisUrlError::NoHost),
    };
    let port = parsed.port().unwrap_or(DEFAULT_PORT);
    let credentials = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{credentials}{host}:{port}/{database}")
        .as_str()
        .into_connection_info()
        .map_err(|source| RedisUrlError::Rejected {
            node: format!("{host}:{port}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ConnectionAddr;

    fn addrs(config: &RedisConfig) -> Vec<String> {
        config.nodes.iter().map(node_address).collect()
    }

    #[test]
    fn single_node_forms() {
        let config = RedisConfig::from_url("redis://10.0.0.5:6380/3").unwrap();
        assert!(!config.is_cluster() && !config.uses_tls());
        assert_eq!(addrs(&config), ["10.0.0.5:6380"]);
        assert_eq!(config.nodes[0].redis_settings().db(), 3);

        let config = RedisConfig::from_url("redis://cache").unwrap();
        assert_eq!(addrs(&config), ["cache:6379"]);
        assert_eq!(config.nodes[0].redis_settings().db(), 0);

        let config = RedisConfig::from_url("rediss://user:p%40ss@cache:6390/").unwrap();
        assert!(config.uses_tls());
        assert!(matches!(
            config.nodes[0].addr(),
            ConnectionAddr::TcpTls { host, port: 6390, insecure: false, .. } if host == "cache"
        ));
        let settings = config.nodes[0].redis_settings();
        assert_eq!(settings.username(), Some("user"));
        assert_eq!(settings.password(), Some("p@ss"));
    }

    #[test]
    fn cluster_forms() {
        let config =
            RedisConfig::from_url("redis+cluster://:secret@h1:7000,h2:7001,[::1]:7002").unwrap();
        assert!(config.is_cluster() && !config.uses_tls());
        assert_eq!(addrs(&config), ["h1:7000", "h2:7001", "[::1]:7002"]);
        assert!(
            config
                .nodes
                .iter()
                .all(|n| n.redis_settings().password() == Some("secret"))
        );
        let config = RedisConfig::from_url("rediss+cluster://h1,h2/").unwrap();
        assert!(config.is_cluster() && config.uses_tls());
        assert_eq!(addrs(&config), ["h1:6379", "h2:6379"]);
    }

    /// A self-signed CA certificate (its key was thrown away): parses, trusts nothing real.
    const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBijCCATGgAwIBAgIUUsjkLr3HWnCXqzLM6g+TnyY/pcowCgYIKoZIzj0EAwIw\n\
GjEYMBYGA1UEAwwPUG9zdGVybiB0ZXN0IENBMCAXDTI2MTIwNzAwNTM0OVoYDzIx\n\
MjYxMTEzMDA1MzQ5WjAaMRgwFgYDVQQDDA9Qb3N0ZXJuIHRlc3QgQ0EwWTATBgcq\n\
hkjOPQIBBggqhkjOPQMBBwNCAAQBPeA99UZK6N2HXnz/lwBwzgMNSYc40rpFzJDn\n\
l44JjSmFjTslCSh5L2qwfkh3wHkxhmqdeRSn/RZC+UiL8Hh/o1MwUTAdBgNVHQ4E\n\
FgQU1K8ALSuFViU23+1BTTJiqS1q3OowHwYDVR0jBBgwFoAU1K8ALSuFViU23+1B\n\
TTJiqS1q3OowDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiANy1qh\n\
Kv67bk/lpJhRaGPrIMYpmKVVHHQ5PjZ8PwqPhQIgSvzzkffySFEYP4mIYHs0eLOW\n\
W/LSRvbCyq8uxeHdIYU=\n\
-----END CERTIFICATE-----\n\
";

    #[test]
    fn a_private_ca_applies_to_tls_urls_only() {
        let pem = TEST_CA.as_bytes().to_vec();
        let plain = RedisConfig::from_url("redis://cache:6379").unwrap();
        assert!(matches!(
            plain.with_root_ca(pem.clone()),
            Err(RedisUrlError::CaWithoutTls)
        ));
        for url in ["rediss://cache:6378", "rediss+cluster://a:1,b:2"] {
            let config = RedisConfig::from_url(url)
                .unwrap()
                .with_root_ca(pem.clone());
            let config = config.unwrap();
            assert!(config.tls_certificates().is_some());
            assert!(format!("{config:?}").contains("private_ca: true"));
            // Every node carries the CA, so inbox connections verify with it too.
            for node in &config.nodes {
                assert!(matches!(
                    node.addr(),
                    ConnectionAddr::TcpTls {
                        tls_params: Some(_),
                        ..
                    }
                ));
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong_without_the_password() {
        let err = |url: &str| RedisConfig::from_url(url).unwrap_err();
        assert!(matches!(
            err("127.0.0.1:6379"),
            RedisUrlError::MissingScheme
        ));
        assert!(
            matches!(err("http://h:1"), RedisUrlError::UnsupportedScheme { scheme } if scheme == "http")
        );
        assert!(matches!(err("redis://"), RedisUrlError::NoHost));
        assert!(matches!(err("redis://:pw@/0"), RedisUrlError::NoHost));
        assert!(matches!(
            err("redis+cluster://h1:1,,h2:2"),
            RedisUrlError::EmptyNode
        ));
        assert!(matches!(
            err("redis://h:99999"),
            RedisUrlError::InvalidNode { .. }
        ));
        assert!(matches!(
            err("redis://h:1/zero"),
            RedisUrlError::InvalidDatabase { .. }
        ));
        assert!(matches!(
            err("redis+cluster://h:1/2"),
            RedisUrlError::DatabaseInCluster { database: 2 }
        ));
        assert!(matches!(
            err("redis://h1:1,h2:2"),
            RedisUrlError::SeveralNodesWithoutCluster { count: 2 }
        ));
        assert!(matches!(
            err("redis://h:1/?protocol=resp3"),
            RedisUrlError::UnsupportedPart { .. }
        ));
        assert!(matches!(
            err("rediss://h:1/#insecure"),
            RedisUrlError::UnsupportedPart { .. }
        ));

        let message = err("redis://user:hunter2@h:99999").to_string();
        assert!(message.contains("h:99999"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let debug = format!(
            "{:?}",
            RedisConfig::from_url("redis://user:hunter2@h:1").unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
