//! `postern-agent`: configured entirely by `POSTERN_*` environment variables.
#![forbid(unsafe_code)]

use postern_agent::AgentConfig;
use postern_agent::config::{VAR_PREFIXES, VARS};
use postern_tunnel::env::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    init_logging(&env);
    let config = match AgentConfig::from_env(&env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("postern-agent: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let unknown = env.unknown("POSTERN_", VARS);
    for var in unknown
        .iter()
        .filter(|var| !VAR_PREFIXES.iter().any(|prefix| var.starts_with(prefix)))
    {
        tracing::warn!(%var, "unknown POSTERN_ variable ignored (a typo?)");
    }
    match &config.allowed_targets {
        Some(allowed) => tracing::info!(%allowed, "targets allowed"),
        None => tracing::warn!(
            "POSTERN_ALLOWED_TARGETS is not set: this agent dials any target the gateway asks for"
        ),
    }
    tracing::info!(config = ?config, "starting agent");
    tracing::info!(credentials = ?config.credentials, "database logins available (names only)");
    let agent = postern_agent::spawn(config)?;
    postern_tunnel::signal::shutdown().await;
    tracing::info!("stopping");
    agent.stop().await;
    Ok(())
}

fn init_logging(env: &Env) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if env.raw("POSTERN_LOG_FORMAT") == Some("text") {
        builder.init();
    } else {
        builder.json().with_current_span(true).init();
    }
}
