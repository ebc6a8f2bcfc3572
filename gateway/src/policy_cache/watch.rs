//! The cache's background work: reading the policy generation every poll
//! interval (logging each change of state once), and listening for changes
//! other replicas announce through the route store.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use postern_state::{PolicyStore, StoreError, StoreResult, now_ms};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{GENERATION_KEY, GENERATION_KIND, Health, PolicyCache, Source};

/// Compare-and-set attempts before a bump gives up (every attempt that
/// loses means another replica's bump won, which is progress too).
const BUMP_ATTEMPTS: u32 = 20;

/// Resubscribing after the route store dropped the subscription.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// Adds one to the policy generation; returns the new generation.
pub(super) async fn bump_generation(store: &dyn PolicyStore) -> StoreResult<u64> {
    let body = serde_json::json!({ "changed_at_ms": now_ms() });
    let mut last = None;
    for _ in 0..BUMP_ATTEMPTS {
        let current = store
            .document(GENERATION_KIND, GENERATION_KEY)
            .await?
            .map_or(0, |doc| doc.version);
        match store
            .put_document(GENERATION_KIND, GENERATION_KEY, &body, current)
            .await
        {
            Ok(generation) => return Ok(generation),
            Err(conflict @ StoreError::Conflict { .. }) => last = Some(conflict),
            Err(error) => return Err(error),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Runs until `stop`: polls the generation and listens for announcements.
pub async fn watch(cache: Arc<PolicyCache>, stop: CancellationToken) {
    tokio::join!(poll(cache.clone(), stop.clone()), listen(cache, stop));
}

async fn poll(cache: Arc<PolicyCache>, stop: CancellationToken) {
    let settings = *cache.settings();
    let mut ticker = tokio::time::interval(settings.poll_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut was = cache.health();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = cache.poll() => result,
        };
        match (&result, failing) {
            (Err(error), false) => {
                failing = true;
                tracing::warn!(%error, "cannot read the policy generation: serving cached policy for up to {} s", settings.stale_limit.as_secs());
            }
            (Ok(_), true) => failing = false,
            _ => {}
        }
        let health = cache.health();
        cache.metrics.policy_cache_state.set(health.gauge());
        if health.differs_from(was) {
            log_transition(was, health);
        }
        was = health;
    }
}

fn log_transition(was: Health, now: Health) {
    match now {
        Health::Fresh => tracing::info!(
            was = was.as_str(),
            "policy store answers again: policy cache fresh"
        ),
        Health::Stale { for_ } => tracing::warn!(
            seconds = for_.as_secs_f32(),
            "policy store unreachable: serving cached policy (stale)"
        ),
        Health::FailedClosed { for_ } => tracing::error!(
            seconds = for_.as_secs_f32(),
            "policy store unreachable past POSTERN_POLICY_STALE_LIMIT_MS: cached policy no longer serves, decisions fail closed"
        ),
        Health::Unknown => {}
    }
}

async fn listen(cache: Arc<PolicyCache>, stop: CancellationToken) {
    let mut backoff = RESUBSCRIBE_MIN;
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            subscribed = cache.routes.subscribe_policy_changes() => subscribed,
        };
        match subscribed {
            Ok(mut changes) => {
                backoff = RESUBSCRIBE_MIN;
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        message = changes.next() => message,
                    };
                    let Some(message) = message else { break };
                    match std::str::from_utf8(&message)
                        .ok()
                        .and_then(|text| text.parse::<u64>().ok())
                    {
                        Some(generation) => {
                            cache.observe_generation(generation, false, Source::Announced)
                        }
                        None => tracing::warn!(?message, "unreadable policy change announcement"),
                    }
                }
                // Announcements while unsubscribed are lost: polls catch up.
                tracing::debug!("policy change subscription ended; subscribing again");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RESUBSCRIBE_MIN) => {}
                }
            }
            Err(error) => {
                tracing::debug!(%error, "cannot subscribe to policy changes; polling meanwhile");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
            }
        }
    }
}
