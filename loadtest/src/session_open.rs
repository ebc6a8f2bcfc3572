//! Session-open rate and latency: each TCP connection accepted by `postern
//! connect` is a new session (through the gateway to the agent and on to the
//! target). Timed from the TCP connect to the first echoed byte; sequential,
//! and with several opening at once; against direct and `ssh -L` (a new
//! channel per connection) in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::md;
use crate::outcome::{Common, Outcome, Plot};
use crate::procs::{Baselines, Path3, rotation};
use crate::stats::{self, Latency, median};

/// The target for opening one session, p99 (sequential opens).
pub const TARGET_P99_MS: f64 = 10.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Sessions opened per measurement [default: 1000; --quick 50].
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Sessions opening at once in the concurrent measurement.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Measurements per path and mode; paths alternate so drift cancels [default: 3; --quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub common: Common,
}

pub struct Options {
    pub sessions: usize,
    pub concurrency: usize,
    pub rounds: usize,
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            sessions: self.sessions.unwrap_or(if self.quick { 50 } else { 1000 }),
            concurrency: self.concurrency,
            rounds: self.rounds.unwrap_or(if self.quick { 1 } else { 3 }),
        }
    }
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    let baselines = Baselines::start(&args.common.bin_dir).await?;
    measure(&baselines, &args.options())
        .await?
        .finish(args.common.json.as_deref())
}

/// One session: connect, ask the target to echo, send a byte, read it back, close.
async fn open_one(addr: SocketAddr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    socket.write_all(b"E*").await?;
    let echoed = socket.read_u8().await.context("reading the echoed byte")?;
    let elapsed = started.elapsed();
    ensure!(echoed == b'*', "the echo came back different");
    socket.shutdown().await?;
    Ok(elapsed)
}

/// `sessions` sessions, `concurrency` at a time; sessions per second.
async fn open_many(
    addr: SocketAddr,
    sessions: usize,
    concurrency: usize,
    histogram: &mut Histogram<u64>,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, sessions) {
        let next = next.clone();
        workers.spawn(async move {
            let mut h = stats::histogram();
            while next.fetch_add(1, Ordering::Relaxed) < sessions {
                let elapsed = tokio::time::timeout(Duration::from_secs(30), open_one(addr))
                    .await
                    .context("a session did not open within 30 s")??;
                stats::record(&mut h, elapsed);
            }
            Ok::<_, anyhow::Error>(h)
        });
    }
    while let Some(done) = workers.join_next().await {
        histogram.add(&done??)?;
    }
    Ok(sessions as f64 / started.elapsed().as_secs_f64())
}

#[derive(Serialize)]
struct ModeResult {
    path: Path3,
    concurrency: usize,
    sessions_per_s: Vec<f64>,
    median_sessions_per_s: f64,
    /// Every measurement's sessions in one distribution.
    latency: Latency,
    p99_us: Vec<f64>,
    median_p99_us: f64,
    distribution: Vec<(f64, f64)>,
}

#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    sessions: usize,
    rounds: usize,
    results: Vec<ModeResult>,
    target_p99_ms: f64,
}

pub async fn measure(baselines: &Baselines, options: &Options) -> anyhow::Result<Outcome> {
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(options.sessions > 0, "--sessions must be at least 1");
    let paths = baselines.paths();
    let modes = [1, options.concurrency.max(1)];
    for (_, addr) in paths {
        open_many(addr, 20, 1, &mut stats::histogram()).await?;
    }
    // [mode][path]
    let mut merged: Vec<Vec<Histogram<u64>>> = modes
        .iter()
        .map(|_| paths.iter().map(|_| stats::histogram()).collect())
        .collect();
    let mut rates = vec![vec![Vec::new(); 3]; 2];
    let mut p99 = vec![vec![Vec::new(); 3]; 2];
    for round in 0..options.rounds {
        for (m, &concurrency) in modes.iter().enumerate() {
            for index in rotation(round, 3) {
                let (path, addr) = paths[index];
                let mut h = stats::histogram();
                let rate = open_many(addr, options.sessions, concurrency, &mut h).await?;
                let l = Latency::of(&h);
                eprintln!(
                    "session-open round {}/{} {concurrency:>2} at once {:<8} {rate:>7.0} sessions/s  p50 {:>6.0} µs  p99 {:>6.0} µs",
                    round + 1,
                    options.rounds,
                    path.label(),
                    l.p50_us,
                    l.p99_us
                );
                merged[m][index].add(&h)?;
                rates[m][index].push(rate);
                p99[m][index].push(l.p99_us);
            }
        }
    }
    let mut results = Vec::new();
    for (m, &concurrency) in modes.iter().enumerate() {
        for (index, (path, _)) in paths.iter().enumerate() {
            results.push(ModeResult {
                path: *path,
                concurrency,
                median_sessions_per_s: median(&rates[m][index]),
                sessions_per_s: rates[m][index].clone(),
                latency: Latency::of(&merged[m][index]),
                median_p99_us: median(&p99[m][index]),
                p99_us: p99[m][index].clone(),
                distribution: stats::curve(&merged[m][index]),
            });
        }
    }
    let mut markdown = String::new();
    md!(
        markdown,
        "Session open (TCP connect to the first echoed byte, a new session each), {} sessions \
         per measurement, {} measurements per path and mode:\n",
        options.sessions,
        options.rounds
    );
    md!(
        markdown,
        "| at once | path | sessions/s | p50 ms | p90 ms | p99 ms | max ms | sessions/s vs direct |"
    );
    md!(markdown, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let direct = results
            .iter()
            .find(|d| d.concurrency == r.concurrency && d.path == Path3::Direct)
            .map_or(f64::NAN, |d| d.median_sessions_per_s);
        let l = &r.latency;
        md!(
            markdown,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x |",
            r.concurrency,
            r.path.label(),
            r.median_sessions_per_s,
            l.p50_us / 1000.0,
            l.p90_us / 1000.0,
            l.p99_us / 1000.0,
            l.max_us / 1000.0,
            r.median_sessions_per_s / direct
        );
    }
    let curves = results
        .iter()
        .map(|r| {
            (
                format!("{}, {} at once", r.path.label(), r.concurrency),
                r.distribution.clone(),
            )
        })
        .collect();
    let postern = results
        .iter()
        .find(|r| r.concurrency == 1 && r.path == Path3::Postern)
        .map(|r| (r.latency.p99_us / 1000.0, r.median_p99_us / 1000.0));
    let report = Report {
        scenario: "session_open",
        sessions: options.sessions,
        rounds: options.rounds,
        results,
        target_p99_ms: TARGET_P99_MS,
    };
    let mut outcome = Outcome::new("session_open", &report)?;
    outcome.markdown = markdown;
    outcome.plots.push(Plot::Percentiles {
        file: "session-open.svg",
        title: "Session open latency (TCP connect to first echoed byte)".into(),
        curves,
    });
    if let Some((p99_ms, median_p99_ms)) = postern {
        outcome.verdict(
            format!("session open p99 ≤ {TARGET_P99_MS} ms (through postern connect, one at a time)"),
            format!(
                "p99 {p99_ms:.2} ms over all sessions (median of the per-measurement p99s {median_p99_ms:.2} ms)"
            ),
            p99_ms <= TARGET_P99_MS,
        );
    }
    Ok(outcome)
}
