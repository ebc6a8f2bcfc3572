//! A TCP load balancer in front of the replicas, as production has one: each
//! accepted connection goes to the next backend in turn, skipping any that
//! refuses, and TLS passes through untouched (agents still verify the
//! gateway's certificate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub struct Balancer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    /// `https://localhost:PORT`: a name on the dev certificate.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

pub async fn start(backends: Vec<SocketAddr>) -> anyhow::Result<Balancer> {
    anyhow::ensure!(!backends.is_empty(), "a balancer needs backends");
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let backends = backends.clone();
            let first = next.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                for i in 0..backends.len() {
                    let backend = backends[(first + i) % backends.len()];
                    let dial =
                        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(backend));
                    if let Ok(Ok(server)) = dial.await {
                        relay(client, server).await;
                        return;
                    }
                }
            });
        }
    });
    Ok(Balancer { addr, task })
}

/// Copies both ways until either side closes; a reset on one side closes the other.
async fn relay(mut client: TcpStream, mut server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
