//! A TCP proxy in front of one backend that a test can cut (every open
//! connection dropped, new ones closed at once, as a network partition or a
//! dead server would look) and restore.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CuttableProxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Bumped on every cut: open pipes end when it changes.
    cuts: watch::Sender<u64>,
}

impl CuttableProxy {
    pub async fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accepting = open.clone();
        let subscribe = cuts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(client, backend, subscribe.subscribe()));
            }
        });
        Self { addr, open, cuts }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

async fn pipe(mut client: TcpStream, backend: SocketAddr, mut cuts: watch::Receiver<u64>) {
    let _ = client.set_nodelay(true);
    let Ok(mut server) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    cuts.mark_unchanged();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {}
    }
}
