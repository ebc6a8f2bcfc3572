//! A throwaway `redis-server` for the replicas' routes, as production has.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::procs::free_port;

/// A throwaway `redis-server` on a free loopback port, with persistence off.
pub struct Redis {
    _child: Child,
    pub port: u16,
}

impl Redis {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

async fn answers_ping(port: u16) -> bool {
    let ping = async {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        socket.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        socket.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(true))
    )
}

pub async fn start(dir: &Path) -> anyhow::Result<Redis> {
    // The same override the test suite honours, else the PATH.
    let binary = std::env::var_os("POSTERN_TEST_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"));
    let port = free_port()?;
    let mut child = Command::new(&binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{} not found: install Redis (Debian/Ubuntu: apt-get install redis-server) \
                     or set POSTERN_TEST_REDIS_SERVER to a redis-server binary",
                    binary.display()
                )
            } else {
                anyhow::anyhow!("starting {}: {e}", binary.display())
            }
        })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers_ping(port).await {
        if let Some(status) = child.try_wait()? {
            bail!("redis-server on port {port} exited at start: {status}");
        }
        if Instant::now() > deadline {
            bail!("redis-server on port {port} did not answer PING within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Redis {
        _child: child,
        port,
    })
}
