//! Helpers for Postern's end-to-end tests: real loopback servers on ephemeral
//! ports and deterministic data, shared by the test suites of several crates.
#![forbid(unsafe_code)]

pub mod balancer;
pub mod exposition;
pub mod oidc;
pub mod postgres;
pub mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TCP echo server; returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// A plain HTTP/1.1 GET, enough for health and metrics endpoints.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    response
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough to stream gigabytes.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let value = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
    }
}

/// Polls `check` until it yields a value; fails after 15 s. For conditions
/// with no event to wait on (a record written by a background task).
pub async fn wait_for<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `message` through a local port and expects it echoed back.
pub async fn echo_once(port: SocketAddr, message: &[u8]) {
    let mut socket = tokio::net::TcpStream::connect(port).await.unwrap();
    socket.write_all(message).await.unwrap();
    socket.shutdown().await.unwrap();
    let mut reply = Vec::new();
    socket.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, message);
}

/// Sends SIGTERM to `child`, as ECS, Kubernetes or a supervisor would.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the process is running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("running kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
}
