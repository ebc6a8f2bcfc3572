//! Postern's external state, behind traits so a replica stays stateless:
//! [`RouteStore`] (who holds which agent and session), [`PolicyStore`]
//! (connections, agents, tokens, session records) and [`AuditSink`].
//!
//! Adapters here: [`memory::MemoryRouteStore`] (the single-replica default) and
//! [`sqlite::SqliteStore`] (embedded policy store and audit sink).
#![forbid(unsafe_code)]

pub mod memory;
pub mod model;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where live things are: which replicas hold an agent's tunnel and which replica
/// is the ingress of a session. Entries expire unless refreshed.
#[async_trait]
pub trait RouteStore: Send + Sync + 'static {
    async fn announce_agent(&self, agent: &str, replica: &str, ttl: Duration) -> StoreResult<()>;
    async fn withdraw_agent(&self, agent: &str, replica: &str) -> StoreResult<()>;
    /// Replicas currently holding a tunnel from `agent`, freshest first.
    async fn agent_replicas(&self, agent: &str) -> StoreResult<Vec<String>>;
    async fn put_session(
        &self,
        session_id: &str,
        ingress_replica: &str,
        ttl: Duration,
    ) -> StoreResult<()>;
    async fn session_ingress(&self, session_id: &str) -> StoreResult<Option<String>>;
    async fn remove_session(&self, session_id: &str) -> StoreResult<()>;
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
}

/// Append-only record of who did what.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    async fn record(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Most recent events first.
    async fn events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}
