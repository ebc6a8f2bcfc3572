//! The state one replica's handlers share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postern_state::{Agent, AuditEvent, AuditSink, Connection, PolicyStore, RouteStore, now_ms};
use postern_tunnel::auth::{BearerError, bearer_token, hash_token};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::audit_writer::AuditWriter;
use crate::metrics::{ErrorKind, Metrics};
use crate::peer::Interconnect;
use crate::policy_cache::PolicyCache;
use crate::refusal::Refusal;
use crate::registry::{AgentRegistry, ForwardedSessions, PendingSessions};
use crate::reviews::webhook::Webhook;
use crate::routing::ClusterView;

#[derive(Debug, Clone)]
pub struct Settings {
    /// How often control streams carry keepalives; three missed ones end the stream.
    pub keepalive_interval: Duration,
    /// How long a user's Open waits for the agent to reach the target and attach.
    pub session_open_timeout: Duration,
    /// How long a draining replica lets sessions finish before it stops.
    pub drain_grace: Duration,
    /// How often this replica refreshes its own record and re-reads the others'.
    pub heartbeat_interval: Duration,
    /// How long a replica's record lives without a heartbeat: a dead replica's
    /// routes vanish after this.
    pub replica_ttl: Duration,
    /// How long an agent route lives without a refresh (refreshed at a third of it).
    pub agent_route_ttl: Duration,
    /// Where review notifications are posted (a secret: Slack's URLs are).
    pub review_webhook: Option<postern_tunnel::Secret>,
    /// How policy is cached and refreshed (`POSTERN_POLICY_*`).
    pub policy_cache: crate::policy_cache::CacheSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(20),
            session_open_timeout: Duration::from_secs(10),
            drain_grace: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            replica_ttl: Duration::from_secs(4),
            agent_route_ttl: Duration::from_secs(30),
            review_webhook: None,
            policy_cache: crate::policy_cache::CacheSettings::default(),
        }
    }
}

/// The external stores a replica uses.
#[derive(Clone)]
pub struct Stores {
    pub policy: Arc<dyn PolicyStore>,
    pub audit: Arc<dyn AuditSink>,
    pub routes: Arc<dyn RouteStore>,
}

pub struct Shared {
    pub replica_id: String,
    pub stores: Stores,
    pub agents: AgentRegistry,
    pub pending: PendingSessions,
    /// Session requests passed to local agents on behalf of other replicas.
    pub forwarded: ForwardedSessions,
    pub cluster: ClusterView,
    /// Calls to other replicas; `None` when this replica runs alone.
    pub peers: Option<Interconnect>,
    pub metrics: Arc<Metrics>,
    /// Statement audit, batched (see `audit_writer`).
    pub audit_writer: AuditWriter,
    /// Review notifications to approvers.
    pub webhook: Webhook,
    /// Policy as last read from the policy store (see `policy_cache`).
    pub policy_cache: Arc<PolicyCache>,
    pub settings: Settings,
    draining: AtomicBool,
    /// Verifies OIDC access tokens; `None` when no issuer is configured.
    pub oidc: Option<Arc<crate::identity::oidc::OidcVerifier>>,
    /// Cancelled when the replica stops: agent control loops end.
    pub stop: CancellationToken,
}

impl Shared {
    pub fn new(
        replica_id: String,
        stores: Stores,
        settings: Settings,
        peers: Option<Interconnect>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let webhook = settings
            .review_webhook
            .as_ref()
            .and_then(|url| reqwest::Url::parse(url.expose()).ok())
            .map(|url| Webhook::new(Some(url), metrics.clone()));
        let webhook = match webhook {
            Some(Ok(webhook)) => webhook,
            Some(Err(error)) => {
                tracing::error!(%error, "review notifications are off");
                Webhook::disabled(metrics.clone())
            }
            None => Webhook::disabled(metrics.clone()),
        };
        let policy_cache = Arc::new(PolicyCache::new(
            stores.policy.clone(),
            stores.routes.clone(),
            settings.policy_cache,
            metrics.clone(),
        ));
        Self {
            policy_cache,
            webhook,
            audit_writer: AuditWriter::start(stores.audit.clone(), metrics.clone()),
            replica_id,
            stores,
            agents: AgentRegistry::default(),
            pending: PendingSessions::default(),
            forwarded: ForwardedSessions::default(),
            cluster: ClusterView::default(),
            peers,
            metrics,
            settings,
            draining: AtomicBool::new(false),
            oidc: None,
            stop: CancellationToken::new(),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Counts the refusal and passes it on.
    pub fn refuse(&self, refusal: Refusal) -> Refusal {
        self.metrics.error(refusal.kind);
        refusal
    }

    /// A store result as a counted refusal (fail closed when the store is unavailable).
    pub fn stored<T>(&self, result: postern_state::StoreResult<T>) -> Result<T, Refusal> {
        result.map_err(|e| self.refuse(e.into()))
    }

    /// A route store failure: counted and logged, never fatal to the caller,
    /// which falls back to what this replica knows by itself.
    pub fn route_store_error(&self, operation: &'static str, error: &postern_state::StoreError) {
        self.metrics.route_store_error(operation);
        tracing::warn!(operation, %error, "route store operation failed");
    }

    /// Whether the agent has a live tunnel to this replica or, with peering,
    /// to another live replica (the route store says which). A route store
    /// that cannot answer counts as not known to be connected.
    pub async fn agent_reachable(&self, agent: &str) -> bool {
        if self.agents.is_connected(agent) {
            return true;
        }
        if self.peers.is_none() {
            return false;
        }
        match self.stores.routes.agent_replicas(agent).await {
            Ok(holders) => {
                let live = self.cluster.snapshot();
                holders.iter().any(|holder| live.contains_key(holder))
            }
            Err(error) => {
                self.route_store_error("agent_replicas", &error);
                false
            }
        }
    }

    /// Authenticates a call from another replica by its peer token.
    pub fn authenticate_peer(&self, metadata: &MetadataMap) -> Result<String, Refusal> {
        let Some(peers) = &self.peers else {
            return Err(self.refuse(Refusal::new(
                ErrorKind::PeerUnauthenticated,
                "this replica takes no peer calls (no POSTERN_PEER_SECRET)",
            )));
        };
        let token = bearer_token(metadata).map_err(|e| {
            self.refuse(Refusal::new(
                ErrorKind::PeerUnauthenticated,
                format!("{e} (peer token)"),
            ))
        })?;
        peers
            .key()
            .verify(token.expose(), std::time::SystemTime::now())
            .map_err(|e| self.refuse(Refusal::new(ErrorKind::PeerUnauthenticated, e.to_string())))
    }

    /// A metadata value the request cannot do without.
    pub fn required_metadata(&self, metadata: &MetadataMap, name: &str) -> Result<String, Refusal> {
        metadata
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                self.refuse(Refusal::new(
                    ErrorKind::BadRequest,
                    format!("missing {name} metadata"),
                ))
            })
    }

    pub async fn authenticate_agent(&self, metadata: &MetadataMap) -> Result<Agent, Refusal> {
        let token = bearer_token(metadata).map_err(|e| self.refuse(agent_bearer_refusal(e)))?;
        match self
            .policy_cache
            .agent_by_token_hash(&hash_token(token.expose()))
            .await
        {
            Ok(Some(agent)) => Ok(agent),
            Ok(None) => Err(self.refuse(Refusal::new(
                ErrorKind::Unauthenticated,
                "unknown or revoked agent token (create one with `postern agent add NAME`)",
            ))),
            Err(e) => Err(self.refuse(e.into())),
        }
    }

    /// A connection by name, through the policy cache.
    pub async fn connection(&self, name: &str) -> Result<Option<Connection>, Refusal> {
        self.stored(self.policy_cache.connection(name).await)
    }

    /// After every policy write (connections, agents, tokens, rules,
    /// connection access, grants): this replica forgets its cached policy
    /// at once, the others within a second.
    pub async fn policy_changed(&self) {
        self.policy_cache.changed().await;
    }

    /// Writes an audit event; a failure is logged, never silently dropped.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: String,
    ) {
        let event = AuditEvent {
            at_ms: now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            detail,
            session_id: None,
        };
        if let Err(e) = self.stores.audit.record(&event).await {
            tracing::error!(error = %e, ?event, "cannot write audit event");
        }
    }
}

fn agent_bearer_refusal(err: BearerError) -> Refusal {
    Refusal::new(
        ErrorKind::Unauthenticated,
        format!("{err}; set POSTERN_AGENT_TOKEN"),
    )
}
