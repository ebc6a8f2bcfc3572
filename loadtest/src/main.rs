//! `postern-loadtest`: benchmarks that measure Postern beside baselines in the
//! same run, on loopback, from release builds.
#![forbid(unsafe_code)]

mod bulk;
mod procs;
mod target;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postern-loadtest",
    about = "Benchmarks Postern against a direct connection and ssh -L"
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
    }
}
