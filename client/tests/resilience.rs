//! The agent outlives gateway restarts; a draining gateway lets sessions finish.

mod common;

use std::time::Duration;

use common::{AGENT, Cluster, echo_once, echo_server, http_get, raw_open};
use postern_agent::AgentStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_the_gateway_restarts() {
    let mut cluster = Cluster::start().await;
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    echo_once(cluster.local_port("echo").await, b"before").await;

    let addr = cluster.gateway().public_addr;
    let old_replica = cluster.gateway().shared.replica_id.clone();
    cluster.gateway.take().unwrap().kill().await;
    cluster.start_gateway(addr).await;
    let new_replica = cluster.gateway().shared.replica_id.clone();
    assert_ne!(old_replica, new_replica);

    // Nobody touches the agent: it notices, backs off, and comes back by itself.
    let mut status = cluster.agent.as_ref().unwrap().subscribe();
    let reconnected = status.wait_for(
        |s| matches!(s, AgentStatus::Connected { replica_id, .. } if *replica_id == new_replica),
    );
    tokio::time::timeout(Duration::from_secs(15), reconnected)
        .await
        .expect("agent reconnects within 15 s")
        .unwrap();
    echo_once(cluster.local_port("echo").await, b"after the restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_open_sessions_and_refuses_new_ones() {
    let mut cluster = Cluster::start().await;
    cluster
        .add_connection("echo", &echo_server().await.to_string(), AGENT)
        .await;
    let port = cluster.local_port("echo").await;
    let mut open = tokio::net::TcpStream::connect(port).await.unwrap();
    let mut buf = [0u8; 5];
    open.write_all(b"first").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();

    let internal = cluster.gateway().internal_addr;
    assert!(
        http_get(internal, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let gateway = cluster.gateway.take().unwrap();
    let shared = gateway.shared.clone();
    let draining = tokio::spawn(gateway.shutdown());
    while !shared.is_draining() {
        tokio::task::yield_now().await;
    }
    assert!(
        http_get(internal, "/readyz")
            .await
            .starts_with("HTTP/1.1 503"),
        "not ready while draining"
    );
    // New sessions go elsewhere: the port stops accepting (or, in a race,
    // refuses as draining), and the client is told it may retry.
    let refused = raw_open(&cluster, &cluster.user_token, "echo")
        .await
        .expect_err("new sessions are refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(postern_tunnel::auth::is_retryable(&refused), "{refused:?}");

    // The session that was open keeps working, and the drain waits for it.
    open.write_all(b"again").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"again");
    assert!(!draining.is_finished());
    open.shutdown().await.unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("drain completes")
        .unwrap();
    cluster.gateway = None;
}
