//! `postern-gateway`: `serve` (default; configured by POSTERN_* variables) or
//! `dev` (everything embedded, for a first run).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use postern_agent::pg::credentials::Credentials;
use postern_gateway::bootstrap::{Bootstrap, register_bootstrap_admin};
use postern_gateway::config::{GatewayConfig, VARS, settings_from_env};
use postern_gateway::dev::{DevOptions, start_dev};
use postern_gateway::{Stores, start};
use postern_state::RouteStore;
use postern_state::memory::MemoryRouteStore;
use postern_state::redis::{RedisConfig, RedisRouteStore};
use postern_telemetry::{Logging, Service, Telemetry, TelemetryError, TracingConfig};
use postern_tunnel::env::Env;

#[derive(Parser)]
#[command(name = "postern-gateway", version, about = "Postern gateway replica")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve, configured by POSTERN_* environment variables (the default).
    Serve,
    /// Run a gateway with an embedded agent on embedded defaults.
    Dev {
        /// Where SQLite, certificates and dev tokens are kept.
        #[arg(long, env = "POSTERN_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "POSTERN_LISTEN_ADDR", default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[arg(long, env = "POSTERN_INTERNAL_ADDR", default_value = "127.0.0.1:9464")]
        internal: SocketAddr,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let env = Env::from_process();
    let dev = matches!(cli.command, Some(Command::Dev { .. }));
    let telemetry = match init_telemetry(&env, dev) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("postern-gateway: configuration error: {e}");
            std::process::exit(2);
        }
    };
    // Variables of the CLI and the embedded agent are expected in a shared shell.
    let known: Vec<&str> = VARS
        .iter()
        .chain(postern_agent::config::VARS)
        .chain(&["POSTERN_CONFIG", "POSTERN_TOKEN", "POSTERN_LOG"])
        .copied()
        .collect();
    let by_prefix = postern_agent::config::VAR_PREFIXES;
    for var in env
        .unknown("POSTERN_", &known)
        .into_iter()
        .filter(|var| !by_prefix.iter().any(|prefix| var.starts_with(prefix)))
    {
        tracing::warn!(%var, "unknown POSTERN_ variable ignored (a typo?)");
    }
    let result = match cli.command {
        Some(Command::Dev {
            data_dir,
            listen,
            internal,
        }) => run_dev(&env, data_dir, listen, internal).await,
        Some(Command::Serve) | None => run(&env).await,
    };
    telemetry.shutdown().await;
    if let Err(e) = result {
        eprintln!("postern-gateway: {e:#}");
        std::process::exit(1);
    }
}

async fn run(env: &Env) -> anyhow::Result<()> {
    // Before any listener exists: a SIGTERM right after /readyz answers must drain.
    let signals = postern_tunnel::signal::Shutdown::install()?;
    let config = match GatewayConfig::from_env(env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("postern-gateway: configuration error: {e}");
            std::process::exit(2);
        }
    };
    tracing::info!(?config, "starting gateway");
    tracing::info!(
        addr = %config.options.listen_addr,
        from = config.listen_addr_from,
        "public listen address"
    );
    let opened =
        config.policy_store.open().await.map_err(|e| {
            anyhow::anyhow!("cannot open the policy store (POSTERN_POLICY_STORE): {e}")
        })?;
    let store = opened.policy.clone();
    if let Some(token) = &config.bootstrap_admin_token {
        match register_bootstrap_admin(&*store, token).await? {
            Bootstrap::Registered => tracing::info!("bootstrap admin token registered"),
            Bootstrap::AlreadyRegistered => {
                tracing::debug!("bootstrap admin token already registered")
            }
        }
    }
    let routes: Arc<dyn RouteStore> = match &config.redis_url {
        Some(url) => {
            let redis =
                RedisConfig::from_url(url.expose()).and_then(|redis| match &config.redis_ca {
                    Some(ca) => redis.with_root_ca(ca.pem.clone()),
                    None => Ok(redis),
                });
            let redis = match redis {
                Ok(redis) => redis,
                Err(e) => {
                    eprintln!("postern-gateway: configuration error: POSTERN_REDIS_URL: {e}");
                    std::process::exit(2);
                }
            };
            let trusted = match &config.redis_ca {
                Some(ca) => format!("the CA in {} (POSTERN_REDIS_CA_CERT)", ca.path.display()),
                None => "the system's trust store".to_owned(),
            };
            match RedisRouteStore::connect(redis.clone()).await {
                Ok(store) => Arc::new(store),
                Err(e) if redis.uses_tls() => anyhow::bail!(
                    "cannot reach Redis at POSTERN_REDIS_URL (TLS, servers verified against {trusted}): {e}"
                ),
                Err(e) => anyhow::bail!("cannot reach Redis at POSTERN_REDIS_URL: {e}"),
            }
        }
        None => Arc::new(MemoryRouteStore::new()),
    };
    let stores = Stores {
        policy: opened.policy,
        audit: opened.audit,
        routes,
    };
    let ecs_stop = config.ecs_stop.clone();
    if let Some(watch) = &ecs_stop {
        tracing::info!(url = %watch.task_url(), "on ECS: draining when the task's desired status turns STOPPED");
    }
    let running = start(config.options, stores).await?;
    // One machine-readable line on stdout once serving: for supervisors,
    // scripts and tests that start the gateway on port 0.
    println!(
        "{}",
        serde_json::json!({
            "event": "ready",
            "replica": running.shared.replica_id,
            "public_addr": running.public_addr.to_string(),
            "internal_addr": running.internal_addr.to_string(),
            "peer_addr": running.peer_addr.map(|a| a.to_string()),
        })
    );
    let ecs_stopping = async {
        match &ecs_stop {
            Some(watch) => watch.stopping().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = signals.wait() => {}
        _ = ecs_stopping => tracing::info!(
            "ECS is stopping this task (DesiredStatus STOPPED): draining now, before the load balancer's deregistration delay ends"
        ),
    }
    running.shutdown().await;
    Ok(())
}

async fn run_dev(
    env: &Env,
    data_dir: Option<PathBuf>,
    listen: SocketAddr,
    internal: SocketAddr,
) -> anyhow::Result<()> {
    let data_dir = data_dir
        .or_else(|| dirs_data_dir().map(|d| d.join("postern").join("dev")))
        .unwrap_or_else(|| PathBuf::from(".postern-dev"));
    let signals = postern_tunnel::signal::Shutdown::install()?;
    let options = DevOptions {
        data_dir,
        listen_addr: listen,
        internal_addr: internal,
        settings: settings_from_env(env)?,
        agent_credentials: Credentials::from_env(
            env,
            env.optional::<PathBuf>("POSTERN_CREDENTIALS_DIR")?,
        ),
    };
    let dev = start_dev(options).await?;
    println!("{}", dev.instructions());
    signals.wait().await;
    dev.shutdown().await;
    Ok(())
}

fn dirs_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
        })
}

/// Logs (JSON unless dev mode or POSTERN_LOG_FORMAT=text) and, when an OTLP
/// endpoint is set, traces.
fn init_telemetry(env: &Env, dev: bool) -> Result<Telemetry, TelemetryError> {
    let json = postern_telemetry::json_logs(env, !dev)?;
    let logging = Logging {
        filter_var: "RUST_LOG",
        default_filter: "info",
        json,
    };
    let service = Service {
        name: "postern-gateway",
        version: env!("CARGO_PKG_VERSION"),
        instance: env.raw("POSTERN_REPLICA_ID").map(str::to_owned),
    };
    let tracing = TracingConfig::from_env(env, service.name)?;
    let telemetry = postern_telemetry::init(env, &logging, &service, tracing.as_ref())?;
    if let Some(config) = &tracing {
        tracing::info!(?config, "exporting traces over OTLP/gRPC");
    }
    Ok(telemetry)
}
