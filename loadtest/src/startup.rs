//! `startup`: how long `postern-gateway serve` takes from spawn to its first
//! 200 from `/readyz`, what a platform waits for before sending traffic (Cloud
//! Run's startup probe, an ECS or Kubernetes readiness check). Measured per
//! policy store: embedded SQLite alone, and Postgres with Redis routes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::outcome::Common;
use crate::procs::free_port;
use crate::stats::{median, percentile};

/// The target from issue 6: ready within 200 ms when the stores answer.
const TARGET_MS: f64 = 200.0;
const DATABASE: &str = "postern_startup";

#[derive(clap::Args)]
pub struct Args {
    /// Measured starts per store, after one uncounted warm-up [default: 20; --quick 3].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Serve TLS on the public port (dev certificates) instead of h2c.
    #[arg(long)]
    pub tls: bool,
    /// The Postgres policy store [default: a fresh database on
    /// POSTERN_TEST_PG_HOST:POSTERN_TEST_PG_PORT, user postgres].
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Few runs, for a smoke test.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub common: Common,
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    run(Options {
        runs: args.runs.unwrap_or(if args.quick { 3 } else { 20 }),
        tls: args.tls,
        postgres_url: args.postgres_url,
        bin_dir: args.common.bin_dir,
        json: args.common.json,
    })
    .await
}

pub struct Options {
    pub runs: usize,
    /// Serve TLS on the public port (dev certificates) instead of h2c.
    pub tls: bool,
    /// The Postgres policy store; `None`: a fresh database on the local server.
    pub postgres_url: Option<String>,
    pub bin_dir: PathBuf,
    pub json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    runs: usize,
    gateway_tls: bool,
    target_ms: f64,
    /// Whether the binary was a release build (only those numbers count).
    binary: String,
    results: Vec<Scenario>,
}

#[derive(Serialize)]
struct Scenario {
    scenario: String,
    /// Milliseconds from spawn to the first 200 from /readyz, in run order.
    ready_ms: Vec<f64>,
    median_ms: f64,
    p90_ms: f64,
    max_ms: f64,
    meets_target: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let gateway = options.bin_dir.join("postern-gateway");
    if !gateway.exists() {
        bail!(
            "{} not found: build with `cargo build --release` or pass --bin-dir",
            gateway.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let mut base: Vec<(&str, String)> = vec![("RUST_LOG", "warn".into())];
    if options.tls {
        let (certs, _) =
            postern_tunnel::tls::DevCertificates::load_or_create(&dir.path().join("tls"))?;
        base.push(("POSTERN_TLS_CERT", certs.cert_path().display().to_string()));
        base.push(("POSTERN_TLS_KEY", certs.key_path().display().to_string()));
    } else {
        base.push(("POSTERN_TLS_DISABLED", "true".into()));
    }
    let redis = crate::redis::start(dir.path()).await?;
    let (postgres_url, postgres_label) = match options.postgres_url {
        Some(url) => {
            let tls = ["sslmode=require", "sslmode=verify"]
                .iter()
                .any(|mode| url.contains(mode));
            let label = if tls {
                "postgres (TLS) + redis"
            } else {
                "postgres + redis"
            };
            (url, label)
        }
        None => (fresh_database().await?, "postgres + redis"),
    };
    let scenarios: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "sqlite".into(),
            vec![(
                "POSTERN_SQLITE_PATH",
                dir.path().join("postern.db").display().to_string(),
            )],
        ),
        (
            postgres_label.into(),
            vec![
                ("POSTERN_POLICY_STORE", postgres_url),
                ("POSTERN_REDIS_URL", redis.url()),
                (
                    "POSTERN_PEER_SECRET",
                    "startup-peer-secret-0123456789abcdef".into(),
                ),
                ("POSTERN_PEER_ADDR", "127.0.0.1:0".into()),
            ],
        ),
    ];
    let mut results = Vec::new();
    for (name, vars) in scenarios {
        let vars: Vec<(&str, String)> = base.iter().cloned().chain(vars).collect();
        // One start not counted: it creates and migrates the store, as the
        // first replica of a deployment does; the runs measure later starts.
        time_to_ready(&gateway, &vars)
            .await
            .with_context(|| format!("{name}: warm-up"))?;
        let mut ready_ms = Vec::with_capacity(options.runs);
        for run in 0..options.runs {
            let elapsed = time_to_ready(&gateway, &vars)
                .await
                .with_context(|| format!("{name}: run {}", run + 1))?;
            ready_ms.push(elapsed.as_secs_f64() * 1000.0);
        }
        let max_ms = ready_ms.iter().copied().fold(0.0, f64::max);
        results.push(Scenario {
            scenario: name,
            median_ms: median(&ready_ms),
            p90_ms: percentile(&ready_ms, 90.0),
            max_ms,
            meets_target: max_ms < TARGET_MS,
            ready_ms,
        });
    }
    let report = Report {
        runs: options.runs,
        gateway_tls: options.tls,
        target_ms: TARGET_MS,
        binary: build_kind(&options.bin_dir),
        results,
    };
    print_table(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// "release" or "debug" from the directory cargo put the binary in.
fn build_kind(bin_dir: &Path) -> String {
    let dir = std::fs::canonicalize(bin_dir).unwrap_or_else(|_| bin_dir.to_owned());
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("deps") => dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("unknown")
            .to_owned(),
        Some(name) => name.to_owned(),
        None => "unknown".into(),
    }
}

/// Spawns `postern-gateway serve`, polls its /readyz until 200, then stops it
/// with SIGTERM and waits for it to exit (so runs never overlap).
async fn time_to_ready(gateway: &Path, vars: &[(&str, String)]) -> anyhow::Result<Duration> {
    let internal = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let started = Instant::now();
    let mut child = Command::new(gateway)
        .arg("serve")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("POSTERN_LISTEN_ADDR", "127.0.0.1:0")
        .env("POSTERN_INTERNAL_ADDR", internal.to_string())
        .env("POSTERN_DRAIN_GRACE_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting postern-gateway")?;
    let deadline = started + Duration::from_secs(20);
    let elapsed = loop {
        if readyz_ok(internal).await {
            break started.elapsed();
        }
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).await?;
            }
            bail!("postern-gateway exited before it was ready ({status}): {stderr}");
        }
        if Instant::now() > deadline {
            bail!("postern-gateway was not ready within 20 s");
        }
        // Nothing to wait on before the port exists: poll finely, as a probe would.
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    stop(&mut child).await?;
    Ok(elapsed)
}

async fn readyz_ok(addr: SocketAddr) -> bool {
    let check = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut status = [0u8; 12];
        socket.read_exact(&mut status).await?;
        Ok::<_, std::io::Error>(&status == b"HTTP/1.1 200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(true))
    )
}

async fn stop(child: &mut Child) -> anyhow::Result<()> {
    let pid = child.id().context("gateway pid")?.to_string();
    Command::new("kill").args(["-TERM", &pid]).status().await?;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .context("postern-gateway did not exit within 20 s of SIGTERM")??;
    if !status.success() {
        bail!("postern-gateway exited with {status} after SIGTERM");
    }
    Ok(())
}

/// A fresh database for the policy store on the local Postgres
/// (POSTERN_TEST_PG_HOST/PORT, user postgres, trust); returns its URL.
async fn fresh_database() -> anyhow::Result<String> {
    let host = std::env::var("POSTERN_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("POSTERN_TEST_PG_PORT").unwrap_or_else(|_| "5432".into());
    for sql in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        let output = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &host,
                "-p",
                &port,
            ])
            .args(["-U", "postgres", "-d", "postgres", "-c", &sql])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running psql (the Postgres client) for the startup database")?;
        if !output.status.success() {
            bail!(
                "psql at {host}:{port}: {sql}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(format!("postgres://postgres@{host}:{port}/{DATABASE}"))
}

fn print_table(report: &Report) {
    println!(
        "postern-gateway serve ({}, {} build): spawn to first 200 from /readyz, {} runs each",
        if report.gateway_tls { "TLS" } else { "h2c" },
        report.binary,
        report.runs
    );
    println!();
    println!(
        "| store | median ms | p90 ms | max ms | under {} ms |",
        report.target_ms
    );
    println!("| --- | ---: | ---: | ---: | --- |");
    for result in &report.results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} |",
            result.scenario,
            result.median_ms,
            result.p90_ms,
            result.max_ms,
            if result.meets_target { "yes" } else { "no" }
        );
    }
}
