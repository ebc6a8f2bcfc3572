//! Redis route store: routing state shared by gateway replicas, on one Redis
//! server or on a Redis Cluster. Needs Redis 7.0 or later (sharded pub/sub).
//!
//! # URLs
//!
//! | form | meaning |
//! | --- | --- |
//! | `redis://[[user]:password@]host[:port][/db]` | one server (port 6379, db 0 by default) |
//! | `rediss://…` | the same over TLS |
//! | `redis+cluster://[[user]:password@]host1[:port1],host2[:port2],…` | Redis Cluster, given one or more seed nodes; database 0 only |
//! | `rediss+cluster://…` | Redis Cluster over TLS |
//!
//! Special characters in the user name or password must be percent-encoded.
//! TLS (rustls) verifies servers against the system's trust store, or against
//! the CA bundle given to [`RedisConfig::with_root_ca`]. Query
//! strings and fragments are rejected rather than silently ignored.
//!
//! # Keys
//!
//! Every key is prefixed `postern:`. Keys used together carry the same hash tag
//! (`{...}`), so every command stays within one cluster slot:
//!
//! - `postern:{replicas}:replica:<id>`: a replica's [`ReplicaInfo`] as JSON, with
//!   a native Redis TTL (no clock skew between replicas), and
//!   `postern:{replicas}:ids`, the set of replica ids; [`RouteStore::replicas`]
//!   reads the set, fetches the records with one MGET and prunes ids whose
//!   record expired.
//! - `postern:agent:{<agent>}`: sorted set of replica id -> expiry in Redis
//!   server time (unix ms), itself expiring after its longest-lived route.
//! - `postern:session:{<session>}`: the ingress replica, with a native TTL.
//! - inbox channel `postern:inbox:{<replica>}`: sharded pub/sub, below.
//! - `postern:policy-changed:{policy}`: sharded pub/sub channel carrying the
//!   policy generation after every policy write, so every replica drops its
//!   policy cache at once.
//!
//! # Inboxes
//!
//! [`RouteStore::publish`] is an SPUBLISH. [`RouteStore::subscribe`] opens a
//! RESP3 connection of its own to the node owning the channel's slot (found
//! with CLUSTER SLOTS in a cluster) and returns once SSUBSCRIBE is confirmed.
//! The inbox ends when that connection is lost, when Redis drops the
//! subscription (the slot moved) or when a keepalive PING every
//! [`RedisConfig::inbox_keepalive`] goes unanswered; dropping it unsubscribes.
//!
//! # Outages
//!
//! A single server is used through a reconnecting
//! [`ConnectionManager`](redis::aio::ConnectionManager), a cluster through the
//! cluster client, which reconnects to its nodes itself.
//! Every call is bounded by [`RedisConfig::operation_timeout`] (2 s by
//! default): while Redis is down calls fail quickly with
//! [`StoreError::Unavailable`], and once it is back the same store works again,
//! from the very next call: a call that meets a refused or lost connection is
//! sent once more on a fresh one (a publish only if it surely never left, to
//! keep delivery at most once). Inbox streams end when their connection is
//! lost; the caller subscribes again.

mod commands;
mod config;
mod inbox;
mod keys;
mod scripts;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClientBuilder;
use redis::{ProtocolVersion, RedisError};

pub use config::{RedisConfig, RedisUrlError};

use crate::{Inbox, ReplicaInfo, RouteStore, StoreError, StoreResult};
use commands::{Commands, NoAnswer, bounded, store_error};
use inbox::{InboxNodes, InboxTimeouts};

/// [`RouteStore`] on Redis or Redis Cluster; see the [module documentation](self).
pub struct RedisRouteStore {
    commands: Commands,
    inbox_nodes: InboxNodes,
    inbox_timeouts: InboxTimeouts,
    operation_timeout: Duration,
}

/// Why [`RedisRouteStore::connect_url`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    #[error(transparent)]
    Url(#[from] RedisUrlError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RedisRouteStore {
    /// Parses `url` (forms in the [module documentation](self)) and connects.
    pub async fn connect_url(url: &str) -> Result<Self, RedisConnectError> {
        Ok(Self::connect(RedisConfig::from_url(url)?).await?)
    }

    /// Connects to Redis; fails with [`StoreError::Unavailable`] if it cannot be
    /// reached within the operation timeout.
    pub async fn connect(config: RedisConfig) -> StoreResult<Self> {
        let operation_timeout = config.operation_timeout;
        bounded(operation_timeout, Self::open(config)).await
    }

    async fn open(config: RedisConfig) -> Result<Self, RedisError> {
        let inbox_timeouts = InboxTimeouts {
            connect: config.connect_timeout,
            response: config.response_timeout,
            keepalive: config.inbox_keepalive,
        };
        let (commands, inbox_nodes) = if config.cluster {
            let mut builder = ClusterClientBuilder::new(config.nodes.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .overall_response_timeout(Some(config.operation_timeout))
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(500);
            if let Some(certificates) = config.tls_certificates() {
                builder = builder.certs(certificates);
            }
            let connection = builder.build()?.get_async_connection().await?;
            let inbox_nodes = InboxNodes::Cluster {
                seed: config.nodes[0].clone(),
                commands: connection.clone(),
            };
            (
                Commands::cluster(connection, config.operation_timeout),
                inbox_nodes,
            )
        } else {
            let node = config.nodes[0].clone();
            // One quick retry per reconnection: while Redis is down, calls
            // should fail fast rather than queue behind a long backoff.
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            // Over RESP3 the manager hears of a lost connection as it happens
            // and reconnects at once, instead of on the next call's failure.
            let settings = node
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let manager = redis::Client::open(node.clone().set_redis_settings(settings))?
                .get_connection_manager_with_config(manager_config)
                .await?;
            (
                Commands::single(manager, config.operation_timeout),
                InboxNodes::Single(node),
            )
        };
        Ok(Self {
            commands,
            inbox_nodes,
            inbox_timeouts,
            operation_timeout: config.operation_timeout,
        })
    }
}

#[async_trait]
impl RouteStore for RedisRouteStore {
    async fn announce_replica(&self, replica: &ReplicaInfo, ttl: Duration) -> StoreResult<()> {
        let record = serde_json::to_string(replica).map_err(|e| StoreError::Backend(e.into()))?;
        self.commands
            .query(&scripts::announce_replica(&replica.id, &record, ttl))
            .await
    }

    async fn withdraw_replica(&self, replica_id: &str) -> StoreResult<()> {
        self.commands
            .query(&scripts::withdraw_replica(replica_id))
            .await
    }

    async fn replicas(&self) -> StoreResult<Vec<ReplicaInfo>> {
        let ids: Vec<String> = self
            .commands
            .query(redis::cmd("SMEMBERS").arg(keys::REPLICA_INDEX))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<String> = ids.iter().map(|id| keys::replica(id)).collect();
        let records: Vec<Option<String>> = self
            .commands
            .query(redis::cmd("MGET").arg(&records))
            .await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, record) in ids.iter().zip(records) {
            match record.map(|json| serde_json::from_str::<ReplicaInfo>(&json)) {
                Some(Ok(info)) => live.push(info),
                // Left for its TTL to remove: pruning only drops ids without a record.
                Some(Err(err)) => tracing::warn!(replica = %id, %err, "unreadable replica record"),
                None => expired.push(id.as_str()),
            }
        }
        if !expired.is_empty()
            && let Err(err) = self
                .commands
                .query::<()>(&scripts::prune_replicas(&expired))
                .await
        {
            // The index only grows stale; the next read prunes it.
            tracing::debug!(%err, "could not prune expired replica ids");
        }
        Ok(live)
    }

    async fn announce_agents(
        &self,
        agents: &[String],
        replica: &str,
        ttl: Duration,
    ) -> StoreResult<()> {
        let commands = agents
            .iter()
            .map(|agent| scripts::announce_agent(agent, replica, ttl))
            .collect();
        self.commands.run_all(commands).await
    }

    async fn withdraw_agent(&self, agent: &str, replica: &str) -> StoreResult<()> {
        self.commands
            .query(redis::cmd("ZREM").arg(keys::agent(agent)).arg(replica))
            .await
    }

    async fn agent_replicas(&self, agent: &str) -> StoreResult<Vec<String>> {
        self.commands.query(&scripts::agent_replicas(agent)).await
    }

    async fn put_session(&self, session_id: &str, ingress: &str, ttl: Duration) -> StoreResult<()> {
        self.commands
            .query(
                redis::cmd("SET")
                    .arg(keys::session(session_id))
                    .arg(ingress)
                    .arg("PX")
                    .arg(scripts::ttl_ms(ttl)),
            )
            .await
    }

    async fn session_ingress(&self, session_id: &str) -> StoreResult<Option<String>> {
        self.commands
            .query(redis::cmd("GET").arg(keys::session(session_id)))
            .await
    }

    async fn remove_session(&self, session_id: &str) -> StoreResult<()> {
        self.commands
            .query(redis::cmd("DEL").arg(keys::session(session_id)))
            .await
    }

    async fn publish(&self, replica: &str, message: Bytes) -> StoreResult<u64> {
        self.commands
            .query_once_sent(
                redis::cmd("SPUBLISH")
                    .arg(keys::inbox(replica))
                    .arg(message.as_ref()),
            )
            .await
    }

    async fn subscribe(&self, replica: &str) -> StoreResult<Inbox> {
        self.subscribe_channel(keys::inbox(replica)).await
    }

    async fn publish_policy_change(&self, generation: u64) -> StoreResult<u64> {
        self.commands
            .query_once_sent(
                redis::cmd("SPUBLISH")
                    .arg(keys::POLICY_CHANGED)
                    .arg(generation.to_string()),
            )
            .await
    }

    async fn subscribe_policy_changes(&self) -> StoreResult<Inbox> {
        self.subscribe_channel(keys::POLICY_CHANGED.to_owned())
            .await
    }
}

impl RedisRouteStore {
    async fn subscribe_channel(&self, channel: String) -> StoreResult<Inbox> {
        let subscribe = inbox::subscribe(&self.inbox_nodes, self.inbox_timeouts, channel);
        match tokio::time::timeout(self.operation_timeout, subscribe).await {
            Ok(Ok(inbox)) => Ok(inbox),
            Ok(Err(inbox::SubscribeError::Redis(err))) => Err(store_error(err)),
            // The slot map is changing: try again shortly.
            Ok(Err(err)) => Err(StoreError::Unavailable(Box::new(err))),
            Err(_) => Err(StoreError::Unavailable(Box::new(NoAnswer(
                self.operation_timeout,
            )))),
        }
    }
}
