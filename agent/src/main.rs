//! `postern-agent`: configured entirely by `POSTERN_*` environment variables.
#![forbid(unsafe_code)]

use postern_agent::AgentConfig;
use postern_agent::config::{VAR_PREFIXES, VARS};
use postern_telemetry::{Logging, Service, Telemetry, TelemetryError, TracingConfig};
use postern_tunnel::env::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = match init_telemetry(&env) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("postern-agent: configuration error: {e}");
            std::process::exit(2);
        }
    };
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
    // Before the agent dials out, so a SIGTERM at any point after start stops it cleanly.
    let signals = postern_tunnel::signal::Shutdown::install()?;
    let agent = postern_agent::spawn(config)?;
    signals.wait().await;
    tracing::info!("stopping");
    agent.stop().await;
    telemetry.shutdown().await;
    Ok(())
}

/// JSON logs unless POSTERN_LOG_FORMAT=text; traces when an OTLP endpoint is set.
fn init_telemetry(env: &Env) -> Result<Telemetry, TelemetryError> {
    let logging = Logging {
        filter_var: "RUST_LOG",
        default_filter: "info",
        json: postern_telemetry::json_logs(env, true)?,
    };
    let service = Service {
        name: "postern-agent",
        version: env!("CARGO_PKG_VERSION"),
        instance: None,
    };
    let tracing = TracingConfig::from_env(env, service.name)?;
    let telemetry = postern_telemetry::init(env, &logging, &service, tracing.as_ref())?;
    if let Some(config) = &tracing {
        tracing::info!(?config, "exporting traces over OTLP/gRPC");
    }
    Ok(telemetry)
}
