//! Several real gateway replicas in this process, on ephemeral loopback ports,
//! sharing a policy store (SQLite) and a route store (memory or Redis), with
//! TLS on the public and peer ports and a round-robin TCP balancer in front.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use postern_agent::{AgentConfig, AgentHandle};
use postern_gateway::{
    DirectPeering, GatewayOptions, PeerOptions, PeerTransport, RunningGateway, Settings, Stores,
};
use postern_state::sqlite::SqliteStore;
use postern_state::{Agent, Connection, PolicyStore, Role, RouteStore, UserToken, now_ms};
use postern_testkit::balancer::Balancer;
use postern_tunnel::auth::{TokenKind, generate_token, hash_token};
use postern_tunnel::open::{ChannelFactory, open_session};
use postern_tunnel::peer::PeerKey;
use postern_tunnel::tls::{DevCertificates, Identity, server_config};
use postern_tunnel::{FrameStream, Secret};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod processes;

pub const PEER_SECRET: &str = "test-peer-secret-0123456789abcdef0123";

pub fn cluster_settings() -> Settings {
    Settings {
        keepalive_interval: Duration::from_secs(2),
        session_open_timeout: Duration::from_secs(5),
        drain_grace: Duration::from_secs(5),
        heartbeat_interval: Duration::from_millis(200),
        replica_ttl: Duration::from_millis(1000),
        agent_route_ttl: Duration::from_secs(6),
        ..Settings::default()
    }
}

pub struct Replicas {
    pub gateways: Vec<Option<RunningGateway>>,
    pub store: Arc<SqliteStore>,
    pub routes: Arc<dyn RouteStore>,
    pub balancer: Balancer,
    pub user_token: Secret,
    pub ca_pem: Vec<u8>,
    pub dir: tempfile::TempDir,
    identity: (std::path::PathBuf, std::path::PathBuf),
    /// Replicas relay through the route store instead of dialing each other.
    relay: bool,
}

impl Replicas {
    pub async fn start(count: usize, routes: Arc<dyn RouteStore>) -> Self {
        Self::start_with(count, routes, false).await
    }

    /// Replicas in relay mode (`POSTERN_PEER_TRANSPORT=relay`).
    pub async fn start_relay(count: usize, routes: Arc<dyn RouteStore>) -> Self {
        Self::start_with(count, routes, true).await
    }

    async fn start_with(count: usize, routes: Arc<dyn RouteStore>, relay: bool) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("POSTERN_TEST_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let (certs, _) = DevCertificates::load_or_create(&dir.path().join("tls")).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("postern.db"))
                .await
                .unwrap(),
        );
        let user_token = generate_token(TokenKind::User);
        store
            .create_user_token(&UserToken {
                user: "alice".into(),
                token_hash: hash_token(user_token.expose()),
                role: Role::User,
                created_at_ms: now_ms(),
                groups: vec!["testers".into()],
            })
            .await
            .unwrap();
        postern_gateway::access::documents::replace_rule(&*store, &testers_rule())
            .await
            .unwrap();
        let mut replicas = Self {
            gateways: Vec::new(),
            store,
            routes,
            balancer: Balancer::start(Vec::new()).await,
            user_token,
            ca_pem: std::fs::read(certs.ca_path()).unwrap(),
            identity: (certs.cert_path(), certs.key_path()),
            dir,
            relay,
        };
        for _ in 0..count {
            replicas.add_replica().await;
        }
        replicas
    }

    /// Starts one more replica and puts it behind the balancer; returns its index.
    pub async fn add_replica(&mut self) -> usize {
        self.add_replica_with_key(PeerKey::new(&Secret::new(PEER_SECRET.to_owned())))
            .await
    }

    /// As [`add_replica`](Self::add_replica), signing and checking peer
    /// traffic with `key`.
    pub async fn add_replica_with_key(&mut self, key: PeerKey) -> usize {
        let identity = Identity::from_pem_files(&self.identity.0, &self.identity.1).unwrap();
        let stores = Stores {
            policy: self.store.clone(),
            audit: self.store.clone(),
            routes: self.routes.clone(),
        };
        let gateway = postern_gateway::start(
            GatewayOptions {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                internal_addr: "127.0.0.1:0".parse().unwrap(),
                tls: Some(server_config(identity).unwrap()),
                replica_id: postern_gateway::new_replica_id(),
                settings: cluster_settings(),
                peer: Some(PeerOptions {
                    key,
                    transport: if self.relay {
                        PeerTransport::Relay
                    } else {
                        PeerTransport::Direct(DirectPeering {
                            listen_addr: "127.0.0.1:0".parse().unwrap(),
                            advertise_addr: None,
                            tls: true,
                            connections_per_peer: 2,
                        })
                    },
                }),
                oidc: None,
            },
            stores,
        )
        .await
        .expect("replica starts");
        self.balancer.add_backend(gateway.public_addr);
        self.gateways.push(Some(gateway));
        self.gateways.len() - 1
    }

    pub fn gateway(&self, index: usize) -> &RunningGateway {
        self.gateways[index].as_ref().expect("replica running")
    }

    pub fn replica_id(&self, index: usize) -> String {
        self.gateway(index).shared.replica_id.clone()
    }

    /// The URL of one replica, bypassing the balancer.
    pub fn url(&self, index: usize) -> String {
        format!(
            "https://localhost:{}",
            self.gateway(index).public_addr.port()
        )
    }

    pub fn balancer_url(&self) -> String {
        format!("https://localhost:{}", self.balancer.addr.port())
    }

    pub async fn add_agent(&self, name: &str) -> Secret {
        register_agent(&self.store, name).await
    }

    pub async fn add_connection(&self, name: &str, target: &str, agent: &str) {
        register_connection(&self.store, name, target, agent).await
    }

    /// One agent `agent-i` per replica, each with a single tunnel straight to
    /// replica i and an echo connection `echo-i` to `target`.
    pub async fn agent_per_replica(&self, target: &str) -> Vec<AgentHandle> {
        let mut agents = Vec::new();
        for i in 0..self.gateways.len() {
            let name = format!("agent-{i}");
            let token = self.add_agent(&name).await;
            self.add_connection(&format!("echo-{i}"), target, &name)
                .await;
            let agent = self.spawn_agent(self.url(i), token, 1);
            let held = agent.wait_connected(Duration::from_secs(10)).await;
            assert_eq!(held, Some(self.replica_id(i)));
            agents.push(agent);
        }
        agents
    }

    pub fn spawn_agent(&self, url: String, token: Secret, tunnels: usize) -> AgentHandle {
        spawn_agent(url, token, tunnels, &self.ca_pem)
    }

    pub fn channel(&self, url: &str) -> tonic::transport::Channel {
        postern_tunnel::http2::lazy_channel(url, Some(&self.ca_pem)).unwrap()
    }

    /// GET on one replica's HTTP API as the test user, over its TLS port.
    pub async fn api_get(&self, index: usize, path: &str) -> serde_json::Value {
        // reqwest is built without a default TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let response = client
            .get(format!("{}{path}", self.url(index)))
            .bearer_auth(self.user_token.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path} on replica {index}");
        response.json().await.unwrap()
    }

    pub async fn metrics(&self, index: usize) -> String {
        postern_testkit::http_get(self.gateway(index).internal_addr, "/metrics").await
    }
}

/// An agent tuned for tests: quick keepalives and reconnects.
pub fn spawn_agent(url: String, token: Secret, tunnels: usize, ca_pem: &[u8]) -> AgentHandle {
    let mut config = AgentConfig::new(url, token);
    config.ca_pem = Some(ca_pem.to_vec());
    config.keepalive_interval = Duration::from_secs(2);
    config.reconnect_base = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(300);
    config.tunnels = tunnels;
    postern_agent::spawn(config).expect("agent config")
}

/// What a session through the gateway reported about its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPath {
    pub ingress: String,
    pub via: String,
}

impl SessionPath {
    /// Read from an Open response's metadata.
    pub fn of(metadata: &tonic::metadata::MetadataMap) -> Self {
        let header = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            ingress: header("x-postern-ingress"),
            via: header("x-postern-via"),
        }
    }
}

/// Registers an agent in the shared policy store; returns its token.
pub async fn register_agent(store: &SqliteStore, name: &str) -> Secret {
    let token = generate_token(TokenKind::Agent);
    store
        .create_agent(&Agent {
            name: name.into(),
            token_hash: hash_token(token.expose()),
            created_at_ms: now_ms(),
        })
        .await
        .unwrap();
    token
}

/// Registers a TCP connection in the shared policy store.
pub async fn register_connection(store: &SqliteStore, name: &str, target: &str, agent: &str) {
    store
        .create_connection(&Connection::tcp(name, target, agent, now_ms()))
        .await
        .unwrap();
}

/// Opens a session to `connection` at `url` (retrying as the CLI does), sends `size` pseudo-random
/// bytes to an echo target while reading the echo, and checks the SHA-256 of
/// what came back. Returns the path the gateway reported.
pub async fn echo_session(
    url: &str,
    ca_pem: &[u8],
    token: &Secret,
    connection: &str,
    size: usize,
    seed: u64,
) -> Result<SessionPath, String> {
    let url = url.to_owned();
    let ca = ca_pem.to_vec();
    let fresh: ChannelFactory =
        Arc::new(move || postern_tunnel::http2::lazy_channel(&url, Some(&ca)).ok());
    let opened = open_session(
        fresh().expect("channel"),
        Some(&fresh),
        token,
        &connection.parse().unwrap(),
    )
    .await
    .map_err(|s| format!("open refused: {:?}: {}", s.code(), s.message()))?;
    let path = SessionPath::of(&opened.metadata);
    let stream = FrameStream::new(opened.inbound, opened.outgoing, None);
    let (mut read, mut write) = tokio::io::split(stream);
    let writer = async move {
        let mut prng = postern_testkit::Prng::new(seed);
        let mut sent = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len());
            prng.fill(&mut buf[..n]);
            sent.update(&buf[..n]);
            write
                .write_all(&buf[..n])
                .await
                .map_err(|e| format!("write: {e}"))?;
            left -= n;
        }
        write
            .shutdown()
            .await
            .map_err(|e| format!("shutdown: {e}"))?;
        Ok::<_, String>(sent.finalize())
    };
    let reader = async move {
        let mut received = Sha256::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = read
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            received.update(&buf[..n]);
            total += n;
        }
        Ok::<_, String>((received.finalize(), total))
    };
    // Errors name the session's path, so a test can tell which replica it crossed.
    let (sent, (received, total)) =
        tokio::try_join!(writer, reader).map_err(|e| format!("{path:?}: {e}"))?;
    if total != size || sent != received {
        return Err(format!(
            "{path:?}: echo mismatch: sent {size} bytes, got {total} back, checksums differ: {}",
            sent != received
        ));
    }
    Ok(path)
}

/// Opens a session and returns it as a byte stream, for tests that keep it open.
pub async fn open_stream(
    url: &str,
    ca_pem: &[u8],
    token: &Secret,
    connection: &str,
) -> Result<(FrameStream<postern_tunnel::wire::WireFrames>, SessionPath), String> {
    let channel = postern_tunnel::http2::lazy_channel(url, Some(ca_pem)).unwrap();
    let opened = open_session(channel, None, token, &connection.parse().unwrap())
        .await
        .map_err(|s| format!("open refused: {:?}: {}", s.code(), s.message()))?;
    let path = SessionPath::of(&opened.metadata);
    Ok((
        FrameStream::new(opened.inbound, opened.outgoing, None),
        path,
    ))
}

/// Test users are in group `testers`, which may connect, exec and read the
/// audit on every connection.
pub fn testers_rule() -> postern_gateway::access::AccessRule {
    use postern_gateway::access::{AccessRule, Action};
    AccessRule::new(
        "testers",
        &["testers"],
        &["*"],
        &[Action::Connect, Action::Exec, Action::AuditRead],
    )
}
