//! Request/response latency over one session: small requests echoed back one
//! at a time, recorded in HDR histograms, for direct, `ssh -L` and Postern.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::ensure;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::md;
use crate::outcome::{Common, Outcome, Plot};
use crate::procs::{Baselines, Path3, rotation};
use crate::stats::{self, Latency, median};

/// Round trips sent before measuring: the first one waits for the session to open.
pub const WARMUP_ROUND_TRIPS: usize = 50;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Sequential round trips per measurement [default: 20000; --quick 300].
    #[arg(long)]
    pub round_trips: Option<usize>,
    /// Measurements (one session each) per path; paths alternate so drift cancels [default: 3; --quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Size of each request and of its echoed answer.
    #[arg(long, default_value_t = 64)]
    pub request_bytes: usize,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub common: Common,
}

pub struct Options {
    pub round_trips: usize,
    pub rounds: usize,
    pub request_bytes: usize,
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            round_trips: self
                .round_trips
                .unwrap_or(if self.quick { 300 } else { 20_000 }),
            rounds: self.rounds.unwrap_or(if self.quick { 1 } else { 3 }),
            request_bytes: self.request_bytes,
        }
    }
}

/// Opens a session to the echo target, warms it up, then times `count`
/// sequential round trips of `size` bytes into `histogram`; returns round trips per second.
pub async fn round_trips(
    addr: SocketAddr,
    count: usize,
    size: usize,
    histogram: &mut Histogram<u64>,
) -> anyhow::Result<f64> {
    ensure!(size > 0, "requests need at least one byte");
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    socket.write_u8(b'E').await?;
    let request: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut reply = vec![0u8; size];
    for _ in 0..WARMUP_ROUND_TRIPS {
        socket.write_all(&request).await?;
        socket.read_exact(&mut reply).await?;
    }
    let started = Instant::now();
    for _ in 0..count {
        let sent = Instant::now();
        socket.write_all(&request).await?;
        socket.read_exact(&mut reply).await?;
        stats::record(histogram, sent.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(reply == request, "the echo came back different");
    socket.shutdown().await?;
    Ok(count as f64 / elapsed)
}

#[derive(Serialize)]
struct PathResult {
    path: Path3,
    /// Round trips per second, per measurement.
    round_trips_per_s: Vec<f64>,
    median_round_trips_per_s: f64,
    /// Every measurement's round trips in one distribution.
    latency: Latency,
    /// p50 and p99 of each measurement, and their medians.
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    median_p50_us: f64,
    median_p99_us: f64,
    /// p50 and p99 against ssh -L (lower is better).
    p50_vs_ssh: f64,
    p99_vs_ssh: f64,
    /// The distribution: (percentile, µs).
    distribution: Vec<(f64, f64)>,
}

#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    round_trips: usize,
    rounds: usize,
    request_bytes: usize,
    results: Vec<PathResult>,
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    let baselines = Baselines::start(&args.common.bin_dir).await?;
    measure(&baselines, &args.options())
        .await?
        .finish(args.common.json.as_deref())
}

pub async fn measure(baselines: &Baselines, options: &Options) -> anyhow::Result<Outcome> {
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(options.round_trips > 0, "--round-trips must be at least 1");
    let paths = baselines.paths();
    for (_, addr) in paths {
        round_trips(addr, 100, options.request_bytes, &mut stats::histogram()).await?;
    }
    let mut merged: Vec<Histogram<u64>> = paths.iter().map(|_| stats::histogram()).collect();
    let mut rates = vec![Vec::new(); 3];
    let mut p50 = vec![Vec::new(); 3];
    let mut p99 = vec![Vec::new(); 3];
    for round in 0..options.rounds {
        for index in rotation(round, 3) {
            let (path, addr) = paths[index];
            let mut h = stats::histogram();
            let rate =
                round_trips(addr, options.round_trips, options.request_bytes, &mut h).await?;
            let l = Latency::of(&h);
            eprintln!(
                "latency round {}/{} {:<8} {rate:>7.0} round trips/s  p50 {:>6.0} µs  p99 {:>6.0} µs  p99.9 {:>6.0} µs",
                round + 1,
                options.rounds,
                path.label(),
                l.p50_us,
                l.p99_us,
                l.p99_9_us
            );
            merged[index].add(&h)?;
            rates[index].push(rate);
            p50[index].push(l.p50_us);
            p99[index].push(l.p99_us);
        }
    }
    let ssh_p50 = median(&p50[1]);
    let ssh_p99 = median(&p99[1]);
    let results: Vec<PathResult> = paths
        .iter()
        .enumerate()
        .map(|(i, (path, _))| PathResult {
            path: *path,
            median_round_trips_per_s: median(&rates[i]),
            round_trips_per_s: rates[i].clone(),
            latency: Latency::of(&merged[i]),
            median_p50_us: median(&p50[i]),
            median_p99_us: median(&p99[i]),
            p50_vs_ssh: median(&p50[i]) / ssh_p50,
            p99_vs_ssh: median(&p99[i]) / ssh_p99,
            p50_us: p50[i].clone(),
            p99_us: p99[i].clone(),
            distribution: stats::curve(&merged[i]),
        })
        .collect();
    let mut markdown = String::new();
    md!(
        markdown,
        "Request/response latency over one session: {} sequential {}-byte round trips per \
         measurement, {} measurements per path (percentiles over all of them; ratios of the \
         per-measurement medians):\n",
        options.round_trips,
        options.request_bytes,
        options.rounds
    );
    md!(
        markdown,
        "| path | round trips/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | p50 vs ssh -L | p99 vs ssh -L |"
    );
    md!(markdown, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let l = &r.latency;
        md!(
            markdown,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            r.path.label(),
            r.median_round_trips_per_s,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p99_9_us,
            l.max_us,
            r.p50_vs_ssh,
            r.p99_vs_ssh
        );
    }
    let curves = results
        .iter()
        .map(|r| (r.path.label().to_owned(), r.distribution.clone()))
        .collect();
    let report = Report {
        scenario: "latency",
        round_trips: options.round_trips,
        rounds: options.rounds,
        request_bytes: options.request_bytes,
        results,
    };
    let mut outcome = Outcome::new("latency", &report)?;
    outcome.markdown = markdown;
    outcome.plots.push(Plot::Percentiles {
        file: "latency.svg",
        title: format!(
            "Round-trip latency, one session, {}-byte requests",
            options.request_bytes
        ),
        curves,
    });
    Ok(outcome)
}
