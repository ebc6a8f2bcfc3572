//! The cache over a real (in-memory SQLite) store that can be switched off,
//! with a clock the test moves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use postern_state::memory::MemoryRouteStore;
use postern_state::sqlite::SqliteStore;
use postern_state::{Document, Role, SessionEnd, SessionRecord};

use super::*;
use crate::access::AccessRule;
use crate::access::documents::replace_rule;

/// A store that fails with `Unavailable` while `down`, and counts reads.
struct Switchable {
    inner: SqliteStore,
    down: AtomicBool,
    reads: AtomicUsize,
}

impl Switchable {
    fn check(&self) -> StoreResult<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off".into()))
        } else {
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl PolicyStore for Switchable {
    async fn create_connection(&self, c: &Connection) -> StoreResult<()> {
        self.check()?;
        self.inner.create_connection(c).await
    }
    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        self.check()?;
        self.inner.connection(name).await
    }
    async fn connections(&self) -> StoreResult<Vec<Connection>> {
        self.check()?;
        self.inner.connections().await
    }
    async fn delete_connection(&self, name: &str) -> StoreResult<bool> {
        self.check()?;
        self.inner.delete_connection(name).await
    }
    async fn create_agent(&self, agent: &Agent) -> StoreResult<()> {
        self.check()?;
        self.inner.create_agent(agent).await
    }
    async fn agent_by_token_hash(&self, hash: &str) -> StoreResult<Option<Agent>> {
        self.check()?;
        self.inner.agent_by_token_hash(hash).await
    }
    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        self.check()?;
        self.inner.agents().await
    }
    async fn delete_agent(&self, name: &str) -> StoreResult<bool> {
        self.check()?;
        self.inner.delete_agent(name).await
    }
    async fn create_user_token(&self, token: &UserToken) -> StoreResult<()> {
        self.check()?;
        self.inner.create_user_token(token).await
    }
    async fn user_by_token_hash(&self, hash: &str) -> StoreResult<Option<UserToken>> {
        self.check()?;
        self.inner.user_by_token_hash(hash).await
    }
    async fn user_tokens(&self) -> StoreResult<Vec<UserToken>> {
        self.check()?;
        self.inner.user_tokens().await
    }
    async fn record_session_start(&self, s: &SessionRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.record_session_start(s).await
    }
    async fn record_session_end(&self, end: &SessionEnd) -> StoreResult<()> {
        self.check()?;
        self.inner.record_session_end(end).await
    }
    async fn sessions(&self, limit: u32) -> StoreResult<Vec<SessionRecord>> {
        self.check()?;
        self.inner.sessions(limit).await
    }
    async fn document(&self, kind: &str, key: &str) -> StoreResult<Option<Document>> {
        self.check()?;
        self.inner.document(kind, key).await
    }
    async fn documents(&self, kind: &str) -> StoreResult<Vec<Document>> {
        self.check()?;
        self.inner.documents(kind).await
    }
    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expected: u64,
    ) -> StoreResult<u64> {
        self.check()?;
        self.inner.put_document(kind, key, body, expected).await
    }
    async fn delete_document(&self, kind: &str, key: &str, expected: u64) -> StoreResult<bool> {
        self.check()?;
        self.inner.delete_document(kind, key, expected).await
    }
}

struct Harness {
    store: Arc<Switchable>,
    routes: Arc<MemoryRouteStore>,
    now: Arc<Mutex<Instant>>,
}

fn test_settings() -> CacheSettings {
    CacheSettings {
        poll_interval: Duration::from_millis(100),
        poll_timeout: Duration::from_millis(400),
        stale_limit: Duration::from_secs(5),
        negative_ttl: Duration::from_secs(1),
        max_age: Duration::from_secs(60),
    }
}

impl Harness {
    async fn new() -> Self {
        Self {
            store: Arc::new(Switchable {
                inner: SqliteStore::in_memory().await.unwrap(),
                down: AtomicBool::new(false),
                reads: AtomicUsize::new(0),
            }),
            routes: Arc::new(MemoryRouteStore::new()),
            now: Arc::new(Mutex::new(Instant::now())),
        }
    }

    fn cache(&self) -> PolicyCache {
        let now = self.now.clone();
        PolicyCache::with_clock(
            self.store.clone(),
            self.routes.clone(),
            test_settings(),
            Arc::new(Metrics::new()),
            Arc::new(move || *now.lock().unwrap()),
        )
    }

    fn advance(&self, by: Duration) {
        *self.now.lock().unwrap() += by;
    }

    fn reads(&self) -> usize {
        self.store.reads.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.store.down.store(down, Ordering::SeqCst);
    }
}

fn token(user: &str, hash: &str) -> UserToken {
    UserToken {
        user: user.into(),
        token_hash: hash.into(),
        role: Role::User,
        created_at_ms: 1,
        groups: vec!["g".into()],
    }
}

fn rule(name: &str) -> AccessRule {
    AccessRule::new(name, &["g"], &["*"], &[crate::access::Action::Connect])
}

#[tokio::test]
async fn hits_do_not_read_the_store_and_a_new_generation_drops_them() {
    let h = Harness::new().await;
    replace_rule(&*h.store, &rule("one")).await.unwrap();
    let cache = h.cache();
    cache.poll().await.unwrap();
    assert_eq!(cache.health(), Health::Fresh);

    assert_eq!(cache.snapshot().await.unwrap().rules, vec![rule("one")]);
    let reads = h.reads();
    for _ in 0..10 {
        assert_eq!(cache.snapshot().await.unwrap().rules.len(), 1);
    }
    assert_eq!(h.reads(), reads, "hits are served from memory");

    // A write behind the cache's back is not seen...
    replace_rule(&*h.store, &rule("two")).await.unwrap();
    assert_eq!(cache.snapshot().await.unwrap().rules.len(), 1);
    // ...until another replica announces its change and the poll finds it.
    let other = h.cache();
    other.changed().await;
    cache.poll().await.unwrap();
    assert_eq!(cache.snapshot().await.unwrap().rules.len(), 2);
}

#[tokio::test]
async fn announcements_invalidate_without_a_poll() {
    let h = Harness::new().await;
    let cache = h.cache();
    cache.poll().await.unwrap();
    assert_eq!(cache.connection("db").await.unwrap(), None);
    h.store
        .create_connection(&Connection::tcp("db", "h:1", "a", 1))
        .await
        .unwrap();
    // Announced generations older than the known one change nothing.
    cache.observe_generation(0, false, Source::Announced);
    assert_eq!(cache.connection("db").await.unwrap(), None);
    cache.observe_generation(1, false, Source::Announced);
    assert_eq!(
        cache.connection("db").await.unwrap().map(|c| c.target),
        Some("h:1".into())
    );
}

#[tokio::test]
async fn unknown_tokens_are_remembered_briefly() {
    let h = Harness::new().await;
    let cache = h.cache();
    cache.poll().await.unwrap();
    assert_eq!(cache.user_by_token_hash("h1").await.unwrap(), None);
    let reads = h.reads();
    assert_eq!(cache.user_by_token_hash("h1").await.unwrap(), None);
    assert_eq!(
        h.reads(),
        reads,
        "a bad token does not reach the store twice"
    );
    h.store
        .create_user_token(&token("bob", "h1"))
        .await
        .unwrap();
    h.advance(Duration::from_millis(1100));
    cache.poll().await.unwrap();
    assert_eq!(
        cache
            .user_by_token_hash("h1")
            .await
            .unwrap()
            .map(|t| t.user),
        Some("bob".into())
    );
}

/// The outage table: (time since the store went down, expected health,
/// whether a cached token still authenticates).
#[tokio::test]
async fn outages_serve_stale_then_fail_closed_then_recover() {
    let h = Harness::new().await;
    h.store
        .create_user_token(&token("bob", "h1"))
        .await
        .unwrap();
    let cache = h.cache();
    cache.poll().await.unwrap();
    assert!(cache.user_by_token_hash("h1").await.unwrap().is_some());
    cache.snapshot().await.unwrap();
    h.set_down(true);
    let cases = [
        (Duration::from_millis(300), "fresh", true),
        (Duration::from_millis(600), "stale", true),
        (Duration::from_secs(3), "stale", true),
        (Duration::from_secs(5), "stale", true),
        (Duration::from_millis(5001), "failed_closed", false),
        (Duration::from_secs(30), "failed_closed", false),
    ];
    let start = *h.now.lock().unwrap();
    for (down_for, health, serves) in cases {
        *h.now.lock().unwrap() = start + down_for;
        assert!(cache.poll().await.is_err());
        assert_eq!(cache.health().as_str(), health, "after {down_for:?}");
        let token = cache.user_by_token_hash("h1").await;
        let snapshot = cache.snapshot().await;
        assert_eq!(token.is_ok(), serves, "token after {down_for:?}: {token:?}");
        assert_eq!(snapshot.is_ok(), serves, "snapshot after {down_for:?}");
        if !serves {
            let error = token.unwrap_err();
            assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
            assert!(
                error.to_string().contains("POSTERN_POLICY_STALE_LIMIT_MS"),
                "{error}"
            );
        }
    }
    // Unknown names are not served from nothing while the store is down.
    assert!(cache.connection("never-seen").await.is_err());
    h.set_down(false);
    cache.poll().await.unwrap();
    assert_eq!(cache.health(), Health::Fresh);
    assert_eq!(
        cache
            .user_by_token_hash("h1")
            .await
            .unwrap()
            .map(|t| t.user),
        Some("bob".into())
    );
}

#[tokio::test]
async fn a_read_that_began_before_an_invalidation_is_not_cached() {
    let h = Harness::new().await;
    let cache = h.cache();
    cache.poll().await.unwrap();
    let stale_read = cache.lookup(|i| &mut i.connections, "db", async {
        // The change lands while this read is in flight.
        tokio::task::yield_now().await;
        Ok(None)
    });
    let invalidate = async { cache.invalidate(Source::Local) };
    let (read, ()) = tokio::join!(stale_read, invalidate);
    assert_eq!(read.unwrap(), None);
    assert!(
        cache.inner().connections.is_empty(),
        "the read predates the change"
    );
}
