//! Gateway replicas as production runs them: real `postern-gateway serve`
//! processes configured by environment variables, sharing a Redis this
//! harness starts, on ephemeral loopback ports with TLS on every hop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use postern::api::ApiClient;
use postern::config::Login;
use postern_tunnel::Secret;
use postern_tunnel::auth::{TokenKind, generate_token};
use postern_tunnel::tls::DevCertificates;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procs::line_after;

/// What every replica of one cluster shares.
pub struct ClusterConfig {
    pub gateway_bin: PathBuf,
    /// Certificates, the SQLite policy file and the replicas' logs.
    pub dir: PathBuf,
    pub certs: DevCertificates,
    pub redis_url: String,
    pub peer_secret: Secret,
    pub admin_token: Secret,
    /// Extra `POSTERN_*` settings for every replica (the peer transport, keepalives).
    pub env: Vec<(String, String)>,
    /// A program and arguments each gateway runs under, e.g. `heaptrack -o
    /// FILE` to see where its memory goes; empty for none.
    pub wrapper: Vec<String>,
}

impl ClusterConfig {
    pub fn new(
        bin_dir: &Path,
        dir: &Path,
        redis_url: String,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let gateway_bin = bin_dir.join("postern-gateway");
        require_binary(&gateway_bin)?;
        let (certs, _) = DevCertificates::load_or_create(&dir.join("tls"))?;
        Ok(Self {
            gateway_bin,
            dir: dir.to_owned(),
            certs,
            redis_url,
            peer_secret: generate_token(TokenKind::User),
            admin_token: generate_token(TokenKind::User),
            env,
            wrapper: Vec::new(),
        })
    }

    /// The admin API of one replica (they share the policy store).
    pub fn api(&self, replica: &Replica) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(Login {
            gateway_url: replica.url(),
            token: self.admin_token.clone(),
            ca_cert: Some(self.certs.ca_path()),
            oidc: None,
        })?)
    }
}

pub fn require_binary(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        bail!(
            "{} not found: build with `cargo build --release -p postern-gateway -p postern-agent -p postern` \
             or pass --bin-dir",
            path.display()
        );
    }
    Ok(())
}

/// One running `postern-gateway` process.
pub struct Replica {
    /// The gateway, or the wrapper it runs under.
    child: Child,
    /// The gateway itself, whose memory is measured.
    pid: u32,
    pub name: String,
    pub id: String,
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub log: PathBuf,
}

impl Replica {
    /// `localhost` because that is a name on the dev certificate.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.public_addr.port())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL to the gateway itself, then waits for a wrapper to finish
    /// writing what it recorded.
    pub async fn kill_and_wait(mut self) -> anyhow::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).context("gateway pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
        tokio::time::timeout(Duration::from_secs(300), self.child.wait())
            .await
            .context("the gateway's wrapper did not exit within 300 s")??;
        Ok(())
    }
}

/// Starts replica `name` and waits for its `ready` line. Replicas of one
/// cluster are started one after the other, so only the first one migrates
/// the shared SQLite file.
pub async fn start_replica(config: &ClusterConfig, name: &str) -> anyhow::Result<Replica> {
    let log = config.dir.join(format!("gateway-{name}.log"));
    let log_file = std::fs::File::create(&log)?;
    // A clean environment: a POSTERN_* variable in the caller's shell must not
    // change what is measured.
    let mut command = match config.wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&config.gateway_bin);
            command
        }
        None => Command::new(&config.gateway_bin),
    };
    // The peer port exists only with direct peering; a relaying replica
    // refuses its settings.
    let relaying = config
        .env
        .iter()
        .any(|(k, v)| k == "POSTERN_PEER_TRANSPORT" && v == "relay");
    let mut child = command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("POSTERN_LOG_FORMAT", "text")
        .env("POSTERN_REPLICA_ID", format!("replica-{name}"))
        .env("POSTERN_LISTEN_ADDR", "127.0.0.1:0")
        .env("POSTERN_INTERNAL_ADDR", "127.0.0.1:0")
        .envs((!relaying).then_some(("POSTERN_PEER_ADDR", "127.0.0.1:0")))
        .env("POSTERN_TLS_CERT", config.certs.cert_path())
        .env("POSTERN_TLS_KEY", config.certs.key_path())
        .env("POSTERN_SQLITE_PATH", config.dir.join("postern.db"))
        .env("POSTERN_REDIS_URL", &config.redis_url)
        .env("POSTERN_PEER_SECRET", config.peer_secret.expose())
        .env("POSTERN_BOOTSTRAP_ADMIN_TOKEN", config.admin_token.expose())
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", config.gateway_bin.display()))?;
    let ready = match ready_line(&mut child).await {
        Ok(ready) => ready,
        Err(e) => bail!("replica {name}: {e:#}\n{}", log_tail(&log)),
    };
    let addr = |field: &str| -> anyhow::Result<SocketAddr> {
        ready[field]
            .as_str()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("replica {name}: no {field} in its ready line"))
    };
    let pid = child.id().context("the gateway exited")?;
    let pid = if config.wrapper.is_empty() {
        pid
    } else {
        crate::observe::descendant_running(pid, &config.gateway_bin)?
    };
    Ok(Replica {
        pid,
        name: name.to_owned(),
        id: ready["replica"].as_str().unwrap_or_default().to_owned(),
        public_addr: addr("public_addr")?,
        internal_addr: addr("internal_addr")?,
        child,
        log,
    })
}

/// Reads stdout until the gateway's JSON `ready` line, then keeps draining it.
async fn ready_line(child: &mut Child) -> anyhow::Result<serde_json::Value> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["event"] == "ready"
            {
                return Ok::<_, std::io::Error>(Some(value));
            }
        }
        Ok(None)
    })
    .await
    .context("postern-gateway printed no ready line within 30 s")??
    .context("postern-gateway exited before it was ready")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(ready)
}

/// The `POSTERN_*` variables of `names` that the gateway said it does not know
/// (it warns and ignores them rather than refusing to start).
pub fn ignored_variables(replica: &Replica, names: &[&str]) -> Vec<String> {
    let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
    names
        .iter()
        .filter(|name| {
            log.lines()
                .any(|line| line.contains("unknown POSTERN_ variable") && line.contains(**name))
        })
        .map(|name| (*name).to_owned())
        .collect()
}

pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    format!(
        "last lines of {}:\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}

/// Registers agent `name` through the admin API; returns its token.
pub async fn add_agent(api: &ApiClient, name: &str) -> anyhow::Result<Secret> {
    let created: serde_json::Value = api
        .post("/v1/agents", &serde_json::json!({ "name": name }))
        .await
        .with_context(|| format!("registering agent {name}"))?;
    let token = created["token"]
        .as_str()
        .with_context(|| format!("no token in the answer for agent {name}"))?;
    Ok(Secret::new(token.to_owned()))
}

pub async fn add_connection(
    api: &ApiClient,
    name: &str,
    target: SocketAddr,
    agent: &str,
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "name": name, "kind": "tcp", "target": target.to_string(), "agent": agent });
    api.post::<_, serde_json::Value>("/v1/connections", &body)
        .await
        .with_context(|| format!("adding connection {name}"))?;
    Ok(())
}

/// `postern connect CONNECTION --port 0` against `url`; returns the process
/// and the local address it listens on.
pub async fn connect(
    cli_bin: &Path,
    config: &ClusterConfig,
    url: &str,
    connection: &str,
) -> anyhow::Result<(Child, SocketAddr)> {
    require_binary(cli_bin)?;
    let mut child = Command::new(cli_bin)
        .args(["connect", connection, "--port", "0"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("POSTERN_CONFIG", config.dir.join("no-cli-config.json"))
        .env("POSTERN_GATEWAY_URL", url)
        .env("POSTERN_TOKEN", config.admin_token.expose())
        .env("POSTERN_CA_CERT", config.certs.ca_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", cli_bin.display()))?;
    let local = line_after(&mut child, "listening on ", "postern connect")
        .await?
        .trim()
        .parse()
        .context("the address postern connect printed")?;
    Ok((child, local))
}

/// The agent as its own process: `postern-agent` itself, or this binary's
/// `agent` subcommand (the same library and configuration, for `cargo test`,
/// where cargo does not build the postern-agent binary).
pub fn agent_process(
    program: &Path,
    args: &[&str],
    config: &ClusterConfig,
    url: &str,
    token: &Secret,
    allowed: SocketAddr,
    log: &Path,
) -> anyhow::Result<Child> {
    require_binary(program)?;
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("POSTERN_LOG_FORMAT", "text")
        .env("POSTERN_GATEWAY_URL", url)
        .env("POSTERN_AGENT_TOKEN", token.expose())
        .env("POSTERN_CA_CERT", config.certs.ca_path())
        .env("POSTERN_AGENT_TUNNELS", "1")
        .env("POSTERN_ALLOWED_TARGETS", allowed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log)?))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}
