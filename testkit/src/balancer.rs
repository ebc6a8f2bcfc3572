//! A TCP load balancer on loopback: each new connection goes to the next live
//! backend in turn, as an L4 balancer in front of gateway replicas would.
//! Backends can be taken out and put back while it runs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub struct Balancer {
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends = Arc::new(Mutex::new(backends));
        let shared = backends.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let candidates = shared.lock().unwrap().clone();
                next = next.wrapping_add(1);
                tokio::spawn(forward(client, candidates, next));
            }
        });
        Self { addr, backends }
    }

    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        *self.backends.lock().unwrap() = backends;
    }

    pub fn remove_backend(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().retain(|b| *b != backend);
    }

    pub fn add_backend(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().push(backend);
    }
}

/// Connects to the backends in turn from `start` until one answers, then
/// pipes both ways; a client whose every backend is down is closed.
async fn forward(mut client: TcpStream, backends: Vec<SocketAddr>, start: usize) {
    for i in 0..backends.len() {
        let backend = backends[(start + i) % backends.len()];
        let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(backend));
        if let Ok(Ok(mut server)) = connect.await {
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            return;
        }
    }
}
