//! `postern-gateway dev`: one gateway with an embedded agent on embedded
//! defaults (SQLite and a self-signed CA under a data directory, no Redis).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postern_agent::pg::credentials::Credentials;
use postern_agent::{AgentConfig, AgentHandle};
use postern_state::memory::MemoryRouteStore;
use postern_state::sqlite::SqliteStore;
use postern_state::{Agent, PolicyStore, Role, UserToken, now_ms};
use postern_tunnel::Secret;
use postern_tunnel::auth::{TokenKind, generate_token, hash_token};
use postern_tunnel::tls::{DevCertificates, server_config};

use crate::{GatewayOptions, RunningGateway, Settings, Stores, new_replica_id, start};

pub const EMBEDDED_AGENT: &str = "local";

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub settings: Settings,
    /// Database logins for the embedded agent (`POSTERN_CRED_*`); dev mode
    /// adds `env:DEV` (user `$PGUSER` or `postgres`, no password) if unset.
    pub agent_credentials: Credentials,
}

/// The credential reference dev mode always has.
pub const DEV_CREDENTIAL: &str = "env:DEV";

pub struct DevGateway {
    pub running: RunningGateway,
    pub agent: AgentHandle,
    pub admin_token: Secret,
    pub ca_path: PathBuf,
    pub url: String,
}

pub async fn start_dev(options: DevOptions) -> anyhow::Result<DevGateway> {
    let data_dir = &options.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let (certs, identity) = DevCertificates::load_or_create(&data_dir.join("tls"))?;
    let store = Arc::new(SqliteStore::open(&data_dir.join("postern.db")).await?);

    let admin_token = load_or_create_token(&data_dir.join("admin-token"), TokenKind::User)?;
    if store
        .user_by_token_hash(&hash_token(admin_token.expose()))
        .await?
        .is_none()
    {
        store
            .create_user_token(&UserToken {
                user: "admin".into(),
                token_hash: hash_token(admin_token.expose()),
                role: Role::Admin,
                created_at_ms: now_ms(),
                groups: Vec::new(),
            })
            .await?;
    }
    let agent_token = load_or_create_token(&data_dir.join("agent-token"), TokenKind::Agent)?;
    if store
        .agent_by_token_hash(&hash_token(agent_token.expose()))
        .await?
        .is_none()
    {
        store.delete_agent(EMBEDDED_AGENT).await?;
        store
            .create_agent(&Agent {
                name: EMBEDDED_AGENT.into(),
                token_hash: hash_token(agent_token.expose()),
                created_at_ms: now_ms(),
            })
            .await?;
    }

    let stores = Stores {
        policy: store.clone(),
        audit: store,
        routes: Arc::new(MemoryRouteStore::new()),
    };
    let running = start(
        GatewayOptions {
            listen_addr: options.listen_addr,
            internal_addr: options.internal_addr,
            tls: Some(server_config(identity)?),
            replica_id: new_replica_id(),
            settings: options.settings.clone(),
            peer: None,
            oidc: None,
        },
        stores,
    )
    .await?;

    let port = running.public_addr.port();
    let agent_url = format!("https://localhost:{port}");
    let mut agent_config = AgentConfig::new(agent_url, agent_token);
    agent_config.ca_pem = Some(std::fs::read(certs.ca_path())?);
    agent_config.keepalive_interval = options.settings.keepalive_interval;
    agent_config.reconnect_max = Duration::from_secs(2);
    agent_config.credentials = options.agent_credentials.clone();
    if agent_config.credentials.resolve(DEV_CREDENTIAL).is_err() {
        let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
        agent_config.credentials.insert("DEV", &user, None);
    }
    let agent = postern_agent::spawn(agent_config)?;
    agent
        .wait_connected(Duration::from_secs(10))
        .await
        .context("the embedded agent did not connect within 10 s")?;
    let host = match running.public_addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip if ip.is_ipv6() => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(DevGateway {
        url: format!("https://{host}:{port}"),
        running,
        agent,
        admin_token,
        ca_path: certs.ca_path(),
    })
}

impl DevGateway {
    /// What a newcomer types next.
    pub fn instructions(&self) -> String {
        format!(
            "\
Postern dev gateway is up: {url}  (metrics: http://{internal}/metrics)
Embedded agent \"{agent}\" is connected. State and certificates live in {dir}.

Admin token (dev only; kept in {dir}/admin-token):
  {token}

Next, in another terminal:
  postern login {url} --token {token} --ca-cert {ca}
  postern connection add local-pg --kind postgres --target 127.0.0.1:5432 --agent {agent} --credential {credential}
  postern connect local-pg --port 5433
  psql -h 127.0.0.1 -p 5433 -d postgres

The embedded agent logs in to Postgres itself ({credential}: POSTERN_CRED_DEV_USER /
POSTERN_CRED_DEV_PASSWORD, default user postgres); psql needs no password. Every statement
is audited: postern audit --statements. Plain TCP instead: --kind tcp.

Press Ctrl-C to stop.",
            url = self.url,
            internal = self.running.internal_addr,
            agent = EMBEDDED_AGENT,
            credential = DEV_CREDENTIAL,
            dir = self
                .ca_path
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."))
                .display(),
            token = self.admin_token.expose(),
            ca = self.ca_path.display(),
        )
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
        self.agent.stop().await;
    }
}

/// Dev mode keeps its tokens in files (mode 0600) so every start can print
/// the next commands; production keeps only hashes.
fn load_or_create_token(path: &Path, kind: TokenKind) -> anyhow::Result<Secret> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.starts_with(kind.prefix()) {
            return Ok(Secret::new(existing));
        }
    }
    let token = generate_token(kind);
    std::fs::write(path, token.expose())
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(token)
}
