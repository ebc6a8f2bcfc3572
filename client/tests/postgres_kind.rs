//! Connections of kind postgres through the real `postern connect` binary:
//! it learns the kind from the gateway, prints a psql hint, declines the
//! client's encryption requests itself (`N`), and the agent answers the
//! startup, logged in to the real database. A tcp connection passes the same
//! request through to its target untouched.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{AGENT, Cluster, Prng, postgres};
use postern_l7_pg::{BackendDecoder, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// `postern connect NAME`; returns the process, its port and its hint line.
async fn postern_connect(cluster: &Cluster, name: &str) -> (common::ConnectProcess, u16, String) {
    let mut connect = common::postern_connect(cluster, name).await;
    let hint = connect.lines.recv().await.expect("hint line");
    let port = connect.port;
    (connect, port, hint)
}

/// What a client after its negotiation sends: a startup message.
fn startup(database: Option<&str>) -> Vec<u8> {
    let mut params = b"user\0anyone\0".to_vec();
    if let Some(db) = database {
        params.extend_from_slice(b"database\0");
        params.extend_from_slice(db.as_bytes());
        params.push(0);
    }
    params.push(0);
    let mut startup = Vec::new();
    startup.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    startup.extend_from_slice(&params);
    startup
}

/// Bulk bytes for the tcp connection.
fn payload() -> Vec<u8> {
    let mut bulk = vec![0u8; 256 * 1024];
    Prng::new(7).fill(&mut bulk);
    [startup(None), bulk].concat()
}

/// Backend message types until ReadyForQuery (or the end).
async fn until_ready(socket: &mut TcpStream) -> Vec<u8> {
    let mut decoder = BackendDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut types = Vec::new();
    loop {
        while let Some(message) = decoder.decode(&mut buf).unwrap() {
            types.push(message.type_byte().unwrap_or(0));
            if types.last() == Some(&b'Z') {
                return types;
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_buf(&mut buf));
        if read.await.expect("answered within 10 s").unwrap() == 0 {
            return types;
        }
    }
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
async fn postern_connect_declines_encryption_and_the_agent_answers_the_startup() {
    let cluster = Cluster::start().await;
    let (host, port) = postgres();
    cluster
        .add_postgres_connection("orders", &format!("{host}:{port}"), AGENT, Some("postgres"))
        .await;
    let (_child, port, hint) = postern_connect(&cluster, "orders").await;
    assert!(
        hint.contains(&format!(
            "psql \"host=127.0.0.1 port={port} user=<anything> dbname=postgres\""
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
    // No password asked: AuthenticationOk, parameters, the agent's cancel key, ready.
    socket.write_all(&startup(None)).await.unwrap();
    let types = until_ready(&mut socket).await;
    assert_eq!(types.first(), Some(&b'R'), "{types:?}");
    assert!(types.contains(&b'S') && types.contains(&b'K'), "{types:?}");
    assert_eq!(types.last(), Some(&b'Z'), "{types:?}");
    socket
        .write_all(&[
            b'Q', 0, 0, 0, 13, b's', b'e', b'l', b'e', b'c', b't', b' ', b'1', 0,
        ])
        .await
        .unwrap();
    assert_eq!(until_ready(&mut socket).await, vec![b'T', b'D', b'C', b'Z']);

    // A client that starts without asking for encryption goes straight on.
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(&startup(Some("postgres"))).await.unwrap();
    assert_eq!(until_ready(&mut socket).await.last(), Some(&b'Z'));
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
