//! Bulk throughput through one session, each way, for three paths measured in
//! the same run: direct, `ssh -L`, and Postern (TLS to the gateway, TLS to the agent).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::median;
use crate::{procs, target};

/// The three paths the baseline benchmarks compare (bulk, pgbench).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path3 {
    Direct,
    SshL,
    Postern,
}

impl Path3 {
    pub fn label(self) -> &'static str {
        match self {
            Path3::Direct => "direct",
            Path3::SshL => "ssh -L",
            Path3::Postern => "postern",
        }
    }
}

#[derive(Serialize)]
struct Result3 {
    path: Path3,
    upload_mb_s: Vec<f64>,
    download_mb_s: Vec<f64>,
    upload_median: f64,
    download_median: f64,
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

pub async fn run(
    bytes: u64,
    rounds: usize,
    bin_dir: &Path,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    ensure!(rounds > 0, "--rounds must be at least 1");
    let dir = tempfile::tempdir()?;
    let target = target::start().await?;
    eprintln!(
        "starting ssh -L baseline and Postern (release binaries from {})",
        bin_dir.display()
    );
    let ssh = procs::ssh_tunnel(dir.path(), target).await?;
    let postern = procs::postern(bin_dir, dir.path(), target, &["--kind", "tcp"]).await?;
    let paths = [
        (Path3::Direct, target),
        (Path3::SshL, ssh.local),
        (Path3::Postern, postern.local),
    ];

    // Warm up every path once (TLS sessions, TCP windows, page cache).
    for (_, addr) in paths {
        upload(addr, 64 << 20, &target::pattern()).await?;
        download(addr, 64 << 20).await?;
    }
    let data = target::pattern();
    let mut up = vec![Vec::new(); 3];
    let mut down = vec![Vec::new(); 3];
    for round in 0..rounds {
        // Rotate the order each round so slow drift of the machine cancels out.
        for i in 0..3 {
            let index = (i + round) % 3;
            let (path, addr) = paths[index];
            let u = upload(addr, bytes, &data).await?;
            let d = download(addr, bytes).await?;
            eprintln!(
                "round {}/{rounds} {:<8} upload {u:>8.0} MB/s  download {d:>8.0} MB/s",
                round + 1,
                path.label()
            );
            up[index].push(u);
            down[index].push(d);
        }
    }
    let results: Vec<Result3> = paths
        .iter()
        .enumerate()
        .map(|(i, (path, _))| Result3 {
            path: *path,
            upload_median: median(&up[i]),
            download_median: median(&down[i]),
            upload_mb_s: up[i].clone(),
            download_mb_s: down[i].clone(),
        })
        .collect();
    let ssh = &results[1];
    println!(
        "\nBulk throughput, one session, {} MiB per measurement, median of {rounds}:\n",
        bytes >> 20
    );
    println!("| path | upload MB/s | download MB/s | upload vs ssh -L | download vs ssh -L |");
    println!("|---|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            r.path.label(),
            r.upload_median,
            r.download_median,
            r.upload_median / ssh.upload_median,
            r.download_median / ssh.download_median
        );
    }
    if let Some(path) = json {
        let report = serde_json::json!({ "scenario": "bulk", "bytes": bytes, "rounds": rounds, "results": results });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
