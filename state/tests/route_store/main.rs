//! The route store contract against the memory store, a real single Redis and a
//! real 3-node Redis Cluster, and the Redis store through an outage.

mod contract;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use postern_state::memory::MemoryRouteStore;
use postern_state::redis::{RedisConfig, RedisRouteStore};
use postern_state::testing::{RedisCluster, RedisServer};
use postern_state::{RouteStore, StoreError};
use tokio::time::{Instant, timeout};

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract::run_all(&MemoryRouteStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_redis_meets_the_contract() {
    let redis = RedisServer::start();
    let store = RedisRouteStore::connect_url(&redis.url()).await.unwrap();
    contract::run_all(&store).await;

    // Expired and withdrawn replicas left nothing behind in the index.
    let index_exists: i64 = redis
        .command(&["EXISTS", "postern:{replicas}:ids"])
        .unwrap();
    assert_eq!(index_exists, 0);

    // Dropping an inbox closes its subscription.
    let inbox = store.subscribe("dropped").await.unwrap();
    let subscribers = || -> i64 {
        let (_channel, count): (String, i64) = redis
            .command(&["PUBSUB", "SHARDNUMSUB", "postern:inbox:{dropped}"])
            .unwrap();
        count
    };
    assert_eq!(subscribers(), 1);
    drop(inbox);
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscribers() != 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped inbox stays subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_meets_the_contract() {
    let cluster = RedisCluster::start(3);
    let store = RedisRouteStore::connect_url(&cluster.url()).await.unwrap();
    contract::run_all(&store).await;

    // The agents and sessions of the contract landed on every node.
    for node in cluster.nodes() {
        let keys: i64 = node.command(&["DBSIZE"]).unwrap();
        assert!(keys > 100, "node {} holds only {keys} keys", node.port());
    }
}

/// One cluster node stops: calls for its slots fail fast, its inboxes end,
/// the rest of the cluster keeps working, and all of it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_outage_stays_local_and_recovers() {
    let mut cluster = RedisCluster::start(3);
    let store = RedisRouteStore::connect_url(&cluster.url()).await.unwrap();
    let on_stopped_node = |name: &str, key: String| {
        let slot: u16 = cluster.nodes()[0]
            .command(&["CLUSTER", "KEYSLOT", &key])
            .unwrap();
        (name.to_owned(), cluster.node_of_slot(slot) == 1)
    };
    let sessions: Vec<(String, bool)> = (0..40)
        .map(|i| format!("s{i}"))
        .map(|s| on_stopped_node(&s, format!("postern:session:{{{s}}}")))
        .collect();
    let replicas: Vec<(String, bool)> = (0..12)
        .map(|i| format!("r{i}"))
        .map(|r| on_stopped_node(&r, format!("postern:inbox:{{{r}}}")))
        .collect();
    assert!(sessions.iter().any(|s| s.1) && sessions.iter().any(|s| !s.1));
    assert!(replicas.iter().any(|r| r.1) && replicas.iter().any(|r| !r.1));
    for (session, _) in &sessions {
        store
            .put_session(session, "r1", Duration::from_secs(60))
            .await
            .unwrap();
    }
    let mut inboxes = Vec::new();
    for (replica, _) in &replicas {
        inboxes.push(store.subscribe(replica).await.unwrap());
    }

    cluster.nodes_mut()[1].stop();
    for (session, stopped) in &sessions {
        let started = Instant::now();
        let ingress = store.session_ingress(session).await;
        assert!(started.elapsed() < Duration::from_millis(2500));
        match ingress {
            Err(StoreError::Unavailable(_)) if *stopped => {}
            Ok(Some(ingress)) if !stopped => assert_eq!(ingress, "r1"),
            other => panic!("{session} (on the stopped node: {stopped}): {other:?}"),
        }
    }
    for ((replica, stopped), inbox) in replicas.iter().zip(&mut inboxes) {
        if *stopped {
            let ended = timeout(Duration::from_secs(5), inbox.next()).await;
            assert!(matches!(ended, Ok(None)), "{replica}'s inbox: {ended:?}");
        } else {
            store
                .publish(replica, Bytes::from(replica.clone()))
                .await
                .unwrap();
            let message = timeout(Duration::from_secs(5), inbox.next()).await;
            assert_eq!(message.unwrap().unwrap(), replica.as_bytes());
        }
    }

    cluster.nodes_mut()[1].restart();
    // The other nodes take the node back within twice the node timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (session, _) in &sessions {
        while let Err(err) = store
            .put_session(session, "r2", Duration::from_secs(60))
            .await
        {
            assert!(
                Instant::now() < deadline,
                "{session} stays unavailable: {err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (replica, _) in &replicas {
        // Until every node has cleared the failure flag, the one asked for the
        // slot map may not list the restarted node yet.
        let mut inbox = loop {
            match store.subscribe(replica).await {
                Ok(inbox) => break inbox,
                Err(err) => {
                    assert!(Instant::now() < deadline, "{replica}: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        store
            .publish(replica, Bytes::from_static(b"back"))
            .await
            .unwrap();
        let message = timeout(Duration::from_secs(5), inbox.next()).await;
        assert_eq!(message.unwrap().unwrap(), "back", "{replica}'s inbox");
    }
}

/// Redis stops (for longer than a few reconnection attempts) and comes back
/// on the same port: calls fail fast meanwhile and the same store recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_redis_outage_fails_fast_and_the_store_recovers() {
    let mut redis = RedisServer::start();
    let store = RedisRouteStore::connect_url(&redis.url()).await.unwrap();
    store
        .put_session("before", "r1", Duration::from_secs(60))
        .await
        .unwrap();
    let mut inbox = store.subscribe("r1").await.unwrap();

    redis.stop();
    let ended = timeout(Duration::from_secs(5), inbox.next())
        .await
        .expect("the inbox must end when Redis goes away");
    assert!(ended.is_none(), "unexpected message {ended:?}");

    let outage = Instant::now();
    let mut calls = 0;
    while outage.elapsed() < Duration::from_secs(4) {
        let started = Instant::now();
        let failures = [
            store.session_ingress("before").await.map(drop),
            store
                .publish("r1", Bytes::from_static(b"lost"))
                .await
                .map(drop),
            store.subscribe("r1").await.map(drop),
            store
                .announce_agents(&["a1".into(), "a2".into()], "r1", Duration::from_secs(60))
                .await,
        ];
        let elapsed = started.elapsed();
        for failure in failures {
            let err = failure.expect_err("Redis is down");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        }
        // Four calls, each bounded by the 2 s operation timeout (and in
        // practice failing at once on "connection refused").
        assert!(elapsed < Duration::from_secs(9), "calls took {elapsed:?}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(calls >= 2, "only {calls} rounds of calls during the outage");
    let probe = Instant::now();
    assert!(store.replicas().await.is_err());
    assert!(
        probe.elapsed() < Duration::from_millis(2500),
        "a call took {:?} while Redis was down",
        probe.elapsed()
    );

    // Once Redis answers again, so does the very next call.
    redis.restart();
    store
        .put_session("after", "r2", Duration::from_secs(60))
        .await
        .expect("the first call after Redis is back");
    assert_eq!(
        store.session_ingress("after").await.unwrap().as_deref(),
        Some("r2")
    );
    // Data did not survive the restart (no persistence), routes are re-announced.
    assert_eq!(store.session_ingress("before").await.unwrap(), None);
    let mut inbox = store.subscribe("r1").await.unwrap();
    store
        .publish("r1", Bytes::from_static(b"back"))
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(5), inbox.next()).await;
    assert_eq!(message.unwrap().unwrap(), "back");

    // The same when nothing called the store during the outage: its
    // connection is dead without it knowing.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    store
        .publish("r1", Bytes::from_static(b"nobody listens"))
        .await
        .expect("the first publish after an unnoticed outage");
    store
        .announce_agents(&["a1".into()], "r1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.agent_replicas("a1").await.unwrap(), ["r1"]);
}

/// A hung Redis (frozen, not gone) must not hang the store either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_times_out_and_the_store_recovers() {
    let redis = RedisServer::start();
    let mut config = RedisConfig::from_url(&redis.url()).unwrap();
    config.inbox_keepalive = Duration::from_millis(300);
    let operation_timeout = config.operation_timeout;
    let store = RedisRouteStore::connect(config).await.unwrap();
    let mut inbox = store.subscribe("r1").await.unwrap();

    redis.freeze();
    let ended = timeout(Duration::from_secs(5), inbox.next())
        .await
        .expect("an unanswered keepalive must end the inbox");
    assert!(ended.is_none(), "unexpected message {ended:?}");
    let started = Instant::now();
    let err = store.session_ingress("s").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.subscribe("r1").await.err().expect("Redis is frozen");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < 2 * operation_timeout + Duration::from_millis(500),
        "two calls took {elapsed:?}"
    );

    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = store.put_session("s", "r1", Duration::from_secs(60)).await {
        assert!(
            Instant::now() < deadline,
            "the store did not recover: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut inbox = store.subscribe("r1").await.unwrap();
    store
        .publish("r1", Bytes::from_static(b"thawed"))
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(5), inbox.next()).await;
    assert_eq!(message.unwrap().unwrap(), "thawed");
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = RedisRouteStore::connect_url(&format!("redis://127.0.0.1:{port}"))
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        matches!(
            err,
            postern_state::redis::RedisConnectError::Store(StoreError::Unavailable(_))
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    let err = RedisRouteStore::connect_url("redis://127.0.0.1:1,127.0.0.1:2")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("redis+cluster://"), "{err}");
}

/// TLS is wired up (rustls has a crypto provider): a failed TLS handshake is
/// an error, quickly, not a panic.
#[tokio::test]
async fn rediss_handshake_failure_is_an_error() {
    // Accepts connections and hangs up at once, before any TLS is spoken.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            drop(connection);
        }
    });
    let started = Instant::now();
    let err = RedisRouteStore::connect_url(&format!("rediss://127.0.0.1:{port}"))
        .await
        .err()
        .expect("the handshake cannot succeed");
    assert!(
        matches!(err, postern_state::redis::RedisConnectError::Store(_)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}: {err}",
        started.elapsed()
    );
}
