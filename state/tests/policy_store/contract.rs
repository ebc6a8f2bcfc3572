//! What every `PolicyStore` + `AuditSink` adapter must do. Each case runs on a
//! fresh, empty store; the concurrent cases are in `concurrency.rs`.

use std::sync::Arc;

use postern_state::*;

/// A policy store that is also an audit sink, as every adapter here is.
pub trait Store: PolicyStore + AuditSink {}
impl<T: PolicyStore + AuditSink> Store for T {}

pub type Shared = Arc<dyn Store>;

pub async fn run_all(store: Shared) {
    eprintln!("contract: connections");
    connections_round_trip_with_layer7_settings(&*store).await;
    eprintln!("contract: connection conflicts and deletes");
    connection_conflicts_and_deletes(&*store).await;
    eprintln!("contract: agents");
    agents_are_found_by_token_hash_only(&*store).await;
    eprintln!("contract: user tokens");
    user_tokens_are_found_by_hash_and_listed_by_user(&*store).await;
    eprintln!("contract: sessions");
    sessions_start_end_and_list_newest_first(&*store).await;
    eprintln!("contract: audit");
    audit_queries_filter_limit_and_order(&*store).await;
    eprintln!("contract: audit by time");
    audit_queries_by_time(&*store).await;
    eprintln!("contract: large audit batches");
    large_audit_batches_keep_every_event_in_order(&*store).await;
    super::documents::run_all(store.clone()).await;
    eprintln!("contract: concurrency");
    super::concurrency::run_all(store).await;
}

pub fn tcp(name: &str) -> Connection {
    Connection::tcp(name, "127.0.0.1:5432", "agent-1", 1_700_000_000_001)
}

pub fn postgres(name: &str) -> Connection {
    Connection {
        kind: ConnectionKind::Postgres,
        database: Some("orders".into()),
        credential: Some("file:orders-ro".into()),
        tls: Some("verify-full".into()),
        policy: Some(serde_json::json!({
            "guardrails": {"read_only": true, "deny_tables": ["payroll.*"]},
            "masking": {"detectors": ["email"], "columns": ["users.email", "ssn"]},
            "audit_parameters": false
        })),
        ..Connection::tcp(name, "orders.internal:5432", "agent-2", 1_700_000_000_002)
    }
}

async fn connections_round_trip_with_layer7_settings(store: &dyn Store) {
    assert_eq!(store.connections().await.unwrap(), vec![]);
    store.create_connection(&postgres("orders")).await.unwrap();
    store.create_connection(&tcp("echo")).await.unwrap();
    let bare = Connection {
        kind: ConnectionKind::Postgres,
        credential: Some("env:ORDERS".into()),
        ..Connection::tcp("bare", "db:5432", "agent-1", 3)
    };
    store.create_connection(&bare).await.unwrap();

    let read = store.connection("orders").await.unwrap().unwrap();
    assert_eq!(read, postgres("orders"));
    let policy = read.policy.unwrap();
    assert_eq!(policy["guardrails"]["deny_tables"][0], "payroll.*");
    assert_eq!(policy["masking"]["columns"][1], "ssn");
    assert_eq!(store.connection("echo").await.unwrap(), Some(tcp("echo")));
    let bare_read = store.connection("bare").await.unwrap().unwrap();
    assert_eq!(
        (bare_read.database, bare_read.tls, bare_read.policy),
        (None, None, None)
    );
    assert_eq!(store.connection("missing").await.unwrap(), None);
    // Listed by name, in byte order.
    assert_eq!(
        store.connections().await.unwrap(),
        vec![bare, tcp("echo"), postgres("orders")]
    );
    for name in ["bare", "echo", "orders"] {
        assert!(store.delete_connection(name).await.unwrap(), "{name}");
    }
}

async fn connection_conflicts_and_deletes(store: &dyn Store) {
    store.create_connection(&tcp("pg")).await.unwrap();
    let other = Connection::tcp("pg", "10.9.9.9:1", "agent-9", 9);
    let err = store.create_connection(&other).await.unwrap_err();
    match &err {
        StoreError::AlreadyExists { kind, name } => {
            assert_eq!((*kind, name.as_str()), ("connection", "pg"))
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(err.to_string(), "connection \"pg\" already exists");
    // The first one stays, untouched.
    assert_eq!(store.connection("pg").await.unwrap(), Some(tcp("pg")));

    for (bad, field) in [
        (tcp("bad name"), "connection name"),
        (Connection::tcp("ok", "h:1", "bad/agent", 1), "agent name"),
    ] {
        let err = store.create_connection(&bad).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert_eq!(store.connection("ok").await.unwrap(), None);

    assert!(store.delete_connection("pg").await.unwrap());
    assert!(!store.delete_connection("pg").await.unwrap());
    assert!(!store.delete_connection("never-was").await.unwrap());
    assert_eq!(store.connection("pg").await.unwrap(), None);
    // The name is free again.
    store.create_connection(&other).await.unwrap();
    assert_eq!(store.connections().await.unwrap(), vec![other]);
    assert!(store.delete_connection("pg").await.unwrap());
}

fn agent(name: &str, hash: &str, at: i64) -> Agent {
    Agent {
        name: name.into(),
        token_hash: hash.into(),
        created_at_ms: at,
    }
}

async fn agents_are_found_by_token_hash_only(store: &dyn Store) {
    let a1 = agent("db-subnet-a", &"a1".repeat(32), 10);
    let a2 = agent("db-subnet-b", &"b2".repeat(32), 11);
    store.create_agent(&a2).await.unwrap();
    store.create_agent(&a1).await.unwrap();
    assert_eq!(store.agents().await.unwrap(), vec![a1.clone(), a2.clone()]);
    assert_eq!(
        store.agent_by_token_hash(&a1.token_hash).await.unwrap(),
        Some(a1.clone())
    );
    assert_eq!(
        store.agent_by_token_hash("db-subnet-a").await.unwrap(),
        None
    );
    assert_eq!(
        store.agent_by_token_hash(&"00".repeat(32)).await.unwrap(),
        None
    );

    // The same name, or the same token hash under another name: refused.
    let same_name = agent("db-subnet-a", &"cc".repeat(32), 12);
    let err = store.create_agent(&same_name).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "agent", .. }),
        "{err:?}"
    );
    assert_eq!(
        store
            .agent_by_token_hash(&same_name.token_hash)
            .await
            .unwrap(),
        None
    );
    let same_hash = agent("db-subnet-c", &a2.token_hash, 13);
    let err = store.create_agent(&same_hash).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(store.agents().await.unwrap().len(), 2);
    assert_eq!(
        store.agent_by_token_hash(&a2.token_hash).await.unwrap(),
        Some(a2.clone())
    );
    let err = store.create_agent(&agent("-x", "h", 1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "agent name",
                ..
            }
        ),
        "{err:?}"
    );

    // A deleted agent's token stops working; its name and hash are free again.
    assert!(store.delete_agent("db-subnet-a").await.unwrap());
    assert!(!store.delete_agent("db-subnet-a").await.unwrap());
    assert_eq!(
        store.agent_by_token_hash(&a1.token_hash).await.unwrap(),
        None
    );
    assert_eq!(store.agents().await.unwrap(), vec![a2.clone()]);
    store.create_agent(&a1).await.unwrap();
    assert!(store.delete_agent("db-subnet-a").await.unwrap());
    assert!(store.delete_agent("db-subnet-b").await.unwrap());
    assert_eq!(store.agents().await.unwrap(), vec![]);
}

fn token(user: &str, hash: &str, role: Role, at: i64) -> UserToken {
    UserToken {
        user: user.into(),
        token_hash: hash.into(),
        role,
        created_at_ms: at,
        groups: Vec::new(),
    }
}

async fn user_tokens_are_found_by_hash_and_listed_by_user(store: &dyn Store) {
    let tokens = [
        token("bob", &"b0".repeat(32), Role::User, 30),
        UserToken {
            groups: vec!["dba".into(), "okta:on-call".into(), "org/team@x".into()],
            ..token("alice", &"a9".repeat(32), Role::User, 20)
        },
        token("alice", &"a1".repeat(32), Role::Admin, 10),
    ];
    for t in &tokens {
        store.create_user_token(t).await.unwrap();
    }
    // By user, then by creation.
    assert_eq!(
        store.user_tokens().await.unwrap(),
        vec![tokens[2].clone(), tokens[1].clone(), tokens[0].clone()]
    );
    for t in &tokens {
        assert_eq!(
            store
                .user_by_token_hash(&t.token_hash)
                .await
                .unwrap()
                .as_ref(),
            Some(t)
        );
    }
    assert_eq!(store.user_by_token_hash("alice").await.unwrap(), None);
    // An agent's token hash is not a user's.
    store
        .create_agent(&agent("a-1", &"ee".repeat(32), 1))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_token_hash(&"ee".repeat(32)).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .agent_by_token_hash(&tokens[0].token_hash)
            .await
            .unwrap(),
        None
    );
    assert!(store.delete_agent("a-1").await.unwrap());

    let err = store
        .create_user_token(&token("carol", &tokens[0].token_hash, Role::Admin, 40))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "token", .. }),
        "{err:?}"
    );
    assert_eq!(
        store
            .user_by_token_hash(&tokens[0].token_hash)
            .await
            .unwrap()
            .unwrap()
            .user,
        "bob"
    );
    let bad_group = UserToken {
        groups: vec!["has space".into()],
        ..token("dave", &"d0".repeat(32), Role::User, 1)
    };
    assert!(matches!(
        store.create_user_token(&bad_group).await,
        Err(StoreError::Invalid { field: "group", .. })
    ));
    let err = store
        .create_user_token(&token("a b", "ff", Role::User, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "user name",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.user_tokens().await.unwrap().len(), 3);
}

pub fn session(id: &str, started: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user: "alice".into(),
        connection: "orders".into(),
        agent: "db-subnet-a".into(),
        replica: "replica-7".into(),
        started_at_ms: started,
        ended_at_ms: None,
        bytes_up: 0,
        bytes_down: 0,
        outcome: None,
    }
}

async fn sessions_start_end_and_list_newest_first(store: &dyn Store) {
    assert_eq!(store.sessions(10).await.unwrap(), vec![]);
    for (id, started) in [("s-old", 100), ("s-new", 300), ("s-mid", 200)] {
        store
            .record_session_start(&session(id, started))
            .await
            .unwrap();
    }
    let end = SessionEnd {
        id: "s-mid".into(),
        ended_at_ms: 250,
        bytes_up: 5_000_000_000,
        bytes_down: 7,
        outcome: "target_unreachable".into(),
    };
    store.record_session_end(&end).await.unwrap();
    // An end for a session never started records nothing.
    store
        .record_session_end(&SessionEnd {
            id: "s-ghost".into(),
            ..end.clone()
        })
        .await
        .unwrap();

    let sessions = store.sessions(10).await.unwrap();
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s-new", "s-mid", "s-old"]);
    assert_eq!(sessions[0], session("s-new", 300));
    assert_eq!(
        sessions[1],
        SessionRecord {
            ended_at_ms: Some(250),
            bytes_up: 5_000_000_000,
            bytes_down: 7,
            outcome: Some("target_unreachable".into()),
            ..session("s-mid", 200)
        }
    );
    let two: Vec<String> = store
        .sessions(2)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(two, ["s-new", "s-mid"]);
    assert_eq!(store.sessions(0).await.unwrap(), vec![]);
}

fn event(n: i64, actor: &str, action: &str, target: &str, session: Option<&str>) -> AuditEvent {
    AuditEvent {
        at_ms: 1_000 + n,
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        outcome: if n % 2 == 0 { "ok" } else { "blocked" }.into(),
        detail: format!("event {n}"),
        session_id: session.map(Into::into),
    }
}

async fn audit_queries_filter_limit_and_order(store: &dyn Store) {
    let all = |limit| AuditQuery {
        limit,
        ..AuditQuery::default()
    };
    assert_eq!(store.events(&all(10)).await.unwrap(), vec![]);
    let events = [
        event(0, "alice", "connection.create", "orders", None),
        event(1, "alice", "sql.statement", "orders", Some("s1")),
        event(2, "bob", "sql.statement", "billing", Some("s2")),
        event(3, "alice", "sql.statement", "orders", Some("s1")),
        event(4, "alice", "session.open", "billing", Some("s3")),
        event(5, "system", "sqlx.migrate", "", None),
        event(6, "bob", "session.open", "orders", Some("s4")),
    ];
    // One at a time, then the rest as one batch (as the gateway's writer does).
    for e in &events[..3] {
        store.record(e).await.unwrap();
    }
    store.record_batch(&events[3..]).await.unwrap();
    store.record_batch(&[]).await.unwrap();
    // Everything round trips, newest first.
    let mut newest_first = events.to_vec();
    newest_first.reverse();
    assert_eq!(store.events(&all(100)).await.unwrap(), newest_first);
    assert_eq!(
        store.events(&all(3)).await.unwrap(),
        newest_first[..3].to_vec()
    );
    assert_eq!(store.events(&all(0)).await.unwrap(), vec![]);

    let q = |actor: Option<&str>,
             session: Option<&str>,
             target: Option<&str>,
             prefix: Option<&str>,
             limit| AuditQuery {
        actor: actor.map(Into::into),
        session_id: session.map(Into::into),
        target: target.map(Into::into),
        action_prefix: prefix.map(Into::into),
        limit,
        ..AuditQuery::default()
    };
    let cases: Vec<(AuditQuery, Vec<i64>)> = vec![
        (q(None, Some("s1"), None, None, 10), vec![3, 1]),
        (q(Some("alice"), None, None, None, 10), vec![4, 3, 1, 0]),
        (q(Some("alice"), None, None, Some("sql."), 10), vec![3, 1]),
        (q(Some("alice"), None, None, None, 2), vec![4, 3]),
        (q(None, None, Some("orders"), None, 10), vec![6, 3, 1, 0]),
        (q(None, None, Some("billing"), None, 1), vec![4]),
        (q(Some("bob"), None, Some("orders"), None, 10), vec![6]),
        (
            q(Some("bob"), Some("s2"), Some("billing"), Some("sql."), 10),
            vec![2],
        ),
        (q(Some("bob"), Some("s1"), None, None, 10), vec![]),
        (q(None, None, None, Some("sql."), 10), vec![3, 2, 1]),
        (q(None, None, None, Some("sql"), 10), vec![5, 3, 2, 1]),
        (q(None, None, None, Some("session."), 1), vec![6]),
        // `_` and `%` are literal, not patterns.
        (q(None, None, None, Some("sql_"), 10), vec![]),
        (q(None, None, None, Some("%"), 10), vec![]),
        (q(Some("nobody"), None, None, None, 10), vec![]),
    ];
    for (query, expected) in cases {
        let got: Vec<i64> = store
            .events(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.at_ms - 1_000)
            .collect();
        assert_eq!(got, expected, "{query:?}");
    }
}

/// Time ranges: `since` inclusive, `until` exclusive, with the other filters.
async fn audit_queries_by_time(store: &dyn Store) {
    let base = 5_000_000;
    let at = |n: i64, actor: &str, target: &str| AuditEvent {
        at_ms: base + n * 1_000,
        ..event(0, actor, "session.open", target, Some("time-s"))
    };
    let events = [
        at(0, "tina", "orders"),
        at(1, "tina", "billing"),
        at(2, "uma", "orders"),
        at(3, "tina", "orders"),
    ];
    store.record_batch(&events).await.unwrap();
    let q = |actor: Option<&str>, target: Option<&str>, since: Option<i64>, until: Option<i64>| {
        AuditQuery {
            actor: actor.map(Into::into),
            target: target.map(Into::into),
            session_id: Some("time-s".into()),
            since_ms: since.map(|n| base + n * 1_000),
            until_ms: until.map(|n| base + n * 1_000),
            limit: 100,
            ..AuditQuery::default()
        }
    };
    let cases: Vec<(AuditQuery, Vec<i64>)> = vec![
        (q(None, None, None, None), vec![3, 2, 1, 0]),
        (q(None, None, Some(1), None), vec![3, 2, 1]),
        (q(None, None, None, Some(2)), vec![1, 0]),
        (q(None, None, Some(1), Some(3)), vec![2, 1]),
        (q(None, None, Some(2), Some(2)), vec![]),
        (q(Some("tina"), None, Some(1), None), vec![3, 1]),
        (q(None, Some("orders"), None, Some(3)), vec![2, 0]),
        (
            q(Some("tina"), Some("orders"), Some(0), Some(4)),
            vec![3, 0],
        ),
    ];
    for (query, expected) in cases {
        let got: Vec<i64> = store
            .events(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.at_ms - base) / 1_000)
            .collect();
        assert_eq!(got, expected, "{query:?}");
    }
    // Without the session filter: the time range alone, across every shard.
    let alone = AuditQuery {
        since_ms: Some(base + 1_000),
        until_ms: Some(base + 3_000),
        limit: 100,
        ..AuditQuery::default()
    };
    let got: Vec<i64> = store
        .events(&alone)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.at_ms)
        .collect();
    assert_eq!(got, vec![base + 2_000, base + 1_000]);
}

/// A batch larger than any one backend request (DynamoDB takes 25 items, the
/// SQL stores 512 rows an INSERT).
async fn large_audit_batches_keep_every_event_in_order(store: &dyn Store) {
    let events: Vec<AuditEvent> = (0..1_100)
        .map(|n| AuditEvent {
            // Two events a millisecond: order within one must hold too.
            at_ms: 9_000_000 + n / 2,
            detail: format!("batched {n}"),
            ..event(0, "batcher", "sql.statement", "orders", Some("batch-s"))
        })
        .collect();
    store.record_batch(&events).await.unwrap();
    let got: Vec<String> = store
        .events(&AuditQuery {
            actor: Some("batcher".into()),
            limit: 2_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    let expected: Vec<String> = (0..1_100).rev().map(|n| format!("batched {n}")).collect();
    assert_eq!(got, expected);
}
