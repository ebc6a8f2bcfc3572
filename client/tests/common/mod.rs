//! In-process test harness: a real gateway and a real agent on ephemeral
//! loopback ports, TLS on, SQLite in a temporary directory.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern::connect::Connector;
use postern_agent::{AgentConfig, AgentHandle};
use postern_gateway::{GatewayOptions, RunningGateway, Settings, Stores};
use postern_state::memory::MemoryRouteStore;
use postern_state::sqlite::SqliteStore;
use postern_state::{Agent, Connection, ConnectionKind, PolicyStore, Role, UserToken, now_ms};
use postern_tunnel::Secret;
use postern_tunnel::auth::{TokenKind, generate_token, hash_token};
use postern_tunnel::tls::{DevCertificates, Identity, server_config};
use tokio::net::TcpListener;

#[allow(unused_imports)]
pub use postern_testkit::{Prng, echo_once, echo_server, http_get, wait_for};

pub const AGENT: &str = "agent-1";

pub struct Cluster {
    pub gateway: Option<RunningGateway>,
    pub store: Arc<SqliteStore>,
    pub dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub ca_pem: Vec<u8>,
    pub url: String,
    pub admin_token: Secret,
    pub user_token: Secret,
    pub agent_token: Secret,
    pub agent: Option<AgentHandle>,
    pub settings: Settings,
    pub oidc: Option<postern_gateway::identity::oidc::OidcConfig>,
    /// false: plaintext HTTP/2 (h2c), as behind a platform that terminates TLS.
    pub tls: bool,
    identity_paths: (PathBuf, PathBuf),
}

pub fn test_settings() -> Settings {
    Settings {
        keepalive_interval: Duration::from_secs(2),
        session_open_timeout: Duration::from_secs(5),
        drain_grace: Duration::from_secs(5),
        ..Settings::default()
    }
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with_tls(true).await
    }

    pub async fn start_with_tls(tls: bool) -> Self {
        Self::start_with(tls, test_settings()).await
    }

    pub async fn start_with(tls: bool, settings: Settings) -> Self {
        Self::start_full(tls, settings, None).await
    }

    /// A gateway that also accepts tokens from an OIDC issuer.
    pub async fn start_with_oidc(oidc: postern_gateway::identity::oidc::OidcConfig) -> Self {
        Self::start_full(true, test_settings(), Some(oidc)).await
    }

    async fn start_full(
        tls: bool,
        settings: Settings,
        oidc: Option<postern_gateway::identity::oidc::OidcConfig>,
    ) -> Self {
        // POSTERN_TEST_LOG=info (or debug) shows the gateway's and agent's logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("POSTERN_TEST_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let (certs, _) =
            DevCertificates::load_or_create(&dir.path().join("tls")).expect("dev certificates");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("postern.db"))
                .await
                .expect("sqlite store"),
        );
        let admin_token = generate_token(TokenKind::User);
        let user_token = generate_token(TokenKind::User);
        for (user, token, role) in [
            ("root", &admin_token, Role::Admin),
            ("alice", &user_token, Role::User),
        ] {
            store
                .create_user_token(&UserToken {
                    user: user.into(),
                    token_hash: hash_token(token.expose()),
                    role,
                    created_at_ms: now_ms(),
                    groups: vec!["testers".into()],
                })
                .await
                .unwrap();
        }
        postern_gateway::access::documents::replace_rule(&*store, &testers_rule())
            .await
            .unwrap();
        let agent_token = generate_token(TokenKind::Agent);
        store
            .create_agent(&Agent {
                name: AGENT.into(),
                token_hash: hash_token(agent_token.expose()),
                created_at_ms: now_ms(),
            })
            .await
            .unwrap();
        let ca_pem = std::fs::read(certs.ca_path()).unwrap();
        let mut cluster = Self {
            gateway: None,
            store,
            ca_path: certs.ca_path(),
            ca_pem,
            url: String::new(),
            admin_token,
            user_token,
            agent_token,
            agent: None,
            settings,
            oidc,
            tls,
            identity_paths: (certs.cert_path(), certs.key_path()),
            dir,
        };
        cluster.start_gateway("127.0.0.1:0".parse().unwrap()).await;
        cluster.agent = Some(cluster.spawn_agent(cluster.agent_token.clone()));
        cluster
            .agent
            .as_ref()
            .unwrap()
            .wait_connected(Duration::from_secs(10))
            .await
            .expect("agent connects");
        cluster
    }

    pub async fn start_gateway(&mut self, listen_addr: SocketAddr) {
        let identity =
            Identity::from_pem_files(&self.identity_paths.0, &self.identity_paths.1).unwrap();
        let store = self.store.clone();
        let stores = Stores {
            policy: store.clone(),
            audit: store,
            routes: Arc::new(MemoryRouteStore::new()),
        };
        let gateway = postern_gateway::start(
            GatewayOptions {
                listen_addr,
                internal_addr: "127.0.0.1:0".parse().unwrap(),
                tls: self.tls.then(|| server_config(identity).unwrap()),
                replica_id: postern_gateway::new_replica_id(),
                settings: self.settings.clone(),
                peer: None,
                oidc: self.oidc.clone(),
            },
            stores,
        )
        .await
        .expect("gateway starts");
        let scheme = if self.tls { "https" } else { "http" };
        self.url = format!("{scheme}://localhost:{}", gateway.public_addr.port());
        self.gateway = Some(gateway);
    }

    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    pub fn spawn_agent(&self, token: Secret) -> AgentHandle {
        self.spawn_agent_with(token, |_| {})
    }

    pub fn spawn_agent_with(
        &self,
        token: Secret,
        adjust: impl FnOnce(&mut AgentConfig),
    ) -> AgentHandle {
        let mut config = AgentConfig::new(self.url.clone(), token);
        config.ca_pem = Some(self.ca_pem.clone());
        config.keepalive_interval = Duration::from_secs(2);
        config.reconnect_base = Duration::from_millis(50);
        config.reconnect_max = Duration::from_millis(500);
        // The login postgres connections of the tests name (env:ORDERS).
        config.credentials.insert("ORDERS", "postgres", None);
        adjust(&mut config);
        postern_agent::spawn(config).expect("agent config")
    }

    /// Registers another agent and returns its token.
    pub async fn add_agent(&self, name: &str) -> Secret {
        let token = generate_token(TokenKind::Agent);
        self.store
            .create_agent(&Agent {
                name: name.into(),
                token_hash: hash_token(token.expose()),
                created_at_ms: now_ms(),
            })
            .await
            .unwrap();
        token
    }

    pub async fn add_connection(&self, name: &str, target: &str, agent: &str) {
        self.store
            .create_connection(&Connection::tcp(name, target, agent, now_ms()))
            .await
            .unwrap();
    }

    /// A connection of kind postgres (credential `env:ORDERS`, TLS `prefer`).
    pub async fn add_postgres_connection(
        &self,
        name: &str,
        target: &str,
        agent: &str,
        database: Option<&str>,
    ) {
        self.store
            .create_connection(&Connection {
                kind: ConnectionKind::Postgres,
                database: database.map(str::to_owned),
                credential: Some("env:ORDERS".into()),
                tls: Some("prefer".into()),
                ..Connection::tcp(name, target, agent, now_ms())
            })
            .await
            .unwrap();
    }

    pub fn channel(&self) -> tonic::transport::Channel {
        postern_tunnel::http2::lazy_channel(&self.url, Some(&self.ca_pem)).unwrap()
    }

    pub fn connector(&self, connection: &str) -> Connector {
        Connector::new(self.channel(), self.user_token.clone(), connection).unwrap()
    }

    /// What `postern connect` does, in-process: a local port for `connection`.
    pub async fn local_port(&self, connection: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(self.connector(connection).serve(listener));
        addr
    }

    /// A person with an API key in `groups`; returns the key.
    pub async fn add_person(&self, name: &str, groups: &[&str]) -> Secret {
        let token = generate_token(TokenKind::User);
        self.store
            .create_user_token(&UserToken {
                user: name.into(),
                token_hash: hash_token(token.expose()),
                role: Role::User,
                created_at_ms: now_ms(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            })
            .await
            .unwrap();
        token
    }

    /// Environment for the real `postern` binary, logged in with `token`.
    pub fn cli_env_as(&self, token: &Secret) -> Vec<(String, String)> {
        let mut env = self.cli_env();
        env.retain(|(name, _)| name != "POSTERN_TOKEN");
        env.push(("POSTERN_TOKEN".into(), token.expose().into()));
        env
    }

    /// Environment for the real `postern` binary.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "POSTERN_CONFIG".into(),
                self.dir.path().join("cli.json").display().to_string(),
            ),
            ("POSTERN_GATEWAY_URL".into(), self.url.clone()),
            ("POSTERN_TOKEN".into(), self.user_token.expose().into()),
            ("POSTERN_CA_CERT".into(), self.ca_path.display().to_string()),
        ]
    }

    pub async fn sessions(&self) -> Vec<postern_state::SessionRecord> {
        self.store.sessions(1000).await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.gateway().internal_addr, "/metrics").await
    }
}

/// A running `postern connect NAME --port 0`: its local port and the lines
/// it printed after `listening on`.
pub struct ConnectProcess {
    pub child: tokio::process::Child,
    pub port: u16,
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Runs the real `postern connect NAME --port 0` and waits for its address.
pub async fn postern_connect(cluster: &Cluster, name: &str) -> ConnectProcess {
    let (child, mut lines) = spawn_postern(
        cluster.cli_env(),
        &["connect", name, "--port", "0"],
        std::process::Stdio::inherit(),
    );
    let first = lines
        .recv()
        .await
        .expect("postern connect prints its address");
    ConnectProcess {
        child,
        port: listening_port(&first),
        lines,
    }
}

/// The port in `postern connect`'s first line, `listening on ADDR`.
pub fn listening_port(line: &str) -> u16 {
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
        .parse()
        .unwrap();
    addr.port()
}

/// Runs the real `postern ARGS`, its stdout read line by line (a piped
/// `stderr` is for `wait_with_output`).
pub fn spawn_postern(
    env: Vec<(String, String)>,
    args: &[&str],
    stderr: std::process::Stdio,
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Runs `postern ARGS` to the end: (success, stdout, stderr).
pub async fn run_postern(env: Vec<(String, String)>, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .envs(env)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Postgres the tests run against: `POSTERN_TEST_PG_HOST`/`POSTERN_TEST_PG_PORT`
/// (the test command sets them), else 127.0.0.1:5432. Fails loudly if absent.
pub fn postgres() -> (String, u16) {
    let host = std::env::var("POSTERN_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("POSTERN_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    if std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "these tests need PostgreSQL at {host}:{port} (user postgres, trust auth). \
             Run the suite with scripts/test, which starts one, or set POSTERN_TEST_PG_HOST/POSTERN_TEST_PG_PORT."
        );
    }
    (host, port)
}

/// Passes raw bytes as gRPC messages: lets a test send what no well-behaved
/// client would (truncated or oversized protobuf).
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Opens a session with raw messages; returns the sender for them and the
/// response stream (or the refusal).
pub async fn raw_open(
    cluster: &Cluster,
    token: &Secret,
    connection: &str,
) -> Result<
    (
        tokio::sync::mpsc::Sender<bytes::Bytes>,
        tonic::Streaming<bytes::Bytes>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    postern_tunnel::auth::set_bearer(request.metadata_mut(), token).unwrap();
    request.metadata_mut().insert(
        postern_tunnel::auth::CONNECTION_HEADER,
        connection.parse().unwrap(),
    );
    let mut grpc = tonic::client::Grpc::new(cluster.channel()).max_encoding_message_size(16 << 20);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/postern.v1.Sessions/Open");
    let response = grpc.streaming(request, path, RawCodec).await?;
    Ok((tx, response.into_inner()))
}

/// Reads a raw session stream to its end: the Close frame it carried, if any,
/// or the status it ended with.
pub async fn raw_outcome(
    mut inbound: tonic::Streaming<bytes::Bytes>,
) -> Result<Option<postern_tunnel::proto::Close>, tonic::Status> {
    use postern_tunnel::proto::{Frame, frame::Kind};
    use prost::Message;
    let mut close = None;
    while let Some(message) = inbound.message().await? {
        if let Ok(Frame {
            kind: Some(Kind::Close(c)),
        }) = Frame::decode(message)
        {
            close = Some(c);
        }
    }
    Ok(close)
}

/// Test users are in group `testers`, which may connect, exec and read the
/// audit on every connection.
fn testers_rule() -> postern_gateway::access::AccessRule {
    use postern_gateway::access::{AccessRule, Action};
    AccessRule::new(
        "testers",
        &["testers"],
        &["*"],
        &[Action::Connect, Action::Exec, Action::AuditRead],
    )
}
