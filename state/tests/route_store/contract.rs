//! What every `RouteStore` adapter must do, with the memory store as the
//! reference. Entries that must expire get TTLs of a few hundred ms and are
//! polled until gone; entries that must be present get long TTLs, so a slow
//! machine cannot turn a check into a race.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use postern_state::{Inbox, ReplicaInfo, RouteStore};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(10);

/// Re-evaluates `$actual` until it equals `$expected`, failing after DEADLINE.
macro_rules! eventually_eq {
    ($actual:expr, $expected:expr) => {{
        let expected = $expected;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let actual = $actual;
            if actual == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} stayed {:?}, expected {:?}",
                stringify!($actual),
                actual,
                expected
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }};
}

pub async fn run_all(store: &dyn RouteStore) {
    eprintln!("contract: replicas");
    replicas_announce_refresh_expire_withdraw(store).await;
    eprintln!("contract: agents");
    agents_announce_expire_withdraw_freshest_first(store).await;
    eprintln!("contract: batch of agents");
    batch_announce_of_many_agents(store).await;
    eprintln!("contract: sessions");
    sessions_put_get_expire_remove(store).await;
    eprintln!("contract: inboxes");
    inboxes_deliver_in_order_to_their_replica_only(store).await;
    eprintln!("contract: policy changes");
    policy_changes_reach_every_subscriber_apart_from_inboxes(store).await;
}

fn replica(id: &str, draining: bool) -> ReplicaInfo {
    ReplicaInfo {
        id: id.into(),
        peer_addr: if draining {
            String::new()
        } else {
            "10.1.2.3:7443".into()
        },
        peer_cert_sha256: if draining {
            "ab".repeat(32)
        } else {
            String::new()
        },
        draining,
        started_at_ms: 1_700_000_000_123,
    }
}

async fn sorted_replicas(store: &dyn RouteStore) -> Vec<ReplicaInfo> {
    let mut replicas = store.replicas().await.unwrap();
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    replicas
}

async fn replicas_announce_refresh_expire_withdraw(store: &dyn RouteStore) {
    assert!(store.replicas().await.unwrap().is_empty());
    store
        .announce_replica(&replica("r1", false), LONG)
        .await
        .unwrap();
    store
        .announce_replica(&replica("r2", false), SHORT)
        .await
        .unwrap();
    store
        .announce_replica(&replica("r3", true), LONG)
        .await
        .unwrap();
    // Every field round-trips, including the draining flag.
    eventually_eq!(
        sorted_replicas(store).await,
        vec![replica("r1", false), replica("r3", true)]
    );

    // Announcing again replaces the record and refreshes its TTL.
    store
        .announce_replica(&replica("r1", true), LONG)
        .await
        .unwrap();
    assert_eq!(
        sorted_replicas(store).await,
        vec![replica("r1", true), replica("r3", true)]
    );
    store
        .announce_replica(&replica("r3", true), SHORT)
        .await
        .unwrap();
    eventually_eq!(sorted_replicas(store).await, vec![replica("r1", true)]);

    store.withdraw_replica("r1").await.unwrap();
    store.withdraw_replica("never-announced").await.unwrap();
    assert!(store.replicas().await.unwrap().is_empty());
}

async fn agents_announce_expire_withdraw_freshest_first(store: &dyn RouteStore) {
    let agent = vec!["agent-a".to_string()];
    store
        .announce_agents(&agent, "r1", Duration::from_secs(30))
        .await
        .unwrap();
    store.announce_agents(&agent, "r2", LONG).await.unwrap();
    assert_eq!(store.agent_replicas("agent-a").await.unwrap(), ["r2", "r1"]);

    // A refresh with a later expiry makes r1 the freshest.
    store
        .announce_agents(&agent, "r1", Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(store.agent_replicas("agent-a").await.unwrap(), ["r1", "r2"]);

    // A short-lived route expires on its own; the others stay.
    store.announce_agents(&agent, "r3", SHORT).await.unwrap();
    eventually_eq!(store.agent_replicas("agent-a").await.unwrap(), ["r1", "r2"]);

    store.withdraw_agent("agent-a", "r1").await.unwrap();
    assert_eq!(store.agent_replicas("agent-a").await.unwrap(), ["r2"]);
    store.withdraw_agent("agent-a", "r2").await.unwrap();
    assert!(store.agent_replicas("agent-a").await.unwrap().is_empty());
    store.withdraw_agent("agent-a", "r2").await.unwrap();
    store.withdraw_agent("no-such-agent", "r1").await.unwrap();
    assert!(
        store
            .agent_replicas("no-such-agent")
            .await
            .unwrap()
            .is_empty()
    );

    // An agent whose only route expires is gone.
    let agent = vec!["agent-b".to_string()];
    store.announce_agents(&agent, "r1", SHORT).await.unwrap();
    eventually_eq!(
        store.agent_replicas("agent-b").await.unwrap(),
        Vec::<String>::new()
    );
}

async fn batch_announce_of_many_agents(store: &dyn RouteStore) {
    store.announce_agents(&[], "r1", LONG).await.unwrap();
    let agents: Vec<String> = (0..1000).map(|i| format!("batch-agent-{i}")).collect();
    store
        .announce_agents(&agents, "r1", Duration::from_secs(30))
        .await
        .unwrap();
    store.announce_agents(&agents, "r2", LONG).await.unwrap();
    let routes = futures::stream::iter(&agents)
        .map(|agent| store.agent_replicas(agent))
        .buffered(64)
        .collect::<Vec<_>>()
        .await;
    for (agent, routes) in agents.iter().zip(routes) {
        assert_eq!(routes.unwrap(), ["r2", "r1"], "routes of {agent}");
    }
}

async fn sessions_put_get_expire_remove(store: &dyn RouteStore) {
    store.put_session("s1", "r1", LONG).await.unwrap();
    assert_eq!(
        store.session_ingress("s1").await.unwrap().as_deref(),
        Some("r1")
    );
    store.put_session("s1", "r2", LONG).await.unwrap();
    assert_eq!(
        store.session_ingress("s1").await.unwrap().as_deref(),
        Some("r2")
    );
    store.remove_session("s1").await.unwrap();
    assert_eq!(store.session_ingress("s1").await.unwrap(), None);
    store.remove_session("s1").await.unwrap();
    assert_eq!(
        store.session_ingress("no-such-session").await.unwrap(),
        None
    );

    store.put_session("s2", "r1", SHORT).await.unwrap();
    eventually_eq!(store.session_ingress("s2").await.unwrap(), None);

    // Many sessions, so that a cluster spreads them over its nodes.
    for i in 0..300 {
        let ingress = format!("r{}", i % 3);
        store
            .put_session(&format!("session-{i}"), &ingress, LONG)
            .await
            .unwrap();
    }
    for i in 0..300 {
        let ingress = store
            .session_ingress(&format!("session-{i}"))
            .await
            .unwrap();
        assert_eq!(ingress, Some(format!("r{}", i % 3)));
    }
}

async fn next(inbox: &mut Inbox) -> Bytes {
    tokio::time::timeout(DEADLINE, inbox.next())
        .await
        .expect("no inbox message in time")
        .expect("the inbox ended")
}

async fn inboxes_deliver_in_order_to_their_replica_only(store: &dyn RouteStore) {
    // Nobody listens: the message is dropped, not an error, and the caller
    // can tell.
    let received = store
        .publish("nobody", Bytes::from_static(b"lost"))
        .await
        .unwrap();
    assert_eq!(received, 0);

    let mut r1 = store.subscribe("r1").await.unwrap();
    let mut r1_again = store.subscribe("r1").await.unwrap();
    let mut r2 = store.subscribe("r2").await.unwrap();
    let received = store
        .publish("r2", Bytes::from_static(b"for r2"))
        .await
        .unwrap();
    assert_eq!(received, 1, "one subscription to r2");
    let messages: Vec<Bytes> = (0..100u8)
        .map(|i| Bytes::from(vec![i, 0xff, b'\n', 0]))
        .collect();
    for message in &messages {
        assert_eq!(store.publish("r1", message.clone()).await.unwrap(), 2);
    }
    for message in &messages {
        assert_eq!(&next(&mut r1).await, message);
        assert_eq!(&next(&mut r1_again).await, message);
    }
    assert_eq!(next(&mut r2).await, "for r2");
    // r1's messages never reached r2: its next message is the next one sent to it.
    store
        .publish("r2", Bytes::from_static(b"last"))
        .await
        .unwrap();
    assert_eq!(next(&mut r2).await, "last");

    // Inboxes of many replicas (on every node of a cluster) work at once.
    let ids: Vec<String> = (0..24).map(|i| format!("replica-{i}")).collect();
    let mut inboxes = Vec::new();
    for id in &ids {
        inboxes.push(store.subscribe(id).await.unwrap());
    }
    for id in &ids {
        store.publish(id, Bytes::from(id.clone())).await.unwrap();
    }
    for (id, inbox) in ids.iter().zip(&mut inboxes) {
        assert_eq!(next(inbox).await, id.as_bytes());
    }
}

async fn policy_changes_reach_every_subscriber_apart_from_inboxes(store: &dyn RouteStore) {
    let mut inbox = store.subscribe("policy-r1").await.unwrap();
    let mut a = store.subscribe_policy_changes().await.unwrap();
    let mut b = store.subscribe_policy_changes().await.unwrap();
    assert_eq!(store.publish_policy_change(7).await.unwrap(), 2);
    assert_eq!(store.publish_policy_change(8).await.unwrap(), 2);
    for subscriber in [&mut a, &mut b] {
        assert_eq!(next(subscriber).await, "7");
        assert_eq!(next(subscriber).await, "8");
    }
    drop(b);
    // A policy change is not an inbox message, nor the other way round.
    store
        .publish("policy-r1", Bytes::from_static(b"inbox"))
        .await
        .unwrap();
    store.publish_policy_change(9).await.unwrap();
    assert_eq!(next(&mut inbox).await, "inbox");
    assert_eq!(next(&mut a).await, "9");
}
