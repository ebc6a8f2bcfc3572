//! `pgbench -S` (read-only, primary-key lookups) through three paths in the
//! same run: direct to PostgreSQL, an `ssh -L` tunnel, and Postern with the
//! connection's guardrails and statement audit on (`--kind postgres`: the
//! agent logs in, checks every statement on a real parse and reports it to
//! the gateway, which writes it to the audit sink).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::process::Command;

use crate::md;
use crate::outcome::{Outcome, Plot};
use crate::procs::{self, Path3, rotation};
use crate::stats::median;

/// Which PostgreSQL pgbench loads, and with how many clients (shared with
/// `relay-floor`).
#[derive(clap::Args, Debug, Clone)]
pub struct Load {
    /// The PostgreSQL to measure (user postgres, trust auth) [default:
    /// POSTERN_TEST_PG_HOST:POSTERN_TEST_PG_PORT, else 127.0.0.1:5432].
    #[arg(long)]
    pub postgres: Option<SocketAddr>,
    /// Client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub clients: Vec<u32>,
}

impl Load {
    /// `--postgres`, else the default server.
    pub fn postgres(&self) -> anyhow::Result<SocketAddr> {
        self.postgres.map_or_else(default_postgres, Ok)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub load: Load,
    /// Seconds per pgbench run [default: 10; --quick 1].
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Runs per path and client count; paths alternate so drift cancels [default: 3; --quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// pgbench's query mode: simple, extended or prepared.
    #[arg(long, default_value = "simple")]
    pub mode: String,
    /// The Postern connection's kind: postgres (Layer 7: guardrails and
    /// audit on) or tcp (bytes only, to see what Layer 7 costs).
    #[arg(long, default_value = "postgres")]
    pub kind: String,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub common: crate::outcome::Common,
}

impl Args {
    pub fn options(&self) -> anyhow::Result<Options> {
        Ok(Options {
            postgres: self.load.postgres()?,
            clients: self.load.clients.clone(),
            seconds: self.seconds.unwrap_or(if self.quick { 1 } else { 10 }),
            rounds: self.rounds.unwrap_or(if self.quick { 1 } else { 3 }),
            mode: self.mode.clone(),
            kind: self.kind.clone(),
            bin_dir: self.common.bin_dir.clone(),
        })
    }
}

/// POSTERN_TEST_PG_HOST:POSTERN_TEST_PG_PORT, as the test suite uses, else 127.0.0.1:5432.
pub fn default_postgres() -> anyhow::Result<SocketAddr> {
    let host = std::env::var("POSTERN_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("POSTERN_TEST_PG_PORT").unwrap_or_else(|_| "5432".into());
    format!("{host}:{port}").parse().with_context(|| {
        format!(
            "POSTERN_TEST_PG_HOST/POSTERN_TEST_PG_PORT: {host}:{port} is not an IP address and port"
        )
    })
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    measure(&args.options()?)
        .await?
        .finish(args.common.json.as_deref())
}

pub struct Options {
    pub postgres: SocketAddr,
    pub clients: Vec<u32>,
    pub seconds: u64,
    pub rounds: usize,
    pub mode: String,
    /// `postgres` (Layer 7: guardrails, audit) or `tcp` (bytes only), to see
    /// what Layer 7 costs.
    pub kind: String,
    pub bin_dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Measured {
    path: Path3,
    clients: u32,
    tps: Vec<f64>,
    median_tps: f64,
    vs_ssh: f64,
    /// CPU time of the path's relaying processes per transaction (median):
    /// ssh + sshd, or postern connect + the gateway with its agent.
    relay_cpu_us_per_tx: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Target {
    clients: u32,
    postern_vs_ssh: f64,
    /// Issue 4: at least the `ssh -L` rate.
    meets_target: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    mode: String,
    kind: String,
    seconds_per_run: u64,
    rounds: usize,
    results: Vec<Measured>,
    targets: Vec<Target>,
    /// Statements the gateway recorded as audited during the run (its
    /// `postern_statements_total`): proof the Postern path ran at Layer 7.
    statements_audited: f64,
    machine: crate::observe::Machine,
}

pub(crate) const DATABASE: &str = "postern_pgbench";

pub(crate) async fn pgbench(addr: SocketAddr, args: &[String]) -> anyhow::Result<String> {
    let output = Command::new("pgbench")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", "postgres"])
        .args(args)
        .arg(DATABASE)
        // The same protocol on every path: no TLS inside the tunnels.
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .context("running pgbench (Debian: apt-get install postgresql-client)")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench {args:?} through {addr} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// The `number of transactions actually processed: N` figure.
fn transactions(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|rest| rest.split(['/', ' ']).next()?.parse().ok())
        .with_context(|| format!("no transaction count in pgbench's output: {output}"))
}

/// The `tps = N (without initial connection time)` figure.
pub(crate) fn tps(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection time"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps in pgbench's output: {output}"))
}

async fn psql(addr: SocketAddr, database: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .args(["-U", "postgres", "-d", database, "-c", sql])
        .env("PGSSLMODE", "disable")
        .output()
        .await
        .context("running psql")?;
    ensure!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

pub async fn measure(options: &Options) -> anyhow::Result<Outcome> {
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(
        !options.clients.is_empty(),
        "--clients needs at least one count"
    );
    let pg = options.postgres;
    prepare(pg).await?;

    let dir = tempfile::tempdir()?;
    let ssh = procs::ssh_tunnel(dir.path(), pg).await?;
    let kind_args: &[&str] = match options.kind.as_str() {
        // No TLS to the database, as on the baselines (PGSSLMODE=disable).
        "postgres" => &[
            "--kind",
            "postgres",
            "--credential",
            "env:DEV",
            "--tls",
            "disable",
        ],
        "tcp" => &["--kind", "tcp"],
        other => anyhow::bail!("--kind {other:?}: expected postgres or tcp"),
    };
    let postern = procs::postern(&options.bin_dir, dir.path(), pg, kind_args).await?;
    let paths = [
        (Path3::Direct, pg),
        (Path3::SshL, ssh.local),
        (Path3::Postern, postern.local),
    ];
    let run_args = |clients, seconds| run_args(&options.mode, clients, seconds);
    // Warm up each path (connections, caches, the agent's first parse).
    for (_, addr) in paths {
        pgbench(addr, &run_args(1, 1)).await?;
    }
    let relays = [Vec::new(), ssh.relay_pids(), postern.relay_pids()];
    let mut tps_by = vec![vec![Vec::new(); paths.len()]; options.clients.len()];
    let mut cpu_by = tps_by.clone();
    for round in 0..options.rounds {
        for (c, &clients) in options.clients.iter().enumerate() {
            // Rotate the order each round so drift of the machine cancels out.
            for index in rotation(round, paths.len()) {
                let (path, addr) = paths[index];
                let cpu_before = crate::observe::tree_cpu_seconds(&relays[index]);
                let out = pgbench(addr, &run_args(clients, options.seconds)).await?;
                let t = tps(&out)?;
                let cpu = crate::observe::tree_cpu_seconds(&relays[index]) - cpu_before;
                cpu_by[c][index].push(cpu * 1e6 / transactions(&out)?);
                eprintln!(
                    "pgbench round {}/{} clients {clients:>2} {:<8} {t:>9.0} tps",
                    round + 1,
                    options.rounds,
                    path.label()
                );
                tps_by[c][index].push(t);
            }
        }
    }
    let mut results = Vec::new();
    for (c, &clients) in options.clients.iter().enumerate() {
        let ssh_median = median(&tps_by[c][1]);
        for (index, (path, _)) in paths.iter().enumerate() {
            let median_tps = median(&tps_by[c][index]);
            results.push(Measured {
                path: *path,
                clients,
                tps: tps_by[c][index].clone(),
                median_tps,
                vs_ssh: median_tps / ssh_median,
                relay_cpu_us_per_tx: (!relays[index].is_empty()).then(|| median(&cpu_by[c][index])),
            });
        }
    }
    let statements_audited = match postern.internal {
        Some(internal) => {
            let text = crate::observe::metrics(internal).await?;
            ["ok", "error", "blocked"]
                .iter()
                .map(|o| {
                    crate::observe::sample(&text, "postern_statements_total", &[("outcome", o)])
                })
                .filter(|v| v.is_finite())
                .sum()
        }
        None => f64::NAN,
    };
    ensure!(
        options.kind != "postgres" || statements_audited > 0.0,
        "the gateway recorded no audited statement: the postern path did not run at Layer 7"
    );
    let targets: Vec<Target> = results
        .iter()
        .filter(|r| r.path == Path3::Postern)
        .map(|r| Target {
            clients: r.clients,
            postern_vs_ssh: r.vs_ssh,
            meets_target: r.vs_ssh >= 1.0,
        })
        .collect();
    let mut markdown = String::new();
    let groups = options
        .clients
        .iter()
        .map(|&clients| {
            let bars = results
                .iter()
                .filter(|r| r.clients == clients)
                .map(|r| (r.path.label().to_owned(), r.median_tps))
                .collect();
            (format!("{clients} clients"), bars)
        })
        .collect();
    md!(
        markdown,
        "\npgbench -S -M {}, {} s per run, median of {}, postern connection kind {} \
         ({statements_audited} statements audited):\n",
        options.mode,
        options.seconds,
        options.rounds,
        options.kind
    );
    md!(
        markdown,
        "| clients | path | tps | vs ssh -L | relays' CPU µs per transaction |"
    );
    md!(markdown, "|---:|---|---:|---:|---:|");
    for r in &results {
        md!(
            markdown,
            "| {} | {} | {:.0} | {:.2}x | {} |",
            r.clients,
            r.path.label(),
            r.median_tps,
            r.vs_ssh,
            r.relay_cpu_us_per_tx
                .map_or("—".to_owned(), |us| format!("{us:.0}"))
        );
    }
    md!(
        markdown,
        "\nRelays: ssh + sshd for ssh -L; postern connect + the gateway with its embedded \
         agent for postern. Every process shares the machine's {} cores, so a path's rate \
         falls as its relays' CPU per transaction rises.",
        crate::observe::machine().cpus
    );
    let report = Report {
        scenario: "pgbench",
        mode: options.mode.clone(),
        kind: options.kind.clone(),
        seconds_per_run: options.seconds,
        rounds: options.rounds,
        results,
        targets,
        statements_audited,
        machine: crate::observe::machine(),
    };
    let mut outcome = Outcome::new("pgbench", &report)?;
    outcome.markdown = markdown;
    for t in &report.targets {
        outcome.verdict(
            format!(
                "pgbench -S, {} clients, guardrails + audit ≥ 1× ssh -L",
                t.clients
            ),
            format!("{:.2}× ssh -L", t.postern_vs_ssh),
            t.meets_target && options.kind == "postgres",
        );
    }
    outcome.plots.push(Plot::Bars {
        file: "pgbench.svg",
        title: format!("pgbench -S -M {} (median transactions/s)", options.mode),
        unit: "tps",
        groups,
    });
    drop(postern);
    drop(ssh);
    drop_database(pg).await?;
    Ok(outcome)
}

/// A fresh `postern_pgbench` database (`pgbench -i -s 1`), made directly.
pub(crate) async fn prepare(pg: SocketAddr) -> anyhow::Result<()> {
    eprintln!("preparing {DATABASE} on {pg} (pgbench -i -s 1)");
    drop_database(pg).await?;
    psql(pg, "postgres", &format!("create database {DATABASE}")).await?;
    pgbench(pg, &["-i".into(), "-q".into(), "-s".into(), "1".into()]).await?;
    Ok(())
}

pub(crate) async fn drop_database(pg: SocketAddr) -> anyhow::Result<()> {
    let sql = format!("drop database if exists {DATABASE} with (force)");
    psql(pg, "postgres", &sql).await
}

/// `pgbench -S` (read-only) with `clients` connections for `seconds`.
pub(crate) fn run_args(mode: &str, clients: u32, seconds: u64) -> Vec<String> {
    vec![
        "-S".into(),
        "-n".into(),
        "-M".into(),
        mode.into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        clients.min(2).to_string(),
        "-T".into(),
        seconds.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tps_without_connection_time() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 0.101 ms\n\
                   initial connection time = 2.204 ms\ntps = 9871.532051 (without initial connection time)\n";
        assert_eq!(tps(out).unwrap(), 9871.532051);
        assert!(tps("nothing").is_err());
        let out = "number of clients: 8\nnumber of transactions actually processed: 81234\n\
                   number of failed transactions: 0 (0.000%)\n";
        assert_eq!(transactions(out).unwrap(), 81234.0);
        let fixed = "number of transactions actually processed: 1000/1000\n";
        assert_eq!(transactions(fixed).unwrap(), 1000.0);
    }
}
