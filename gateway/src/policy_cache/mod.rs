//! Each replica's cache of the policy it reads on every request: the
//! [`PolicySnapshot`], connections by name, and API keys and agent tokens by
//! hash (unknown ones too, briefly, so a bad token cannot hammer the store).
//!
//! # Invalidation
//! Every policy write bumps the *policy generation*, a store document (kind
//! [`GENERATION_KIND`], key [`GENERATION_KEY`]) written by compare-and-set, so
//! its version counts changes. Every replica reads it every
//! `POSTERN_POLICY_POLL_MS` and drops its cache when it moved: this works on
//! every store, with or without Redis. The writer also publishes the new
//! generation through the route store ([`RouteStore::publish_policy_change`]),
//! so with Redis the other replicas drop their caches at once.
//!
//! # Outages
//! While generation reads fail, cached values keep serving ("stale") until
//! the last confirmed generation is older than `POSTERN_POLICY_STALE_LIMIT_MS`;
//! then lookups fail closed with `store_unavailable`, and `/readyz` says
//! unready. See [`freshness`] for the exact rules.

pub mod freshness;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use postern_state::{
    Agent, Connection, PolicyStore, RouteStore, StoreError, StoreResult, UserToken, now_ms,
};

pub use freshness::{CacheSettings, Health};
use freshness::{Cached, Verdict, judge};
pub use watch::watch;

use crate::access::PolicySnapshot;
use crate::access::documents::load_snapshot;
use crate::metrics::Metrics;

/// The policy generation document.
pub const GENERATION_KIND: &str = "meta";
pub const GENERATION_KEY: &str = "policy-generation";

/// Entries kept per kind; past it, unknown tokens are forgotten first.
const MAX_ENTRIES: usize = 10_000;

/// Where the time comes from (tests bring their own).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A lookup refused because the cache is past its stale limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the policy store has not answered for {} s, longer than POSTERN_POLICY_STALE_LIMIT_MS: refusing rather than deciding on old policy",
    .0.as_secs()
)]
pub struct PastStaleLimit(pub std::time::Duration);

struct Entry<T> {
    value: T,
    loaded_at: Instant,
}

struct Inner {
    /// Bumped on every invalidation; a read that began in an older epoch is
    /// not cached (it may predate the change).
    epoch: u64,
    /// The last generation read or announced.
    generation: Option<u64>,
    /// When the store last confirmed the generation.
    validated_at: Option<Instant>,
    snapshot: Option<Entry<Arc<PolicySnapshot>>>,
    connections: HashMap<String, Entry<Option<Connection>>>,
    users: HashMap<String, Entry<Option<UserToken>>>,
    agents: HashMap<String, Entry<Option<Agent>>>,
}

pub struct PolicyCache {
    store: Arc<dyn PolicyStore>,
    routes: Arc<dyn RouteStore>,
    settings: CacheSettings,
    metrics: Arc<Metrics>,
    clock: Clock,
    inner: Mutex<Inner>,
    /// One snapshot load at a time; the others wait and use its result.
    snapshot_load: tokio::sync::Mutex<()>,
}

/// Where an invalidation came from (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This replica wrote policy.
    Local,
    /// A generation read found a new generation.
    Poll,
    /// Another replica announced a change through the route store.
    Announced,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Poll => "poll",
            Source::Announced => "announced",
        }
    }
}

impl PolicyCache {
    pub fn new(
        store: Arc<dyn PolicyStore>,
        routes: Arc<dyn RouteStore>,
        settings: CacheSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_clock(store, routes, settings, metrics, Arc::new(Instant::now))
    }

    pub fn with_clock(
        store: Arc<dyn PolicyStore>,
        routes: Arc<dyn RouteStore>,
        settings: CacheSettings,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            routes,
            settings,
            metrics,
            clock,
            inner: Mutex::new(Inner {
                epoch: 0,
                generation: None,
                validated_at: None,
                snapshot: None,
                connections: HashMap::new(),
                users: HashMap::new(),
                agents: HashMap::new(),
            }),
            snapshot_load: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a few field writes: a panic cannot leave it torn.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    pub fn health(&self) -> Health {
        let validated_at = self.inner().validated_at;
        Health::of(validated_at, self.now(), &self.settings)
    }

    /// Drops everything cached.
    pub fn invalidate(&self, source: Source) {
        let mut inner = self.inner();
        inner.epoch += 1;
        inner.snapshot = None;
        inner.connections.clear();
        inner.users.clear();
        inner.agents.clear();
        drop(inner);
        self.metrics.policy_cache_invalidation(source.as_str());
    }

    /// Records a generation read from the store (`Some(g)`) or announced;
    /// invalidates when it is new.
    fn observe_generation(&self, generation: u64, confirmed: bool, source: Source) {
        let now = self.now();
        let changed = {
            let mut inner = self.inner();
            if confirmed {
                inner.validated_at = Some(inner.validated_at.map_or(now, |v| v.max(now)));
            }
            let changed = inner.generation.is_none_or(|known| generation > known)
                // A generation going backwards (store restored): start over.
                || (confirmed && inner.generation.is_some_and(|known| generation < known));
            if changed {
                inner.generation = Some(generation);
            }
            changed
        };
        if changed {
            self.invalidate(source);
        }
    }

    /// Access rules, connection requirements and grants.
    pub async fn snapshot(&self) -> StoreResult<Arc<PolicySnapshot>> {
        if let Some(snapshot) = self.cached_snapshot()? {
            return Ok(snapshot);
        }
        let _loading = self.snapshot_load.lock().await;
        // Someone else may have loaded it while this waited.
        if let Some(snapshot) = self.cached_snapshot()? {
            return Ok(snapshot);
        }
        let epoch = self.inner().epoch;
        let snapshot = Arc::new(self.loaded(load_snapshot(&*self.store, now_ms()).await)?);
        let mut inner = self.inner();
        if inner.epoch == epoch {
            inner.snapshot = Some(Entry {
                value: snapshot.clone(),
                loaded_at: self.now(),
            });
        }
        Ok(snapshot)
    }

    fn cached_snapshot(&self) -> StoreResult<Option<Arc<PolicySnapshot>>> {
        let inner = self.inner();
        let Some(entry) = &inner.snapshot else {
            self.metrics.policy_cache_lookup("miss");
            return Ok(None);
        };
        let cached = Cached {
            loaded_at: entry.loaded_at,
            negative: false,
        };
        self.serve(cached, inner.validated_at, || entry.value.clone())
    }

    /// The cached value if the verdict allows it, `None` to read the store.
    fn serve<T>(
        &self,
        cached: Cached,
        validated_at: Option<Instant>,
        value: impl FnOnce() -> T,
    ) -> StoreResult<Option<T>> {
        match judge(cached, validated_at, self.now(), &self.settings) {
            Verdict::Hit => {
                self.metrics.policy_cache_lookup("hit");
                Ok(Some(value()))
            }
            Verdict::StaleHit => {
                self.metrics.policy_cache_lookup("stale");
                Ok(Some(value()))
            }
            Verdict::Reload => {
                self.metrics.policy_cache_lookup("miss");
                Ok(None)
            }
            Verdict::FailClosed { for_ } => {
                self.metrics.policy_cache_lookup("failed_closed");
                Err(StoreError::Unavailable(Box::new(PastStaleLimit(for_))))
            }
        }
    }

    /// A store read's result; failures are counted.
    fn loaded<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::Unavailable(_) | StoreError::Backend(_)) = &result {
            self.metrics.policy_cache_refresh_failure();
        }
        result
    }

    pub async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        self.lookup(|i| &mut i.connections, name, self.store.connection(name))
            .await
    }

    pub async fn user_by_token_hash(&self, hash: &str) -> StoreResult<Option<UserToken>> {
        self.lookup(|i| &mut i.users, hash, self.store.user_by_token_hash(hash))
            .await
    }

    pub async fn agent_by_token_hash(&self, hash: &str) -> StoreResult<Option<Agent>> {
        self.lookup(
            |i| &mut i.agents,
            hash,
            self.store.agent_by_token_hash(hash),
        )
        .await
    }

    async fn lookup<T: Clone>(
        &self,
        map: fn(&mut Inner) -> &mut HashMap<String, Entry<Option<T>>>,
        key: &str,
        read: impl Future<Output = StoreResult<Option<T>>>,
    ) -> StoreResult<Option<T>> {
        let epoch = {
            let mut inner = self.inner();
            let validated_at = inner.validated_at;
            if let Some(entry) = map(&mut inner).get(key) {
                let cached = Cached {
                    loaded_at: entry.loaded_at,
                    negative: entry.value.is_none(),
                };
                if let Some(value) = self.serve(cached, validated_at, || entry.value.clone())? {
                    return Ok(value);
                }
            } else {
                self.metrics.policy_cache_lookup("miss");
            }
            inner.epoch
        };
        let value = self.loaded(read.await)?;
        let now = self.now();
        let mut inner = self.inner();
        if inner.epoch == epoch {
            let entries = map(&mut inner);
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, e| e.value.is_some());
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(
                key.to_owned(),
                Entry {
                    value: value.clone(),
                    loaded_at: now,
                },
            );
        }
        Ok(value)
    }

    /// Reads the generation once: confirms the cache, or drops it when the
    /// generation moved.
    pub async fn poll(&self) -> StoreResult<u64> {
        let read = tokio::time::timeout(
            self.settings.poll_timeout,
            self.store.document(GENERATION_KIND, GENERATION_KEY),
        )
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                format!(
                    "no answer within {} ms",
                    self.settings.poll_timeout.as_millis()
                )
                .into(),
            ))
        });
        let generation = self.loaded(read)?.map_or(0, |doc| doc.version);
        self.observe_generation(generation, true, Source::Poll);
        Ok(generation)
    }

    /// After a policy write: drops this replica's cache, bumps the
    /// generation and announces it. Failures are logged, not returned: the
    /// write itself succeeded, and the other replicas read everything again
    /// within the cache's maximum age anyway.
    pub async fn changed(&self) {
        self.invalidate(Source::Local);
        let generation = match watch::bump_generation(&*self.store).await {
            Ok(generation) => generation,
            Err(error) => {
                self.metrics.policy_cache_refresh_failure();
                tracing::error!(%error, "cannot bump the policy generation: other replicas see the change only when their cache ages out");
                return;
            }
        };
        // Reads between the first invalidation and the bump may predate
        // another replica's concurrent change: drop them too.
        self.invalidate(Source::Local);
        {
            let mut inner = self.inner();
            inner.generation = Some(inner.generation.map_or(generation, |g| g.max(generation)));
        }
        if let Err(error) = self.routes.publish_policy_change(generation).await {
            tracing::warn!(%error, generation, "cannot announce a policy change: other replicas see it on their next poll");
        }
    }
}

#[cfg(test)]
mod tests;
