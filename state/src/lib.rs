//! Postern's external state, behind traits so a replica stays stateless:
//! [`RouteStore`] (who holds which agent and session), [`PolicyStore`]
//! (connections, agents, tokens, session records) and [`AuditSink`].
//!
//! Adapters here: [`memory::MemoryRouteStore`] (the single-replica default),
//! [`redis::RedisRouteStore`] (routes shared by replicas, on Redis or Redis
//! Cluster), and three policy stores and audit sinks: [`sqlite::SqliteStore`]
//! (embedded), [`postgres::PostgresStore`] and [`dynamodb::DynamoStore`],
//! chosen by [`store_url::PolicyStoreUrl`].
//!
//! With the `test-support` feature, the `testing` module starts throwaway Redis
//! servers and clusters for tests.
#![forbid(unsafe_code)]

mod cas;
pub mod dynamodb;
pub mod memory;
pub mod model;
pub mod postgres;
pub mod redis;
mod sql_audit;
pub mod sqlite;
pub mod store_url;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;

pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// A compare-and-set write lost: the document changed since it was read.
    #[error(
        "{kind} {key:?} changed meanwhile (version {actual}, expected {expected}): read it again"
    )]
    Conflict {
        kind: String,
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The backend cannot be reached right now (down, timed out, failing over);
    /// the same call may succeed later. The cause is kept as the error source.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store query failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A gateway replica as its peers see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaInfo {
    pub id: String,
    /// Where other replicas reach this one's peer port (`host:port`); empty in
    /// relay mode, where replicas cannot dial each other.
    pub peer_addr: String,
    /// Hex SHA-256 of the peer port's TLS certificate, pinned by dialing peers;
    /// empty when the peer port serves h2c.
    pub peer_cert_sha256: String,
    /// A draining replica takes no new sessions and its agents are moving away.
    pub draining: bool,
    pub started_at_ms: u64,
}

/// Messages from one replica's inbox, in the order they were published; the
/// stream ends when the subscription is lost (the caller subscribes again).
pub type Inbox = std::pin::Pin<Box<dyn futures::Stream<Item = bytes::Bytes> + Send + 'static>>;

/// Where live things are: which replicas exist, which hold an agent's tunnel,
/// and which replica is the ingress of a session. Entries expire unless refreshed,
/// so a dead replica's routes vanish on their own.
#[async_trait]
pub trait RouteStore: Send + Sync + 'static {
    /// Publishes (or refreshes) this replica's record for `ttl`.
    async fn announce_replica(&self, replica: &ReplicaInfo, ttl: Duration) -> StoreResult<()>;
    async fn withdraw_replica(&self, replica_id: &str) -> StoreResult<()>;
    /// Replicas whose record has not expired, in no particular order.
    async fn replicas(&self) -> StoreResult<Vec<ReplicaInfo>>;

    /// Records (or refreshes) that `replica` holds a tunnel from each of `agents`.
    async fn announce_agents(
        &self,
        agents: &[String],
        replica: &str,
        ttl: Duration,
    ) -> StoreResult<()>;
    async fn withdraw_agent(&self, agent: &str, replica: &str) -> StoreResult<()>;
    /// Replicas currently holding a tunnel from `agent`, freshest first. Callers
    /// also check that each replica is itself still live.
    async fn agent_replicas(&self, agent: &str) -> StoreResult<Vec<String>>;

    async fn put_session(
        &self,
        session_id: &str,
        ingress_replica: &str,
        ttl: Duration,
    ) -> StoreResult<()>;
    async fn session_ingress(&self, session_id: &str) -> StoreResult<Option<String>>;
    async fn remove_session(&self, session_id: &str) -> StoreResult<()>;

    /// Sends `message` to `replica`'s inbox and returns how many subscriptions
    /// received it. Delivery is at most once: with none (0), it is lost.
    async fn publish(&self, replica: &str, message: bytes::Bytes) -> StoreResult<u64>;
    /// Receives this replica's inbox. Resolves once the subscription is active,
    /// so a message published after it returns is delivered.
    async fn subscribe(&self, replica: &str) -> StoreResult<Inbox>;

    /// Tells every replica subscribed now that policy changed, carrying the
    /// new policy generation (decimal text); returns how many received it.
    /// At most once, like [`RouteStore::publish`]: replicas also poll.
    async fn publish_policy_change(&self, generation: u64) -> StoreResult<u64>;
    /// Policy-change notifications from every replica, this one included.
    /// Resolves once the subscription is active; the stream ends when it is
    /// lost (the caller subscribes again).
    async fn subscribe_policy_changes(&self) -> StoreResult<Inbox>;
}

/// Policy: connections, agents and user tokens, plus session records.
#[async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    async fn create_connection(&self, connection: &Connection) -> StoreResult<()>;
    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>>;
    async fn connections(&self) -> StoreResult<Vec<Connection>>;
    async fn delete_connection(&self, name: &str) -> StoreResult<bool>;

    async fn create_agent(&self, agent: &Agent) -> StoreResult<()>;
    async fn agent_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<Agent>>;
    async fn agents(&self) -> StoreResult<Vec<Agent>>;
    async fn delete_agent(&self, name: &str) -> StoreResult<bool>;

    async fn create_user_token(&self, token: &UserToken) -> StoreResult<()>;
    async fn user_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<UserToken>>;
    async fn user_tokens(&self) -> StoreResult<Vec<UserToken>>;

    async fn record_session_start(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn record_session_end(&self, end: &SessionEnd) -> StoreResult<()>;
    /// Most recent sessions first.
    async fn sessions(&self, limit: u32) -> StoreResult<Vec<SessionRecord>>;

    async fn document(&self, kind: &str, key: &str) -> StoreResult<Option<Document>>;
    /// Every document of `kind`, by key.
    async fn documents(&self, kind: &str) -> StoreResult<Vec<Document>>;
    /// Writes `body` if the stored version is `expected` (0: the document must
    /// not exist yet) and returns the new version; [`StoreError::Conflict`]
    /// when another write came first.
    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expected: u64,
    ) -> StoreResult<u64>;
    /// Deletes the document if its version is `expected`; false if there was none.
    async fn delete_document(&self, kind: &str, key: &str, expected: u64) -> StoreResult<bool>;
}

/// Append-only record of who did what.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    async fn record(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Records `events` in order; a store that can should write them in one
    /// round trip or transaction (statement audit comes in bursts).
    async fn record_batch(&self, events: &[AuditEvent]) -> StoreResult<()> {
        for event in events {
            self.record(event).await?;
        }
        Ok(())
    }
    /// Events matching `query`, most recent first.
    async fn events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}
