//! A session whose user and agent are on the same replica (local) against one
//! spliced between two replicas (peer; relay once it exists): bulk throughput
//! each way and small request/response round trips, measured in the same run
//! with the paths alternating round by round.

mod report;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};

pub use setup::{AgentProgram, PathKind};

use crate::outcome::Outcome;
use crate::{bulk, target};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// MiB moved per measurement and direction [default: 1024; --quick 16].
    #[arg(long)]
    pub mib: Option<u64>,
    /// Measurements per path; paths alternate so drift cancels [default: 3; --quick 2].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Sequential round trips per measurement [default: 20000; --quick 300].
    #[arg(long)]
    pub round_trips: Option<usize>,
    /// Size of each request and of its echoed answer.
    #[arg(long, default_value_t = 64)]
    pub request_bytes: usize,
    /// Paths to measure, local first (the baseline): local, peer,
    /// peer-plaintext, relay, and local-socat (local behind one plain `socat`
    /// relay: the floor one more relaying process sets; needs socat).
    #[arg(long, value_delimiter = ',', default_value = "local,peer")]
    pub paths: Vec<PathKind>,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Which program runs the agent.
    #[arg(long, value_enum, default_value = "postern-agent")]
    pub agent: AgentProgram,
    #[command(flatten)]
    pub common: crate::outcome::Common,
}

impl Args {
    pub fn options(&self) -> Options {
        let mib = self.mib.unwrap_or(if self.quick { 16 } else { 1024 });
        Options {
            bytes: mib << 20,
            warmup_bytes: (mib << 20).min(64 << 20),
            rounds: self.rounds.unwrap_or(if self.quick { 2 } else { 3 }),
            round_trips: self
                .round_trips
                .unwrap_or(if self.quick { 300 } else { 20_000 }),
            request_bytes: self.request_bytes,
            paths: self.paths.clone(),
            bin_dir: self.common.bin_dir.clone(),
            agent: self.agent,
        }
    }
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    measure(&args.options())
        .await?
        .finish(args.common.json.as_deref())
}

pub struct Options {
    pub bytes: u64,
    pub warmup_bytes: u64,
    pub rounds: usize,
    pub round_trips: usize,
    pub request_bytes: usize,
    pub paths: Vec<PathKind>,
    pub bin_dir: PathBuf,
    pub agent: AgentProgram,
}

/// Sequential request/response round trips through one session.
pub struct RoundTrips {
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

use crate::latency::WARMUP_ROUND_TRIPS;

async fn round_trips(addr: SocketAddr, count: usize, size: usize) -> anyhow::Result<RoundTrips> {
    let mut histogram = crate::stats::histogram();
    let per_second = crate::latency::round_trips(addr, count, size, &mut histogram).await?;
    let latency = crate::stats::Latency::of(&histogram);
    Ok(RoundTrips {
        per_second,
        p50_us: latency.p50_us,
        p99_us: latency.p99_us,
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

async fn sample(
    lane: &setup::Lane,
    bytes: u64,
    options: &Options,
    round_trips_count: usize,
    data: &[u8],
) -> anyhow::Result<Sample> {
    let label = lane.path.name();
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

pub async fn measure(options: &Options) -> anyhow::Result<Outcome> {
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
            lane.path.name(),
            lane.ingress
        );
    }
    let data = target::pattern();
    // Warm up every path (TLS sessions, peer connections, TCP windows) and
    // prove each one before measuring.
    for lane in &setup.lanes {
        sample(lane, options.warmup_bytes, options, 200, &data).await?;
    }
    let mut samples: Vec<Vec<Sample>> = setup.lanes.iter().map(|_| Vec::new()).collect();
    let count = setup.lanes.len();
    for round in 0..options.rounds {
        // Rotate the order each round so slow drift of the machine cancels out.
        for i in 0..count {
            let index = (i + round) % count;
            let lane = &setup.lanes[index];
            let sample = sample(lane, options.bytes, options, options.round_trips, &data).await?;
            eprintln!(
                "splice round {}/{} {:<5} upload {:>6.0} MB/s  download {:>6.0} MB/s  {:>6.0} round trips/s  p50 {:>5.0} µs  p99 {:>5.0} µs",
                round + 1,
                options.rounds,
                lane.path.name(),
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
    let report = report::Report::new(options, &setup.lanes, &samples, sessions);
    let outcome = report.outcome()?;
    drop(setup);
    Ok(outcome)
}
