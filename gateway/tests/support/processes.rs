//! Gateway replicas as real `postern-gateway` processes (so they can be killed
//! with SIGKILL or drained with SIGTERM), on ephemeral ports, sharing a real
//! Redis and one SQLite policy file, behind a round-robin TCP balancer.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use postern_agent::AgentHandle;
use postern_state::sqlite::SqliteStore;
use postern_state::testing::RedisServer;
use postern_state::{PolicyStore, Role, UserToken, now_ms};
use postern_testkit::balancer::Balancer;
use postern_tunnel::Secret;
use postern_tunnel::auth::{TokenKind, generate_token, hash_token};
use postern_tunnel::tls::DevCertificates;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::PEER_SECRET;

pub struct GatewayProcess {
    pub child: Child,
    pub replica: String,
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
}

pub struct ProcessCluster {
    pub redis: RedisServer,
    pub store: Arc<SqliteStore>,
    pub gateways: Vec<Option<GatewayProcess>>,
    pub balancer: Balancer,
    pub user_token: Secret,
    pub ca_pem: Vec<u8>,
    certs: DevCertificates,
    pub dir: tempfile::TempDir,
    /// Replicas relay through Redis (`POSTERN_PEER_TRANSPORT=relay`).
    relay: bool,
}

impl ProcessCluster {
    pub async fn start(count: usize) -> Self {
        Self::start_with(count, false).await
    }

    /// Replicas that cannot dial each other and relay through Redis.
    pub async fn start_relay(count: usize) -> Self {
        Self::start_with(count, true).await
    }

    async fn start_with(count: usize, relay: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (certs, _) = DevCertificates::load_or_create(&dir.path().join("tls")).unwrap();
        // Opened (and migrated) here first, so replicas never race to migrate.
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
        postern_gateway::access::documents::replace_rule(&*store, &super::testers_rule())
            .await
            .unwrap();
        let mut cluster = Self {
            redis: RedisServer::start(),
            store,
            gateways: Vec::new(),
            balancer: Balancer::start(Vec::new()).await,
            user_token,
            ca_pem: std::fs::read(certs.ca_path()).unwrap(),
            certs,
            dir,
            relay,
        };
        for _ in 0..count {
            cluster.add_replica().await;
        }
        cluster
    }

    /// Starts one more replica process and puts it behind the balancer.
    pub async fn add_replica(&mut self) -> usize {
        let index = self.gateways.len();
        let log =
            std::fs::File::create(self.dir.path().join(format!("gateway-{index}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_postern-gateway"));
        command.env_clear();
        if self.relay {
            command.env("POSTERN_PEER_TRANSPORT", "relay");
        } else {
            command.env("POSTERN_PEER_ADDR", "127.0.0.1:0");
        }
        let mut child = command
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("POSTERN_LISTEN_ADDR", "127.0.0.1:0")
            .env("POSTERN_INTERNAL_ADDR", "127.0.0.1:0")
            .env("POSTERN_TLS_CERT", self.certs.cert_path())
            .env("POSTERN_TLS_KEY", self.certs.key_path())
            .env("POSTERN_SQLITE_PATH", self.dir.path().join("postern.db"))
            .env("POSTERN_REDIS_URL", self.redis.url())
            .env("POSTERN_PEER_SECRET", PEER_SECRET)
            .env("POSTERN_HEARTBEAT_INTERVAL_MS", "200")
            .env("POSTERN_REPLICA_TTL_MS", "1000")
            .env("POSTERN_AGENT_ROUTE_TTL_MS", "6000")
            .env("POSTERN_KEEPALIVE_INTERVAL_MS", "2000")
            .env("POSTERN_SESSION_OPEN_TIMEOUT_MS", "5000")
            .env("POSTERN_DRAIN_GRACE_MS", "5000")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("postern-gateway starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && value["event"] == "ready"
                {
                    return value;
                }
            }
            panic!("gateway {index} exited before it was ready (see its log)");
        })
        .await
        .expect("gateway ready within 30 s");
        let addr = |field: &str| {
            ready[field]
                .as_str()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
        };
        let process = GatewayProcess {
            child,
            replica: ready["replica"].as_str().unwrap().to_owned(),
            public_addr: addr("public_addr"),
            internal_addr: addr("internal_addr"),
        };
        self.balancer.add_backend(process.public_addr);
        self.gateways.push(Some(process));
        index
    }

    pub fn gateway(&self, index: usize) -> &GatewayProcess {
        self.gateways[index].as_ref().expect("replica running")
    }

    pub fn url(&self, index: usize) -> String {
        format!(
            "https://localhost:{}",
            self.gateway(index).public_addr.port()
        )
    }

    pub fn balancer_url(&self) -> String {
        format!("https://localhost:{}", self.balancer.addr.port())
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub async fn kill(&mut self, index: usize) {
        let mut process = self.gateways[index].take().expect("replica running");
        self.balancer.remove_backend(process.public_addr);
        process.child.kill().await.unwrap();
    }

    /// SIGTERM, as a rolling deploy does (after taking it out of the balancer);
    /// returns the exit code once it has drained.
    pub async fn terminate(&mut self, index: usize) -> Option<i32> {
        let mut process = self.gateways[index].take().expect("replica running");
        self.balancer.remove_backend(process.public_addr);
        let pid = process.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(20), process.child.wait())
            .await
            .expect("replica exits within the grace period")
            .unwrap()
            .code()
    }

    pub async fn add_agent(&self, name: &str) -> Secret {
        super::register_agent(&self.store, name).await
    }

    pub async fn add_connection(&self, name: &str, target: &str, agent: &str) {
        super::register_connection(&self.store, name, target, agent).await
    }

    pub fn spawn_agent(&self, url: String, token: Secret, tunnels: usize) -> AgentHandle {
        super::spawn_agent(url, token, tunnels, &self.ca_pem)
    }

    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("gateway-{index}.log")))
            .unwrap_or_default()
    }
}
