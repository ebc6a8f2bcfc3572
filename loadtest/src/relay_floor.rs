//! What relay hops alone cost `pgbench -S` on this machine: the same run
//! through `ssh -L` and through chains of plain TCP relays (`socat`, one
//! forked process per connection, poll + read + write: no encryption, no
//! framing, no policy), to compare with Postern's path.
//!
//! Postern's path has three relaying processes (`postern connect`, the
//! gateway, the agent); `ssh -L` has two (ssh, sshd). Where every process
//! shares the same cores, a chain of three plain relays bounds from above
//! what any three-hop path can reach, however lean its code.

use std::net::SocketAddr;

use anyhow::{Context, ensure};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::md;
use crate::outcome::Outcome;
use crate::pgbench;
use crate::procs::{self, free_port, rotation, wait_for_listener};
use crate::stats::median;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub load: pgbench::Load,
    /// Lengths of the plain relay chains to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub hops: Vec<usize>,
    /// Seconds per pgbench run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Runs per path and client count; paths alternate so drift cancels.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Measured {
    path: String,
    clients: u32,
    tps: Vec<f64>,
    median_tps: f64,
    vs_ssh: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    seconds_per_run: u64,
    rounds: usize,
    results: Vec<Measured>,
    machine: crate::observe::Machine,
}

/// `socat` relays in a row in front of `target`; the first one's address.
pub struct Chain {
    _relays: Vec<Child>,
    pub local: SocketAddr,
}

pub async fn chain(hops: usize, target: SocketAddr) -> anyhow::Result<Chain> {
    let mut relays = Vec::new();
    let mut next = target;
    for _ in 0..hops {
        let port = free_port()?;
        let relay = Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay"
            ))
            .arg(format!("TCP:{next},nodelay"))
            .kill_on_drop(true)
            .spawn()
            .context("starting socat (Debian: apt-get install socat)")?;
        next = SocketAddr::from(([127, 0, 0, 1], port));
        // Not by connecting: a probe would travel down the chain (through
        // `postern connect` in the splice benchmark, opening a session).
        wait_for_listener(next, "socat").await?;
        relays.push(relay);
    }
    Ok(Chain {
        _relays: relays,
        local: next,
    })
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    measure(&args).await?.finish(args.json.as_deref())
}

pub async fn measure(args: &Args) -> anyhow::Result<Outcome> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let pg = args.load.postgres()?;
    pgbench::prepare(pg).await?;
    let dir = tempfile::tempdir()?;
    let ssh = procs::ssh_tunnel(dir.path(), pg).await?;
    let mut chains = Vec::new();
    for &hops in &args.hops {
        chains.push((hops, chain(hops, pg).await?));
    }
    let mut paths = vec![("direct".to_owned(), pg), ("ssh -L".to_owned(), ssh.local)];
    for (hops, chain) in &chains {
        paths.push((format!("{hops} plain relay(s)"), chain.local));
    }
    for (_, addr) in &paths {
        pgbench::pgbench(*addr, &pgbench::run_args("simple", 1, 1)).await?;
    }
    let mut tps_by = vec![vec![Vec::new(); paths.len()]; args.load.clients.len()];
    for round in 0..args.rounds {
        for (c, &clients) in args.load.clients.iter().enumerate() {
            for index in rotation(round, paths.len()) {
                let (label, addr) = &paths[index];
                let run = pgbench::run_args("simple", clients, args.seconds);
                let tps = pgbench::tps(&pgbench::pgbench(*addr, &run).await?)?;
                eprintln!(
                    "relay-floor round {}/{} clients {clients:>2} {label:<18} {tps:>9.0} tps",
                    round + 1,
                    args.rounds
                );
                tps_by[c][index].push(tps);
            }
        }
    }
    let mut results = Vec::new();
    let mut markdown = String::new();
    md!(
        markdown,
        "\npgbench -S -M simple, {} s per run, median of {}; plain relays are `socat` processes \
         in a row (no encryption, no framing):\n",
        args.seconds,
        args.rounds
    );
    md!(markdown, "| clients | path | tps | vs ssh -L |");
    md!(markdown, "|---:|---|---:|---:|");
    for (c, &clients) in args.load.clients.iter().enumerate() {
        let ssh_median = median(&tps_by[c][1]);
        for (index, (label, _)) in paths.iter().enumerate() {
            let median_tps = median(&tps_by[c][index]);
            let vs_ssh = median_tps / ssh_median;
            md!(
                markdown,
                "| {clients} | {label} | {median_tps:.0} | {vs_ssh:.2}x |"
            );
            results.push(Measured {
                path: label.clone(),
                clients,
                tps: tps_by[c][index].clone(),
                median_tps,
                vs_ssh,
            });
        }
    }
    let report = Report {
        scenario: "relay-floor",
        seconds_per_run: args.seconds,
        rounds: args.rounds,
        results,
        machine: crate::observe::machine(),
    };
    let mut outcome = Outcome::new("relay-floor", &report)?;
    outcome.markdown = markdown;
    drop(chains);
    drop(ssh);
    pgbench::drop_database(pg).await?;
    Ok(outcome)
}
