//! Bytes through the whole path: local port → gateway (TLS) → agent → target.

mod common;

use common::{AGENT, Cluster, Prng, echo_server, wait_for};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_round_trip_is_recorded() {
    let cluster = Cluster::start().await;
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    let port = cluster.local_port("echo").await;

    let mut socket = TcpStream::connect(port).await.unwrap();
    socket.write_all(b"hello through postern").await.unwrap();
    socket.shutdown().await.unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "hello through postern");
    drop(socket);

    // The session record is written when both directions have ended.
    let record = wait_for(|| async {
        let sessions = cluster.sessions().await;
        sessions.into_iter().find(|s| s.outcome.is_some())
    })
    .await;
    assert_eq!(record.user, "alice");
    assert_eq!(record.connection, "echo");
    assert_eq!(record.agent, AGENT);
    assert_eq!((record.bytes_up, record.bytes_down), (21, 21));
    assert_eq!(record.outcome.as_deref(), Some("ok"));

    let metrics = cluster.metrics().await;
    assert!(
        metrics.contains("postern_sessions_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_session_bytes_total{direction=\"up\"} 21"),
        "{metrics}"
    );
    assert!(metrics.contains("postern_sessions_open 0"), "{metrics}");
    assert!(metrics.contains("postern_agents_connected 1"), "{metrics}");
}

/// A target that reads `len` bytes and answers with its SHA-256, while it
/// streams `len` seeded pseudo-random bytes back.
async fn hashing_source_sink(len: u64, seed: u64) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (mut read, mut write) = socket.into_split();
        let sender = tokio::spawn(async move {
            let mut prng = Prng::new(seed);
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                prng.fill(&mut buf[..n]);
                write.write_all(&buf[..n]).await.unwrap();
                left -= n as u64;
            }
            write
        });
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut received = 0u64;
        while received < len {
            let n = read.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended after {received} of {len} bytes");
            hasher.update(&buf[..n]);
            received += n as u64;
        }
        let mut write = sender.await.unwrap();
        write.write_all(&hasher.finalize()).await.unwrap();
        write.shutdown().await.unwrap();
    });
    addr
}

fn expected_digest(len: u64, seed: u64) -> Vec<u8> {
    let mut prng = Prng::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        prng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    hasher.finalize().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_each_way_through_one_session_checksummed() {
    const LEN: u64 = 1 << 30;
    let (up_seed, down_seed) = (0x5eed_0001, 0x5eed_0002);
    let cluster = Cluster::start().await;
    cluster
        .add_connection(
            "bulk",
            &hashing_source_sink(LEN, down_seed).await.to_string(),
            AGENT,
        )
        .await;
    let port = cluster.local_port("bulk").await;

    let socket = TcpStream::connect(port).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let uploader = tokio::spawn(async move {
        let mut prng = Prng::new(up_seed);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = LEN;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            prng.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            write.write_all(&buf[..n]).await.unwrap();
            left -= n as u64;
        }
        (hasher.finalize().to_vec(), write)
    });
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    while received < LEN {
        let n = read
            .read(&mut buf[..(LEN - received).min(256 * 1024) as usize])
            .await
            .unwrap();
        assert!(n > 0, "download ended after {received} bytes");
        hasher.update(&buf[..n]);
        received += n as u64;
    }
    let mut target_digest = Vec::new();
    read.read_to_end(&mut target_digest).await.unwrap();
    let (sent_digest, _write) = uploader.await.unwrap();

    assert_eq!(
        hasher.finalize().to_vec(),
        expected_digest(LEN, down_seed),
        "download corrupted"
    );
    assert_eq!(target_digest, sent_digest, "upload corrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_sessions() {
    const SESSIONS: u64 = 200;
    const PER_SESSION: usize = 64 * 1024;
    let cluster = Cluster::start().await;
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    let port = cluster.local_port("echo").await;

    // All sessions open before any closes, so 200 really are concurrent: each
    // waits at `opened` (which the test joins to count them), then at `release`.
    let opened = std::sync::Arc::new(tokio::sync::Barrier::new(SESSIONS as usize + 1));
    let release = std::sync::Arc::new(tokio::sync::Barrier::new(SESSIONS as usize + 1));
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (opened, release) = (opened.clone(), release.clone());
            tokio::spawn(async move {
                let mut payload = vec![0u8; PER_SESSION];
                Prng::new(i + 1).fill(&mut payload);
                let mut socket = TcpStream::connect(port).await.unwrap();
                socket.write_all(&payload[..10]).await.unwrap();
                let mut first = [0u8; 10];
                socket.read_exact(&mut first).await.unwrap();
                opened.wait().await;
                release.wait().await;
                let (mut read, mut write) = socket.into_split();
                let rest = payload[10..].to_vec();
                let writer = tokio::spawn(async move {
                    write.write_all(&rest).await.unwrap();
                    write.shutdown().await.unwrap();
                });
                let mut echoed = first.to_vec();
                read.read_to_end(&mut echoed).await.unwrap();
                writer.await.unwrap();
                assert_eq!(echoed.len(), payload.len(), "session {i} truncated");
                assert!(echoed == payload, "session {i} corrupted");
            })
        })
        .collect();
    opened.wait().await;
    let peak = cluster.gateway().shared.metrics.sessions_open.get();
    release.wait().await;
    for result in futures::future::join_all(tasks).await {
        result.unwrap();
    }
    assert_eq!(peak, SESSIONS as i64, "sessions open at once");
    wait_for(|| async {
        (cluster.gateway().shared.metrics.sessions_open.get() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_mode_carries_sessions_and_the_api() {
    let cluster = Cluster::start_with_tls(false).await;
    assert!(cluster.url.starts_with("http://"));
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    let port = cluster.local_port("echo").await;
    common::echo_once(port, b"plaintext HTTP/2 behind a TLS-terminating platform").await;
    let login = postern::config::Login {
        gateway_url: cluster.url.clone(),
        token: cluster.user_token.clone(),
        ca_cert: None,
        oidc: None,
    };
    let me: serde_json::Value = postern::api::ApiClient::new(login)
        .unwrap()
        .get("/v1/whoami")
        .await
        .unwrap();
    assert_eq!(me["user"], "alice");
}
