//! `postern-loadtest`: benchmarks that measure Postern beside baselines in the
//! same run, on loopback, from release builds.
#![forbid(unsafe_code)]

mod all;
mod bulk;
mod cluster;
mod failover;
mod idle;
mod latency;
mod lb;
mod observe;
mod outcome;
mod pgbench;
mod plot;
mod procs;
mod redis;
mod relay_floor;
mod session_open;
mod splice;
mod startup;
mod stats;
mod target;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postern-loadtest",
    about = "Benchmarks Postern against baselines measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bulk throughput each way through 1 and N parallel sessions: direct vs ssh -L vs Postern.
    Bulk(bulk::Args),
    /// Request/response latency over one session (HDR percentiles): direct vs ssh -L vs Postern.
    Latency(latency::Args),
    /// Session-open rate and latency through `postern connect`, one at a time and
    /// several at once, against direct and ssh -L.
    SessionOpen(session_open::Args),
    /// A session spliced between two replicas (peer, relay) against one that stays on
    /// one replica (local): bulk throughput each way and request/response round trips.
    Splice(splice::Args),
    /// Memory per idle agent tunnel on one gateway replica.
    IdleAgents(idle::Args),
    /// pgbench -S through Postern (guardrails and audit on) vs direct vs ssh -L.
    Pgbench(pgbench::Args),
    /// pgbench -S through ssh -L and through chains of plain TCP relays (socat):
    /// what relay hops alone cost on this machine.
    RelayFloor(relay_floor::Args),
    /// kill -9 of one of three replicas under load: errors, and the time until
    /// every agent is reachable again.
    Failover(failover::Args),
    /// Every scenario in sequence; results.json, results.md and SVG plots in --out.
    /// Time from spawning `postern-gateway serve` to its first 200 from /readyz,
    /// on SQLite and on Postgres with Redis.
    Startup(startup::Args),
    All(all::Args),
    /// Runs an agent configured by POSTERN_* variables, as postern-agent does
    /// (used by `splice --agent loadtest`).
    #[command(hide = true)]
    Agent,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bulk(args) => bulk::main(args).await,
        Command::Latency(args) => latency::main(args).await,
        Command::SessionOpen(args) => session_open::main(args).await,
        Command::Splice(args) => splice::main(args).await,
        Command::IdleAgents(args) => idle::main(args).await,
        Command::Pgbench(args) => pgbench::main(args).await,
        Command::RelayFloor(args) => relay_floor::main(args).await,
        Command::Failover(args) => failover::main(args).await,
        Command::Startup(args) => startup::main(args).await,
        Command::All(args) => all::main(args).await,
        Command::Agent => run_agent().await,
    }
}

async fn run_agent() -> anyhow::Result<()> {
    let env = postern_tunnel::env::Env::from_process();
    let config = postern_agent::AgentConfig::from_env(&env)
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    let agent = postern_agent::spawn(config)?;
    postern_tunnel::signal::shutdown().await;
    agent.stop().await;
    Ok(())
}
