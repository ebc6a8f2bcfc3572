//! Proxy peering between replicas in one process, sharing an in-memory route
//! store: every user reaches every agent from every replica.

mod support;

use std::sync::Arc;
use std::time::Duration;

use postern_state::RouteStore;
use postern_state::memory::MemoryRouteStore;
use postern_state::redis::RedisRouteStore;
use postern_state::testing::{RedisCluster, RedisServer};
use postern_tunnel::Secret;
use postern_tunnel::auth::set_bearer;
use postern_tunnel::peer::PeerKey;
use postern_tunnel::proto::peer_client::PeerClient;
use postern_tunnel::proto::{PeerSessionRequest, SessionRequest};
use support::{Replicas, echo_session};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_reaches_every_agent_through_a_memory_route_store() {
    every_replica_reaches_every_agent(Arc::new(MemoryRouteStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_reaches_every_agent_through_redis() {
    let redis = RedisServer::start();
    let routes = RedisRouteStore::connect_url(&redis.url()).await.unwrap();
    every_replica_reaches_every_agent(Arc::new(routes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_reaches_every_agent_through_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let routes = RedisRouteStore::connect_url(&cluster.url()).await.unwrap();
    every_replica_reaches_every_agent(Arc::new(routes)).await;
}

async fn every_replica_reaches_every_agent(routes: Arc<dyn RouteStore>) {
    let replicas = Replicas::start(3, routes).await;
    let echo = postern_testkit::echo_server().await;
    // One agent per replica, each with a single tunnel straight to it, so
    // that two of every three sessions must cross a peer link.
    let agents = replicas.agent_per_replica(&echo.to_string()).await;
    let mut checks = Vec::new();
    for user_on in 0..3 {
        for agent in 0..3 {
            let url = replicas.url(user_on);
            let ca = replicas.ca_pem.clone();
            let token = replicas.user_token.clone();
            checks.push(tokio::spawn(async move {
                let path = echo_session(
                    &url,
                    &ca,
                    &token,
                    &format!("echo-{agent}"),
                    512 * 1024,
                    (user_on * 3 + agent) as u64,
                )
                .await;
                (user_on, agent, path)
            }));
        }
    }
    for check in checks {
        let (user_on, agent, path) = check.await.unwrap();
        let path = path.unwrap_or_else(|e| panic!("user on {user_on} to agent {agent}: {e}"));
        assert_eq!(path.ingress, replicas.replica_id(user_on));
        // The agent attaches where its tunnel is; the ingress joins it there.
        assert_eq!(
            path.via,
            replicas.replica_id(agent),
            "user on {user_on} to agent {agent}"
        );
    }
    // Every replica lists every connection's agent as connected, wherever
    // its tunnel is (`postern ls` and the connect preflight read this).
    for i in 0..3 {
        let listed = replicas.api_get(i, "/v1/connections").await;
        for agent in 0..3 {
            let name = format!("echo-{agent}");
            let entry = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} listed on replica {i}: {listed}"));
            assert_eq!(entry["agent_connected"], true, "{name} on replica {i}");
            let shown = replicas
                .api_get(i, &format!("/v1/connections/{name}"))
                .await;
            assert_eq!(shown["agent_connected"], true, "{name} on replica {i}");
        }
    }
    for i in 0..3 {
        let metrics = replicas.metrics(i).await;
        assert!(
            metrics.contains("postern_splices_total{path=\"peer\"} 2"),
            "replica {i} spliced its agent's sessions for the two other replicas:\n{metrics}"
        );
        assert!(metrics.contains("postern_splices_total{path=\"local\"} 1"));
        assert!(metrics.contains("postern_replicas_live 3"));
    }
    for agent in agents {
        agent.stop().await;
    }
    // Gone agents are shown offline again, on every replica.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for i in 0..3 {
        loop {
            let listed = replicas.api_get(i, "/v1/connections").await;
            let online: Vec<_> = listed
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["agent_connected"] == true)
                .map(|c| c["name"].clone())
                .collect();
            if online.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica {i} still lists {online:?} as connected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_spread_their_tunnels_over_replicas_behind_a_balancer() {
    let replicas = Replicas::start(3, Arc::new(MemoryRouteStore::new())).await;
    let echo = postern_testkit::echo_server().await;
    let token = replicas.add_agent("spread").await;
    replicas
        .add_connection("echo", &echo.to_string(), "spread")
        .await;
    let agent = replicas.spawn_agent(replicas.balancer_url(), token, 2);
    let held = agent
        .wait_replicas(2, Duration::from_secs(10))
        .await
        .expect("two tunnels on two different replicas");
    assert_eq!(held.len(), 2);
    for user_on in 0..3 {
        let path = echo_session(
            &replicas.url(user_on),
            &replicas.ca_pem,
            &replicas.user_token,
            "echo",
            64 * 1024,
            user_on as u64,
        )
        .await
        .unwrap();
        assert!(held.contains(&path.via), "{path:?} not via {held:?}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn peer_calls_without_a_valid_peer_token_are_refused() {
    let replicas = Replicas::start(1, Arc::new(MemoryRouteStore::new())).await;
    let gateway = replicas.gateway(0);
    let peer_addr = gateway.peer_addr.unwrap().to_string();
    let record = gateway.shared.cluster.get(&replicas.replica_id(0)).unwrap();
    let channel =
        postern_tunnel::http2::peer_channel(&peer_addr, Some(&record.peer_cert_sha256)).unwrap();
    let request = || PeerSessionRequest {
        agent: "a".into(),
        request: Some(SessionRequest::default()),
    };
    let mut client = PeerClient::new(channel);
    let status = client.request_session(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let forged = postern_tunnel::peer::PeerKey::new(&Secret::new(
        "another-secret-0123456789abcdef0123456".to_owned(),
    ))
    .sign("gw-evil", std::time::SystemTime::now());
    let mut call = tonic::Request::new(request());
    set_bearer(call.metadata_mut(), &forged).unwrap();
    let status = client.request_session(call).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("signature"), "{status:?}");

    // A peer port answers only to a client that pins its certificate.
    let (_, other_pin) = postern_tunnel::pinned::ephemeral_identity().unwrap();
    let impostor = postern_tunnel::http2::peer_channel(&peer_addr, Some(&other_pin)).unwrap();
    let status = PeerClient::new(impostor)
        .request_session(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        replicas
            .metrics(0)
            .await
            .contains("postern_errors_total{kind=\"peer_unauthenticated\"} 2")
    );
}

/// Rotating the peer secret from A to B: mid-rotation, a replica signing
/// with A and accepting B and one signing with B and accepting A splice each
/// other's sessions both ways, over the peer port and through the relay
/// (whose messages are sealed with the same key). A replica left on A alone
/// refuses the one signing with B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_mid_rotation_of_the_peer_secret_splice_each_other() {
    let (a, b) = (
        Secret::new("rotation-secret-a-0123456789abcdef0123".to_owned()),
        Secret::new("rotation-secret-b-0123456789abcdef0123".to_owned()),
    );
    for relay in [false, true] {
        // A Redis of its own per round: no routes carried over.
        let redis = RedisServer::start();
        let routes = Arc::new(RedisRouteStore::connect_url(&redis.url()).await.unwrap());
        let mut replicas = if relay {
            Replicas::start_relay(0, routes).await
        } else {
            Replicas::start(0, routes).await
        };
        replicas
            .add_replica_with_key(PeerKey::new(&a).accepting(&b))
            .await;
        replicas
            .add_replica_with_key(PeerKey::new(&b).accepting(&a))
            .await;
        let echo = postern_testkit::echo_server().await;
        let agents = replicas.agent_per_replica(&echo.to_string()).await;
        for (user_on, agent) in [(0, 1), (1, 0)] {
            let path = echo_session(
                &replicas.url(user_on),
                &replicas.ca_pem,
                &replicas.user_token,
                &format!("echo-{agent}"),
                64 * 1024,
                user_on as u64,
            )
            .await
            .unwrap_or_else(|e| panic!("relay {relay}: user on {user_on} to agent {agent}: {e}"));
            assert_eq!(path.via, replicas.replica_id(agent), "relay {relay}");
        }
        for agent in agents {
            agent.stop().await;
        }
    }

    // A replica on A alone refuses a token signed with B.
    let mut replicas = Replicas::start(0, Arc::new(MemoryRouteStore::new())).await;
    let only_a = replicas.add_replica_with_key(PeerKey::new(&a)).await;
    let gateway = replicas.gateway(only_a);
    let record = gateway
        .shared
        .cluster
        .get(&replicas.replica_id(only_a))
        .unwrap();
    let channel = postern_tunnel::http2::peer_channel(
        &gateway.peer_addr.unwrap().to_string(),
        Some(&record.peer_cert_sha256),
    )
    .unwrap();
    let mut call = tonic::Request::new(PeerSessionRequest {
        agent: "a".into(),
        request: Some(SessionRequest::default()),
    });
    let signed_with_b = PeerKey::new(&b)
        .accepting(&a)
        .sign("gw-b", std::time::SystemTime::now());
    set_bearer(call.metadata_mut(), &signed_with_b).unwrap();
    let status = PeerClient::new(channel)
        .request_session(call)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}
