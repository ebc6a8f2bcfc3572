//! A session whose user and agent are on the same replica (local) against one
//! spliced between two replicas (peer; relay once it exists): bulk throughput
//! each way and small request/response round trips, measured in the same run
//! with the paths alternating round by round.

mod report;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use setup::{AgentProgram, PathKind};

use crate::stats::percentile;
use crate::{bulk, target};

pub struct Options {
    pub bytes: u64,
    pub warmup_bytes: u64,
    pub rounds: usize,
    pub round_trips: usize,
    pub request_bytes: usize,
    pub paths: Vec<PathKind>,
    pub bin_dir: PathBuf,
    pub agent: AgentProgram,
    pub json: Option<PathBuf>,
}

/// Sequential request/response round trips through one session.
pub struct RoundTrips {
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Round trips sent before measuring: the first one waits for the session to open.
const WARMUP_ROUND_TRIPS: usize = 50;

async fn round_trips(addr: SocketAddr, count: usize, size: usize) -> anyhow::Result<RoundTrips> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    socket.write_u8(b'E').await?;
    let request: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut reply = vec![0u8; size];
    for _ in 0..WARMUP_ROUND_TRIPS {
        socket.write_all(&request).await?;
        socket.read_exact(&mut reply).await?;
    }
    let mut latencies_us = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let sent = Instant::now();
        socket.write_all(&request).await?;
        socket.read_exact(&mut reply).await?;
        latencies_us.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(reply == request, "the echo came back different");
    socket.shutdown().await?;
    Ok(RoundTrips {
        per_second: count as f64 / elapsed,
        p50_us: percentile(&latencies_us, 50.0),
        p99_us: percentile(&latencies_us, 99.0),
    })
}

/// A bound on one measurement, so a stuck gateway fails the run instead of hanging it.
fn limit(bytes: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_secs(bytes / 5_000_000)
}

async fn bounded<T>(
    what: &str,
    bytes: u64,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit(bytes), work)
        .await
        .with_context(|| format!("{what} did not finish within {:?}", limit(bytes)))?
        .with_context(|| what.to_owned())
}

/// One round of one path: three sessions (upload, download, round trips).
struct Sample {
    upload: f64,
    download: f64,
    rtt: RoundTrips,
    /// CPU time per process (in `setup::ROLES` order) per 10^9 bytes moved
    /// by the upload and the download together.
    cpu_s_per_gb: Vec<f64>,
    /// CPU time per process per round trip (session open and close included).
    cpu_us_per_round_trip: Vec<f64>,
}

const SESSIONS_PER_SAMPLE: u64 = 3;

async fn measure(
    lane: &setup::Lane,
    bytes: u64,
    options: &Options,
    round_trips_count: usize,
    data: &[u8],
) -> anyhow::Result<Sample> {
    let label = lane.path.label();
    let before = lane.splice_counts().await?;
    let cpu_start = lane.cpu_seconds()?;
    let upload = bounded(
        &format!("{label} upload"),
        bytes,
        bulk::upload(lane.local, bytes, data),
    )
    .await?;
    let download = bounded(
        &format!("{label} download"),
        bytes,
        bulk::download(lane.local, bytes),
    )
    .await?;
    let cpu_bulk = lane.cpu_seconds()?;
    let rtt = bounded(
        &format!("{label} round trips"),
        0,
        round_trips(lane.local, round_trips_count, options.request_bytes),
    )
    .await?;
    let cpu_end = lane.cpu_seconds()?;
    lane.verify(before, SESSIONS_PER_SAMPLE).await?;
    let gigabytes = 2.0 * bytes as f64 / 1e9;
    let trips = (round_trips_count + WARMUP_ROUND_TRIPS) as f64;
    Ok(Sample {
        upload,
        download,
        rtt,
        cpu_s_per_gb: cpu_bulk
            .iter()
            .zip(&cpu_start)
            .map(|(end, start)| (end - start) / gigabytes)
            .collect(),
        cpu_us_per_round_trip: cpu_end
            .iter()
            .zip(&cpu_bulk)
            .map(|(end, start)| (end - start) * 1e6 / trips)
            .collect(),
    })
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(options.round_trips > 0, "--round-trips must be at least 1");
    ensure!(
        options.paths.first() == Some(&PathKind::Local),
        "--paths must start with local: it is the baseline the others are compared with"
    );
    let mut paths: Vec<PathKind> = Vec::new();
    for path in &options.paths {
        if !paths.contains(path) {
            paths.push(*path);
        }
    }
    let dir = tempfile::tempdir()?;
    let target = target::start().await?;
    eprintln!(
        "starting Redis, 2 gateway replicas per transport, the agent and postern connect \
         (binaries from {})",
        options.bin_dir.display()
    );
    let setup = setup::start(&paths, &options.bin_dir, options.agent, dir.path(), target).await?;
    for lane in &setup.lanes {
        eprintln!(
            "path {:<5} user enters replica {}, agent's tunnel on replica b",
            lane.path.label(),
            lane.ingress
        );
    }
    let data = target::pattern();
    // Warm up every path (TLS sessions, peer connections, TCP windows) and
    // prove each one before measuring.
    for lane in &setup.lanes {
        measure(lane, options.warmup_bytes, &options, 200, &data).await?;
    }
    let mut samples: Vec<Vec<Sample>> = setup.lanes.iter().map(|_| Vec::new()).collect();
    let count = setup.lanes.len();
    for round in 0..options.rounds {
        // Rotate the order each round so slow drift of the machine cancels out.
        for i in 0..count {
            let index = (i + round) % count;
            let lane = &setup.lanes[index];
            let sample = measure(lane, options.bytes, &options, options.round_trips, &data).await?;
            eprintln!(
                "round {}/{} {:<5} upload {:>6.0} MB/s  download {:>6.0} MB/s  {:>6.0} round trips/s  p50 {:>5.0} µs  p99 {:>5.0} µs",
                round + 1,
                options.rounds,
                lane.path.label(),
                sample.upload,
                sample.download,
                sample.rtt.per_second,
                sample.rtt.p50_us,
                sample.rtt.p99_us
            );
            samples[index].push(sample);
        }
    }
    let sessions = (options.rounds as u64 + 1) * SESSIONS_PER_SAMPLE;
    let report = report::Report::new(&options, &setup.lanes, &samples, sessions);
    report.print();
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(setup);
    Ok(())
}
