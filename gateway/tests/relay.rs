//! Relay mode (`POSTERN_PEER_TRANSPORT=relay`): replicas that cannot dial each
//! other splice sessions through their inboxes in a real Redis.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use postern_state::RouteStore;
use postern_state::redis::RedisRouteStore;
use postern_state::testing::{RedisCluster, RedisServer};
use postern_tunnel::Secret;
use postern_tunnel::peer::PeerKey;
use postern_tunnel::proto::relay_envelope::Kind;
use postern_tunnel::proto::{RelayEnvelope, RelayReset};
use sha2::{Digest, Sha256};
use support::{Replicas, echo_session, open_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_reaches_every_agent_through_the_redis_relay() {
    let redis = RedisServer::start();
    let routes = RedisRouteStore::connect_url(&redis.url()).await.unwrap();
    every_replica_reaches_every_agent(Arc::new(routes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_reaches_every_agent_through_a_redis_cluster_relay() {
    let cluster = RedisCluster::start(3);
    let routes = RedisRouteStore::connect_url(&cluster.url()).await.unwrap();
    every_replica_reaches_every_agent(Arc::new(routes)).await;
}

/// One agent per replica, each with one tunnel straight to it: two of every
/// three sessions must be relayed.
async fn every_replica_reaches_every_agent(routes: Arc<dyn RouteStore>) {
    let replicas = Replicas::start_relay(3, routes).await;
    let echo = postern_testkit::echo_server().await;
    let agents = replicas.agent_per_replica(&echo.to_string()).await;
    let mut checks = Vec::new();
    for user_on in 0..3 {
        for agent in 0..3 {
            let url = replicas.url(user_on);
            let ca = replicas.ca_pem.clone();
            let token = replicas.user_token.clone();
            checks.push(tokio::spawn(async move {
                let connection = format!("echo-{agent}");
                let seed = (user_on * 3 + agent) as u64;
                let path = echo_session(&url, &ca, &token, &connection, 1 << 20, seed).await;
                (user_on, agent, path)
            }));
        }
    }
    for check in checks {
        let (user_on, agent, path) = check.await.unwrap();
        let path = path.unwrap_or_else(|e| panic!("user on {user_on} to agent {agent}: {e}"));
        assert_eq!(path.ingress, replicas.replica_id(user_on));
        assert_eq!(
            path.via,
            replicas.replica_id(agent),
            "the agent attaches where its tunnel is"
        );
    }
    let mut relayed = 0;
    for i in 0..3 {
        let metrics = replicas.metrics(i).await;
        relayed += metric(&metrics, "postern_splices_total{path=\"relay\"}");
        assert_eq!(
            metric(&metrics, "postern_splices_total{path=\"peer\"}"),
            0,
            "no peer link in relay mode"
        );
        assert_eq!(
            metric(&metrics, "postern_relay_resets_total"),
            0,
            "replica {i}: {metrics}"
        );
    }
    assert_eq!(relayed, 6, "six of the nine sessions crossed replicas");
    for agent in agents {
        agent.stop().await;
    }
}

/// The sum of every sample of `name` (with or without labels) in a scrape.
fn metric(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with(' ') || (!name.contains('{') && rest.starts_with('{'))
            })
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A reader that stops reading holds the writer back through the relay's
/// credit, instead of piling the stream up in Redis or in a replica; once it
/// reads again, every byte arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_reader_holds_the_writer_back_and_loses_nothing() {
    let redis = RedisServer::start();
    let routes = RedisRouteStore::connect_url(&redis.url()).await.unwrap();
    let replicas = Replicas::start_relay(2, Arc::new(routes)).await;
    let echo = postern_testkit::echo_server().await;
    let _agents = replicas.agent_per_replica(&echo.to_string()).await;
    let (stream, path) = open_stream(
        &replicas.url(0),
        &replicas.ca_pem,
        &replicas.user_token,
        "echo-1",
    )
    .await
    .unwrap();
    assert_eq!(path.via, replicas.replica_id(1));
    let (mut read, mut write) = tokio::io::split(stream);
    let size = 256usize << 20;
    let writer = tokio::spawn(async move {
        let mut prng = postern_testkit::Prng::new(7);
        let mut sent = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len());
            prng.fill(&mut buf[..n]);
            sent.update(&buf[..n]);
            write.write_all(&buf[..n]).await.unwrap();
            left -= n;
        }
        write.shutdown().await.unwrap();
        sent.finalize()
    });
    // Nothing reads the echo: the target's socket, both relay windows and
    // the HTTP/2 windows fill, and the writer must stall far short of 256 MiB.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !writer.is_finished(),
        "256 MiB went into a session nobody reads"
    );
    // And the relay went quiet: no credit, no messages.
    let sent = || async {
        let mut total = 0;
        for i in 0..2 {
            total += metric(
                &replicas.metrics(i).await,
                "postern_relay_messages_total{direction=\"sent\"}",
            );
        }
        total
    };
    let before = sent().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sent().await,
        before,
        "relay messages kept flowing to a reader that does not read"
    );
    let mut received = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = read.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        received.update(&buf[..n]);
        total += n;
    }
    assert_eq!(total, size);
    assert_eq!(
        writer.await.unwrap(),
        received.finalize(),
        "every byte, in order"
    );
    for i in 0..2 {
        let metrics = replicas.metrics(i).await;
        assert_eq!(
            metric(&metrics, "postern_relay_resets_total"),
            0,
            "replica {i}: {metrics}"
        );
    }
}

/// Whoever can publish to Redis but lacks the peer secret can neither inject
/// nor break anything: forged messages are refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_relay_messages_are_refused_and_counted() {
    let redis = RedisServer::start();
    let routes: Arc<dyn RouteStore> =
        Arc::new(RedisRouteStore::connect_url(&redis.url()).await.unwrap());
    let replicas = Replicas::start_relay(2, routes.clone()).await;
    let echo = postern_testkit::echo_server().await;
    let _agents = replicas.agent_per_replica(&echo.to_string()).await;
    let target = replicas.replica_id(0);
    let forger = PeerKey::new(&Secret::new("not-the-peer-secret-0123456789abcdef"));
    let forged = RelayEnvelope {
        from_replica: replicas.replica_id(1),
        sent_at_ms: 0,
        kind: Some(Kind::Reset(RelayReset {
            stream_id: "anything".into(),
            reason: "forged".into(),
        })),
    };
    let messages = [
        postern_tunnel::relay::seal(&forger, forged, SystemTime::now()),
        Bytes::from_static(b"PR1 plainly not a relay message"),
        Bytes::from(vec![0u8; 4 << 20]),
    ];
    for message in messages {
        routes.publish(&target, message).await.unwrap();
    }
    // Panics if the three are not counted within its deadline.
    postern_testkit::wait_for(|| async {
        let metrics = replicas.metrics(0).await;
        (metric(
            &metrics,
            "postern_errors_total{kind=\"peer_unauthenticated\"}",
        ) >= 3)
            .then_some(())
    })
    .await;
    let path = echo_session(
        &replicas.url(0),
        &replicas.ca_pem,
        &replicas.user_token,
        "echo-1",
        64 << 10,
        1,
    )
    .await
    .unwrap();
    assert_eq!(path.via, replicas.replica_id(1), "the relay still works");
}

/// Redis is the relay's only path: when it goes, relayed sessions end with an
/// error (never hang, never skip bytes), sessions that stay on one replica go
/// on, and relaying works again once Redis is back, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_ends_relayed_sessions_cleanly_and_relaying_recovers() {
    let mut redis = RedisServer::start();
    let routes = RedisRouteStore::connect_url(&redis.url()).await.unwrap();
    let replicas = Replicas::start_relay(2, Arc::new(routes)).await;
    let echo = postern_testkit::echo_server().await;
    let _agents = replicas.agent_per_replica(&echo.to_string()).await;
    let url = replicas.url(0);
    let (relayed, path) = open_stream(&url, &replicas.ca_pem, &replicas.user_token, "echo-1")
        .await
        .unwrap();
    assert_eq!(path.via, replicas.replica_id(1));
    let (local, path) = open_stream(&url, &replicas.ca_pem, &replicas.user_token, "echo-0")
        .await
        .unwrap();
    assert_eq!(path.via, replicas.replica_id(0));
    let (mut relayed, mut local) = (Box::pin(relayed), Box::pin(local));
    for stream in [&mut relayed, &mut local] {
        stream.write_all(b"before").await.unwrap();
        let mut buf = [0u8; 6];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"before");
    }

    redis.restart();

    // The relayed session fails rather than waiting forever for lost messages.
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = relayed.write_all(b"after").await;
        let mut buf = [0u8; 5];
        relayed.read_exact(&mut buf).await.map(|_| buf)
    })
    .await
    .expect("a relayed session whose messages may be lost ends within 10 s");
    assert!(
        outcome.is_err(),
        "the relayed session ended with an error, not with data: {outcome:?}"
    );
    local.write_all(b"still").await.unwrap();
    let mut buf = [0u8; 5];
    local.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still", "a same-replica session does not need Redis");

    // Routes are re-published and the inboxes subscribed again.
    let path = postern_testkit::wait_for(|| {
        let (url, ca, token) = (
            url.clone(),
            replicas.ca_pem.clone(),
            replicas.user_token.clone(),
        );
        async move {
            echo_session(&url, &ca, &token, "echo-1", 64 << 10, 3)
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(path.via, replicas.replica_id(1));
    let metrics = replicas.metrics(0).await;
    assert!(
        metric(&metrics, "postern_relay_resets_total") >= 1,
        "{metrics}"
    );
}
