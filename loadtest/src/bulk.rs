//! Bulk throughput, each way, through 1 and through N parallel sessions, for
//! three paths measured in the same run: direct, `ssh -L`, and Postern (TLS
//! to the gateway, TLS to the agent). N sessions share the bytes; the rate is
//! all bytes over the wall time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::md;
use crate::outcome::{Common, Outcome, Plot};
use crate::procs::{Baselines, Path3, rotation};
use crate::stats::median;
use crate::target;

/// The target: one session through Postern, TLS on every hop, moves at least this multiple of ssh -L.
pub const TARGET_VS_SSH: f64 = 2.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// MiB moved per measurement and direction, shared by the parallel sessions [default: 1024; --quick 16].
    #[arg(long)]
    pub mib: Option<u64>,
    /// Measurements per path and direction; paths alternate so drift cancels [default: 3; --quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Parallel sessions per measurement: each count is measured.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub streams: Vec<usize>,
    /// Small sizes for a smoke test that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub common: Common,
}

pub struct Options {
    pub bytes: u64,
    pub rounds: usize,
    pub streams: Vec<usize>,
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            bytes: self.mib.unwrap_or(if self.quick { 16 } else { 1024 }) << 20,
            rounds: self.rounds.unwrap_or(if self.quick { 1 } else { 3 }),
            streams: self.streams.clone(),
        }
    }
}

#[derive(Serialize)]
struct Measured {
    streams: usize,
    path: Path3,
    upload_mb_s: Vec<f64>,
    download_mb_s: Vec<f64>,
    upload_median: f64,
    download_median: f64,
    upload_vs_ssh: f64,
    download_vs_ssh: f64,
}

#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    bytes: u64,
    rounds: usize,
    results: Vec<Measured>,
}

pub async fn upload(addr: SocketAddr, bytes: u64, data: &[u8]) -> anyhow::Result<f64> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let started = Instant::now();
    socket.write_u8(b'U').await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        socket.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    socket.shutdown().await?;
    let received = socket
        .read_u64()
        .await
        .context("reading the upload count")?;
    ensure!(
        received == bytes,
        "the target received {received} of {bytes} bytes"
    );
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

pub async fn download(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let started = Instant::now();
    socket.write_u8(b'D').await?;
    socket.write_u64(bytes).await?;
    let mut buf = vec![0u8; target::CHUNK];
    let mut received = 0u64;
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    ensure!(received == bytes, "received {received} of {bytes} bytes");
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// `bytes` split over `streams` parallel sessions, one way; aggregate MB/s.
async fn parallel(
    addr: SocketAddr,
    bytes: u64,
    streams: usize,
    up: bool,
    data: &Arc<Vec<u8>>,
) -> anyhow::Result<f64> {
    let share = bytes / streams as u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let data = data.clone();
        tasks.spawn(async move {
            if up {
                upload(addr, share, &data).await
            } else {
                download(addr, share).await
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok((share * streams as u64) as f64 / 1e6 / started.elapsed().as_secs_f64())
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    let baselines = Baselines::start(&args.common.bin_dir).await?;
    measure(&baselines, &args.options())
        .await?
        .finish(args.common.json.as_deref())
}

pub async fn measure(baselines: &Baselines, options: &Options) -> anyhow::Result<Outcome> {
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(
        !options.streams.is_empty() && options.streams.iter().all(|s| *s > 0),
        "--streams needs positive counts"
    );
    let paths = baselines.paths();
    let data = Arc::new(target::pattern());
    // Warm up every path once (TLS sessions, TCP windows, page cache).
    let warmup = options.bytes.min(64 << 20);
    for (_, addr) in paths {
        upload(addr, warmup, &data).await?;
        download(addr, warmup).await?;
    }
    // [streams][path] -> samples
    let mut up = vec![vec![Vec::new(); 3]; options.streams.len()];
    let mut down = vec![vec![Vec::new(); 3]; options.streams.len()];
    for round in 0..options.rounds {
        for (s, &streams) in options.streams.iter().enumerate() {
            for index in rotation(round, 3) {
                let (path, addr) = paths[index];
                let u = parallel(addr, options.bytes, streams, true, &data).await?;
                let d = parallel(addr, options.bytes, streams, false, &data).await?;
                eprintln!(
                    "bulk round {}/{} {streams:>2} streams {:<8} upload {u:>8.0} MB/s  download {d:>8.0} MB/s",
                    round + 1,
                    options.rounds,
                    path.label()
                );
                up[s][index].push(u);
                down[s][index].push(d);
            }
        }
    }
    let mut results = Vec::new();
    for (s, &streams) in options.streams.iter().enumerate() {
        let ssh_up = median(&up[s][1]);
        let ssh_down = median(&down[s][1]);
        for (index, (path, _)) in paths.iter().enumerate() {
            let upload_median = median(&up[s][index]);
            let download_median = median(&down[s][index]);
            results.push(Measured {
                streams,
                path: *path,
                upload_mb_s: up[s][index].clone(),
                download_mb_s: down[s][index].clone(),
                upload_median,
                download_median,
                upload_vs_ssh: upload_median / ssh_up,
                download_vs_ssh: download_median / ssh_down,
            });
        }
    }
    let mut markdown = String::new();
    md!(
        markdown,
        "Bulk throughput, {} MiB per measurement shared by the parallel sessions, median of {}:\n",
        options.bytes >> 20,
        options.rounds
    );
    md!(
        markdown,
        "| sessions | path | upload MB/s | download MB/s | upload vs ssh -L | download vs ssh -L |"
    );
    md!(markdown, "|---:|---|---:|---:|---:|---:|");
    for r in &results {
        md!(
            markdown,
            "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            r.streams,
            r.path.label(),
            r.upload_median,
            r.download_median,
            r.upload_vs_ssh,
            r.download_vs_ssh
        );
    }
    let mut groups = Vec::new();
    for &streams in &options.streams {
        for (direction, get) in [
            (
                "upload",
                (|r: &Measured| r.upload_median) as fn(&Measured) -> f64,
            ),
            ("download", |r: &Measured| r.download_median),
        ] {
            let bars = results
                .iter()
                .filter(|r| r.streams == streams)
                .map(|r| (r.path.label().to_owned(), get(r)))
                .collect();
            let sessions = if streams == 1 { "session" } else { "sessions" };
            groups.push((format!("{streams} {sessions}, {direction}"), bars));
        }
    }
    let one = results
        .iter()
        .find(|r| r.streams == 1 && r.path == Path3::Postern)
        .map(|r| (r.upload_vs_ssh, r.download_vs_ssh));
    let report = Report {
        scenario: "bulk",
        bytes: options.bytes,
        rounds: options.rounds,
        results,
    };
    let mut outcome = Outcome::new("bulk", &report)?;
    outcome.markdown = markdown;
    outcome.plots.push(Plot::Bars {
        file: "throughput.svg",
        title: "Bulk throughput (median MB/s)".into(),
        unit: "MB/s",
        groups,
    });
    if let Some((u, d)) = one {
        let ok = u >= TARGET_VS_SSH && d >= TARGET_VS_SSH;
        outcome.verdict(
            format!("bulk, one session, TLS every hop ≥ {TARGET_VS_SSH}× ssh -L"),
            format!("upload {u:.2}×, download {d:.2}× ssh -L"),
            ok,
        );
    }
    Ok(outcome)
}
