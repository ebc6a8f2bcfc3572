//! Replicas cache policy: a change made through one replica's API is seen by
//! another within a second (announced through Redis, or found by polling
//! the policy generation without it), and while the policy store is
//! unreachable cached decisions hold until the stale limit, then fail closed,
//! and come back with the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_gateway::policy_cache::CacheSettings;
use postern_gateway::{GatewayOptions, RunningGateway, Settings, Stores};
use postern_state::memory::MemoryRouteStore;
use postern_state::postgres::PostgresStore;
use postern_state::redis::RedisRouteStore;
use postern_state::testing::RedisServer;
use postern_state::{Connection, PolicyStore, Role, RouteStore, UserToken, now_ms};
use postern_testkit::exposition;
use postern_testkit::postgres::Database;
use postern_testkit::proxy::CuttableProxy;
use postern_tunnel::auth::{TokenKind, generate_token, hash_token};
use serde_json::{Value, json};

/// Must be seen by every replica within this.
const PROPAGATION: Duration = Duration::from_secs(1);

struct Tokens {
    admin: String,
    alice: String,
}

/// A database with an admin, alice (group `devs`, no rule yet) and a
/// connection `db`.
async fn seeded(db: &Database, via: Option<std::net::SocketAddr>) -> (Arc<PostgresStore>, Tokens) {
    let addr = via.map_or(db.addr(), |a| a.to_string());
    let url = format!("postgres://postgres@{addr}/{}?sslmode=disable", db.name);
    let store = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let mut tokens = Vec::new();
    for (user, role, groups) in [
        ("root", Role::Admin, vec![]),
        ("alice", Role::User, vec!["devs".to_owned()]),
    ] {
        let token = generate_token(TokenKind::User);
        store
            .create_user_token(&UserToken {
                user: user.into(),
                token_hash: hash_token(token.expose()),
                role,
                created_at_ms: now_ms(),
                groups,
            })
            .await
            .unwrap();
        tokens.push(token.expose().to_owned());
    }
    store
        .create_connection(&Connection::tcp("db", "10.0.0.1:5432", "a1", now_ms()))
        .await
        .unwrap();
    let alice = tokens.pop().unwrap();
    let admin = tokens.pop().unwrap();
    (store, Tokens { admin, alice })
}

async fn replica(
    store: Arc<PostgresStore>,
    routes: Arc<dyn RouteStore>,
    cache: CacheSettings,
) -> RunningGateway {
    postern_gateway::start(
        GatewayOptions {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            internal_addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            replica_id: postern_gateway::new_replica_id(),
            settings: Settings {
                policy_cache: cache,
                ..Settings::default()
            },
            peer: None,
            oidc: None,
        },
        Stores {
            policy: store.clone(),
            audit: store,
            routes,
        },
    )
    .await
    .expect("replica starts")
}

async fn call(
    gateway: &RunningGateway,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    // reqwest is built without a default TLS provider (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{}{path}", gateway.public_addr))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(gateway: &RunningGateway, token: &str, path: &str) -> (u16, Value) {
    call(gateway, token, reqwest::Method::GET, path, None).await
}

/// Polls `seen` every 10 ms until it holds; returns how long that took,
/// failing once it took longer than `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut seen: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if seen().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Rule, token and connection changes through A, each seen by B within a second.
async fn changes_propagate(a: &RunningGateway, b: &RunningGateway, tokens: &Tokens) {
    // B has decided (and cached) before each change.
    let (status, body) = get(b, &tokens.alice, "/v1/access/db").await;
    assert_eq!(
        (status, body["decision"].as_str()),
        (200, Some("deny")),
        "{body}"
    );
    let rule =
        json!({"name": "devs", "groups": ["devs"], "connections": ["*"], "actions": ["connect"]});
    let (status, body) = call(
        a,
        &tokens.admin,
        reqwest::Method::PUT,
        "/v1/rules/devs",
        Some(rule),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let took = within(PROPAGATION, "rule on B", || async {
        get(b, &tokens.alice, "/v1/access/db").await.1["decision"] == "allow"
    })
    .await;
    eprintln!("rule seen by B after {took:?}");

    // An unknown connection is remembered on B as unknown...
    assert_eq!(get(b, &tokens.alice, "/v1/access/new").await.0, 404);
    let connection = json!({"name": "new", "kind": "tcp", "target": "10.0.0.2:22", "agent": "a1"});
    let (status, body) = call(
        a,
        &tokens.admin,
        reqwest::Method::POST,
        "/v1/connections",
        Some(connection),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // ...until A creates it.
    let took = within(PROPAGATION, "new connection on B", || async {
        get(b, &tokens.alice, "/v1/access/new").await.0 == 200
    })
    .await;
    eprintln!("connection seen by B after {took:?}");
    // And deleted: B's cached connection goes too.
    let (status, _) = call(
        a,
        &tokens.admin,
        reqwest::Method::DELETE,
        "/v1/connections/new",
        None,
    )
    .await;
    assert_eq!(status, 204);
    within(PROPAGATION, "deleted connection on B", || async {
        get(b, &tokens.alice, "/v1/access/new").await.0 == 404
    })
    .await;

    let body = json!({"user": "carol", "groups": ["devs"]});
    let (status, created) = call(
        a,
        &tokens.admin,
        reqwest::Method::POST,
        "/v1/tokens",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let carol = created["token"].as_str().unwrap().to_owned();
    let took = within(PROPAGATION, "new token on B", || async {
        get(b, &carol, "/v1/whoami").await.1["user"] == "carol"
    })
    .await;
    eprintln!("token seen by B after {took:?}");

    // Rule removed through A: B denies again.
    let (status, _) = call(
        a,
        &tokens.admin,
        reqwest::Method::DELETE,
        "/v1/rules/devs",
        None,
    )
    .await;
    assert_eq!(status, 204);
    within(PROPAGATION, "rule deletion on B", || async {
        get(b, &tokens.alice, "/v1/access/db").await.1["decision"] == "deny"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_changes_are_announced_to_every_replica() {
    let db = Database::create("cache_redis");
    let (store, tokens) = seeded(&db, None).await;
    let redis = RedisServer::start();
    // Polls far apart: only the announcement can make the deadline.
    let cache = CacheSettings {
        poll_interval: Duration::from_secs(20),
        stale_limit: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(30),
        ..CacheSettings::default()
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let routes = Arc::new(RedisRouteStore::connect_url(&redis.url()).await.unwrap());
        replicas.push(replica(store.clone(), routes, cache).await);
    }
    changes_propagate(&replicas[0], &replicas[1], &tokens).await;
    let metrics = postern_testkit::http_get(replicas[1].internal_addr, "/metrics").await;
    assert!(
        counted(
            &metrics,
            "postern_policy_cache_invalidations_total",
            ("source", "announced")
        ),
        "{metrics}"
    );
    assert!(counted(
        &metrics,
        "postern_policy_cache_lookups_total",
        ("result", "hit")
    ));
    for gateway in replicas {
        gateway.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_replicas_poll_the_generation() {
    let db = Database::create("cache_poll");
    let (store, tokens) = seeded(&db, None).await;
    let cache = CacheSettings {
        poll_interval: Duration::from_millis(250),
        negative_ttl: Duration::from_secs(30),
        ..CacheSettings::default()
    };
    // Each replica alone on its own in-memory routes: nothing is announced.
    let a = replica(store.clone(), Arc::new(MemoryRouteStore::new()), cache).await;
    let b = replica(store.clone(), Arc::new(MemoryRouteStore::new()), cache).await;
    changes_propagate(&a, &b, &tokens).await;
    let metrics = postern_testkit::http_get(b.internal_addr, "/metrics").await;
    assert!(
        counted(
            &metrics,
            "postern_policy_cache_invalidations_total",
            ("source", "poll")
        ),
        "{metrics}"
    );
    assert!(
        !counted(
            &metrics,
            "postern_policy_cache_invalidations_total",
            ("source", "announced")
        ),
        "{metrics}"
    );
    a.kill().await;
    b.kill().await;
}

/// Whether the counter `name{label}` has counted anything (every series is
/// exported from the start, at 0).
fn counted(metrics: &str, name: &str, label: (&str, &str)) -> bool {
    exposition::sample(metrics, name, &[label]).is_some_and(|n| n >= 1.0)
}

async fn readyz(gateway: &RunningGateway) -> String {
    postern_testkit::http_get(gateway.internal_addr, "/readyz").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_serves_cached_decisions_until_the_stale_limit() {
    let db = Database::create("cache_outage");
    let proxy = CuttableProxy::start(db.addr().parse().unwrap()).await;
    let (store, tokens) = seeded(&db, Some(proxy.addr)).await;
    let stale_limit = Duration::from_secs(2);
    let cache = CacheSettings {
        poll_interval: Duration::from_millis(100),
        poll_timeout: Duration::from_millis(300),
        stale_limit,
        ..CacheSettings::default()
    };
    let gateway = replica(store.clone(), Arc::new(MemoryRouteStore::new()), cache).await;
    let rule =
        json!({"name": "devs", "groups": ["devs"], "connections": ["*"], "actions": ["connect"]});
    let (status, _) = call(
        &gateway,
        &tokens.admin,
        reqwest::Method::PUT,
        "/v1/rules/devs",
        Some(rule),
    )
    .await;
    assert_eq!(status, 200);
    let allowed = || async { get(&gateway, &tokens.alice, "/v1/access/db").await };
    assert_eq!(allowed().await.1["decision"], "allow");
    assert!(readyz(&gateway).await.starts_with("HTTP/1.1 200"));

    proxy.cut();
    let cut = Instant::now();
    // Within the limit, decisions hold (from the cache) and the replica stays ready.
    let mut served = 0;
    while cut.elapsed() < stale_limit - Duration::from_millis(300) {
        let (status, body) = allowed().await;
        assert_eq!(
            (status, &body["decision"]),
            (200, &json!("allow")),
            "{:?} after the cut: {body}",
            cut.elapsed()
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = readyz(&gateway).await;
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("serving cached policy"),
        "{ready}"
    );
    // Then they fail closed, as store_unavailable.
    within(stale_limit, "fail closed", || async {
        let (status, body) = allowed().await;
        status == 503 && body["error"]["code"] == "store_unavailable"
    })
    .await;
    let failed_after = cut.elapsed();
    eprintln!("served {served} cached decisions, failed closed {failed_after:?} after the cut");
    // The last confirmation came at most a poll before the cut.
    assert!(
        failed_after >= stale_limit - Duration::from_millis(150),
        "{failed_after:?}"
    );
    assert!(
        failed_after <= stale_limit + Duration::from_secs(1),
        "{failed_after:?}"
    );
    let (_, body) = allowed().await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("POSTERN_POLICY_STALE_LIMIT_MS"),
        "{message}"
    );
    let ready = readyz(&gateway).await;
    assert!(
        ready.starts_with("HTTP/1.1 503") && ready.contains("POSTERN_POLICY_STALE_LIMIT_MS"),
        "{ready}"
    );
    let metrics = postern_testkit::http_get(gateway.internal_addr, "/metrics").await;
    for result in ["stale", "failed_closed"] {
        assert!(
            counted(
                &metrics,
                "postern_policy_cache_lookups_total",
                ("result", result)
            ),
            "{result} lookups in\n{metrics}"
        );
    }
    let failures = exposition::sample(&metrics, "postern_policy_cache_refresh_failures_total", &[]);
    assert!(failures.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        metrics.contains("postern_policy_cache_state 2"),
        "{metrics}"
    );

    // The store comes back: so does the service.
    proxy.restore();
    within(Duration::from_secs(10), "service resumes", || async {
        allowed().await.1["decision"] == "allow"
    })
    .await;
    assert!(readyz(&gateway).await.starts_with("HTTP/1.1 200"));
    gateway.kill().await;
}
