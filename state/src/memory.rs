//! In-memory route store: the default for a single replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::{Inbox, ReplicaInfo, RouteStore, StoreResult};

#[derive(Default)]
pub struct MemoryRouteStore {
    inner: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    replicas: HashMap<String, (ReplicaInfo, Instant)>,
    inboxes: HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>,
    /// Subscribers to policy changes (in this process only).
    policy_changes: Vec<mpsc::UnboundedSender<Bytes>>,
    /// agent -> replica -> expiry
    agents: HashMap<String, HashMap<String, Instant>>,
    /// session -> (ingress replica, expiry)
    sessions: HashMap<String, (String, Instant)>,
}

impl MemoryRouteStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding the lock cannot leave routes half-written
        // (every update is a single map operation), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl RouteStore for MemoryRouteStore {
    async fn announce_replica(&self, replica: &ReplicaInfo, ttl: Duration) -> StoreResult<()> {
        self.routes()
            .replicas
            .insert(replica.id.clone(), (replica.clone(), Instant::now() + ttl));
        Ok(())
    }

    async fn withdraw_replica(&self, replica_id: &str) -> StoreResult<()> {
        self.routes().replicas.remove(replica_id);
        Ok(())
    }

    async fn replicas(&self) -> StoreResult<Vec<ReplicaInfo>> {
        let now = Instant::now();
        Ok(self
            .routes()
            .replicas
            .values()
            .filter(|(_, expiry)| *expiry > now)
            .map(|(info, _)| info.clone())
            .collect())
    }

    async fn announce_agents(
        &self,
        agents: &[String],
        replica: &str,
        ttl: Duration,
    ) -> StoreResult<()> {
        let expiry = Instant::now() + ttl;
        let mut routes = self.routes();
        for agent in agents {
            routes
                .agents
                .entry(agent.clone())
                .or_default()
                .insert(replica.to_owned(), expiry);
        }
        Ok(())
    }

    async fn withdraw_agent(&self, agent: &str, replica: &str) -> StoreResult<()> {
        let mut routes = self.routes();
        if let Some(replicas) = routes.agents.get_mut(agent) {
            replicas.remove(replica);
            if replicas.is_empty() {
                routes.agents.remove(agent);
            }
        }
        Ok(())
    }

    async fn agent_replicas(&self, agent: &str) -> StoreResult<Vec<String>> {
        let now = Instant::now();
        let routes = self.routes();
        let mut live: Vec<(&String, &Instant)> = routes
            .agents
            .get(agent)
            .map(|r| r.iter().filter(|(_, expiry)| **expiry > now).collect())
            .unwrap_or_default();
        live.sort_by(|a, b| b.1.cmp(a.1));
        Ok(live
            .into_iter()
            .map(|(replica, _)| replica.clone())
            .collect())
    }

    async fn put_session(&self, session_id: &str, ingress: &str, ttl: Duration) -> StoreResult<()> {
        self.routes().sessions.insert(
            session_id.to_owned(),
            (ingress.to_owned(), Instant::now() + ttl),
        );
        Ok(())
    }

    async fn session_ingress(&self, session_id: &str) -> StoreResult<Option<String>> {
        let now = Instant::now();
        Ok(self
            .routes()
            .sessions
            .get(session_id)
            .filter(|(_, expiry)| *expiry > now)
            .map(|(replica, _)| replica.clone()))
    }

    async fn remove_session(&self, session_id: &str) -> StoreResult<()> {
        self.routes().sessions.remove(session_id);
        Ok(())
    }

    async fn publish(&self, replica: &str, message: Bytes) -> StoreResult<u64> {
        let mut routes = self.routes();
        let Some(subscribers) = routes.inboxes.get_mut(replica) else {
            return Ok(0);
        };
        subscribers.retain(|tx| tx.send(message.clone()).is_ok());
        Ok(subscribers.len() as u64)
    }

    async fn subscribe(&self, replica: &str) -> StoreResult<Inbox> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes()
            .inboxes
            .entry(replica.to_owned())
            .or_default()
            .push(tx);
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }

    async fn publish_policy_change(&self, generation: u64) -> StoreResult<u64> {
        let message = Bytes::from(generation.to_string());
        let mut routes = self.routes();
        routes
            .policy_changes
            .retain(|tx| tx.send(message.clone()).is_ok());
        Ok(routes.policy_changes.len() as u64)
    }

    async fn subscribe_policy_changes(&self) -> StoreResult<Inbox> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes().policy_changes.push(tx);
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn agent_routes_expire_and_withdraw() {
        let store = MemoryRouteStore::new();
        store
            .announce_agents(&["a1".into()], "r1", Duration::from_secs(60))
            .await
            .unwrap();
        store
            .announce_agents(&["a1".into()], "r2", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.agent_replicas("a1").await.unwrap(), vec!["r1"]);
        store.withdraw_agent("a1", "r1").await.unwrap();
        assert!(store.agent_replicas("a1").await.unwrap().is_empty());
        assert!(store.agent_replicas("unknown").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn session_routes() {
        let store = MemoryRouteStore::new();
        store
            .put_session("s1", "r1", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store.session_ingress("s1").await.unwrap().as_deref(),
            Some("r1")
        );
        store.remove_session("s1").await.unwrap();
        assert_eq!(store.session_ingress("s1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn replicas_expire_and_inboxes_deliver_in_order() {
        use futures::StreamExt;
        let store = MemoryRouteStore::new();
        let replica = |id: &str| ReplicaInfo {
            id: id.into(),
            peer_addr: "127.0.0.1:1".into(),
            peer_cert_sha256: String::new(),
            draining: false,
            started_at_ms: 1,
        };
        store
            .announce_replica(&replica("r1"), Duration::from_secs(60))
            .await
            .unwrap();
        store
            .announce_replica(&replica("r2"), Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.replicas().await.unwrap(), vec![replica("r1")]);
        store.withdraw_replica("r1").await.unwrap();
        assert!(store.replicas().await.unwrap().is_empty());

        let mut inbox = store.subscribe("r1").await.unwrap();
        store
            .publish("r2", Bytes::from_static(b"elsewhere"))
            .await
            .unwrap();
        store
            .publish("r1", Bytes::from_static(b"one"))
            .await
            .unwrap();
        store
            .publish("r1", Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(inbox.next().await.unwrap(), "one");
        assert_eq!(inbox.next().await.unwrap(), "two");
    }
}
