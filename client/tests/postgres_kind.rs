//! Connections of kind postgres through the real `postern connect` binary:
//! it learns the kind from the gateway, prints a psql hint, declines the
//! client's encryption requests itself (`N`) and carries every following byte
//! unchanged to the target. A tcp connection passes the same request through.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{AGENT, Cluster, Prng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]; // 80877103
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]; // 80877104

/// A target that echoes one connection and reports every byte it received.
async fn recording_target() -> (std::net::SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            socket.write_all(&buf[..n]).await.unwrap();
        }
        socket.shutdown().await.unwrap();
        let _ = tx.send(received);
    });
    (addr, rx)
}

/// Runs `postern connect NAME --port 0`; returns the child, its port and the
/// line it printed after `listening on`.
async fn postern_connect(cluster: &Cluster, name: &str) -> (Child, u16, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["connect", name, "--port", "0"])
        .envs(cluster.cli_env())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("listening line");
    let addr: std::net::SocketAddr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .parse()
        .unwrap();
    let hint = lines.next_line().await.unwrap().expect("hint line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr.port(), hint)
}

/// What a client after its negotiation sends: a startup message, then bulk.
fn payload() -> Vec<u8> {
    let mut startup = Vec::new();
    let params = b"user\0anyone\0database\0orders\0\0";
    startup.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    startup.extend_from_slice(params);
    let mut bulk = vec![0u8; 256 * 1024];
    Prng::new(7).fill(&mut bulk);
    [startup, bulk].concat()
}

async fn read_byte(socket: &mut TcpStream) -> u8 {
    let mut answer = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut answer))
        .await
        .expect("answered within 5 s")
        .unwrap();
    answer[0]
}

/// Sends `payload` and the end of stream; returns everything echoed back.
async fn send_and_collect(mut socket: TcpStream, payload: &[u8]) -> Vec<u8> {
    let (mut read, mut write) = socket.split();
    let writer = async {
        write.write_all(payload).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let reader = async {
        let mut echoed = Vec::new();
        read.read_to_end(&mut echoed).await.unwrap();
        echoed
    };
    let ((), echoed) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(writer, reader)
    })
    .await
    .expect("session ends");
    echoed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postern_connect_declines_encryption_for_postgres_and_carries_the_rest() {
    let cluster = Cluster::start().await;
    let (target, received) = recording_target().await;
    cluster
        .add_postgres_connection("orders", &target.to_string(), AGENT, Some("orders"))
        .await;
    let (_child, port, hint) = postern_connect(&cluster, "orders").await;
    assert!(
        hint.contains(&format!(
            "psql \"host=127.0.0.1 port={port} user=<anything> dbname=orders\""
        )),
        "{hint}"
    );
    assert!(hint.contains("no password"), "{hint}");

    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // libpq with gssencmode=prefer asks for GSS first, then for TLS.
    socket.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut socket).await, b'N');
    socket.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut socket).await, b'N');
    let payload = payload();
    let echoed = send_and_collect(socket, &payload).await;
    let at_target = received.await.unwrap();
    assert_eq!(
        at_target.len(),
        payload.len(),
        "the target got exactly the bytes after the negotiation"
    );
    assert!(at_target == payload, "unchanged at the target");
    assert!(echoed == payload, "and unchanged on the way back");

    // A client that starts without asking for encryption: nothing answered,
    // every byte passed on (those read while checking included).
    let (target, received) = recording_target().await;
    cluster
        .add_postgres_connection("plain", &target.to_string(), AGENT, None)
        .await;
    let (_plain, port, hint) = postern_connect(&cluster, "plain").await;
    assert!(hint.contains("dbname=<db>"), "{hint}");
    let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let echoed = send_and_collect(socket, &payload).await;
    assert!(received.await.unwrap() == payload);
    assert!(echoed == payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tcp_connection_passes_an_ssl_request_through() {
    let cluster = Cluster::start().await;
    let (target, received) = recording_target().await;
    cluster
        .add_connection("raw", &target.to_string(), AGENT)
        .await;
    let (_child, port, hint) = postern_connect(&cluster, "raw").await;
    assert!(!hint.contains("<anything>"), "{hint}");
    let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let sent = [SSL_REQUEST.to_vec(), payload()].concat();
    let echoed = send_and_collect(socket, &sent).await;
    assert!(
        echoed[..8] == SSL_REQUEST,
        "the target, not postern, answered"
    );
    assert!(received.await.unwrap() == sent);
    assert!(echoed == sent);
}
