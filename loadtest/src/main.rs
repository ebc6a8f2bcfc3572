//! `postern-loadtest`: benchmarks that measure Postern beside baselines in the
//! same run, on loopback, from release builds.
#![forbid(unsafe_code)]

mod bulk;
mod cluster;
mod idle;
mod observe;
mod pgbench;
mod procs;
mod redis;
mod splice;
mod startup;
mod stats;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use splice::{AgentProgram, PathKind};

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
    /// Bulk throughput through one session, each way: direct vs ssh -L vs Postern.
    Bulk {
        /// MiB moved per measurement and direction.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// Measurements per path and direction; paths alternate so drift cancels.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where the release binaries postern-gateway and postern are.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A session spliced between two replicas (peer) against one that stays on
    /// one replica (local): bulk throughput each way and request/response round trips.
    Splice {
        /// MiB moved per measurement and direction [default: 1024; --quick 16].
        #[arg(long)]
        mib: Option<u64>,
        /// Measurements per path; paths alternate so drift cancels [default: 3; --quick 2].
        #[arg(long)]
        rounds: Option<usize>,
        /// Sequential round trips per measurement [default: 20000; --quick 300].
        #[arg(long)]
        round_trips: Option<usize>,
        /// Size of each request and of its echoed answer.
        #[arg(long, default_value_t = 64)]
        request_bytes: usize,
        /// Paths to measure, local first (the baseline): local, peer, relay.
        #[arg(long, value_delimiter = ',', default_value = "local,peer")]
        paths: Vec<PathKind>,
        /// Small sizes for a smoke test that finishes in seconds.
        #[arg(long)]
        quick: bool,
        /// Where postern-gateway, postern-agent and postern are.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Which program runs the agent.
        #[arg(long, value_enum, default_value = "postern-agent")]
        agent: AgentProgram,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Memory per idle agent tunnel on one gateway replica.
    IdleAgents {
        /// Agents, each with its own token and one tunnel [default: 10000; --quick 500].
        #[arg(long)]
        agents: Option<usize>,
        /// Control-stream keepalive interval of gateway and agents [default: 20000, the
        /// production default; --quick 1000].
        #[arg(long)]
        keepalive_ms: Option<u64>,
        /// How long the agents idle before the final measurement [default: 1.5 keepalive intervals].
        #[arg(long)]
        idle_secs: Option<f64>,
        /// Small sizes for a smoke test that finishes in seconds.
        #[arg(long)]
        quick: bool,
        /// Where postern-gateway is.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run the gateway under this program to see where its memory goes,
        /// e.g. "heaptrack -o /tmp/gateway" (memory is still read from the gateway itself).
        #[arg(long, value_delimiter = ' ')]
        gateway_wrapper: Vec<String>,
    },
    /// pgbench -S through Postern (guardrails and audit on) vs direct vs ssh -L.
    Pgbench {
        /// The PostgreSQL to measure (user postgres, trust auth) [default:
        /// POSTERN_TEST_PG_HOST:POSTERN_TEST_PG_PORT, else 127.0.0.1:5432].
        #[arg(long)]
        postgres: Option<std::net::SocketAddr>,
        /// Client counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        clients: Vec<u32>,
        /// Seconds per pgbench run [default: 10; --quick 1].
        #[arg(long)]
        seconds: Option<u64>,
        /// Runs per path and client count; paths alternate so drift cancels [default: 3; --quick 1].
        #[arg(long)]
        rounds: Option<usize>,
        /// pgbench's query mode: simple, extended or prepared.
        #[arg(long, default_value = "simple")]
        mode: String,
        /// The Postern connection's kind: postgres (Layer 7: guardrails and
        /// audit on) or tcp (bytes only, to see what Layer 7 costs).
        #[arg(long, default_value = "postgres")]
        kind: String,
        /// Small sizes for a smoke test that finishes in seconds.
        #[arg(long)]
        quick: bool,
        /// Where postern-gateway and postern are.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Time from spawning `postern-gateway serve` to its first 200 from /readyz,
    /// on SQLite and on Postgres with Redis.
    Startup {
        /// Measured starts per store, after one uncounted warm-up [default: 20; --quick 3].
        #[arg(long)]
        runs: Option<usize>,
        /// Serve TLS on the public port (dev certificates) instead of h2c.
        #[arg(long)]
        tls: bool,
        /// The Postgres policy store [default: a fresh database on
        /// POSTERN_TEST_PG_HOST:POSTERN_TEST_PG_PORT, user postgres].
        #[arg(long)]
        postgres_url: Option<String>,
        /// Few runs, for a smoke test.
        #[arg(long)]
        quick: bool,
        /// Where postern-gateway is.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Runs an agent configured by POSTERN_* variables, as postern-agent does
    /// (used by `splice --agent loadtest`).
    #[command(hide = true)]
    Agent,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bulk {
            mib,
            rounds,
            bin_dir,
            json,
        } => bulk::run(mib << 20, rounds, &bin_dir, json.as_deref()).await,
        Command::Splice {
            mib,
            rounds,
            round_trips,
            request_bytes,
            paths,
            quick,
            bin_dir,
            agent,
            json,
        } => {
            let mib = mib.unwrap_or(if quick { 16 } else { 1024 });
            splice::run(splice::Options {
                bytes: mib << 20,
                warmup_bytes: (mib << 20).min(64 << 20),
                rounds: rounds.unwrap_or(if quick { 2 } else { 3 }),
                round_trips: round_trips.unwrap_or(if quick { 300 } else { 20_000 }),
                request_bytes,
                paths,
                bin_dir,
                agent,
                json,
            })
            .await
        }
        Command::IdleAgents {
            agents,
            keepalive_ms,
            idle_secs,
            quick,
            bin_dir,
            json,
            gateway_wrapper,
        } => {
            let keepalive =
                Duration::from_millis(keepalive_ms.unwrap_or(if quick { 1000 } else { 20_000 }));
            let idle = idle_secs.map_or(keepalive.mul_f64(1.5), Duration::from_secs_f64);
            idle::run(idle::Options {
                agents: agents.unwrap_or(if quick { 500 } else { 10_000 }),
                keepalive,
                idle,
                bin_dir,
                json,
                gateway_wrapper,
            })
            .await
        }
        Command::Pgbench {
            postgres,
            clients,
            seconds,
            rounds,
            mode,
            kind,
            quick,
            bin_dir,
            json,
        } => {
            let postgres = match postgres {
                Some(addr) => addr,
                None => format!(
                    "{}:{}",
                    std::env::var("POSTERN_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into()),
                    std::env::var("POSTERN_TEST_PG_PORT").unwrap_or_else(|_| "5432".into())
                )
                .parse()?,
            };
            pgbench::run(pgbench::Options {
                postgres,
                clients,
                seconds: seconds.unwrap_or(if quick { 1 } else { 10 }),
                rounds: rounds.unwrap_or(if quick { 1 } else { 3 }),
                mode,
                kind,
                bin_dir,
                json,
            })
            .await
        }
        Command::Startup {
            runs,
            tls,
            postgres_url,
            quick,
            bin_dir,
            json,
        } => {
            startup::run(startup::Options {
                runs: runs.unwrap_or(if quick { 3 } else { 20 }),
                tls,
                postgres_url,
                bin_dir,
                json,
            })
            .await
        }
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
