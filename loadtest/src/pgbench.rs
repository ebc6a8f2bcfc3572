//! `pgbench -S` (read-only, primary-key lookups) through three paths in the
//! same run: direct to PostgreSQL, an `ssh -L` tunnel, and Postern with the
//! connection's guardrails and statement audit on (`--kind postgres`: the
//! agent logs in, checks every statement on a real parse and reports it to
//! the gateway, which writes it to the audit sink).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::process::Command;

use crate::bulk::Path3;
use crate::procs;
use crate::stats::median;

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
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Measured {
    path: Path3,
    clients: u32,
    tps: Vec<f64>,
    median_tps: f64,
    vs_ssh: f64,
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

const DATABASE: &str = "postern_pgbench";

async fn pgbench(addr: SocketAddr, args: &[String]) -> anyhow::Result<String> {
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

/// The `tps = N (without initial connection time)` figure.
fn tps(output: &str) -> anyhow::Result<f64> {
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

pub async fn run(options: Options) -> anyhow::Result<()> {
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(
        !options.clients.is_empty(),
        "--clients needs at least one count"
    );
    let pg = options.postgres;
    eprintln!("preparing {DATABASE} on {pg} (pgbench -i -s 1)");
    psql(
        pg,
        "postgres",
        &format!("drop database if exists {DATABASE} with (force)"),
    )
    .await?;
    psql(pg, "postgres", &format!("create database {DATABASE}")).await?;
    pgbench(pg, &["-i".into(), "-q".into(), "-s".into(), "1".into()]).await?;

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
    let run_args = |clients: u32, seconds: u64| -> Vec<String> {
        vec![
            "-S".into(),
            "-n".into(),
            "-M".into(),
            options.mode.clone(),
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            clients.min(2).to_string(),
            "-T".into(),
            seconds.to_string(),
        ]
    };
    // Warm up each path (connections, caches, the agent's first parse).
    for (_, addr) in paths {
        pgbench(addr, &run_args(1, 1)).await?;
    }
    let mut tps_by = vec![vec![Vec::new(); paths.len()]; options.clients.len()];
    for round in 0..options.rounds {
        for (c, &clients) in options.clients.iter().enumerate() {
            // Rotate the order each round so drift of the machine cancels out.
            for i in 0..paths.len() {
                let index = (i + round) % paths.len();
                let (path, addr) = paths[index];
                let out = pgbench(addr, &run_args(clients, options.seconds)).await?;
                let t = tps(&out)?;
                eprintln!(
                    "round {}/{} clients {clients:>2} {:<8} {t:>9.0} tps",
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
    println!(
        "\npgbench -S -M {}, {} s per run, median of {}, postern connection kind {} \
         ({statements_audited} statements audited):\n",
        options.mode, options.seconds, options.rounds, options.kind
    );
    println!("| clients | path | tps | vs ssh -L |");
    println!("|---:|---|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {:.0} | {:.2}x |",
            r.clients,
            r.path.label(),
            r.median_tps,
            r.vs_ssh
        );
    }
    if let Some(path) = &options.json {
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
        write_json(path, &report)?;
    }
    drop(postern);
    drop(ssh);
    psql(
        pg,
        "postgres",
        &format!("drop database if exists {DATABASE} with (force)"),
    )
    .await?;
    Ok(())
}

fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))
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
    }
}
